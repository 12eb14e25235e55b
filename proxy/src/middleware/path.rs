//! Path rewrites: `stripPrefix`, `stripPrefixRegex`, `addPrefix`, `replacePath`,
//! `replacePathRegex`.
//! <https://doc.traefik.io/traefik/middlewares/http/stripprefix/> and its siblings.
//!
//! They see the path as drover routed it: already normalised (dot segments removed, `//`
//! merged, encoded unreserved characters decoded, see `forward::target`), so `/api/../admin`
//! cannot slip past a `stripPrefix` of `/api` and reach the server as something the router
//! never saw. The stripped prefix goes to `X-Forwarded-Prefix`, replacing whatever came in (a
//! client's own was already dropped unless its peer is trusted); the replaced path goes to
//! `X-Replaced-Path`. The query string is kept.

use drover_providers::model::middleware as model;
use http::header::{HeaderName, HeaderValue};
use http::Uri;
use regex::Regex;

use super::{answer, request_path, BuildError, Req, Step};

/// `X-Forwarded-Prefix`: what `stripPrefix` removed.
pub static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
/// `X-Replaced-Path`: the path before `replacePath`.
pub static X_REPLACED_PATH: HeaderName = HeaderName::from_static("x-replaced-path");

/// One compiled path rewrite.
#[derive(Debug)]
pub enum PathRewrite {
    /// Remove the first matching prefix.
    StripPrefix(Vec<String>),
    /// Remove the first match of a regex anchored at the path's start.
    StripPrefixRegex(Vec<Regex>),
    /// Prepend.
    AddPrefix(String),
    /// Replace the whole path.
    ReplacePath(String),
    /// Replace the regex's matches.
    ReplacePathRegex(Regex, String),
}

fn regex(text: &str) -> Result<Regex, BuildError> {
    Regex::new(text).map_err(|e| BuildError(format!("`{text}`: {e}")))
}

fn leading_slash(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

impl PathRewrite {
    /// `stripPrefix`.
    pub fn strip_prefix(m: &model::StripPrefix) -> Self {
        Self::StripPrefix(m.prefixes.iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect())
    }

    /// `stripPrefixRegex`.
    pub fn strip_prefix_regex(m: &model::StripPrefixRegex) -> Result<Self, BuildError> {
        Ok(Self::StripPrefixRegex(
            m.regex.iter().map(|r| regex(r.trim())).collect::<Result<_, _>>()?,
        ))
    }

    /// `addPrefix`.
    pub fn add_prefix(m: &model::AddPrefix) -> Self {
        Self::AddPrefix(leading_slash(&m.prefix))
    }

    /// `replacePath`.
    pub fn replace_path(m: &model::ReplacePath) -> Self {
        Self::ReplacePath(m.path.clone())
    }

    /// `replacePathRegex`.
    pub fn replace_path_regex(m: &model::ReplacePathRegex) -> Result<Self, BuildError> {
        Ok(Self::ReplacePathRegex(regex(&m.regex)?, m.replacement.clone()))
    }

    /// Rewrites the request's path.
    pub fn request(&self, req: &mut Req<'_>) -> Step {
        let path = request_path(req);
        let (new_path, header) = match self {
            Self::StripPrefix(prefixes) => match prefixes.iter().find(|p| path.starts_with(p.as_str())) {
                Some(prefix) => (leading_slash(&path[prefix.len()..]), Some((&X_FORWARDED_PREFIX, prefix.as_str()))),
                None => return Step::Next,
            },
            Self::StripPrefixRegex(regexes) => {
                let Some(end) = regexes
                    .iter()
                    .find_map(|r| r.find(path).filter(|m| m.start() == 0).map(|m| m.end()))
                else {
                    return Step::Next;
                };
                (leading_slash(&path[end..]), Some((&X_FORWARDED_PREFIX, &path[..end])))
            }
            Self::AddPrefix(prefix) => {
                let joined = match (prefix.ends_with('/'), path.strip_prefix('/')) {
                    (true, Some(rest)) => format!("{prefix}{rest}"),
                    _ => format!("{prefix}{path}"),
                };
                (joined, None)
            }
            Self::ReplacePath(to) => (to.clone(), Some((&X_REPLACED_PATH, path))),
            Self::ReplacePathRegex(regex, replacement) => {
                if !regex.is_match(path) {
                    return Step::Next;
                }
                (
                    leading_slash(&regex.replace_all(path, replacement.as_str())),
                    Some((&X_REPLACED_PATH, path)),
                )
            }
        };
        let header = match header {
            Some((name, text)) => match HeaderValue::from_str(text) {
                Ok(value) => Some((name, value)),
                Err(_) => {
                    return Step::Answer(answer(
                        http::StatusCode::BAD_REQUEST,
                        "400 Bad Request: the path is not a valid header value\n",
                    ))
                }
            },
            None => None,
        };
        let target = match req.parts.uri.query() {
            Some(query) => format!("{}?{query}", encode(&new_path)),
            None => encode(&new_path),
        };
        match Uri::try_from(target) {
            Ok(uri) => req.parts.uri = uri,
            Err(_) => {
                return Step::Answer(answer(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "500 Internal Server Error: the rewritten path is not a valid URI\n",
                ))
            }
        }
        if let Some((name, value)) = header {
            req.parts.headers.insert(name.clone(), value);
        }
        Step::Next
    }
}

/// `path` with every byte a URI path cannot carry percent-encoded (a replacement may bring
/// spaces or non-ASCII); `%` is kept, so an already encoded path stays as it is.
fn encode(path: &str) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b);
    if path.bytes().all(keep) {
        return path.to_string();
    }
    let mut out = String::with_capacity(path.len() + 8);
    for b in path.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rewrite: &PathRewrite, uri: &str) -> (String, Option<String>, Option<String>) {
        let (mut parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
        let mut req = Req {
            parts: &mut parts,
            peer: [127, 0, 0, 1].into(),
            host: None,
            scheme: "http",
            trusted: false,
            body: None,
        };
        assert!(matches!(rewrite.request(&mut req), Step::Next));
        let header = |n: &HeaderName| parts.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        (parts.uri.to_string(), header(&X_FORWARDED_PREFIX), header(&X_REPLACED_PATH))
    }

    #[test]
    fn strip_add_and_replace_keep_the_query() {
        let strip = PathRewrite::StripPrefix(vec!["/api".into()]);
        assert_eq!(run(&strip, "/api/users?x=1"), ("/users?x=1".into(), Some("/api".into()), None));
        assert_eq!(run(&strip, "/api").0, "/");
        assert_eq!(run(&strip, "/other").1, None);
        let strip_re = PathRewrite::StripPrefixRegex(vec![Regex::new("/v[0-9]+").unwrap()]);
        assert_eq!(run(&strip_re, "/v12/items"), ("/items".into(), Some("/v12".into()), None));
        assert_eq!(run(&strip_re, "/x/v1/items").0, "/x/v1/items", "only at the start");
        let add = PathRewrite::AddPrefix("/base".into());
        assert_eq!(run(&add, "/a?b").0, "/base/a?b");
        let replace = PathRewrite::ReplacePath("/new".into());
        assert_eq!(run(&replace, "/old?q"), ("/new?q".into(), None, Some("/old".into())));
        let re = PathRewrite::ReplacePathRegex(Regex::new("^/foo/(.*)").unwrap(), "/bar/$1 x".into());
        assert_eq!(run(&re, "/foo/a").0, "/bar/a%20x");
    }
}
