//! A container's start and stop through dockerd with lnet as its network plugin, against
//! dockerd's own bridge driver, in the same run; and lnet's own share of it, read from
//! lnet's log.
//!
//! Run as root with `cargo bench --bench plugin`; `LNET_BENCH_QUICK=1` runs 3 containers per
//! row instead of 30. Not root, or dockerd, the docker CLI, busybox, nsenter or unshare
//! missing: a recorded skip (`lnet_kernel::testing::require_root` / `require_tool`), exit 0;
//! under `LNET_REQUIRE_ROOT=1` / `LNET_REQUIRE_TOOLS=1` (CI) a failure.
//!
//! Set up as `tests/plugin_dockerd.rs` does: dockerd 20.10 (`tests/support/dockerd.sh`:
//! `--iptables=false`, `--bridge=none`, here also `--debug`, its own mount namespace, state
//! in a temporary directory, the busybox image `bb:1`) and `lnet daemon --log-level debug`
//! serving the plugin protocol in dockerd's plugin directory, both in this process's new
//! network namespace. Two networks: `lnetn` (`-d lnet --ipam-driver lnet --subnet
//! 10.77.0.0/24`, lnet's network and IPAM) and `dbr` (`-d bridge --subnet 10.90.0.0/24`,
//! dockerd's built-in bridge driver and IPAM).
//!
//! - **docker run**: the wall time of `docker run --rm --network X bb:1 true`, the CLI process
//!   from spawn to exit: the client's start, create, start, attach, wait for `true`, and
//!   (`--rm`) the removal, network teardown included, which the CLI waits for. X is `lnetn`,
//!   `dbr`, and `none` (no network: what dockerd, containerd, runc and the CLI cost alone).
//!   And with `-p 8080:80` for lnet and the bridge (whose publishing is docker-proxy, as
//!   iptables is off). The five arms alternate within each round (the first arm rotates), so
//!   drift hits all alike; one unrecorded run of each arm first.
//! - **dockerd's SetKey**, within that run: dockerd's debug line `sandbox set key processing
//!   took …` (runc's prestart hook calls back into dockerd, which moves the interfaces into
//!   the container's namespace, addresses and routes them, and sets up its embedded DNS): the
//!   share of the network set-up that is dockerd's own, per arm.
//! - **lnet's part**: the `ms=` of each `plugin call` line lnet logs at debug level: the time
//!   of lnet's handler from a parsed request to its answer (the controller operation, on a
//!   blocking thread), neither the HTTP exchange nor dockerd's work around it. The log is
//!   read by offset around each lnet container, so every call is its container's; summed
//!   per container: **up** = CreateEndpoint + Join + ProgramExternalConnectivity, **down** =
//!   RevokeExternalConnectivity + Leave + DeleteEndpoint, and IPAM's RequestAddress and
//!   ReleaseAddress apart. The goal: up and down each ≤ 3 ms at p50.
//!
//! Percentiles are nearest-rank. Safety: private mount namespace and new network namespace
//! (`run_isolated_bench`); lnet's exec root on a private tmpfs; guards, dropped on error and
//! on panic, run `dockerd.sh cleanup` (containers, dockerd, containerd and shims by PID,
//! mounts, cgroups, files) and then kill lnet by its PID.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error>>;

const BENCH: &str = "bench plugin";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dockerd.sh");
/// The lnet network and dockerd's bridge network.
const LNET_NET: &str = "lnetn";
const BRIDGE_NET: &str = "dbr";

/// lnet's plugin calls whose times make a container's "up" and "down".
const UP: [&str; 3] = [
    "NetworkDriver.CreateEndpoint",
    "NetworkDriver.Join",
    "NetworkDriver.ProgramExternalConnectivity",
];
const DOWN: [&str; 3] = [
    "NetworkDriver.RevokeExternalConnectivity",
    "NetworkDriver.Leave",
    "NetworkDriver.DeleteEndpoint",
];
const REQUEST_ADDRESS: &str = "IpamDriver.RequestAddress";
const RELEASE_ADDRESS: &str = "IpamDriver.ReleaseAddress";

