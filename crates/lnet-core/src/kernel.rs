//! The kernel as lnet's core sees it: the host's and each sandbox's handles (namespace,
//! netlink socket, firewall), and the dumps that checks read once instead of asking
//! object by object. Drivers, operations, `doctor` and recovery all reach the kernel
//! through these; nothing here knows records or drivers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use lnet_kernel::{
    AddrFlags, BridgeOptions, IpFamily, IpNet, Link, Netlink, Netns, SubLinkSpec, VethSpec,
};

use crate::error::{CoreError, Result};
use crate::firewall::{Firewall, PortFw, Want};

/// The links and addresses of one network namespace: the narrow seam through which drivers
/// reach netlink (as youki's `Syscall`). [`Netlink`] is the real one; driver unit tests use
/// a recording fake ([`crate::testing`]), so what a driver asks of the kernel, in which
/// order, and what it undoes on failure is tested without root.
pub trait Links: std::fmt::Debug + Send {
    /// The link called `name`, if any.
    fn link_by_name(&mut self, name: &str) -> lnet_kernel::Result<Option<Link>>;
    /// Every bridge port, as its bridge describes it.
    fn bridge_ports(&mut self) -> lnet_kernel::Result<Vec<Link>>;
    /// Addresses, of one link or all: (link index, address).
    fn addresses(&mut self, index: Option<u32>) -> lnet_kernel::Result<Vec<(u32, IpNet)>>;
    /// Adds an address; `false` when it was there.
    fn add_address(
        &mut self,
        index: u32,
        net: IpNet,
        flags: AddrFlags,
    ) -> lnet_kernel::Result<bool>;
    /// Removes an address; `false` when it was not there.
    fn del_address(&mut self, index: u32, net: IpNet) -> lnet_kernel::Result<bool>;
    /// Makes bridge `name`, or returns the link of that name that exists.
    fn ensure_bridge(&mut self, name: &str, opts: BridgeOptions<'_>) -> lnet_kernel::Result<Link>;
    /// Makes a veth pair; the host end's index.
    fn create_veth(&mut self, spec: VethSpec<'_>) -> lnet_kernel::Result<u32>;
    /// Makes a link on a parent (macvlan, ipvlan, VLAN); its index if made here.
    fn create_sublink(&mut self, spec: SubLinkSpec<'_>) -> lnet_kernel::Result<Option<u32>>;
    /// Whether the kernel has link type `kind`; nothing is made.
    fn kind_supported(&mut self, kind: &str) -> lnet_kernel::Result<bool>;
    /// Deletes link `name`; `false` when it was not there.
    fn delete_link(&mut self, name: &str) -> lnet_kernel::Result<bool>;
    /// Brings a link up.
    fn set_up(&mut self, index: u32) -> lnet_kernel::Result<()>;
    /// Sets (or clears) a link's master.
    fn set_master(&mut self, index: u32, master: Option<u32>) -> lnet_kernel::Result<()>;
    /// Sets a bridge port's hairpin mode.
    fn set_hairpin(&mut self, index: u32, on: bool) -> lnet_kernel::Result<()>;
    /// Sets a bridge port's isolation.
    fn set_isolated(&mut self, index: u32, on: bool) -> lnet_kernel::Result<()>;
    /// Sets a link's MTU.
    fn set_mtu(&mut self, index: u32, mtu: u32) -> lnet_kernel::Result<()>;
    /// Sets a link's alias.
    fn set_alias(&mut self, index: u32, alias: &str) -> lnet_kernel::Result<()>;
    /// Sets a link's MAC.
    fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> lnet_kernel::Result<()>;
    /// Renames a link.
    fn rename(&mut self, index: u32, new_name: &str) -> lnet_kernel::Result<()>;
    /// Moves a link into namespace `ns` (a remote driver's interface into its sandbox); it
    /// keeps its name there and gets a new index.
    fn move_to_netns(&mut self, index: u32, ns: &Netns) -> lnet_kernel::Result<()>;
    /// Adds a route, or replaces the one to the same destination.
    fn replace_route(&mut self, route: &lnet_kernel::Route) -> lnet_kernel::Result<()>;
}

impl Links for Netlink {
    fn link_by_name(&mut self, name: &str) -> lnet_kernel::Result<Option<Link>> {
        Netlink::link_by_name(self, name)
    }
    fn bridge_ports(&mut self) -> lnet_kernel::Result<Vec<Link>> {
        Netlink::bridge_ports(self)
    }
    fn addresses(&mut self, index: Option<u32>) -> lnet_kernel::Result<Vec<(u32, IpNet)>> {
        Netlink::addresses(self, index)
    }
    fn add_address(
        &mut self,
        index: u32,
        net: IpNet,
        flags: AddrFlags,
    ) -> lnet_kernel::Result<bool> {
        Netlink::add_address(self, index, net, flags)
    }
    fn del_address(&mut self, index: u32, net: IpNet) -> lnet_kernel::Result<bool> {
        Netlink::del_address(self, index, net)
    }
    fn ensure_bridge(&mut self, name: &str, opts: BridgeOptions<'_>) -> lnet_kernel::Result<Link> {
        Netlink::ensure_bridge(self, name, opts)
    }
    fn create_veth(&mut self, spec: VethSpec<'_>) -> lnet_kernel::Result<u32> {
        Netlink::create_veth(self, spec)
    }
    fn create_sublink(&mut self, spec: SubLinkSpec<'_>) -> lnet_kernel::Result<Option<u32>> {
        Netlink::create_sublink(self, spec)
    }
    fn kind_supported(&mut self, kind: &str) -> lnet_kernel::Result<bool> {
        Netlink::kind_supported(self, kind)
    }
    fn delete_link(&mut self, name: &str) -> lnet_kernel::Result<bool> {
        Netlink::delete_link(self, name)
    }
    fn set_up(&mut self, index: u32) -> lnet_kernel::Result<()> {
        Netlink::set_up(self, index)
    }
    fn set_master(&mut self, index: u32, master: Option<u32>) -> lnet_kernel::Result<()> {
        Netlink::set_master(self, index, master)
    }
    fn set_hairpin(&mut self, index: u32, on: bool) -> lnet_kernel::Result<()> {
        Netlink::set_hairpin(self, index, on)
    }
    fn set_isolated(&mut self, index: u32, on: bool) -> lnet_kernel::Result<()> {
        Netlink::set_isolated(self, index, on)
    }
    fn set_mtu(&mut self, index: u32, mtu: u32) -> lnet_kernel::Result<()> {
        Netlink::set_mtu(self, index, mtu)
    }
    fn set_alias(&mut self, index: u32, alias: &str) -> lnet_kernel::Result<()> {
        Netlink::set_alias(self, index, alias)
    }
    fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> lnet_kernel::Result<()> {
        Netlink::set_mac(self, index, mac)
    }
    fn rename(&mut self, index: u32, new_name: &str) -> lnet_kernel::Result<()> {
        Netlink::rename(self, index, new_name)
    }
    fn move_to_netns(&mut self, index: u32, ns: &Netns) -> lnet_kernel::Result<()> {
        Netlink::move_to_netns(self, index, ns)
    }
    fn replace_route(&mut self, route: &lnet_kernel::Route) -> lnet_kernel::Result<()> {
        Netlink::replace_route(self, route)
    }
}

/// The host as a driver sees it: its links, lnet's firewall, and the few host settings a
/// network needs. [`HostKernel`] is the real one.
pub trait HostOps: std::fmt::Debug + Send {
    /// The host's links.
    fn links(&mut self) -> &mut dyn Links;
    /// Adds `add`'s firewall elements and removes `remove`'s, in one transaction.
    fn firewall(&mut self, add: &Want, remove: &Want) -> Result<()>;
    /// Forgets the conntrack entries of UDP ports that stop being published.
    fn flush_udp(&mut self, ports: &[PortFw]);
    /// Lets (or stops letting) traffic of bridge `name` through other engines' drop-policy
    /// forward chains.
    fn allow_forward(&mut self, name: &str, on: bool) -> Result<()>;
    /// Sets `/proc/sys/<path>` to `value` when the kernel has it and it differs.
    fn sysctl(&mut self, path: &[&str], value: &str) -> Result<()>;
    /// Turns IPv6 off on host link `name` (best effort; logged).
    fn disable_ipv6(&mut self, name: &str);
    /// Makes sure the kernel forwards `families`, guarded so that only lnet's traffic is
    /// forwarded where lnet turned it on (see [`crate::forwarding`]).
    fn forward(&mut self, families: &[IpFamily]) -> Result<()>;
    /// Whether link deletions may finish in the background.
    fn deletes_later(&self) -> bool;
    /// Deletes host link `name`: queued to the background when [`HostOps::deletes_later`],
    /// else now.
    fn delete_link(&mut self, name: &str) -> Result<()>;
}

/// A sandbox as a driver sees it: its links, and its namespace to make links in.
pub trait SandboxOps: std::fmt::Debug + Send {
    /// The sandbox's links.
    fn links(&mut self) -> &mut dyn Links;
    /// Its namespace, to create a veth's peer directly in (`None` in tests: the fake makes
    /// the peer itself).
    fn netns(&self) -> Option<&Netns>;
}

/// What every handle on the host shares: the namespace the controller was created in,
/// lnet's firewall there and the forwarding it turned on (each behind a short lock of its
/// own), and the background deleter.
#[derive(Debug)]
pub struct HostShared {
    /// The host network namespace.
    pub ns: Netns,
    fw: Mutex<Firewall>,
    forwarding: Mutex<crate::forwarding::Forwarding>,
    /// Deletes links in the background when set ([`crate::Config::background_deletes`]).
    pub reaper: Option<crate::reaper::Reaper>,
    /// Sockets of handles that were given back, for the next to take: a change's kernel
    /// work should not pay for a socket of its own every time.
    pool: Mutex<Vec<Netlink>>,
}

/// The most sockets kept for reuse; more are closed when given back.
const POOL: usize = 16;

/// A handle lent out by [`HostKernel::another`]; its socket goes back to the pool when it
/// is dropped.
#[derive(Debug)]
pub struct Lent(Option<HostKernel>);

impl std::ops::Deref for Lent {
    type Target = HostKernel;
    fn deref(&self) -> &HostKernel {
        self.0
            .as_ref()
            .expect("a lent handle is there until it is dropped")
    }
}

impl std::ops::DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut HostKernel {
        self.0
            .as_mut()
            .expect("a lent handle is there until it is dropped")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(HostKernel { shared, nl }) = self.0.take() {
            let mut pool = shared.pool.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < POOL {
                pool.push(nl);
            }
        }
    }
}

/// A handle on the host side of the kernel: the shared parts, and a netlink socket of its
/// own. The controller keeps one; work done without the controller's lock takes another
/// ([`HostKernel::another`]), so that changes to different networks do not queue on one
/// socket.
#[derive(Debug)]
pub struct HostKernel {
    /// What it shares with every other handle.
    pub shared: Arc<HostShared>,
    /// A netlink socket in the host namespace, this handle's alone.
    pub nl: Netlink,
}

impl HostKernel {
    /// The first handle on the host.
    pub fn new(
        ns: Netns,
        nl: Netlink,
        fw: Firewall,
        reaper: Option<crate::reaper::Reaper>,
        forwarding: crate::forwarding::Forwarding,
    ) -> HostKernel {
        HostKernel {
            shared: Arc::new(HostShared {
                ns,
                fw: Mutex::new(fw),
                forwarding: Mutex::new(forwarding),
                reaper,
                pool: Mutex::new(Vec::new()),
            }),
            nl,
        }
    }

    /// Another handle on the same host, with a netlink socket of its own: one given back
    /// earlier, or a new one (opened in the host namespace whatever thread asks).
    pub fn another(&self) -> Result<Lent> {
        let pooled = self
            .shared
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let nl = match pooled {
            Some(nl) => nl,
            None => self
                .shared
                .ns
                .run(Netlink::new)
                .and_then(|r| r)
                .map_err(CoreError::kernel(
                    "open a netlink socket in the host namespace",
                ))?,
        };
        Ok(Lent(Some(HostKernel {
            shared: Arc::clone(&self.shared),
            nl,
        })))
    }

    /// The host network namespace.
    pub fn ns(&self) -> &Netns {
        &self.shared.ns
    }

    /// lnet's firewall, for one short use (never held across another lock's wait).
    pub fn fw(&self) -> MutexGuard<'_, Firewall> {
        self.shared.fw.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The forwarding lnet turned on. Taken before [`HostKernel::fw`] when both are.
    pub fn forwarding(&self) -> MutexGuard<'_, crate::forwarding::Forwarding> {
        self.shared
            .forwarding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The background deleter, if links are deleted that way.
    pub fn reaper(&self) -> Option<&crate::reaper::Reaper> {
        self.shared.reaper.as_ref()
    }

    /// Whether link deletions may finish in the background.
    pub fn deletes_later(&self) -> bool {
        self.shared.reaper.is_some()
    }

    /// Deletes host link `name`: queued to the background when [`HostKernel::deletes_later`],
    /// else now.
    pub fn delete_link_later(&mut self, name: &str) -> Result<()> {
        if let Some(r) = &self.shared.reaper {
            match self.nl.set_group(name, crate::reaper::GONE_GROUP) {
                Ok(()) => {
                    r.delete_link(name.to_string());
                    return Ok(());
                }
                Err(e) if e.is_not_found() => return Ok(()),
                // Deleted now, then.
                Err(e) => {
                    tracing::debug!(link = %name, error = %e, "cannot queue a link for deletion")
                }
            }
        }
        self.nl
            .delete_link(name)
            .map(drop)
            .map_err(CoreError::kernel(format!("delete {name}")))
    }
}

impl HostOps for HostKernel {
    fn links(&mut self) -> &mut dyn Links {
        &mut self.nl
    }

    fn firewall(&mut self, add: &Want, remove: &Want) -> Result<()> {
        self.fw().apply(add, remove)
    }

    fn flush_udp(&mut self, ports: &[PortFw]) {
        self.fw().flush_udp(ports)
    }

    fn allow_forward(&mut self, name: &str, on: bool) -> Result<()> {
        if on {
            self.fw().add_foreign(name)
        } else {
            self.fw().remove_foreign(name)
        }
    }

    fn sysctl(&mut self, path: &[&str], value: &str) -> Result<()> {
        let joined = path.join("/");
        let set = self
            .shared
            .ns
            .run(|| -> lnet_kernel::Result<()> {
                // Absent (IPv6 disabled, say): nothing to set.
                match lnet_kernel::sysctl::get_path(path) {
                    Ok(v) if v.trim() != value => lnet_kernel::sysctl::set_path(path, value),
                    _ => Ok(()),
                }
            })
            .and_then(|r| r);
        set.map_err(CoreError::kernel(format!("set {joined} to {value}")))
    }

    fn disable_ipv6(&mut self, name: &str) {
        let owned = name.to_string();
        match self
            .shared
            .ns
            .run(move || lnet_kernel::sysctl::disable_ipv6(&owned))
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => {
                tracing::warn!(interface = %name, error = %e, "could not turn IPv6 off on a bridge port")
            }
        }
    }

    fn forward(&mut self, families: &[IpFamily]) -> Result<()> {
        let mut guard = self.forwarding();
        let forwarding: &mut crate::forwarding::Forwarding = &mut guard;
        let turn_on = self
            .shared
            .ns
            .run(|| -> Result<Vec<IpFamily>> {
                let mut off = Vec::new();
                for f in families {
                    if forwarding.record_on(*f)? {
                        off.push(*f);
                    }
                }
                Ok(off)
            })
            .map_err(CoreError::kernel("enter the host namespace for sysctls"))??;
        let mut want = Want::new();
        want.forward_guard(&guard.guarded());
        self.fw().apply(&want, &Want::new())?;
        // Forwarding goes on only with its guard in place (see `forwarding`).
        if !turn_on.is_empty() {
            let forwarding: &crate::forwarding::Forwarding = &guard;
            self.shared
                .ns
                .run(|| turn_on.iter().try_for_each(|f| forwarding.turn_on(*f)))
                .map_err(CoreError::kernel("enter the host namespace for sysctls"))??;
        }
        Ok(())
    }

    fn deletes_later(&self) -> bool {
        HostKernel::deletes_later(self)
    }

    fn delete_link(&mut self, name: &str) -> Result<()> {
        self.delete_link_later(name)
    }
}

/// The host namespace in a sandbox's place, for a join handed over to an engine: the peer
/// is made beside the host end, where the engine takes it from.
#[derive(Debug)]
pub struct HandoverSide(pub Lent);

impl SandboxOps for HandoverSide {
    fn links(&mut self) -> &mut dyn Links {
        &mut self.0.nl
    }

