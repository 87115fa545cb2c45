//! A recording fake of the kernel seam ([`HostOps`], [`SandboxOps`], [`Links`]) for unit
//! tests of driver logic without root: what a driver asks of the kernel, in which order,
//! and what it undoes when a step fails. It keeps the links and addresses it was asked to
//! make, so a test can also check what is left, and it fails the calls a test tells it to.
//! It stands in only for tests of a driver's own decisions; what only the kernel can prove
//! (packets, real netlink) stays in the root tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;
use lnet_kernel::{AddrFlags, BridgeOptions, IpFamily, KernelError, Link, Netns, VethSpec};

use crate::error::Result;
use crate::firewall::{PortFw, Want};
use crate::kernel::{HostOps, Links, SandboxOps};

/// One namespace's links and addresses.
#[derive(Debug, Default)]
pub(crate) struct Ns {
    pub(crate) links: BTreeMap<String, Link>,
    pub(crate) addrs: Vec<(u32, IpNet)>,
}

/// The host and one sandbox, the calls made to either, and the calls to fail.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub(crate) host: Ns,
    pub(crate) sandbox: Ns,
    /// Every call, in order: `host: set_up veth1`, `sandbox: add_address eth0 10.0.0.2/24`.
    pub(crate) calls: Vec<String>,
    /// A call whose text starts with one of these fails (once) with that errno.
    pub(crate) fail: Vec<(String, i32)>,
    /// Veth pairs: the host end's index, the peer's name in the sandbox.
    pairs: BTreeMap<u32, String>,
    next_index: u32,
    /// Link types this kernel lacks (`ipvlan`, `vlan`, `dummy`).
    pub(crate) kinds_missing: Vec<String>,
}

/// A world shared by a fake host and a fake sandbox.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fake(Arc<Mutex<World>>);

impl Fake {
    pub(crate) fn new() -> Fake {
        let f = Fake::default();
        f.world().next_index = 10;
        f
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The host side.
    pub(crate) fn host(&self) -> FakeHost {
        FakeHost {
            links: FakeLinks {
                fake: self.clone(),
                side: Side::Host,
            },
            deletes_later: false,
        }
    }

    /// The sandbox side.
    pub(crate) fn sandbox(&self) -> FakeSandbox {
        FakeSandbox {
            links: FakeLinks {
                fake: self.clone(),
                side: Side::Sandbox,
            },
        }
    }

    /// The calls made so far, and forgets them.
    pub(crate) fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.world().calls)
    }

    /// Makes the next call starting with `call` fail with `errno`.
    pub(crate) fn fail(&self, call: &str, errno: i32) {
        self.world().fail.push((call.to_string(), errno));
    }

    /// A link of `kind` called `name` on `side`, as if someone had made it.
    pub(crate) fn add_link(&self, side: Side, name: &str, kind: &str) -> u32 {
        let mut w = self.world();
        let index = w.next_index;
        w.next_index += 1;
        w.ns(side)
            .links
            .insert(name.into(), link(index, name, kind));
        index
    }

    /// The link called `name` on `side`.
    pub(crate) fn link(&self, side: Side, name: &str) -> Option<Link> {
        self.world().ns(side).links.get(name).cloned()
    }

    /// The addresses of link `name` on `side`.
    pub(crate) fn addrs(&self, side: Side, name: &str) -> Vec<IpNet> {
        let mut w = self.world();
        let ns = w.ns(side);
        let Some(index) = ns.links.get(name).map(|l| l.index) else {
            return Vec::new();
        };
        ns.addrs
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, a)| *a)
            .collect()
    }
}

/// Which namespace of the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Host,
    Sandbox,
}

impl World {
    fn ns(&mut self, side: Side) -> &mut Ns {
        match side {
            Side::Host => &mut self.host,
            Side::Sandbox => &mut self.sandbox,
        }
    }

