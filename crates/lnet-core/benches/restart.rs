//! Restart without disruption, at scale: with 1,000 bridge networks, 10,000 endpoints joined
//! (1,000 sandboxes on 10 networks each) and 10,000 published ports (on 0.0.0.0, each held
//! by a socket) already right in the kernel, how long a start takes until the controller serves (recovery: records read, IPAM
//! and ports replayed, every object checked and left as it is), how many packets a running
//! flow between two sandboxes loses while lnet stops and starts, and how long `doctor`
//! takes on that state. The flow's loss over the same time without a restart is the
//! baseline. Embedded DNS is on, as in the daemon (each sandbox's resolver is made again).
//!
//! Run as root with `cargo bench -p lnet-core --bench restart`; `LNET_BENCH_QUICK=1` uses
//! 50 networks and 100 sandboxes (500 endpoints); `LNET_BENCH_ROUNDS=N` restarts N times
//! (3). Not root: a recorded skip.
//! Safety: private mount and network namespaces, state in a temporary directory (the exec
//! root on a tmpfs, as `/run` is), every namespace mount removed at the end.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lnet_core::{Config, Controller, EndpointOptions, JoinOptions, NetworkOptions, PortSpec};
use lnet_kernel::Netns;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A UDP flow from one sandbox to another: `rate` datagrams a second, each numbered.
struct Flow {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flow {
    fn start(from: &Path, to: &Path, to_ip: IpAddr, rate: u32) -> Res<Flow> {
        let rx = Netns::open(to)?.run(|| UdpSocket::bind((to_ip, 9999)))??;
        // Room for a burst while the receiving thread waits for a CPU.
        lnet_kernel::sysctl::force_recv_buffer(&rx, 4 << 20)?;
        rx.set_read_timeout(Some(Duration::from_millis(50)))?;
        let tx = Netns::open(from)?.run(|| UdpSocket::bind("0.0.0.0:0"))??;
        let (stop, sent, received) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let dst = SocketAddr::new(to_ip, 9999);
        let gap = Duration::from_secs(1) / rate;
        let t1 = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if tx.send_to(&n.to_be_bytes(), dst).is_ok() {
                        n += 1;
                        sent.store(n, Ordering::Relaxed);
                    }
                    let next = start + gap * u32::try_from(n).unwrap_or(u32::MAX);
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            })
        };
        let t2 = {
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                let mut quiet = 0;
                loop {
                    match rx.recv(&mut buf) {
                        Ok(_) => {
                            received.fetch_add(1, Ordering::Relaxed);
                            quiet = 0;
                        }
                        Err(_) if stop.load(Ordering::Relaxed) => {
                            quiet += 1;
                            if quiet > 4 {
                                return;
                            }
                        }
                        Err(_) => {}
                    }
                }
            })
        };
        Ok(Flow {
            stop,
            sent,
            received,
            threads: vec![t1, t2],
        })
    }

    /// Stops it (the last datagrams drain first); (sent, lost).
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let sent = self.sent.load(Ordering::Relaxed);
        (
            sent,
            sent.saturating_sub(self.received.load(Ordering::Relaxed)),
        )
    }
}

fn main() {
    lnet_kernel::testing::run_isolated_bench("restart", run);
}

/// The CPU time spent and the time idle so far, in clock ticks (`/proc/stat`).
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = v.get(3)? + v.get(4)?;
    Some((v.iter().take(8).sum::<u64>() - idle, idle))
}

/// Waits (at most 60 s) until the machine is quiet, so that a start is timed on a steady
/// system rather than beside the kernel still settling 10,000 new interfaces (their IPv6
/// duplicate address detection, router solicitations and multicast reports); returns how
/// long that took.
fn settle() -> Duration {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        let Some((busy0, idle0)) = cpu_ticks() else {
            break;
        };
        std::thread::sleep(Duration::from_secs(1));
        let Some((busy1, idle1)) = cpu_ticks() else {
            break;
        };
        let (busy, idle) = (busy1 - busy0, idle1 - idle0);
        if idle * 100 >= (busy + idle) * 90 {
            break;
        }
    }
    t.elapsed()
}

