//! The one error that crosses a provider's boundary: what a constructor refuses and what a running
//! provider reports.
//!
//! Every provider talks to a different source (a file, the Docker daemon, Consul, Marathon,
//! nameservers), and each has its own classified error inside (`ConsulError`, Docker's
//! `ApiError`, Marathon's `ClientError`, DNS lookup failures). What leaves the provider is one
//! type, in hyper's shape: an opaque [`ProviderError`] with a private kind and public predicates,
//! so that whoever consumes it (the aggregator, the admin side, a test) asks
//! [`ProviderError::is_refused`] instead of matching on text. Its `Display` is the message a user
//! reads on `/api/providers/<name>`: what went wrong and where (the setting, the endpoint, the
//! file and line), and what drover does about it.

use std::fmt;

/// Why a provider cannot start, or why its source failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderError {
    kind: Kind,
    message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Config,
    Unreachable,
    Refused,
    BadAnswer,
}

impl ProviderError {
    /// The settings under `[section]` (`providers.docker`…) cannot be used; `why` names the key.
    /// A `why` that already starts with the section's dotted name is not prefixed twice.
    pub fn config(section: &str, why: impl fmt::Display) -> Self {
        let why = why.to_string();
        let message = if why.starts_with(section) {
            why
        } else {
            format!("[{section}] {why}")
        };
        Self {
            kind: Kind::Config,
            message,
        }
    }

    /// The source could not be reached or could not answer now (no connection, a timeout, a
    /// 5xx, SERVFAIL, a file that cannot be read or watched).
    pub fn unreachable(why: impl fmt::Display) -> Self {
        Self::new(Kind::Unreachable, why)
    }

    /// The source refused drover (401, 403: credentials, an ACL token).
    pub fn refused(why: impl fmt::Display) -> Self {
        Self::new(Kind::Refused, why)
    }

    /// The source answered with something drover cannot use (unreadable JSON, an unexpected
    /// status, a file that does not parse).
    pub fn bad_answer(why: impl fmt::Display) -> Self {
        Self::new(Kind::BadAnswer, why)
    }

    fn new(kind: Kind, why: impl fmt::Display) -> Self {
        Self {
            kind,
            message: why.to_string(),
        }
    }

    /// The same error with where it happened put first (`swarm: …`).
    pub fn at(mut self, place: impl fmt::Display) -> Self {
        self.message = format!("{place}: {}", self.message);
        self
    }

    /// The same error with what drover does about it appended (`keeping the last good routes`).
    pub fn note(mut self, note: impl fmt::Display) -> Self {
        self.message = format!("{}; {note}", self.message);
        self
    }

    /// The same kind of error, told by `message` (a summary of several failures of one kind).
    pub(crate) fn retold(mut self, message: String) -> Self {
        self.message = message;
        self
    }

    /// The provider's own settings are wrong; retrying will not help.
    pub fn is_config(&self) -> bool {
        self.kind == Kind::Config
    }

    /// The source could not be reached or answer for now; drover retries.
    pub fn is_unreachable(&self) -> bool {
        self.kind == Kind::Unreachable
    }

    /// The source refused drover's credentials.
    pub fn is_refused(&self) -> bool {
        self.kind == Kind::Refused
    }

    /// The source answered, but not with something drover can use.
    pub fn is_bad_answer(&self) -> bool {
        self.kind == Kind::BadAnswer
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProviderError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_their_section_once() {
        let e = ProviderError::config("providers.docker", "labelPrefix `a b`: use letters");
        assert!(e.is_config() && !e.is_unreachable());
        assert_eq!(e.to_string(), "[providers.docker] labelPrefix `a b`: use letters");
        let e = ProviderError::config("providers.dns", "providers.dns.timeout must be more than 0");
        assert_eq!(e.to_string(), "providers.dns.timeout must be more than 0");
    }

    #[test]
    fn kinds_and_notes() {
        let e = ProviderError::unreachable("GET /v1/catalog/services: cannot connect").note("keeping the last good routes");
        assert!(e.is_unreachable() && !e.is_refused() && !e.is_bad_answer() && !e.is_config());
        assert_eq!(
            e.to_string(),
            "GET /v1/catalog/services: cannot connect; keeping the last good routes"
        );
        assert!(ProviderError::refused("403").at("swarm").is_refused());
        assert_eq!(ProviderError::bad_answer("not JSON").at("swarm").to_string(), "swarm: not JSON");
        assert!(ProviderError::bad_answer("not JSON").is_bad_answer());
    }
}
