//! Who may use the admin side: optional HTTP basic auth (bcrypt hashes, as `htpasswd -B` writes
//! them) and/or a bearer token, from `[api]` in the static configuration.
//!
//! What is protected: everything but `/ping` (load balancers and orchestrators probe it) and
//! `/api/openapi.json` (a description, no data). The dashboard's files hold no data either; they
//! are protected only when basic auth is on, so that the browser asks for the password when the
//! page opens. With a bearer token alone the page loads and asks for the token, which it keeps
//! in the tab's session storage and sends with every API call.
//!
//! bcrypt is slow on purpose (tens of milliseconds), so checks run on the blocking pool, at most
//! two at a time (a flood of wrong passwords costs two cores at most, never the control
//! thread), and an accepted `Authorization` value is remembered for a few minutes so that the
//! dashboard's polling does not pay for bcrypt on every call. Neither the hashes nor the token
//! ever appear in an answer or a log line.

use std::sync::Mutex;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::Api;

/// How long an accepted `Authorization` value is trusted without running bcrypt again.
const REMEMBER_FOR: Duration = Duration::from_secs(300);
/// How many accepted values are remembered at most.
const REMEMBER_AT_MOST: usize = 64;

/// The admin side's credentials.
pub struct Auth {
    users: Vec<(String, String)>,
    token: Option<String>,
    accepted: Mutex<Vec<(String, Instant)>>,
    bcrypt_slots: Semaphore,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("users", &self.users.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Checks `[api]` credentials when the configuration is read: every `basicAuth` entry must be
/// `user:hash` with a bcrypt hash, and a bearer token must not be empty.
pub fn check(api: &Api) -> Result<(), String> {
    for (i, entry) in api.basic_auth.iter().enumerate() {
        let (user, hash) = split_entry(entry.expose())
            .ok_or_else(|| format!("api.basicAuth[{i}]: expected `user:hash` with a bcrypt hash (htpasswd -nB user), found no `:`"))?;
        if user.is_empty() {
            return Err(format!("api.basicAuth[{i}]: the user name is empty"));
        }
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(format!(
                "api.basicAuth[{i}] (user `{user}`): the hash is not a bcrypt hash (`$2y$…`, as `htpasswd -nB {user}` prints)"
            ));
        }
    }
    if let Some(token) = &api.bearer_token {
        if token.expose().trim().is_empty() {
            return Err("api.bearerToken is empty".into());
        }
    }
    Ok(())
}

fn split_entry(entry: &str) -> Option<(&str, &str)> {
    entry.trim().split_once(':')
}

impl Auth {
    /// The credentials of `[api]` (already validated by [`check`]; an entry that is not is
    /// skipped with an error log that does not show it).
    pub fn from_config(api: &Api) -> Self {
        let mut users = Vec::new();
        for (i, entry) in api.basic_auth.iter().enumerate() {
            match split_entry(entry.expose()) {
                Some((user, hash)) if hash.parse::<bcrypt::HashParts>().is_ok() => users.push((user.to_string(), hash.to_string())),
                _ => tracing::error!("api.basicAuth[{i}] is not `user:bcrypt-hash`; ignored"),
            }
        }
        Self {
            users,
            token: api.bearer_token.as_ref().map(|t| t.expose().trim().to_string()),
            accepted: Mutex::new(Vec::new()),
            bcrypt_slots: Semaphore::new(2),
        }
    }

    /// Whether any credential is configured.
    pub fn is_enabled(&self) -> bool {
        !self.users.is_empty() || self.token.is_some()
    }