fn main() {
    use lnet_kernel::testing::{require_root, require_tool};
    // Root first: not root, that is the one reason to give.
    if !require_root(BENCH, "network namespaces, mounts, dockerd") {
        return;
    }
    for tool in ["dockerd", "docker", "busybox", "nsenter", "unshare"] {
        if !require_tool(BENCH, tool) {
            return;
        }
    }
    lnet_kernel::testing::run_isolated_bench("plugin", run);
}

/// dockerd, started by `tests/support/dockerd.sh`; everything of it ended by PID, unmounted
/// and removed on drop (`dockerd.sh cleanup`), on a failed start too.
struct Dockerd {
    lab: PathBuf,
    id: String,
}

impl Dockerd {
    /// Starts dockerd keeping its state under `lab` and imports `bb:1`. A start that fails
    /// to pin dockerd's mount namespace (`unshare --mount=FILE`: EINVAL) is cleaned up and
    /// tried again. Seen on Linux 6.18, where `mnt_ns_loop` refuses the bind when the new
    /// namespace's id is not above this process's, and the ids seem not ordered across CPUs:
    /// with the `unshare` pinned to one CPU it never failed; unpinned, 10 starts in 60.
    fn start(lab: &Path, id: &str, flags: &[&str]) -> Res<Dockerd> {
        const ATTEMPTS: usize = 20;
        for attempt in 1.. {
            let d = Dockerd {
                lab: lab.to_path_buf(),
                id: id.to_string(),
            };
            match d.script("start", flags) {
                Ok(()) => {
                    d.script("import", &[])?;
                    return Ok(d);
                }
                Err(e) if attempt < ATTEMPTS && e.to_string().contains("/ns/mnt failed") => {
                    eprintln!("{BENCH}: dockerd.sh start, attempt {attempt}: {e}; again");
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    fn script(&self, cmd: &str, args: &[&str]) -> Res<()> {
        let out = Command::new("bash")
            .arg(SCRIPT)
            .arg(cmd)
            .args(args)
            .env("DL_LAB", &self.lab)
            .env("DL_ID", &self.id)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "dockerd.sh {cmd}: {}{}\ndockerd's log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail(&self.log(), 30)
            )
            .into());
        }
        Ok(())
    }

    fn dir(&self) -> PathBuf {
        self.lab.join(format!("inst-{}", self.id))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default()
    }

    fn log_len(&self) -> Res<u64> {
        Ok(std::fs::metadata(self.dir().join("dockerd.log"))?.len())
    }

    fn log_from(&self, offset: u64) -> Res<String> {
        let mut f = std::fs::File::open(self.dir().join("dockerd.log"))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut s = String::new();
        f.read_to_string(&mut s)?;
        Ok(s)
    }

    /// `docker -H unix://… args…`, with dockerd's own CLI (docker.io's, in /usr/bin) when
    /// there is one.
    fn command(&self, args: &[&str]) -> Command {
        let cli = if Path::new("/usr/bin/docker").exists() {
            "/usr/bin/docker"
        } else {
            "docker"
        };
        let mut c = Command::new(cli);
        c.arg("-H")
            .arg(format!(
                "unix://{}",
                self.dir().join("docker.sock").display()
            ))
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null());
        c
    }

