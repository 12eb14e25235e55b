//! Keeping secrets out of admin answers.
//!
//! Two kinds of secret can reach the admin side through the dynamic configuration: headers of
//! active health checks (an `Authorization` a backend's check endpoint wants) and credentials
//! written into a URL (`http://user:password@host`), which drover refuses as a server URL but
//! which still appear in the configuration as given and in the error explaining the refusal.
//! Every JSON answer passes through [`scrub`]: check-header values are replaced (except a few
//! harmless ones) and URL credentials are cut from every string, wherever they appear.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

/// What replaces a secret.
pub const REDACTED: &str = "REDACTED";

/// Check headers whose values are shown as they are.
const HARMLESS_HEADERS: [&str; 4] = ["host", "user-agent", "accept", "content-type"];

/// Removes secrets from an answer, in place.
pub fn scrub(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Some(clean) = without_url_credentials(text) {
                *text = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == "headers" {
                    redact_headers(item);
                }
                scrub(item);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Header sets appear as an object (`{"Authorization": "…"}`, the configuration as written) or
/// as `[name, value]` pairs (the resolved policy).
fn redact_headers(headers: &mut Value) {
    let harmless = |name: &str| HARMLESS_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h));
    match headers {
        Value::Object(map) => {
            for (name, value) in map.iter_mut() {
                if !harmless(name) && value.is_string() {
                    *value = REDACTED.into();
                } else if value.is_object() {
                    // A `headers` middleware: its custom header sets may carry credentials
                    // meant for a backend.
                    redact_headers(value);
                }
            }
        }
        Value::Array(pairs) => {
            for pair in pairs.iter_mut() {
                if let Value::Array(kv) = pair {
                    let keep = kv.first().and_then(Value::as_str).is_some_and(harmless);
                    if let (false, Some(v)) = (keep, kv.get_mut(1)) {
                        *v = REDACTED.into();
                    }
                }
            }
        }
        _ => {}
    }
}

/// `text` with the user-info part of every URL replaced, or `None` when there is none.
fn without_url_credentials(text: &str) -> Option<String> {
    if !text.contains('@') || !text.contains("://") {
        return None;
    }
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re = RE
        .get_or_init(|| Regex::new(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s`'\x22]+@").ok())
        .as_ref()?;
    re.is_match(text)
        .then(|| re.replace_all(text, format!("${{1}}{REDACTED}@").as_str()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn url_credentials_and_check_headers_are_removed() {
        let mut v = json!({
            "error": ["server url `http://bob:hunter2@10.0.0.1:80`: credentials in a server url are not supported"],
            "loadBalancer": {"servers": [{"url": "http://bob:hunter2@10.0.0.1"}],
                             "healthCheck": {"path": "/h", "headers": {"Authorization": "Bearer abc", "Host": "a"}}},
            "health": {"active": {"headers": [["X-Token", "abc"], ["user-agent", "probe"]]}},
            "plain": "mail me at a@b.c"
        });
        scrub(&mut v);
        let text = v.to_string();
        assert!(!text.contains("hunter2") && !text.contains("abc"), "{text}");
        assert!(text.contains("http://REDACTED@10.0.0.1"), "{text}");
        assert_eq!(v["loadBalancer"]["healthCheck"]["headers"]["Host"], "a");
        assert_eq!(v["health"]["active"]["headers"][1][1], "probe");
        assert_eq!(v["plain"], "mail me at a@b.c");
    }
}