    /// Whether basic auth is configured.
    pub fn basic(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether a bearer token is configured.
    pub fn bearer(&self) -> bool {
        self.token.is_some()
    }

    /// Whether a request for `path` must carry credentials.
    pub fn required_for(&self, path: &str) -> bool {
        if !self.is_enabled() || path == "/ping" || path == "/api/openapi.json" {
            return false;
        }
        if path == "/" || path == "/dashboard" || path.starts_with("/dashboard/") {
            return self.basic();
        }
        true
    }

    /// Whether the request's `Authorization` header carries valid credentials.
    pub async fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self
                .token
                .as_deref()
                .is_some_and(|token| bool::from(token.as_bytes().ct_eq(rest.as_bytes())));
        }
        if !scheme.eq_ignore_ascii_case("basic") || self.users.is_empty() {
            return false;
        }
        if self.remembered(value) {
            return true;
        }
        let Some((user, password)) = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|text| text.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())))
        else {
            return false;
        };
        // An unknown user costs a bcrypt run too, so timing does not tell which users exist.
        let (hash, known) = match self.users.iter().find(|(u, _)| *u == user) {
            Some((_, hash)) => (hash.clone(), true),
            None => (self.users[0].1.clone(), false),
        };
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if verified && known {
            self.remember(value);
            return true;
        }
        false
    }

    /// The 401 answer, with the challenge a browser or client understands.
    pub fn refusal(&self) -> Response {
        let mut response = super::error(StatusCode::UNAUTHORIZED, "authentication required");
        let headers = response.headers_mut();
        if self.basic() {
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"drover\", charset=\"UTF-8\""),
            );
        }
        if self.bearer() {
            headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"drover\""));
        }
        response
    }

    fn remembered(&self, value: &str) -> bool {
        let now = Instant::now();
        let mut accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        accepted.retain(|(_, at)| now.saturating_duration_since(*at) < REMEMBER_FOR);
        accepted.iter().any(|(v, _)| bool::from(v.as_bytes().ct_eq(value.as_bytes())))
    }

    fn remember(&self, value: &str) {
        let mut accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        if accepted.len() >= REMEMBER_AT_MOST {
            accepted.remove(0);
        }
        accepted.push((value.to_string(), Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn api(basic: &[&str], token: Option<&str>) -> Api {
        Api {
            basic_auth: basic.iter().map(|s| Secret::new(s.to_string())).collect(),
            bearer_token: token.map(|t| Secret::new(t.to_string())),
            ..Api::default()
        }
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {value}")).unwrap());
        h
    }

    #[tokio::test]
    async fn basic_auth_checks_bcrypt_and_bearer_compares_the_token() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let entry = format!("admin:{hash}");
        let a = Auth::from_config(&api(&[&entry], Some("tok-123")));
        assert!(a.allows(&basic("admin", "s3cret")).await);
        assert!(a.allows(&basic("admin", "s3cret")).await, "remembered");
        assert!(!a.allows(&basic("admin", "wrong")).await);
        assert!(!a.allows(&basic("nobody", "s3cret")).await);
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer tok-123"));
        assert!(a.allows(&h).await);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer tok-12"));
        assert!(!a.allows(&h).await);
        assert!(!a.allows(&HeaderMap::new()).await);
        assert!(!format!("{a:?}").contains("tok-123") && !format!("{a:?}").contains(&hash));
    }

    #[test]
    fn what_is_protected() {
        let none = Auth::from_config(&api(&[], None));
        assert!(!none.required_for("/api/overview"));
        let token = Auth::from_config(&api(&[], Some("t")));
        assert!(token.required_for("/api/overview") && token.required_for("/metrics"));
        assert!(!token.required_for("/ping") && !token.required_for("/dashboard/") && !token.required_for("/api/openapi.json"));
        let hash = bcrypt::hash("x", 4).unwrap();
        let user = Auth::from_config(&api(&[&format!("u:{hash}")], None));
        assert!(user.required_for("/dashboard/") && !user.required_for("/ping"));
    }

    #[test]
    fn bad_entries_are_named() {
        assert!(check(&api(&["admin"], None)).unwrap_err().contains("api.basicAuth[0]"));
        assert!(check(&api(&["admin:plaintext"], None)).unwrap_err().contains("not a bcrypt hash"));
        assert!(check(&api(&[], Some(" "))).is_err());
        let hash = bcrypt::hash("x", 4).unwrap();
        assert!(check(&api(&[&format!("admin:{hash}")], Some("t"))).is_ok());
    }
}
