//! The embedded DNS end to end: the real `lnet daemon`, driven by the real `lnet` CLI, and
//! queries made by the real `dig` inside the sandboxes (`lnet sandbox exec … -- dig`).
//!
//! Each test runs in its own world, made on its own thread before anything else: a new
//! network namespace (the daemon, its bridges and the test's upstream DNS servers live in
//! it; the upstreams listen on its loopback, which is the daemon's "host loopback") and a
//! private mount namespace in which a resolv.conf the test writes is bind-mounted over
//! `/etc/resolv.conf` — the host resolv.conf the daemon reads, with the test's upstreams in
//! it. Nothing of either namespace is seen outside the test's thread and the processes it
//! starts. Guards undo everything, also when a test fails: `World` kills the daemon,
//! unmounts the sandboxes' namespaces (the daemon guard's work) and the resolv.conf;
//! `Upstream` stops its server threads.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

mod support;

use support::Daemon;

const LNET: &str = env!("CARGO_BIN_EXE_lnet");

// ---------------------------------------------------------------------------------------
// The test's world: namespaces, a host resolv.conf, the daemon.

/// A test's namespaces, its host resolv.conf and its daemon; torn down on drop (also on
/// panic): the daemon first (killed, then its sandboxes' namespace mounts removed by its
/// guard), then the bind mount over `/etc/resolv.conf` (only in this thread's mount
/// namespace anyway), then the directory.
struct World {
    // Field order is drop order: the daemon goes before the directory it lives in.
    d: Daemon,
    _dir: tempfile::TempDir,
}

