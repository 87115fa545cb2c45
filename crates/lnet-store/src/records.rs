//! The persisted shape of lnet's objects.
//!
//! Records are the one source of truth (DESIGN §3.1): IPAM allocations, DNS tables and the
//! firewall are derived from them at start. Each record carries its schema version, its
//! lifecycle state and a revision for compare-and-swap. A record is written *before* the kernel
//! is touched and names every kernel object the operation will make, so that recovery knows
//! what to finish or undo without guessing.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
pub use lnet_ipam::ports::Proto;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The schema version this build writes and fully understands.
pub const SCHEMA_VERSION: u32 = 1;

/// Where a record stands in its multi-step life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Written before the kernel work of a create; rolled back if found at start.
    Creating,
    /// Complete; re-derived and reconciled at start.
    Ready,
    /// Written before the kernel work of a delete; finished if found at start.
    Deleting,
}

impl std::fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lifecycle::Creating => "creating",
            Lifecycle::Ready => "ready",
            Lifecycle::Deleting => "deleting",
        })
    }
}

/// A kind of record: which table it lives in and how it is identified.
pub trait Record: Serialize + DeserializeOwned + Clone {
    /// The store table (and key prefix) of this kind.
    const KIND: RecordKind;
    /// The record's unique id (its key).
    fn id(&self) -> &str;
    /// The schema version the record was written with.
    fn schema(&self) -> u32;
    /// The revision stored with the record; bumped by every successful put.
    fn revision(&self) -> u64;
    /// Set by the store after a put.
    fn set_revision(&mut self, revision: u64);
    /// The lifecycle state.
    fn state(&self) -> Lifecycle;
}

/// The tables of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// [`NetworkRecord`]s.
    Network,
    /// [`EndpointRecord`]s.
    Endpoint,
    /// [`SandboxRecord`]s.
    Sandbox,
}

impl RecordKind {
    /// The table name, also used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Network => "network",
            RecordKind::Endpoint => "endpoint",
            RecordKind::Sandbox => "sandbox",
        }
    }

    /// Every kind, in the order recovery loads them.
    pub const ALL: [RecordKind; 3] = [
        RecordKind::Network,
        RecordKind::Endpoint,
        RecordKind::Sandbox,
    ];
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! impl_record {
    ($ty:ty, $kind:expr) => {
        impl Record for $ty {
            const KIND: RecordKind = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn schema(&self) -> u32 {
                self.schema
            }
            fn revision(&self) -> u64 {
                self.revision
            }
            fn set_revision(&mut self, revision: u64) {
                self.revision = revision;
            }
            fn state(&self) -> Lifecycle {
                self.state
            }
        }
    };
}

/// One IPAM configuration entry as the user gave it (Docker's `IPAM.Config[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamPoolConfig {
    /// `Subnet`: the pool to use; none means "pick one from the default pools".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<IpNet>,
    /// `IPRange`: a sub-pool that endpoint addresses come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<IpNet>,
    /// `Gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// `AuxiliaryAddresses`: name → address, reserved and never handed to an endpoint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, IpAddr>,
}

/// The IPAM part of a network as the user asked for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamSpec {
    /// IPAM driver name (`default`, `null`).
    pub driver: String,
    /// IPAM driver options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// IPv4 configs (empty: one automatic pool).
    #[serde(default)]
    pub v4: Vec<IpamPoolConfig>,
    /// IPv6 configs.
    #[serde(default)]
    pub v6: Vec<IpamPoolConfig>,
}

/// What IPAM granted a network: persisted before any kernel work so that the start-up replay
/// re-requests exactly these pools and addresses (never a new pick).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolAssignment {
    /// The master pool (the network's subnet).
    pub pool: IpNet,
    /// The sub-pool addresses come from, when `ip-range` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_pool: Option<IpNet>,
    /// The gateway address with the pool's prefix length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpNet>,
    /// Auxiliary addresses reserved in the pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, IpAddr>,
    /// The pool's id at a remote IPAM driver (a plugin), which every later call about the
    /// pool names; `None` for lnet's built-in IPAM, which needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
    /// The remote IPAM driver's address space the pool is in (a network driver that is a
    /// plugin is told it); `None` for lnet's built-in IPAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_space: Option<String>,
}

impl PoolAssignment {
    /// Whether this is an IPv6 pool.
    pub fn is_v6(&self) -> bool {
        matches!(self.pool, IpNet::V6(_))
    }
}

/// A network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// Schema version (see [`SCHEMA_VERSION`]).
    pub schema: u32,
    /// Lifecycle state.
    pub state: Lifecycle,
    /// Revision for compare-and-swap.
    pub revision: u64,
    /// 64 hex characters.
    pub id: String,
    /// Unique per host.
    pub name: String,
    /// Driver name (`bridge`, `host`, `null`, …).
    pub driver: String,
    /// `local` or `global`.
    pub scope: String,
    /// Creation time, Unix nanoseconds.
    pub created_unix_nanos: u128,
    /// IPAM as requested.
    pub ipam: IpamSpec,
    /// IPAM as granted.
    #[serde(default)]
    pub pools: Vec<PoolAssignment>,
    /// IPv6 enabled.
    #[serde(default)]
    pub enable_ipv6: bool,
    /// No traffic to or from outside the network.
    #[serde(default)]
    pub internal: bool,
    /// Attachable (stored for API compatibility).
    #[serde(default)]
    pub attachable: bool,
    /// User labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver options exactly as given (`com.docker.network.bridge.name`, …).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The driver's parsed configuration and the names of the kernel objects it makes,
    /// chosen before they are made.
    #[serde(default)]
    pub driver_state: serde_json::Value,
}
impl_record!(NetworkRecord, RecordKind::Network);

