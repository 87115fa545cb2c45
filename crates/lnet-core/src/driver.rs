//! The network driver interface, and the registry a controller finds drivers in.
//!
//! A driver plans a network before anything is written (parsing and validating its options,
//! choosing the names of every kernel object it will make), and then makes and removes
//! those objects with idempotent steps. What it must do is small: plan, make and remove a
//! network, plan a join, join and leave. Everything else it *states* — its
//! [`Capabilities`], the links it wants for a network and a join ([`Wanted`]), its firewall
//! facts, its gateways — and the controller does the rest the same way for every driver:
//! `doctor` compares what a driver wants with the kernel, repair and self-healing put the
//! difference right, recovery replays and sweeps. Drivers reach the kernel only through
//! [`HostOps`] and [`SandboxOps`], never a global, and never touch the store: the controller
//! journals.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use lnet_store::{EndpointRecord, JoinRecord, NetworkRecord, SandboxRecord};

use crate::config::Config;
use crate::error::{CoreError, Result};
use crate::firewall::Want;
use crate::ipam_driver::{IpamDriver, IpamFinder};
use crate::kernel::{HostLinks, HostOps, Links, Orphan, SandboxOps};
use crate::want::Wanted;

/// Where a driver's networks live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// On this host only.
    Local,
    /// On every host of a cluster.
    Global,
}

/// What a driver can do, stated once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Where its networks live.
    pub scope: Scope,
    /// Its endpoints get addresses from IPAM.
    pub uses_ipam: bool,
    /// A network needs an IPv4 pool.
    pub requires_ipv4: bool,
    /// Networks may share a subnet (taking different ranges of it, as macvlan networks on
    /// one LAN do).
    pub shares_subnets: bool,
    /// At most one network of this driver may exist (`host`, `null`).
    pub singleton: bool,
    /// Its sandboxes share the host's namespace (`Some(true)`), must have their own
    /// (`Some(false)`), or either.
    pub host_mode: Option<bool>,
    /// Its endpoint and join calls reach outside lnet (a plugin): an endpoint is journaled
    /// `creating` and `deleting` around [`Driver::create_endpoint`] and
    /// [`Driver::delete_endpoint`], and no call is made holding a lock other changes need.
    pub calls_out: bool,
}

impl Default for Capabilities {
    fn default() -> Capabilities {
        Capabilities {
            scope: Scope::Local,
            uses_ipam: true,
            requires_ipv4: false,
            shares_subnets: false,
            singleton: false,
            host_mode: Some(false),
            calls_out: false,
        }
    }
}

/// What a driver sees when it plans a new network.
#[derive(Debug)]
pub struct PlanNetwork<'a> {
    /// The id chosen for the network.
    pub id: &'a str,
    /// Its name.
    pub name: &'a str,
    /// The driver options as given.
    pub options: &'a BTreeMap<String, String>,
    /// Whether IPv6 is enabled.
    pub enable_ipv6: bool,
    /// Whether the network is internal.
    pub internal: bool,
    /// The other networks of this driver, to check for conflicts (bridge names, …).
    pub others: Vec<&'a NetworkRecord>,
    /// The host kernel, to check that planned names are free.
    pub host: &'a mut dyn HostOps,
    /// Set by the driver when the network takes over an existing link of lnet's that no
    /// record names (a bridge it made before its store was lost): the link's index. Routes
    /// through it do not count against automatically chosen pools, so the network can get
    /// the subnet it had.
    pub adopted: Option<u32>,
}

/// The names a join will use, chosen before anything is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinPlan {
    /// The host end's name, if the join makes one.
    pub host_ifname: Option<String>,
    /// The prefix of the interface in the sandbox (`eth`, an index is appended), if the
    /// join puts one there.
    pub iface_prefix: Option<String>,
    /// For an engine's sandbox ([`SandboxRecord::handover`]): the name, free in the host
    /// namespace, the interface is made under for the engine to take. A driver that leaves
    /// it `None` cannot hand interfaces over.
    pub handover_ifname: Option<String>,
}