impl World {
    /// Enters a new network namespace and a private mount namespace (this thread only),
    /// writes `host_resolv` as the host's resolv.conf there, and starts a daemon.
    fn new(host_resolv: &str) -> World {
        lnet_kernel::testing::enter_new_netns().expect("enter a new network namespace");
        // A mount namespace of this thread's own; every mount in it private, so the bind
        // mount below propagates nowhere (not to the machine's namespace, whatever its
        // propagation is). unshare(CLONE_NEWNS) also unshares the thread's fs context, which
        // the kernel allows in a multi-threaded process (setns would not be).
        lnet_kernel::testing::enter_private_mounts().expect("a private mount namespace");
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("host-resolv.conf");
        std::fs::write(&resolv, host_resolv).unwrap();
        mount(
            Some(resolv.as_path()),
            "/etc/resolv.conf",
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind-mount the test's resolv.conf over /etc/resolv.conf");
        let seen = std::fs::read_to_string("/etc/resolv.conf").unwrap();
        assert_eq!(seen, host_resolv, "the bind mount is in place");
        let d = Daemon::start(dir.path());
        World { d, _dir: dir }
    }

    /// `lnet -H <socket> args…`.
    fn lnet(&self, args: &[&str]) -> Output {
        Command::new(LNET)
            .args(["-H", &format!("unix://{}", self.d.socket.display())])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run lnet")
    }

    /// `lnet …`, which must succeed; its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let o = self.lnet(args);
        assert!(
            o.status.success(),
            "lnet {args:?}: exit {:?}\nstdout:\n{}\nstderr:\n{}\ndaemon log:\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.d.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `lnet sandbox exec SANDBOX -- cmd…`, which must succeed; its stdout.
    #[track_caller]
    fn exec(&self, sandbox: &str, cmd: &[&str]) -> String {
        let mut args = vec!["sandbox", "exec", sandbox, "--"];
        args.extend_from_slice(cmd);
        self.ok(&args)
    }

    /// A network (bridge) with `subnet`, and `extra` flags such as `--internal`.
    fn network(&self, name: &str, subnet: &str, extra: &[&str]) {
        let mut args = vec!["network", "create", "--subnet", subnet];
        args.extend_from_slice(extra);
        args.push(name);
        self.ok(&args);
    }

    /// A sandbox, with `extra` flags such as `--dns 127.0.0.3`.
    fn sandbox(&self, name: &str, extra: &[&str]) {
        let mut args = vec!["sandbox", "create", name];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    /// Connects `sandbox` to `network` with `aliases`; its IPv4 address there.
    fn connect(&self, network: &str, sandbox: &str, aliases: &[&str]) -> Ipv4Addr {
        let mut args = vec!["network", "connect"];
        for a in aliases {
            args.extend_from_slice(&["--alias", a]);
        }
        args.extend_from_slice(&[network, sandbox]);
        assert_eq!(self.ok(&args), "");
        self.addr(network, sandbox)
    }

    /// `sandbox`'s IPv4 address on `network`, from `lnet sandbox inspect`.
    fn addr(&self, network: &str, sandbox: &str) -> Ipv4Addr {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["sandbox", "inspect", sandbox])).unwrap();
        let ep = v[0]["Endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["Network"] == network)
            .unwrap_or_else(|| panic!("{sandbox} has no endpoint on {network}: {v}"));
        let cidr = ep["IPv4Address"].as_str().unwrap();
        cidr.split('/').next().unwrap().parse().unwrap()
    }

    /// `dig` inside `sandbox`: `args` (server, name, type, `+tcp`…) after options that make
    /// the output easy to read and a wait of at most 6 s (the resolver's own failover
    /// waits 2 s per silent upstream).
    #[track_caller]
    fn dig(&self, sandbox: &str, args: &[&str]) -> Dig {
        let mut cmd = vec![
            "dig",
            "+time=6",
            "+tries=1",
            "+noall",
            "+comments",
            "+answer",
        ];
        cmd.extend_from_slice(args);
        Dig::parse(&self.exec(sandbox, &cmd))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // The daemon must not outlive the resolv.conf it reads; the fields' drops that
        // follow unmount the sandboxes' namespaces and remove the directory.
        self.d.kill();
        if let Err(e) = umount2("/etc/resolv.conf", MntFlags::MNT_DETACH) {
            eprintln!("cleanup: unmount the test's /etc/resolv.conf: {e}");
        }
    }
}

/// What `dig +noall +comments +answer` printed: the status and the answers' data.
#[derive(Debug)]
struct Dig {
    status: String,
    /// `(type, data)` of each answer record, in order.
    answers: Vec<(String, String)>,
    raw: String,
}

impl Dig {
    fn parse(raw: &str) -> Dig {
        let status = raw
            .lines()
            .find_map(|l| l.split("status: ").nth(1))
            .map(|s| s.split(',').next().unwrap_or("").trim().to_string())
            .unwrap_or_else(|| panic!("no status in dig's output:\n{raw}"));
        let answers = raw
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .map(|l| {
                // name TTL class type data…
                let f: Vec<&str> = l.split_whitespace().collect();
                assert!(f.len() >= 5, "an answer line: {l:?} in\n{raw}");
                (f[3].to_string(), f[4..].join(" "))
            })
            .collect();
        Dig {
            status,
            answers,
            raw: raw.to_string(),
        }
    }

    /// The A records' addresses, sorted.
    fn a(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self
            .answers
            .iter()
            .filter(|(t, _)| t == "A")
            .map(|(_, d)| d.parse().unwrap())
            .collect();
        v.sort();
        v
    }

    /// Asserts NOERROR with exactly the addresses `want` (in any order).
    #[track_caller]
    fn assert_a(&self, want: &[Ipv4Addr], what: &str) {
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(
            (self.status.as_str(), self.a()),
            ("NOERROR", want),
            "{what}:\n{}",
            self.raw
        );
    }

    #[track_caller]
    fn assert_status(&self, want: &str, what: &str) {
        assert_eq!(self.status, want, "{what}:\n{}", self.raw);
        if want != "NOERROR" {
            assert!(self.answers.is_empty(), "{what}:\n{}", self.raw);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Upstream DNS servers the test runs on its namespace's loopback (port 53, UDP and TCP).

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Answers its records (A), NXDOMAIN for other names.
    Answer,
    /// SERVFAIL to everything.
    ServFail,
    /// REFUSED to everything.
    Refused,
    /// Receives and never answers.
    Silent,
}

/// One upstream server; stopped on drop.
struct Upstream {
    stop: Arc<AtomicBool>,
    /// The names asked (lower case, without the final dot), over either transport.
    asked: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Upstream {
    /// Listens on `ip`:53 (UDP and TCP) in the calling thread's namespace.
    fn start(ip: Ipv4Addr, mode: Mode, records: &[(&str, Ipv4Addr)]) -> Upstream {
        let records: Arc<Vec<(String, Ipv4Addr)>> =
            Arc::new(records.iter().map(|(n, a)| (n.to_string(), *a)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let udp = UdpSocket::bind((ip, 53)).expect("bind the test upstream (UDP)");
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let tcp = TcpListener::bind((ip, 53)).expect("bind the test upstream (TCP)");
        tcp.set_nonblocking(true).unwrap();
        let mut threads = Vec::new();
        {
            let (stop, asked, records) = (stop.clone(), asked.clone(), records.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Some(r) = respond(&buf[..n], mode, &records, &asked) {
                        let _ = udp.send_to(&r, from);
                    }
                }
            }));
        }
        {
            let (stop, asked) = (stop.clone(), asked.clone());
            threads.push(std::thread::spawn(move || {
                let mut conns = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut s, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let (asked, records) = (asked.clone(), records.clone());
                    conns.push(std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                        let mut len = [0u8; 2];
                        while s.read_exact(&mut len).is_ok() {
                            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                            if s.read_exact(&mut q).is_err() {
                                break;
                            }
                            let Some(r) = respond(&q, mode, &records, &asked) else {
                                continue;
                            };
                            let framed = [&(r.len() as u16).to_be_bytes()[..], &r].concat();
                            if s.write_all(&framed).is_err() {
                                break;
                            }
                        }
                    }));
                }
                for c in conns {
                    let _ = c.join();
                }
            }));
        }
        Upstream {
            stop,
            asked,
            threads,
        }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The upstream's answer to `q` (header and question copied, EDNS dropped): `None` for
/// what is not a query, and in [`Mode::Silent`].
fn respond(
    q: &[u8],
    mode: Mode,
    records: &[(String, Ipv4Addr)],
    asked: &Mutex<Vec<String>>,
) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let l = usize::from(*q.get(i)?);
        i += 1;
        if l == 0 {
            break;
        }
        if l > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + l)?).to_ascii_lowercase());
        i += l;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    i += 4;
    if i > q.len() {
        return None;
    }
    let name = labels.join(".");
    asked.lock().unwrap().push(name.clone());
    let rcode = match mode {
        Mode::Silent => return None,
        Mode::ServFail => 2,
        Mode::Refused => 5,
        Mode::Answer => 0,
    };
    let mut r = q[..i].to_vec();
    r[2] = 0x80 | (q[2] & 0x01); // QR, RD as asked
    r[3] = 0x80 | rcode; // RA
    r[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    if mode == Mode::Answer {
        match records.iter().find(|(n, _)| *n == name) {
            Some((_, ip)) if qtype == 1 => {
                r[7] = 1;
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                r.extend_from_slice(&ip.octets());
            }
            Some(_) => {}
            None => r[3] |= 3, // NXDOMAIN
        }
    }
    Some(r)
}