/// Where an endpoint stands in joining a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinState {
    /// Written before the interface is made; rolled back if found at start.
    Joining,
    /// The interface is in the sandbox and configured.
    Joined,
    /// Written before the interface is removed; finished if found at start.
    Leaving,
}

/// An endpoint's attachment to a sandbox, with the names of the interfaces it makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRecord {
    /// The sandbox joined.
    pub sandbox_id: String,
    /// Progress of the join or leave.
    pub state: JoinState,
    /// Host-side interface name (for veth based drivers), chosen before it is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ifname: Option<String>,
    /// Interface name inside the sandbox (`eth0`, …), chosen before it is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_ifname: Option<String>,
    /// Join priority: a higher one is preferred as the sandbox's gateway endpoint.
    #[serde(default)]
    pub priority: i32,
    /// Join order within the sandbox (monotonic), a tie breaker for interface naming.
    #[serde(default)]
    pub order: u64,
    /// A join handed over to an engine (Docker's plugin protocol): the peer is made in the
    /// host namespace as `container_ifname` and the engine moves it into its sandbox and names
    /// it `<prefix><n>` — this prefix. lnet then owns only the host end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<String>,
}

/// An endpoint: a container's attachment to a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// Schema version.
    pub schema: u32,
    /// Lifecycle state.
    pub state: Lifecycle,
    /// Revision for compare-and-swap.
    pub revision: u64,
    /// 64 hex characters.
    pub id: String,
    /// Unique within its network.
    pub name: String,
    /// The network it belongs to.
    pub network_id: String,
    /// MAC address (`aa:bb:cc:dd:ee:ff`), if the driver uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// IPv4 address with the pool's prefix length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr_v4: Option<IpNet>,
    /// IPv6 address with the pool's prefix length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr_v6: Option<IpNet>,
    /// DNS aliases on this network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Driver/endpoint options as given.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Published ports, one per host port, with the host ports already chosen: the host
    /// port allocator and the firewall's DNAT map are rebuilt from these at start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// The join, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinRecord>,
    /// The endpoint lives only while joined (the daemon's `connect` makes it and joins it,
    /// `disconnect` leaves and deletes it): found not joined at start — a crash between
    /// the two steps — it is deleted, its address and host ports freed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
}
impl_record!(EndpointRecord, RecordKind::Endpoint);

/// One published port: traffic to `host_ip:host_port/proto` goes to the endpoint's address
/// of the same family at `container_port`. The unspecified `host_ip` (`0.0.0.0`, `::`)
/// means every address of the host of that family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// `tcp`, `udp` or `sctp`.
    pub proto: Proto,
    /// The host address (unspecified: all of its family).
    pub host_ip: IpAddr,
    /// The host port.
    pub host_port: u16,
    /// The port inside the container.
    pub container_port: u16,
}

/// A sandbox: a container's network namespace and the files it owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// Schema version.
    pub schema: u32,
    /// Lifecycle state.
    pub state: Lifecycle,
    /// Revision for compare-and-swap.
    pub revision: u64,
    /// 64 hex characters.
    pub id: String,
    /// The container it serves (unique).
    pub container_id: String,
    /// The network namespace path (the sandbox "key").
    pub netns_path: PathBuf,
    /// Whether lnet created the namespace (and so removes it), or adopted a runtime's path.
    pub owns_netns: bool,
    /// Directory holding the `hosts` and `resolv.conf` this sandbox owns.
    pub files_dir: PathBuf,
    /// Container hostname.
    #[serde(default)]
    pub hostname: String,
    /// Container domain name.
    #[serde(default)]
    pub domainname: String,
    /// `--dns` servers.
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// `--dns-search` domains.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// `--dns-option` options.
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// `--add-host` entries.
    #[serde(default)]
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// The sandbox shares the host's network namespace (host networking).
    #[serde(default)]
    pub host_mode: bool,
    /// The namespace is an engine's (dockerd through the plugin protocol): lnet never opens
    /// it, writes no files and serves no names for it; each join's interface is handed over
    /// for the engine to move in and configure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handover: bool,
}

impl SandboxRecord {
    /// Whether lnet works inside the sandbox's namespace (neither host networking nor an
    /// engine's namespace).
    pub fn lnet_inside(&self) -> bool {
        !self.host_mode && !self.handover
    }
}
impl_record!(SandboxRecord, RecordKind::Sandbox);

/// The path of a sandbox's namespace relative to an exec root: `<exec-root>/netns/<id>`.
pub fn default_netns_path(exec_root: &std::path::Path, sandbox_id: &str) -> PathBuf {
    exec_root.join("netns").join(sandbox_id)
}
