//! The `[tls]` section and a router's `tls`, in Traefik v3's shape.
//!
//! Certificates and options come from the file provider (labels can only name options and
//! resolvers, as in Traefik). Validation of the names inside options (versions, cipher suites,
//! curves, client-auth types) happens where they are turned into rustls settings, in the proxy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Ignored;

/// The `[tls]` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `[[tls.certificates]]`: certificate and key pairs, selected by SNI from their SANs.
    #[serde(default)]
    pub certificates: Vec<Certificate>,
    /// `[tls.options.<name>]`: protocol settings routers refer to by name.
    #[serde(default)]
    pub options: BTreeMap<String, TlsOptions>,
    /// `[tls.stores.<name>]`: only the store named `default` is honoured (as in Traefik).
    #[serde(default)]
    pub stores: BTreeMap<String, TlsStore>,
}

/// A certificate and its key: each a file path or inline PEM (Traefik accepts both).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Certificate {
    /// The certificate chain, leaf first: a path, or PEM text.
    #[serde(alias = "certfile")]
    pub cert_file: String,
    /// The private key: a path, or PEM text.
    #[serde(alias = "keyfile")]
    pub key_file: String,
    /// Stores the certificate goes to (only `default` exists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<String>,
}

/// `[tls.stores.<name>]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsStore {
    /// The certificate served when no other matches the client's SNI.
    #[serde(default, alias = "defaultcertificate", skip_serializing_if = "Option::is_none")]
    pub default_certificate: Option<Certificate>,
    /// `defaultGeneratedCert` (an ACME-issued default: not supported yet, reported).
    #[serde(default, alias = "defaultgeneratedcert", skip_serializing)]
    pub default_generated_cert: Option<Ignored>,
}

/// `[tls.options.<name>]` (Traefik's keys).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsOptions {
    /// `VersionTLS12` (Traefik's default) or `VersionTLS13`; 1.0 and 1.1 are accepted and warned
    /// about (drover never speaks them).
    #[serde(default, alias = "minversion", skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    /// The highest version offered.
    #[serde(default, alias = "maxversion", skip_serializing_if = "Option::is_none")]
    pub max_version: Option<String>,
    /// TLS 1.2 cipher suites by IANA name (1.3 suites are fixed).
    #[serde(default, alias = "ciphersuites", skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    /// Key-exchange groups in preference order (`X25519`, `CurveP256`, `CurveP384`).
    #[serde(default, alias = "curvepreferences", skip_serializing_if = "Vec::is_empty")]
    pub curve_preferences: Vec<String>,
    /// Refuse connections without SNI or with an SNI no certificate names.
    #[serde(default, alias = "snistrict")]
    pub sni_strict: bool,
    /// ALPN protocols offered (default `h2`, `http/1.1`).
    #[serde(default, alias = "alpnprotocols", skip_serializing_if = "Option::is_none")]
    pub alpn_protocols: Option<Vec<String>>,
    /// Client certificates (mTLS).
    #[serde(default, alias = "clientauth", skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    /// `preferServerCipherSuites` (Go's knob; rustls always prefers the server's order).
    #[serde(default, alias = "preferserverciphersuites", skip_serializing)]
    pub prefer_server_cipher_suites: Option<Ignored>,
    /// `disableSessionTickets`: resumption by the session cache only.
    #[serde(default, alias = "disablesessiontickets")]
    pub disable_session_tickets: bool,
}

/// `clientAuth` of TLS options.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientAuth {
    /// CA bundles (paths or inline PEM) client certificates are verified against.
    #[serde(default, alias = "cafiles")]
    pub ca_files: Vec<String>,
    /// `NoClientCert` (default), `RequestClientCert`, `RequireAnyClientCert`,
    /// `VerifyClientCertIfGiven`, `RequireAndVerifyClientCert`.
    #[serde(default, alias = "clientauthtype", skip_serializing_if = "Option::is_none")]
    pub client_auth_type: Option<String>,
}

/// A router's `tls` section: the router is served on TLS connections only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouterTls {
    /// The TLS options by name (`modern`, `modern@file`); `default` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
    /// The ACME resolver that orders its certificates.
    #[serde(default, alias = "certresolver", skip_serializing_if = "Option::is_none")]
    pub cert_resolver: Option<String>,
    /// Names to order certificates for (else the hosts of the rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<Domain>,
    /// `passthrough` is a TCP router's key; accepted on HTTP routers by Traefik and ignored.
    #[serde(default, skip_serializing)]
    pub passthrough: Option<bool>,
}

/// `tls.domains[n]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// The main name.
    pub main: String,
    /// Further names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
}

impl TlsConfig {
    /// Whether the section is empty.
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty() && self.options.is_empty() && self.stores.is_empty()
    }
}
