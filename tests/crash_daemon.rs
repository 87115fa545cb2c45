//! Crashes of the real daemon process. For every failpoint lnet has
//! ([`lnet_core::failpoint::ALL`], read at run time), the daemon is started with
//! `LNET_FAILPOINT=<name>` and the CLI runs the operation that reaches it: the daemon aborts
//! there (no cleanup runs, as under SIGKILL) and the CLI gets an error. The daemon started
//! again without the variable must answer, `lnet doctor` must find the kernel matching the
//! records, the interrupted operation must have completed or left no trace (host ports
//! included), and retrying it must work. Then a seeded random workload with SIGKILLs at
//! random moments, checked after every restart.

mod support;

mod cli_support;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use cli_support::*;
use serde_json::Value;
use support::Daemon;

/// The operations a failpoint can interrupt, each as the CLI runs it on the world of
/// [`build_world`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `network create --subnet 10.96.0.0/24 fresh`.
    NetworkCreate,
    /// `network rm doomed`.
    NetworkDelete,
    /// `sandbox create s4`.
    SandboxCreate,
    /// `sandbox rm s3` (joined to `base`, publishing 7070).
    SandboxDelete,
    /// `network connect -p 9090:90 base s2`.
    Connect,
    /// `network disconnect base s1` (publishing 8080).
    Disconnect,
    /// `sandbox rename s2 s2-renamed`.
    SandboxRename,
}

impl Op {
    /// The operation that reaches failpoint `fp`, by the group before its `:`; `None` for a
    /// group this harness does not know yet (the test then fails, naming it).
    fn of(fp: &str) -> Option<Op> {
        Some(match fp.split(':').next().unwrap_or_default() {
            "network-create" => Op::NetworkCreate,
            "network-delete" => Op::NetworkDelete,
            "sandbox-create" => Op::SandboxCreate,
            "sandbox-delete" => Op::SandboxDelete,
            "sandbox-rename" => Op::SandboxRename,
            "join" | "endpoint-create" | "publish" | "connect" => Op::Connect,
            "leave" | "endpoint-delete" | "unpublish" | "disconnect" => Op::Disconnect,
            _ => return None,
        })
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Op::NetworkCreate => &["network", "create", "--subnet", "10.96.0.0/24", "fresh"],
            Op::NetworkDelete => &["network", "rm", "doomed"],
            Op::SandboxCreate => &["sandbox", "create", "s4"],
            Op::SandboxDelete => &["sandbox", "rm", "s3"],
            Op::Connect => &["network", "connect", "-p", "9090:90", "base", "s2"],
            Op::Disconnect => &["network", "disconnect", "base", "s1"],
            Op::SandboxRename => &["sandbox", "rename", "s2", "s2-renamed"],
        }
    }

    /// Whether the operation's effect is there (asked through the CLI).
    fn done(self, d: &Daemon) -> bool {
        match self {
            Op::NetworkCreate => exists(d, &["network", "inspect", "fresh"]),
            Op::NetworkDelete => !exists(d, &["network", "inspect", "doomed"]),
            Op::SandboxCreate => exists(d, &["sandbox", "inspect", "s4"]),
            Op::SandboxDelete => !exists(d, &["sandbox", "inspect", "s3"]),
            Op::Connect => !endpoints(d, "s2").is_empty(),
            Op::Disconnect => endpoints(d, "s1").is_empty(),
            Op::SandboxRename => exists(d, &["sandbox", "inspect", "s2-renamed"]),
        }
    }

    /// What a user checks once the operation took effect.
    fn check_done(self, d: &Daemon, fp: &str, w: &World) {
        match self {
            Op::NetworkCreate => {
                let v = json(d.cli(&["network", "inspect", "fresh"]));
                assert_eq!(
                    v[0]["IPAM"]["Config"][0]["Subnet"], "10.96.0.0/24",
                    "{fp}: {v}"
                );
                let id = v[0]["Id"].as_str().unwrap();
                assert!(
                    link_exists(&format!("br-{}", &id[..12])),
                    "{fp}: its bridge"
                );
            }
            Op::NetworkDelete => {
                assert!(!link_exists(&w.doomed_bridge), "{fp}: the bridge is gone");
                // Its subnet is free again.
                ok(d.cli(&["network", "create", "--subnet", "10.97.0.0/24", "doomed2"]));
                ok(d.cli(&["network", "rm", "doomed2"]));
            }
            Op::SandboxCreate => {
                let v = json(d.cli(&["sandbox", "inspect", "s4"]));
                assert_eq!(v[0]["State"], "ready", "{fp}: {v}");
                let key = v[0]["Key"].as_str().unwrap();
                assert!(
                    lnet_kernel::Netns::is_mounted_at(key),
                    "{fp}: its namespace is mounted at {key}"
                );
                assert!(
                    std::path::Path::new(v[0]["ResolvConfPath"].as_str().unwrap()).exists(),
                    "{fp}: its resolv.conf: {v}"
                );
            }
            Op::SandboxDelete => {
                assert!(
                    !lnet_kernel::Netns::is_mounted_at(&w.s3_key),
                    "{fp}: its namespace mount is gone"
                );
                // Its address is free again (its port is checked with every port).
                ok(d.cli(&["network", "connect", "--ip", &w.s3_ip, "base", "probe"]));
                ok(d.cli(&["network", "disconnect", "base", "probe"]));
            }
            Op::Connect => {
                let eps = endpoints(d, "s2");
                assert_eq!(eps.len(), 1, "{fp}: {eps:?}");
                assert_eq!(eps[0]["Network"], "base", "{fp}: {eps:?}");
                assert_eq!(eps[0]["Ports"][0]["HostPort"], 9090, "{fp}: {eps:?}");
                let ip = eps[0]["IPv4Address"].as_str().unwrap().to_string();
                let o = ok(d.cli(&[
                    "sandbox", "exec", "s2", "--", "ip", "-o", "addr", "show", "eth0",
                ]));
                assert!(o.contains(&format!("inet {ip}")), "{fp}: {o}");
            }
            Op::Disconnect => {
                let o = ok(d.cli(&["sandbox", "exec", "s1", "--", "ip", "-o", "link"]));
                assert!(!o.contains("eth0"), "{fp}: s1 keeps no interface: {o}");
            }
            Op::SandboxRename => {
                assert!(
                    !exists(d, &["sandbox", "inspect", "s2"]),
                    "{fp}: the old name is gone"
                );
            }
        }
    }
}

