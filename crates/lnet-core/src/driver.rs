//! The network driver interface and the context drivers work in.
//!
//! A driver plans a network before anything is written (parsing and validating its options,
//! choosing the names of every kernel object it will make), and then makes, repairs and
//! removes those objects with idempotent steps. Drivers get their kernel handles passed in;
//! they never reach for globals, and never touch the store: the controller journals.

use std::net::IpAddr;

use lnet_kernel::{Netlink, Netns};
use lnet_store::{EndpointRecord, JoinRecord, NetworkRecord, SandboxRecord};

use crate::config::Config;
use crate::doctor::Findings;
use crate::error::Result;
use crate::firewall::{Firewall, Want};

/// The host side of the kernel: the namespace the controller was created in, a netlink
/// socket opened there once and reused, and lnet's firewall there.
#[derive(Debug)]
pub struct HostKernel {
    /// The host network namespace.
    pub ns: Netns,
    /// A netlink socket in it.
    pub nl: Netlink,
    /// lnet's nftables tables in it.
    pub fw: Firewall,
    /// Deletes links in the background when set ([`Config::background_deletes`]).
    pub reaper: Option<crate::reaper::Reaper>,
    /// The forwarding sysctls lnet turned on in it.
    pub forwarding: crate::forwarding::Forwarding,
}

impl HostKernel {
    /// Whether link deletions may finish in the background.
    pub fn deletes_later(&self) -> bool {
        self.reaper.is_some()
    }

    /// Deletes host link `name`: queued to the background when [`HostKernel::deletes_later`],
    /// else now.
    pub fn delete_link(&mut self, name: &str) -> Result<()> {
        if let Some(r) = &self.reaper {
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
            .map_err(crate::error::CoreError::kernel(format!("delete {name}")))
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
    /// The sandbox's network namespace.
    pub ns: Netns,
    /// A netlink socket in it.
    pub nl: Netlink,
}

/// What a driver sees when it plans a new network.
#[derive(Debug)]
pub struct PlanNetwork<'a> {
    /// The id chosen for the network.
    pub id: &'a str,
    /// Its name.
    pub name: &'a str,
    /// The driver options as given.
    pub options: &'a std::collections::BTreeMap<String, String>,
    /// Whether IPv6 is enabled.
    pub enable_ipv6: bool,
    /// Whether the network is internal.
    pub internal: bool,
    /// The other networks of this driver, to check for conflicts (bridge names, …).
    pub others: Vec<&'a NetworkRecord>,
    /// The host kernel, to check that planned names are free.
    pub host: &'a mut HostKernel,
    /// Set by the driver when the network takes over an existing link of lnet's that no
    /// record names (a bridge it made before its store was lost): the link's index. Routes
    /// through it do not count against automatically chosen pools, so the network can get
    /// the subnet it had.
    pub adopted: Option<u32>,
}

/// A network driver.
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// The name networks are created with (`bridge`, `host`, `null`).
    fn name(&self) -> &'static str;

    /// Whether endpoints of this driver get addresses from IPAM.
    fn uses_ipam(&self) -> bool;

    /// Whether a network of this driver needs an IPv4 pool.
    fn requires_ipv4(&self) -> bool {
        false
    }

    /// Whether networks of this driver may share a subnet (taking different ranges of it,
    /// as macvlan networks on one LAN do). The bridge's may not.
    fn shares_subnets(&self) -> bool {
        false
    }

    /// At most one network of this driver may exist (`host`, `null`).
    fn singleton(&self) -> bool {
        false
    }

