//! The embedded DNS under `dnsperf`, run inside a sandbox against 127.0.0.11: local names
//! (1,000 on the network) and forwarded names (to an upstream on the host's loopback),
//! next to the same upstream asked directly — the baseline of a bare UDP responder, in the
//! same run. During the local-name run another sandbox connects and disconnects 100 times;
//! dnsperf counts lost queries. Then podman's resolver, aardvark-dns, with the same names,
//! asked from the same sandbox at the network's gateway as podman deploys it (a recorded
//! skip when it is not installed). For each: the server's CPU per answered query, which
//! the client's own CPU cannot cap (on a small machine dnsperf's threads take more CPU
//! than the server). Also: the memory a 10,000-name table takes.
//!
//! Run as root with `cargo bench -p lnet-core --bench dns` (needs `dnsperf` and `nsenter`;
//! a recorded skip otherwise). `LNET_BENCH_QUICK=1` runs each for 1 s instead of 10.
//! Safety: private mount namespace, new network namespace, state in a temporary directory;
//! aardvark-dns is ended by its pid.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lnet_core::{Config, Controller, EndpointOptions, JoinOptions, NetworkOptions};
use simple_dns::rdata::{A, RData};
use simple_dns::{CLASS, Packet, ResourceRecord};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A UDP responder on 127.0.0.1:53 answering every question with 192.0.2.1.
fn upstream() -> Res<()> {
    let s = UdpSocket::bind("127.0.0.1:53")?;
    // The same receive buffer as lnet's resolvers, so that neither drops a burst.
    lnet_kernel::sysctl::force_recv_buffer(&s, 1 << 20)?;
    std::thread::Builder::new()
        .name("upstream".into())
        .spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let Ok(q) = Packet::parse(&buf[..n]) else {
                    continue;
                };
                let Some(question) = q.questions.first() else {
                    continue;
                };
                let mut r = q.clone().into_reply();
                r.answers.push(ResourceRecord::new(
                    question.qname.clone(),
                    CLASS::IN,
                    60,
                    RData::A(A {
                        address: u32::from(Ipv4Addr::new(192, 0, 2, 1)),
                    }),
                ));
                if let Ok(b) = r.build_bytes_vec() {
                    let _ = s.send_to(&b, from);
                }
            }
        })?;
    Ok(())
}

/// What one dnsperf run measured, and the CPU the server spent meanwhile.
#[derive(Debug, Clone, Copy)]
struct Perf {
    qps: f64,
    latency_ms: f64,
    lost: u64,
    /// Server CPU (user + system, which includes the kernel's delivery of its replies)
    /// per answered query, in microseconds.
    cpu_us: f64,
}

