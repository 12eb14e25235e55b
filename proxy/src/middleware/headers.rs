//! `headers`: custom request and response headers, CORS, and the security headers.
//! <https://doc.traefik.io/traefik/middlewares/http/headers/>
//!
//! As in Traefik: a custom header with an empty value removes the header; a CORS preflight
//! (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered here with 200 and
//! never reaches the server when the middleware configures CORS; other requests get
//! `Access-Control-Allow-Origin` (and friends) on their response when their origin is allowed.
//! `allowedHosts`, `Strict-Transport-Security` and `sslProxyHeaders` are skipped in
//! `isDevelopment` mode.

use drover_providers::model::middleware as model;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use regex::Regex;

use super::{answer, BuildError, Req, Step};

/// A compiled `headers` middleware.
#[derive(Debug)]
pub struct Headers {
    request: Vec<(HeaderName, Option<HeaderValue>)>,
    response: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Security headers set on every response.
    security: Vec<(HeaderName, HeaderValue)>,
    /// `Strict-Transport-Security`, sent over TLS (or always with `forceSTSHeader`).
    sts: Option<(HeaderValue, bool)>,
    cors: Option<Cors>,
    allowed_hosts: Vec<String>,
    hosts_proxy_headers: Vec<HeaderName>,
    ssl_proxy_headers: Vec<(HeaderName, String)>,
}

#[derive(Debug)]
struct Cors {
    any_origin: bool,
    origins: Vec<String>,
    origin_regexes: Vec<Regex>,
    credentials: bool,
    allow_headers: Option<HeaderValue>,
    allow_methods: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    vary: bool,
}

fn name(text: &str) -> Result<HeaderName, BuildError> {
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| BuildError(format!("`{text}` is not a header name")))
}

fn value(text: &str) -> Result<HeaderValue, BuildError> {
    HeaderValue::from_str(text).map_err(|_| BuildError(format!("`{text}` is not a valid header value")))
}

fn joined(list: &[String]) -> Result<Option<HeaderValue>, BuildError> {
    if list.is_empty() {
        Ok(None)
    } else {
        value(&list.join(",")).map(Some)
    }
}

fn custom(map: &std::collections::BTreeMap<String, String>) -> Result<Vec<(HeaderName, Option<HeaderValue>)>, BuildError> {
    map.iter()
        .map(|(k, v)| Ok((name(k)?, if v.is_empty() { None } else { Some(value(v)?) })))
        .collect()
}