    /// `docker args…`, which must succeed.
    fn docker(&self, args: &[&str]) -> Res<()> {
        let out = self.command(args).output()?;
        if !out.status.success() {
            return Err(format!(
                "docker {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(())
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Err(e) = self.script("cleanup", &[]) {
            eprintln!("{BENCH}: {e}");
        }
    }
}

/// `lnet daemon --log-level debug`, serving the plugin protocol at `plugin_socket`; killed by
/// its PID on drop, and the namespace files under its exec root unmounted.
struct Lnet {
    child: Child,
    api: PathBuf,
    log: PathBuf,
    exec_root: PathBuf,
}

impl Lnet {
    fn start(root: &Path, plugin_socket: &Path) -> Res<Lnet> {
        let dir = root.join("lnet");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("daemon.json"), "{}")?;
        let log = dir.join("daemon.log");
        let out = std::fs::File::create(&log)?;
        let api = dir.join("lnet.sock");
        let exec_root = root.join("run");
        let child = Command::new(env!("CARGO_BIN_EXE_lnet"))
            .arg("daemon")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("-H")
            .arg(format!("unix://{}", api.display()))
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg(format!("--plugin-socket={}", plugin_socket.display()))
            .args(["--log-level", "debug"])
            .env_remove("LNET_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let mut l = Lnet {
            child,
            api,
            log,
            exec_root,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !l.pings() {
            if let Some(status) = l.child.try_wait()? {
                return Err(format!("lnet exited with {status}:\n{}", l.read_from(0)?).into());
            }
            if Instant::now() > deadline {
                return Err(format!("lnet did not answer in 10 s:\n{}", l.read_from(0)?).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(l)
    }

    /// Whether lnet's API answers `GET /_ping` with 200.
    fn pings(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(&self.api) else {
            return false;
        };
        let mut out = String::new();
        write!(
            s,
            "GET /_ping HTTP/1.1\r\nHost: lnet\r\nConnection: close\r\n\r\n"
        )
        .and_then(|()| s.read_to_string(&mut out))
        .is_ok()
            && out.starts_with("HTTP/1.1 200")
    }

    fn log_len(&self) -> Res<u64> {
        Ok(std::fs::metadata(&self.log)?.len())
    }

    fn read_from(&self, offset: u64) -> Res<String> {
        let mut f = std::fs::File::open(&self.log)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut s = String::new();
        f.read_to_string(&mut s)?;
        Ok(s)
    }
}

impl Drop for Lnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for entry in std::fs::read_dir(self.exec_root.join("netns"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Err(e) = lnet_kernel::Netns::delete_at(entry.path()) {
                eprintln!("{BENCH}: cleanup: {e}");
            }
        }
    }
}

/// Both daemons; dropped dockerd first (it hands its containers' networks back to lnet as
/// it stops them), then lnet.
struct Env {
    dockerd: Dockerd,
    lnet: Lnet,
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// lnet's calls for one container: the summed `ms=` and the count of each call, by name
/// (`NetworkDriver.Join`).
type Calls = BTreeMap<String, (usize, f64)>;

/// The `plugin call` lines in `log`: `… DEBUG lnet_app::daemon::plugin: plugin call
/// call=/NetworkDriver.Join ok=true ms=0.53`. A failed call is an error.
fn plugin_calls(log: &str) -> Res<Calls> {
    let mut calls = Calls::new();
    for line in log.lines() {
        let Some((_, fields)) = line.split_once(": plugin call call=") else {
            continue;
        };
        let field = |k: &str| fields.split_whitespace().find_map(|w| w.strip_prefix(k));
        let (Some(name), Some(ok), Some(ms)) =
            (fields.split_whitespace().next(), field("ok="), field("ms="))
        else {
            return Err(format!("lnet's log: a plugin call line not understood: {line}").into());
        };
        if ok != "true" {
            return Err(format!("lnet's log: a failed call: {line}").into());
        }
        let ms: f64 = ms
            .parse()
            .map_err(|_| format!("lnet's log: ms= not a number: {line}"))?;
        let e = calls
            .entry(name.trim_start_matches('/').to_string())
            .or_default();
        e.0 += 1;
        e.1 += ms;
    }
    Ok(calls)
}

/// dockerd's SetKey time in its debug log: `sandbox set key processing took 108.33ms for
/// container …`, a Go duration.
fn setkey_ms(log: &str) -> Option<f64> {
    let d = log
        .lines()
        .find_map(|l| l.split_once("sandbox set key processing took "))?
        .1
        .split_whitespace()
        .next()?;
    let (num, scale) = [
        ("ms", 1.0),
        ("µs", 1e-3),
        ("us", 1e-3),
        ("ns", 1e-6),
        ("s", 1e3),
    ]
    .into_iter()
    .find_map(|(unit, scale)| Some((d.strip_suffix(unit)?, scale)))?;
    Some(num.parse::<f64>().ok()? * scale)
}

/// One `docker run`.
struct Run {
    /// The CLI's wall time, ms.
    wall: f64,
    /// dockerd's SetKey step, ms (from its debug log).
    setkey: Option<f64>,
    /// lnet's calls, on lnet's network.
    calls: Option<Calls>,
}

/// `docker run --rm --network <network> [-p 8080:80] bb:1 true`: the CLI's wall time,
/// dockerd's SetKey time and, on lnet's network, lnet's calls for this container (read from
/// lnet's log, waiting for the last of them, ReleaseAddress, which dockerd sends before it
/// removes the container).
fn docker_run(env: &Env, network: &str, publish: bool) -> Res<Run> {
    let on_lnet = network == LNET_NET;
    let offset = env.lnet.log_len()?;
    let dockerd_offset = env.dockerd.log_len()?;
    let mut args = vec!["run", "--rm", "--network", network];
    if publish {
        args.extend(["-p", "8080:80"]);
    }
    args.extend(["bb:1", "true"]);
    let mut cmd = env.dockerd.command(&args);
    let t = Instant::now();
    let out = cmd.output()?;
    let wall = ms(t.elapsed());
    if !out.status.success() {
        return Err(format!(
            "docker {}: {}{}\nlnet's log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&env.lnet.read_from(offset)?, 30)
        )
        .into());
    }
    let setkey = setkey_ms(&env.dockerd.log_from(dockerd_offset)?);
    if !on_lnet {
        return Ok(Run {
            wall,
            setkey,
            calls: None,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let calls = plugin_calls(&env.lnet.read_from(offset)?)?;
        if calls.contains_key(RELEASE_ADDRESS) {
            return Ok(Run {
                wall,
                setkey,
                calls: Some(calls),
            });
        }
        if Instant::now() > deadline {
            return Err(format!(
                "docker {}: lnet logged no ReleaseAddress within 5 s; its log since the run:\n{}",
                args.join(" "),
                env.lnet.read_from(offset)?
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile.
fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}

/// One scenario's samples: the wall times and dockerd's SetKey times by arm, and lnet's
/// calls per lnet container.
#[derive(Default)]
struct Scenario {
    wall: BTreeMap<&'static str, Vec<f64>>,
    setkey: BTreeMap<&'static str, Vec<f64>>,
    lnet: Vec<Calls>,
}

/// The arms: a network, and whether the container publishes a port.
const ARMS: [(&str, bool); 5] = [
    (LNET_NET, false),
    (BRIDGE_NET, false),
    ("none", false),
    (LNET_NET, true),
    (BRIDGE_NET, true),
];

/// `n` rounds over all [`ARMS`], the first arm rotating each round, after one unrecorded
/// run of each; the samples without and with `-p`.
fn measure(env: &Env, n: usize) -> Res<(Scenario, Scenario)> {
    for (arm, publish) in ARMS {
        docker_run(env, arm, publish)?;
    }
    let (mut plain, mut published) = (Scenario::default(), Scenario::default());
    for i in 0..n {
        for k in 0..ARMS.len() {
            let (arm, publish) = ARMS[(i + k) % ARMS.len()];
            let run = docker_run(env, arm, publish)?;
            let s = if publish { &mut published } else { &mut plain };
            s.wall.entry(arm).or_default().push(run.wall);
            s.setkey.entry(arm).or_default().extend(run.setkey);
            s.lnet.extend(run.calls);
        }
    }
    Ok((plain, published))
}

/// Per container, the summed time of the calls in `names`.
fn sum_of(calls: &[Calls], names: &[&str]) -> Vec<f64> {
    calls
        .iter()
        .map(|c| names.iter().filter_map(|n| c.get(*n)).map(|e| e.1).sum())
        .collect()
}

/// [`bench`], with a panic turned into an error once the guards have cleaned up, so that
/// `run_isolated_bench` still removes its directory.
fn run(root: &Path) -> Res<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bench(root)))
        .unwrap_or_else(|_| Err("panicked (the message is above)".into()))
}

fn bench(root: &Path) -> Res<()> {
    let quick = std::env::var("LNET_BENCH_QUICK").is_ok_and(|v| v == "1");
    let n = if quick { 3 } else { 30 };
    // lnet's exec root on a tmpfs, as /run/lnet is on a real host (run_isolated_bench
    // unmounts it).
    lnet_kernel::testing::mount_tmpfs(&root.join("run"))?;
    // dockerd's cgroups are named after the id: unique across processes.
    // --debug: dockerd logs the time of its SetKey step per container.
    let dockerd = Dockerd::start(
        &root.join("lab"),
        &format!("bench-plugin-{}", std::process::id()),
        &["--debug"],
    )?;
    let lnet = Lnet::start(root, &dockerd.dir().join("plugins").join("lnet.sock"))?;
    let env = Env { dockerd, lnet };
    env.dockerd.docker(&[
        "network",
        "create",
        "-d",
        "lnet",
        "--ipam-driver",
        "lnet",
        "--subnet",
        "10.77.0.0/24",
        LNET_NET,
    ])?;
    env.dockerd.docker(&[
        "network",
        "create",
        "-d",
        "bridge",
        "--subnet",
        "10.90.0.0/24",
        BRIDGE_NET,
    ])?;

    let (plain, published) = measure(&env, n)?;
    report(&plain, &published, n);
    Ok(())
}

fn report(plain: &Scenario, published: &Scenario, n: usize) {
    let p50 = |v: &[f64]| pct(v, 0.5);
    let p90 = |v: &[f64]| pct(v, 0.9);
    let wall = |s: &Scenario, arm: &str| s.wall.get(arm).cloned().unwrap_or_default();
    println!(
        "plugin: `docker run --rm --network X [-p 8080:80] bb:1 true` on dockerd 20.10, wall \
         time of the docker CLI (spawn to exit, --rm's removal included), ms; N={n} per cell, \
         all five arms interleaved"
    );
    println!(
        "{:<44} {:>9} {:>9}   {:>9} {:>9}",
        "", "no -p", "", "-p 8080:80", ""
    );
    println!(
        "{:<44} {:>9} {:>9}   {:>9} {:>9}",
        "X", "p50", "p90", "p50", "p90"
    );
    let rows: [(&str, &str); 3] = [
        ("lnet network (-d lnet --ipam-driver lnet)", LNET_NET),
        ("dockerd's bridge (-d bridge)", BRIDGE_NET),
        ("none (no network: dockerd+containerd+CLI)", "none"),
    ];
    let cell = |v: &[f64]| {
        if v.is_empty() {
            format!("{:>9} {:>9}", "-", "-")
        } else {
            format!("{:>9.1} {:>9.1}", p50(v), p90(v))
        }
    };
    for (label, arm) in rows {
        println!(
            "{label:<44} {}   {}",
            cell(&wall(plain, arm)),
            cell(&wall(published, arm))
        );
    }
    let ratio = |s: &Scenario| {
        let (l, b) = (wall(s, LNET_NET), wall(s, BRIDGE_NET));
        format!("{:>8.2}x {:>8.2}x", p50(&l) / p50(&b), p90(&l) / p90(&b))
    };
    println!(
        "{:<44} {}   {}",
        "ratio lnet / bridge",
        ratio(plain),
        ratio(published)
    );
    println!(
        "inside it, dockerd's SetKey (runc's prestart hook calling back into dockerd: the \
         interface moved into the container's namespace and configured, its DNS set up), ms \
         (dockerd --debug)"
    );
    let setkey = |s: &Scenario, arm: &str| s.setkey.get(arm).cloned().unwrap_or_default();
    for (label, arm) in rows {
        println!(
            "{label:<44} {}   {}",
            cell(&setkey(plain, arm)),
            cell(&setkey(published, arm))
        );
    }

    println!();
    println!(
        "lnet's part per container: the `ms=` of lnet's `plugin call` log lines (lnet's handler, \
         parsed request to answer; not HTTP, not dockerd), summed per container, ms"
    );
    println!(
        "{:<58} {:>7} {:>7}   {:>7} {:>7}",
        "", "no -p", "", "-p", ""
    );
    println!(
        "{:<58} {:>7} {:>7}   {:>7} {:>7}",
        "", "p50", "p90", "p50", "p90"
    );
    let all: Vec<&str> = plain
        .lnet
        .iter()
        .chain(&published.lnet)
        .flat_map(|c| c.keys().map(String::as_str))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let others: Vec<&str> = all
        .iter()
        .copied()
        .filter(|c| {
            !UP.contains(c) && !DOWN.contains(c) && ![REQUEST_ADDRESS, RELEASE_ADDRESS].contains(c)
        })
        .collect();
    let group = |label: &str, names: &[&str]| {
        let (a, b) = (sum_of(&plain.lnet, names), sum_of(&published.lnet, names));
        println!(
            "{label:<58} {:>7.3} {:>7.3}   {:>7.3} {:>7.3}",
            p50(&a),
            p90(&a),
            p50(&b),
            p90(&b)
        );
    };
    group(
        "up: CreateEndpoint + Join + ProgramExternalConnectivity",
        &UP,
    );
    group(
        "down: RevokeExternalConnectivity + Leave + DeleteEndpoint",
        &DOWN,
    );
    group("IPAM RequestAddress", &[REQUEST_ADDRESS]);
    group("IPAM ReleaseAddress", &[RELEASE_ADDRESS]);
    if !others.is_empty() {
        let names: Vec<&str> = others
            .iter()
            .map(|o| o.rsplit('.').next().unwrap_or(o))
            .collect();
        group(&format!("other: {}", names.join(" + ")), &others);
    }
    group("all of lnet's calls", &all);
    println!("each call (calls per container, no -p / -p):");
    for name in &all {
        let count = |s: &Scenario| {
            let n = s
                .lnet
                .iter()
                .map(|c| c.get(*name).map_or(0, |e| e.0))
                .sum::<usize>() as f64
                / s.lnet.len().max(1) as f64;
            // 1, or 1.5 when the containers differ.
            format!("{n:.2}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        };
        group(
            &format!("  {name} ({} / {})", count(plain), count(published)),
            &[name],
        );
    }

    println!();
    let verdict = |v: f64| if v <= 3.0 { "met" } else { "NOT met" };
    for (label, s) in [("no -p", plain), ("-p 8080:80", published)] {
        let (up, down) = (p50(&sum_of(&s.lnet, &UP)), p50(&sum_of(&s.lnet, &DOWN)));
        let total = p50(&sum_of(&s.lnet, &all));
        let (l, b) = (p50(&wall(s, LNET_NET)), p50(&wall(s, BRIDGE_NET)));
        println!(
            "{label}: goal lnet's part <= 3 ms p50: up {up:.3} ms {}, down {down:.3} ms {} \
             (all calls {total:.3} ms); docker run p50, lnet minus bridge: {:+.1} ms",
            verdict(up),
            verdict(down),
            l - b
        );
    }
    let none = wall(plain, "none");
    if !none.is_empty() {
        let (l, b, z) = (
            p50(&wall(plain, LNET_NET)),
            p50(&wall(plain, BRIDGE_NET)),
            p50(&none),
        );
        let sk = |arm: &str| p50(&plain.setkey.get(arm).cloned().unwrap_or_default());
        println!(
            "where a docker run goes (differences of p50s, no -p): {z:.1} ms without a network \
             (dockerd, containerd, runc, the CLI: {:.0}% of lnet's run); a network adds {:+.1} ms \
             with lnet (dockerd's SetKey {:+.1} ms of it; lnet's handlers {:.1} ms in all), \
             {:+.1} ms with dockerd's bridge (SetKey {:+.1} ms)",
            100.0 * z / l,
            l - z,
            sk(LNET_NET) - sk("none"),
            p50(&sum_of(&plain.lnet, &all)),
            b - z,
            sk(BRIDGE_NET) - sk("none"),
        );
    }
}
