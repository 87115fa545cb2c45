//! The embedded DNS under `dnsperf`, run inside a sandbox against 127.0.0.11: local names
//! (1,000 on the network) and forwarded names (to an upstream on the host's loopback),
//! next to the same upstream asked directly — the baseline of a bare UDP responder, in the
//! same run. During the local-name run another sandbox connects and disconnects 100 times;
//! dnsperf counts lost queries. Also: the memory a 10,000-name table takes.
//!
//! Run as root with `cargo bench -p lnet-core --bench dns` (needs `dnsperf` and `nsenter`;
//! prints why it skips otherwise). `LNET_BENCH_QUICK=1` runs each for 1 s instead of 10.
//! Safety: private mount namespace, new network namespace, state in a temporary directory.

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
    std::thread::spawn(move || {
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
    });
    Ok(())
}

/// Runs dnsperf (inside `netns` when given) for `secs` against `server`; (q/s, average
/// latency in ms, lost).
fn dnsperf(netns: Option<&Path>, server: &str, data: &Path, secs: u32) -> Res<(f64, f64, u64)> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("dnsperf");
            c
        }
        None => Command::new("dnsperf"),
    };
    let out = cmd
        .args(["-s", server, "-d"])
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
    let lost: u64 = field("Queries lost")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((qps, lat * 1e3, lost))
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
    for tool in ["dnsperf", "nsenter"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            println!(
                "skipped: the dns benchmark needs {tool} (apt-get install dnsperf util-linux)"
            );
            return;
        }
    }
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
    }
    let asker = ctrl.sandbox("s0")?.key()?;
    let local = root.join("local.txt");
    std::fs::write(
        &local,
        (0..1000)
            .map(|i| format!("name{} A\n", (i * 7) % 980))
            .collect::<String>(),
    )?;
    let remote = root.join("remote.txt");
    std::fs::write(
        &remote,
        (0..1000)
            .map(|i| format!("host{i}.example A\n"))
            .collect::<String>(),
    )?;

    // Baseline: the upstream asked directly from the host.
    let base = dnsperf(None, "127.0.0.1", &remote, secs)?;
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
    let loc = dnsperf(Some(&asker), "127.0.0.11", &local, secs)?;
    let churned = churn.join().map_err(|_| "the churn thread panicked")??;
    let fwd = dnsperf(Some(&asker), "127.0.0.11", &remote, secs)?;

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

    println!("dns: dnsperf inside a sandbox against 127.0.0.11 ({secs} s each, 20 clients)");
    println!(
        "{:<44} {:>12} {:>14} {:>6}",
        "", "queries/s", "avg latency", "lost"
    );
    for (what, (q, l, lost)) in [
        ("local names (1,000), 100 connects meanwhile", loc),
        ("forwarded names (upstream on host loopback)", fwd),
        ("baseline: the upstream asked directly", base),
    ] {
        println!("{what:<44} {q:>12.0} {l:>11.3} ms {lost:>6}");
    }
    println!(
        "local names at {:.2}x the bare upstream's rate; forwarded at {:.2}x; {churned} connects+disconnects during the local run; a 10,000-name table takes about {table_kib} KiB",
        loc.0 / base.0,
        fwd.0 / base.0
    );
    Ok(())
}