impl JoinPlan {
    /// The plan of a join that puts one interface in the sandbox and nothing in the host
    /// (a plugin's, a macvlan's): refused for a sandbox lnet does not open (host
    /// networking, an engine's namespace), `what` naming the network in the refusal.
    pub fn sandbox_side(sandbox: &SandboxRecord, what: &str) -> Result<JoinPlan> {
        if !sandbox.lnet_inside() {
            return Err(CoreError::Forbidden(format!(
                "sandbox {} uses host networking or an engine's namespace, and cannot join {what}",
                sandbox.container_id
            )));
        }
        Ok(JoinPlan {
            host_ifname: None,
            iface_prefix: Some("eth".into()),
            handover_ifname: None,
        })
    }
}

/// The name a join's interface has in the sandbox, as journaled.
pub fn sandbox_ifname<'a>(ep: &EndpointRecord, join: &'a JoinRecord) -> Result<&'a str> {
    join.container_ifname.as_deref().ok_or_else(|| {
        CoreError::Forbidden(format!(
            "endpoint {} has a join record without its interface name; leave and join again",
            ep.name
        ))
    })
}

/// Whether [`Driver::join`] makes a join for the first time or puts an existing one right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinMode {
    /// Nothing of it exists yet: the fast path.
    Fresh,
    /// Some of it may exist (recovery, repair, self-healing): what is right is kept.
    Repair,
}

/// Facts about one network that generic code needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkFacts {
    /// The gateways a sandbox routes through on this network (IPv4, IPv6).
    pub gateways: (Option<IpAddr>, Option<IpAddr>),
    /// The host address a published port binds when the request names none; why it
    /// publishes none otherwise.
    pub publish_on: std::result::Result<IpAddr, String>,
    /// Its endpoints get names on the embedded DNS.
    pub resolves_names: bool,
}

impl NetworkFacts {
    /// A network with no gateways, no ports, no names, no forwarding.
    pub fn none(net: &NetworkRecord) -> NetworkFacts {
        NetworkFacts {
            gateways: (None, None),
            publish_on: Err(format!(
                "network {} ({} driver) does not publish ports",
                net.name, net.driver
            )),
            resolves_names: false,
        }
    }
}