/// Whether `lnet inspect …` finds it; anything but found or "not found" fails.
#[track_caller]
fn exists(d: &Daemon, args: &[&str]) -> bool {
    let o = d.cli(args);
    if o.status.success() {
        return true;
    }
    assert!(
        err(&o).contains("not found") || err(&o).contains("No such container"),
        "lnet {args:?}: neither found nor not found: {}",
        show(&o)
    );
    false
}

/// A sandbox's endpoints as `sandbox inspect` shows them.
fn endpoints(d: &Daemon, sandbox: &str) -> Vec<Value> {
    json(d.cli(&["sandbox", "inspect", sandbox]))[0]["Endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Facts about the world a check needs.
#[derive(Debug, Default)]
struct World {
    doomed_bridge: String,
    s3_ip: String,
    s3_key: String,
}

/// Network `base` (s1 publishing 8080 and s3 publishing 7070 joined to it), network
/// `doomed` with nothing on it, sandbox `s2` joined to nothing, and `probe`, a sandbox the
/// checks connect and disconnect.
fn build_world(d: &Daemon) -> World {
    ok(d.cli(&["network", "create", "--subnet", "10.98.0.0/24", "base"]));
    let doomed = ok(d.cli(&["network", "create", "--subnet", "10.97.0.0/24", "doomed"]));
    for s in ["s1", "s2", "s3", "probe"] {
        ok(d.cli(&["sandbox", "create", s]));
    }
    ok(d.cli(&["network", "connect", "-p", "8080:80", "base", "s1"]));
    ok(d.cli(&["network", "connect", "-p", "7070:70", "base", "s3"]));
    let s3 = json(d.cli(&["sandbox", "inspect", "s3"]));
    World {
        doomed_bridge: format!("br-{}", &doomed.trim()[..12]),
        s3_ip: sandbox_ip(d, "s3", "base"),
        s3_key: s3[0]["Key"].as_str().unwrap().to_string(),
    }
}

/// What the CLI shows of every network and sandbox, for "left no trace".
fn snapshot(d: &Daemon) -> Value {
    let mut nets = json(d.cli(&["network", "ls", "--format", "json"]));
    let names: Vec<String> = nets
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["Name"].as_str().unwrap().to_string())
        .collect();
    let mut args = vec!["network", "inspect"];
    args.extend(names.iter().map(String::as_str));
    let inspected = json(d.cli(&args));
    if let Some(a) = nets.as_array_mut() {
        a.sort_by_key(|n| n["Name"].as_str().unwrap_or_default().to_string());
    }
    let sbs = json(d.cli(&["sandbox", "ls", "--format", "json"]));
    serde_json::json!({ "networks": nets, "inspect": inspected, "sandboxes": sbs })
}

/// `lnet doctor` exits 0 and says the kernel matches the records (once the daemon's own
/// background deletes are done: see [`doctor_settled`]).
#[track_caller]
fn assert_doctor_clean(d: &Daemon, what: &str) {
    let o = doctor_settled(d);
    assert!(
        o.status.code() == Some(0) && out(&o).starts_with("the kernel matches the records ("),
        "{what}: lnet doctor must exit 0\n{}\ndaemon log:\n{}",
        show(&o),
        log_tail(d, 60)
    );
}

/// Every sandbox is `ready`.
#[track_caller]
fn assert_all_ready(d: &Daemon, what: &str) {
    let sbs = json(d.cli(&["sandbox", "ls", "--format", "json"]));
    for s in sbs.as_array().into_iter().flatten() {
        assert_eq!(s["State"], "ready", "{what}: {s}");
    }
}

/// The host ports the sandboxes publish, as `sandbox ls` shows them.
fn published(d: &Daemon) -> Vec<u64> {
    let sbs = json(d.cli(&["sandbox", "ls", "--format", "json"]));
    let mut v: Vec<u64> = sbs
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["Endpoints"].as_array().cloned().unwrap_or_default())
        .flat_map(|e| e["Ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["HostPort"].as_u64())
        .collect();
    v.sort_unstable();
    v
}

/// A host port is taken exactly when a sandbox shows it published: publishing it again
/// from `probe` works for each port no one shows, and is refused for each one shown.
#[track_caller]
fn assert_ports_follow_the_records(d: &Daemon, ports: &[u16], what: &str) {
    let shown = published(d);
    for &port in ports {
        let spec = format!("{port}:1");
        let o = d.cli(&["network", "connect", "-p", &spec, "base", "probe"]);
        if shown.contains(&u64::from(port)) {
            assert!(
                !o.status.success() && err(&o).contains("is not available"),
                "{what}: host port {port} is published, so publishing it again must be refused for that: {}",
                show(&o)
            );
        } else {
            assert!(
                o.status.success(),
                "{what}: host port {port} stays taken though no sandbox publishes it (published: {shown:?})\n{}",
                show(&o)
            );
            ok(d.cli(&["network", "disconnect", "base", "probe"]));
        }
    }
}

/// One failpoint: the world, the crash there, the restart and every check. Returns whether
/// the interrupted operation was found completed.
fn crash_at(fp: &str, op: Op) -> bool {
    crash_or_panic_at(fp, op, false)
}

/// [`crash_at`], or with `panic` a panic at the failpoint instead of an abort: a bug half
/// way through an operation. The daemon must end itself there (it aborts on any panic)
/// rather than serve on with memory half done, and start again converged.
fn crash_or_panic_at(fp: &str, op: Op, panic: bool) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let w = build_world(&d);
    let before = snapshot(&d);
    let ports = [7070, 8080, 9090];

    let armed_as = if panic {
        format!("{fp}=panic")
    } else {
        fp.to_string()
    };
    let armed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        d.restart_with_env(&[("LNET_FAILPOINT", &armed_as)])
    }));
    if let Err(p) = armed {
        assert!(
            d.log().contains(&format!("failpoint {fp} hit")),
            "{fp}: the daemon armed with it did not start: {}",
            panic_text(&*p)
        );
        panic!(
            "{fp}: the daemon armed with it died while starting, before `lnet {}` ran: its start-up (the recovery of the world's joined endpoints) passes through this failpoint, so a daemon armed with it cannot start where an endpoint is joined\n{}",
            op.args().join(" "),
            panic_text(&*p)
        );
    }
    let ran = d.cli(op.args());
    let status = d.wait_exit(Duration::from_secs(30));
    let Some(status) = status else {
        panic!(
            "{fp}: `lnet {}` did not reach the failpoint (the daemon still runs); map {fp} to an operation that does\nCLI: {}\ndaemon log:\n{}",
            op.args().join(" "),
            show(&ran),
            log_tail(&d, 60)
        );
    };
    assert_eq!(
        status.signal(),
        Some(sigabrt()),
        "{fp}: the daemon must abort at the failpoint: {status}\n{}",
        log_tail(&d, 60)
    );
    assert!(
        d.log().contains(&format!("failpoint {fp} hit")),
        "{fp}: {}",
        log_tail(&d, 60)
    );
    assert!(
        !ran.status.success(),
        "{fp}: the CLI must report an error when the daemon dies under it: {}",
        show(&ran)
    );

    d.restart_with_env(&[]);
    ok(d.cli(&["network", "ls"]));
    assert_doctor_clean(&d, &format!("{fp}: after the restart"));
    assert_all_ready(&d, fp);
    let done = op.done(&d);
    if done {
        op.check_done(&d, fp, &w);
    } else {
        assert_eq!(
            snapshot(&d),
            before,
            "{fp}: `lnet {}` neither completed nor went without a trace",
            op.args().join(" ")
        );
    }
    assert_ports_follow_the_records(&d, &ports, fp);
    assert_doctor_clean(&d, &format!("{fp}: after the port checks"));

    if !done {
        let again = d.cli(op.args());
        assert!(
            again.status.success(),
            "{fp}: retrying `lnet {}` after the crash must work: {}\ndaemon log:\n{}",
            op.args().join(" "),
            show(&again),
            log_tail(&d, 60)
        );
        assert!(op.done(&d), "{fp}: the retry took effect");
        op.check_done(&d, fp, &w);
        assert_ports_follow_the_records(&d, &ports, &format!("{fp}, after the retry"));
    }
    assert_doctor_clean(&d, &format!("{fp}: at the end"));
    done
}

