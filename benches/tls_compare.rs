//! TLS side by side (issue #21): drover, nginx and HAProxy (both OpenSSL) terminating TLS in
//! front of the same plain-HTTP backend, measured the way `shared/specs/performance.md`
//! prescribes (interleaved rounds, medians, spreads, errors, one worker each, the load
//! generator pinned to CPU 0 and the proxies to the others).
//!
//! ```text
//! cargo bench --bench tls_compare                  # 3 rounds × 5 s of each measurement
//! cargo bench --bench tls_compare -- --quick       # 1 round × 3 s, to check that it works
//! cargo bench --bench tls_compare -- --self-test   # checks the output parsers only
//! ```
//!
//! Environment: `ROUNDS` (3), `DURATION` in seconds (5), `WORKERS` (1), `QUICK=1`,
//! `DROVER_BIN=/path` (use this binary instead of building one), `HS_CLIENTS` (100: the
//! connections of one h2load burst in the handshake measurement), `TESTS=ecdsa,rsa,https,h2`
//! (measure only these). Needs `apt-get install -y nginx-light haproxy wrk nghttp2-client`
//! and the `openssl` CLI (certificates are made in the run's temporary directory).
//!
//! What is measured, for each proxy:
//! * `ecdsa`, `rsa`: full TLS handshakes per second with a new connection per request, and the
//!   proxy's CPU time (user + kernel, every thread, from `/proc`) per connection, which is one
//!   full handshake plus one proxied GET. The client is a fresh `h2load --h1 -t1 -cN -nN`
//!   process per burst of N connections, each with one request: a fresh process has no session
//!   to resume, so every handshake is a full one (wrk and h2load both resume the previous
//!   session when they reconnect after `Connection: close`: nginx's `$ssl_session_reused`
//!   showed 3,992 of 4,000 reconnections resumed, which is why neither is used that way). The
//!   rate is the bursts' connections over h2load's own elapsed times (process start-up left
//!   out); the proxy's CPU is counted over the whole loop.
//! * `https`: keep-alive HTTPS requests/s, `wrk -t1 -c64` (TLS once per connection).
//! * `h2`: HTTP/2 over TLS requests/s, `h2load -t1 -c10 -m10` (ALPN h2).
//!
//! TLS 1.3 is what every proxy negotiates with these clients (nginx 1.22 is told to offer it:
//! its default stops at 1.2); the negotiated protocol, cipher, key exchange and ALPN are
//! printed per target. drover uses the rustls crypto provider it is built with: ring, or
//! aws-lc-rs with `cargo build --release -p drover --features aws-lc` (pass that binary as
//! `DROVER_BIN` to compare the two).
//! Caddy, which the issue also names, is not in Debian 12's archive and is not measured.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "load_compare/lab.rs"]
mod lab;
#[path = "load_compare/parse.rs"]
mod parse;

use lab::{drover_binary, env_count, free_ports, round_order, CpuTime, Lab, Result, Server, Tools, Variant};
use parse::{fmt_count, median, H2loadSummary, WrkResult};

/// wrk's connection count for keep-alive HTTPS, as in `load_compare`.
const WRK_CONNECTIONS: u32 = 64;
/// h2load's clients and streams per client for HTTP/2 over TLS.
const H2_CLIENTS: u32 = 10;
const H2_STREAMS: u32 = 10;
/// The proxies, in table order; drover is compared with the other two.
const PROXIES: [&str; 3] = ["nginx", "haproxy", "drover"];
const PEERS: [&str; 2] = ["nginx", "haproxy"];

fn main() {
    let code = match run() {
        Ok(()) => 0,
        Err(Exit::Failed(msg)) => {
            eprintln!("tls_compare: {msg}");
            1
        }
        Err(Exit::MissingTools(msg)) => {
            eprintln!("tls_compare: {msg}");
            2
        }
    };
    // run() has returned, so every server guard has dropped: exiting now leaves nothing behind.
    std::process::exit(code);
}

enum Exit {
    Failed(String),
    MissingTools(String),
}

