//! `[http.serversTransports.<name>]`: how drover talks to a service's servers (TLS verification,
//! client certificates, HTTP/2, idle connections, deadlines), in Traefik's keys, plus drover's
//! own per-server limit (`maxConnsPerHost`, `queueTimeout`, `maxQueued`).
//!
//! Every field is optional: one a transport leaves unset takes drover's static
//! `[serversTransport]` value, so a transport can say only what differs. A service names its
//! transport in `loadBalancer.serversTransport` (`name`, or `name@provider` for another
//! provider's). Each key also has an all-lowercase alias, so label-shaped keys fill the same
//! structs.

use serde::{Deserialize, Serialize};

use super::Ignored;
use crate::duration::ConfigDuration;

/// One servers transport.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServersTransport {
    /// The name sent in SNI and checked against the server's certificate; default the server
    /// URL's host.
    #[serde(default, alias = "servername", skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any server certificate (still TLS, not verified).
    #[serde(default, alias = "insecureskipverify", skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// CA certificates to verify servers with, as PEM files (or inline PEM), instead of the
    /// bundled Mozilla roots.
    #[serde(default, rename = "rootCAs", alias = "rootcas", skip_serializing_if = "Option::is_none")]
    pub root_cas: Option<Vec<String>>,
    /// Client certificates presented to servers that ask for one (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<Vec<ClientCertificate>>,
    /// Idle keep-alive connections kept per server; negative keeps none.
    #[serde(default, alias = "maxidleconnsperhost", skip_serializing_if = "Option::is_none")]
    pub max_idle_conns_per_host: Option<i64>,
    /// drover (Go's `Transport.MaxConnsPerHost` name): requests in flight to one server across
    /// all workers (busy connections, HTTP/2 streams); more wait in a queue. 0 for no limit.
    #[serde(default, alias = "maxconnsperhost", skip_serializing_if = "Option::is_none")]
    pub max_conns_per_host: Option<u32>,
    /// drover: how long a request over `maxConnsPerHost` waits for a slot (then 503); 0 does
    /// not wait.
    #[serde(default, alias = "queuetimeout", skip_serializing_if = "Option::is_none")]
    pub queue_timeout: Option<ConfigDuration>,
    /// drover: requests that may wait for one server at once (more: 503 at once).
    #[serde(default, alias = "maxqueued", skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<u32>,
    /// Deadlines.
    #[serde(default, alias = "forwardingtimeouts", skip_serializing_if = "Option::is_none")]
    pub forwarding_timeouts: Option<TransportTimeouts>,
    /// Never speak HTTP/2 to TLS servers, even when they offer it.
    #[serde(default, rename = "disableHTTP2", alias = "disablehttp2", skip_serializing_if = "Option::is_none")]
    pub disable_http2: Option<bool>,
    /// Cipher suites for TLS 1.2 and 1.3, by IANA name as Traefik writes them.
    #[serde(default, alias = "ciphersuites", skip_serializing_if = "Option::is_none")]
    pub cipher_suites: Option<Vec<String>>,
    /// Lowest TLS version (`VersionTLS12`, `VersionTLS13`).
    #[serde(default, alias = "minversion", skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    /// Highest TLS version (`VersionTLS12`, `VersionTLS13`).
    #[serde(default, alias = "maxversion", skip_serializing_if = "Option::is_none")]
    pub max_version: Option<String>,
    /// A URI the server's certificate must carry as a SAN (not implemented: a transport that
    /// sets it is refused rather than run without the check).
    #[serde(default, rename = "peerCertURI", alias = "peercerturi", skip_serializing_if = "Option::is_none")]
    pub peer_cert_uri: Option<String>,
    /// `spiffe` (not implemented: a transport that sets it is refused).
    #[serde(default, skip_serializing)]
    pub spiffe: Option<Ignored>,
}

/// A client certificate and its key, as files (or inline PEM).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientCertificate {
    /// The certificate chain, leaf first.
    #[serde(alias = "certfile")]
    pub cert_file: String,
    /// Its private key.
    #[serde(alias = "keyfile", serialize_with = "redact_inline")]
    pub key_file: String,
}

