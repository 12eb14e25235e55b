//! Talking to a Marathon cluster: endpoint failover, redirects, authentication, timeouts.
//!
//! Any Marathon instance answers API calls (a standby proxies them to the leader), but a standby
//! answers `/v2/events` with a 302 to the leader, so redirects are followed, keeping the query
//! and the credentials. The instance that last answered stays the preferred one; when it fails
//! (no connection, a timeout, a 5xx such as 502 "Could not determine the current leader"), the
//! next one in the configured order is tried, as go-marathon's cluster does. A 401 or 403 is
//! not something another instance would answer differently, so it ends the attempt at once with
//! a message that says which setting to look at.
//!
//! `https://` endpoints go through rustls with the provider's `tls` settings
//! ([`crate::tls`]). A redirect never leaves TLS: a standby on https that points at an http
//! leader is refused, since the credentials would then cross the network in the clear.

use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyDataStream, BodyExt, Empty, Limited};
use hyper::body::Incoming;

use super::api::{self, App, AppEnvelope, AppList, SUBSCRIBED_EVENTS};
use super::config::{Endpoint, Settings};
use super::sse::ByteStream;
use crate::error::ProviderError;
use crate::http_client::{error_chain, Pool, Transport};

/// Largest API response read (200 apps × 5 tasks is about 1 MB).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// The embeds Traefik asked for (tasks imply deployments in Marathon, but be explicit).
pub const APPS_QUERY: &str = "/v2/apps?embed=apps.tasks&embed=apps.deployments&embed=apps.readiness";

/// Why a request to Marathon failed.
#[derive(Debug)]
pub struct ClientError {
    kind: Kind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unauthorized,
    NotFound,
    Unavailable,
    Protocol,
}

impl ClientError {
    fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The credentials were refused (401/403).
    pub fn is_unauthorized(&self) -> bool {
        self.kind == Kind::Unauthorized
    }

    /// The resource does not exist (404), e.g. an app that was removed.
    pub fn is_not_found(&self) -> bool {
        self.kind == Kind::NotFound
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientError {}

impl From<ClientError> for ProviderError {
    fn from(e: ClientError) -> Self {
        match e.kind {
            Kind::Unauthorized => ProviderError::refused(e.message),
            Kind::Unavailable => ProviderError::unreachable(e.message),
            Kind::NotFound | Kind::Protocol => ProviderError::bad_answer(e.message),
        }
    }
}

/// A connected event stream and where it came from.
pub struct Events {
    /// The body, as chunks.
    pub body: ByteStream,
    /// The URL that finally answered (after redirects).
    pub url: String,
}

/// A list of apps, each read on its own.
pub struct Apps {
    /// Apps that could be read.
    pub apps: Vec<App>,
    /// Apps that could not: (ID or position, why).
    pub unreadable: Vec<(String, String)>,
}

impl Apps {
    /// Reads a `GET /v2/apps` body; an app that cannot be read is listed in `unreadable` and
    /// does not fail the others.
    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        let list: AppList = serde_json::from_slice(body)?;
        let mut apps = Vec::with_capacity(list.apps.len());
        let mut unreadable = Vec::new();
        for (i, value) in list.apps.into_iter().enumerate() {
            match api::read_app(value, i) {
                Ok(app) => apps.push(app),
                Err(bad) => unreadable.push(bad),
            }
        }
        Ok(Apps { apps, unreadable })
    }
}

/// A client for one Marathon cluster.
pub struct MarathonClient {
    endpoints: Vec<Endpoint>,
    preferred: usize,
    http: Transport,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

impl MarathonClient {
    /// A client with the provider's settings.
    pub fn new(settings: &Settings) -> Self {
        let pool = Pool {
            connect_timeout: Some(settings.dial_timeout),
            keepalive: Some(settings.keep_alive),
            idle_timeout: Duration::from_secs(30),
            max_idle_per_host: 4,
        };
        let http = Transport::new(&pool, settings.tls.as_deref().cloned());
        Self {
            endpoints: settings.endpoints.clone(),
            preferred: 0,
            http,
            // validate() checked that the value is a valid header value; an invalid one is dropped
            // here rather than sent.
            authorization: settings
                .authorization
                .as_ref()
                .and_then(|a| HeaderValue::from_str(&a.0).ok())
                .map(|mut v| {
                    v.set_sensitive(true);
                    v
                }),
            timeout: settings.response_timeout,
        }
    }

    /// The endpoint currently preferred (for messages).
    pub fn preferred(&self) -> &str {
        self.endpoints.get(self.preferred).map(Endpoint::as_str).unwrap_or("")
    }

    /// `GET /v2/apps` with the tasks, deployments and readiness embeds.
    pub async fn apps(&mut self) -> Result<Apps, ClientError> {
        let (body, url) = self.get(APPS_QUERY, "application/json").await?;
        Apps::from_json(&body).map_err(|e| ClientError::new(Kind::Protocol, format!("{url}: cannot read the app list: {e}")))
    }

