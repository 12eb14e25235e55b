//! What drover writes to its log: bad input is named with where it is (file, line and column; the
//! router and the rule's column), and no secret ever appears, even at `debug`. The drover binary
//! runs with its log on stderr, as an operator runs it.

mod support;

use std::time::Duration;

use support::{client, free_port, get, send, whoami};

const BASIC_HASH: &str = "$2y$04$yythxO6/jQjD/4PhSF0eFOII9IsbKmurAnVdbco1o1enHBcHOh6R6";
const BASIC_PASSWORD: &str = "wonderland";
const TOKEN: &str = "t0ken-for-tests";
const CHECK_SECRET: &str = "topsecret";
const URL_PASSWORD: &str = "hunter2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_names_bad_input_and_never_a_secret() {
    let (backend, _w) = whoami::spawn("a").await;
    let dead = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let routes = dir.path().join("routes.toml");
    let good = format!(
        "[http.routers.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\n\
         [[http.services.s.loadBalancer.servers]]\nurl = \"http://{backend}\"\n\
         [http.services.s.loadBalancer.healthCheck]\npath = \"/health\"\ninterval = \"1h\"\n\
         [http.services.s.loadBalancer.healthCheck.headers]\nAuthorization = \"Bearer {CHECK_SECRET}\"\n\
         [http.routers.creds]\nrule = \"PathPrefix(`/creds`)\"\nservice = \"creds\"\n\
         [[http.services.creds.loadBalancer.servers]]\nurl = \"http://bob:{URL_PASSWORD}@{backend}\"\n\
         [http.routers.dead]\nrule = \"PathPrefix(`/dead`)\"\nservice = \"dead\"\n\
         [[http.services.dead.loadBalancer.servers]]\nurl = \"http://{dead}\"\n"
    );
    std::fs::write(&routes, &good).unwrap();
    let (web, api) = (free_port(), free_port());
    let config = dir.path().join("static.toml");
    std::fs::write(
        &config,
        format!(
            "[entryPoints.web]\naddress = \"{web}\"\n[api]\naddress = \"{api}\"\nbasicAuth = [\"alice:{BASIC_HASH}\"]\nbearerToken = \"{TOKEN}\"\n\
             [providers.file]\nfilename = \"{}\"\nwatch = true\n",
            routes.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("drover.log");
    let mut child = std::process::Command::new(support::drover_binary())
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("drover starts");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let c = client();
    let served = async {
        loop {
            if let Ok(answer) = send(&c, "GET", &format!("http://{web}/"), &[]).await {
                if answer.status == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .unwrap_or_else(|_| panic!("drover never served; log:\n{}", read_log()));

    // A server that refuses connections: a debug line per failed attempt, naming the server.
    for path in ["/dead", "/creds"] {
        let status = get(&c, &format!("http://{web}{path}")).await.status;
        assert!(status >= 500, "{path}: {status}");
    }
    support::wait_for_text(Duration::from_secs(10), read_log, |t| t.contains("attempt failed")).await;

    // Failed logins on the admin side.
    for auth in [
        format!("Bearer {TOKEN}x"),
        "Basic YWxpY2U6d3Jvbmc=".to_string(),
        format!("Bearer {BASIC_PASSWORD}"),
    ] {
        let answer = send(&c, "GET", &format!("http://{api}/api/overview"), &[("authorization", &auth)])
            .await
            .expect("an answer");
        assert_eq!(answer.status, 401);
    }

    // A file that does not parse: named with line and column, the last good routes kept.
    std::fs::write(&routes, format!("{good}[http.routers.x]\nrule = 42\n")).unwrap();
    let line = good.lines().count() + 2;
    let text = support::wait_for_text(Duration::from_secs(10), read_log, |t| t.contains(&format!("routes.toml:{line}:"))).await;
    assert!(text.contains(&format!("routes.toml:{line}:8")), "file, line and column:\n{text}");
    assert_eq!(get(&c, &format!("http://{web}/")).await.status, 200, "the last good routes serve");

    // A rule that does not parse disables that router, named with the column.
    std::fs::write(
        &routes,
        format!("{good}[http.routers.broken]\nrule = \"Host(`x`) && \"\nservice = \"s\"\n"),
    )
    .unwrap();
    let text = support::wait_for_text(Duration::from_secs(10), read_log, |t| t.contains("router disabled")).await;
    let disabled = text.lines().find(|l| l.contains("router disabled")).unwrap();
    assert!(disabled.contains("broken") && disabled.contains("column"), "{disabled}");

    let _ = child.kill();
    let _ = child.wait();
    let text = read_log();
    assert!(text.contains("DEBUG") && !text.contains('\x1b'), "plain text, at debug:\n{text}");
    for secret in [BASIC_HASH, BASIC_PASSWORD, TOKEN, CHECK_SECRET, URL_PASSWORD] {
        let at = text.lines().find(|l| l.contains(secret));
        assert!(at.is_none(), "`{secret}` is in the log: {}", at.unwrap_or_default());
    }
}