    /// Records `call`, and fails it if a test asked for that.
    fn call(&mut self, side: Side, call: String) -> lnet_kernel::Result<()> {
        let who = match side {
            Side::Host => "host",
            Side::Sandbox => "sandbox",
        };
        let line = format!("{who}: {call}");
        self.calls.push(line.clone());
        if let Some(i) = self
            .fail
            .iter()
            .position(|(p, _)| line.starts_with(p.as_str()))
        {
            let (_, errno) = self.fail.remove(i);
            return Err(errno_error(&line, errno));
        }
        Ok(())
    }

    fn name_of(&mut self, side: Side, index: u32) -> lnet_kernel::Result<String> {
        self.ns(side)
            .links
            .values()
            .find(|l| l.index == index)
            .map(|l| l.name.clone())
            .ok_or_else(|| errno_error(&format!("link {index}"), libc::ENODEV))
    }

    fn edit(
        &mut self,
        side: Side,
        index: u32,
        what: &str,
        f: impl FnOnce(&mut Link),
    ) -> lnet_kernel::Result<()> {
        let name = self.name_of(side, index)?;
        self.call(side, format!("{what} {name}"))?;
        f(self.ns(side).links.get_mut(&name).expect("found above"));
        Ok(())
    }
}

fn errno_error(op: &str, errno: i32) -> KernelError {
    KernelError::Netlink {
        op: op.to_string(),
        errno,
        message: std::io::Error::from_raw_os_error(errno).to_string(),
        kernel_message: None,
    }
}

fn link(index: u32, name: &str, kind: &str) -> Link {
    Link {
        index,
        name: name.into(),
        kind: Some(kind.into()),
        mac: Some([2, 0, 0, 0, 0, index as u8]),
        mtu: 1500,
        up: false,
        lower_up: false,
        master: None,
        hairpin: None,
        isolated: None,
        alias: None,
    }
}

/// One side's links.
#[derive(Debug)]
pub(crate) struct FakeLinks {
    fake: Fake,
    side: Side,
}

impl Links for FakeLinks {
    fn link_by_name(&mut self, name: &str) -> lnet_kernel::Result<Option<Link>> {
        let mut w = self.fake.world();
        w.call(self.side, format!("link_by_name {name}"))?;
        Ok(w.ns(self.side).links.get(name).cloned())
    }

    fn bridge_ports(&mut self) -> lnet_kernel::Result<Vec<Link>> {
        let mut w = self.fake.world();
        w.call(self.side, "bridge_ports".into())?;
        Ok(w.ns(self.side)
            .links
            .values()
            .filter(|l| l.master.is_some())
            .cloned()
            .collect())
    }

    fn addresses(&mut self, index: Option<u32>) -> lnet_kernel::Result<Vec<(u32, IpNet)>> {
        let mut w = self.fake.world();
        let name = match index {
            Some(i) => w.name_of(self.side, i)?,
            None => "*".into(),
        };
        w.call(self.side, format!("addresses {name}"))?;
        Ok(w.ns(self.side)
            .addrs
            .iter()
            .filter(|(i, _)| index.is_none_or(|x| x == *i))
            .copied()
            .collect())
    }

    fn add_address(
        &mut self,
        index: u32,
        net: IpNet,
        _flags: AddrFlags,
    ) -> lnet_kernel::Result<bool> {
        let mut w = self.fake.world();
        let name = w.name_of(self.side, index)?;
        w.call(self.side, format!("add_address {name} {net}"))?;
        let ns = w.ns(self.side);
        if ns.addrs.contains(&(index, net)) {
            return Ok(false);
        }
        ns.addrs.push((index, net));
        Ok(true)
    }

    fn del_address(&mut self, index: u32, net: IpNet) -> lnet_kernel::Result<bool> {
        let mut w = self.fake.world();
        let name = w.name_of(self.side, index)?;
        w.call(self.side, format!("del_address {name} {net}"))?;
        let ns = w.ns(self.side);
        let before = ns.addrs.len();
        ns.addrs.retain(|a| *a != (index, net));
        Ok(ns.addrs.len() != before)
    }