/// What the forwarded names resolve to at the test's upstream.
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);

// ---------------------------------------------------------------------------------------
// The tests.

/// Root, and `dig` on the host (the sandboxes see the host's file system), or the test is a
/// recorded skip.
macro_rules! root_and_dig {
    ($test:literal) => {
        lnet_kernel::skip_unless_root!();
        if !lnet_kernel::testing::require_tool($test, "dig") {
            return;
        }
    };
}

/// (a) Two sandboxes on one user-defined network find each other by sandbox (container)
/// name — which is also their endpoint name — by alias and by `name.network`, any case,
/// through `@127.0.0.11` and through the resolv.conf the sandbox sees; (b) a sandbox on
/// another network does not: the name goes to the upstream, whose NXDOMAIN comes back.
#[test]
fn peers_resolve_by_name_alias_and_name_network_and_others_do_not() {
    root_and_dig!("peers_resolve_by_name_alias_and_name_network_and_others_do_not");
    let w = World::new("nameserver 127.0.0.1\nsearch example.com\n");
    let up = Upstream::start(
        Ipv4Addr::new(127, 0, 0, 1),
        Mode::Answer,
        &[("example.org", OUTSIDE)],
    );
    w.network("front", "10.71.0.0/24", &[]);
    w.network("back", "10.72.0.0/24", &[]);
    w.sandbox("alpha", &[]);
    w.sandbox("b", &[]);
    w.sandbox("c", &[]);
    let a = w.connect("front", "alpha", &["web"]);
    let b = w.connect("front", "b", &["db", "cache"]);
    let c = w.connect("back", "c", &[]);

    // The resolv.conf a sandbox's programs see: the embedded resolver, ndots:0, the
    // host's search domains.
    let resolv = w.exec("alpha", &["cat", "/etc/resolv.conf"]);
    let lines: Vec<&str> = resolv.lines().map(str::trim).collect();
    assert!(lines.contains(&"nameserver 127.0.0.11"), "{resolv}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("nameserver")).count(),
        1,
        "only the embedded resolver: {resolv}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("options") && l.split_whitespace().any(|o| o == "ndots:0")),
        "{resolv}"
    );
    assert!(lines.contains(&"search example.com"), "{resolv}");

    for name in [
        "b",
        "db",
        "cache",
        "b.front",
        "db.front",
        "B",
        "CACHE.Front",
    ] {
        w.dig("alpha", &["@127.0.0.11", name])
            .assert_a(&[b], &format!("a asks @127.0.0.11 for {name}"));
    }
    for name in ["alpha", "web", "alpha.front", "web.front"] {
        w.dig("b", &["@127.0.0.11", name])
            .assert_a(&[a], &format!("b asks @127.0.0.11 for {name}"));
    }
    // Through resolv.conf (no @server): dig reads the sandbox's /etc/resolv.conf.
    w.dig("alpha", &["b"])
        .assert_a(&[b], "a asks for b via resolv.conf");
    w.dig("b", &["web.front"])
        .assert_a(&[a], "b asks for web.front via resolv.conf");
    // +short, as a user would.
    assert_eq!(
        w.exec("alpha", &["dig", "+short", "+time=6", "+tries=1", "db"])
            .trim(),
        b.to_string()
    );
    // A name that exists without the asked type: NOERROR, nothing, not forwarded.
    let aaaa = w.dig("alpha", &["b", "AAAA"]);
    aaaa.assert_status("NOERROR", "AAAA of b (it has none)");
    assert!(aaaa.answers.is_empty(), "{}", aaaa.raw);
    // None of these went upstream.
    assert_eq!(
        up.asked(),
        Vec::<String>::new(),
        "local names are not forwarded"
    );

    // Another network's sandbox: front's names are not local there, so they go upstream,
    // and the upstream's NXDOMAIN is the answer.
    for name in ["b", "db", "b.front"] {
        w.dig("c", &[name])
            .assert_status("NXDOMAIN", &format!("c (on back) asks for {name}"));
    }
    assert_eq!(
        up.asked(),
        ["b", "db", "b.front"],
        "c's queries went upstream"
    );
    // c finds itself, and forwarded names work for everyone.
    w.dig("c", &["c.back"]).assert_a(&[c], "c asks for c.back");
    w.dig("c", &["example.org"])
        .assert_a(&[OUTSIDE], "c asks for example.org");
    w.dig("alpha", &["example.org"])
        .assert_a(&[OUTSIDE], "a asks for example.org");
}

