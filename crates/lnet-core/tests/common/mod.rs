//! Shared set-up for lnet-core's root tests: each test moves its own thread into a fresh
//! network namespace before anything else (sockets and threads made afterwards stay in it),
//! keeps its store and run directory in a temporary directory, and on drop — also when the
//! test panics — unmounts every namespace bind mount it made. Links and addresses die with
//! the test's namespace when its thread ends.
//!
//! Besides the environment, this module holds what several test files share: building
//! networks, endpoints and sandboxes; reading kernel state back over netlink; sending real
//! packets between sandboxes; snapshots for "bad input changes nothing"; and the check that
//! records, kernel and files agree after a restart.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use lnet_core::drivers::bridge::BridgeConfig;
use lnet_core::{
    Config, Controller, CoreError, Endpoint, EndpointOptions, EndpointRecord, ErrorKind,
    IpamPoolConfig, JoinOptions, JoinState, Lifecycle, Network, NetworkOptions, NetworkRecord,
    Sandbox, SandboxOptions, SandboxRecord,
};
use lnet_kernel::{IpFamily, Link, Netlink, Netns};

/// A test's private world.
pub struct Env {
    pub ctrl: Option<Controller>,
    pub dir: tempfile::TempDir,
    /// The links of the test's namespace before lnet made anything (without `lo`).
    pub base_links: BTreeSet<String>,
}

/// Sets up a test, or records why it is skipped and returns `None`.
pub fn env(test: &str) -> Option<Env> {
    if !lnet_kernel::testing::require_root(test, "network namespaces, links, mounts") {
        return None;
    }
    lnet_kernel::testing::enter_new_netns().expect("enter a new network namespace");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("host-resolv.conf"),
        "nameserver 192.0.2.53\nsearch example.org\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("host-hosts"), "127.0.0.1\tlocalhost\n").unwrap();
    let mut env = Env {
        ctrl: None,
        dir,
        base_links: host_links(),
    };
    env.ctrl = Some(Controller::new(env.config()).expect("controller"));
    Some(env)
}

impl Env {
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> Config {
        let mut c = Config::rooted_at(self.root());
        c.host_resolv_conf = self.root().join("host-resolv.conf");
        c.host_hosts = self.root().join("host-hosts");
        c
    }

    pub fn ctrl(&self) -> &Controller {
        self.ctrl.as_ref().expect("controller running")
    }

    /// Drops the controller (as a crash would: no cleanup runs) and starts a new one on the
    /// same store and run directory. Every handle (network, endpoint, sandbox) holds the
    /// controller: drop them all first, or the store stays open.
    pub fn restart(&mut self) -> &Controller {
        self.restart_with(self.config())
    }

    pub fn restart_with(&mut self, config: Config) -> &Controller {
        self.ctrl = None;
        self.ctrl = Some(Controller::new(config).expect("controller restarts"));
        self.ctrl()
    }

    /// The namespace bind mounts under the run directory.
    pub fn netns_mounts(&self) -> BTreeSet<PathBuf> {
        self.netns_files()
            .into_iter()
            .filter(|p| Netns::is_mounted_at(p))
            .collect()
    }