impl Headers {
    /// Compiles the model.
    pub fn build(h: &model::Headers) -> Result<Self, BuildError> {
        let mut security = Vec::new();
        let frame = if !h.custom_frame_options_value.is_empty() {
            Some(h.custom_frame_options_value.as_str())
        } else {
            h.frame_deny.then_some("DENY")
        };
        let xss = if !h.custom_browser_xss_value.is_empty() {
            Some(h.custom_browser_xss_value.as_str())
        } else {
            h.browser_xss_filter.then_some("1; mode=block")
        };
        for (header, text) in [
            ("x-frame-options", frame),
            ("x-content-type-options", h.content_type_nosniff.then_some("nosniff")),
            ("x-xss-protection", xss),
            ("content-security-policy", Some(h.content_security_policy.as_str())),
            (
                "content-security-policy-report-only",
                Some(h.content_security_policy_report_only.as_str()),
            ),
            ("public-key-pins", Some(h.public_key.as_str())),
            ("referrer-policy", Some(h.referrer_policy.as_str())),
            ("permissions-policy", Some(h.permissions_policy.as_str())),
        ] {
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                security.push((HeaderName::from_static(header), value(text)?));
            }
        }
        let sts = (h.sts_seconds > 0 && !h.is_development).then(|| {
            let mut text = format!("max-age={}", h.sts_seconds);
            if h.sts_include_subdomains {
                text.push_str("; includeSubDomains");
            }
            if h.sts_preload {
                text.push_str("; preload");
            }
            (text, h.force_sts_header)
        });
        let sts = match sts {
            Some((text, force)) => Some((value(&text)?, force)),
            None => None,
        };
        let has_cors = !h.access_control_allow_origin_list.is_empty()
            || !h.access_control_allow_origin_list_regex.is_empty()
            || !h.access_control_allow_headers.is_empty()
            || !h.access_control_allow_methods.is_empty()
            || !h.access_control_expose_headers.is_empty()
            || h.access_control_allow_credentials
            || h.access_control_max_age != 0;
        let cors = if has_cors {
            Some(Cors {
                any_origin: h.access_control_allow_origin_list.iter().any(|o| o == "*"),
                origins: h.access_control_allow_origin_list.clone(),
                origin_regexes: h
                    .access_control_allow_origin_list_regex
                    .iter()
                    .map(|r| Regex::new(r).map_err(|e| BuildError(format!("`{r}`: {e}"))))
                    .collect::<Result<_, _>>()?,
                credentials: h.access_control_allow_credentials,
                allow_headers: joined(&h.access_control_allow_headers)?,
                allow_methods: joined(&h.access_control_allow_methods)?,
                expose_headers: joined(&h.access_control_expose_headers)?,
                max_age: (h.access_control_max_age != 0).then(|| HeaderValue::from(h.access_control_max_age)),
                vary: h.add_vary_header,
            })
        } else {
            None
        };
        Ok(Self {
            request: custom(&h.custom_request_headers)?,
            response: custom(&h.custom_response_headers)?,
            security,
            sts,
            cors,
            allowed_hosts: if h.is_development { Vec::new() } else { h.allowed_hosts.clone() },
            hosts_proxy_headers: h.hosts_proxy_headers.iter().map(|n| name(n)).collect::<Result<_, _>>()?,
            ssl_proxy_headers: if h.is_development {
                Vec::new()
            } else {
                h.ssl_proxy_headers
                    .iter()
                    .map(|(k, v)| Ok((name(k)?, v.clone())))
                    .collect::<Result<_, BuildError>>()?
            },
        })
    }

    /// The request side: host check, CORS preflight, custom request headers. `secure` turns
    /// true when a header of `sslProxyHeaders` says the client used TLS.
    pub fn request(&self, req: &mut Req<'_>, secure: &mut bool) -> Step {
        if !self.allowed_hosts.is_empty() {
            let from_proxy = self
                .hosts_proxy_headers
                .iter()
                .find_map(|n| req.parts.headers.get(n))
                .or(req.host)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !self.allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(from_proxy)) {
                return Step::Answer(answer(StatusCode::BAD_REQUEST, "Bad Host\n"));
            }
        }
        if self
            .ssl_proxy_headers
            .iter()
            .any(|(n, v)| req.parts.headers.get(n).is_some_and(|got| got.as_bytes() == v.as_bytes()))
        {
            *secure = true;
        }
        if let Some(cors) = &self.cors {
            let headers = &req.parts.headers;
            if req.parts.method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
                if let Some(origin) = headers.get(header::ORIGIN) {
                    return Step::Answer(cors.preflight(origin));
                }
            }
        }
        for (n, v) in &self.request {
            match v {
                Some(v) => {
                    req.parts.headers.insert(n.clone(), v.clone());
                }
                None => {
                    req.parts.headers.remove(n);
                }
            }
        }
        Step::Next
    }

    /// The response side: CORS, security and custom response headers.
    pub fn response(&self, _status: StatusCode, headers: &mut HeaderMap, origin: Option<&HeaderValue>, secure: bool) {
        if let (Some(cors), Some(origin)) = (&self.cors, origin) {
            cors.simple(origin, headers);
        }
        for (n, v) in &self.security {
            headers.insert(n.clone(), v.clone());
        }
        if let Some((sts, force)) = &self.sts {
            if secure || *force {
                headers.insert(header::STRICT_TRANSPORT_SECURITY, sts.clone());
            }
        }
        for (n, v) in &self.response {
            match v {
                Some(v) => {
                    headers.insert(n.clone(), v.clone());
                }
                None => {
                    headers.remove(n);
                }
            }
        }
    }
}

impl Cors {
    /// The value of `Access-Control-Allow-Origin` for `origin`, if it is allowed.
    fn allowed(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.any_origin {
            return Some(HeaderValue::from_static("*"));
        }
        let text = origin.to_str().ok()?;
        (self.origins.iter().any(|o| o == text) || self.origin_regexes.iter().any(|r| r.is_match(text))).then(|| origin.clone())
    }

    fn vary(&self, allowed: &HeaderValue, headers: &mut HeaderMap) {
        if self.vary && allowed.as_bytes() != b"*" {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }

    fn preflight(&self, origin: &HeaderValue) -> Response<bytes::Bytes> {
        let mut response = Response::new(bytes::Bytes::new());
        let headers = response.headers_mut();
        if self.credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        if let Some(v) = &self.allow_headers {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        if let Some(v) = &self.allow_methods {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v.clone());
        }
        if let Some(allowed) = self.allowed(origin) {
            self.vary(&allowed, headers);
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        }
        if let Some(v) = &self.max_age {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, v.clone());
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        response
    }

    fn simple(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        let Some(allowed) = self.allowed(origin) else { return };
        self.vary(&allowed, headers);
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        if self.credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        if let Some(v) = &self.expose_headers {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
    }
}