impl From<String> for Exit {
    fn from(msg: String) -> Self {
        Exit::Failed(msg)
    }
}

/// The certificate a set of proxies presents.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Key {
    Ecdsa,
    Rsa,
}

impl Key {
    fn label(self) -> &'static str {
        match self {
            Key::Ecdsa => "ECDSA P-256",
            Key::Rsa => "RSA-2048",
        }
    }

    /// `openssl req -newkey` arguments.
    fn newkey(self) -> &'static [&'static str] {
        match self {
            Key::Ecdsa => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
            Key::Rsa => &["-newkey", "rsa:2048"],
        }
    }

    /// Target names: proxy × key.
    fn names(self) -> [&'static str; 3] {
        match self {
            Key::Ecdsa => ["nginx-ecdsa", "haproxy-ecdsa", "drover-ecdsa"],
            Key::Rsa => ["nginx-rsa", "haproxy-rsa", "drover-rsa"],
        }
    }
}

/// What one measurement does.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Test {
    /// New connection per request, full handshakes, with this certificate.
    Handshakes(Key),
    /// Keep-alive HTTPS/1.1 (wrk).
    KeepAlive,
    /// HTTP/2 over TLS (h2load -m10).
    H2,
}

impl Test {
    fn id(self) -> &'static str {
        match self {
            Test::Handshakes(Key::Ecdsa) => "ecdsa",
            Test::Handshakes(Key::Rsa) => "rsa",
            Test::KeepAlive => "https",
            Test::H2 => "h2",
        }
    }

    fn title(self, hs_clients: u32) -> String {
        match self {
            Test::Handshakes(key) => format!(
                "full TLS handshakes, {}: a new connection per GET (fresh `h2load --h1 -t1 -c{hs_clients} -n{hs_clients}` per burst)",
                key.label()
            ),
            Test::KeepAlive => format!("keep-alive HTTPS/1.1 (wrk -t1 -c{WRK_CONNECTIONS}, ECDSA certificate)"),
            Test::H2 => format!("HTTP/2 over TLS (h2load -t1 -c{H2_CLIENTS} -m{H2_STREAMS}, ECDSA certificate)"),
        }
    }

    /// What the rate counts.
    fn unit(self) -> &'static str {
        match self {
            Test::Handshakes(_) => "handshakes/s",
            _ => "req/s",
        }
    }

    fn key(self) -> Key {
        match self {
            Test::Handshakes(key) => key,
            _ => Key::Ecdsa,
        }
    }
}

/// One measured round of one target.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rate: f64,
    errors: u64,
    /// The proxy's CPU per handshake or request.
    proxy: Option<CpuTime>,
    /// The load generator's CPU per handshake or request (the shell's `times`).
    client: f64,
}

/// A proxy serving one certificate, and what was measured on it.
struct Instance {
    name: &'static str,
    proxy: &'static str,
    key: Key,
    port: u16,
    server: Option<Server>,
    skipped: Option<String>,
}

impl Instance {
    fn url(&self) -> String {
        format!("https://{}:{}/", lab::LOOPBACK, self.port)
    }

    fn skip(&mut self, reason: String) {
        println!("{}: skipped from now on: {}", self.name, reason.trim());
        self.skipped = Some(reason);
        self.server = None;
    }
}

struct Options {
    rounds: usize,
    duration_secs: u32,
    workers: u32,
    hs_clients: u32,
    tests: Vec<Test>,
    self_test: bool,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut quick = std::env::var("QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let mut self_test = false;
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--quick" => quick = true,
                "--self-test" => self_test = true,
                "--bench" => {}
                other => return Err(format!("unknown argument {other:?} (known: --quick, --self-test)")),
            }
        }
        let (rounds, duration_secs) = if quick {
            (1, 3)
        } else {
            (env_count("ROUNDS", 3)? as usize, env_count("DURATION", 5)?)
        };
        let all = [Test::Handshakes(Key::Ecdsa), Test::Handshakes(Key::Rsa), Test::KeepAlive, Test::H2];
        let tests = match std::env::var("TESTS") {
            Err(_) => all.to_vec(),
            Ok(list) => {
                let wanted: Vec<&str> = list.split(',').map(str::trim).collect();
                let tests: Vec<Test> = all.into_iter().filter(|t| wanted.contains(&t.id())).collect();
                if tests.is_empty() {
                    return Err(format!("TESTS={list:?} names none of ecdsa, rsa, https, h2"));
                }
                tests
            }
        };
        Ok(Options {
            rounds,
            duration_secs,
            workers: env_count("WORKERS", 1)?,
            hs_clients: env_count("HS_CLIENTS", 100)?,
            tests,
            self_test,
        })
    }
}

