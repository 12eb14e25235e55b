//! One conversation with the CA (instant-acme does the protocol): the account, then an order
//! for a set of names with the resolver's challenge, the key and CSR, the certificate.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType, ExternalAccountKey, Identifier, NewAccount, NewOrder,
    OrderStatus, RetryPolicy,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use super::challenge::Challenges;
use super::config::{AcmeConfig, KeyType};
use super::dns01::Dns01;
use super::store::{Registration, StoredAccount};

/// How long the CA may take to validate, and then to issue: asked again after 50 ms, doubling
/// (a CA's `Retry-After` wins), so a fast CA is not waited on and a slow one is not hammered.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(50))
    .backoff(2.0)
    .timeout(Duration::from_secs(120));

/// The HTTP client instant-acme talks through: Mozilla's roots plus `caCertificates`.
fn http_client(ca_certificates: &[PathBuf]) -> Result<Box<dyn instant_acme::HttpClient>, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for file in ca_certificates {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
            .and_then(|iter| iter.collect())
            .map_err(|e| format!("caCertificates: {}: {e}", file.display()))?;
        if certs.is_empty() {
            return Err(format!("caCertificates: {}: no PEM certificate in it", file.display()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("caCertificates: {}: {e}", file.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider::shared())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS towards the CA: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build::<_, BodyWrapper<Bytes>>(connector);
    Ok(Box::new(client))
}

/// The resolver's account: the stored one when it belongs to this CA and its key is one
/// drover signs with (ECDSA P-256), else a new registration.
pub async fn account(config: &AcmeConfig, stored: Option<&StoredAccount>) -> Result<(Account, Option<StoredAccount>), String> {
    if let Some(stored) = stored {
        let same_ca = stored.ca_server.is_empty() || stored.ca_server == config.ca_server;
        let uri = stored.registration.as_ref().map(|r| r.uri.clone()).unwrap_or_default();
        if same_ca && !uri.is_empty() {
            let builder = Account::builder_with_http(http_client(&config.ca_certificates)?);
            match builder
                .from_parts(
                    uri,
                    PrivatePkcs8KeyDer::from(stored.private_key.as_slice()),
                    config.ca_server.clone(),
                )
                .await
            {
                Ok(account) => return Ok((account, None)),
                Err(e) => tracing::warn!(
                    "the stored ACME account cannot be used ({}); registering a new one (an RSA account key from Traefik is not reused)",
                    describe(e)
                ),
            }
        }
    }
    let contact: Vec<String> = config.email.iter().map(|e| format!("mailto:{e}")).collect();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = match &config.eab {
        Some(eab) => {
            use base64::Engine;
            let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(eab.hmac_encoded.trim_end_matches('='))
                .map_err(|e| format!("eab.hmacEncoded: {e}"))?;
            Some(ExternalAccountKey::new(eab.kid.clone(), &key))
        }
        None => None,
    };
    let builder = Account::builder_with_http(http_client(&config.ca_certificates)?);
    let (account, credentials) = builder
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            config.ca_server.clone(),
            eab.as_ref(),
        )
        .await
        .map_err(|e| format!("registering with {}: {}", config.ca_server, describe(e)))?;
    let stored = StoredAccount {
        email: config.email.clone().unwrap_or_default(),
        registration: Some(Registration {
            body: serde_json::json!({ "status": "valid", "contact": contact }),
            uri: account.id().to_string(),
        }),
        private_key: credentials_key(&credentials),
        key_type: config.key_type.stored().to_string(),
        ca_server: config.ca_server.clone(),
    };
    Ok((account, Some(stored)))
}

fn credentials_key(credentials: &AccountCredentials) -> Vec<u8> {
    credentials.private_key().secret_pkcs8_der().to_vec()
}

/// An instant-acme error as one line.
pub fn describe(e: instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(problem) => match (&problem.detail, &problem.r#type) {
            (Some(detail), Some(kind)) => format!("{detail} ({})", kind.rsplit(':').next().unwrap_or(kind)),
            (Some(detail), None) => detail.clone(),
            _ => problem.to_string(),
        },
        other => other.to_string(),
    }
}

/// A new certificate key of `kind`.
pub fn new_key(kind: KeyType) -> Result<rcgen::KeyPair, String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot generate a {kind:?} key: {e}");
    match kind {
        KeyType::Ec256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| fail(&e)),
        KeyType::Ec384 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(|e| fail(&e)),
        KeyType::Rsa2048 | KeyType::Rsa4096 | KeyType::Rsa8192 => {
            use rsa::pkcs8::EncodePrivateKey;
            let bits = match kind {
                KeyType::Rsa2048 => 2048,
                KeyType::Rsa4096 => 4096,
                _ => 8192,
            };
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).map_err(|e| fail(&e))?;
            let der = key.to_pkcs8_der().map_err(|e| fail(&e))?;
            let der = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256).map_err(|e| fail(&e))
        }
    }
}

/// What an order produced: the PEM chain and the PEM key.
pub struct Issued {
    /// The certificate chain, PEM.
    pub chain: String,
    /// Its private key, PEM.
    pub key: String,
}

/// The challenge an authorization for `name` is answered with: DNS-01 for a wildcard (the only
/// way), else HTTP-01, TLS-ALPN-01, DNS-01 in that order among those configured.
fn pick(config: &AcmeConfig, wildcard: bool) -> Option<ChallengeType> {
    if wildcard {
        return config.dns_challenge.as_ref().map(|_| ChallengeType::Dns01);
    }
    if config.http_challenge.is_some() {
        Some(ChallengeType::Http01)
    } else if config.tls_challenge.is_some() {
        Some(ChallengeType::TlsAlpn01)
    } else {
        config.dns_challenge.as_ref().map(|_| ChallengeType::Dns01)
    }
}