/// CPU clock ticks (user + system) of the threads `pick` selects from `/proc/<pid>/task`.
fn cpu_ticks(pid: u32, pick: &dyn Fn(&str) -> bool) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| {
            // `pid (comm) state ...`: the comm may hold spaces, the fields follow its ')'.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1;
            if !pick(comm) {
                return None;
            }
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

/// Runs dnsperf (inside `netns` when given) for `secs` against `server` (`addr` or
/// `addr:port`), charging the CPU of `server_pid`'s threads that `pick` selects.
fn dnsperf(
    netns: Option<&Path>,
    server: &str,
    data: &Path,
    secs: u32,
    server_pid: u32,
    pick: &dyn Fn(&str) -> bool,
) -> Res<Perf> {
    let (server, port) = server.split_once(':').unwrap_or((server, "53"));
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("dnsperf");
            c
        }
        None => Command::new("dnsperf"),
    };
    let ticks = cpu_ticks(server_pid, pick);
    let out = cmd
        .args(["-s", server, "-p", port, "-d"])
        .arg(data)
        .args(["-l", &secs.to_string(), "-c", "20", "-q", "200", "-t", "2"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |key: &str| -> Option<String> {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
    };
    let qps: f64 = field("Queries per second")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            format!(
                "dnsperf said:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let lat: f64 = field("Average Latency (s)")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let ticks = cpu_ticks(server_pid, pick).saturating_sub(ticks);
    let count = |key: &str| -> u64 { field(key).and_then(|v| v.parse().ok()).unwrap_or(0) };
    let completed = count("Queries completed");
    let hz: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    Ok(Perf {
        qps,
        latency_ms: lat * 1e3,
        lost: count("Queries lost"),
        cpu_us: ticks as f64 / hz * 1e6 / completed.max(1) as f64,
    })
}

/// aardvark-dns (podman's resolver), run as podman runs it: listening on the network's
/// gateway, here on port 5533, with the same names; killed by its pid on drop.
struct Aardvark {
    pid: u32,
    version: String,
}

impl Aardvark {
    /// The binary: `$LNET_AARDVARK`, `aardvark-dns` on the PATH, or podman's libexec.
    fn find() -> Option<String> {
        if let Ok(p) = std::env::var("LNET_AARDVARK") {
            return Some(p);
        }
        let out = Command::new("sh")
            .args(["-c", "command -v aardvark-dns"])
            .output()
            .ok()?;
        if out.status.success() {
            return Some(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        let libexec = "/usr/libexec/podman/aardvark-dns";
        Path::new(libexec).exists().then(|| libexec.to_string())
    }

    /// Starts it with config file `network` listing `gateway`, the upstream 127.0.0.1 and
    /// `containers` (address, names).
    fn start(
        bin: &str,
        dir: &Path,
        network: &str,
        gateway: Ipv4Addr,
        containers: &[(Ipv4Addr, Vec<String>)],
    ) -> Res<Aardvark> {
        std::fs::create_dir_all(dir)?;
        let mut conf = format!("{gateway} 127.0.0.1\n");
        for (i, (ip, names)) in containers.iter().enumerate() {
            conf.push_str(&format!("{i:064x} {ip}  {}\n", names.join(",")));
        }
        std::fs::write(dir.join(network), conf)?;
        let version = Command::new(bin).arg("version").output()?;
        let version = String::from_utf8_lossy(&version.stdout)
            .split('"')
            .skip_while(|w| *w != "version")
            .nth(2)
            .unwrap_or("?")
            .to_string();
        // It forks; the parent returns once the child serves, and the child writes its pid.
        let out = Command::new(bin)
            .arg("--config")
            .arg(dir)
            .args(["-p", "5533", "run"])
            .output()?;
        if !out.status.success() {
            return Err(
                format!("aardvark-dns run: {}", String::from_utf8_lossy(&out.stderr)).into(),
            );
        }
        let pid = std::fs::read_to_string(dir.join("aardvark.pid"))?
            .trim()
            .parse()?;
        Ok(Aardvark { pid, version })
    }
}

impl Drop for Aardvark {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

fn main() {
    use lnet_kernel::testing::{provider, require_installed, require_root, require_tool};
    // Root first: not root, that is the one reason to give.
    if !require_root("bench dns", "network namespaces, mounts") {
        return;
    }
    for tool in ["dnsperf", "nsenter"] {
        if !require_tool("bench dns", tool) {
            return;
        }
    }
    // Checked before the bench starts, so that LNET_REQUIRE_TOOLS=1 fails it before it has
    // made anything. Without it only the comparison is skipped.
    require_installed(
        "bench dns: the comparison with aardvark-dns",
        "aardvark-dns (on the PATH, in podman's libexec, or named by LNET_AARDVARK)",
        provider("aardvark-dns"),
        Aardvark::find().is_some(),
    );
    lnet_kernel::testing::run_isolated_bench("dns", run);
}

fn run(root: &Path) -> Res<()> {
    let quick = std::env::var("LNET_BENCH_QUICK").is_ok_and(|v| v == "1");
    let secs = if quick { 1 } else { 10 };
    upstream()?;
    std::fs::write(root.join("resolv.conf"), "nameserver 127.0.0.1\n")?;
    let mut config = Config::rooted_at(root);
    config.host_resolv_conf = root.join("resolv.conf");
    config.enable_ip_forward = false;
    config.embedded_dns = true;
    let ctrl = Controller::new(config)?;
    let mut o = NetworkOptions::default();
    o.ipam.v4.push(lnet_core::IpamPoolConfig {
        subnet: Some("10.60.0.0/16".parse()?),
        ..Default::default()
    });
    let net = ctrl.new_network("bridge", "bench", o)?;
    // 1,000 names: 10 sandboxes with 100 aliases each.
    let mut containers = Vec::new();
    for s in 0..10 {
        let sb = ctrl.new_sandbox(&format!("s{s}"), Default::default())?;
        let ep = net.create_endpoint(
            &format!("e{s}"),
            EndpointOptions {
                aliases: (0..98).map(|i| format!("name{}", s * 100 + i)).collect(),
                ..Default::default()
            },
        )?;
        ep.join(&sb, JoinOptions::default())?;
        let rec = ep.info()?;
        let ip = match rec.addr_v4.map(|a| a.addr()) {
            Some(IpAddr::V4(ip)) => ip,
            _ => return Err("an endpoint without an IPv4 address".into()),
        };
        let mut names = vec![format!("s{s}"), rec.name.clone()];
        names.extend(rec.aliases.iter().cloned());
        containers.push((ip, names));
    }
    let asker = ctrl.sandbox("s0")?.key()?;
    let local = root.join("local.txt");
    // Every one of the 1,000 names, in an order that jumps between sandboxes.
    let mut all: Vec<&String> = containers.iter().flat_map(|(_, n)| n).collect();
    all.sort_by_key(|n| n.bytes().rev().collect::<Vec<u8>>());
    std::fs::write(
        &local,
        all.iter().map(|n| format!("{n} A\n")).collect::<String>(),
    )?;
    let remote = root.join("remote.txt");
    std::fs::write(
        &remote,
        (0..1000)
            .map(|i| format!("host{i}.example A\n"))
            .collect::<String>(),
    )?;

    let me = std::process::id();
    let lnet_dns = |comm: &str| comm == "lnet-dns";
    let upstream_thread = |comm: &str| comm == "upstream";
    // Baseline: the upstream asked directly from the host.
    let base = dnsperf(None, "127.0.0.1", &remote, secs, me, &upstream_thread)?;
    // Local names, while another sandbox connects and disconnects 100 times.
    let churn = {
        let ctrl = ctrl.clone();
        let net = net.clone();
        std::thread::spawn(move || -> Res<u32> {
            let sb = ctrl.new_sandbox("churn", Default::default())?;
            let mut n = 0;
            for i in 0..100 {
                let ep = net.create_endpoint(&format!("c{i}"), EndpointOptions::default())?;
                ep.join(&sb, JoinOptions::default())?;
                ep.leave(&sb)?;
                ep.delete()?;
                n += 1;
                std::thread::sleep(Duration::from_millis(u64::from(secs) * 5));
            }
            sb.delete()?;
            Ok(n)
        })
    };
    let loc = dnsperf(Some(&asker), "127.0.0.11", &local, secs, me, &lnet_dns)?;
    let churned = churn.join().map_err(|_| "the churn thread panicked")??;
    let fwd = dnsperf(Some(&asker), "127.0.0.11", &remote, secs, me, &lnet_dns)?;

    // aardvark-dns in the same run, asked from the same sandbox at the gateway.
    // Without it (a skip recorded in `main`) the rest of the bench still runs.
    let aardvark = match Aardvark::find() {
        None => None,
        Some(bin) => {
            let a = Aardvark::start(
                &bin,
                &root.join("aardvark"),
                "bench",
                Ipv4Addr::new(10, 60, 0, 1),
                &containers,
            )?;
            let all = |_: &str| true;
            let loc = dnsperf(Some(&asker), "10.60.0.1:5533", &local, secs, a.pid, &all)?;
            let fwd = dnsperf(Some(&asker), "10.60.0.1:5533", &remote, secs, a.pid, &all)?;
            Some((a.version.clone(), loc, fwd))
        }
    };

    // Memory of a 10,000-name table.
    let before = rss_kib();
    let mut names = lnet_dns::Names::new();
    names.add_network("n", "bench", false);
    for i in 0..10_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        names.add(
            "n",
            &[&format!("container-{i}"), &format!("alias-{i}")],
            &[ip],
        );
    }
    let table_kib = rss_kib().saturating_sub(before);
    std::hint::black_box(&names);

    println!("dns: dnsperf inside a sandbox ({secs} s each, 20 clients, 200 queries in flight)");
    println!(
        "{:<48} {:>10} {:>12} {:>6} {:>16}",
        "", "queries/s", "avg latency", "lost", "server CPU/query"
    );
    let mut rows = vec![
        (
            "lnet: local names (1,000), 100 connects meanwhile".to_string(),
            loc,
        ),
        (
            "lnet: forwarded names (upstream on loopback)".to_string(),
            fwd,
        ),
    ];
    if let Some((version, aloc, afwd)) = &aardvark {
        rows.push((format!("aardvark-dns {version}: local names"), *aloc));
        rows.push((format!("aardvark-dns {version}: forwarded names"), *afwd));
    }
    rows.push((
        "baseline: the bare upstream asked directly".to_string(),
        base,
    ));
    for (what, p) in &rows {
        println!(
            "{what:<48} {:>10.0} {:>9.3} ms {:>6} {:>13.1} us",
            p.qps, p.latency_ms, p.lost, p.cpu_us
        );
    }
    if let Some((version, aloc, afwd)) = &aardvark {
        println!(
            "lnet against aardvark-dns {version}: local names {:.2}x the rate at {:.2}x the CPU per query; forwarded {:.2}x the rate at {:.2}x the CPU",
            loc.qps / aloc.qps,
            loc.cpu_us / aloc.cpu_us,
            fwd.qps / afwd.qps,
            fwd.cpu_us / afwd.cpu_us,
        );
    }
    println!(
        "local names at {:.2}x the bare upstream's rate; {churned} connects+disconnects during the local run ({} queries lost); a 10,000-name table takes about {table_kib} KiB",
        loc.qps / base.qps,
        loc.lost,
    );
    Ok(())
}
