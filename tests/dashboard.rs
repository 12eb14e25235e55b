//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven
//! over WebDriver): it loads with no console error, lists the routers and services of a known
//! configuration and the items a provider skipped with their reasons, shows a killed server as
//! ejected within 2 s without a reload, and its explain form names the expected router. It is
//! also loaded on a phone-sized viewport, where nothing may overflow sideways.
//!
//! Screenshots go to `<target dir>/artifacts/` (`dashboard.png`, `dashboard-phone.png`,
//! `dashboard-phone-services.png`). The browser reaches nothing but 127.0.0.1: every other
//! address goes to a proxy that does not exist.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use support::marathon::{self, Marathon};
use support::{client, get, send, whoami, TestDrover};

fn find_tool(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/lib/chromium")]) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Where screenshots go: `$CARGO_TARGET_DIR/artifacts`, else `target/artifacts` next to the
/// test binary's profile directory.
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test>
        exe.ancestors().nth(3).map(Path::to_path_buf).expect("target directory")
    });
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts directory");
    dir
}

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Driver {
    async fn start(chromedriver: &Path, dir: &Path) -> Self {
        let port = support::free_port().port();
        let log = dir.join("chromedriver.log");
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; install it with `{}` (Debian: chromium-driver)",
                    chromedriver.display(),
                    support::SETUP
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let c = client();
        let status = format!("{url}/status");
        let ready = async {
            for _ in 0..200 {
                if let Ok(a) = send(&c, "GET", &status, &[]).await {
                    if a.body.contains("\"ready\":true") {
                        return true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        };
        let this = Self { child, url, log };
        assert!(ready.await, "chromedriver did not become ready; log:\n{}", this.log());
        this
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A new headless Chromium session: desktop (1280 wide) or an emulated phone (390×844).
    async fn session(&self, chromium: &Path, phone: bool) -> Client {
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
            "--lang=en-US",
            // Nothing but loopback: any other address goes to a proxy that is not there.
            "--proxy-server=http://127.0.0.1:9",
        ];
        if !phone {
            args.push("--window-size=1280,1000");
        }
        let mut options = json!({ "binary": chromium.display().to_string(), "args": args });
        if phone {
            options["mobileEmulation"] =
                json!({ "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 2.0, "touch": true, "mobile": true } });
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("capabilities are an object")
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("no Chromium session: {e}\nchromedriver log:\n{}", self.log()))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver's log endpoint: the browser console (`goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_string()))
    }
}

/// Console messages at level SEVERE (errors, failed loads) since the last call.
async fn console_errors(browser: &Client) -> Vec<String> {
    let entries = browser.issue_cmd(BrowserLog).await.expect("browser log");
    entries
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn script(browser: &Client, js: &str) -> Value {
    browser
        .execute(js, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{js}"))
}

/// Returns once the browser has painted what the last script changed (a resize, a scroll):
/// the second animation frame after it comes after that paint. WebDriver waits for the
/// promise.
async fn painted(browser: &Client) {
    script(
        browser,
        "return new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(1))));",
    )
    .await;
}

/// Polls `js` (an expression) until it is truthy; returns how long it took.
async fn wait_for(browser: &Client, what: &str, js: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let v = script(browser, &format!("return !!({js});")).await;
        if v == Value::Bool(true) {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            let body = script(browser, "return document.body.innerText;").await;
            panic!(
                "{what}: not within {limit:?}; the page says:\n{}",
                body.as_str().unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn screenshot(browser: &Client, name: &str) -> PathBuf {
    let png = browser.screenshot().await.expect("screenshot");
    let path = artifacts().join(name);
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
    path
}

fn server_state(url: &str) -> String {
    format!("document.querySelector('[data-service=\"api@file\"] [data-server=\"{url}\"]')?.dataset.state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_routes_health_providers_and_explains_in_a_real_browser() {
    let (Some(chromium), Some(chromedriver)) = (find_tool(&["chromium", "chromium-browser"]), find_tool(&["chromedriver"])) else {
        panic!(
            "the dashboard test needs Chromium and its WebDriver; install them with `{}` (Debian: chromium, chromium-driver)",
            support::SETUP
        );
    };

    // Backends: `web` over two, `api` over two (one will be killed), one Marathon task.
    let (w1, _h1) = whoami::spawn("w1").await;
    let (w2, _h2) = whoami::spawn("w2").await;
    let (a1, a1_handle) = whoami::spawn("a1").await;
    let (a2, _h4) = whoami::spawn("a2").await;
    let (m1, _h5) = whoami::spawn("m1").await;
    let cluster = Marathon::start().await;
    cluster.put_app(marathon::app(
        "/shop/web",
        json!({"drover.enable": "true", "drover.http.routers.shop.rule": "Host(`shop.test`)"}),
        vec![marathon::task("/shop/web", 0, m1)],
    ));
    cluster.put_app(marathon::app(
        "/shop/broken",
        json!({"drover.enable": "true", "drover.http.services.broken.loadbalancer.server.port": "eighty"}),
        vec![marathon::task("/shop/broken", 0, m1)],
    ));
    let server = |s: &str, a: SocketAddr| format!("[[http.services.{s}.loadBalancer.servers]]\nurl = \"http://{a}\"\n");
    let mut routes = String::from(
        "[http.routers.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n\
         [http.routers.api]\nrule = \"Host(`api.test`)\"\nservice = \"api\"\n\
         [http.routers.broken]\nrule = \"Host(`x`\"\nservice = \"web\"\n\
         [http.routers.secure]\nrule = \"Host(`secure.test`)\"\nservice = \"web\"\ntls = { certResolver = \"le\" }\n\
         [tcp.routers.db]\nrule = \"HostSNI(`db.test`)\"\nservice = \"db\"\ntls = { passthrough = true }\n",
    );
    for (s, a) in [("web", w1), ("web", w2), ("api", a1), ("api", a2)] {
        routes.push_str(&server(s, a));
    }
    routes.push_str(&format!("[[tcp.services.db.loadBalancer.servers]]\naddress = \"{w1}\"\n"));
    routes.push_str("[http.services.canary.weighted]\nservices = [{ name = \"web\", weight = 9 }, { name = \"api\", weight = 1 }]\n");
    // An ACME resolver whose CA is down: its certificate shows as failed, with the reason.
    let acme_dir = tempfile::tempdir().expect("temp dir");
    let resolver = format!(
        "[certificatesResolvers.le.acme]\nstorage = \"{}\"\ncaServer = \"https://127.0.0.1:9/dir\"\nhttpChallenge = {{ entryPoint = \"web\" }}\nretryMin = \"30s\"\n",
        acme_dir.path().join("acme.json").display()
    );
    let d = TestDrover::start_with(
        &routes,
        &format!("[providers.marathon]\nendpoint = \"{}\"\n{resolver}", cluster.leader_url()),
    )
    .await;
    let dashboard = format!("http://{}/dashboard/", d.drover.api());
    let a1_url = format!("http://{a1}");

    let driver = Driver::start(&chromedriver, d.dir.path()).await;
    let browser = driver.session(&chromium, false).await;
    browser.goto(&dashboard).await.expect("open the dashboard");

    // It lists the test configuration.
    for (what, js) in [
        ("router web", "document.querySelector('[data-router=\"web@file\"]')"),
        ("router api", "document.querySelector('[data-router=\"api@file\"]')"),
        (
            "router shop from Marathon",
            "document.querySelector('[data-router=\"shop@marathon\"]')",
        ),
        (
            "the disabled router with its error",
            "document.querySelector('[data-router=\"broken@file\"][data-status=\"disabled\"] .errors')",
        ),
        (
            "service web with two servers up",
            "document.querySelectorAll('[data-service=\"web@file\"] [data-state=\"up\"]').length === 2",
        ),
        ("service api", "document.querySelector('[data-service=\"api@file\"]')"),
        (
            "the weighted service as a tree of its children",
            "document.querySelector('[data-service=\"canary@file\"] .children[data-kind=\"weighted\"]')?.textContent.includes('web@file · weight 9')",
        ),
        (
            "the Marathon item skipped with its reason",
            "[...document.querySelectorAll('[data-provider=\"marathon\"] li.skipped')].some(li => li.textContent.includes('eighty'))",
        ),
        ("live updates", "document.getElementById('live').dataset.mode === 'live'"),
        (
            "overview counts",
            "document.querySelector('[data-card=\"routers\"] .value')?.textContent === '5'",
        ),
        (
            "the TCP router and its service with its server up",
            "document.querySelector('[data-l4-router=\"db@file\"] [data-open]') && document.querySelector('[data-l4-service=\"db@file\"] [data-state=\"up\"]')",
        ),
        (
            "the ACME certificate failing, with its reason and next try",
            "document.querySelector('[data-certificate=\"secure.test\"] [data-acme-state=\"failed\"]') && document.querySelector('[data-certificate=\"secure.test\"] .bad-text')?.textContent.includes('next try')",
        ),
    ] {
        wait_for(&browser, what, js, Duration::from_secs(10)).await;
    }
    assert_eq!(script(&browser, &format!("return {};", server_state(&a1_url))).await, "up");

    // Kill a server; under traffic it is ejected, and the page shows it without a reload.
    let marker = script(&browser, "window.__sameDocument = 42; return 1;").await;
    assert_eq!(marker, 1);
    a1_handle.stop().await;
    let killed = Instant::now();
    let traffic = {
        let url = d.url("/");
        tokio::spawn(async move {
            let c = client();
            for _ in 0..200 {
                let _ = send(&c, "GET", &url, &[("host", "api.test")]).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let shown = wait_for(
        &browser,
        "the killed server shown as ejected",
        &format!("{} === 'ejected'", server_state(&a1_url)),
        Duration::from_secs(5),
    )
    .await;
    let since_kill = killed.elapsed();
    traffic.abort();
    eprintln!("ejection on screen {since_kill:?} after the kill ({shown:?} of polling the page)");
    assert!(since_kill < Duration::from_secs(2), "the ejection took {since_kill:?} to show");
    assert_eq!(script(&browser, "return window.__sameDocument;").await, 42, "no reload happened");
    wait_for(
        &browser,
        "overview counts the ejection",
        "document.querySelector('[data-card=\"servers\"]')?.textContent.includes('1 ejected')",
        Duration::from_secs(3),
    )
    .await;

    // The explain form names the expected router and the next server (not the ejected one).
    let url_field = browser.find(Locator::Id("explain-url")).await.expect("explain url field");
    url_field.clear().await.expect("clear");
    url_field.send_keys("http://api.test/orders?id=7").await.expect("type url");
    browser
        .find(Locator::Id("explain-submit"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
    wait_for(
        &browser,
        "explain names api@file",
        "document.querySelector('#explain-verdict')?.dataset.router === 'api@file'",
        Duration::from_secs(5),
    )
    .await;
    let verdict = script(&browser, "return document.getElementById('explain-verdict').textContent;").await;
    assert!(verdict.as_str().is_some_and(|v| v.contains(&format!("http://{a2}"))), "{verdict}");
    let web_line = script(
        &browser,
        "return document.querySelector('[data-explain-router=\"web@file\"]').dataset.result;",
    )
    .await;
    assert_eq!(web_line, "also-matches");

    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // A screenshot of the whole page.
    let height = script(&browser, "return document.documentElement.scrollHeight;")
        .await
        .as_u64()
        .unwrap_or(1000);
    browser.set_window_size(1280, height.clamp(800, 4000) as u32).await.expect("resize");
    script(&browser, "window.scrollTo(0, 0); return 1;").await;
    painted(&browser).await;
    screenshot(&browser, "dashboard.png").await;
    browser.close().await.expect("close the desktop session");

    // A phone: the same content, nothing wider than the screen.
    let phone = driver.session(&chromium, true).await;
    phone.goto(&dashboard).await.expect("open the dashboard on a phone");
    wait_for(
        &phone,
        "routers on a phone",
        "document.querySelector('[data-router=\"api@file\"]') && document.querySelector('[data-service=\"api@file\"]')",
        Duration::from_secs(10),
    )
    .await;
    let width = script(&phone, "return window.innerWidth;").await;
    assert_eq!(width, 390, "the phone viewport is 390 CSS pixels wide");
    let overflow = script(
        &phone,
        "return [...document.querySelectorAll('body *')].filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.right > window.innerWidth + 1 && getComputedStyle(e).position !== 'fixed' && !e.closest('.tabs'); }).map(e => e.tagName + '.' + e.className).slice(0, 5);",
    )
    .await;
    assert_eq!(overflow, json!([]), "elements wider than the phone screen");
    let scroll_width = script(&phone, "return document.documentElement.scrollWidth;")
        .await
        .as_u64()
        .unwrap_or(0);
    assert!(scroll_width <= 390, "the page scrolls sideways on a phone ({scroll_width} px)");
    let font = script(
        &phone,
        "return parseFloat(getComputedStyle(document.querySelector('[data-router=\"api@file\"] .mono')).fontSize);",
    )
    .await;
    assert!(font.as_f64().is_some_and(|f| f >= 12.0), "text too small on a phone: {font}");
    screenshot(&phone, "dashboard-phone.png").await;
    script(&phone, "document.getElementById('services').scrollIntoView(); return 1;").await;
    painted(&phone).await;
    screenshot(&phone, "dashboard-phone-services.png").await;
    let errors = console_errors(&phone).await;
    assert!(errors.is_empty(), "console errors on a phone: {errors:#?}");
    phone.close().await.expect("close the phone session");
}

/// The value of data attribute `attribute` of the chart `metric` of series `series`, as the page
/// shows it (`NaN` while it is not there).
async fn chart_value(browser: &Client, series: &str, metric: &str, attribute: &str) -> f64 {
    let js =
        format!("return Number(document.querySelector('[data-series=\"{series}\"] [data-metric=\"{metric}\"]')?.dataset.{attribute});");
    script(browser, &js).await.as_f64().unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_show_a_burst_then_the_502s_and_the_ejection_of_the_only_server() {
    let (Some(chromium), Some(chromedriver)) = (find_tool(&["chromium", "chromium-browser"]), find_tool(&["chromedriver"])) else {
        panic!(
            "the dashboard test needs Chromium and its WebDriver; install them with `{}` (Debian: chromium, chromium-driver)",
            support::SETUP
        );
    };
    // One service with one server: with several, retries would hide the failures.
    let (only, only_handle) = whoami::spawn("only").await;
    let d = TestDrover::start(&support::service_toml("solo", "PathPrefix(`/`)", "solo", &[(only, 1)])).await;
    let driver = Driver::start(&chromedriver, d.dir.path()).await;
    let browser = driver.session(&chromium, false).await;
    browser
        .goto(&format!("http://{}/dashboard/#traffic", d.drover.api()))
        .await
        .expect("open the dashboard");
    wait_for(
        &browser,
        "the service's chart",
        "document.querySelector('[data-series=\"service:solo@file\"] [data-metric=\"rps\"]')",
        Duration::from_secs(10),
    )
    .await;

    // A burst: 240 requests, 8 at a time, all answered by the server.
    const BURST: usize = 240;
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let url = d.url("/");
            tokio::spawn(async move {
                let c = client();
                let mut ok = 0;
                for _ in 0..BURST / 8 {
                    if send(&c, "GET", &url, &[]).await.is_ok_and(|a| a.status == 200) {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for s in senders {
        ok += s.await.expect("sender");
    }
    assert_eq!(ok, BURST, "the burst was served");
    // The page counts every request of the burst (rate × 3 s, summed over the points).
    wait_for(
        &browser,
        "the burst in the entrypoint's chart",
        &format!(
            "Number(document.querySelector('[data-series=\"entrypoint:web\"] [data-metric=\"rps\"]')?.dataset.sum) * 3 >= {}",
            BURST as f64 - 1.0
        ),
        Duration::from_secs(10),
    )
    .await;
    let burst_peak = chart_value(&browser, "entrypoint:web", "rps", "peak").await;
    assert!(burst_peak >= BURST as f64 / 6.0, "the burst peaks at {burst_peak}/s on the page");
    assert_eq!(
        chart_value(&browser, "service:solo@file", "share5xx", "peak").await,
        0.0,
        "no error yet"
    );
    assert!(
        chart_value(&browser, "service:solo@file", "latency", "peak").await > 0.0,
        "latency drawn"
    );

    // The only server dies: its failures are 502s, then it is ejected.
    only_handle.stop().await;
    let c = client();
    let mut failed = 0;
    for _ in 0..20 {
        let status = get(&c, &d.url("/")).await.status;
        assert!(status >= 500, "a dead server answered {status}");
        failed += 1;
    }
    wait_for(
        &browser,
        "the 5xx share of the service",
        "Number(document.querySelector('[data-series=\"service:solo@file\"] [data-metric=\"share5xx\"]')?.dataset.peak) >= 0.99",
        Duration::from_secs(10),
    )
    .await;
    let share = chart_value(&browser, "service:solo@file", "share5xx", "sum").await;
    assert!(share >= 0.99, "the 5xx line reaches 100%: {share}");
    wait_for(
        &browser,
        "every request counted",
        &format!(
            "Number(document.querySelector('[data-series=\"entrypoint:web\"] [data-metric=\"rps\"]')?.dataset.sum) * 3 >= {}",
            (BURST + failed) as f64 - 1.0
        ),
        Duration::from_secs(10),
    )
    .await;
    let timeline = format!("[data-timeline-service=\"solo@file\"][data-timeline-server=\"http://{only}\"]");
    wait_for(
        &browser,
        "the ejection in the server's timeline",
        &format!("document.querySelector('{timeline} rect[data-state=\"ejected\"]')"),
        Duration::from_secs(10),
    )
    .await;
    let hover = script(
        &browser,
        &format!("return document.querySelector('{timeline} rect[data-state=\"ejected\"] title').textContent;"),
    )
    .await;
    let hover = hover.as_str().unwrap_or_default().to_string();
    assert!(hover.starts_with("ejected ") && hover.contains(": "), "hover text: {hover}");
    let before = script(
        &browser,
        &format!("return document.querySelector('{timeline} rect').dataset.state;"),
    )
    .await;
    assert_eq!(before, "up", "the timeline starts up");

    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    script(&browser, "document.getElementById('traffic').scrollIntoView(); return 1;").await;
    painted(&browser).await;
    screenshot(&browser, "dashboard-charts.png").await;
    browser.close().await.expect("close the session");
}
