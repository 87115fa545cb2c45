//! The controller's state: every record in memory, IPAM, the host ports, the resolvers and
//! the kernel handles, with the lookups every operation shares. Operations (`ops/`),
//! `doctor` and recovery are methods on [`State`] in files of their own; the controller
//! owns the one [`State`] and hands it to them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use lnet_ipam::{Ipam, IpamConfig, PortAllocator};
use lnet_store::{EndpointRecord, NetworkRecord, SandboxRecord, Store};

use crate::config::Config;
use crate::driver::{Driver, Registry};
use crate::error::{CoreError, Result};
use crate::ipam::IpamState;
use crate::kernel::{HostKernel, SandboxKernel};

/// What the operations read but never change: configuration, store and drivers.
#[derive(Debug)]
pub(crate) struct Cx {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) drivers: Registry,
}

impl Cx {
    pub(crate) fn driver(&self, name: &str) -> Result<Arc<dyn Driver>> {
        self.drivers.get(name)
    }

    /// The IPAM plugin of `net`; `None` when lnet's own IPAM serves it.
    pub(crate) fn ipam_of(
        &self,
        net: &NetworkRecord,
    ) -> Result<Option<Arc<dyn crate::ipam_driver::IpamDriver>>> {
        self.drivers.ipam(&net.ipam.driver)
    }
}

/// A sandbox in memory: its record and, while it is live, its kernel handles.
#[derive(Debug)]
pub(crate) struct SandboxEntry {
    pub(crate) rec: SandboxRecord,
    /// Shared so that an operation can work in the sandbox without the state lock; only one
    /// holding the sandbox's key (or every key) locks it, so it is never waited for.
    pub(crate) kernel: Option<Arc<Mutex<SandboxKernel>>>,
    /// Its namespace, for readers that take neither the state lock nor `kernel`'s.
    pub(crate) ns: Option<Arc<lnet_kernel::Netns>>,
}

impl SandboxEntry {
    /// A sandbox in memory, live when `kernel` is given.
    pub(crate) fn new(rec: SandboxRecord, kernel: Option<SandboxKernel>) -> SandboxEntry {
        SandboxEntry {
            rec,
            ns: kernel.as_ref().map(|k| Arc::clone(&k.ns)),
            kernel: kernel.map(|k| Arc::new(Mutex::new(k))),
        }
    }

    /// Its kernel handles, while it is live.
    pub(crate) fn kernel(&self) -> Option<MutexGuard<'_, SandboxKernel>> {
        self.kernel
            .as_ref()
            .map(|k| k.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// All mutable state of a controller.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) networks: BTreeMap<String, NetworkRecord>,
    pub(crate) endpoints: crate::index::Endpoints,
    pub(crate) sandboxes: BTreeMap<String, SandboxEntry>,
    pub(crate) ipam: IpamState,
    /// Host ports of published ports, derived from endpoint records.
    pub(crate) ports: PortAllocator,
    /// The sockets holding those ports on the host; they close with the controller.
    pub(crate) reserved: crate::hostports::Reserved,
    /// The sandboxes' resolvers ([`Config::embedded_dns`]).
    pub(crate) dns: Option<lnet_dns::Server>,
    pub(crate) host: HostKernel,
}

/// Every record, as of one moment between changes: a consistent view for readers. Each
/// list is in id order.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// Networks (every lifecycle state).
    pub networks: Vec<Arc<NetworkRecord>>,
    /// Endpoints.
    pub endpoints: Vec<Arc<EndpointRecord>>,
    /// Sandboxes.
    pub sandboxes: Vec<Arc<SandboxRecord>>,
}

/// Shares `prev`'s copy of every record that did not change, so that publishing after a
/// change copies only what the change touched: one pass over both lists (both in id
/// order), comparing revisions — a store write bumps a record's revision — and, for
/// endpoints, the join (which an undone join clears without a write when the disk fails).
fn share<'a, T: Clone + 'a>(
    prev: &[Arc<T>],
    now: impl Iterator<Item = &'a T>,
    key: impl Fn(&T) -> &str,
    same: impl Fn(&T, &T) -> bool,
) -> Vec<Arc<T>> {
    let mut out = Vec::with_capacity(prev.len() + 1);
    let mut i = 0;
    for r in now {
        while i < prev.len() && key(&prev[i]) < key(r) {
            i += 1;
        }
        match prev.get(i) {
            Some(p) if key(p) == key(r) && same(p, r) => out.push(Arc::clone(p)),
            _ => out.push(Arc::new(r.clone())),
        }
    }
    out
}

impl State {
    pub(crate) fn records(&self, prev: &Records) -> Records {
        Records {
            networks: share(
                &prev.networks,
                self.networks.values(),
                |n| n.id.as_str(),
                |a, b| a.revision == b.revision && a.state == b.state,
            ),
            endpoints: share(
                &prev.endpoints,
                self.endpoints.all(),
                |e| e.id.as_str(),
                |a, b| a.revision == b.revision && a.state == b.state && a.join == b.join,
            ),
            sandboxes: share(
                &prev.sandboxes,
                self.sandboxes.values().map(|s| &s.rec),
                |s| s.id.as_str(),
                |a, b| a.revision == b.revision && a.state == b.state,
            ),
        }
    }
}