    fn ensure_bridge(&mut self, name: &str, opts: BridgeOptions<'_>) -> lnet_kernel::Result<Link> {
        let mut w = self.fake.world();
        w.call(self.side, format!("ensure_bridge {name}"))?;
        if let Some(l) = w.ns(self.side).links.get(name) {
            return Ok(l.clone());
        }
        let index = w.next_index;
        w.next_index += 1;
        let mut l = link(index, name, "bridge");
        l.mtu = opts.mtu.unwrap_or(1500);
        l.mac = opts.mac;
        l.alias = opts.alias.map(String::from);
        w.ns(self.side).links.insert(name.into(), l.clone());
        Ok(l)
    }

    fn create_veth(&mut self, spec: VethSpec<'_>) -> lnet_kernel::Result<u32> {
        let mut w = self.fake.world();
        w.call(
            self.side,
            format!(
                "create_veth {} peer {} master {:?} up {}",
                spec.host_name, spec.peer_name, spec.host_master, spec.host_up
            ),
        )?;
        let exists = w.host.links.contains_key(spec.host_name)
            || w.sandbox.links.contains_key(spec.peer_name);
        if exists {
            return Err(errno_error(spec.host_name, libc::EEXIST));
        }
        let (hi, pi) = (w.next_index, w.next_index + 1);
        w.next_index += 2;
        let mut host = link(hi, spec.host_name, "veth");
        host.master = spec.host_master;
        host.up = spec.host_up;
        host.mtu = spec.host_mtu.unwrap_or(1500);
        if host.master.is_some() {
            host.hairpin = Some(false);
            host.isolated = Some(false);
        }
        let mut peer = link(pi, spec.peer_name, "veth");
        peer.mac = spec.peer_mac.or(peer.mac);
        peer.mtu = spec.peer_mtu.unwrap_or(1500);
        w.pairs.insert(hi, spec.peer_name.into());
        w.host.links.insert(spec.host_name.into(), host);
        w.sandbox.links.insert(spec.peer_name.into(), peer);
        Ok(hi)
    }

    fn create_sublink(
        &mut self,
        spec: lnet_kernel::SubLinkSpec<'_>,
    ) -> lnet_kernel::Result<Option<u32>> {
        let mut w = self.fake.world();
        let kind = spec.kind.kernel_kind();
        w.call(
            self.side,
            format!(
                "create_sublink {kind} {} parent {} in {}",
                spec.name,
                spec.parent,
                if spec.ns.is_some() { "sandbox" } else { "here" }
            ),
        )?;
        if w.kinds_missing.contains(&kind.to_string()) {
            return Err(errno_error(spec.name, libc::EOPNOTSUPP));
        }
        let side = if spec.ns.is_some() {
            Side::Sandbox
        } else {
            self.side
        };
        if w.ns(side).links.contains_key(spec.name) {
            return Err(errno_error(spec.name, libc::EEXIST));
        }
        let index = w.next_index;
        w.next_index += 1;
        let mut l = link(index, spec.name, kind);
        l.mac = spec.mac.or(l.mac);
        l.up = spec.up;
        w.ns(side).links.insert(spec.name.into(), l);
        Ok(spec.ns.is_none().then_some(index))
    }

    fn kind_supported(&mut self, kind: &str) -> lnet_kernel::Result<bool> {
        let mut w = self.fake.world();
        w.call(self.side, format!("kind_supported {kind}"))?;
        Ok(!w.kinds_missing.contains(&kind.to_string()))
    }

