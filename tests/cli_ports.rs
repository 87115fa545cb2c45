//! Published ports against the host's own services, end to end (issue 12 §3): a host
//! service on port 2222, then `lnet network connect --publish 2222:80 net web` against the
//! real daemon. Before lnet held its ports the connect succeeded and the service lost its
//! traffic, from outside and from the host alike; now the connect is refused naming the
//! holder, and the service keeps answering. A published port is held from host programs
//! while the daemon runs, freed when it dies (SIGKILL), held again when it starts, and a
//! port taken while it was down is reported by the start and by `lnet doctor`.

mod support;

mod cli_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use cli_support::*;
use support::Daemon;

/// What a host program gets when it binds TCP `addr` now.
fn host_bind(addr: &str) -> Result<(), ErrorKind> {
    TcpListener::bind(addr).map(drop).map_err(|e| e.kind())
}

/// Waits up to 10 s for a connection to `service` and reads what it says.
fn heard(service: &TcpListener) -> String {
    service.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut s, _) = loop {
        match service.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("the host service heard nothing: {e}"),
        }
    };
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn a_publish_cannot_take_a_host_services_port() {
    if !support::can_run("a_publish_cannot_take_a_host_services_port", false) {
        return;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    ok(d.cli(&["network", "create", "--subnet", "10.72.0.0/24", "net"]));
    ok(d.cli(&["sandbox", "create", "web"]));
    ok(d.cli(&["sandbox", "create", "outside"]));
    ok(d.cli(&["network", "connect", "net", "outside"]));

    // The reproduction: a host service on 0.0.0.0:2222, then the publish.
    let service = TcpListener::bind("0.0.0.0:2222").unwrap();
    let refused = d.cli(&["network", "connect", "--publish", "2222:80", "net", "web"]);
    assert!(!refused.status.success(), "{}", show(&refused));
    let why = err(&refused);
    for want in [
        "host port 0.0.0.0:2222/tcp is not available",
        &format!("pid {}, listening", std::process::id()),
        "holds 0.0.0.0:2222/tcp",
    ] {
        assert!(why.contains(want), "{want:?} in {}", show(&refused));
    }
    // Nothing changed: no endpoint, no DNAT element.
    let web = json(d.cli(&["sandbox", "inspect", "web"]));
    assert_eq!(web[0]["Endpoints"], serde_json::json!([]), "{web}");
    let map = nft(&["list", "map", "inet", "lnet", "ports4_any"]);
    assert!(!map.contains("2222"), "{map}");
    // The service still answers: from the host, and from outside (a sandbox, through the
    // host's address on the bridge).
    TcpStream::connect("127.0.0.1:2222")
        .unwrap()
        .write_all(b"from the host")
        .unwrap();
    assert_eq!(heard(&service), "from the host");
    let client = "import socket\n\
                  c = socket.create_connection(('10.72.0.1', 2222), timeout=5)\n\
                  c.sendall(b'from outside')\n";
    let sent = run_with_limit(
        d.exec_cmd("outside", &["python3", "-c", client]),
        Duration::from_secs(30),
    )
    .expect("the client finished");
    assert!(sent.status.success(), "{}", show(&sent));
    assert_eq!(heard(&service), "from outside");

    // The service goes: the publish goes through, and the port is held from host programs.
    drop(service);
    ok(d.cli(&["network", "connect", "--publish", "2222:80", "net", "web"]));
    assert_eq!(host_bind("0.0.0.0:2222"), Err(ErrorKind::AddrInUse));
    assert_eq!(host_bind("127.0.0.1:2222"), Err(ErrorKind::AddrInUse));

    // Freed when the daemon dies, held again when it starts.
    d.kill();
    assert_eq!(host_bind("0.0.0.0:2222"), Ok(()));
    d.restart();
    assert_eq!(host_bind("0.0.0.0:2222"), Err(ErrorKind::AddrInUse));

    // Taken while the daemon was down: the start goes through and says so, and doctor
    // names the holder until it is gone and --repair holds the port again.
    d.kill();
    let squatter = TcpListener::bind("0.0.0.0:2222").unwrap();
    d.restart();
    let log = d.log();
    assert!(
        log.contains("host port 0.0.0.0:2222/tcp is held by process"),
        "{}",
        log_tail(&d, 20)
    );
    let doctor = d.doctor(&[]);
    assert_eq!(doctor.status.code(), Some(1), "{}", show(&doctor));
    assert!(
        out(&doctor).contains("host port 0.0.0.0:2222/tcp is held by process"),
        "{}",
        show(&doctor)
    );
    drop(squatter);
    ok(d.doctor(&["--repair"]));
    assert_eq!(host_bind("0.0.0.0:2222"), Err(ErrorKind::AddrInUse));
    ok(d.doctor(&[]));

    // Disconnected, the port is the host's again.
    ok(d.cli(&["network", "disconnect", "net", "web"]));
    assert_eq!(host_bind("0.0.0.0:2222"), Ok(()));
}
