//! Parsers for what the load generators print, and `--self-test`, which checks them on real
//! outputs (a `harness = false` bench runs no `#[test]`).
//!
//! Shared through `#[path]` by `load_compare.rs` and `observe_cost.rs`; each uses part of it.
#![allow(dead_code)]

use std::time::Duration;

use super::Result;

/// What one closed-loop wrk run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub errors: WrkErrors,
}

/// The failures wrk counts: bad statuses and socket errors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrkErrors {
    non_2xx_3xx: u64,
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
}

impl WrkErrors {
    pub fn total(&self) -> u64 {
        self.non_2xx_3xx + self.connect + self.read + self.write + self.timeout
    }
}

impl std::fmt::Display for WrkErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "non-2xx/3xx {}, socket errors: connect {}, read {}, write {}, timeout {}",
            self.non_2xx_3xx, self.connect, self.read, self.write, self.timeout
        )
    }
}

impl WrkResult {
    /// Parses the output of `wrk --latency`.
    pub fn parse(output: &str) -> Result<Self> {
        let (mut requests, mut requests_per_sec, mut p50, mut p99) = (None, None, None, None);
        let mut errors = WrkErrors::default();
        for line in output.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("Requests/sec:") {
                requests_per_sec = v.trim().parse::<f64>().ok();
            } else if let Some(v) = line.strip_prefix("50%") {
                p50 = parse_wrk_time(v.trim());
            } else if let Some(v) = line.strip_prefix("99%") {
                p99 = parse_wrk_time(v.trim());
            } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
                errors.non_2xx_3xx = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("Socket errors:") {
                for part in v.split(',') {
                    let mut words = part.split_whitespace();
                    let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                        continue;
                    };
                    let n = n.parse().unwrap_or(0);
                    match kind {
                        "connect" => errors.connect = n,
                        "read" => errors.read = n,
                        "write" => errors.write = n,
                        "timeout" => errors.timeout = n,
                        _ => {}
                    }
                }
            } else if let Some((n, _)) = line.split_once(" requests in ") {
                requests = n.trim().parse().ok();
            }
        }
        match (requests, requests_per_sec, p50, p99) {
            (Some(requests), Some(requests_per_sec), Some(p50), Some(p99)) => Ok(WrkResult {
                requests,
                requests_per_sec,
                p50,
                p99,
                errors,
            }),
            _ => Err(format!("unexpected wrk output (was --latency given?):\n{output}")),
        }
    }
}

/// wrk's time format: `340.00us`, `1.46ms`, `2.00s`, `1.50m`.
fn parse_wrk_time(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let value = number.parse::<f64>().ok()?;
    (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value * scale))
}

/// What one open-loop h2load run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenLoopResult {
    pub achieved_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// h2load's `failed` count: non-2xx/3xx statuses, resets, timeouts.
    pub errors: u64,
}

impl OpenLoopResult {
    /// Parses h2load's summary (stdout) and its `--log-file` (start µs, status, duration µs).
    pub fn parse(summary: &str, log: &str) -> Result<Self> {
        let mut achieved = None;
        let mut errors = None;
        for line in summary.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("finished in ") {
                // "finished in 10.00s, 25000.00 req/s, 3.52MB/s"
                achieved = rest.split(", ").nth(1).and_then(|r| r.strip_suffix(" req/s"));
                achieved = achieved.filter(|r| r.parse::<f64>().is_ok());
            } else if let Some(rest) = line.strip_prefix("requests:") {
                // "requests: 100 total, 100 started, 100 done, 98 succeeded, 2 failed, …"
                errors = rest
                    .split(',')
                    .find_map(|part| part.trim().strip_suffix(" failed")?.parse::<u64>().ok());
            }
        }
        let mut durations: Vec<u64> = log
            .lines()
            .filter_map(|line| line.split('\t').nth(2)?.trim().parse().ok())
            .collect();
        durations.sort_unstable();
        match (achieved, errors, durations.is_empty()) {
            (Some(achieved), Some(errors), false) => Ok(OpenLoopResult {
                achieved_per_sec: achieved.parse().unwrap_or(0.0),
                p50: Duration::from_micros(percentile(&durations, 0.50)),
                p99: Duration::from_micros(percentile(&durations, 0.99)),
                errors,
            }),
            _ => Err(format!(
                "unexpected h2load output ({} logged requests):\n{summary}",
                durations.len()
            )),
        }
    }
}