    fn netns(&self) -> Option<&Netns> {
        Some(self.0.ns())
    }
}

impl SandboxOps for SandboxKernel {
    fn links(&mut self) -> &mut dyn Links {
        &mut self.nl
    }

    fn netns(&self) -> Option<&Netns> {
        Some(self.ns.as_ref())
    }
}

/// One dump of the host's links and of a sandbox's links and addresses: what start-up
/// checks joins against, instead of several requests per join.
#[derive(Debug, Clone, Copy)]
pub struct KernelView<'a> {
    /// The host's links by name.
    pub host_links: &'a std::collections::HashMap<String, lnet_kernel::Link>,
    /// The sandbox's links by name.
    pub sandbox_links: &'a std::collections::HashMap<String, lnet_kernel::Link>,
    /// The sandbox's addresses: (link index, address).
    pub sandbox_addrs: &'a [(u32, lnet_kernel::IpNet)],
}

/// The host's bridges and bridge ports, by name and by the bridge they are on, for the
/// orphan search of every network at once (a scan of every link per network was
/// 10,000 × 1,000 steps at scale).
#[derive(Debug)]
pub struct HostLinks<'a> {
    /// Links by name.
    pub by_name: std::collections::HashMap<&'a str, &'a lnet_kernel::Link>,
    /// Ports by the index of their master.
    pub ports: std::collections::HashMap<u32, Vec<&'a lnet_kernel::Link>>,
}

