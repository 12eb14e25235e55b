//! The scrape: sum the shards, read the state that lives elsewhere, encode with
//! `prometheus-client` (OpenMetrics text).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use drover_providers::ProviderStatus;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{method_name, Metrics, RequestKey, Stats, BUCKETS, NONE};
use crate::snapshot::Snapshot;

type Labels = Vec<(&'static str, String)>;

/// One metric family: name, help text, and its series.
type Family<V> = (&'static str, &'static str, Vec<(Labels, V)>);

#[derive(Debug)]
struct Scrape {
    counters: Vec<Family<u64>>,
    gauges: Vec<Family<i64>>,
    histograms: Vec<Family<Stats>>,
}

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, series) in &self.counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, value) in series {
                ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
            }
        }
        for (name, help, series) in &self.gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, value) in series {
                ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
            }
        }
        for (name, help, series) in &self.histograms {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (labels, stats) in series {
                let coarse = stats.coarse();
                let mut buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(coarse.iter().copied()).collect();
                buckets.push((f64::INFINITY, coarse[BUCKETS.len()]));
                family
                    .encode_family(labels)?
                    .encode_histogram::<Labels>(stats.seconds, stats.count, &buckets, None)?;
            }
        }
        Ok(())
    }
}

fn protocol(p: u8) -> &'static str {
    if p == 1 {
        "websocket"
    } else {
        "http"
    }
}

/// Sums `stats` per label set built by `labels` (skipping keys it returns `None` for).
fn group(totals: &HashMap<RequestKey, Stats>, labels: impl Fn(&RequestKey) -> Option<Labels>) -> Vec<(Labels, Stats)> {
    let mut grouped: BTreeMap<Labels, Stats> = BTreeMap::new();
    for (key, stats) in totals {
        if let Some(l) = labels(key) {
            grouped.entry(l).or_default().merge(stats);
        }
    }
    grouped.into_iter().collect()
}