/// A network driver.
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// The name networks are created with (`bridge`, `host`, `null`, a plugin's).
    fn name(&self) -> &str;

    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// Gets ready for a change (a plugin is found and activated here), before any lock is
    /// taken: the plan and the steps after it must not wait on anything outside lnet.
    fn prepare(&self) -> Result<()> {
        Ok(())
    }

    /// Whether the driver can be reached now (a plugin may have gone); why not. `doctor`
    /// reports a network whose driver cannot be reached rather than failing.
    fn reachable(&self) -> std::result::Result<(), String> {
        Ok(())
    }

    /// Parses and validates options and returns the driver state to persist, which names
    /// every kernel object the network will make. Must not change anything.
    fn plan_network(&self, plan: &mut PlanNetwork<'_>) -> Result<serde_json::Value>;

    /// Makes (or puts right) the network's kernel objects. Idempotent.
    fn create_network(
        &self,
        host: &mut dyn HostOps,
        net: &NetworkRecord,
        config: &Config,
    ) -> Result<()>;

    /// Removes the network's kernel objects. Idempotent: removing what is gone is fine. Keeps
    /// going past a step that fails and reports every failure.
    fn delete_network(&self, host: &mut dyn HostOps, net: &NetworkRecord) -> Result<()>;

    /// Checks that `sandbox` may join and chooses the join's names. Changes nothing.
    fn plan_join(
        &self,
        host: &mut dyn HostOps,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        sandbox: &SandboxRecord,
    ) -> Result<JoinPlan>;

    /// Makes the join's kernel objects as [`Driver::want_join`] states them. With
    /// [`JoinMode::Repair`] what exists is read first, kept where right and completed.
    /// Idempotent either way. On error the caller undoes it with [`Driver::leave`].
    fn join(
        &self,
        host: &mut dyn HostOps,
        sandbox: &mut dyn SandboxOps,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        join: &JoinRecord,
        mode: JoinMode,
    ) -> Result<()>;

    /// Removes what [`Driver::join`] made. Idempotent. `sandbox` is `None` when the
    /// sandbox's namespace is already gone.
    fn leave(
        &self,
        host: &mut dyn HostOps,
        sandbox: Option<&mut dyn SandboxOps>,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        join: &JoinRecord,
    ) -> Result<()>;

    /// Called when an endpoint is created, before it is recorded ready (a remote driver
    /// asks its plugin here). Most drivers make nothing until the join.
    fn create_endpoint(&self, _net: &NetworkRecord, _ep: &EndpointRecord) -> Result<()> {
        Ok(())
    }

    /// Called when an endpoint is deleted. Idempotent.
    fn delete_endpoint(&self, _net: &NetworkRecord, _ep: &EndpointRecord) -> Result<()> {
        Ok(())
    }

    /// What a network needs beyond its wanted links, put right at every start even when
    /// its links are (sysctls, say). [`Driver::create_network`] does it too.
    fn refresh_network(
        &self,
        _host: &mut dyn HostOps,
        _net: &NetworkRecord,
        _config: &Config,
    ) -> Result<()> {
        Ok(())
    }

    /// The links a ready network wants in the kernel.
    fn want_network(&self, _net: &NetworkRecord) -> Wanted {
        Wanted::default()
    }

    /// The links a join wants in the kernel.
    fn want_join(&self, _net: &NetworkRecord, _ep: &EndpointRecord, _join: &JoinRecord) -> Wanted {
        Wanted::default()
    }

    /// Facts about a network that generic code needs.
    fn facts(&self, net: &NetworkRecord) -> NetworkFacts {
        NetworkFacts::none(net)
    }

    /// Adds to `want` the firewall elements of this network and of its endpoints that are
    /// joined (or joining): what the kernel should hold, derived from records alone.
    fn firewall(&self, _net: &NetworkRecord, _joined: &[&EndpointRecord], _want: &mut Want) {}

    /// The host links whose forwarded traffic other engines' drop-policy forward chains
    /// must let through.
    fn forward_links(&self, _net: &NetworkRecord) -> Vec<String> {
        Vec::new()
    }

    /// Extra facts for [`crate::Endpoint::driver_info`].
    fn endpoint_info(
        &self,
        _net: &NetworkRecord,
        _ep: &EndpointRecord,
    ) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    /// Host links this driver made that no record names: on a ready network (a crash
    /// between making an interface and recording it), or carrying its mark with no network
    /// at all (a lost store). `links` are the host's bridges and bridge ports (a port's
    /// `kind` may be unknown: the caller confirms it is a veth before it removes it);
    /// `named` every host interface a record names; `networks` every network record.
    fn leftovers(
        &self,
        _links: &HostLinks<'_>,
        _named: &BTreeSet<String>,
        _networks: &[&NetworkRecord],
        _config: &Config,
    ) -> Vec<Orphan> {
        Vec::new()
    }

    /// Removes a leftover [`Driver::leftovers`] found.
    fn remove_leftover(&self, host: &mut dyn HostOps, orphan: &Orphan) -> Result<()> {
        host.delete_link(&orphan.name)
    }
}

/// Finds a driver lnet does not have built in, by name (a plugin in Docker's plugin
/// directories): `None` when there is no such name to find.
pub type Finder = dyn Fn(&str) -> Option<Arc<dyn Driver>> + Send + Sync;

