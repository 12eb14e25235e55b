//! An in-process authoritative DNS server for the cases BIND will not produce on demand: SERVFAIL,
//! REFUSED, a server that stays silent, truncated UDP answers, TTL 0, glue switched off, a CNAME
//! where an address should be. It also counts the queries it receives, by type, so a test or a
//! bench can tell how often drover asks.
//!
//! It serves UDP and TCP (RFC 1035 two-byte length framing) on one port of 127.0.0.1, from a
//! record list the test edits while it runs ([`FakeDns::zone`]). Answers are authoritative:
//! a name with no record at all is NXDOMAIN, a name with records of other types is NODATA, and
//! both carry an SOA whose minimum is [`Zone::negative_ttl`]. Included through `#[path]` by the
//! DNS tests and bench only; it depends on `hickory-proto`, `tokio` and std.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// How the server answers every query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// From the records.
    #[default]
    Answer,
    /// SERVFAIL.
    ServFail,
    /// REFUSED.
    Refused,
    /// NXDOMAIN for every name.
    NxDomain,
    /// No answer at all (the client times out).
    Silent,
}

/// What the server serves; edit it through [`FakeDns::zone`].
#[derive(Clone, Debug)]
pub struct Zone {
    /// The records.
    pub records: Vec<Record>,
    /// How to answer.
    pub mode: Mode,
    /// Put the targets' A/AAAA records in the Additional section of SRV answers.
    pub glue: bool,
    /// Answer UDP queries with the TC bit and no records (TCP answers in full).
    pub truncate_udp: bool,
    /// The SOA minimum (negative-caching TTL) of NXDOMAIN/NODATA answers.
    pub negative_ttl: u32,
}

impl Default for Zone {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            mode: Mode::Answer,
            glue: true,
            truncate_udp: false,
            negative_ttl: 1,
        }
    }
}

impl Zone {
    /// Removes every record of `name` (any type).
    pub fn remove(&mut self, name: &str) {
        let name = name_of(name);
        self.records.retain(|r| r.name != name);
    }
}

/// Queries received, by transport and type.
#[derive(Debug, Default)]
pub struct Counts {
    udp: AtomicU64,
    tcp: AtomicU64,
    by_type: Mutex<BTreeMap<String, u64>>,
}