/// (c) PTR of a container's address answers `name.network.`, for each address of each
/// peer; an address no container has is forwarded (NXDOMAIN from the upstream).
#[test]
fn ptr_of_a_container_address_is_its_name_dot_network() {
    root_and_dig!("ptr_of_a_container_address_is_its_name_dot_network");
    let w = World::new("nameserver 127.0.0.1\n");
    let up = Upstream::start(Ipv4Addr::new(127, 0, 0, 1), Mode::Answer, &[]);
    w.network("front", "10.73.0.0/24", &[]);
    w.sandbox("alpha", &[]);
    w.sandbox("b", &[]);
    let a = w.connect("front", "alpha", &[]);
    let b = w.connect("front", "b", &["db"]);

    let ptr = w.exec(
        "alpha",
        &["dig", "+short", "+time=6", "+tries=1", "-x", &b.to_string()],
    );
    assert_eq!(ptr.trim(), "b.front.", "PTR of b's address {b}");
    let ptr = w.exec(
        "b",
        &["dig", "+short", "+time=6", "+tries=1", "-x", &a.to_string()],
    );
    assert_eq!(ptr.trim(), "alpha.front.", "PTR of a's address {a}");
    let full = w.dig("alpha", &["-x", &b.to_string()]);
    assert_eq!(
        (full.status.as_str(), full.answers.as_slice()),
        (
            "NOERROR",
            &[("PTR".to_string(), "b.front.".to_string())][..]
        ),
        "{}",
        full.raw
    );
    assert_eq!(
        up.asked(),
        Vec::<String>::new(),
        "PTRs of containers stay local"
    );

    // An address in the subnet that no container has: not local, forwarded.
    w.dig("alpha", &["-x", "10.73.0.200"])
        .assert_status("NXDOMAIN", "PTR of an unused address");
    assert_eq!(up.asked(), ["200.0.73.10.in-addr.arpa"]);
}