fn run(root: &Path) -> Res<()> {
    let quick = std::env::var("LNET_BENCH_QUICK").is_ok_and(|v| v == "1");
    let (networks, sandboxes, per) = if quick {
        (50, 100, 5)
    } else {
        (1000, 1000, 10)
    };
    // Per sandbox its namespace, netlink socket and resolver's sockets; per endpoint the
    // socket that holds its published port on the host.
    lnet_kernel::testing::raise_open_files((4 * sandboxes + sandboxes * per) as u64 + 1024)?;
    lnet_kernel::testing::mount_tmpfs(&root.join("run"))?;
    std::fs::write(root.join("resolv.conf"), "nameserver 127.0.0.1\n")?;
    let mut config = Config::rooted_at(root);
    config.host_resolv_conf = root.join("resolv.conf");
    config.enable_ip_forward = false;
    config.embedded_dns = true;
    let mut ctrl = Controller::new(config.clone())?;

    let started = Instant::now();
    let mut nets = Vec::new();
    for i in 0..networks {
        let mut o = NetworkOptions::default();
        o.ipam.v4.push(lnet_core::IpamPoolConfig {
            subnet: Some(format!("10.{}.{}.0/24", 64 + i / 256, i % 256).parse()?),
            ..Default::default()
        });
        nets.push(ctrl.new_network("bridge", &format!("n{i}"), o)?);
        if (i + 1) % (networks / 10) == 0 {
            eprintln!(
                "restart bench: {} networks made ({:.0?})",
                i + 1,
                started.elapsed()
            );
        }
    }
    // Sandbox j joins networks (j * per + k) % networks: each network gets the same count.
    let mut port = 20000u16;
    let mut keys = Vec::new();
    for j in 0..sandboxes {
        let sb = ctrl.new_sandbox(&format!("s{j}"), Default::default())?;
        for k in 0..per {
            let net = &nets[(j * per + k) % networks];
            let ep = net.create_endpoint(
                &format!("e{j}-{k}"),
                EndpointOptions {
                    // On 0.0.0.0: each published port is held by one socket on the host
                    // (on all addresses it would be two, 0.0.0.0 and [::]), so that 10,000
                    // fit under a hard open-file limit of 20,000 on machines that may not
                    // raise it.
                    ports: vec![PortSpec::parse(&format!("0.0.0.0:{port}:80"))?],
                    ..Default::default()
                },
            )?;
            port += 1;
            ep.join(&sb, JoinOptions::default())?;
        }
        keys.push(sb.key()?);
        if (j + 1) % (sandboxes / 10) == 0 {
            eprintln!(
                "restart bench: {} sandboxes joined to {per} networks each ({:.0?})",
                j + 1,
                started.elapsed()
            );
        }
    }
    let endpoints = sandboxes * per;
    // Two sandboxes on network n0: s0 (first on it) and the next one that joined it.
    let peer = (1..sandboxes)
        .find(|j| (0..per).any(|k| (j * per + k) % networks == 0))
        .ok_or("no second sandbox on n0")?;
    let peer_ip = ctrl
        .network("n0")?
        .endpoints()
        .into_iter()
        .find(|e| e.name().starts_with(&format!("e{peer}-")))
        .and_then(|e| e.info().ok())
        .and_then(|r| r.addr_v4)
        .map(|a| a.addr())
        .ok_or("the peer's address")?;
    drop(nets);
    eprintln!("restart bench: the machine settled in {:.0?}", settle());

    let rounds: usize = std::env::var("LNET_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3);
    // A rate this machine's two CPUs carry without loss while everything else runs, so
    // that a lost datagram means the restart dropped it.
    let rate = 2_000;
    let mut starts = Vec::new();
    let mut phases = Vec::new();
    let mut doctors = Vec::new();
    let mut restart_loss = (0, 0);
    let mut clean = true;
    for _ in 0..rounds {
        let t = Instant::now();
        let report = ctrl.doctor();
        doctors.push(t.elapsed());
        clean &= report.is_clean();

        let flow = Flow::start(&keys[0], &keys[peer], peer_ip, rate)?;
        std::thread::sleep(Duration::from_millis(100));
        drop(ctrl);
        let t = Instant::now();
        ctrl = Controller::new(config.clone())?;
        starts.push(t.elapsed());
        let report = ctrl.recovery_report();
        clean &= report.is_clean();
        phases.push(report.took.clone());
        std::thread::sleep(Duration::from_millis(100));
        let (sent, lost) = flow.finish();
        restart_loss = (restart_loss.0 + sent, restart_loss.1 + lost);
    }
    // Baseline: the same flows over the same times, no restart.
    let mut baseline = (0, 0);
    for d in &starts {
        let flow = Flow::start(&keys[0], &keys[peer], peer_ip, rate)?;
        std::thread::sleep(*d + Duration::from_millis(200));
        let (sent, lost) = flow.finish();
        baseline = (baseline.0 + sent, baseline.1 + lost);
    }

    println!(
        "restart: {networks} networks, {endpoints} endpoints joined, {endpoints} published ports, {sandboxes} sandboxes with resolvers"
    );
    println!(
        "start until serving: median {:.0} ms (of {rounds}: {:?} ms); every start found nothing to fix: {clean}",
        ms(median(starts.clone())),
        starts.iter().map(|d| ms(*d).round()).collect::<Vec<_>>()
    );
    // The steps of the median start, to show where the time goes.
    let mid = {
        let mut order: Vec<usize> = (0..starts.len()).collect();
        order.sort_by_key(|&i| starts[i]);
        order[order.len() / 2]
    };
    println!(
        "  its steps (ms): {}",
        phases[mid]
            .iter()
            .map(|(step, ms)| format!("{step} {ms:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "UDP flow at {rate}/s across the restarts: {} lost of {} sent; the same flows without a restart: {} lost of {}",
        restart_loss.1, restart_loss.0, baseline.1, baseline.0
    );
    println!(
        "lnet doctor on this state: median {:.0} ms",
        ms(median(doctors))
    );
    if !clean {
        return Err("a start or doctor found drift on a state that was right".into());
    }
    Ok(())
}