#[test]
fn the_daemon_ends_itself_on_a_panic_mid_operation_and_starts_again_converged() {
    lnet_kernel::skip_unless_root!();
    for fp in [
        "join:interface-made",
        "leave:ports-unpublished",
        "network-delete:recorded",
    ] {
        let op = Op::of(fp).unwrap();
        std::thread::spawn(move || {
            lnet_kernel::testing::enter_new_netns().unwrap();
            crash_or_panic_at(fp, op, true)
        })
        .join()
        .unwrap_or_else(|p| panic!("{fp}, panicking: {}", panic_text(&*p)));
    }
}

fn sigabrt() -> i32 {
    nix::sys::signal::Signal::SIGABRT as i32
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(a panic without a message)".into())
}

#[test]
fn the_daemon_killed_at_every_failpoint_starts_again_converged() {
    lnet_kernel::skip_unless_root!();
    let started = Instant::now();
    let all = lnet_core::failpoint::ALL;
    let mut failures = Vec::new();
    let mut cases = Vec::new();
    for &fp in all {
        match Op::of(fp) {
            Some(op) => cases.push((fp, op)),
            None => failures.push(format!(
                "{fp}: no CLI operation is known to reach it: map its group in Op::of (tests/crash_daemon.rs)"
            )),
        }
    }
    // A few failpoints at a time (each mostly waits for processes), each in a fresh
    // namespace of its own, on a thread of its own.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(vec![None; cases.len()]);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(fp, op)) = cases.get(i) else {
                        return;
                    };
                    let t = Instant::now();
                    let r = std::thread::spawn(move || {
                        lnet_kernel::testing::enter_new_netns().unwrap();
                        crash_at(fp, op)
                    })
                    .join()
                    .map(|done| {
                        format!(
                            "{fp}: {} ({:.1?})",
                            if done { "completed" } else { "undone" },
                            t.elapsed()
                        )
                    })
                    .map_err(|p| panic_text(&*p));
                    results.lock().unwrap()[i] = Some(r);
                }
            });
        }
    });
    let mut outcomes = Vec::new();
    for r in results.into_inner().unwrap().into_iter().flatten() {
        match r {
            Ok(o) => outcomes.push(o),
            Err(e) => failures.push(e),
        }
    }
    println!(
        "crash_daemon: {} failpoints exercised through the daemon (of {} in lnet_core::failpoint::ALL) in {:.1?}; {} failed\n  {}",
        cases.len(),
        all.len(),
        started.elapsed(),
        failures.len(),
        outcomes.join("\n  ")
    );
    assert!(
        failures.is_empty(),
        "{} of {} failpoints failed:\n\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
}