    /// Parses and validates options and returns the driver state to persist, which names
    /// every kernel object the network will make. Must not change anything.
    fn plan_network(&self, plan: &mut PlanNetwork<'_>) -> Result<serde_json::Value>;

    /// At start: makes the network's kernel objects right as [`Driver::create_network`]
    /// does, asking the kernel nothing that `view` (read once for every network) already
    /// shows right. Returns whether it went the long way (it may have changed links, so
    /// `view` no longer holds).
    fn recover_network(
        &self,
        host: &mut HostKernel,
        net: &NetworkRecord,
        config: &Config,
        _view: &HostView,
    ) -> Result<bool> {
        self.create_network(host, net, config).map(|()| true)
    }

    /// Makes (or repairs) the network's kernel objects. Idempotent.
    fn create_network(
        &self,
        host: &mut HostKernel,
        net: &NetworkRecord,
        config: &Config,
    ) -> Result<()>;

    /// Removes the network's kernel objects. Idempotent: removing what is gone is fine.
    fn delete_network(&self, host: &mut HostKernel, net: &NetworkRecord) -> Result<()>;

    /// Chooses the host-side interface name for a join, before anything is made.
    fn plan_join_host_ifname(
        &self,
        _host: &mut HostKernel,
        _ep: &EndpointRecord,
    ) -> Result<Option<String>> {
        Ok(None)
    }

    /// The interface name prefix inside the sandbox (`eth`), or `None` when the driver puts
    /// no interface in the sandbox.
    fn container_iface_prefix(&self, _net: &NetworkRecord) -> Option<String> {
        None
    }

    /// Makes the endpoint's interface in the sandbox; with `repair`, checks what exists
    /// first and completes or re-makes it (recovery). Idempotent either way.
    fn join(
        &self,
        host: &mut HostKernel,
        sandbox: &mut SandboxKernel,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        join: &JoinRecord,
        repair: bool,
    ) -> Result<()>;

    /// Removes what [`Driver::join`] made. Idempotent. `sandbox` is `None` when the
    /// sandbox's namespace is already gone.
    fn leave(
        &self,
        host: &mut HostKernel,
        sandbox: Option<&mut SandboxKernel>,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        join: &JoinRecord,
    ) -> Result<()>;

    /// Host interfaces of this network that lnet made but no record names (a crash between
    /// making an interface and its record reaching the disk): their names, to be removed.
    /// `links` are the host's bridges and bridge ports (a port's `kind` may be unknown: the
    /// caller confirms what it removes); `named` every host interface name a record holds.
    /// Only interfaces that carry the names this driver gives may be returned.
    fn orphans(
        &self,
        _net: &NetworkRecord,
        _links: &HostLinks<'_>,
        _named: &std::collections::BTreeSet<String>,
    ) -> Vec<String> {
        Vec::new()
    }

    /// The host address a published port binds when the request names none; an error
    /// that says why when this network publishes no ports (the default).
    fn default_host_ip(&self, net: &NetworkRecord) -> Result<IpAddr> {
        Err(crate::error::CoreError::invalid(
            crate::ports::FIELD,
            "",
            format!(
                "network {} ({} driver) does not publish ports",
                net.name, net.driver
            ),
        ))
    }

    /// Adds to `want` the firewall elements of this network and of its endpoints that are
    /// joined (or joining): what the kernel should hold, derived from records alone.
    fn firewall(&self, _net: &NetworkRecord, _joined: &[&EndpointRecord], _want: &mut Want) {}

    /// The gateways a sandbox uses through this network (IPv4, IPv6), if any.
    fn gateways(&self, _net: &NetworkRecord) -> (Option<IpAddr>, Option<IpAddr>) {
        (None, None)
    }

    /// Extra facts for [`crate::Endpoint::driver_info`].
    fn endpoint_info(
        &self,
        _net: &NetworkRecord,
        _ep: &EndpointRecord,
    ) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    /// Whether a sandbox of this kind may join a network of this driver.
    fn check_sandbox(&self, _sandbox: &SandboxRecord) -> Result<()> {
        Ok(())
    }

    /// Whether a join is exactly as its records say in `view` (then a start leaves it
    /// alone); `false` when not or unsure, and [`Driver::join`] repairs it.
    fn join_looks_right(
        &self,
        _net: &NetworkRecord,
        _ep: &EndpointRecord,
        _join: &JoinRecord,
        _view: KernelView<'_>,
    ) -> bool {
        false
    }

    /// What of the network's kernel objects differs from its record, added to `found`.
    /// Reads only: [`Driver::create_network`] is the repair.
    fn check_network(
        &self,
        _host: &mut HostKernel,
        _net: &NetworkRecord,
        _found: &mut Findings,
    ) -> Result<()> {
        Ok(())
    }

    /// What of a join's kernel objects differs from the records, added to `found`. Reads
    /// only: [`Driver::join`] with `repair` is the repair.
    fn check_join(
        &self,
        _host: &mut HostKernel,
        _sandbox: &mut SandboxKernel,
        _net: &NetworkRecord,
        _ep: &EndpointRecord,
        _join: &JoinRecord,
        _found: &mut Findings,
    ) -> Result<()> {
        Ok(())
    }
}