/// (d) Forwarded names go to the host's resolvers (from its resolv.conf, on the daemon's
/// loopback) in order: a first one that answers SERVFAIL or REFUSED, that is not there
/// (port unreachable) or that never answers (2 s) is passed over for the next; `--dns` of
/// a sandbox replaces the host's list for that sandbox.
#[test]
fn forwarded_names_fail_over_to_the_next_upstream() {
    root_and_dig!("forwarded_names_fail_over_to_the_next_upstream");
    let w = World::new("nameserver 127.0.0.2\nnameserver 127.0.0.3\n");
    let servfail = Upstream::start(Ipv4Addr::new(127, 0, 0, 2), Mode::ServFail, &[]);
    let good = Upstream::start(
        Ipv4Addr::new(127, 0, 0, 3),
        Mode::Answer,
        &[("example.org", OUTSIDE)],
    );
    let refused = Upstream::start(Ipv4Addr::new(127, 0, 0, 5), Mode::Refused, &[]);
    let silent = Upstream::start(Ipv4Addr::new(127, 0, 0, 6), Mode::Silent, &[]);
    // Nothing listens on 127.0.0.4.
    w.network("front", "10.74.0.0/24", &[]);
    w.sandbox("host-list", &[]);
    w.sandbox("dead-first", &["--dns", "127.0.0.4", "--dns", "127.0.0.3"]);
    w.sandbox(
        "refused-first",
        &["--dns", "127.0.0.5", "--dns", "127.0.0.3"],
    );
    w.sandbox(
        "silent-first",
        &["--dns", "127.0.0.6", "--dns", "127.0.0.3"],
    );
    w.sandbox("servfail-only", &["--dns", "127.0.0.2"]);
    for sb in [
        "host-list",
        "dead-first",
        "refused-first",
        "silent-first",
        "servfail-only",
    ] {
        w.connect("front", sb, &[]);
    }
    // The sandbox still sees only the embedded resolver, whatever its upstreams.
    let resolv = w.exec("dead-first", &["cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("nameserver 127.0.0.11") && !resolv.contains("127.0.0.4"),
        "{resolv}"
    );

    w.dig("host-list", &["example.org"])
        .assert_a(&[OUTSIDE], "SERVFAIL from the first, the second answers");
    assert_eq!(
        servfail.asked(),
        ["example.org"],
        "the first was asked first"
    );
    assert_eq!(good.asked(), ["example.org"]);
    w.dig("host-list", &["nosuch.example"])
        .assert_status("NXDOMAIN", "the second's NXDOMAIN is final");

    w.dig("dead-first", &["example.org"])
        .assert_a(&[OUTSIDE], "the first is not there, the second answers");
    w.dig("refused-first", &["example.org"])
        .assert_a(&[OUTSIDE], "REFUSED from the first, the second answers");
    assert_eq!(refused.asked(), ["example.org"]);
    let t = std::time::Instant::now();
    w.dig("silent-first", &["example.org"])
        .assert_a(&[OUTSIDE], "the first never answers, the second does");
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "the silent one was waited for (2 s): {:?}",
        t.elapsed()
    );
    assert_eq!(silent.asked(), ["example.org"]);
    // Every upstream fails: the last failure is passed on.
    w.dig("servfail-only", &["example.org"])
        .assert_status("SERVFAIL", "the only upstream says SERVFAIL");
    // The host's list was not used by the sandboxes with --dns (the last query is
    // servfail-only's own).
    assert_eq!(
        servfail.asked(),
        ["example.org", "nosuch.example", "example.org"]
    );
    assert_eq!(
        good.asked(),
        [
            "example.org",
            "nosuch.example",
            "example.org",
            "example.org",
            "example.org"
        ]
    );
}

