//! Join and leave latency on one bridge network with 1, 100 and 1,000 endpoints already
//! joined to their own sandboxes, each next to a kernel floor measured in the same run.
//!
//! Run as root with `cargo bench -p lnet-core --bench join`; `LNET_BENCH_QUICK=1` uses
//! sizes 1 and 20 and 5 iterations instead of 30. Not root: a recorded skip
//! (`lnet_kernel::testing::require_root`), exit 0.
//!
//! - **lnet create+join**: `Network::create_endpoint` + `Endpoint::join` into a sandbox
//!   created beforehand (sandbox creation is not timed).
//! - **lnet leave+delete**: `Endpoint::leave` + `Endpoint::delete`.
//! - **kernel floor**: the netlink requests a join cannot do without, issued directly with
//!   `lnet_kernel` on the same bridge and into namespaces made the same way: `create_veth`
//!   (peer created in the namespace with its MAC, host end enslaved and up), then in the
//!   namespace a lookup of the peer by name, `add_address`, `set_up`, `replace_route`
//!   (default via the gateway): 5 requests. Its leave is `delete_link` of the host end:
//!   1 request. The floor has no store, no hosts file and no lookups beyond the peer's.
//!
//! lnet's handles are private, so its request counts come from reading the code (bridge
//! driver and `ops/`): a join is 6 requests (the 5 above plus the free-name probe of the
//! host end in `plan_join_host_ifname`; the bridge index is cached by the driver), a leave 1
//! (`delete_link`; the default route goes with the link). The extra probe is also timed next
//! to the floor, outside it. lnet's writes are timed by reference: an endpoint record write
//! (a rename under the exec root, no fsync: these records describe kernel objects that do not
//! outlive a reboot) and a hosts rewrite in place. A create+join writes the endpoint record
//! three times (create, `joining`, `joined`) and rewrites hosts once; a leave+delete writes
//! twice, deletes once and rewrites hosts once.
//!
//! lnet and the floor alternate which goes first on each iteration, so slow kernel work a
//! veth deletion leaves behind (RCU grace periods) hits both equally. Every pool slot gets
//! one unrecorded round first. After a fill of 50 or more endpoints the bench waits 15 s
//! (`LNET_BENCH_SETTLE_SECS`; none in quick mode) for the new interfaces' IPv6 and multicast
//! chatter to stop. Percentiles are nearest-rank over the samples: with 30 samples p99 is
//! the maximum. lnet keeps two descriptors per live sandbox, so the bench raises its
//! open-file limit as needed.
//!
//! Safety: the process first takes a private mount namespace and the main thread a new
//! network namespace, all state lives in a temporary directory (its `run/`, the exec root, on
//! a private tmpfs as `/run` is on a real host), and a guard unmounts every namespace bind
//! mount made there, also on panic.

use std::error::Error;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use lnet_core::{
    Config, Controller, Endpoint, EndpointOptions, JoinOptions, Network, NetworkOptions, Sandbox,
    SandboxOptions,
};
use lnet_kernel::{AddrFlags, Netlink, Netns, Route, VethSpec};

type Res<T> = std::result::Result<T, Box<dyn Error>>;

/// The container-side interface name, as lnet's bridge driver picks it for a first join.
const PEER: &str = "eth0";