fn run() -> Result<(), Exit> {
    let opts = Options::parse()?;
    if opts.self_test {
        return parse::self_test().map_err(Exit::Failed);
    }
    let tools = Tools::find(true).map_err(Exit::MissingTools)?;
    let h2load = tools
        .h2load
        .clone()
        .ok_or_else(|| Exit::MissingTools("missing h2load; install with: apt-get install -y nghttp2-client".into()))?;
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let lab = Lab::new(tools, tmp.path(), opts.workers);

    let [backend_port] = free_ports()?;
    let mut backend = lab.start_backend(backend_port)?;
    let backends = [backend_port];
    let drover = drover_binary()?;

    let keys: Vec<Key> = [Key::Ecdsa, Key::Rsa]
        .into_iter()
        .filter(|k| opts.tests.iter().any(|t| t.key() == *k))
        .collect();
    let mut instances = Vec::new();
    for key in keys {
        let (cert, private) = make_certificate(tmp.path(), key)?;
        for (proxy, name) in PROXIES.into_iter().zip(key.names()) {
            let [port, admin] = free_ports()?;
            let started = match proxy {
                "nginx" => lab.start_nginx_tls(name, port, &backends, &cert, &private),
                "haproxy" => lab.start_haproxy_tls(name, port, &backends, &cert, &private),
                _ => {
                    let variant = Variant {
                        name,
                        routes: "",
                        static_config: "",
                    };
                    lab.start_drover_tls(&drover, port, admin, &backends, &variant, (&cert, &private))
                }
            };
            let mut instance = Instance {
                name,
                proxy,
                key,
                port,
                server: None,
                skipped: None,
            };
            match started {
                Ok(server) => instance.server = Some(server),
                Err(e) => instance.skip(e),
            }
            instances.push(instance);
        }
    }

    println!(
        "\ntls_compare: {} round(s) × {} s per measurement, load generators on CPU {}, proxies on CPU {}, \
         {} worker(s) each; backend nginx `return 200 \"1\"` over plain HTTP/1.1 with upstream keep-alive\n\
         caddy: not measured (not in Debian 12's archive)\n\
         drover: rustls with the crypto provider it was built with (ring; aws-lc-rs with `--features aws-lc`, see its log line `tls=`)",
        opts.rounds,
        opts.duration_secs,
        lab.loadgen_cpus,
        lab.server_cpus.as_deref().unwrap_or("any (not pinned)"),
        opts.workers,
    );
    // Each target answers over TLS, and says what it negotiated; the first keep-alive run fills
    // pools and caches and is not recorded.
    for instance in instances.iter_mut().filter(|i| i.skipped.is_none()) {
        let mut seen = Vec::new();
        for alpn in ["--h1", "--npn-list=h2"] {
            let args = ["-t1", "-c2", "-n20", alpn].map(String::from);
            let args: Vec<String> = args.into_iter().chain([instance.url()]).collect();
            match lab
                .run_loadgen_timed(&h2load, &args)
                .and_then(|(out, _)| H2loadSummary::parse(&out))
            {
                Ok(s) if s.succeeded == 20 && s.errors == 0 => seen.push(s.negotiated),
                Ok(s) => seen.push(format!("{} of 20 requests succeeded ({})", s.succeeded, s.negotiated)),
                Err(e) => seen.push(e),
            }
        }
        println!("{}: {}", instance.name, seen.join("; "));
        if !seen.iter().all(|s| s.starts_with("TLSv")) {
            instance.skip(format!("its check failed: {}", seen.join("; ")));
        } else if instance.key == Key::Ecdsa {
            let _ = lab.run_wrk_url_timed(&instance.url(), 1, WRK_CONNECTIONS, &[]);
        }
    }

    // samples[test][instance]
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![vec![]; instances.len()]; opts.tests.len()];
    for round in 1..=opts.rounds {
        for (t, &test) in opts.tests.iter().enumerate() {
            let members: Vec<usize> = (0..instances.len()).filter(|&i| instances[i].key == test.key()).collect();
            let mut line = format!("round {round}/{} {}:", opts.rounds, test.id());
            for k in round_order(members.len(), round) {
                let i = members[k];
                let instance = &mut instances[i];
                if instance.skipped.is_some() {
                    continue;
                }
                let result = measure(&lab, &h2load, instance, test, opts.duration_secs, opts.hs_clients);
                if let Some(status) = instance.server.as_mut().and_then(Server::exited) {
                    let tail = instance.server.as_ref().map(Server::log_tail).unwrap_or_default();
                    instance.skip(format!("its server exited ({status}){tail}"));
                    continue;
                }
                match result {
                    Ok(sample) => {
                        let _ = write!(line, "  {} {:.0}/s", instance.proxy, sample.rate);
                        samples[t][i].push(sample);
                    }
                    Err(e) => instance.skip(e),
                }
            }
            println!("{line}");
        }
        if let Some(status) = backend.exited() {
            return Err(Exit::Failed(format!("the backend exited ({status}){}", backend.log_tail())));
        }
    }

    for (t, &test) in opts.tests.iter().enumerate() {
        print_table(test, &instances, &samples[t], opts.rounds, opts.hs_clients);
    }
    Ok(())
}