/// A small deterministic generator (splitmix64): the workload depends on the seed alone.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Concurrent streams of commands in each round; each stream has its own networks,
/// sandboxes and host ports, so that its commands mostly make sense one after the other.
const STREAMS: usize = 3;
/// Per stream.
const NETS: usize = 2;
const SANDBOXES: usize = 3;
const PORTS: usize = 3;
/// Commands per stream and round.
const BATCH: usize = 8;

fn net_name(stream: usize, n: usize) -> String {
    format!("r{stream}{n}")
}

fn net_subnet(stream: usize, n: usize) -> String {
    format!("10.8{stream}.{n}.0/24")
}

fn sandbox_name(stream: usize, j: usize) -> String {
    format!("c{stream}{j}")
}

fn port_of(stream: usize, k: usize) -> u16 {
    8100 + 10 * stream as u16 + k as u16
}

/// What a stream believes exists (read from the daemon at the start of each round, then
/// updated as if every command it plans succeeds).
#[derive(Debug, Clone, Default)]
struct Model {
    nets: std::collections::BTreeSet<String>,
    sandboxes: std::collections::BTreeSet<String>,
    /// (network, sandbox) → the host port published, if any.
    joins: std::collections::BTreeMap<(String, String), Option<u16>>,
}

impl Model {
    /// The daemon's networks, sandboxes and joins.
    fn read(d: &Daemon) -> Model {
        let mut m = Model::default();
        for n in json(d.cli(&["network", "ls", "--format", "json"]))
            .as_array()
            .into_iter()
            .flatten()
        {
            m.nets.insert(n["Name"].as_str().unwrap().to_string());
        }
        for s in json(d.cli(&["sandbox", "ls", "--format", "json"]))
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = s["Name"].as_str().unwrap().to_string();
            for e in s["Endpoints"].as_array().into_iter().flatten() {
                let port = e["Ports"][0]["HostPort"].as_u64().map(|p| p as u16);
                m.joins.insert(
                    (e["Network"].as_str().unwrap().to_string(), name.clone()),
                    port,
                );
            }
            m.sandboxes.insert(name);
        }
        m
    }

    /// One command of stream `t` that fits the model (now and then one that does not: it
    /// must fail cleanly), the model updated as if it succeeded.
    fn command(&mut self, rng: &mut Rng, t: usize) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let n = rng.below(NETS as u64) as usize;
        let j = rng.below(SANDBOXES as u64) as usize;
        let (net, sb) = (net_name(t, n), sandbox_name(t, j));
        let has_net = self.nets.contains(&net);
        let has_sb = self.sandboxes.contains(&sb);
        let key = (net.clone(), sb.clone());
        let joined = self.joins.contains_key(&key);
        let careless = rng.below(10) == 0;
        match rng.below(6) {
            0 if !has_net || careless => {
                self.nets.insert(net.clone());
                s(&["network", "create", "--subnet", &net_subnet(t, n), &net])
            }
            1 if has_sb || careless => {
                self.sandboxes.remove(&sb);
                self.joins.retain(|(_, b), _| *b != sb);
                s(&["sandbox", "rm", &sb])
            }
            2 if (has_net && !self.joins.keys().any(|(a, _)| *a == net)) || careless => {
                self.nets.remove(&net);
                s(&["network", "rm", &net])
            }
            _ if !has_sb => {
                self.sandboxes.insert(sb.clone());
                s(&["sandbox", "create", &sb])
            }
            _ if !has_net => {
                self.nets.insert(net.clone());
                s(&["network", "create", "--subnet", &net_subnet(t, n), &net])
            }
            3 | 4 if !joined || careless => {
                let taken: Vec<u16> = self.joins.values().flatten().copied().collect();
                let port = (0..PORTS)
                    .map(|k| port_of(t, k))
                    .filter(|p| !taken.contains(p))
                    .nth(rng.below(PORTS as u64) as usize % PORTS.max(1))
                    .filter(|_| rng.below(2) == 0);
                self.joins.insert(key, port);
                let mut v = s(&["network", "connect"]);
                if let Some(p) = port {
                    v.extend(s(&["-p", &format!("{p}:80")]));
                }
                v.extend([net, sb]);
                v
            }
            _ => {
                self.joins.remove(&key);
                s(&["network", "disconnect", &net, &sb])
            }
        }
    }
}