    /// Every file left under the run directory's netns folder (mounted or not).
    pub fn netns_files(&self) -> BTreeSet<PathBuf> {
        std::fs::read_dir(self.root().join("run/netns"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    /// The per-sandbox file directories under the data root.
    pub fn sandbox_dirs(&self) -> BTreeSet<PathBuf> {
        std::fs::read_dir(self.root().join("data/sandboxes"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    /// A namespace made by "the container runtime" (not by lnet), under the test's
    /// directory; unmounted when the test ends.
    pub fn runtime_netns(&self, name: &str) -> PathBuf {
        let p = self.root().join("runtime").join(name);
        Netns::create_at(&p).expect("create a runtime namespace");
        p
    }

    fn runtime_netns_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.root().join("runtime"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    /// Everything a user could observe, for "bad input changes nothing".
    pub fn snapshot(&self) -> Snapshot {
        let ctrl = self.ctrl();
        let networks: Vec<NetworkRecord> = ctrl
            .networks()
            .iter()
            .map(|n| n.info().expect("network info"))
            .collect();
        let mut endpoints: Vec<EndpointRecord> = ctrl
            .networks()
            .iter()
            .flat_map(|n| n.endpoints())
            .map(|e| e.info().expect("endpoint info"))
            .collect();
        endpoints.sort_by(|a, b| a.id.cmp(&b.id));
        let mut sandboxes = Vec::new();
        let mut sandbox_links = BTreeMap::new();
        let mut hosts = BTreeMap::new();
        let mut addresses = BTreeSet::new();
        let mut routes = BTreeSet::new();
        addresses_and_routes(&mut host_nl(), "host", &mut addresses, &mut routes);
        for sb in ctrl.sandboxes() {
            let rec = sb.info().expect("sandbox info");
            if !rec.host_mode {
                sandbox_links.insert(rec.id.clone(), links_in(&rec.netns_path));
                let mut nl = ns_nl(&rec.netns_path);
                addresses_and_routes(&mut nl, &rec.container_id, &mut addresses, &mut routes);
            }
            hosts.insert(rec.id.clone(), read(&sb.hosts_path().unwrap()));
            sandboxes.push(rec);
        }
        sandboxes.sort_by(|a, b| a.id.cmp(&b.id));
        Snapshot {
            networks,
            endpoints,
            sandboxes,
            pools: ctrl.allocated_pools(),
            links: host_links(),
            netns_files: self.netns_files(),
            sandbox_dirs: self.sandbox_dirs(),
            sandbox_links,
            hosts,
            addresses,
            routes,
            ports: ctrl
                .port_bindings()
                .into_iter()
                .map(|(ip, proto, port, who)| format!("{ip}:{port}/{proto} {who}"))
                .collect(),
            firewall: firewall_elements(),
        }
    }
}

/// Every element of lnet's nftables sets in the test's namespace, as `set: element`.
pub fn firewall_elements() -> BTreeSet<String> {
    use lnet_core::firewall::ruleset::{SetName, TABLE};
    let mut nft = lnet_kernel::nft::NftSocket::new().expect("nft socket");
    let mut out = BTreeSet::new();
    for set in SetName::ALL {
        for e in nft
            .set_elements(set.family(), &TABLE, set.name())
            .expect("list set elements")
        {
            let value = match e.data {
                Some(lnet_kernel::nft::ElementData::Value(v)) => v,
                _ => Vec::new(),
            };
            out.insert(format!(
                "{}: {}",
                set.name(),
                lnet_core::firewall::render_element(set, &e.key, &value)
            ));
        }
    }
    out
}

/// Another engine's table `table` with a forward chain whose policy is drop (as Docker's
/// and firewalld's), where lnet adds its accept rules per bridge.
pub fn other_engine_drop_chain(table: &str) {
    use lnet_kernel::nft::{Batch, Chain, ChainType, Family, Hook, NftSocket, Policy};
    let mut b = Batch::new();
    b.add_table(Family::Ip, table);
    b.add_chain(
        &Chain::base(
            Family::Ip,
            table,
            "forward",
            ChainType::Filter,
            Hook::Forward,
            0,
        )
        .policy(Policy::Drop),
    );
    NftSocket::new().unwrap().commit(&b).unwrap();
}

/// The addresses (as `where:interface:address`) and main-table routes (as
/// `where:destination via gateway`) of a namespace. Link-local addresses the kernel derives
/// from a random MAC are left out; lnet's own `fe80::1` is kept. So are the `fe80::/64`
/// routes the kernel adds by itself, some time after a link comes up (IPv6 autoconf).
fn addresses_and_routes(
    nl: &mut Netlink,
    label: &str,
    addresses: &mut BTreeSet<String>,
    routes: &mut BTreeSet<String>,
) {
    let names: BTreeMap<u32, String> = nl
        .links()
        .expect("links")
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect();
    let fe80_1: IpNet = "fe80::1/64".parse().unwrap();
    for (index, a) in nl.addresses(None).expect("addresses") {
        let link_local = matches!(a, IpNet::V6(v) if v.addr().segments()[0] & 0xffc0 == 0xfe80);
        if !link_local || a == fe80_1 {
            addresses.insert(format!("{label}:{}:{a}", names[&index]));
        }
    }
    for family in [IpFamily::V4, IpFamily::V6] {
        for r in nl.routes(family).expect("routes") {
            if r.dst == "fe80::/64".parse::<IpNet>().unwrap() && r.gateway.is_none() {
                continue;
            }
            let via = r.gateway.map(|g| g.to_string()).unwrap_or_default();
            let dev = r
                .oif
                .and_then(|i| names.get(&i))
                .cloned()
                .unwrap_or_default();
            routes.insert(format!("{label}:{} via {via} dev {dev}", r.dst));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.ctrl = None;
        for p in self
            .netns_files()
            .into_iter()
            .chain(self.runtime_netns_files())
        {
            let _ = Netns::delete_at(&p);
        }
    }
}

/// What [`Env::snapshot`] records.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub networks: Vec<NetworkRecord>,
    pub endpoints: Vec<EndpointRecord>,
    pub sandboxes: Vec<SandboxRecord>,
    pub pools: Vec<IpNet>,
    pub links: BTreeSet<String>,
    pub netns_files: BTreeSet<PathBuf>,
    pub sandbox_dirs: BTreeSet<PathBuf>,
    pub sandbox_links: BTreeMap<String, BTreeSet<String>>,
    pub hosts: BTreeMap<String, String>,
    pub addresses: BTreeSet<String>,
    pub routes: BTreeSet<String>,
    /// Host ports held, with their holders.
    pub ports: BTreeSet<String>,
    /// Elements of lnet's nftables sets.
    pub firewall: BTreeSet<String>,
}

impl Snapshot {
    /// The snapshot with every record's revision zeroed: an operation that was undone bumps
    /// revisions but must otherwise leave no trace.
    pub fn without_revisions(mut self) -> Snapshot {
        self.networks.iter_mut().for_each(|r| r.revision = 0);
        self.endpoints.iter_mut().for_each(|r| r.revision = 0);
        self.sandboxes.iter_mut().for_each(|r| r.revision = 0);
        self
    }
}

/// Runs `op`, which must fail with an error of `kind` whose message contains every one of
/// `needles` (the field and what is allowed), and checks that it changed nothing.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(
    env: &Env,
    kind: ErrorKind,
    needles: &[&str],
    op: impl FnOnce(&Controller) -> lnet_core::Result<T>,
) -> CoreError {
    let before = env.snapshot();
    let err = op(env.ctrl()).expect_err("the request must be refused");
    let msg = err.to_string();
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} should mention {n:?}");
    }
    assert_eq!(err.kind(), kind, "error kind of {msg:?}");
    let after = env.snapshot();
    assert_eq!(before, after, "a refused request ({msg}) changed state");
    err
}

/// An address literal.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A prefix literal.
pub fn cidr(s: &str) -> IpNet {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Endpoint `name` of network `net`, looked up afresh (handles must not outlive a restart).
pub fn find_endpoint(ctrl: &Controller, net: &str, name: &str) -> lnet_core::Result<Endpoint> {
    ctrl.network(net)?.endpoint_by_name(name)
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// Building things.

/// Network options with one user IPv4 subnet.
pub fn subnet_opts(subnet: &str) -> NetworkOptions {
    let mut o = NetworkOptions::default();
    o.ipam.v4.push(IpamPoolConfig {
        subnet: Some(subnet.parse().expect("subnet")),
        ..Default::default()
    });
    o
}

/// Network options with one driver option.
pub fn driver_opt(key: &str, value: &str) -> NetworkOptions {
    let mut o = NetworkOptions::default();
    o.options.insert(key.into(), value.into());
    o
}

/// A bridge network with an automatic pool.
pub fn bridge(ctrl: &Controller, name: &str) -> Network {
    ctrl.new_network("bridge", name, NetworkOptions::default())
        .unwrap_or_else(|e| panic!("create network {name}: {e}"))
}

/// A bridge network on a user subnet.
pub fn bridge_on(ctrl: &Controller, name: &str, subnet: &str) -> Network {
    ctrl.new_network("bridge", name, subnet_opts(subnet))
        .unwrap_or_else(|e| panic!("create network {name} on {subnet}: {e}"))
}

/// A sandbox whose hostname is its container id.
pub fn sandbox(ctrl: &Controller, container: &str) -> Sandbox {
    ctrl.new_sandbox(
        container,
        SandboxOptions {
            hostname: container.into(),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("create sandbox {container}: {e}"))
}

/// An endpoint with default options.
pub fn endpoint(net: &Network, name: &str) -> Endpoint {
    net.create_endpoint(name, EndpointOptions::default())
        .unwrap_or_else(|e| panic!("create endpoint {name}: {e}"))
}

/// An endpoint created on `net` and joined to `sb`.
pub fn attach(net: &Network, name: &str, sb: &Sandbox) -> Endpoint {
    attach_with(net, name, sb, JoinOptions::default())
}

pub fn attach_with(net: &Network, name: &str, sb: &Sandbox, opts: JoinOptions) -> Endpoint {
    let ep = endpoint(net, name);
    ep.join(sb, opts)
        .unwrap_or_else(|e| panic!("join {name} to {}: {e}", sb.container_id()));
    ep
}

/// The endpoint's IPv4 address (without prefix).
pub fn ip4(ep: &Endpoint) -> IpAddr {
    ep.info().unwrap().addr_v4.expect("an IPv4 address").addr()
}

/// The network's first pool and its gateway.
pub fn pool_and_gateway(net: &Network) -> (IpNet, IpNet) {
    let p = net.info().unwrap().pools[0].clone();
    (p.pool, p.gateway.expect("a gateway"))
}

/// The bridge device a bridge network uses.
pub fn bridge_name(net: &Network) -> String {
    BridgeConfig::of(&net.info().unwrap()).unwrap().bridge
}

/// The host end of a joined endpoint's veth pair.
pub fn host_ifname(ep: &Endpoint) -> String {
    ep.info()
        .unwrap()
        .join
        .and_then(|j| j.host_ifname)
        .expect("a joined endpoint with a host interface")
}

/// The interface name of a joined endpoint inside its sandbox.
pub fn container_ifname(ep: &Endpoint) -> String {
    ep.info()
        .unwrap()
        .join
        .and_then(|j| j.container_ifname)
        .expect("a joined endpoint with a container interface")
}

// ---------------------------------------------------------------------------------------
// Reading the kernel back.

/// A netlink socket in the test's (host) namespace.
pub fn host_nl() -> Netlink {
    Netlink::new().expect("netlink")
}

/// A netlink socket inside a sandbox.
pub fn sandbox_nl(sb: &Sandbox) -> Netlink {
    ns_nl(&sb.key().unwrap())
}

pub fn ns_nl(path: &Path) -> Netlink {
    let ns = Netns::open(path).expect("open netns");
    Netlink::in_netns(&ns).expect("netlink in netns")
}

pub fn link(nl: &mut Netlink, name: &str) -> Option<Link> {
    nl.link_by_name(name).expect("link lookup")
}

#[track_caller]
pub fn must_link(nl: &mut Netlink, name: &str) -> Link {
    link(nl, name).unwrap_or_else(|| panic!("interface {name} should exist"))
}

/// The addresses on an interface.
pub fn addrs(nl: &mut Netlink, name: &str) -> BTreeSet<IpNet> {
    let l = must_link(nl, name);
    nl.addresses(Some(l.index))
        .expect("addresses")
        .into_iter()
        .map(|(_, a)| a)
        .collect()
}

/// The gateway of the default route of a family, if there is a default route.
pub fn default_gw(nl: &mut Netlink, family: IpFamily) -> Option<IpAddr> {
    let defaults: Vec<_> = nl
        .routes(family)
        .expect("routes")
        .into_iter()
        .filter(|r| r.is_default())
        .collect();
    assert!(
        defaults.len() <= 1,
        "one default route at most: {defaults:?}"
    );
    defaults.first().map(|r| r.gateway.expect("via a gateway"))
}

pub fn has_default_route(nl: &mut Netlink, family: IpFamily) -> bool {
    nl.routes(family)
        .expect("routes")
        .iter()
        .any(|r| r.is_default())
}

/// The links of the test's (host) namespace, as `name:kind`, without `lo`.
pub fn host_links() -> BTreeSet<String> {
    let mut nl = Netlink::new().expect("netlink");
    nl.links()
        .expect("links")
        .into_iter()
        .filter(|l| l.name != "lo")
        .map(|l| format!("{}:{}", l.name, l.kind.unwrap_or_default()))
        .collect()
}

/// The links inside a namespace, without `lo`.
pub fn links_in(path: &Path) -> BTreeSet<String> {
    ns_nl(path)
        .links()
        .expect("links")
        .into_iter()
        .filter(|l| l.name != "lo")
        .map(|l| l.name)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Real packets.

fn netns_of(sb: &Sandbox) -> Netns {
    Netns::open(sb.key().unwrap()).expect("open sandbox netns")
}

/// Sends a UDP datagram from `from` to `dst:port` inside `to`; returns the source address the
/// receiver saw.
pub fn udp_exchange(from: &Sandbox, to: &Sandbox, dst: IpAddr, port: u16) -> SocketAddr {
    let (src_ns, dst_ns) = (netns_of(from), netns_of(to));
    let rx = dst_ns
        .run(move || UdpSocket::bind(SocketAddr::new(dst, port)))
        .unwrap()
        .expect("bind UDP in the receiving sandbox");
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let payload = b"lnet udp probe";
    src_ns
        .run(move || -> std::io::Result<()> {
            let any: IpAddr = if dst.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            };
            let tx = UdpSocket::bind(SocketAddr::new(any, 0))?;
            tx.send_to(payload, SocketAddr::new(dst, port))?;
            Ok(())
        })
        .unwrap()
        .expect("send UDP from the sending sandbox");
    let mut buf = [0u8; 64];
    let (n, src) = rx.recv_from(&mut buf).expect("the datagram arrives");
    assert_eq!(&buf[..n], payload);
    src
}

/// Opens a TCP connection from `from` to `dst:port` inside `to` and sends a message; returns
/// the peer address the server saw.
pub fn tcp_exchange(from: &Sandbox, to: &Sandbox, dst: IpAddr, port: u16) -> SocketAddr {
    let (src_ns, dst_ns) = (netns_of(from), netns_of(to));
    let listener = dst_ns
        .run(move || TcpListener::bind(SocketAddr::new(dst, port)))
        .unwrap()
        .expect("listen in the receiving sandbox");
    let payload = "lnet tcp probe";
    src_ns
        .run(move || -> std::io::Result<()> {
            let mut s =
                TcpStream::connect_timeout(&SocketAddr::new(dst, port), Duration::from_secs(5))?;
            s.write_all(payload.as_bytes())
        })
        .unwrap()
        .expect("connect and send from the sending sandbox");
    let (mut conn, peer) = listener.accept().expect("accept");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).expect("read");
    assert_eq!(got, payload);
    peer
}

/// Both protocols, checking the receiver saw the sender's endpoint address.
pub fn assert_traffic(from: &Sandbox, from_ip: IpAddr, to: &Sandbox, to_ip: IpAddr, port: u16) {
    assert_eq!(udp_exchange(from, to, to_ip, port).ip(), from_ip);
    assert_eq!(tcp_exchange(from, to, to_ip, port + 1).ip(), from_ip);
}

// ---------------------------------------------------------------------------------------
// Convergence after a restart.

/// Checks that records, kernel and files agree after a start: every object ready, every join
/// complete, no link, namespace mount, files directory or pool that no record names, and
/// every joined interface configured as its record says. Then stops the controller, checks
/// the store itself holds nothing half-done, and starts again: that second start must have
/// nothing to fix.
pub fn assert_converged(env: &mut Env) {
    let report = env.ctrl().recovery_report().clone();
    assert!(report.errors.is_empty(), "recovery errors: {report:?}");
    check_live_state(env);
    env.ctrl = None;
    {
        let (store, notice) = env.config().open_store().unwrap();
        assert_eq!(notice, None);
        let loaded = store.load().unwrap();
        assert!(loaded.quarantined.is_empty(), "{:?}", loaded.quarantined);
        for n in &loaded.networks {
            assert_eq!(n.state, Lifecycle::Ready, "stored network {}", n.name);
        }
        for s in &loaded.sandboxes {
            assert_eq!(
                s.state,
                Lifecycle::Ready,
                "stored sandbox {}",
                s.container_id
            );
        }
        for e in &loaded.endpoints {
            assert_eq!(e.state, Lifecycle::Ready, "stored endpoint {}", e.name);
            if let Some(j) = &e.join {
                assert_eq!(j.state, JoinState::Joined, "stored join of {}", e.name);
            }
        }
    }
    env.restart();
    let again = env.ctrl().recovery_report();
    assert!(again.is_clean(), "a second start found work: {again:?}");
    check_live_state(env);
}

pub fn check_live_state(env: &Env) {
    let ctrl = env.ctrl();
    // lnet's own comparison must agree with the one below.
    let doctor = ctrl.doctor();
    assert!(doctor.is_clean(), "doctor after a start: {doctor:#?}");
    let mut want_links: BTreeSet<String> = env.base_links.clone();
    let mut want_pools = BTreeSet::new();
    let mut joined: BTreeMap<String, Vec<EndpointRecord>> = BTreeMap::new();
    let mut nets = BTreeMap::new();
    for net in ctrl.networks() {
        let rec = net.info().unwrap();
        assert_eq!(rec.state, Lifecycle::Ready, "network {}", rec.name);
        if rec.driver == "bridge" {
            want_links.insert(format!("{}:bridge", bridge_name(&net)));
        }
        want_pools.extend(rec.pools.iter().map(|p| p.pool));
        for ep in net.endpoints() {
            let e = ep.info().unwrap();
            assert_eq!(e.state, Lifecycle::Ready, "endpoint {}", e.name);
            if let Some(j) = &e.join {
                assert_eq!(j.state, JoinState::Joined, "join of {}", e.name);
                if let Some(h) = &j.host_ifname {
                    want_links.insert(format!("{h}:veth"));
                }
                joined.entry(j.sandbox_id.clone()).or_default().push(e);
            }
        }
        nets.insert(rec.id.clone(), rec);
    }
    assert_eq!(host_links(), want_links, "host links vs records");
    let have_pools: BTreeSet<IpNet> = ctrl.allocated_pools().into_iter().collect();
    assert_eq!(have_pools, want_pools, "IPAM pools vs records");
    // Host ports: exactly the recorded ones of live endpoints; the firewall: exactly what
    // the records call for (rules, set elements, accept rules in other tables).
    let want_ports: BTreeSet<(IpAddr, u16)> = ctrl
        .networks()
        .iter()
        .flat_map(|n| n.endpoints())
        .flat_map(|e| e.info().unwrap().ports)
        .map(|p| (p.host_ip, p.host_port))
        .collect();
    let have_ports: BTreeSet<(IpAddr, u16)> = ctrl
        .port_bindings()
        .into_iter()
        .map(|(ip, _, port, _)| (ip, port))
        .collect();
    assert_eq!(have_ports, want_ports, "host ports vs records");
    let drift = ctrl.firewall_check().expect("firewall check");
    assert!(drift.is_empty(), "firewall vs records: {drift:#?}");

    let mut want_mounts = BTreeSet::new();
    let mut want_dirs = BTreeSet::new();
    for sb in ctrl.sandboxes() {
        let rec = sb.info().unwrap();
        assert_eq!(rec.state, Lifecycle::Ready, "sandbox {}", rec.container_id);
        if rec.owns_netns {
            want_mounts.insert(rec.netns_path.clone());
        } else {
            assert!(
                Netns::is_mounted_at(&rec.netns_path) || rec.netns_path.starts_with("/proc"),
                "the namespace of {} is there",
                rec.container_id
            );
        }
        want_dirs.insert(rec.files_dir.clone());
        let eps = joined.remove(&rec.id).unwrap_or_default();
        // The hosts file lists exactly the joined endpoints' addresses under the hostname.
        if !rec.host_mode && !rec.hostname.is_empty() {
            let listed: BTreeSet<IpAddr> = read(&sb.hosts_path().unwrap())
                .lines()
                .filter_map(|l| l.split_once('\t'))
                .filter(|(_, names)| names.split(' ').any(|n| n == rec.hostname))
                .map(|(ip, _)| ip.parse().expect("an address"))
                .collect();
            let want: BTreeSet<IpAddr> = eps
                .iter()
                .flat_map(|e| e.addr_v4.iter().chain(e.addr_v6.iter()).map(|a| a.addr()))
                .collect();
            assert_eq!(listed, want, "hosts of {}", rec.container_id);
        }
        if rec.host_mode {
            continue;
        }
        let mut nl = ns_nl(&rec.netns_path);
        let want_ifs: BTreeSet<String> = eps
            .iter()
            .filter_map(|e| e.join.as_ref().and_then(|j| j.container_ifname.clone()))
            .collect();
        assert_eq!(
            links_in(&rec.netns_path),
            want_ifs,
            "interfaces in {}",
            rec.container_id
        );
        for e in &eps {
            let Some(ifname) = e.join.as_ref().and_then(|j| j.container_ifname.clone()) else {
                continue;
            };
            let l = must_link(&mut nl, &ifname);
            assert!(l.up, "{ifname} in {} is up", rec.container_id);
            assert_eq!(l.mac.map(|m| lnet_core::format_mac(&m)), e.mac);
            let have = addrs(&mut nl, &ifname);
            assert!(have.contains(&e.addr_v4.unwrap()), "{ifname}: {have:?}");
        }
        // The default route comes from the first endpoint in libnetwork's gateway order:
        // higher join priority first, internal networks never, then by network name.
        let mut order: Vec<(&EndpointRecord, &NetworkRecord)> =
            eps.iter().map(|e| (e, &nets[&e.network_id])).collect();
        order.sort_by_key(|(e, n)| {
            (
                std::cmp::Reverse(e.join.as_ref().unwrap().priority),
                n.name.clone(),
            )
        });
        let gw = order
            .iter()
            .filter(|(_, n)| !n.internal)
            .find_map(|(_, n)| n.pools.iter().find(|p| !p.is_v6()).and_then(|p| p.gateway))
            .map(|g| g.addr());
        assert_eq!(
            default_gw(&mut nl, IpFamily::V4),
            gw,
            "default route of {}",
            rec.container_id
        );
    }
    assert!(joined.is_empty(), "joins to unknown sandboxes: {joined:?}");
    let mounts = env.netns_mounts();
    // The host's own namespace, bound once for host-mode sandboxes, is not a sandbox's.
    let owned: BTreeSet<PathBuf> = mounts
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "default"))
        .cloned()
        .collect();
    assert_eq!(owned, want_mounts, "namespace mounts vs sandboxes");
    assert_eq!(env.netns_files(), mounts, "netns files without a mount");
    assert_eq!(
        env.sandbox_dirs(),
        want_dirs,
        "sandbox file directories vs sandboxes"
    );
}

/// Two sandboxes on one network: `a` (endpoint `ea`) and `b` (endpoint `eb`, publishing
/// host port 8080 to its port 80).
pub struct Pair {
    pub net: Network,
    pub a: Sandbox,
    pub b: Sandbox,
    pub ea: Endpoint,
    pub eb: Endpoint,
}

/// Makes a [`Pair`] on a new bridge network `name` with `subnet`.
pub fn pair(ctrl: &Controller, name: &str, subnet: &str) -> Pair {
    let net = bridge_on(ctrl, name, subnet);
    let (a, b) = (sandbox(ctrl, "a"), sandbox(ctrl, "b"));
    let ea = attach(&net, "ea", &a);
    let eb = net
        .create_endpoint(
            "eb",
            EndpointOptions {
                ports: vec![lnet_core::PortSpec::parse("8080:80").unwrap()],
                ..Default::default()
            },
        )
        .unwrap();
    eb.join(&b, JoinOptions::default()).unwrap();
    Pair { net, a, b, ea, eb }
}