/// Unmounts (and removes) every namespace file in `dirs` when dropped, panics included.
struct NetnsGuard {
    dirs: Vec<PathBuf>,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        for dir in &self.dirs {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                if let Err(e) = Netns::delete_at(entry.path()) {
                    eprintln!("cleanup: {e}");
                }
            }
        }
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(samples: &[Duration]) -> Stats {
    let mut s = samples.to_vec();
    s.sort();
    let n = s.len();
    // Nearest-rank percentiles.
    let rank = |p: f64| s[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    Stats {
        p50: rank(0.5),
        p99: rank(0.99),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// One namespace of the floor, made like a sandbox's, with its netlink socket open (as lnet
/// keeps one per sandbox).
struct FloorSlot {
    ns: Netns,
    nl: Netlink,
    host_name: String,
    addr: IpNet,
    mac: [u8; 6],
}

/// What the floor needs of the network.
struct Wire {
    bridge_name: String,
    bridge_index: u32,
    gateway: IpAddr,
}

/// The floor's create+join: exactly the 5 requests a join needs. Returns the time and the
/// time of lnet's extra request (the host-name probe), issued beforehand, outside the floor.
fn floor_join(host: &mut Netlink, wire: &Wire, s: &mut FloorSlot) -> Res<(Duration, Duration)> {
    let t = Instant::now();
    let found = host.link_by_name(&s.host_name)?; // plan_join_host_ifname
    let probe = t.elapsed();
    assert!(found.is_none(), "floor slot not clean");

    let (h0, s0) = (host.request_count(), s.nl.request_count());
    let t = Instant::now();
    host.create_veth(VethSpec {
        host_name: &s.host_name,
        host_mtu: None,
        host_master: Some(wire.bridge_index),
        host_up: true,
        peer_name: PEER,
        peer_ns: Some(&s.ns),
        peer_mac: Some(s.mac),
        peer_mtu: None,
    })?;
    let peer = s.nl.link_by_name(PEER)?.ok_or("floor peer missing")?;
    s.nl.add_address(peer.index, s.addr, AddrFlags::default())?;
    s.nl.set_up(peer.index)?;
    s.nl.replace_route(&Route::default_via(wire.gateway))?;
    let floor = t.elapsed();
    let requests = host.request_count() - h0 + s.nl.request_count() - s0;
    assert_eq!(requests, 5, "the floor join is 5 netlink requests");
    Ok((floor, probe))
}

/// The floor's leave: one `delete_link` (the default route goes with the link).
fn floor_leave(host: &mut Netlink, s: &mut FloorSlot) -> Res<Duration> {
    let h0 = host.request_count();
    let t = Instant::now();
    let deleted = host.delete_link(&s.host_name)?;
    let floor = t.elapsed();
    assert!(deleted, "floor veth was there");
    assert_eq!(host.request_count() - h0, 1);
    Ok(floor)
}

#[derive(Default)]
struct Samples {
    lnet_join: Vec<Duration>,
    lnet_create: Vec<Duration>,
    lnet_join_only: Vec<Duration>,
    lnet_leave: Vec<Duration>,
    lnet_leave_only: Vec<Duration>,
    lnet_delete: Vec<Duration>,
    floor_join: Vec<Duration>,
    floor_leave: Vec<Duration>,
    extra_probe: Vec<Duration>,
}

/// lnet's create+join then leave+delete on `sb`, recorded into `s` when given.
fn lnet_round(net: &Network, sb: &Sandbox, name: &str, s: Option<&mut Samples>) -> Res<()> {
    let t0 = Instant::now();
    let ep: Endpoint = net.create_endpoint(name, EndpointOptions::default())?;
    let t1 = Instant::now();
    ep.join(sb, JoinOptions::default())?;
    let t2 = Instant::now();
    ep.leave(sb)?;
    let t3 = Instant::now();
    ep.delete()?;
    let t4 = Instant::now();
    if let Some(s) = s {
        s.lnet_create.push(t1 - t0);
        s.lnet_join_only.push(t2 - t1);
        s.lnet_join.push(t2 - t0);
        s.lnet_leave_only.push(t3 - t2);
        s.lnet_delete.push(t4 - t3);
        s.lnet_leave.push(t4 - t2);
    }
    Ok(())
}

fn floor_round(
    host: &mut Netlink,
    wire: &Wire,
    f: &mut FloorSlot,
    s: Option<&mut Samples>,
) -> Res<()> {
    let (join, probe) = floor_join(host, wire, f)?;
    let leave = floor_leave(host, f)?;
    if let Some(s) = s {
        s.floor_join.push(join);
        s.extra_probe.push(probe);
        s.floor_leave.push(leave);
    }
    Ok(())
}

fn line(what: &str, n: usize, lnet_label: &str, lnet: &[Duration], floor: &[Duration]) -> f64 {
    let (l, f) = (stats(lnet), stats(floor));
    let r = ratio(l.p50, f.p50);
    println!(
        "{what} N={n}: lnet {lnet_label} p50 {:.2} ms p99 {:.2} ms | kernel floor p50 {:.2} ms p99 {:.2} ms | ratio {r:.2}x",
        ms(l.p50),
        ms(l.p99),
        ms(f.p50),
        ms(f.p99),
    );
    r
}

fn p50(samples: &[Duration]) -> f64 {
    ms(stats(samples).p50)
}

/// Record writes and the hosts rewrite, timed on the same file systems as lnet's, as
/// references for where lnet's time goes: an endpoint record written as lnet writes it
/// (a rename on the exec root), on an empty store and on one holding `records` records, and
/// for scale a redb commit with fsync, which is what a network record costs.
fn reference_writes(
    root: &Path,
    ep: &lnet_core::EndpointRecord,
    reps: usize,
    records: usize,
) -> Res<()> {
    let (store, _) = lnet_store::Store::open_with_runtime(
        &root.join("reference/data/lnet.db"),
        &root.join("run/reference-state"),
    )?;
    let mut next = 0usize;
    let mut put = |store: &lnet_store::Store| -> Res<Duration> {
        let mut rec = ep.clone();
        rec.id = format!("{next:064x}");
        rec.revision = 0;
        next += 1;
        let t = Instant::now();
        store.put(&mut rec)?;
        Ok(t.elapsed())
    };
    let empty = (0..reps).map(|_| put(&store)).collect::<Res<Vec<_>>>()?;
    for _ in reps..records {
        put(&store)?;
    }
    let full = (0..reps).map(|_| put(&store)).collect::<Res<Vec<_>>>()?;
    drop(store);
    let (redb, _) = lnet_store::Store::open(&root.join("reference/redb/lnet.db"))?;
    let commits = (0..reps).map(|_| put(&redb)).collect::<Res<Vec<_>>>()?;
    drop(redb);
    let hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
                 172.17.0.2\tbench-0.example.com bench-0\n";
    let path = root.join("reference/hosts");
    let mut rewrites = Vec::with_capacity(reps);
    for _ in 0..reps {
        // In place, as lnet does (runtimes bind-mount the file).
        let t = Instant::now();
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        std::os::unix::fs::FileExt::write_all_at(&f, hosts.as_bytes(), 0)?;
        f.set_len(hosts.len() as u64)?;
        rewrites.push(t.elapsed());
    }
    let (e, f, w, c) = (
        stats(&empty),
        stats(&full),
        stats(&rewrites),
        stats(&commits),
    );
    println!(
        "reference ({reps} each): endpoint record write (rename on the exec root) p50 {:.3} ms p99 {:.3} ms \
         (empty store), p50 {:.3} ms p99 {:.3} ms ({records} records) | hosts rewrite (in place) p50 {:.3} ms \
         p99 {:.3} ms | for scale, a redb commit with fsync (a network record) p50 {:.2} ms p99 {:.2} ms",
        ms(e.p50),
        ms(e.p99),
        ms(f.p50),
        ms(f.p99),
        ms(w.p50),
        ms(w.p99),
        ms(c.p50),
        ms(c.p99)
    );
    Ok(())
}

fn main() {
    if !lnet_kernel::testing::require_root("bench join", "network namespaces, mounts") {
        return;
    }
    // Before any controller, socket or thread: everything below happens in this network
    // namespace, and every mount below is private to this process and goes with it.
    if let Err(e) = lnet_kernel::testing::enter_private_mounts()
        .and_then(|()| lnet_kernel::testing::enter_new_netns())
    {
        eprintln!("join bench: enter private mount and network namespaces: {e}");
        std::process::exit(1);
    }
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("join bench: tempdir: {e}");
            std::process::exit(1);
        }
    };
    // The exec root on a tmpfs, as `/run/lnet` is on a real host; the data root stays on
    // the disk, as `/var/lib/lnet` does.
    if let Err(e) = lnet_kernel::testing::mount_tmpfs(&dir.path().join("run")) {
        eprintln!("join bench: {e}");
        std::process::exit(1);
    }
    let guard = NetnsGuard {
        dirs: vec![dir.path().join("run/netns"), dir.path().join("floor")],
    };
    let result = run(dir.path());
    drop(guard);
    if let Err(e) = lnet_kernel::testing::unmount(&dir.path().join("run")) {
        eprintln!("join bench: {e}");
    }
    drop(dir);
    if let Err(e) = result {
        eprintln!("join bench failed: {e}");
        std::process::exit(1);
    }
}

fn run(root: &Path) -> Res<()> {
    let quick = std::env::var("LNET_BENCH_QUICK").is_ok_and(|v| v == "1");
    let sizes: &[usize] = if quick { &[1, 20] } else { &[1, 100, 1000] };
    let iters = if quick { 5 } else { 30 };
    // Every new interface keeps the kernel busy for a while (IPv6 DAD, router solicitations
    // and MLD reports, flooded to every bridge port). Measuring right after adding 900
    // endpoints mostly measures that (p99 4-8x higher); a pause after each large fill
    // measures a settled host. `LNET_BENCH_SETTLE_SECS` overrides the 15 s (0 in quick mode).
    let settle = Duration::from_secs(
        std::env::var("LNET_BENCH_SETTLE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { 0 } else { 15 }),
    );
    let max_n = *sizes.last().expect("sizes");
    lnet_kernel::testing::raise_open_files((2 * (max_n + 2 * iters) + 256) as u64)?;

    let resolv = root.join("host-resolv.conf");
    fs::write(&resolv, "nameserver 192.0.2.53\nsearch example.com\n")?;
    let mut config = Config::rooted_at(root);
    config.host_resolv_conf = resolv;
    config.enable_ip_forward = false;
    let ctrl = Controller::new(config)?;
    let net = ctrl.new_network("bridge", "bench", NetworkOptions::default())?;
    let info = net.info()?;
    let bridge_name = info
        .driver_state
        .get("bridge")
        .and_then(|v| v.as_str())
        .ok_or("network record has no bridge name")?
        .to_string();
    let pool = info
        .pools
        .iter()
        .find(|p| !p.is_v6())
        .ok_or("network has no IPv4 pool")?;
    let (IpNet::V4(subnet), Some(gateway)) = (pool.pool, pool.gateway) else {
        return Err("IPv4 pool without gateway".into());
    };
    if subnet.hosts().count() < max_n + 4 * iters + 16 {
        return Err(format!("pool {subnet} is too small for {max_n} endpoints").into());
    }

    let mut host = Netlink::new()?;
    let wire = Wire {
        bridge_index: host
            .link_by_name(&bridge_name)?
            .ok_or("bridge missing")?
            .index,
        bridge_name,
        gateway: gateway.addr(),
    };

    // The pools: sandboxes for lnet, namespaces for the floor, made the same way. Floor
    // addresses come from the top of the subnet; IPAM hands out the bottom.
    let mut sandboxes = Vec::with_capacity(iters);
    let mut floor = Vec::with_capacity(iters);
    let top = u32::from(subnet.broadcast());
    for i in 0..iters {
        sandboxes.push(ctrl.new_sandbox(
            &format!("pool-{i}"),
            SandboxOptions {
                hostname: format!("pool-{i}"),
                domainname: "example.com".into(),
                ..Default::default()
            },
        )?);
        let ns = Netns::create_at(root.join("floor").join(format!("ns-{i}")))?;
        let nl = Netlink::in_netns(&ns)?;
        let ip = Ipv4Addr::from(top - 1 - i as u32);
        let o = ip.octets();
        floor.push(FloorSlot {
            ns,
            nl,
            host_name: format!("vfloor{i}"),
            addr: IpNet::V4(Ipv4Net::new(ip, subnet.prefix_len())?),
            mac: [0x02, 0x42, o[0], o[1], o[2], o[3]],
        });
    }

    // Warm-up: one unrecorded round on every pool slot, so no size pays first-use costs of
    // a fresh namespace (route tables, neighbour tables) that the others do not.
    for (i, (sb, f)) in sandboxes.iter().zip(floor.iter_mut()).enumerate() {
        lnet_round(&net, sb, &format!("warm-{i}"), None)?;
        floor_round(&mut host, &wire, f, None)?;
    }

    println!(
        "join bench: {} mode, sizes {sizes:?}, {iters} iterations each; bridge {} on {subnet}",
        if quick { "quick" } else { "full" },
        wire.bridge_name
    );
    println!(
        "netlink requests (lnet by reading the code, floor checked with Netlink::request_count): \
         join lnet 6 / floor 5, leave lnet 1 / floor 1; lnet also writes the endpoint record 3 \
         times (renames on the exec root, no fsync) and rewrites hosts once per create+join, \
         and writes 2 + deletes 1 record and rewrites hosts once per leave+delete"
    );

    let mut fill: Vec<(Sandbox, Endpoint)> = Vec::with_capacity(max_n);
    let mut fill_samples: Vec<Duration> = Vec::with_capacity(max_n);
    let mut join_p50 = Vec::new();
    let mut last_ep_record = None;
    for &n in sizes {
        // Grow to n endpoints, each joined to its own sandbox.
        let t = Instant::now();
        let added = n.saturating_sub(fill.len());
        while fill.len() < n {
            let k = fill.len();
            let sb = ctrl.new_sandbox(
                &format!("fill-{k}"),
                SandboxOptions {
                    hostname: format!("fill-{k}"),
                    domainname: "example.com".into(),
                    ..Default::default()
                },
            )?;
            let t_op = Instant::now();
            let ep = net.create_endpoint(&format!("fill-{k}"), EndpointOptions::default())?;
            ep.join(&sb, JoinOptions::default())?;
            fill_samples.push(t_op.elapsed());
            fill.push((sb, ep));
            if fill.len().is_multiple_of(100) {
                eprintln!(
                    "join bench: {} endpoints joined ({:.1} s)",
                    fill.len(),
                    t.elapsed().as_secs_f64()
                );
            }
        }
        let fill_time = t.elapsed();
        if settle > Duration::ZERO && added >= 50 {
            eprintln!(
                "join bench: {n} endpoints joined; letting the kernel settle for {} s",
                settle.as_secs()
            );
            std::thread::sleep(settle);
        }

        let mut s = Samples::default();
        for (i, (sb, f)) in sandboxes.iter().zip(floor.iter_mut()).enumerate() {
            let name = format!("m{n}-{i}");
            if i % 2 == 0 {
                lnet_round(&net, sb, &name, Some(&mut s))?;
                floor_round(&mut host, &wire, f, Some(&mut s))?;
            } else {
                floor_round(&mut host, &wire, f, Some(&mut s))?;
                lnet_round(&net, sb, &name, Some(&mut s))?;
            }
        }
        if last_ep_record.is_none() {
            last_ep_record = Some(fill[0].1.info()?);
        }

        line("join", n, "create+join", &s.lnet_join, &s.floor_join);
        println!(
            "  join N={n} detail: create_endpoint p50 {:.2} ms, join p50 {:.2} ms; lnet's extra probe p50 {:.3} ms",
            p50(&s.lnet_create),
            p50(&s.lnet_join_only),
            p50(&s.extra_probe),
        );
        line("leave", n, "leave+delete", &s.lnet_leave, &s.floor_leave);
        println!(
            "  leave N={n} detail: leave p50 {:.2} ms, delete p50 {:.2} ms",
            p50(&s.lnet_leave_only),
            p50(&s.lnet_delete),
        );
        if n > 1 {
            println!(
                "  set-up to N={n}: {:.1} s (sandbox create + create+join each)",
                fill_time.as_secs_f64()
            );
        }
        join_p50.push((
            n,
            stats(&s.lnet_join).p50,
            stats(&s.lnet_leave).p50,
            stats(&s.floor_join).p50,
        ));
    }
    let (first, last) = (join_p50[0], join_p50[join_p50.len() - 1]);
    println!(
        "N={} vs N={}: {:.2}x (join p50), {:.2}x (leave p50); kernel floor {:.2}x (join p50)",
        last.0,
        first.0,
        ratio(last.1, first.1),
        ratio(last.2, first.2),
        ratio(last.3, first.3),
    );
    let over = |x: (usize, Duration, Duration, Duration)| x.1.saturating_sub(x.3);
    println!(
        "lnet above the floor (join p50): N={} {:.2} ms, N={} {:.2} ms ({:.2}x)",
        first.0,
        ms(over(first)),
        last.0,
        ms(over(last)),
        ratio(over(last), over(first)),
    );
    let f = stats(&fill_samples);
    println!(
        "set-up create+join of the {} resident endpoints: p50 {:.2} ms p99 {:.2} ms",
        fill_samples.len(),
        ms(f.p50),
        ms(f.p99)
    );
    if let Some(rec) = &last_ep_record {
        reference_writes(root, rec, if quick { 10 } else { 50 }, 2 * max_n)?;
    }

    // Tear down and time it: the resident sandboxes (each leaves and deletes its endpoint
    // and removes its namespace), the pool, the network, the floor's namespaces.
    let t_all = Instant::now();
    let mut per_sandbox = Vec::with_capacity(fill.len());
    let resident = fill.len();
    for (k, (sb, _ep)) in fill.into_iter().enumerate() {
        let t = Instant::now();
        sb.delete()?;
        per_sandbox.push(t.elapsed());
        if (k + 1).is_multiple_of(100) {
            eprintln!(
                "join bench: {} sandboxes torn down ({:.1} s)",
                k + 1,
                t_all.elapsed().as_secs_f64()
            );
        }
    }
    let t_resident = t_all.elapsed();
    for sb in sandboxes {
        sb.delete()?;
    }
    net.delete()?;
    drop(host);
    for f in floor {
        let path =
            f.ns.path()
                .map(Path::to_path_buf)
                .ok_or("floor netns path")?;
        drop(f);
        Netns::delete_at(path)?;
    }
    let total = t_all.elapsed();
    let p = stats(&per_sandbox);
    println!(
        "teardown: {resident} resident sandboxes in {:.2} s (per sandbox: leave + delete endpoint + remove namespace, p50 {:.2} ms p99 {:.2} ms); with {iters} pool sandboxes, the network and {iters} floor namespaces {:.2} s",
        t_resident.as_secs_f64(),
        ms(p.p50),
        ms(p.p99),
        total.as_secs_f64()
    );
    let left = ctrl.sandboxes().len() + ctrl.networks().len();
    if left != 0 {
        return Err(format!("{left} sandboxes or networks left after teardown").into());
    }
    Ok(())
}