/// The host's ephemeral port range (`net.ipv4.ip_local_port_range`, read in the calling
/// thread's namespace), or libnetwork's fallback 49153–65535 when it cannot be read.
fn ephemeral_port_range() -> (u16, u16) {
    let parsed = lnet_kernel::sysctl::get("net.ipv4.ip_local_port_range")
        .ok()
        .and_then(|v| {
            let mut it = v.split_whitespace().map(|p| p.parse::<u16>());
            match (it.next(), it.next()) {
                (Some(Ok(a)), Some(Ok(b))) if a > 0 && a <= b => Some((a, b)),
                _ => None,
            }
        });
    parsed.unwrap_or((49153, 65535))
}

impl State {
    /// No records yet: recovery (or an offline check) fills it.
    pub(crate) fn empty(
        config: &Config,
        host: HostKernel,
        dns: Option<lnet_dns::Server>,
    ) -> Result<State> {
        Ok(State {
            networks: BTreeMap::new(),
            endpoints: Default::default(),
            sandboxes: BTreeMap::new(),
            ipam: new_ipam(config)?,
            ports: new_ports()?,
            reserved: Default::default(),
            dns,
            host,
        })
    }
}

/// Empty IPAM with the configured pools; recovery replays the records into it.
pub(crate) fn new_ipam(config: &Config) -> Result<IpamState> {
    Ok(IpamState::new(Ipam::new(IpamConfig {
        local: config.default_address_pools.clone(),
        global: None,
        local_v6: config.default_address_pools_v6.clone(),
        global_v6: Vec::new(),
    })?))
}

/// An empty host-port allocator over the kernel's ephemeral range.
pub(crate) fn new_ports() -> Result<PortAllocator> {
    PortAllocator::new(ephemeral_port_range()).map_err(|source| CoreError::Port {
        field: "net.ipv4.ip_local_port_range".into(),
        source,
    })
}

impl State {
    /// Finds a network by exact name, full id or unique id prefix (Docker's lookup order).
    pub(crate) fn find_network(&self, key: &str) -> Result<&NetworkRecord> {
        if let Some(n) = self.networks.get(key) {
            return Ok(n);
        }
        if let Some(n) = self.networks.values().find(|n| n.name == key) {
            return Ok(n);
        }
        let matches: Vec<&NetworkRecord> = if key.is_empty() {
            vec![]
        } else {
            self.networks
                .values()
                .filter(|n| n.id.starts_with(key))
                .collect()
        };
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(CoreError::not_found("network", key)),
            _ => Err(CoreError::invalid(
                "network",
                key,
                "the id prefix matches several networks; give more of the id",
            )),
        }
    }

    /// Finds a sandbox by id, unique id prefix or container id.
    pub(crate) fn find_sandbox(&self, key: &str) -> Result<&SandboxEntry> {
        if let Some(s) = self.sandboxes.get(key) {
            return Ok(s);
        }
        if let Some(s) = self.sandboxes.values().find(|s| s.rec.container_id == key) {
            return Ok(s);
        }
        let matches: Vec<&SandboxEntry> = if key.is_empty() {
            vec![]
        } else {
            self.sandboxes
                .values()
                .filter(|s| s.rec.id.starts_with(key))
                .collect()
        };
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(CoreError::not_found("sandbox", key)),
            _ => Err(CoreError::invalid(
                "sandbox",
                key,
                "the id prefix matches several sandboxes; give more of the id",
            )),
        }
    }

    pub(crate) fn network_of(&self, ep: &EndpointRecord) -> Result<&NetworkRecord> {
        self.networks
            .get(&ep.network_id)
            .ok_or_else(|| CoreError::not_found("network", &ep.network_id))
    }

    /// The endpoints joined (or joining, or leaving) to a sandbox, in join order.
    pub(crate) fn joined(&self, sandbox_id: &str) -> Vec<&EndpointRecord> {
        let mut v: Vec<&EndpointRecord> = self.endpoints.in_sandbox(sandbox_id).collect();
        v.sort_by_key(|e| e.join.as_ref().map_or(0, |j| j.order));
        v
    }

    /// How messages name a sandbox: its container, or its id if it is gone.
    pub(crate) fn sandbox_label(&self, sandbox_id: &str) -> String {
        self.sandboxes
            .get(sandbox_id)
            .map_or_else(|| sandbox_id.to_string(), |s| s.rec.container_id.clone())
    }

    /// The names a sandbox's interfaces already use.
    pub(crate) fn used_ifnames(&self, sandbox_id: &str) -> BTreeSet<String> {
        self.joined(sandbox_id)
            .iter()
            .filter_map(|e| e.join.as_ref().and_then(|j| j.container_ifname.clone()))
            .collect()
    }
}
