//! The rustls crypto provider, chosen once for all of drover: TLS termination, TLS to servers,
//! session tickets, ACME's TLS client and challenge certificates. aws-lc-rs (the default `aws-lc`
//! cargo feature), which carries OpenSSL's AVX-512 RSA code: RSA-2048 handshakes cost 0.62× of
//! ring's CPU here, ECDSA ones 0.96× (benches/README.md, "TLS"); ring with
//! `--no-default-features`.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::ProducesTickets;

/// The provider's name, for the log and the benches.
pub const NAME: &str = if cfg!(feature = "aws-lc") { "aws-lc-rs" } else { "ring" };

/// A fresh provider (its cipher suites and key exchanges may then be narrowed by TLS options).
pub fn provider() -> CryptoProvider {
    #[cfg(feature = "aws-lc")]
    {
        rustls::crypto::aws_lc_rs::default_provider()
    }
    #[cfg(not(feature = "aws-lc"))]
    {
        rustls::crypto::ring::default_provider()
    }
}

/// The provider, shared.
pub fn shared() -> Arc<CryptoProvider> {
    Arc::new(provider())
}

/// A session ticketer whose keys rotate (rustls's default period).
pub fn ticketer() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    #[cfg(feature = "aws-lc")]
    {
        rustls::crypto::aws_lc_rs::Ticketer::new()
    }
    #[cfg(not(feature = "aws-lc"))]
    {
        rustls::crypto::ring::Ticketer::new()
    }
}