/// One round of `test` on `instance`: its rate, errors and CPU per handshake or request.
fn measure(lab: &Lab, h2load: &Path, instance: &Instance, test: Test, secs: u32, hs_clients: u32) -> Result<Sample> {
    let server = instance.server.as_ref().ok_or("not running")?;
    let before = server.cpu_time()?;
    let (rate, units, errors, client) = match test {
        Test::Handshakes(_) => {
            // Bursts of hs_clients fresh connections, one GET each, until `secs` have passed.
            let args: Vec<String> = vec![
                "--h1".into(),
                "-t1".into(),
                format!("-c{hs_clients}"),
                format!("-n{hs_clients}"),
                instance.url(),
            ];
            let started = Instant::now();
            let (mut units, mut errors, mut elapsed, mut client) = (0, 0, Duration::ZERO, 0.0);
            while started.elapsed() < Duration::from_secs(secs.into()) {
                let (out, cpu) = lab.run_loadgen_timed(h2load, &args)?;
                let s = H2loadSummary::parse(&out)?;
                units += s.succeeded;
                errors += s.errors;
                elapsed += s.elapsed;
                client += cpu.total();
            }
            (units as f64 / elapsed.as_secs_f64().max(1e-9), units, errors, client)
        }
        Test::KeepAlive => {
            let (out, cpu) = lab.run_wrk_url_timed(&instance.url(), secs, WRK_CONNECTIONS, &[])?;
            let r = WrkResult::parse(&out)?;
            (r.requests_per_sec, r.requests, r.errors.total(), cpu.total())
        }
        Test::H2 => {
            let args: Vec<String> = vec![
                "-t1".into(),
                format!("-c{H2_CLIENTS}"),
                format!("-m{H2_STREAMS}"),
                format!("-D{secs}"),
                instance.url(),
            ];
            let (out, cpu) = lab.run_loadgen_timed(h2load, &args)?;
            let s = H2loadSummary::parse(&out)?;
            if !s.negotiated.ends_with("h2") {
                return Err(format!("h2load did not speak h2: {}", s.negotiated));
            }
            (s.requests_per_sec, s.succeeded, s.errors, cpu.total())
        }
    };
    let used = server.cpu_time()?.since(before);
    let per = units.max(1) as f64;
    Ok(Sample {
        rate,
        errors,
        proxy: Some(CpuTime {
            user: used.user / per,
            system: used.system / per,
        }),
        client: client / per,
    })
}