/// The drivers a controller knows, by name: the built-in ones ([`crate::drivers::builtin`]),
/// any a library user registers, as libnetwork allows, and those a [`Finder`] finds on
/// first use (kept from then on).
#[derive(Clone, Default)]
pub struct Registry {
    drivers: BTreeMap<String, Arc<dyn Driver>>,
    finder: Option<Arc<Finder>>,
    found: Arc<std::sync::Mutex<BTreeMap<String, Arc<dyn Driver>>>>,
    ipam_finder: Option<Arc<IpamFinder>>,
    found_ipam: Arc<std::sync::Mutex<BTreeMap<String, Arc<dyn IpamDriver>>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("drivers", &self.drivers.keys().collect::<Vec<_>>())
            .field("finder", &self.finder.is_some())
            .field("ipam_finder", &self.ipam_finder.is_some())
            .field(
                "found",
                &self.found_now().keys().cloned().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Registry {
    /// No drivers.
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// Adds `driver` under its name; a name taken already is refused.
    pub fn register(&mut self, driver: Arc<dyn Driver>) -> Result<()> {
        let name = driver.name().to_string();
        if name.is_empty() || self.drivers.contains_key(&name) {
            return Err(CoreError::invalid(
                "driver",
                &name,
                "a driver needs a name of its own; this one is empty or registered already",
            ));
        }
        self.drivers.insert(name, driver);
        Ok(())
    }

    /// Drivers not built in are looked for with `finder` on first use.
    pub fn with_finder(mut self, finder: Arc<Finder>) -> Registry {
        self.finder = Some(finder);
        self
    }

    /// IPAM drivers not built in are looked for with `finder` on first use.
    pub fn with_ipam_finder(mut self, finder: Arc<IpamFinder>) -> Registry {
        self.ipam_finder = Some(finder);
        self
    }

    /// The IPAM driver called `name`: `None` for lnet's own ([`crate::ipam::IPAM_DRIVERS`]), else
    /// one found before or found now.
    pub fn ipam(&self, name: &str) -> Result<Option<Arc<dyn IpamDriver>>> {
        if crate::ipam::is_builtin(name) {
            return Ok(None);
        }
        if let Some(finder) = &self.ipam_finder {
            let found = || self.found_ipam.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(d) = found().get(name) {
                return Ok(Some(d.clone()));
            }
            if let Some(d) = finder(name) {
                return Ok(Some(found().entry(name.to_string()).or_insert(d).clone()));
            }
        }
        Err(CoreError::invalid(
            "IPAM.Driver",
            name,
            format!(
                "unknown IPAM driver; built in: {}{}",
                crate::ipam::IPAM_DRIVERS.join(", "),
                if self.ipam_finder.is_some() {
                    ", or a plugin's name"
                } else {
                    ""
                }
            ),
        ))
    }

    fn found_now(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<dyn Driver>>> {
        self.found.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The driver called `name`: registered, found before, or found now.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Driver>> {
        if let Some(d) = self.drivers.get(name) {
            return Ok(d.clone());
        }
        if let Some(finder) = &self.finder {
            if let Some(d) = self.found_now().get(name) {
                return Ok(d.clone());
            }
            // Found outside the lock: finding may ask the file system.
            if let Some(d) = finder(name) {
                return Ok(self
                    .found_now()
                    .entry(name.to_string())
                    .or_insert(d)
                    .clone());
            }
        }
        self.drivers.get(name).cloned().ok_or_else(|| {
            CoreError::invalid(
                "driver",
                name,
                format!(
                    "unknown network driver; known: {}",
                    self.names().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// Every driver's name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.drivers.keys().map(String::as_str)
    }

    /// Every driver built in or registered (not those found).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Driver>> {
        self.drivers.values()
    }

    /// Host links lnet made that no record names, among `links` (the host's bridges and
    /// bridge ports): each driver's [`Driver::leftovers`], and every link the background
    /// deleter was to remove. A candidate whose kind the dump did not say is looked up
    /// through `nl`: only veths are lnet's.
    pub(crate) fn leftovers(
        &self,
        nl: &mut dyn Links,
        links: &[lnet_kernel::Link],
        named: &BTreeSet<String>,
        networks: &[&NetworkRecord],
        config: &Config,
    ) -> Vec<Orphan> {
        let indexed = HostLinks::new(links);
        let mut orphans: Vec<Orphan> = self
            .iter()
            .flat_map(|d| d.leftovers(&indexed, named, networks, config))
            .collect();
        // Every `lnetgone…` link: only the background deleter names links so.
        for l in links
            .iter()
            .filter(|l| crate::reaper::is_gone_name(&l.name))
        {
            orphans.push(Orphan {
                name: l.name.clone(),
                noun: "interface",
                network: "(deleted)".into(),
                driver: None,
                marked: None,
                unrecorded: false,
            });
        }
        let known: std::collections::HashMap<&str, bool> = links
            .iter()
            .map(|l| (l.name.as_str(), l.kind.is_some()))
            .collect();
        orphans.retain(|o| {
            known.get(o.name.as_str()).copied().unwrap_or(false)
                || matches!(nl.link_by_name(&o.name), Ok(Some(l)) if l.is_kind("veth"))
        });
        orphans
    }
}