    fn delete_link(&mut self, name: &str) -> lnet_kernel::Result<bool> {
        let mut w = self.fake.world();
        w.call(self.side, format!("delete_link {name}"))?;
        let Some(l) = w.ns(self.side).links.remove(name) else {
            return Ok(false);
        };
        w.ns(self.side).addrs.retain(|(i, _)| *i != l.index);
        // A veth's peer goes with it.
        if self.side == Side::Host
            && let Some(peer) = w.pairs.remove(&l.index)
            && let Some(p) = w.sandbox.links.remove(&peer)
        {
            w.sandbox.addrs.retain(|(i, _)| *i != p.index);
        }
        Ok(true)
    }

    fn set_up(&mut self, index: u32) -> lnet_kernel::Result<()> {
        self.fake
            .world()
            .edit(self.side, index, "set_up", |l| l.up = true)
    }

    fn set_master(&mut self, index: u32, master: Option<u32>) -> lnet_kernel::Result<()> {
        self.fake
            .world()
            .edit(self.side, index, "set_master", |l| l.master = master)
    }

    fn set_hairpin(&mut self, index: u32, on: bool) -> lnet_kernel::Result<()> {
        self.fake
            .world()
            .edit(self.side, index, "set_hairpin", |l| l.hairpin = Some(on))
    }

    fn set_isolated(&mut self, index: u32, on: bool) -> lnet_kernel::Result<()> {
        self.fake
            .world()
            .edit(self.side, index, "set_isolated", |l| l.isolated = Some(on))
    }

    fn set_mtu(&mut self, index: u32, mtu: u32) -> lnet_kernel::Result<()> {
        self.fake
            .world()
            .edit(self.side, index, "set_mtu", |l| l.mtu = mtu)
    }

    fn set_alias(&mut self, index: u32, alias: &str) -> lnet_kernel::Result<()> {
        self.fake.world().edit(self.side, index, "set_alias", |l| {
            l.alias = Some(alias.into())
        })
    }

    fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> lnet_kernel::Result<()> {
        self.fake
            .world()
            .edit(self.side, index, "set_mac", |l| l.mac = Some(mac))
    }

    fn rename(&mut self, index: u32, new_name: &str) -> lnet_kernel::Result<()> {
        let mut w = self.fake.world();
        let old = w.name_of(self.side, index)?;
        w.call(self.side, format!("rename {old} {new_name}"))?;
        let ns = w.ns(self.side);
        let mut l = ns.links.remove(&old).expect("found above");
        l.name = new_name.into();
        ns.links.insert(new_name.into(), l);
        Ok(())
    }

    /// The fake has two namespaces: a link moves to the other one.
    fn move_to_netns(&mut self, index: u32, _ns: &Netns) -> lnet_kernel::Result<()> {
        let mut w = self.fake.world();
        let name = w.name_of(self.side, index)?;
        w.call(self.side, format!("move_to_netns {name}"))?;
        let l = w.ns(self.side).links.remove(&name).expect("found above");
        let other = match self.side {
            Side::Host => Side::Sandbox,
            Side::Sandbox => Side::Host,
        };
        w.ns(other).links.insert(name, l);
        Ok(())
    }

    fn replace_route(&mut self, route: &lnet_kernel::Route) -> lnet_kernel::Result<()> {
        self.fake
            .world()
            .call(self.side, format!("replace_route {}", route.dst))
    }
}

/// The fake host: its links, and a record of the firewall, sysctl and forwarding calls.
#[derive(Debug)]
pub(crate) struct FakeHost {
    links: FakeLinks,
    /// What [`HostOps::deletes_later`] answers.
    pub(crate) deletes_later: bool,
}

impl FakeHost {
    fn call(&self, call: String) -> Result<()> {
        self.links
            .fake
            .world()
            .call(Side::Host, call)
            .map_err(crate::error::CoreError::kernel("fake"))
    }
}

fn render(w: &Want) -> String {
    w.render()
        .into_values()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
}

impl HostOps for FakeHost {
    fn links(&mut self) -> &mut dyn Links {
        &mut self.links
    }