impl<'a> HostLinks<'a> {
    /// Indexes `links`.
    pub fn new(links: &'a [lnet_kernel::Link]) -> HostLinks<'a> {
        let mut ports: std::collections::HashMap<u32, Vec<&lnet_kernel::Link>> =
            std::collections::HashMap::new();
        for l in links {
            if let Some(m) = l.master {
                ports.entry(m).or_default().push(l);
            }
        }
        HostLinks {
            by_name: links.iter().map(|l| (l.name.as_str(), l)).collect(),
            ports,
        }
    }
}

/// The host's bridges and their addresses, read once at start for every network.
#[derive(Debug, Default)]
pub struct HostView {
    /// Bridges by name.
    pub bridges: std::collections::HashMap<String, lnet_kernel::Link>,
    /// Addresses by link index.
    pub addrs: std::collections::HashMap<u32, Vec<lnet_kernel::IpNet>>,
}

/// A sandbox's side of the kernel: its namespace and a netlink socket opened there once.
#[derive(Debug)]
pub struct SandboxKernel {
    /// The sandbox's network namespace (shared with readers that take no lock).
    pub ns: Arc<Netns>,
    /// A netlink socket in it.
    pub nl: Netlink,
}

/// A sandbox's links by name and its addresses, from one dump each.
pub(crate) type SandboxView = (HashMap<String, Link>, Vec<(u32, IpNet)>);

/// The links of `nl`'s namespace by name, from one dump (empty when the dump fails: then
/// every check goes the long way).
pub(crate) fn links_by_name(nl: &mut lnet_kernel::Netlink) -> HashMap<String, Link> {
    nl.links()
        .map(|l| l.into_iter().map(|l| (l.name.clone(), l)).collect())
        .unwrap_or_default()
}

/// The host's links that lnet's checks read, by name: every bridge, and every bridge port
/// as its bridge describes it (`kind` unknown). Two dumps that skip what a full one spends
/// its time on (each veth's peer namespace, address families, link info), which at 10,000
/// veths was 0.3 s of a start. Empty when a dump fails: then every check goes the long way.
pub(crate) fn host_links(nl: &mut lnet_kernel::Netlink) -> HashMap<String, Link> {
    let ports = nl.bridge_ports();
    merge_host_links(ports, nl.links_of_kind("bridge"))
}

/// The host's bridges and bridge ports (a port as its bridge describes it), from two
/// dumps: every link lnet's leftovers could be.
pub(crate) fn bridges_and_ports(nl: &mut Netlink) -> lnet_kernel::Result<Vec<Link>> {
    let mut links = nl.bridge_ports()?;
    links.extend(nl.links_of_kind("bridge")?);
    Ok(links)
}

/// [`host_links`] from the two dumps.
pub(crate) fn merge_host_links(
    ports: lnet_kernel::Result<Vec<Link>>,
    bridges: lnet_kernel::Result<Vec<Link>>,
) -> HashMap<String, Link> {
    let (Ok(ports), Ok(bridges)) = (ports, bridges) else {
        return HashMap::new();
    };
    // A bridge enslaved to another appears twice: keep its whole description.
    ports
        .into_iter()
        .chain(bridges)
        .map(|l| (l.name.clone(), l))
        .collect()
}

/// A sandbox's [`SandboxView`].
pub(crate) fn sandbox_view(k: &mut SandboxKernel) -> SandboxView {
    view_of(&mut k.nl)
}

/// The [`SandboxView`] of the namespace `nl` is in.
pub(crate) fn view_of(nl: &mut lnet_kernel::Netlink) -> SandboxView {
    (links_by_name(nl), nl.addresses(None).unwrap_or_default())
}

/// A host interface lnet made that no record names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Its name.
    pub name: String,
    /// What reports call it: `bridge`, `interface`.
    pub noun: &'static str,
    /// The network it hangs on, as a report names it.
    pub network: String,
    /// The driver that removes it (`None`: a plain link delete does).
    pub driver: Option<String>,
    /// For a link carrying lnet's mark that no record names: the network id in the mark.
    pub marked: Option<String>,
    /// Whether only a lost record explains it (a marked link no network names, or a port
    /// of one), rather than a crash between making an interface and recording it.
    pub unrecorded: bool,
}
