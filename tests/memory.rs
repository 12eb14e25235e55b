//! A worker hands the memory of a burst back to the system once it went quiet (`drover::memory`):
//! the trim the binary registers is called after its connections came and parked, and not again
//! while nothing happens. Its own test binary, because the trim is registered once per process.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{service_toml, whoami, TestDrover};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

static TRIMS: AtomicUsize = AtomicUsize::new(0);

fn count_trim() {
    TRIMS.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_worker_trims_once_its_connections_parked() {
    drover::memory::set_trim(count_trim);
    let (a, _ha) = whoami::spawn("a").await;
    // One worker: "once" is per worker.
    let drover = TestDrover::start_one_worker(&service_toml("r", "PathPrefix(`/`)", "s", &[(a, 1)])).await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(drover.web()).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: t.local\r\n\r\n").await.unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        idle.push(stream);
    }
    // The connections park after ~1 s of idleness; the worker trims after a quiet tick (0.5 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while TRIMS.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no trim within 10 s of the connections going idle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // By 4 s later the connections have parked and the worker has trimmed for that too; from
    // then on it is idle, and an idle worker does not trim at every tick (4 ticks here).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let trims = TRIMS.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        TRIMS.load(Ordering::SeqCst),
        trims,
        "an idle worker trims once per quiet spell, not at every tick"
    );
    drop(idle);
}