/// A key file's name is shown; an inline key never is.
fn redact_inline<S: serde::Serializer>(value: &str, ser: S) -> Result<S::Ok, S::Error> {
    if value.trim_start().starts_with("-----BEGIN") {
        ser.serialize_str("(inline PEM, redacted)")
    } else {
        ser.serialize_str(value)
    }
}

/// [`redact_inline`] for a key that may be absent (skipped when it is).
pub(crate) fn redact_inline_option<S: serde::Serializer>(value: &Option<String>, ser: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => redact_inline(value, ser),
        None => ser.serialize_none(),
    }
}

/// `forwardingTimeouts` of a servers transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TransportTimeouts {
    /// Connecting (TCP and the TLS handshake).
    #[serde(default, alias = "dialtimeout", skip_serializing_if = "Option::is_none")]
    pub dial_timeout: Option<ConfigDuration>,
    /// From the end of the request to the response head; 0 waits forever.
    #[serde(default, alias = "responseheadertimeout", skip_serializing_if = "Option::is_none")]
    pub response_header_timeout: Option<ConfigDuration>,
    /// An idle pooled connection older than this is closed.
    #[serde(default, alias = "idleconntimeout", skip_serializing_if = "Option::is_none")]
    pub idle_conn_timeout: Option<ConfigDuration>,
    /// HTTP/2: with no frame from the server for this long, drover pings it; 0 never pings.
    #[serde(default, alias = "readidletimeout", skip_serializing_if = "Option::is_none")]
    pub read_idle_timeout: Option<ConfigDuration>,
    /// HTTP/2: a ping unanswered for this long closes the connection (default 15 s).
    #[serde(default, alias = "pingtimeout", skip_serializing_if = "Option::is_none")]
    pub ping_timeout: Option<ConfigDuration>,
}

#[cfg(test)]
mod tests {
    use crate::model::DynamicConfig;

    #[test]
    fn traefiks_keys_and_a_services_reference_are_read() {
        let config = DynamicConfig::from_toml(
            r#"
            [http.serversTransports.private]
            serverName = "api.internal"
            rootCAs = ["/etc/ca.pem"]
            disableHTTP2 = true
            maxIdleConnsPerHost = 7
            maxConnsPerHost = 64
            queueTimeout = "2s"
            maxQueued = 100
            peerCertURI = "spiffe://x"
            [[http.serversTransports.private.certificates]]
            certFile = "/c.pem"
            keyFile = "/k.pem"
            [http.serversTransports.private.forwardingTimeouts]
            dialTimeout = "2s"
            pingTimeout = 3
            [http.services.s.loadBalancer]
            serversTransport = "private"
            [[http.services.s.loadBalancer.servers]]
            url = "https://10.0.0.1"
            "#,
        )
        .expect("parses");
        let t = &config.http.servers_transports["private"];
        assert_eq!(t.server_name.as_deref(), Some("api.internal"));
        assert_eq!(t.root_cas.as_deref(), Some(&["/etc/ca.pem".to_string()][..]));
        assert_eq!(t.disable_http2, Some(true));
        assert_eq!((t.max_conns_per_host, t.max_queued), (Some(64), Some(100)));
        assert_eq!(t.queue_timeout.map(|d| d.0.as_secs()), Some(2));
        assert_eq!(t.certificates.as_ref().map(|c| c[0].key_file.as_str()), Some("/k.pem"));
        let timeouts = t.forwarding_timeouts.expect("timeouts");
        assert_eq!(timeouts.dial_timeout.map(|d| d.0.as_secs()), Some(2));
        assert_eq!(timeouts.ping_timeout.map(|d| d.0.as_secs()), Some(3));
        let lb = config.http.services["s"].load_balancer.as_ref().expect("lb");
        assert_eq!(lb.servers_transport.as_deref(), Some("private"));
        assert!(config.unsupported().is_empty(), "{:?}", config.unsupported());
    }

    #[test]
    fn an_inline_key_is_never_shown() {
        let cert = super::ClientCertificate {
            cert_file: "/c.pem".into(),
            key_file: "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n".into(),
        };
        let shown = serde_json::to_string(&cert).expect("serialises");
        assert!(!shown.contains("secret") && shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn a_misspelt_key_is_an_error_naming_it() {
        let err = DynamicConfig::from_toml("[http.serversTransports.t]\nrootCA = [\"x\"]\n").unwrap_err();
        assert!(err.to_string().contains("rootCA"), "{err}");
    }
}