/// (e) A disconnect takes the sandbox's names away at once (they are forwarded, and the
/// upstream's NXDOMAIN comes back); an alias two sandboxes share answers both addresses,
/// and one's disconnect leaves the other's.
#[test]
fn disconnect_removes_names_and_a_shared_alias_has_both_addresses() {
    root_and_dig!("disconnect_removes_names_and_a_shared_alias_has_both_addresses");
    let w = World::new("nameserver 127.0.0.1\n");
    let up = Upstream::start(Ipv4Addr::new(127, 0, 0, 1), Mode::Answer, &[]);
    w.network("front", "10.75.0.0/24", &[]);
    for sb in ["alpha", "b", "c"] {
        w.sandbox(sb, &[]);
    }
    w.connect("front", "alpha", &[]);
    let b = w.connect("front", "b", &["svc", "only-b"]);
    w.dig("alpha", &["only-b"])
        .assert_a(&[b], "before the disconnect");

    assert_eq!(w.ok(&["network", "disconnect", "front", "b"]), "");
    for name in ["b", "only-b", "svc", "b.front"] {
        w.dig("alpha", &[name])
            .assert_status("NXDOMAIN", &format!("{name} after b's disconnect"));
    }
    assert_eq!(up.asked(), ["b", "only-b", "svc", "b.front"], "forwarded");
    // PTR of the address b had: no longer local either.
    w.dig("alpha", &["-x", &b.to_string()])
        .assert_status("NXDOMAIN", "PTR of b's old address");

    // Two sandboxes with one alias: both addresses.
    let b = w.connect("front", "b", &["svc"]);
    let c = w.connect("front", "c", &["svc"]);
    assert_ne!(b, c);
    w.dig("alpha", &["svc"]).assert_a(&[b, c], "svc is b and c");
    w.dig("alpha", &["svc.front"])
        .assert_a(&[b, c], "svc.front is b and c");
    let short: BTreeSet<String> = w
        .exec("alpha", &["dig", "+short", "+time=6", "+tries=1", "svc"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        short,
        BTreeSet::from([b.to_string(), c.to_string()]),
        "dig +short svc"
    );
    assert_eq!(w.ok(&["network", "disconnect", "front", "c"]), "");
    w.dig("alpha", &["svc"])
        .assert_a(&[b], "svc after c's disconnect");
    // Removing a sandbox takes its names too.
    assert_eq!(w.ok(&["sandbox", "rm", "b"]), "b\n");
    w.dig("alpha", &["svc"])
        .assert_status("NXDOMAIN", "svc after b is removed");
}

/// (f) SIGKILL of the daemon, and a new one on the same state: the sandboxes' resolvers
/// come back (new sockets, the redirect pointed at them), with the same answers, and a
/// sandbox connected afterwards is found too.
#[test]
fn resolution_survives_sigkill_and_restart_of_the_daemon() {
    root_and_dig!("resolution_survives_sigkill_and_restart_of_the_daemon");
    let mut w = World::new("nameserver 127.0.0.1\n");
    let _up = Upstream::start(
        Ipv4Addr::new(127, 0, 0, 1),
        Mode::Answer,
        &[("example.org", OUTSIDE)],
    );
    w.network("front", "10.76.0.0/24", &[]);
    for sb in ["alpha", "b", "c"] {
        w.sandbox(sb, &[]);
    }
    let a = w.connect("front", "alpha", &[]);
    let b = w.connect("front", "b", &["db"]);
    w.dig("alpha", &["db"]).assert_a(&[b], "before the kill");

    w.d.kill();
    // While no daemon runs, nothing answers (the old sockets died with it).
    let dead = w.lnet(&[
        "sandbox",
        "exec",
        "alpha",
        "--",
        "dig",
        "+time=1",
        "+tries=1",
        "@127.0.0.11",
        "db",
    ]);
    assert!(
        !dead.status.success(),
        "no answer without a daemon: {}",
        String::from_utf8_lossy(&dead.stdout)
    );
    w.d.restart();

    w.dig("alpha", &["db"])
        .assert_a(&[b], "a asks for db after the restart");
    w.dig("alpha", &["+tcp", "db.front"])
        .assert_a(&[b], "over TCP after the restart");
    w.dig("b", &["alpha"])
        .assert_a(&[a], "b asks for a after the restart");
    w.dig("alpha", &["example.org"])
        .assert_a(&[OUTSIDE], "forwarding after the restart");
    let c = w.connect("front", "c", &[]);
    w.dig("alpha", &["c"])
        .assert_a(&[c], "a sandbox connected after the restart");
    // A second kill and restart: still the same.
    w.d.restart();
    w.dig("c", &["db.front"])
        .assert_a(&[b], "after a second restart");
}

/// (g) A sandbox only on an `--internal` network resolves its peers, and gets REFUSED for
/// everything else — nothing is forwarded; once it is also on a normal network, outside
/// names are forwarded again.
#[test]
fn internal_network_resolves_peers_and_refuses_outside_names() {
    root_and_dig!("internal_network_resolves_peers_and_refuses_outside_names");
    let w = World::new("nameserver 127.0.0.1\n");
    let up = Upstream::start(
        Ipv4Addr::new(127, 0, 0, 1),
        Mode::Answer,
        &[("example.org", OUTSIDE)],
    );
    w.network("inside", "10.77.0.0/24", &["--internal"]);
    w.network("outside", "10.78.0.0/24", &[]);
    w.sandbox("alpha", &[]);
    w.sandbox("b", &[]);
    w.sandbox("o", &[]);
    let a = w.connect("inside", "alpha", &[]);
    let b = w.connect("inside", "b", &["db"]);
    w.connect("outside", "o", &[]);

    w.dig("alpha", &["db"])
        .assert_a(&[b], "a asks for its peer db");
    w.dig("b", &["alpha.inside"])
        .assert_a(&[a], "b asks for a.inside");
    w.dig("alpha", &["+tcp", "b"]).assert_a(&[b], "over TCP");
    for name in ["example.org", "nosuch", "o", "o.outside"] {
        w.dig("alpha", &[name])
            .assert_status("REFUSED", &format!("{name} from an internal-only sandbox"));
    }
    w.dig("alpha", &["+tcp", "example.org"])
        .assert_status("REFUSED", "over TCP too");
    assert_eq!(up.asked(), Vec::<String>::new(), "nothing was forwarded");

    // Also on a normal network: its names, and the outside, are reachable.
    let o_addr = w.addr("outside", "o");
    w.connect("outside", "alpha", &[]);
    w.dig("alpha", &["o"])
        .assert_a(&[o_addr], "o, now that a is on outside");
    w.dig("alpha", &["example.org"])
        .assert_a(&[OUTSIDE], "forwarded once a is on a normal network");
    assert_eq!(up.asked(), ["example.org"]);
}

/// (h) `dig +tcp`: local names, `name.network`, PTR and forwarded names over TCP (the
/// forward goes over TCP too), and a TCP failover.
#[test]
fn dig_over_tcp_answers_local_and_forwarded_names() {
    root_and_dig!("dig_over_tcp_answers_local_and_forwarded_names");
    let w = World::new("nameserver 127.0.0.2\nnameserver 127.0.0.1\n");
    let _servfail = Upstream::start(Ipv4Addr::new(127, 0, 0, 2), Mode::ServFail, &[]);
    let up = Upstream::start(
        Ipv4Addr::new(127, 0, 0, 1),
        Mode::Answer,
        &[("example.org", OUTSIDE)],
    );
    w.network("front", "10.79.0.0/24", &[]);
    w.sandbox("alpha", &[]);
    w.sandbox("b", &[]);
    w.connect("front", "alpha", &[]);
    let b = w.connect("front", "b", &["db"]);

    for name in ["b", "db", "db.front"] {
        w.dig("alpha", &["+tcp", name])
            .assert_a(&[b], &format!("{name} over TCP"));
        w.dig("alpha", &["+tcp", "@127.0.0.11", name])
            .assert_a(&[b], &format!("{name} over TCP at @127.0.0.11"));
    }
    let ptr = w.exec(
        "alpha",
        &[
            "dig",
            "+tcp",
            "+short",
            "+time=6",
            "+tries=1",
            "-x",
            &b.to_string(),
        ],
    );
    assert_eq!(ptr.trim(), "b.front.");
    w.dig("alpha", &["+tcp", "example.org"])
        .assert_a(&[OUTSIDE], "forwarded over TCP, after a SERVFAIL");
    w.dig("alpha", &["+tcp", "nosuch.example"])
        .assert_status("NXDOMAIN", "forwarded over TCP");
    assert_eq!(up.asked(), ["example.org", "nosuch.example"]);
    // Several queries on one TCP connection (dig keeps it open with +keepopen).
    let many = w.exec(
        "alpha",
        &[
            "dig",
            "+tcp",
            "+keepopen",
            "+short",
            "+time=6",
            "+tries=1",
            "b",
            "db",
            "db.front",
        ],
    );
    assert_eq!(
        many.lines().collect::<Vec<_>>(),
        vec![b.to_string(); 3],
        "three answers on one connection"
    );

    // An answer too big for UDP (40 addresses, no EDNS: more than 512 bytes) comes
    // truncated (TC, no records) over UDP, and whole over TCP — where dig goes by itself
    // when it sees TC. The sandboxes are made through the API, without a CLI process each.
    let mut crowd = Vec::new();
    for i in 0..40 {
        let name = format!("m{i}");
        w.d.sandbox(&name);
        let (status, body) = w.d.request(
            "POST",
            "/networks/front/connect",
            Some(&format!(
                r#"{{"Container":"{name}","EndpointConfig":{{"Aliases":["crowd"]}}}}"#
            )),
        );
        assert_eq!(status, 200, "connect {name}: {body}");
        crowd.push(name);
    }
    let mut args = vec!["sandbox", "inspect"];
    args.extend(crowd.iter().map(String::as_str));
    let v: serde_json::Value = serde_json::from_str(&w.ok(&args)).unwrap();
    let crowd: Vec<Ipv4Addr> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|sb| {
            let cidr = sb["Endpoints"][0]["IPv4Address"].as_str().unwrap();
            cidr.split('/').next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(crowd.len(), 40);
    let udp = w.exec(
        "alpha",
        &[
            "dig",
            "+noedns",
            "+ignore",
            "+time=6",
            "+tries=1",
            "+noall",
            "+comments",
            "+answer",
            "crowd",
        ],
    );
    let flags = udp
        .lines()
        .find(|l| l.starts_with(";; flags:"))
        .unwrap_or_else(|| panic!("no flags line:\n{udp}"));
    assert!(
        flags.split(';').nth(2).unwrap_or("").contains(" tc"),
        "truncated over UDP: {udp}"
    );
    assert_eq!(
        Dig::parse(&udp).answers,
        [],
        "no records in a truncated answer"
    );
    // Without +ignore, dig retries the truncated answer over TCP.
    w.dig("alpha", &["+noedns", "crowd"])
        .assert_a(&crowd, "40 addresses after dig's retry over TCP");
    w.dig("alpha", &["+tcp", "crowd"])
        .assert_a(&crowd, "40 addresses over TCP");
}

/// The resolver lives only in its sandbox: from the daemon's own namespace (where the test
/// runs), 127.0.0.11:53 answers nothing over UDP or TCP — neither a socket nor the port-53
/// redirect leaked to the host's side.
#[test]
fn the_resolver_is_only_inside_the_sandbox() {
    root_and_dig!("the_resolver_is_only_inside_the_sandbox");
    let w = World::new("nameserver 127.0.0.1\n");
    w.network("front", "10.80.0.0/24", &[]);
    w.sandbox("alpha", &[]);
    w.connect("front", "alpha", &[]);
    w.dig("alpha", &["alpha"])
        .assert_a(&[w.addr("front", "alpha")], "inside");
    // From the daemon's namespace, 127.0.0.11:53 is nobody.
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let q = [
        0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1,
    ];
    let to: SocketAddr = "127.0.0.11:53".parse().unwrap();
    s.send_to(&q, to).unwrap();
    let mut buf = [0u8; 512];
    assert!(
        s.recv_from(&mut buf).is_err(),
        "nothing answers outside the sandbox"
    );
    let tcp = TcpStream::connect_timeout(&to, Duration::from_millis(300));
    assert!(tcp.is_err(), "no TCP listener outside the sandbox: {tcp:?}");
}
