//! One error type for everything that can go wrong forwarding a request, classified so that
//! passive health and retries can ask *what kind* of failure it was instead of reading text.

use std::fmt;

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A forwarding failure. Ask it questions with the `is_*` predicates.
pub struct Error {
    kind: Kind,
    cause: Option<Cause>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The TCP connection to the server could not be made.
    Connect,
    /// Connecting took longer than the dial timeout.
    ConnectTimeout,
    /// The TLS handshake with the server failed; says why in words a user can act on.
    Tls(&'static str),
    /// The connection failed before any byte of the request was written.
    NotSent,
    /// The connection closed or reset after the request was (partly) sent, before a response head.
    ResetBeforeResponse,
    /// No response head within the response-header timeout.
    ResponseTimeout,
    /// The server answered with something that is not HTTP.
    BadResponse,
    /// The client's side failed (its request body broke off): not the server's fault.
    ClientGone,
    /// The client's request body moved no byte for `bodyIdleTimeout`: not the server's fault.
    ClientIdle,
    /// The server took no byte of the request body for `bodyIdleTimeout` while the client had
    /// more to give.
    UploadStalled,
    /// The client's request was not read whole within `readTimeout`: not the server's fault.
    ClientReadTimeout,
    /// The server's response body failed after its head was sent on.
    ResponseBody,
    /// The server's response body moved no byte for `bodyIdleTimeout`.
    ResponseBodyIdle,
    /// The response was still running at `writeTimeout`.
    ResponseWriteTimeout,
}

impl Error {
    fn new(kind: Kind, cause: impl Into<Cause>) -> Self {
        Self {
            kind,
            cause: Some(cause.into()),
        }
    }

    pub(crate) fn connect(cause: impl Into<Cause>) -> Self {
        Self::new(Kind::Connect, cause)
    }

    pub(crate) fn tls(reason: &'static str, cause: impl Into<Cause>) -> Self {
        Self::new(Kind::Tls(reason), cause)
    }

    pub(crate) fn connect_timeout() -> Self {
        Self {
            kind: Kind::ConnectTimeout,
            cause: None,
        }
    }

    pub(crate) fn not_sent(cause: impl Into<Cause>) -> Self {
        Self::new(Kind::NotSent, cause)
    }

    pub(crate) fn response_timeout() -> Self {
        Self {
            kind: Kind::ResponseTimeout,
            cause: None,
        }
    }

    pub(crate) fn upload_stalled() -> Self {
        Self {
            kind: Kind::UploadStalled,
            cause: None,
        }
    }

    pub(crate) fn client_read_timeout() -> Self {
        Self {
            kind: Kind::ClientReadTimeout,
            cause: None,
        }
    }

    pub(crate) fn client_idle() -> Self {
        Self {
            kind: Kind::ClientIdle,
            cause: None,
        }
    }

    pub(crate) fn response_body(cause: impl Into<Cause>) -> Self {
        Self::new(Kind::ResponseBody, cause)
    }

    pub(crate) fn response_write_timeout() -> Self {
        Self {
            kind: Kind::ResponseWriteTimeout,
            cause: None,
        }
    }

    pub(crate) fn response_body_idle() -> Self {
        Self {
            kind: Kind::ResponseBodyIdle,
            cause: None,
        }
    }

    /// Classifies an error from hyper's client connection.
    pub(crate) fn from_hyper(err: hyper::Error) -> Self {
        let kind = if err.is_parse() || err.is_parse_status() || err.is_parse_too_large() {
            Kind::BadResponse
        } else if err.is_user() {
            // The request body we were streaming failed: the client went away mid-upload.
            Kind::ClientGone
        } else {
            Kind::ResetBeforeResponse
        };
        Self::new(kind, err)
    }

    /// The server could not be reached (refused, unreachable, timed out connecting, or the
    /// connection failed before anything was written). Nothing was sent: any request may be
    /// retried elsewhere.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect | Kind::ConnectTimeout | Kind::NotSent | Kind::Tls(_))
    }

    /// The TLS handshake with the server failed: why, in words a user can act on.
    pub fn tls_failure(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Tls(reason) => Some(reason),
            _ => None,
        }
    }

    /// A deadline passed (connecting, sending the request body, or waiting for the response
    /// head).
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::ConnectTimeout | Kind::UploadStalled | Kind::ResponseTimeout)
    }

    /// Waiting for the response head timed out (the server may have received the request).
    pub fn is_response_timeout(&self) -> bool {
        self.kind == Kind::ResponseTimeout
    }

    /// The connection closed or reset after the request was sent, before any response byte.
    pub fn is_reset_before_response(&self) -> bool {
        self.kind == Kind::ResetBeforeResponse
    }

    /// The server answered with something that is not valid HTTP.
    pub fn is_bad_response(&self) -> bool {
        self.kind == Kind::BadResponse
    }

    /// The client went away (its request body broke off while being forwarded). Never counts
    /// against the server.
    pub fn is_client_gone(&self) -> bool {
        self.kind == Kind::ClientGone
    }

    /// The client's request body stalled (nothing arrived for `bodyIdleTimeout`): answered 408,
    /// never held against the server.
    pub fn is_client_idle(&self) -> bool {
        matches!(self.kind, Kind::ClientIdle | Kind::ClientReadTimeout)
    }

    /// True when no byte of the request reached the server, so a retry is safe for any method.
    pub fn nothing_sent(&self) -> bool {
        self.is_connect()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::Connect => "connecting to the server failed",
            Kind::ConnectTimeout => "connecting to the server timed out",
            Kind::Tls(reason) => reason,
            Kind::NotSent => "the connection failed before the request was sent",
            Kind::ResetBeforeResponse => "the connection closed before a response",
            Kind::ResponseTimeout => "the server did not answer in time",
            Kind::BadResponse => "the server sent an invalid response",
            Kind::ClientGone => "the client's request body broke off",
            Kind::ClientIdle => "the client's request body stalled for bodyIdleTimeout",
            Kind::UploadStalled => "the server stopped reading the request body for bodyIdleTimeout",
            Kind::ClientReadTimeout => "the client's request was not read within readTimeout",
            Kind::ResponseBody => "the server's response body broke off",
            Kind::ResponseBodyIdle => "the server's response body stalled for bodyIdleTimeout",
            Kind::ResponseWriteTimeout => "the response was not complete within writeTimeout",
        };
        match &self.cause {
            Some(cause) => write!(f, "{what}: {cause}"),
            None => f.write_str(what),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("cause", &self.cause)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}
