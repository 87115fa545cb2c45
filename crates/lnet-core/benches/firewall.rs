//! The firewall's part of connecting and disconnecting a container that publishes 10
//! ports, with 0, 1,000 and 10,000 ports already published on the host, next to baselines
//! measured in the same run.
//!
//! Run as root with `cargo bench -p lnet-core --bench firewall`; `LNET_BENCH_QUICK=1` uses
//! 0 and 1,000 ports and fewer iterations. Not root: a recorded skip
//! (`lnet_kernel::testing::require_root`), exit 0.
//!
//! The ports already published are real: containers (sandboxes) joined to 10 bridge
//! networks, each endpoint publishing 10 TCP ports, so the DNAT map holds one element per
//! port exactly as in use. Then, per size:
//!
//! - **firewall transaction, publish / unpublish**: what a join and a leave add to the
//!   kernel for the ports — one nf_tables transaction adding (removing) the endpoint's 10
//!   DNAT map elements — timed through lnet's `Firewall` on the same table.
//! - **connect with 10 ports / without**: `create_endpoint` + `join`, the whole operation,
//!   for an endpoint publishing 10 ports and for one publishing none; the difference is the
//!   ports' whole cost (allocation, record, hairpin mode, the transaction).
//! - **disconnect with 10 ports / without**: `leave` + `delete`.
//! - **`nft` process, for scale**: the same 10 elements added by running `nft add element`
//!   (what a firewall driver that execs `nft` or `iptables` pays per change), and removed.
//! - **holding a host port**: the socket lnet binds for each published port so that host
//!   programs cannot take it (part of "connect +10 ports" above), timed alone — 10 ports
//!   bound, then closed — and the `/proc` look-up that names a port's holder when a publish
//!   is refused (an error path).
//!
//! After each fill the bench waits 15 s (`LNET_BENCH_SETTLE_SECS`; none in quick mode) for
//! the new interfaces' IPv6 and multicast chatter to stop. Percentiles are nearest-rank. Safety: private mount namespace, new network namespace,
//! state in a temporary directory with the exec root on a private tmpfs, every namespace
//! mount removed by a guard, also on panic.

use std::error::Error;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lnet_core::firewall::{Firewall, PortFw, Want};
use lnet_core::{
    Config, Controller, EndpointOptions, JoinOptions, Network, NetworkOptions, PortSpec, Proto,
    Sandbox,
};
use lnet_kernel::Netns;

type Res<T> = std::result::Result<T, Box<dyn Error>>;

/// Removes every namespace mount in `dir` when dropped, panics included.
struct NetnsGuard(PathBuf);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        for entry in fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if let Err(e) = Netns::delete_at(entry.path()) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