/// A running server; stopped on drop.
pub struct FakeDns {
    /// `127.0.0.1:<port>`, UDP and TCP.
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    counts: Arc<Counts>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeDns {
    /// Binds UDP and TCP on the same free loopback port and starts serving an empty zone.
    pub async fn start() -> Self {
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("bound UDP socket has an address");
        let zone = Arc::new(Mutex::new(Zone::default()));
        let counts = Arc::new(Counts::default());
        let udp_task = {
            let (zone, counts) = (zone.clone(), counts.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let Ok((len, peer)) = udp.recv_from(&mut buf).await else { continue };
                    counts.udp.fetch_add(1, Ordering::Relaxed);
                    let reply = answer(&zone, &counts, &buf[..len], true);
                    if let Some(reply) = reply {
                        let _ = udp.send_to(&reply, peer).await;
                    }
                }
            })
        };
        let tcp_task = {
            let (zone, counts) = (zone.clone(), counts.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = tcp.accept().await else { continue };
                    tokio::spawn(serve_tcp(stream, zone.clone(), counts.clone()));
                }
            })
        };
        Self {
            addr,
            zone,
            counts,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// Reads or edits the zone.
    pub fn zone<R>(&self, edit: impl FnOnce(&mut Zone) -> R) -> R {
        edit(&mut self.zone.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Queries received over UDP and TCP.
    pub fn queries(&self) -> u64 {
        self.counts.udp.load(Ordering::Relaxed) + self.counts.tcp.load(Ordering::Relaxed)
    }

    /// Queries received over TCP.
    pub fn tcp_queries(&self) -> u64 {
        self.counts.tcp.load(Ordering::Relaxed)
    }

    /// Queries received for one type (`"SRV"`, `"A"`, `"AAAA"`).
    pub fn queries_of(&self, record_type: &str) -> u64 {
        let counts = self.counts.by_type.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(record_type).copied().unwrap_or(0)
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP on 127.0.0.1");
        let port = udp.local_addr().expect("UDP address").port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP after 50 tries");
}

async fn serve_tcp(mut stream: TcpStream, zone: Arc<Mutex<Zone>>, counts: Arc<Counts>) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        counts.tcp.fetch_add(1, Ordering::Relaxed);
        let Some(reply) = answer(&zone, &counts, &buf, false) else {
            continue;
        };
        let Ok(len) = u16::try_from(reply.len()) else { return };
        if stream.write_all(&len.to_be_bytes()).await.is_err() || stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

fn answer(zone: &Mutex<Zone>, counts: &Counts, bytes: &[u8], udp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(bytes).ok()?;
    let query = request.queries.first()?.clone();
    *counts
        .by_type
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(query.query_type().to_string())
        .or_default() += 1;
    let zone = zone.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.authoritative = true;
    reply.add_query(query.clone());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        reply.set_edns(edns);
    }
    let negative = |reply: &mut Message, code: ResponseCode| {
        reply.metadata.response_code = code;
        let soa = SOA::new(name_of("ns.test."), name_of("admin.test."), 1, 60, 60, 600, zone.negative_ttl);
        reply.add_authority(Record::from_rdata(Name::root(), zone.negative_ttl, RData::SOA(soa)));
    };
    match zone.mode {
        Mode::Silent => return None,
        Mode::ServFail => reply.metadata.response_code = ResponseCode::ServFail,
        Mode::Refused => reply.metadata.response_code = ResponseCode::Refused,
        Mode::NxDomain => negative(&mut reply, ResponseCode::NXDomain),
        Mode::Answer => {
            let qtype = query.query_type();
            let mut name = query.name().clone();
            let mut exists = false;
            // Follow CNAMEs (at most 8), as a real server does for any type but CNAME.
            for _ in 0..8 {
                let here: Vec<&Record> = zone.records.iter().filter(|r| r.name == name).collect();
                exists |= !here.is_empty();
                let cname = here.iter().find_map(|r| match &r.data {
                    RData::CNAME(c) if qtype != RecordType::CNAME => Some(c.0.clone()),
                    _ => None,
                });
                match cname {
                    Some(target) => {
                        reply.add_answers(here.iter().filter(|r| r.record_type() == RecordType::CNAME).map(|r| (*r).clone()));
                        name = target;
                    }
                    None => {
                        reply.add_answers(here.iter().filter(|r| r.record_type() == qtype).map(|r| (*r).clone()));
                        break;
                    }
                }
            }
            if !exists {
                negative(&mut reply, ResponseCode::NXDomain);
            } else if reply.answers.is_empty() {
                negative(&mut reply, ResponseCode::NoError);
            } else if qtype == RecordType::SRV && zone.glue {
                let targets: Vec<Name> = reply
                    .answers
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(srv) => Some(srv.target.clone()),
                        _ => None,
                    })
                    .collect();
                let glue: Vec<Record> = zone
                    .records
                    .iter()
                    .filter(|r| targets.contains(&r.name) && matches!(r.record_type(), RecordType::A | RecordType::AAAA))
                    .cloned()
                    .collect();
                reply.add_additionals(glue);
            }
            if udp && zone.truncate_udp {
                reply.metadata.truncation = true;
                reply.answers.clear();
                reply.additionals.clear();
                reply.authorities.clear();
            }
        }
    }
    reply.to_vec().ok()
}

/// `name`, parsed; a test's own literal, so a bad one is a bug in the test.
pub fn name_of(name: &str) -> Name {
    Name::from_ascii(name).unwrap_or_else(|e| panic!("test name {name:?}: {e}"))
}

/// `owner TTL IN SRV priority weight port target`.
pub fn srv(owner: &str, ttl: u32, priority: u16, weight: u16, port: u16, target: &str) -> Record {
    Record::from_rdata(name_of(owner), ttl, RData::SRV(SRV::new(priority, weight, port, name_of(target))))
}

/// `name TTL IN A|AAAA ip`.
pub fn address(name: &str, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name_of(name), ttl, data)
}

/// `name TTL IN CNAME target`.
pub fn cname(name: &str, ttl: u32, target: &str) -> Record {
    Record::from_rdata(name_of(name), ttl, RData::CNAME(CNAME(name_of(target))))
}
