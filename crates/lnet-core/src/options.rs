//! The options callers pass to the controller's operations. Plain data.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use lnet_store::IpamSpec;

/// Options of [`crate::Controller::new_network`].
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    /// The id to give it (64 hex, an engine's own); a new one when `None`.
    pub id: Option<String>,
    /// IPAM driver and configs; an empty driver means `default`.
    pub ipam: IpamSpec,
    /// Enable IPv6 (needs an IPv6 subnet or a configured IPv6 pool).
    pub enable_ipv6: bool,
    /// No traffic to or from outside the network.
    pub internal: bool,
    /// Attachable (stored).
    pub attachable: bool,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// Driver options (`com.docker.network.bridge.name`, …).
    pub options: BTreeMap<String, String>,
    /// The subnets were held for it with [`crate::Controller::hold_pool`]: the network takes
    /// them over.
    pub held_pools: bool,
}

/// Options of [`crate::Network::create_endpoint`].
#[derive(Debug, Clone, Default)]
pub struct EndpointOptions {
    /// The id to give it (64 hex, an engine's own); a new one when `None`.
    pub id: Option<String>,
    /// The preferred addresses were held for it with [`crate::Network::hold_address`]:
    /// the endpoint takes them over.
    pub held: bool,
    /// A preferred IPv4 address.
    pub ipv4: Option<IpAddr>,
    /// A preferred IPv6 address.
    pub ipv6: Option<IpAddr>,
    /// A MAC address (`aa:bb:cc:dd:ee:ff`); default derived from the IPv4 address.
    pub mac: Option<String>,
    /// DNS aliases on this network.
    pub aliases: Vec<String>,
    /// Endpoint driver options.
    pub options: BTreeMap<String, String>,
    /// Ports to publish; host ports are chosen when the endpoint is created and held until
    /// it is deleted, and traffic is forwarded while it is joined.
    pub ports: Vec<crate::ports::PortSpec>,
    /// The endpoint lives only while joined, as a `docker network connect` makes it: found
    /// not joined at start (a crash between its create and its join, or between its leave
    /// and its delete), it is deleted.
    pub ephemeral: bool,
}

/// Options of [`crate::Endpoint::join`].
#[derive(Debug, Clone, Default)]
pub struct JoinOptions {
    /// A higher priority makes this endpoint the sandbox's gateway endpoint first.
    pub priority: i32,
}

/// Options of [`crate::Controller::new_sandbox`].
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// Container hostname.
    pub hostname: String,
    /// Container domain name.
    pub domainname: String,
    /// DNS servers (`--dns`).
    pub dns: Vec<IpAddr>,
    /// DNS search domains (`--dns-search`).
    pub dns_search: Vec<String>,
    /// DNS options (`--dns-option`).
    pub dns_options: Vec<String>,
    /// Extra hosts entries (`--add-host name:ip`).
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// Use this existing namespace (for example `/proc/<pid>/ns/net`) instead of creating one.
    pub netns_path: Option<PathBuf>,
    /// Share the host's network namespace (host networking).
    pub host_mode: bool,
    /// The namespace at `netns_path` is an engine's, which moves each join's interface in
    /// itself (Docker's plugin protocol): lnet neither opens it nor writes files for it.
    pub handover: bool,
}