fn print_table(test: Test, instances: &[Instance], samples: &[Vec<Sample>], rounds: usize, hs_clients: u32) {
    println!(
        "\n{} — median of {rounds} round(s), errors summed; CPU per {} in µs (proxy: /proc, every thread; client: sh `times`)",
        test.title(hs_clients),
        if matches!(test, Test::Handshakes(_)) {
            "connection (handshake + one proxied GET)"
        } else {
            "request"
        },
    );
    println!(
        "{:<9} {:>13} {:>17} {:>7} {:>11} {:>11} {:>11} {:>11} {:>10}",
        "proxy",
        test.unit(),
        "min–max",
        "errors",
        "proxy user",
        "proxy sys",
        "proxy total",
        "client",
        "proxy busy"
    );
    let mut medians: Vec<(&str, f64, Option<f64>)> = Vec::new();
    for (instance, samples) in instances.iter().zip(samples).filter(|(i, _)| i.key == test.key()) {
        let Some(rate) = median(samples.iter().map(|s| s.rate)) else {
            let why = instance.skipped.as_deref().and_then(|s| s.lines().next()).unwrap_or("not measured");
            println!("{:<9} skipped: {why}", instance.proxy);
            continue;
        };
        let lo = samples.iter().map(|s| s.rate).min_by(f64::total_cmp).unwrap_or(rate);
        let hi = samples.iter().map(|s| s.rate).max_by(f64::total_cmp).unwrap_or(rate);
        let proxy = |f: fn(CpuTime) -> f64| median(samples.iter().filter_map(|s| s.proxy.map(f)));
        let total = proxy(CpuTime::total);
        let us = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{:.1}", v * 1e6));
        println!(
            "{:<9} {:>13} {:>17} {:>7} {:>11} {:>11} {:>11} {:>11} {:>9.0}%",
            instance.proxy,
            fmt_count(rate),
            format!("{}–{}", fmt_count(lo), fmt_count(hi)),
            samples.iter().map(|s| s.errors).sum::<u64>(),
            us(proxy(|c| c.user)),
            us(proxy(|c| c.system)),
            us(total),
            us(median(samples.iter().map(|s| s.client))),
            total.unwrap_or(0.0) * rate * 100.0,
        );
        medians.push((instance.proxy, rate, total));
    }
    let find = |name: &str| medians.iter().find(|(p, _, _)| *p == name);
    let Some(&(_, drover_rate, drover_cpu)) = find("drover") else {
        println!("ratios: none, drover was not measured");
        return;
    };
    let mut ratios = Vec::new();
    for peer in PEERS {
        if let Some(&(_, rate, cpu)) = find(peer) {
            let mut r = format!("drover/{peer}: {} {:.2}×", test.unit(), drover_rate / rate);
            if let (Some(d), Some(p)) = (drover_cpu, cpu) {
                let _ = write!(r, ", CPU {:.2}×", d / p);
            }
            ratios.push(r);
        }
    }
    println!("ratios (medians): {}", ratios.join("   "));
}

/// A self-signed certificate for `localhost` and 127.0.0.1 with a `key` key, made by the
/// `openssl` CLI (rcgen makes no RSA keys); returns the certificate and key files.
fn make_certificate(dir: &Path, key: Key) -> Result<(PathBuf, PathBuf)> {
    let stem = match key {
        Key::Ecdsa => "ecdsa",
        Key::Rsa => "rsa",
    };
    let (cert, private) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
    let output = Command::new("openssl")
        .args(["req", "-x509"])
        .args(key.newkey())
        .args(["-nodes", "-days", "30", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&private)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run openssl (apt-get install -y openssl): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "openssl req failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok((cert, private))
}
