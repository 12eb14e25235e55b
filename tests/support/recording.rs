//! A backend that records every request it gets (path, headers, body) and answers after a chosen
//! delay, or never: slow servers for least-request balancing and hanging mirrors.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// How the backend answers.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// `200` after this delay.
    After(Duration),
    /// Reads the request, then never answers.
    Never,
    /// `500` at once.
    Fail,
}

/// A running recording backend; stops (closing every connection) when dropped.
pub struct Recording {
    pub addr: SocketAddr,
    pub name: String,
    seen: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Recording {
    pub async fn spawn(name: &str, answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind recording backend");
        let addr = listener.local_addr().expect("recording backend address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, who) = (seen.clone(), name.to_string());
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let (log, who) = (log.clone(), who.clone());
                        connections.spawn(async move {
                            let service = service_fn(move |req: Request<Incoming>| {
                                let (log, who) = (log.clone(), who.clone());
                                async move {
                                    let (parts, body) = req.into_parts();
                                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                                    log.lock().unwrap().push(Received {
                                        method: parts.method.to_string(),
                                        path: parts.uri.path().to_string(),
                                        headers: parts.headers,
                                        body,
                                    });
                                    let status = match answer {
                                        Answer::After(delay) => {
                                            tokio::time::sleep(delay).await;
                                            200
                                        }
                                        Answer::Never => std::future::pending().await,
                                        Answer::Fail => 500,
                                    };
                                    let mut response = Response::new(Full::new(Bytes::from(who.clone())));
                                    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                                    response.headers_mut().insert("x-whoami-name", who.parse().unwrap());
                                    Ok::<_, Infallible>(response)
                                }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Self {
            addr,
            name: name.to_string(),
            seen,
            task,
        }
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests arrived so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.task.abort();
    }
}
