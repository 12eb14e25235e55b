//! ACME's DNS-01 challenge through RFC 2136 against a real BIND 9: the solver adds the
//! `_acme-challenge` TXT record with a TSIG-signed update, waits until the servers serve it and
//! removes it, and what BIND serves is read back with `dig`, a client independent of drover.
//!
//! Needs `named`, `nsupdate` and `dig` (`tests/setup.sh` installs them); fails naming that
//! command when they are missing.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use drover::acme::dns01::{Dns01, Dns01Error, DnsChallengeConfig, Rfc2136Config};
use drover_providers::duration::ConfigDuration;
use support::bind::{Bind, TsigKeySpec, ZoneSpec};

/// The key `named` requires, as `tsig-keygen -a hmac-sha256 drover-key` would print it.
const KEY: TsigKeySpec<'static> = TsigKeySpec {
    name: "drover-key",
    algorithm: "hmac-sha256",
    secret: "ZHJvdmVyLWFjbWUtZG5zMDEtdGVzdC1zZWNyZXQtMzI=",
};
/// Valid base64, but not the secret `named` has for `drover-key`.
const WRONG_SECRET: &str = "bm90LXRoZS1zZWNyZXQtbmFtZWQtd2FzLWdpdmVuISE=";

/// Two challenge values, shaped like `KeyAuthorization::dns_value()` (43 base64url bytes).
const VALUE_A: &str = "Wv3wJ2aA1s4Xn9D3p6TqL0hYb7cE5fG8kR2mN4oP1uQ";
const VALUE_B: &str = "c7Hd9-Lq2Zx5Vb8Nm1Kj4Gf6Ds3Ap0Wo9Ei7Ru2Ty5_";

/// A zone with a default TTL of 60 s and a negative TTL of 1 s.
fn zone<'a>(origin: &'a str, records: &'a str) -> ZoneSpec<'a> {
    ZoneSpec {
        origin,
        ttl: 60,
        negative_ttl: 1,
        records,
    }
}

/// `dnsChallenge` with provider rfc2136, nothing else set.
fn rfc2136(rfc2136: Rfc2136Config) -> DnsChallengeConfig {
    DnsChallengeConfig {
        provider: "rfc2136".into(),
        rfc2136,
        ..DnsChallengeConfig::default()
    }
}

/// A solver updating `bind` with `KEY`'s name and algorithm and `secret`, checking propagation
/// every 50 ms for up to 5 s.
fn keyed_solver(bind: &Bind, secret: &str) -> Dns01 {
    let config = rfc2136(Rfc2136Config {
        nameserver: Some(bind.addr.to_string()),
        tsig_key: Some(KEY.name.into()),
        tsig_secret: Some(secret.into()),
        tsig_algorithm: Some("hmac-sha256.".into()),
        propagation_timeout: Some(seconds(5.0)),
        polling_interval: Some(seconds(0.05)),
        ..Rfc2136Config::default()
    });
    Dns01::new(&config, &no_env).expect("a valid dnsChallenge")
}

fn seconds(secs: f64) -> ConfigDuration {
    ConfigDuration(Duration::from_secs_f64(secs))
}

/// An environment with no variable set.
fn no_env(_: &str) -> Option<String> {
    None
}

