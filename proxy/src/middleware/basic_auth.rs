//! `basicAuth`: HTTP Basic authentication against htpasswd users.
//! <https://doc.traefik.io/traefik/middlewares/http/basicauth/>
//!
//! Hashes: bcrypt (`htpasswd -B`: `$2a$`, `$2b$`, `$2x$`, `$2y$`), MD5-crypt (`htpasswd -m`:
//! `$apr1$`; and `$1$`) and `{SHA}` (`htpasswd -s`). The merge already refused any other format,
//! so a user can never be let in by a hash drover does not understand.
//!
//! Timing: a name that is not a user is checked against a real hash of the middleware anyway,
//! and digests are compared in constant time, so the answer's delay does not tell whether a user
//! exists. bcrypt is deliberately slow (tens of milliseconds), so it runs on the blocking pool,
//! never on the worker thread that serves other requests.

use base64::Engine as _;
use drover_providers::middlewares::{HashFormat, HtpasswdUser};
use drover_providers::model::middleware as model;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::{md5_crypt, Req, Step};

/// A compiled `basicAuth`.
pub struct BasicAuth {
    users: Vec<HtpasswdUser>,
    challenge: HeaderValue,
    header_field: Option<HeaderName>,
    remove_header: bool,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// The user and password of an `Authorization: Basic …` header.
fn credentials(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let text = value.to_str().ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Whether `password` matches `user`'s hash.
async fn verify(user: &HtpasswdUser, password: Vec<u8>) -> bool {
    match user.format {
        HashFormat::Bcrypt => {
            let hash = user.hash.clone();
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
        }
        HashFormat::Md5Crypt => {
            md5_crypt::rehash(&password, &user.hash).is_some_and(|h| bool::from(h.as_bytes().ct_eq(user.hash.as_bytes())))
        }
        HashFormat::Sha1 => {
            let digest = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(&password));
            let expected = user.hash.strip_prefix("{SHA}").unwrap_or("");
            bool::from(digest.as_bytes().ct_eq(expected.as_bytes()))
        }
    }
}

impl BasicAuth {
    /// Compiles the model with the users the merge read (from `users` and `usersFile`).
    pub fn build(m: &model::BasicAuth, users: &[HtpasswdUser]) -> Self {
        let realm = m.realm.as_deref().filter(|r| !r.is_empty()).unwrap_or("traefik");
        Self {
            users: users.to_vec(),
            // The merge refused realms that are not header text or contain `"`.
            challenge: HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
                .unwrap_or(HeaderValue::from_static("Basic realm=\"traefik\"")),
            header_field: m.header_field.as_deref().and_then(|f| HeaderName::from_bytes(f.as_bytes()).ok()),
            remove_header: m.remove_header,
        }
    }

    fn refuse(&self) -> Step {
        let mut response = Response::new(bytes::Bytes::from_static(b"401 Unauthorized\n"));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(header::WWW_AUTHENTICATE, self.challenge.clone());
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        Step::Answer(response)
    }

    /// Lets the request through with valid credentials, else answers 401 with the challenge.
    pub async fn request(&self, req: &mut Req<'_>) -> Step {
        let Some((name, password)) = req.parts.headers.get(header::AUTHORIZATION).and_then(credentials) else {
            return self.refuse();
        };
        let (user, known) = match self.users.iter().find(|u| u.name == name) {
            Some(user) => (user, true),
            // Unknown users cost what known ones cost.
            None => match self.users.first() {
                Some(dummy) => (dummy, false),
                None => return self.refuse(),
            },
        };
        if !(verify(user, password).await && known) {
            return self.refuse();
        }
        if self.remove_header {
            req.parts.headers.remove(header::AUTHORIZATION);
        }
        if let Some(field) = &self.header_field {
            if let Ok(value) = HeaderValue::from_str(&name) {
                req.parts.headers.insert(field.clone(), value);
            }
        }
        Step::Next
    }

    /// What it would decide, without checking the password (the explain API shows no secrets).
    pub fn explain(&self, req: &Req<'_>) -> String {
        match req.parts.headers.get(header::AUTHORIZATION).and_then(credentials) {
            Some(_) => "Basic credentials are present; the password is checked only on a real request".into(),
            None => "no Basic credentials: drover answers 401 with the challenge".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(line: &str) -> HtpasswdUser {
        let (name, hash) = line.split_once(':').unwrap();
        HtpasswdUser {
            name: name.into(),
            hash: hash.into(),
            format: HashFormat::of(hash).unwrap(),
        }
    }

    #[tokio::test]
    async fn every_htpasswd_format_verifies() {
        // `htpasswd -nbm alice secret`, `-nbs bob secret`, `-nbB -C 4 carol secret`.
        for line in [
            "alice:$apr1$lckapclo$D875KIBAocbn8oOD1dGK30",
            "bob:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
            "carol:$2y$04$4srqueH3WSFTHMVfQTU4BOYRxd1fy1gK4olpn2C/4O3qF2MmqXPDm",
        ] {
            let u = user(line);
            assert!(verify(&u, b"secret".to_vec()).await, "{line}");
            assert!(!verify(&u, b"Secret".to_vec()).await, "{line}");
        }
    }

    #[test]
    fn credentials_are_read_from_the_basic_scheme_only() {
        let v = HeaderValue::from_static("Basic YWxpY2U6c2U6Y3JldA==");
        assert_eq!(credentials(&v), Some(("alice".into(), b"se:cret".to_vec())));
        assert_eq!(credentials(&HeaderValue::from_static("Bearer abc")), None);
        assert_eq!(credentials(&HeaderValue::from_static("Basic !!!")), None);
    }
}