fn pct(samples: &[Duration], p: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let n = s.len();
    s[((p * n as f64).ceil() as usize).clamp(1, n) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if !lnet_kernel::testing::require_root("bench firewall", "network namespaces, mounts") {
        return;
    }
    if let Err(e) = lnet_kernel::testing::enter_private_mounts()
        .and_then(|()| lnet_kernel::testing::enter_new_netns())
    {
        eprintln!("firewall bench: enter private mount and network namespaces: {e}");
        std::process::exit(1);
    }
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("firewall bench: tempdir: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = lnet_kernel::testing::mount_tmpfs(&dir.path().join("run")) {
        eprintln!("firewall bench: {e}");
        std::process::exit(1);
    }
    let guard = NetnsGuard(dir.path().join("run/netns"));
    let result = run(dir.path());
    drop(guard);
    if let Err(e) = lnet_kernel::testing::unmount(&dir.path().join("run")) {
        eprintln!("firewall bench: {e}");
    }
    if let Err(e) = result {
        eprintln!("firewall bench failed: {e}");
        std::process::exit(1);
    }
}

fn ports(first: u16) -> Vec<PortSpec> {
    (0..10)
        .map(|i| {
            PortSpec::new(
                Proto::Tcp,
                (80 + i, 80 + i),
                None,
                Some((first + i, first + i)),
            )
        })
        .collect::<Result<_, _>>()
        .expect("valid ports")
}

/// The DNAT elements of 10 ports to `ctr`, as a join adds them.
fn elements(first: u16, ctr: Ipv4Addr) -> Want {
    let p: Vec<PortFw> = (0..10)
        .map(|i| PortFw {
            proto: Proto::Tcp,
            host_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            host_port: first + i,
            ctr_ip: IpAddr::V4(ctr),
            ctr_port: 80 + i,
        })
        .collect();
    let mut w = Want::new();
    w.ports(&p);
    w
}

fn nft_elements(first: u16, ctr: Ipv4Addr) -> String {
    (0..10)
        .map(|i| format!("tcp . {} : {ctr} . {}", first + i, 80 + i))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Row {
    published: usize,
    tx_add: Vec<Duration>,
    tx_del: Vec<Duration>,
    conn_ports: Vec<Duration>,
    conn_plain: Vec<Duration>,
    disc_ports: Vec<Duration>,
    disc_plain: Vec<Duration>,
    nft_add: Vec<Duration>,
    nft_del: Vec<Duration>,
}

fn connect(net: &Network, sb: &Sandbox, name: &str, p: Vec<PortSpec>) -> Res<(Duration, Duration)> {
    let t = Instant::now();
    let ep = net.create_endpoint(
        name,
        EndpointOptions {
            ports: p,
            ..Default::default()
        },
    )?;
    ep.join(sb, JoinOptions::default())?;
    let c = t.elapsed();
    let t = Instant::now();
    ep.leave(sb)?;
    ep.delete()?;
    Ok((c, t.elapsed()))
}

fn run(root: &Path) -> Res<()> {
    let quick = std::env::var("LNET_BENCH_QUICK").is_ok_and(|v| v == "1");
    let sizes: &[usize] = if quick {
        &[0, 1000]
    } else {
        &[0, 1000, 10_000]
    };
    let (tx_iters, op_iters) = if quick { (40, 10) } else { (300, 60) };
    // A socket holds each published host port: 10,000 ports are 10,000 descriptors.
    lnet_kernel::testing::raise_open_files(if quick { 4096 } else { 16_384 })?;
    let settle = Duration::from_secs(
        std::env::var("LNET_BENCH_SETTLE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { 0 } else { 15 }),
    );

    let mut config = Config::rooted_at(root);
    config.enable_ip_forward = false;
    let resolv = root.join("host-resolv.conf");
    fs::write(&resolv, "nameserver 192.0.2.53\n")?;
    config.host_resolv_conf = resolv;
    let ctrl = Controller::new(config)?;
    let nets: Vec<Network> = (0..10)
        .map(|i| {
            let mut o = NetworkOptions::default();
            o.ipam.v4.push(lnet_core::IpamPoolConfig {
                subnet: Some(format!("10.{}.0.0/16", 100 + i).parse().expect("subnet")),
                ..Default::default()
            });
            ctrl.new_network("bridge", &format!("fill{i}"), o)
        })
        .collect::<Result<_, _>>()?;
    let bench = ctrl.new_network("bridge", "bench", {
        let mut o = NetworkOptions::default();
        o.ipam.v4.push(lnet_core::IpamPoolConfig {
            subnet: Some("10.99.0.0/16".parse().expect("subnet")),
            ..Default::default()
        });
        o
    })?;
    let sb = ctrl.new_sandbox("measured", Default::default())?;
    let mut fw = Firewall::new()?;
    let ctr = Ipv4Addr::new(10, 99, 0, 200);

    let mut rows = Vec::new();
    let mut filled = 0usize; // ports published by fill sandboxes
    let mut next_port: u16 = 1024;
    for &size in sizes {
        // Each fill sandbox joins all 10 fill networks, 10 ports per endpoint: 100 ports.
        while filled < size {
            let s = ctrl.new_sandbox(&format!("fill{filled}"), Default::default())?;
            for n in &nets {
                let ep = n.create_endpoint(
                    &format!("f{filled}"),
                    EndpointOptions {
                        ports: ports(next_port),
                        ..Default::default()
                    },
                )?;
                next_port += 10;
                ep.join(&s, JoinOptions::default())?;
            }
            filled += 100;
        }
        // A thousand new interfaces keep the kernel busy for a while (IPv6 DAD, router
        // solicitations, MLD reports flooded to every port); measure a settled host, as the
        // join bench does. `LNET_BENCH_SETTLE_SECS` overrides (0 in quick mode).
        if size > 0 {
            std::thread::sleep(settle);
        }
        let mut row = Row {
            published: filled,
            tx_add: Vec::new(),
            tx_del: Vec::new(),
            conn_ports: Vec::new(),
            conn_plain: Vec::new(),
            disc_ports: Vec::new(),
            disc_plain: Vec::new(),
            nft_add: Vec::new(),
            nft_del: Vec::new(),
        };
        let first = 60000;
        let want = elements(first, ctr);
        let none = Want::new();
        for _ in 0..tx_iters {
            let t = Instant::now();
            fw.apply(&want, &none)?;
            row.tx_add.push(t.elapsed());
            let t = Instant::now();
            fw.apply(&none, &want)?;
            row.tx_del.push(t.elapsed());
        }
        let els = nft_elements(first, ctr);
        for _ in 0..op_iters.min(30) {
            for (verb, out) in [("add", &mut row.nft_add), ("delete", &mut row.nft_del)] {
                let arg = if verb == "add" {
                    els.clone()
                } else {
                    els.split(", ")
                        .map(|e| e.split(" : ").next().unwrap_or(e))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let t = Instant::now();
                let st = Command::new("nft")
                    .args([
                        verb,
                        "element",
                        "inet",
                        "lnet",
                        "ports4_any",
                        &format!("{{ {arg} }}"),
                    ])
                    .status()?;
                out.push(t.elapsed());
                if !st.success() {
                    return Err(format!("nft {verb} element failed").into());
                }
            }
        }
        for i in 0..op_iters {
            // Alternate which goes first, so slow kernel cleanup after a veth deletion hits
            // both equally.
            let order = if i % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for with_ports in order {
                let (c, d) = if with_ports {
                    connect(&bench, &sb, &format!("m{i}p"), ports(first))?
                } else {
                    connect(&bench, &sb, &format!("m{i}"), Vec::new())?
                };
                if with_ports {
                    row.conn_ports.push(c);
                    row.disc_ports.push(d);
                } else {
                    row.conn_plain.push(c);
                    row.disc_plain.push(d);
                }
            }
        }
        let drift = ctrl.firewall_check()?;
        if !drift.is_empty() {
            return Err(format!("firewall drifted during the bench: {drift:?}").into());
        }
        rows.push(row);
    }

    println!("firewall: connect/disconnect of a container publishing 10 TCP ports (p50 / p99, ms)");
    println!(
        "{:>9} | {:>17} {:>17} | {:>17} {:>17} | {:>17} {:>17} | {:>15} {:>15}",
        "published",
        "fw tx publish",
        "fw tx unpublish",
        "connect +10 ports",
        "connect no ports",
        "disc. +10 ports",
        "disc. no ports",
        "nft exec add",
        "nft exec del"
    );
    let cell = |v: &[Duration]| format!("{:.3} / {:.3}", ms(pct(v, 0.5)), ms(pct(v, 0.99)));
    for r in &rows {
        println!(
            "{:>9} | {:>17} {:>17} | {:>17} {:>17} | {:>17} {:>17} | {:>15} {:>15}",
            r.published,
            cell(&r.tx_add),
            cell(&r.tx_del),
            cell(&r.conn_ports),
            cell(&r.conn_plain),
            cell(&r.disc_ports),
            cell(&r.disc_plain),
            cell(&r.nft_add),
            cell(&r.nft_del),
        );
    }
    let base = &rows[0];
    for r in &rows[1..] {
        let ratio = |a: &[Duration], b: &[Duration]| ms(pct(a, 0.5)) / ms(pct(b, 0.5));
        println!(
            "{} ports vs 0: fw publish {:.2}x, fw unpublish {:.2}x, connect +10 ports {:.2}x, disconnect +10 ports {:.2}x (p50)",
            r.published,
            ratio(&r.tx_add, &base.tx_add),
            ratio(&r.tx_del, &base.tx_del),
            ratio(&r.conn_ports, &base.conn_ports),
            ratio(&r.disc_ports, &base.disc_ports),
        );
    }
    hold_host_ports(op_iters * 10)?;
    for r in &rows {
        println!(
            "{} published: ports add {:.3} ms to a connect and {:.3} ms to a disconnect (p50 difference); the nft process takes {:.1}x lnet's transaction",
            r.published,
            ms(pct(&r.conn_ports, 0.5)) - ms(pct(&r.conn_plain, 0.5)),
            ms(pct(&r.disc_ports, 0.5)) - ms(pct(&r.disc_plain, 0.5)),
            ms(pct(&r.nft_add, 0.5)) / ms(pct(&r.tx_add, 0.5)),
        );
    }
    Ok(())
}

/// Times holding 10 host ports with bound sockets (bind, then close), and naming the
/// holder of a port a host program holds.
fn hold_host_ports(iters: usize) -> Res<()> {
    use lnet_kernel::hostport::{Transport, holders, reserve};
    use std::net::SocketAddr;
    let addr = |p: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p);
    let mut bind = Vec::with_capacity(iters);
    let mut close = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let held = (0..10)
            .map(|i| reserve(addr(61_000 + i), Transport::Tcp))
            .collect::<Result<Vec<_>, _>>()?;
        bind.push(t.elapsed());
        let t = Instant::now();
        drop(held);
        close.push(t.elapsed());
    }
    let squatter = std::net::TcpListener::bind(addr(61_100))?;
    let lookups: Vec<Duration> = (0..iters.min(50))
        .map(|_| {
            let t = Instant::now();
            let found = holders(addr(61_100), Transport::Tcp);
            assert!(!found.is_empty(), "the holder is found");
            t.elapsed()
        })
        .collect();
    drop(squatter);
    println!(
        "holding 10 host ports: bind {:.3} ms, close {:.3} ms (p50; {:.1} us a port); naming a holder {:.3} ms (p50)",
        ms(pct(&bind, 0.5)),
        ms(pct(&close, 0.5)),
        ms(pct(&bind, 0.5) + pct(&close, 0.5)) * 100.0,
        ms(pct(&lookups, 0.5)),
    );
    Ok(())
}