/// What one closed-loop h2load run printed: its own elapsed time and rate, the request counts
/// and what TLS it negotiated.
#[derive(Debug, Clone, PartialEq)]
pub struct H2loadSummary {
    /// "finished in": from the first connection to the last response, without start-up.
    pub elapsed: Duration,
    pub requests_per_sec: f64,
    pub succeeded: u64,
    /// failed (h2load counts 4xx and 5xx there, and only 2xx and 3xx as succeeded) + errored +
    /// timeout, and requests that never completed.
    pub errors: u64,
    /// "TLS Protocol: TLSv1.3", "Cipher: TLS_AES_256_GCM_SHA384", "Server Temp Key: X25519
    /// 253 bits", "Application protocol: h2", joined by ", " (only the last for plain HTTP).
    pub negotiated: String,
}

impl H2loadSummary {
    /// Parses h2load's stdout.
    pub fn parse(summary: &str) -> Result<Self> {
        let (mut elapsed, mut rate, mut counts) = (None, None, None);
        let mut negotiated = Vec::new();
        for line in summary.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("finished in ") {
                // "finished in 1.49s, 2683.68 req/s, 0B/s"
                let mut parts = rest.split(", ");
                elapsed = parts.next().and_then(parse_h2load_time);
                rate = parts.next().and_then(|r| r.strip_suffix(" req/s")?.parse::<f64>().ok());
            } else if let Some(rest) = line.strip_prefix("requests:") {
                // "requests: 100 total, 100 started, 100 done, 98 succeeded, 2 failed, 0 errored, 0 timeout"
                let count = |what: &str| {
                    rest.split(',')
                        .find_map(|part| part.trim().strip_suffix(what)?.trim().parse::<u64>().ok())
                };
                if let (Some(total), Some(ok), Some(failed), Some(errored), Some(timeout)) = (
                    count(" total"),
                    count(" succeeded"),
                    count(" failed"),
                    count(" errored"),
                    count(" timeout"),
                ) {
                    counts = Some((ok, (failed + errored + timeout).max(total.saturating_sub(ok))));
                }
            } else if ["TLS Protocol:", "Cipher:", "Server Temp Key:", "Application protocol:"]
                .iter()
                .any(|p| line.starts_with(p))
            {
                negotiated.push(line.split_once(':').map_or(line, |(_, v)| v.trim()).to_string());
            }
        }
        match (elapsed, rate, counts) {
            (Some(elapsed), Some(requests_per_sec), Some((succeeded, errors))) => Ok(H2loadSummary {
                elapsed,
                requests_per_sec,
                succeeded,
                errors,
                negotiated: negotiated.join(", "),
            }),
            _ => Err(format!("unexpected h2load output:\n{summary}")),
        }
    }
}

/// h2load's time format: `21.07ms`, `1.49s`, `340us`.
fn parse_h2load_time(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else {
        (text.strip_suffix('s')?, 1.0)
    };
    let value = number.parse::<f64>().ok()?;
    (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value * scale))
}