/// How one command of a batch ended.
#[derive(Debug)]
struct Ran {
    args: Vec<String>,
    /// Its exit code (`None`: killed after a minute).
    code: Option<i32>,
    /// The daemon died while it waited for the answer.
    cut_off: bool,
}

/// Runs `cmds` one after the other against the daemon at `socket`.
fn run_batch(socket: PathBuf, cmds: Vec<Vec<String>>) -> Vec<Ran> {
    cmds.into_iter()
        .map(|args| {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = run_with_limit(lnet_cmd(&socket, &a), Duration::from_secs(60));
            let code = o.as_ref().and_then(|o: &Output| o.status.code());
            let cut_off = o
                .as_ref()
                .is_some_and(|o| err(o).contains("connection closed before message completed"));
            Ran {
                args,
                code,
                cut_off,
            }
        })
        .collect()
}

#[test]
fn random_kills_during_a_mixed_workload_always_restart_converged() {
    lnet_kernel::skip_unless_root!();
    lnet_kernel::testing::enter_new_netns().unwrap();
    let seed: u64 = std::env::var("LNET_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let rounds: u64 = std::env::var("LNET_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    println!(
        "crash_daemon random: seed {seed}, {rounds} rounds (LNET_CRASH_SEED={seed} repeats the workload and the kill delays)"
    );
    let repeat =
        format!("seed {seed} (LNET_CRASH_SEED={seed} LNET_CRASH_ROUNDS={rounds} to repeat)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let started = Instant::now();
    let (mut ran, mut succeeded, mut cut_off) = (0, 0, 0);
    for round in 1..=rounds {
        let model = Model::read(&d);
        let batches: Vec<Vec<Vec<String>>> = (0..STREAMS)
            .map(|t| {
                let mut m = model.clone();
                (0..BATCH).map(|_| m.command(&mut rng, t)).collect()
            })
            .collect();
        let delay = Duration::from_millis(rng.below(400));
        let streams: Vec<_> = batches
            .into_iter()
            .map(|cmds| {
                let socket = d.socket.clone();
                std::thread::spawn(move || run_batch(socket, cmds))
            })
            .collect();
        std::thread::sleep(delay);
        d.kill();
        let results: Vec<Ran> = streams
            .into_iter()
            .flat_map(|s| s.join().expect("a stream's thread"))
            .collect();
        ran += results.len();
        succeeded += results.iter().filter(|r| r.code == Some(0)).count();
        cut_off += results.iter().filter(|r| r.cut_off).count();
        let context = || {
            format!(
                "{repeat}, round {round}, the daemon killed after {delay:?}; the commands (streams one after the other):\n{}",
                results
                    .iter()
                    .map(|r| format!(
                        "  lnet {} -> exit {:?}{}",
                        r.args.join(" "),
                        r.code,
                        if r.cut_off {
                            " (cut off by the kill)"
                        } else {
                            ""
                        }
                    ))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        };
        let restarted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.restart()));
        if let Err(p) = restarted {
            panic!("{}\n{}", panic_text(&*p), context());
        }
        let ls = d.cli(&["network", "ls"]);
        assert!(ls.status.success(), "{}\n{}", show(&ls), context());
        let doc = doctor_settled(&d);
        assert!(
            doc.status.code() == Some(0),
            "lnet doctor after the restart must exit 0\n{}\n{}\ndaemon log:\n{}",
            show(&doc),
            context(),
            log_tail(&d, 60)
        );
        let sbs = json(d.cli(&["sandbox", "ls", "--format", "json"]));
        for s in sbs.as_array().into_iter().flatten() {
            assert_eq!(s["State"], "ready", "{s}\n{}", context());
        }
    }

    println!(
        "crash_daemon random: seed {seed}: {rounds} kills, {ran} commands ({succeeded} succeeded, {cut_off} cut off mid-request by the kill), lnet doctor clean after every restart, in {:.1?}",
        started.elapsed()
    );

    // Nothing leaked: every sandbox and network can be removed, and then every subnet and
    // host port of the workload can be had again.
    let context = format!("{repeat}, after all rounds");
    for s in ok(d.cli(&["sandbox", "ls", "-q"])).lines() {
        let o = d.cli(&["sandbox", "rm", s]);
        assert!(
            o.status.success(),
            "sandbox rm {s}: {}\n{context}",
            show(&o)
        );
    }
    for t in 0..STREAMS {
        for n in 0..NETS {
            let name = net_name(t, n);
            if exists(&d, &["network", "inspect", &name]) {
                let o = d.cli(&["network", "rm", &name]);
                assert!(
                    o.status.success(),
                    "network rm {name}: {}\n{context}",
                    show(&o)
                );
            }
        }
    }
    let left = ok(d.cli(&["network", "ls", "-q"]));
    assert_eq!(
        left.lines().count(),
        3,
        "only bridge, host and none: {left}\n{context}"
    );
    assert_doctor_clean(&d, &context);
    ok(d.cli(&["sandbox", "create", "last"]));
    for t in 0..STREAMS {
        for n in 0..NETS {
            let (name, subnet) = (net_name(t, n), net_subnet(t, n));
            let o = d.cli(&["network", "create", "--subnet", &subnet, &name]);
            assert!(
                o.status.success(),
                "{subnet} is free again: {}\n{context}",
                show(&o)
            );
        }
    }
    let mut connect = vec!["network".to_string(), "connect".to_string()];
    for t in 0..STREAMS {
        for k in 0..PORTS {
            connect.push("-p".into());
            connect.push(format!("{}:80", port_of(t, k)));
        }
    }
    connect.extend([net_name(0, 0), "last".to_string()]);
    let args: Vec<&str> = connect.iter().map(String::as_str).collect();
    let o = d.cli(&args);
    assert!(
        o.status.success(),
        "every host port is free again: {}\n{context}",
        show(&o)
    );
    assert_doctor_clean(&d, &context);
    ok(d.cli(&["sandbox", "rm", "last"]));
    for t in 0..STREAMS {
        for n in 0..NETS {
            ok(d.cli(&["network", "rm", &net_name(t, n)]));
        }
    }
    assert_doctor_clean(&d, &context);
    println!(
        "crash_daemon random: seed {seed}: nothing leaked; {:.1?} in all",
        started.elapsed()
    );
}

#[test]
fn an_offline_doctor_leaves_a_running_daemons_objects_alone_when_its_store_is_deleted() {
    if !support::can_run(
        "an_offline_doctor_leaves_a_running_daemons_objects_alone_when_its_store_is_deleted",
        false,
    ) {
        return;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    ok(d.cli(&["network", "create", "kept"]));
    ok(d.cli(&["sandbox", "create", "s1"]));
    ok(d.cli(&["network", "connect", "-p", "8080:80", "kept", "s1"]));
    let kept = json(d.cli(&["network", "inspect", "kept"]))[0]["Id"]
        .as_str()
        .map(|id| format!("br-{}", &id[..12]))
        .unwrap();
    // The store deleted under the running daemon, which still has it open: no other store
    // lock stands between an offline doctor and the daemon's kernel objects.
    std::fs::remove_file(d.data_root().join("lnet.db")).unwrap();
    for extra in [&["--repair"][..], &[][..]] {
        let o = d.doctor(extra);
        assert_eq!(
            o.status.code(),
            Some(0),
            "doctor {extra:?} asks the daemon, whose records match its kernel: {}",
            show(&o)
        );
        for link in ["lnet0", kept.as_str()] {
            assert!(
                link_exists(link),
                "doctor {extra:?} left {link}: {}",
                show(&o)
            );
        }
        assert_eq!(
            std::fs::read_dir(d.exec_root().join("netns"))
                .unwrap()
                .count(),
            1,
            "doctor {extra:?} left the sandbox's namespace mount"
        );
        assert!(
            !d.data_root().join("lnet.db").exists(),
            "doctor {extra:?} made no store of its own"
        );
    }
    assert!(published(&d).contains(&8080));
    assert_doctor_clean(&d, "after the offline doctors");
}

/// The links of the test's namespace whose names lnet gives (`lnet0`, `br-…`, `veth…`,
/// `lnetgone…`).
fn lnet_shaped_links() -> Vec<String> {
    ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| ["lnet", "br-", "veth"].iter().any(|p| n.starts_with(p)))
        .collect()
}

/// The index of `lnet0` in the test's namespace.
fn lnet0_index() -> u32 {
    lnet_kernel::Netlink::new()
        .unwrap()
        .link_by_name("lnet0")
        .unwrap()
        .expect("lnet0 exists")
        .index
}

#[test]
fn the_daemon_killed_and_its_store_deleted_starts_again_with_nothing_leaked() {
    if !support::can_run(
        "the_daemon_killed_and_its_store_deleted_starts_again_with_nothing_leaked",
        false,
    ) {
        return;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Another engine's drop-policy forward chain, where lnet adds accept rules per bridge.
    nft(&["add", "table", "ip", "otherfw"]);
    nft(&[
        "add",
        "chain",
        "ip",
        "otherfw",
        "forward",
        "{ type filter hook forward priority 0; policy drop; }",
    ]);
    let mut d = Daemon::start(dir.path());
    build_world(&d);
    let subnet_of = |d: &Daemon, net: &str| {
        json(d.cli(&["network", "inspect", net]))[0]["IPAM"]["Config"][0]["Subnet"].clone()
    };
    let default_subnet = subnet_of(&d, "bridge");
    assert!(nft(&["list", "table", "inet", "lnet"]).contains("8080"));

    // The store lost; then the sandbox records too; then both again, put right by an
    // offline `lnet doctor --repair` before the daemon starts.
    for (lose_state, repair) in [(false, false), (true, false), (true, true)] {
        let what = match (lose_state, repair) {
            (false, _) => "store deleted",
            (true, false) => "store and sandbox records deleted",
            (true, true) => "store and sandbox records deleted, doctor --repair",
        };
        let doomed = json(d.cli(&["network", "inspect", "doomed"]))[0]["Id"]
            .as_str()
            .map(|id| format!("br-{}", &id[..12]))
            .unwrap();
        let lnet0_before = lnet0_index();
        d.kill();
        std::fs::remove_file(d.data_root().join("lnet.db")).unwrap();
        if lose_state {
            std::fs::remove_dir_all(d.exec_root().join("state")).unwrap();
        }
        // With no daemon, `lnet doctor` reads the kernel against the (empty) store: lnet's
        // bridges, their ports and rules are findings, and it says so in its exit code.
        let offline = d.doctor(&[]);
        assert_ne!(offline.status.code(), Some(0), "{what}: {}", show(&offline));
        for shown in [
            "bridge lnet0 (no record names it)",
            &format!("bridge {doomed} (no record names it)"),
            "lnet:lnet0:in",
        ] {
            assert!(
                out(&offline).contains(shown),
                "{what}: {shown}: {}",
                show(&offline)
            );
        }
        if repair {
            let fixed = d.doctor(&["--repair"]);
            assert_eq!(fixed.status.code(), Some(0), "{what}: {}", show(&fixed));
            for shown in [
                "put right:",
                "bridge lnet0 of network (no record) ",
                &format!("bridge {doomed} of network (no record) "),
                "(no sandbox names it)",
                "the kernel matches the records",
            ] {
                assert!(
                    out(&fixed).contains(shown),
                    "{what}: {shown}: {}",
                    show(&fixed)
                );
            }
        }

        d.restart();
        assert_doctor_clean(&d, what);
        // The predefined network took over its own marked bridge (unless doctor --repair
        // removed it first, with everything else no record named).
        assert_eq!(
            lnet0_index() == lnet0_before,
            !repair,
            "{what}: lnet0 is the same link after the start"
        );
        // Nothing else lnet made before is left: the only lnet link is the predefined
        // bridge, the only rules in the other engine's chain are for it, no published
        // port is forwarded, no sandbox namespace is mounted without a record.
        assert_eq!(lnet_shaped_links(), ["lnet0"], "{what}");
        let rules = nft(&["list", "chain", "ip", "otherfw", "forward"]);
        assert!(!rules.contains("lnet:br-"), "{what}: {rules}");
        assert!(rules.contains("lnet:lnet0:in"), "{what}: {rules}");
        let table = nft(&["list", "table", "inet", "lnet"]);
        assert!(
            !table.contains("8080") && !table.contains("7070"),
            "{what}: {table}"
        );
        let sandboxes = json(d.cli(&["sandbox", "ls", "--format", "json"]));
        let mounted: Vec<_> = std::fs::read_dir(d.exec_root().join("netns"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        if lose_state {
            assert_eq!(sandboxes, serde_json::json!([]), "{what}");
            assert!(mounted.is_empty(), "{what}: {mounted:?}");
            for s in ["s1", "s2", "s3", "probe"] {
                ok(d.cli(&["sandbox", "create", s]));
            }
        } else {
            assert_eq!(
                sandboxes.as_array().unwrap().len(),
                4,
                "{what}: {sandboxes}"
            );
            assert_eq!(mounted.len(), 4, "{what}: {mounted:?}");
            assert!(published(&d).is_empty(), "{what}");
        }
        assert_eq!(subnet_of(&d, "bridge"), default_subnet, "{what}");

        // The same networks, subnets and host ports work again, with traffic.
        ok(d.cli(&["network", "create", "--subnet", "10.98.0.0/24", "base"]));
        ok(d.cli(&["network", "create", "--subnet", "10.97.0.0/24", "doomed"]));
        ok(d.cli(&["network", "connect", "-p", "8080:80", "base", "s1"]));
        ok(d.cli(&["network", "connect", "-p", "7070:70", "base", "s3"]));
        ok(d.cli(&["network", "connect", "bridge", "s2"]));
        assert_eq!(published(&d), [7070, 8080], "{what}");
        assert_traffic(
            &d,
            "s3",
            &sandbox_ip(&d, "s3", "base"),
            "s1",
            &sandbox_ip(&d, "s1", "base"),
            8080,
            what,
        );
        assert_doctor_clean(&d, what);
    }
}

#[test]
fn the_daemon_refuses_to_start_on_an_lnet0_it_did_not_make() {
    if !support::can_run(
        "the_daemon_refuses_to_start_on_an_lnet0_it_did_not_make",
        false,
    ) {
        return;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Someone else's bridge of the name the predefined network wants: no alias, then an
    // alias that is not lnet's mark.
    ip(&["link", "add", "lnet0", "type", "bridge"]);
    for alias in [None, Some("lnet:network:not-an-id")] {
        if let Some(a) = alias {
            ip(&["link", "set", "dev", "lnet0", "alias", a]);
        }
        let started = std::panic::catch_unwind(|| Daemon::start(dir.path()));
        let Err(p) = started else {
            panic!("{alias:?}: the daemon started on a foreign lnet0");
        };
        let text = panic_text(&*p);
        assert!(
            text.contains("exited with exit status: 1")
                && text.contains("create the predefined network bridge")
                && text.contains("com.docker.network.bridge.name \"lnet0\"")
                && text.contains("lnet did not make it"),
            "{alias:?}: {text}"
        );
        assert!(
            link_exists("lnet0"),
            "{alias:?}: the foreign bridge is kept"
        );
    }
    // Gone, the daemon starts and makes its own.
    ip(&["link", "del", "lnet0"]);
    let d = Daemon::start(dir.path());
    assert_doctor_clean(&d, "after the foreign lnet0 went");
}