/// What to undo once an order is over, whatever its outcome.
#[derive(Default)]
struct Cleanup {
    http: Vec<String>,
    tls: Vec<String>,
    dns: Vec<(String, String)>,
}

/// Orders a certificate for `names` (the first is `main`).
pub async fn order(
    account: &Account,
    config: &AcmeConfig,
    names: &[String],
    challenges: &Challenges,
    dns: Option<&Dns01>,
) -> Result<Issued, String> {
    let mut cleanup = Cleanup::default();
    let result = order_inner(account, config, names, challenges, dns, &mut cleanup).await;
    let shared = super::challenge::shared_dir(&config.storage);
    for token in &cleanup.http {
        challenges.forget_http01(token, Some(&shared));
    }
    for name in &cleanup.tls {
        challenges.forget_tls_alpn01(name);
    }
    if let Some(dns) = dns {
        for (name, value) in &cleanup.dns {
            if let Err(e) = dns.cleanup(name, value).await {
                tracing::warn!("DNS-01: cannot remove the challenge record for {name}: {e}");
            }
        }
    }
    result
}

async fn order_inner(
    account: &Account,
    config: &AcmeConfig,
    names: &[String],
    challenges: &Challenges,
    dns: Option<&Dns01>,
    cleanup: &mut Cleanup,
) -> Result<Issued, String> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {}", describe(e)))?;
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(|e| format!("authorization: {}", describe(e)))?;
        let identifier = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => return Err(format!("{identifier}: the authorization is {other:?}")),
        }
        let wildcard = authorization.identifier().wildcard;
        let kind = pick(config, wildcard)
            .ok_or_else(|| format!("{identifier}: a wildcard needs dnsChallenge (HTTP-01 and TLS-ALPN-01 cannot prove one)"))?;
        let mut challenge = authorization
            .challenge(kind.clone())
            .ok_or_else(|| format!("{identifier}: the CA offers no {kind:?} challenge"))?;
        let key_authorization = challenge.key_authorization();
        let bare = identifier.trim_start_matches("*.").to_string();
        match kind {
            ChallengeType::Http01 => {
                let shared = super::challenge::shared_dir(&config.storage);
                challenges.answer_http01(&challenge.token, key_authorization.as_str(), Some(&shared));
                cleanup.http.push(challenge.token.clone());
            }
            ChallengeType::TlsAlpn01 => {
                challenges.answer_tls_alpn01(&bare, key_authorization.digest().as_ref())?;
                cleanup.tls.push(bare);
            }
            _ => {
                let dns = dns.ok_or("dnsChallenge is not configured")?;
                let value = key_authorization.dns_value();
                dns.present(&identifier, &value)
                    .await
                    .map_err(|e| format!("{identifier}: DNS-01: {e}"))?;
                cleanup.dns.push((identifier.clone(), value.clone()));
                dns.wait_propagated(&identifier, &value)
                    .await
                    .map_err(|e| format!("{identifier}: DNS-01: {e}"))?;
            }
        }
        challenge.set_ready().await.map_err(|e| format!("{identifier}: {}", describe(e)))?;
    }
    let status = order.poll_ready(&POLL).await.map_err(|e| format!("validation: {}", describe(e)))?;
    if status != OrderStatus::Ready {
        return Err(format!("validation failed: {}", why_invalid(&mut order).await));
    }
    // RSA keys take up to seconds to make: off the control runtime, which serves the API.
    let kind = config.key_type;
    let key = tokio::task::spawn_blocking(move || new_key(kind))
        .await
        .map_err(|e| format!("key generation: {e}"))??;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| format!("CSR: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| format!("CSR: {e}"))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| format!("finalize: {}", describe(e)))?;
    let chain = order
        .poll_certificate(&POLL)
        .await
        .map_err(|e| format!("certificate: {}", describe(e)))?;
    Ok(Issued {
        chain,
        key: key.serialize_pem(),
    })
}

/// The CA's reasons for an invalid order: each failed challenge's error.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let identifier = authorization.identifier().to_string();
        if let Ok(state) = authorization.refresh().await {
            for challenge in &state.challenges {
                if let Some(error) = &challenge.error {
                    reasons.push(format!("{identifier}: {}", describe(instant_acme::Error::Api(error.clone()))));
                }
            }
        }
    }
    if reasons.is_empty() {
        "the order became invalid".into()
    } else {
        reasons.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_type_makes_a_csr_and_a_key_rustls_serves() {
        for kind in [KeyType::Ec256, KeyType::Ec384, KeyType::Rsa2048] {
            let key = new_key(kind).expect("a key");
            let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).expect("params");
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.serialize_request(&key).expect("a CSR");
            let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("DER");
            crate::tls::provider::provider()
                .key_provider
                .load_private_key(der)
                .unwrap_or_else(|e| panic!("{kind:?}: rustls cannot serve the key: {e}"));
        }
    }

    #[test]
    fn a_wildcard_uses_dns01_and_other_names_prefer_http01() {
        let config: AcmeConfig = toml::from_str("httpChallenge = { entryPoint = \"web\" }\ntlsChallenge = {}\n").expect("parses");
        assert_eq!(pick(&config, false), Some(ChallengeType::Http01));
        assert_eq!(pick(&config, true), None, "no DNS-01: a wildcard cannot be proved");
        let tls_only: AcmeConfig = toml::from_str("tlsChallenge = {}\n").expect("parses");
        assert_eq!(pick(&tls_only, false), Some(ChallengeType::TlsAlpn01));
    }
}