/// The whole exposition: request metrics from `metrics`, state from `snapshot` and `providers`.
pub fn encode(metrics: &Metrics, snapshot: &Snapshot, providers: &[ProviderStatus]) -> String {
    let totals = metrics.totals();
    let entry_points = metrics.entry_points.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let ep = |k: &RequestKey| entry_points.get(k.entry_point as usize).cloned().unwrap_or_default();
    let code_method = |k: &RequestKey| {
        vec![
            ("code", k.code.to_string()),
            ("method", method_name(k.method).to_string()),
            ("protocol", protocol(k.protocol).to_string()),
        ]
    };

    let by_entry_point = group(&totals, |k| {
        let mut l = code_method(k);
        l.push(("entrypoint", ep(k)));
        Some(l)
    });
    let by_router = group(&totals, |k| {
        (k.router != NONE).then(|| {
            let mut l = code_method(k);
            l.push(("router", metrics.name(k.router)));
            l.push(("service", metrics.name(k.service)));
            l
        })
    });
    let by_service = group(&totals, |k| {
        (k.service != NONE).then(|| {
            let mut l = code_method(k);
            l.push(("service", metrics.name(k.service)));
            l
        })
    });
    let bytes_by_entry_point = group(&totals, |k| Some(vec![("entrypoint", ep(k))]));
    let bytes_by_service = group(&totals, |k| (k.service != NONE).then(|| vec![("service", metrics.name(k.service))]));

    let now = tokio::time::Instant::now();
    let mut server_up = Vec::new();
    let mut in_flight = Vec::new();
    let mut queued = Vec::new();
    let mut ejections = Vec::new();
    let mut retries = Vec::new();
    let mut upstreams: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let mut services: Vec<_> = snapshot.services.values().collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    for service in services {
        retries.push((vec![("service", service.name.to_string())], service.budget.retries()));
        for server in service.servers.iter() {
            let labels = vec![("service", service.name.to_string()), ("url", server.url.to_string())];
            server_up.push((labels.clone(), i64::from(!server.health.is_out() && server.weight > 0)));
            let limiter = server.upstream.limiter();
            in_flight.push((labels.clone(), limiter.in_flight() as i64));
            queued.push((labels.clone(), limiter.queued() as i64));
            ejections.push((labels, server.health.report(now).total_ejections));
            upstreams.insert(
                server.upstream.authority().to_string(),
                (server.upstream.connections_opened(), server.upstream.connections_reused()),
            );
            refused.insert(server.upstream.authority().to_string(), limiter.refused());
        }
    }
    let open: Vec<(Labels, i64)> = metrics
        .open_connections
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .enumerate()
        .map(|(i, g)| {
            (
                vec![
                    ("entrypoint", entry_points.get(i).cloned().unwrap_or_default()),
                    ("protocol", "TCP".to_string()),
                ],
                g.load(Ordering::Relaxed),
            )
        })
        .collect();

    let (tcp, udp) = (metrics.tcp.all(), metrics.udp.all());
    type L4Routers = [(String, Arc<crate::l4::serve::L4Stats>)];
    fn l4_counter(routers: &L4Routers, read: fn(&crate::l4::serve::L4Stats) -> u64) -> Vec<(Labels, u64)> {
        routers.iter().map(|(name, s)| (vec![("router", name.clone())], read(s))).collect()
    }
    let tcp_counter = |read| l4_counter(&tcp, read);
    let udp_counter = |read| l4_counter(&udp, read);
    let mut tcp_servers_up = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for route in snapshot.l4.entry_points.iter().flat_map(|t| t.plain.iter().chain(t.tls.iter())) {
        if !seen.insert(route.service.name.clone()) {
            continue;
        }
        for server in route.service.servers.iter() {
            tcp_servers_up.push((
                vec![("service", route.service.name.to_string()), ("address", server.address.to_string())],
                i64::from(!server.health.is_out() && server.weight > 0),
            ));
        }
    }

    let scrape = Scrape {
        counters: vec![
            (
                "drover_tcp_router_connections",
                "TCP connections taken by a TCP router.",
                tcp_counter(|s| s.connections.load(Ordering::Relaxed)),
            ),
            (
                "drover_tcp_router_bytes_in",
                "Bytes relayed from clients to servers by a TCP router (counted when a connection ends).",
                tcp_counter(|s| s.bytes_in.load(Ordering::Relaxed)),
            ),
            (
                "drover_tcp_router_bytes_out",
                "Bytes relayed from servers to clients by a TCP router (counted when a connection ends).",
                tcp_counter(|s| s.bytes_out.load(Ordering::Relaxed)),
            ),
            (
                "drover_tcp_router_connect_failures",
                "TCP connections closed because no server of the router's service could be connected.",
                tcp_counter(|s| s.connect_failures.load(Ordering::Relaxed)),
            ),
            (
                "drover_udp_router_sessions",
                "UDP sessions (client addresses) opened by a UDP router.",
                udp_counter(|s| s.connections.load(Ordering::Relaxed)),
            ),
            (
                "drover_udp_router_bytes_in",
                "Bytes relayed from clients to servers by a UDP router.",
                udp_counter(|s| s.bytes_in.load(Ordering::Relaxed)),
            ),
            (
                "drover_udp_router_bytes_out",
                "Bytes relayed from servers to clients by a UDP router.",
                udp_counter(|s| s.bytes_out.load(Ordering::Relaxed)),
            ),
            (
                "drover_udp_router_session_failures",
                "UDP datagrams dropped because no server of the router's service could be reached for a new session.",
                udp_counter(|s| s.connect_failures.load(Ordering::Relaxed)),
            ),
            (
                "drover_entrypoint_requests",
                "Requests by entrypoint, status code, method and protocol.",
                by_entry_point.iter().map(|(l, s)| (l.clone(), s.count)).collect(),
            ),
            (
                "drover_entrypoint_requests_bytes",
                "Request body bytes received, by entrypoint.",
                bytes_by_entry_point.iter().map(|(l, s)| (l.clone(), s.bytes_in)).collect(),
            ),
            (
                "drover_entrypoint_responses_bytes",
                "Response body bytes sent, by entrypoint.",
                bytes_by_entry_point.iter().map(|(l, s)| (l.clone(), s.bytes_out)).collect(),
            ),
            (
                "drover_router_requests",
                "Requests by router, service, status code, method and protocol.",
                by_router.iter().map(|(l, s)| (l.clone(), s.count)).collect(),
            ),
            (
                "drover_service_requests",
                "Requests by service, status code, method and protocol.",
                by_service.iter().map(|(l, s)| (l.clone(), s.count)).collect(),
            ),
            (
                "drover_service_requests_bytes",
                "Request body bytes sent on, by service.",
                bytes_by_service.iter().map(|(l, s)| (l.clone(), s.bytes_in)).collect(),
            ),
            (
                "drover_service_responses_bytes",
                "Response body bytes received and passed on, by service.",
                bytes_by_service.iter().map(|(l, s)| (l.clone(), s.bytes_out)).collect(),
            ),
            (
                "drover_service_retries",
                "Retries granted by the service's retry budget (replays of requests a server received).",
                retries,
            ),
            (
                "drover_service_server_ejections",
                "Passive or active ejections of a server.",
                ejections,
            ),
            (
                "drover_upstream_connections_opened",
                "Connections opened to a server address.",
                upstreams.iter().map(|(a, (o, _))| (vec![("server", a.clone())], *o)).collect(),
            ),
            (
                "drover_upstream_connections_reused",
                "Requests sent on a reused pooled connection, by server address.",
                upstreams.iter().map(|(a, (_, r))| (vec![("server", a.clone())], *r)).collect(),
            ),
            (
                "drover_upstream_queue_refused",
                "Requests answered 503 because a server address was at its maxConnsPerHost and its queue was full or the wait reached queueTimeout.",
                refused.into_iter().map(|(a, n)| (vec![("server", a)], n)).collect(),
            ),
            (
                "drover_config_reloads",
                "Configurations applied.",
                vec![(Vec::new(), metrics.reloads.load(Ordering::Relaxed))],
            ),
            (
                "drover_provider_errors",
                "Errors reported by a provider (its last good configuration stayed in force).",
                providers.iter().map(|p| (vec![("provider", p.name.clone())], p.errors)).collect(),
            ),
            (
                "drover_acme_orders",
                "ACME orders this instance attempted, by resolver and main name.",
                acme_series(snapshot, |_| None, |a| a.orders as i64)
                    .into_iter()
                    .map(|(labels, v)| (labels, v as u64))
                    .collect(),
            ),
            (
                "drover_access_log_dropped",
                "Access-log lines dropped because the sink was too slow.",
                vec![(Vec::new(), metrics.access_log_dropped.load(Ordering::Relaxed))],
            ),
        ],
        gauges: vec![
            ("drover_open_connections", "Open client connections, by entrypoint.", open),
            (
                "drover_tcp_router_open_connections",
                "TCP connections being relayed by a TCP router.",
                tcp.iter()
                    .map(|(name, s)| (vec![("router", name.clone())], s.open.load(Ordering::Relaxed)))
                    .collect(),
            ),
            (
                "drover_udp_router_open_sessions",
                "UDP sessions a UDP router holds (until udp.timeout passes without a datagram).",
                udp.iter()
                    .map(|(name, s)| (vec![("router", name.clone())], s.open.load(Ordering::Relaxed)))
                    .collect(),
            ),
            (
                "drover_tcp_service_server_up",
                "1 when a TCP server takes connections, 0 when it is ejected or weighted 0.",
                tcp_servers_up,
            ),
            (
                "drover_tls_certs_not_after",
                "Unix time a certificate expires, by its common name, serial and SANs (Traefik's labels).",
                snapshot
                    .tls
                    .certificates
                    .iter()
                    .filter(|c| c.not_after_unix > 0)
                    .map(|c| {
                        let cn = c
                            .subject
                            .split(", ")
                            .find_map(|p| p.strip_prefix("CN="))
                            .unwrap_or_default()
                            .to_string();
                        (
                            vec![("cn", cn), ("serial", c.serial.clone()), ("sans", c.sans.join(","))],
                            c.not_after_unix,
                        )
                    })
                    .collect(),
            ),
            (
                "drover_service_server_up",
                "1 when the server takes traffic, 0 when it is ejected or weighted 0.",
                server_up,
            ),
            (
                "drover_service_server_in_flight",
                "Requests in flight to the server's address (counted against maxConnsPerHost; shared by the services that use the address through the same transport).",
                in_flight,
            ),
            (
                "drover_service_server_queued",
                "Requests waiting for a slot of the server's maxConnsPerHost (shared by the services that use the address through the same transport).",
                queued,
            ),
            (
                "drover_acme_certificate_state",
                "1 for the state each ACME name set is in (ordering, valid, renewing, waiting, failed), by resolver and main name.",
                acme_series(snapshot, |a| Some(("state", a.state.name().to_string())), |_| 1),
            ),
            (
                "drover_acme_failures",
                "Failed ACME orders in a row, by resolver and main name (0 once one succeeds).",
                acme_series(snapshot, |_| None, |a| i64::from(a.failures)),
            ),
            (
                "drover_config_last_reload_success",
                "Unix time of the last configuration applied.",
                vec![(Vec::new(), metrics.last_reload_success.load(Ordering::Relaxed) as i64)],
            ),
        ],
        histograms: vec![
            (
                "drover_entrypoint_request_duration_seconds",
                "Request duration by entrypoint, status code, method and protocol.",
                by_entry_point,
            ),
            (
                "drover_router_request_duration_seconds",
                "Request duration by router and service.",
                by_router,
            ),
            (
                "drover_service_request_duration_seconds",
                "Request duration by service.",
                by_service,
            ),
        ],
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        tracing::error!("encoding metrics failed");
    }
    out
}

/// One series per ACME name set, labelled by resolver and main name (and `extra`'s label when
/// it gives one), valued by `value`.
fn acme_series(
    snapshot: &Snapshot,
    extra: impl Fn(&crate::tls::certs::AcmeInfo) -> Option<(&'static str, String)>,
    value: impl Fn(&crate::tls::certs::AcmeInfo) -> i64,
) -> Vec<(Labels, i64)> {
    snapshot
        .tls
        .certificates
        .iter()
        .filter_map(|c| c.acme.as_ref())
        .map(|a| {
            let main = a.domains.first().cloned().unwrap_or_default();
            let mut labels = vec![("resolver", a.resolver.clone()), ("domain", main)];
            labels.extend(extra(a));
            (labels, value(a))
        })
        .collect()
}
