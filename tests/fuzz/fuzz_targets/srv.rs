//! The SRV handling: DNS answers → a service's servers (priorities as failover tiers, weights
//! as balancer weights, glue, targets' own address lookups, kept answers on failure) → a
//! routing snapshot.
//!
//! The input is a small script, one answer per line, in rounds separated by `---`; between
//! rounds the clock moves past every TTL, so each round's answers are asked for and applied:
//!
//! ```text
//! srv <priority> <weight> <port> <target> [ttl]   a record of the SRV answer
//! srv-nxdomain | srv-servfail                     the SRV lookup fails
//! glue <name> <ip> [ttl]                          an address in the Additional section
//! a <name> <ip> [ttl]                             an answer to the target's A/AAAA lookup
//! nxdomain <name> | servfail <name>               the target's address lookup fails
//! ```
#![no_main]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use drover_providers::dns::client::{normalize, AddressRecord, Dns, LookupFailure, SrvAnswer, SrvRecord};
use drover_providers::dns::config::{Lookup, ServiceSpec};
use drover_providers::dns::watch::{ServiceState, Timing};
use drover_providers::model::{DynamicConfig, LoadBalancer, Service};
use libfuzzer_sys::fuzz_target;

/// One round's answers.
#[derive(Default)]
struct Round {
    srv: Vec<SrvRecord>,
    srv_failure: Option<LookupFailure>,
    glue: Vec<AddressRecord>,
    addresses: Vec<AddressRecord>,
    failures: BTreeMap<String, LookupFailure>,
}

fn read_round(text: &str) -> Round {
    let mut round = Round::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ttl = |i: usize| words.get(i).and_then(|t| t.parse().ok()).unwrap_or(30);
        let address = || -> Option<AddressRecord> {
            Some(AddressRecord {
                name: normalize(words.get(1)?),
                ip: words.get(2)?.parse::<IpAddr>().ok()?,
                ttl: ttl(3),
            })
        };
        match words.as_slice() {
            ["srv", priority, weight, port, target, ..] => {
                let (Ok(priority), Ok(weight), Ok(port)) = (priority.parse(), weight.parse(), port.parse()) else {
                    continue;
                };
                round.srv.push(SrvRecord {
                    priority,
                    weight,
                    port,
                    target: normalize(target),
                    ttl: ttl(5),
                });
            }
            ["srv-nxdomain", ..] => {
                round.srv_failure = Some(LookupFailure::NoRecords {
                    nx_domain: true,
                    negative_ttl: Some(ttl(1)),
                })
            }
            ["srv-servfail", ..] => round.srv_failure = Some(LookupFailure::Transient("SERVFAIL".into())),
            ["glue", ..] => round.glue.extend(address()),
            ["a", ..] => round.addresses.extend(address()),
            ["nxdomain", name, ..] => {
                round.failures.insert(
                    normalize(name),
                    LookupFailure::NoRecords {
                        nx_domain: true,
                        negative_ttl: None,
                    },
                );
            }
            ["servfail", name, ..] => {
                round.failures.insert(normalize(name), LookupFailure::Transient("SERVFAIL".into()));
            }
            _ => {}
        }
    }
    round
}

/// A nameserver answering from the current round.
#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<Round>>);

impl Dns for Scripted {
    async fn srv(&self, _name: &str) -> Result<SrvAnswer, LookupFailure> {
        let round = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(failure) = &round.srv_failure {
            return Err(failure.clone());
        }
        if round.srv.is_empty() {
            return Err(LookupFailure::NoRecords {
                nx_domain: false,
                negative_ttl: None,
            });
        }
        Ok(SrvAnswer {
            records: round.srv.clone(),
            glue: round.glue.clone(),
        })
    }

    async fn addresses(&self, name: &str) -> Result<Vec<AddressRecord>, LookupFailure> {
        let round = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let name = normalize(name);
        if let Some(failure) = round.failures.get(&name) {
            return Err(failure.clone());
        }
        let found: Vec<AddressRecord> = round.addresses.iter().filter(|a| a.name == name).cloned().collect();
        if found.is_empty() {
            return Err(LookupFailure::NoRecords {
                nx_domain: false,
                negative_ttl: None,
            });
        }
        Ok(found)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let spec = ServiceSpec {
        name: "web".into(),
        lookup: Lookup::Srv("_http._tcp.web.example.".into()),
        scheme: "http".into(),
        router: None,
    };
    let timing = Timing {
        min_ttl: Duration::from_secs(1),
        max_ttl: Duration::from_secs(300),
        jitter: false,
    };
    drover_fuzz::block_on(async {
        let dns = Scripted::default();
        let shared = Arc::new(dns.clone());
        let mut state = ServiceState::new(spec, timing);
        for round in text.split("\n---\n").take(4) {
            *dns.0.lock().unwrap_or_else(PoisonError::into_inner) = read_round(round);
            state.refresh(&shared).await;
            let view = state.view("dns");
            let mut config = DynamicConfig::default();
            config.http.services.insert(
                "web".into(),
                Service {
                    load_balancer: Some(LoadBalancer {
                        servers: view.servers,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            );
            drover_fuzz::route("dns", &config);
            // Past every TTL and every retry delay: the next round is asked for in full.
            tokio::time::advance(Duration::from_secs(400)).await;
        }
    });
});