    /// `GET /v2/apps/{id}` with the same embeds; `Ok(None)` when the app does not exist (any
    /// more), `Err` with the app's own read error inside when it cannot be read.
    pub async fn app(&mut self, id: &str) -> Result<Option<Result<App, String>>, ClientError> {
        if !api::is_valid_app_id(id) {
            return Err(ClientError::new(Kind::Protocol, format!("`{id}` is not a valid app ID")));
        }
        let path = format!("/v2/apps{id}?embed=app.tasks&embed=app.deployments&embed=app.readiness");
        match self.get(&path, "application/json").await {
            Ok((body, url)) => {
                let envelope: AppEnvelope = serde_json::from_slice(&body)
                    .map_err(|e| ClientError::new(Kind::Protocol, format!("{url}: cannot read app `{id}`: {e}")))?;
                Ok(Some(api::read_app(envelope.app, 0).map_err(|(_, why)| why)))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens `/v2/events` (filtered to the events routing depends on), following a standby's
    /// redirect to the leader.
    pub async fn events(&mut self) -> Result<Events, ClientError> {
        let mut path = String::from("/v2/events");
        for (i, event) in SUBSCRIBED_EVENTS.iter().enumerate() {
            path.push(if i == 0 { '?' } else { '&' });
            path.push_str("event_type=");
            path.push_str(event);
        }
        let (response, url) = self.send(&path, "text/event-stream").await?;
        let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !content_type.to_ascii_lowercase().starts_with("text/event-stream") {
            return Err(ClientError::new(
                Kind::Protocol,
                format!("{url}: expected an event stream, got content type `{content_type}`"),
            ));
        }
        let body = BodyDataStream::new(response.into_body()).map_err(std::io::Error::other);
        Ok(Events { body: Box::pin(body), url })
    }

    /// GETs `path` and reads the whole body (capped, under the response timeout).
    async fn get(&mut self, path: &str, accept: &'static str) -> Result<(Bytes, String), ClientError> {
        let (response, url) = self.send(path, accept).await?;
        let body = tokio::time::timeout(self.timeout, Limited::new(response.into_body(), MAX_BODY_BYTES).collect())
            .await
            .map_err(|_| ClientError::new(Kind::Unavailable, format!("{url}: no complete answer within {:?}", self.timeout)))?
            .map_err(|e| ClientError::new(Kind::Unavailable, format!("{url}: reading the answer failed: {e}")))?;
        Ok((body.to_bytes(), url))
    }

    /// Sends `GET path` to the preferred endpoint, then the others; returns the first 2xx.
    async fn send(&mut self, path: &str, accept: &'static str) -> Result<(Response<Incoming>, String), ClientError> {
        let mut failures = Vec::new();
        let count = self.endpoints.len();
        for step in 0..count {
            let index = (self.preferred + step) % count;
            let url = self.endpoints[index].url(path);
            match self.send_following(url, accept).await {
                Ok(answer) => {
                    if index != self.preferred {
                        tracing::info!(endpoint = %self.endpoints[index].as_str(), "Marathon: failed over to another endpoint");
                        self.preferred = index;
                    }
                    return Ok(answer);
                }
                Err(e) if e.kind == Kind::Unavailable => failures.push(e.message),
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::new(
            Kind::Unavailable,
            format!("no Marathon endpoint answered: {}", failures.join("; ")),
        ))
    }

    /// One GET to one endpoint, following redirects.
    async fn send_following(&self, mut url: String, accept: &'static str) -> Result<(Response<Incoming>, String), ClientError> {
        for _ in 0..=MAX_REDIRECTS {
            let mut request = Request::get(url.as_str()).header(ACCEPT, accept);
            if let Some(auth) = &self.authorization {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            let request = request
                .body(Empty::new())
                .map_err(|e| ClientError::new(Kind::Protocol, format!("{url}: cannot build the request: {e}")))?;
            let response = tokio::time::timeout(self.timeout, self.http.request(request))
                .await
                .map_err(|_| ClientError::new(Kind::Unavailable, format!("{url}: no answer within {:?}", self.timeout)))?
                .map_err(|e| {
                    let why = error_chain(&e);
                    let hint = if why.contains("invalid peer certificate") {
                        "; check providers.marathon.tls.ca (the CA that signed Marathon's certificate)"
                    } else {
                        ""
                    };
                    ClientError::new(Kind::Unavailable, format!("{url}: {why}{hint}"))
                })?;
            let status = response.status();
            if status.is_success() {
                return Ok((response, url));
            }
            if status.is_redirection() {
                let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("");
                url = redirect_target(&url, location, self.http.has_tls())
                    .map_err(|why| ClientError::new(Kind::Protocol, format!("{url}: {status}: {why}")))?;
                tracing::debug!(to = %url, "Marathon: following a redirect");
                continue;
            }
            let text = short_body(response).await;
            let (kind, hint) = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
                    Kind::Unauthorized,
                    "; the credentials were refused: check providers.marathon.basic (httpBasicAuthUser, httpBasicPassword) or dcosToken",
                ),
                StatusCode::NOT_FOUND => (Kind::NotFound, ""),
                s if s.is_server_error() => (Kind::Unavailable, ""),
                StatusCode::METHOD_NOT_ALLOWED if accept == "text/event-stream" => (
                    Kind::Protocol,
                    "; the event stream was refused (is this Marathon, and is its event bus enabled?)",
                ),
                _ => (Kind::Protocol, ""),
            };
            return Err(ClientError::new(kind, format!("{url}: {status}{text}{hint}")));
        }
        Err(ClientError::new(
            Kind::Protocol,
            format!("{url}: more than {MAX_REDIRECTS} redirects"),
        ))
    }
}

/// Where a redirect from `from` to `location` leads (absolute or origin-relative); `tls` says
/// whether the client can speak https. A redirect from https to http is refused.
fn redirect_target(from: &str, location: &str, tls: bool) -> Result<String, String> {
    let from_https = from.starts_with("https://");
    if location.starts_with("http://") {
        if from_https {
            return Err(format!(
                "redirect to `{location}` refused: it leaves https, and the request (with its credentials) would go unencrypted"
            ));
        }
        return Ok(location.to_string());
    }
    if location.starts_with("https://") {
        if !tls {
            return Err(format!(
                "redirect to `{location}`: no endpoint is https://, so TLS is not set up; list Marathon's https:// URLs in `endpoint` with `tls` settings"
            ));
        }
        return Ok(location.to_string());
    }
    if location.starts_with('/') && !location.starts_with("//") {
        let scheme_len = if from_https { "https://".len() } else { "http://".len() };
        let origin_end = from
            .get(scheme_len..)
            .and_then(|rest| rest.find('/').map(|i| i + scheme_len))
            .unwrap_or(from.len());
        return Ok(format!("{}{location}", &from[..origin_end]));
    }
    Err(format!("redirect without a usable Location (`{location}`)"))
}

/// Up to 200 characters of an error body, for the message.
async fn short_body(response: Response<Incoming>) -> String {
    let read = tokio::time::timeout(Duration::from_secs(2), Limited::new(response.into_body(), 4096).collect()).await;
    let Ok(Ok(body)) = read else { return String::new() };
    let text = String::from_utf8_lossy(&body.to_bytes()).trim().to_string();
    if text.is_empty() {
        return String::new();
    }
    let mut text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    text.insert_str(0, " (");
    text.push(')');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects() {
        assert_eq!(
            redirect_target("http://a:8080/v2/events?x=1", "http://b:8080/v2/events?x=1", false).unwrap(),
            "http://b:8080/v2/events?x=1"
        );
        assert_eq!(
            redirect_target("http://a:8080/v2/events", "/v2/events?y", false).unwrap(),
            "http://a:8080/v2/events?y"
        );
        assert_eq!(
            redirect_target("https://a:8443/marathon/v2/events", "/v2/events?y", true).unwrap(),
            "https://a:8443/v2/events?y"
        );
        assert_eq!(redirect_target("https://a/x", "https://b/x", true).unwrap(), "https://b/x");
        assert_eq!(redirect_target("http://a/x", "https://b/x", true).unwrap(), "https://b/x");
        assert!(redirect_target("http://a/x", "https://b/x", false)
            .unwrap_err()
            .contains("TLS is not set up"));
        assert!(redirect_target("https://a/x", "http://b/x", true)
            .unwrap_err()
            .contains("leaves https"));
        assert!(redirect_target("http://a/x", "", false).is_err());
        assert!(redirect_target("http://a/x", "//evil/x", false).is_err());
    }

    fn settings(text: &str) -> Settings {
        toml::from_str::<crate::marathon::config::MarathonConfig>(text)
            .unwrap()
            .validate()
            .unwrap()
    }

    #[tokio::test]
    async fn https_endpoints_verify_marathon_with_the_configured_ca() {
        let marathon = crate::tls::testing::server(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"apps\":[]}",
        );
        let dir = crate::tls::testing::DIR;
        let config = |tls: &str| settings(&format!("endpoint = \"https://{marathon}\"\n[tls]\n{tls}\n"));
        let mut good = MarathonClient::new(&config(&format!("ca = \"{dir}/ca.pem\"")));
        let apps = good.apps().await.unwrap();
        assert!(apps.apps.is_empty() && apps.unreadable.is_empty());
        let mut wrong = MarathonClient::new(&config(&format!("ca = \"{dir}/other-ca.pem\"")));
        let err = wrong.apps().await.err().expect("an unknown CA is refused");
        assert!(
            err.to_string().contains("invalid peer certificate") && err.to_string().contains("tls.ca"),
            "{err}"
        );
        let mut insecure = MarathonClient::new(&config("insecureSkipVerify = true"));
        assert!(insecure.apps().await.is_ok());
    }
}
