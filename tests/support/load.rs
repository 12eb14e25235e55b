//! Backends that can be killed and restarted on the same address, and a steady load of clients
//! that records which backend answered each request and when (failover and ejection tests).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{client, send, whoami};

/// A whoami that can be killed and restarted on the same address, like a backend process.
pub struct Restartable {
    pub addr: SocketAddr,
    name: &'static str,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Restartable {
    pub async fn start(name: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut this = Self { addr, name, stop: None };
        this.serve(listener);
        this
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let name = self.name.to_string();
        tokio::spawn(async move {
            let _ = whoami::serve(listener, name, async {
                let _ = rx.await;
            })
            .await;
        });
        self.stop = Some(tx);
    }

    /// Closes the listener and every connection.
    pub fn kill(&mut self) {
        self.stop.take();
    }

    pub async fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

/// Clients sending GETs until told to stop; counts answers per backend with times.
pub struct Load {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    hits: Arc<Mutex<Vec<(Instant, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(url: String, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, failed, hits, url) = (stop.clone(), failed.clone(), hits.clone(), url.clone());
                tokio::spawn(async move {
                    let c = client();
                    while !stop.load(Ordering::Relaxed) {
                        match send(&c, "GET", &url, &[]).await {
                            Ok(a) if a.status == 200 => hits.lock().unwrap().push((Instant::now(), a.backend().to_string())),
                            Ok(a) => {
                                eprintln!("failed: {} {}", a.status, a.body.trim());
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                eprintln!("failed: {e}");
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        Self { stop, failed, hits, tasks }
    }

    /// Answers from `backend` since `since`.
    pub fn count_since(&self, backend: &str, since: Instant) -> usize {
        self.hits.lock().unwrap().iter().filter(|(t, n)| n == backend && *t > since).count()
    }

    pub async fn finish(self) -> (u64, Vec<(Instant, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let hits = std::mem::take(&mut *self.hits.lock().unwrap());
        (self.failed.load(Ordering::Relaxed), hits)
    }
}

impl Load {
    /// Requests that failed so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}