/// Nearest-rank percentile of sorted, non-empty values.
fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `--self-test`: checks the parsers on real outputs (harness = false runs no #[test]).
pub fn self_test() -> Result<()> {
    let mut passed = 0;
    let mut failed = Vec::new();
    let mut check = |name: &str, ok: bool| {
        if ok {
            passed += 1;
        } else {
            failed.push(name.to_string());
        }
    };

    let clean = WrkResult::parse(WRK_CLEAN);
    check("wrk clean: parses", clean.is_ok());
    if let Ok(r) = clean {
        check("wrk clean: req/s", r.requests_per_sec == 104649.84);
        check("wrk clean: requests", r.requests == 220137);
        check("wrk clean: p50", r.p50 == Duration::from_micros(340));
        check("wrk clean: p99", r.p99 == Duration::from_micros(1460));
        check("wrk clean: no errors", r.errors.total() == 0);
    }
    let failing = WrkResult::parse(WRK_ERRORS);
    check("wrk errors: parses", failing.is_ok());
    if let Ok(r) = failing {
        let expected = WrkErrors {
            non_2xx_3xx: 1203,
            connect: 1,
            read: 17,
            write: 2,
            timeout: 40,
        };
        check("wrk errors: counts", r.errors == expected);
        check("wrk errors: p99 in seconds", r.p99 == Duration::from_millis(1990));
    }
    check("wrk garbage: rejected", WrkResult::parse("Running 1s test\n").is_err());
    check("wrk time: minutes", parse_wrk_time("1.50m") == Some(Duration::from_secs(90)));
    check("wrk time: unknown unit", parse_wrk_time("3.00xs").is_none());

    let log: String = (1..=200).map(|i| format!("1795304230135588\t200\t{i}\n")).collect();
    let open = OpenLoopResult::parse(H2LOAD_SUMMARY, &log);
    check("h2load: parses", open.is_ok());
    if let Ok(r) = open {
        check("h2load: achieved", r.achieved_per_sec == 9968.0);
        check("h2load: failed", r.errors == 3);
        check("h2load: p50", r.p50 == Duration::from_micros(100));
        check("h2load: p99", r.p99 == Duration::from_micros(198));
    }
    check("h2load: empty log rejected", OpenLoopResult::parse(H2LOAD_SUMMARY, "").is_err());

    let tls = H2loadSummary::parse(H2LOAD_TLS);
    check("h2load tls: parses", tls.is_ok());
    if let Ok(r) = tls {
        check("h2load tls: elapsed", r.elapsed == Duration::from_micros(21_070));
        check("h2load tls: rate", r.requests_per_sec == 9494.42);
        check("h2load tls: counts", r.succeeded == 198 && r.errors == 2);
        check(
            "h2load tls: negotiated",
            r.negotiated == "TLSv1.3, TLS_AES_256_GCM_SHA384, X25519 253 bits, h2",
        );
    }
    let plain = H2loadSummary::parse(H2LOAD_SUMMARY);
    check(
        "h2load plain: parses",
        plain
            .as_ref()
            .is_ok_and(|r| r.elapsed == Duration::from_secs(2) && r.negotiated == "http/1.1"),
    );
    check("h2load: garbage rejected", H2loadSummary::parse("starting benchmark...\n").is_err());

    check("median: odd", median([3.0, 1.0, 2.0].into_iter()) == Some(2.0));
    check("median: even", median([4.0, 1.0, 2.0, 3.0].into_iter()) == Some(2.5));
    check("fmt_count", fmt_count(1234567.4) == "1,234,567" && fmt_count(999.0) == "999");

    for name in &failed {
        println!("self-test FAILED: {name}");
    }
    println!("load_compare self-test: {passed} passed, {} failed", failed.len());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} self-test check(s) failed", failed.len()))
    }
}

const WRK_CLEAN: &str = "Running 2s test @ http://127.0.0.1:18080/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   416.69us  329.18us   6.78ms   95.46%
    Req/Sec   105.33k    16.38k  123.05k    80.95%
  Latency Distribution
     50%  340.00us
     75%  500.00us
     90%  639.00us
     99%    1.46ms
  220137 requests in 2.10s, 31.07MB read
Requests/sec: 104649.84
Transfer/sec:     14.77MB
";

const WRK_ERRORS: &str = "Running 3s test @ http://127.0.0.1:18081/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.10ms   80.10ms   1.99s    98.00%
    Req/Sec    20.01k     1.00k   22.00k    70.00%
  Latency Distribution
     50%    1.10ms
     75%    1.50ms
     90%    2.00ms
     99%    1.99s
  60000 requests in 3.00s, 8.00MB read
  Socket errors: connect 1, read 17, write 2, timeout 40
  Non-2xx or 3xx responses: 1203
Requests/sec:  20000.00
Transfer/sec:      2.67MB
";

const H2LOAD_SUMMARY: &str = "starting benchmark...
Application protocol: http/1.1

finished in 2.00s, 9968.00 req/s, 1.41MB/s
requests: 19936 total, 19968 started, 19936 done, 19933 succeeded, 3 failed, 0 errored, 0 timeout
status codes: 19933 2xx, 0 3xx, 0 4xx, 3 5xx
traffic: 2.81MB (2950528) total, 2.05MB (2153088) headers (space savings 0.00%), 19.47KB (19936) data
";

const H2LOAD_TLS: &str = "starting benchmark...
spawning thread #0: 200 total client(s). 200 total requests
TLS Protocol: TLSv1.3
Cipher: TLS_AES_256_GCM_SHA384
Server Temp Key: X25519 253 bits
Application protocol: h2
progress: 10% done

finished in 21.07ms, 9494.42 req/s, 1.34MB/s
requests: 200 total, 200 started, 200 done, 198 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 198 2xx, 0 3xx, 0 4xx, 2 5xx
";

/// The median, or None for no values.
pub fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[mid]),
        _ => Some((values[mid - 1] + values[mid]) / 2.0),
    }
}

/// `1234567.4` → `1,234,567`.
pub fn fmt_count(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