fn strings(values: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn present_serves_the_value_and_cleanup_removes_only_it() {
    // An operator's record at the challenge name, which the solver must leave alone.
    let bind = Bind::start_with_key(&[zone("d.test.", "_acme-challenge.www IN TXT \"operator\"\n")], &KEY).await;
    let solver = keyed_solver(&bind, KEY.secret);
    let name = "_acme-challenge.www.d.test.";

    solver.present("www.d.test", VALUE_A).await.expect("present");
    assert_eq!(bind.txt(name).await, strings(&["operator", VALUE_A]));
    solver
        .wait_propagated("www.d.test", VALUE_A)
        .await
        .expect("served by the nameserver");

    // A second order's value at the same name (an apex and a wildcard name share it) is added.
    solver.present("www.d.test", VALUE_B).await.expect("present a second value");
    assert_eq!(bind.txt(name).await, strings(&["operator", VALUE_A, VALUE_B]));

    solver.cleanup("www.d.test", VALUE_A).await.expect("cleanup");
    assert_eq!(bind.txt(name).await, strings(&["operator", VALUE_B]));
    solver.cleanup("www.d.test", VALUE_B).await.expect("cleanup");
    assert_eq!(bind.txt(name).await, strings(&["operator"]));
    // Removing a value that is gone is not an error (a retried cleanup).
    solver.cleanup("www.d.test", VALUE_B).await.expect("cleanup again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_and_its_base_name_share_one_challenge_name() {
    let bind = Bind::start_with_key(&[zone("w.test.", "")], &KEY).await;
    let solver = keyed_solver(&bind, KEY.secret);

    solver.present("*.w.test", VALUE_A).await.expect("present for the wildcard");
    solver.present("w.test", VALUE_B).await.expect("present for the base name");
    assert_eq!(bind.txt("_acme-challenge.w.test.").await, strings(&[VALUE_A, VALUE_B]));
    solver.wait_propagated("*.w.test", VALUE_A).await.expect("wildcard value served");
    solver.wait_propagated("w.test", VALUE_B).await.expect("base value served");

    solver.cleanup("*.w.test", VALUE_A).await.expect("cleanup for the wildcard");
    assert_eq!(bind.txt("_acme-challenge.w.test.").await, strings(&[VALUE_B]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_goes_into_the_zone_that_holds_its_name() {
    // `c.p.test` is a zone of its own on the same server, below `p.test`: a record written into
    // `p.test` under it would be occluded and never served.
    let bind = Bind::start_with_key(&[zone("p.test.", ""), zone("c.p.test.", "")], &KEY).await;
    let solver = keyed_solver(&bind, KEY.secret);

    // Two labels below the apex of p.test.
    solver.present("deep.p.test", VALUE_A).await.expect("present in p.test");
    assert_eq!(bind.txt("_acme-challenge.deep.p.test.").await, strings(&[VALUE_A]));
    // Two labels below c.p.test, three below p.test.
    solver.present("x.c.p.test", VALUE_B).await.expect("present in c.p.test");
    assert_eq!(bind.txt("_acme-challenge.x.c.p.test.").await, strings(&[VALUE_B]));
    solver.wait_propagated("x.c.p.test", VALUE_B).await.expect("served");

    // A name in no zone of the nameserver's.
    let err = solver.present("www.elsewhere.test", VALUE_A).await.unwrap_err();
    assert!(matches!(err, Dns01Error::NoZone { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("holds no zone containing _acme-challenge.www.elsewhere.test."),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_updates_say_why_and_name_the_zone() {
    let bind = Bind::start_with_key(&[zone("d.test.", "")], &KEY).await;

    let err = keyed_solver(&bind, WRONG_SECRET).present("www.d.test", VALUE_A).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Dns01Error::UpdateRefused { .. }), "{text}");
    assert!(text.contains("in zone d.test.") && text.contains("BADSIG"), "{text}");
    assert!(
        text.contains("the TSIG secret does not match the server's key `drover-key.`"),
        "{text}"
    );

    let unknown_key = rfc2136(Rfc2136Config {
        nameserver: Some(bind.addr.to_string()),
        tsig_key: Some("nobody".into()),
        tsig_secret: Some(KEY.secret.into()),
        tsig_algorithm: Some("hmac-sha256".into()),
        ..Rfc2136Config::default()
    });
    let err = Dns01::new(&unknown_key, &no_env)
        .unwrap()
        .present("www.d.test", VALUE_A)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("in zone d.test.") && text.contains("BADKEY"), "{text}");

    let unsigned = rfc2136(Rfc2136Config {
        nameserver: Some(bind.addr.to_string()),
        ..Rfc2136Config::default()
    });
    let err = Dns01::new(&unsigned, &no_env)
        .unwrap()
        .present("www.d.test", VALUE_A)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("in zone d.test.: REFUSED") && text.contains("refuses unsigned updates"),
        "{text}"
    );

    // None of them changed the zone.
    assert_eq!(bind.txt("_acme-challenge.www.d.test.").await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nameserver_that_does_not_answer_is_named() {
    // A loopback port nothing listens on: the query is refused by the kernel at once.
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = rfc2136(Rfc2136Config {
        nameserver: Some(format!("127.0.0.1:{port}")),
        ..Rfc2136Config::default()
    });
    let err = Dns01::new(&config, &no_env)
        .unwrap()
        .present("www.d.test", VALUE_A)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Dns01Error::Unreachable { .. }), "{text}");
    assert!(
        text.starts_with(&format!(
            "DNS server 127.0.0.1:{port} failed while looking up the zone of _acme-challenge.www.d.test.:"
        )),
        "{text}"
    );
}

#[test]
fn bad_settings_are_refused_naming_the_key() {
    let with = |algorithm: &str, secret: &str| {
        rfc2136(Rfc2136Config {
            nameserver: Some("127.0.0.1".into()),
            tsig_key: Some(KEY.name.into()),
            tsig_secret: Some(secret.into()),
            tsig_algorithm: Some(algorithm.into()),
            ..Rfc2136Config::default()
        })
    };
    let err = Dns01::new(&with("hmac-sha3000", KEY.secret), &no_env).unwrap_err();
    assert!(
        err.starts_with("dnsChallenge.rfc2136.tsigAlgorithm: `hmac-sha3000` is not a TSIG algorithm"),
        "{err}"
    );
    let err = Dns01::new(&with("hmac-md5.sig-alg.reg.int.", KEY.secret), &no_env).unwrap_err();
    assert!(
        err.starts_with("dnsChallenge.rfc2136.tsigAlgorithm: hmac-md5 is not supported"),
        "{err}"
    );
    let err = Dns01::new(&with("hmac-sha256", "not*base64"), &no_env).unwrap_err();
    assert!(err.starts_with("dnsChallenge.rfc2136.tsigSecret: not valid base64"), "{err}");
    let err = Dns01::new(
        &DnsChallengeConfig {
            provider: "route53".into(),
            ..DnsChallengeConfig::default()
        },
        &no_env,
    )
    .unwrap_err();
    assert!(err.starts_with("dnsChallenge.provider: `route53` is not supported"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_environment_variables_fill_what_toml_leaves_out() {
    // lego's default algorithm (hmac-sha1) when RFC2136_TSIG_ALGORITHM is not set.
    let sha1_key = TsigKeySpec {
        name: "lego-key",
        algorithm: "hmac-sha1",
        secret: "dHdlbnR5LWJ5dGUtc2hhMS1rZXk=",
    };
    let bind = Bind::start_with_key(&[zone("e.test.", "")], &sha1_key).await;
    let vars: HashMap<&str, String> = [
        ("RFC2136_NAMESERVER", bind.addr.to_string()),
        ("RFC2136_TSIG_KEY", "lego-key.".to_string()),
        ("RFC2136_TSIG_SECRET", sha1_key.secret.to_string()),
        ("RFC2136_TTL", "30".to_string()),
        ("RFC2136_POLLING_INTERVAL", "0.05".to_string()),
    ]
    .into();
    let env = |name: &str| vars.get(name).cloned();
    let solver = Dns01::new(&rfc2136(Rfc2136Config::default()), &env).expect("settings from the environment");
    solver.present("app.e.test", VALUE_A).await.expect("present, signed with hmac-sha1");
    assert_eq!(bind.txt("_acme-challenge.app.e.test.").await, strings(&[VALUE_A]));
    solver.wait_propagated("app.e.test", VALUE_A).await.expect("served");

    // A TOML key wins over its variable: here, a secret the server does not know.
    let toml_wins = rfc2136(Rfc2136Config {
        tsig_secret: Some(WRONG_SECRET.into()),
        ..Rfc2136Config::default()
    });
    let err = Dns01::new(&toml_wins, &env)
        .unwrap()
        .cleanup("app.e.test", VALUE_A)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("BADSIG"), "{err}");
    assert_eq!(bind.txt("_acme-challenge.app.e.test.").await, strings(&[VALUE_A]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_propagation_check_waits_for_every_resolver() {
    // The primary takes updates; `lagging` serves the same zone but has not got the record yet,
    // as a secondary behind on its transfers.
    let primary = Bind::start(&[zone("s.test.", "")]).await;
    let lagging = Bind::start(&[zone("s.test.", "")]).await;
    let config = |timeout: f64| DnsChallengeConfig {
        provider: "rfc2136".into(),
        resolvers: vec![primary.addr.to_string(), lagging.addr.to_string()],
        rfc2136: Rfc2136Config {
            nameserver: Some(primary.addr.to_string()),
            propagation_timeout: Some(seconds(timeout)),
            polling_interval: Some(seconds(0.05)),
            ..Rfc2136Config::default()
        },
        ..DnsChallengeConfig::default()
    };
    let solver = Dns01::new(&config(0.3), &no_env).unwrap();
    solver.present("api.s.test", VALUE_A).await.expect("present, unsigned");

    let err = solver.wait_propagated("api.s.test", VALUE_A).await.unwrap_err();
    let text = err.to_string();
    let Dns01Error::NotPropagated { pending, .. } = &err else {
        panic!("{text}")
    };
    assert_eq!(pending, &[format!("{} (NXDOMAIN)", lagging.addr)], "{text}");
    assert!(
        text.starts_with("the TXT record at _acme-challenge.api.s.test. was not served within 0.3s by"),
        "{text}"
    );

    // Once the lagging server has it, the check returns.
    let solver = Dns01::new(&config(8.0), &no_env).unwrap();
    let transfer = format!("update add _acme-challenge.api.s.test. 60 TXT {VALUE_A}");
    let (waited, ()) = tokio::join!(solver.wait_propagated("api.s.test", VALUE_A), lagging.update("s.test.", &transfer),);
    waited.expect("served everywhere once the lagging server has it");
}