    fn firewall(&mut self, add: &Want, remove: &Want) -> Result<()> {
        self.call(format!("firewall +[{}] -[{}]", render(add), render(remove)))
    }

    fn flush_udp(&mut self, ports: &[PortFw]) {
        let _ = self.call(format!("flush_udp {}", ports.len()));
    }

    fn allow_forward(&mut self, name: &str, on: bool) -> Result<()> {
        self.call(format!("allow_forward {name} {on}"))
    }

    fn sysctl(&mut self, path: &[&str], value: &str) -> Result<()> {
        self.call(format!("sysctl {}={value}", path.join("/")))
    }

    fn disable_ipv6(&mut self, name: &str) {
        let _ = self.call(format!("disable_ipv6 {name}"));
    }

    fn forward(&mut self, families: &[IpFamily]) -> Result<()> {
        self.call(format!("forward {families:?}"))
    }

    fn deletes_later(&self) -> bool {
        self.deletes_later
    }

    fn delete_link(&mut self, name: &str) -> Result<()> {
        if self.deletes_later {
            return self.call(format!("delete_later {name}"));
        }
        self.links
            .delete_link(name)
            .map(drop)
            .map_err(crate::error::CoreError::kernel(format!("delete {name}")))
    }
}

/// The fake sandbox.
#[derive(Debug)]
pub(crate) struct FakeSandbox {
    links: FakeLinks,
}

impl SandboxOps for FakeSandbox {
    fn links(&mut self) -> &mut dyn Links {
        &mut self.links
    }

    fn netns(&self) -> Option<&Netns> {
        None
    }
}

/// Records for driver tests: an endpoint (`10.7.0.2/24`, a MAC, with or without a published
/// port), its join into sandbox `s` (`vethfedcba9` / `eth0`), and the sandbox.
pub(crate) mod records {
    use std::collections::BTreeMap;

    use lnet_store::{
        EndpointRecord, JoinRecord, JoinState, Lifecycle, PortMapping, Proto, SCHEMA_VERSION,
        SandboxRecord,
    };

    pub(crate) fn endpoint(ports: bool) -> EndpointRecord {
        EndpointRecord {
            schema: SCHEMA_VERSION,
            state: Lifecycle::Ready,
            revision: 1,
            id: "fedcba9876543210".repeat(4),
            name: "e".into(),
            network_id: "0123456789abcdef".repeat(4),
            mac: Some("02:42:0a:07:00:02".into()),
            addr_v4: Some("10.7.0.2/24".parse().unwrap()),
            addr_v6: None,
            aliases: Vec::new(),
            options: BTreeMap::new(),
            ports: if ports {
                vec![PortMapping {
                    proto: Proto::Tcp,
                    host_ip: "0.0.0.0".parse().unwrap(),
                    host_port: 8080,
                    container_port: 80,
                }]
            } else {
                Vec::new()
            },
            join: None,
            ephemeral: false,
        }
    }

    pub(crate) fn join_record() -> JoinRecord {
        JoinRecord {
            sandbox_id: "s".into(),
            state: JoinState::Joined,
            host_ifname: Some("vethfedcba9".into()),
            container_ifname: Some("eth0".into()),
            priority: 0,
            order: 0,
            handover: None,
        }
    }

    pub(crate) fn sandbox_record(host_mode: bool) -> SandboxRecord {
        SandboxRecord {
            schema: SCHEMA_VERSION,
            state: Lifecycle::Ready,
            revision: 1,
            id: "s".into(),
            container_id: "c".into(),
            netns_path: "/nonexistent".into(),
            owns_netns: true,
            files_dir: "/nonexistent".into(),
            hostname: String::new(),
            domainname: String::new(),
            dns: Vec::new(),
            dns_search: Vec::new(),
            dns_options: Vec::new(),
            extra_hosts: Vec::new(),
            host_mode,
            handover: false,
        }
    }
}

pub(crate) use records::{endpoint, join_record, sandbox_record};
