//! The bridge driver: a Linux bridge per network, a veth pair per joined endpoint.
//!
//! Options are libnetwork's (reference §2.3). They are parsed and validated when the network
//! is planned and stored in the record with the bridge's name and MAC, so recovery rebuilds
//! exactly the same bridge. The firewall facts of a network (`enable_icc`,
//! `enable_ip_masquerade`, `host_ipv4`, internal) and of its endpoints' published ports are
//! elements of lnet's nftables sets ([`crate::firewall`]): a network adds its bridge to them
//! when it is made, a join adds the endpoint's ports to the DNAT maps, a leave removes them —
//! one transaction each, whatever the number of networks and ports.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use ipnet::IpNet;
use lnet_kernel::{BridgeOptions, IpFamily, VethSpec};
use lnet_store::{EndpointRecord, JoinRecord, Lifecycle, NetworkRecord, SandboxRecord};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::driver::{Capabilities, Driver, JoinMode, JoinPlan, NetworkFacts, PlanNetwork};
use crate::error::{CoreError, Result};
use crate::firewall::{NetFw, PortFw, Want};
use crate::ids::{self, format_mac, parse_bool, parse_mac, short_id};
use crate::kernel::{HostLinks, HostOps, Links, Orphan, SandboxOps};
use crate::reaper;
use crate::reconcile;
use crate::want::{LinkWant, Side, Wanted, compare};

/// `com.docker.network.bridge.name`.
pub const OPT_NAME: &str = "com.docker.network.bridge.name";
/// `com.docker.network.bridge.enable_icc`.
pub const OPT_ICC: &str = "com.docker.network.bridge.enable_icc";
/// `com.docker.network.bridge.enable_ip_masquerade`.
pub const OPT_MASQ: &str = "com.docker.network.bridge.enable_ip_masquerade";
/// `com.docker.network.bridge.host_binding_ipv4`.
pub const OPT_HOST_BINDING: &str = "com.docker.network.bridge.host_binding_ipv4";
/// `com.docker.network.bridge.inhibit_ipv4`.
pub const OPT_INHIBIT: &str = "com.docker.network.bridge.inhibit_ipv4";
/// `com.docker.network.driver.mtu`.
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";
/// `com.docker.network.container_iface_prefix`.
pub const OPT_IFACE_PREFIX: &str = "com.docker.network.container_iface_prefix";
/// `com.docker.network.host_ipv4`.
pub const OPT_HOST_IPV4: &str = "com.docker.network.host_ipv4";
/// `com.docker.network.enable_ipv6` (also accepted as a driver option, as Docker does).
pub const OPT_ENABLE_IPV6: &str = "com.docker.network.enable_ipv6";
/// `com.docker.network.internal`.
pub const OPT_INTERNAL: &str = "com.docker.network.internal";
/// `com.docker.network.bridge.default_bridge`: the daemon's default bridge.
pub const OPT_DEFAULT_BRIDGE: &str = "com.docker.network.bridge.default_bridge";

const KNOWN: [&str; 11] = [
    OPT_NAME,
    OPT_ICC,
    OPT_MASQ,
    OPT_HOST_BINDING,
    OPT_INHIBIT,
    OPT_MTU,
    OPT_IFACE_PREFIX,
    OPT_HOST_IPV4,
    OPT_ENABLE_IPV6,
    OPT_INTERNAL,
    OPT_DEFAULT_BRIDGE,
];

/// What lnet writes in the alias (`IFLA_IFALIAS`) of every bridge it makes, before the
/// network's id: `lnet:network:<id>`. A store lost, restored from an older copy or moved
/// aside leaves bridges no record names; the mark is how a start tells lnet's own from a
/// bridge someone else made under a name lnet would use, which it must never take. A veth
/// needs no mark of its own: an lnet-shaped name (`veth` + 7 hex) on a marked bridge is
/// lnet's by construction, and the join's hot path pays nothing for it.
/// It reads `lnet:network:`, or the instance's name for `lnet`
/// ([`crate::config::set_instance`]), so that another lnet in the namespace leaves it be.
pub fn mark_prefix() -> String {
    format!("{}:network:", crate::config::instance())
}

/// The mark of network `id`'s bridge.
pub fn mark(id: &str) -> String {
    format!("{}{id}", mark_prefix())
}

/// The network id in `alias` when it is lnet's mark (a 64-hex id, as lnet makes them);
/// `None` for any other alias or none.
pub fn marked_network(alias: Option<&str>) -> Option<&str> {
    let id = alias?.strip_prefix(mark_prefix().as_str())?;
    (id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(id)
}

/// The bridge driver's persisted configuration of one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeConfig {
    /// The bridge device name.
    pub bridge: String,
    /// The bridge's MAC, chosen at plan time so a rebuilt bridge keeps it.
    pub mac: String,
    /// Inter-container communication.
    pub enable_icc: bool,
    /// Masquerade outbound traffic.
    pub enable_ip_masquerade: bool,
    /// Default host IP for published ports.
    pub host_binding_ipv4: Ipv4Addr,
    /// Do not put the IPv4 gateway address on the bridge.
    pub inhibit_ipv4: bool,
    /// MTU of the bridge and both veth ends (`None`: kernel default).
    pub mtu: Option<u32>,
    /// Interface name prefix inside sandboxes.
    pub container_iface_prefix: String,
    /// SNAT source instead of masquerade.
    pub host_ipv4: Option<Ipv4Addr>,
    /// The daemon's default bridge.
    pub default_bridge: bool,
}

impl BridgeConfig {
    /// Parses and validates the driver options of a network with id `id`.
    pub fn parse(id: &str, options: &BTreeMap<String, String>) -> Result<BridgeConfig> {
        for key in options.keys() {
            if !KNOWN.contains(&key.as_str()) {
                return Err(CoreError::invalid(
                    "Options",
                    key,
                    format!(
                        "the bridge driver does not take this option; it takes: {}",
                        KNOWN.join(", ")
                    ),
                ));
            }
        }
        let get = |k: &str| options.get(k).map(String::as_str);
        let bridge = match get(OPT_NAME) {
            Some(n) => {
                ids::validate_ifname(OPT_NAME, n)?;
                n.to_string()
            }
            None => format!("br-{}", short_id(id)),
        };
        let mtu = match get(OPT_MTU) {
            None => None,
            Some(v) => {
                let m: u32 = v.trim().parse().map_err(|_| {
                    CoreError::invalid(OPT_MTU, v, "the MTU is a whole number from 68 to 65535")
                })?;
                if !(68..=65535).contains(&m) {
                    return Err(CoreError::invalid(
                        OPT_MTU,
                        v,
                        "the MTU must be from 68 to 65535",
                    ));
                }
                Some(m)
            }
        };
        let ipv4 = |k: &str| -> Result<Option<Ipv4Addr>> {
            get(k)
                .map(|v| {
                    v.parse::<Ipv4Addr>().map_err(|_| {
                        CoreError::invalid(k, v, "expected an IPv4 address such as 192.0.2.10")
                    })
                })
                .transpose()
        };
        let prefix = get(OPT_IFACE_PREFIX).unwrap_or("eth").to_string();
        if prefix.is_empty()
            || prefix.len() > 12
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(CoreError::invalid(
                OPT_IFACE_PREFIX,
                &prefix,
                "the prefix is 1 to 12 letters, digits, '_' or '-' (an index is appended)",
            ));
        }
        for k in [OPT_ENABLE_IPV6, OPT_INTERNAL] {
            if let Some(v) = get(k) {
                parse_bool(k, v)?;
            }
        }
        Ok(BridgeConfig {
            bridge,
            mac: format_mac(&ids::random_mac()),
            enable_icc: get(OPT_ICC)
                .map(|v| parse_bool(OPT_ICC, v))
                .transpose()?
                .unwrap_or(true),
            enable_ip_masquerade: get(OPT_MASQ)
                .map(|v| parse_bool(OPT_MASQ, v))
                .transpose()?
                .unwrap_or(true),
            host_binding_ipv4: ipv4(OPT_HOST_BINDING)?.unwrap_or(Ipv4Addr::UNSPECIFIED),
            inhibit_ipv4: get(OPT_INHIBIT)
                .map(|v| parse_bool(OPT_INHIBIT, v))
                .transpose()?
                .unwrap_or(false),
            mtu,
            container_iface_prefix: prefix,
            host_ipv4: ipv4(OPT_HOST_IPV4)?,
            default_bridge: get(OPT_DEFAULT_BRIDGE)
                .map(|v| parse_bool(OPT_DEFAULT_BRIDGE, v))
                .transpose()?
                .unwrap_or(false),
        })
    }

    /// Reads the config back from a record.
    pub fn of(net: &NetworkRecord) -> Result<BridgeConfig> {
        // Read from the stored value in place: a join, a start and `doctor` ask for it per
        // endpoint, and a copy of the value first cost more than reading it.
        BridgeConfig::deserialize(&net.driver_state).map_err(|e| {
            CoreError::Forbidden(format!(
                "network {} has an unreadable bridge configuration ({e}); delete and re-create it",
                net.name
            ))
        })
    }
}

/// The bridge driver.
#[derive(Debug, Default)]
pub struct BridgeDriver {
    /// Bridge name → interface index, so a join costs no lookup. Refreshed whenever the
    /// network's kernel objects are (re)made, and on a join that fails with a stale index.
    indices: Mutex<HashMap<String, u32>>,
}

impl BridgeDriver {
    fn bridge_index(
        &self,
        host: &mut dyn Links,
        cfg: &BridgeConfig,
        net: &NetworkRecord,
    ) -> Result<u32> {
        if let Some(i) = self
            .indices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cfg.bridge)
        {
            return Ok(*i);
        }
        let link = host
            .link_by_name(&cfg.bridge)
            .map_err(kernel(format!("look up bridge {}", cfg.bridge)))?
            .ok_or_else(|| {
                CoreError::Forbidden(format!(
                    "bridge {} of network {} is missing; restart lnet to repair it",
                    cfg.bridge, net.name
                ))
            })?;
        self.remember_bridge(&cfg.bridge, link.index);
        Ok(link.index)
    }

    fn remember_bridge(&self, name: &str, index: u32) {
        self.indices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), index);
    }

    fn forget_bridge(&self, name: &str) {
        self.indices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Makes the veth pair of a join (the host end up and on the bridge, the peer in the
    /// sandbox with its MAC) in one request, with the cached bridge index; returns the
    /// host end's index and the bridge's. `Ok(None)` when something of that name exists.
    fn make_pair(
        &self,
        host: &mut dyn HostOps,
        sandbox: &mut dyn SandboxOps,
        (net, cfg): (&NetworkRecord, &BridgeConfig),
        ep: &EndpointRecord,
        names: (&str, &str),
        exists_ok: bool,
    ) -> Result<Option<(u32, u32)>> {
        let (host_if, ctr_if) = names;
        let mac = ep
            .mac
            .as_deref()
            .map(|m| parse_mac("MacAddress", m))
            .transpose()?;
        let peer_ns = sandbox.netns();
        let spec = |bridge: u32| VethSpec {
            host_name: host_if,
            host_mtu: cfg.mtu,
            host_master: Some(bridge),
            host_up: true,
            peer_name: ctr_if,
            peer_ns,
            peer_mac: mac,
            peer_mtu: cfg.mtu,
        };
        let create_err = |e: lnet_kernel::KernelError| {
            if e.is_full() {
                CoreError::Forbidden(format!(
                    "network {} is full: its bridge {} has the kernel's maximum of 1024 ports; connect the container to another network",
                    net.name, cfg.bridge
                ))
            } else {
                kernel(format!(
                    "create veth {host_if} with {ctr_if} in the sandbox"
                ))(e)
            }
        };
        let bridge = self.bridge_index(host.links(), cfg, net)?;
        match host.links().create_veth(spec(bridge)) {
            Ok(i) => Ok(Some((i, bridge))),
            Err(e) if e.is_exists() && exists_ok => Ok(None),
            Err(e) if e.is_exists() => Err(create_err(e)),
            Err(e) if e.is_full() => Err(create_err(e)),
            Err(_) => {
                // Perhaps the bridge was re-created under a new index: look again, once.
                self.forget_bridge(&cfg.bridge);
                let bridge = self.bridge_index(host.links(), cfg, net)?;
                let i = host.links().create_veth(spec(bridge)).map_err(create_err)?;
                Ok(Some((i, bridge)))
            }
        }
    }
}

/// Deletes bridge `name` of network `id`; in the background when allowed, after freeing its
/// name and its addresses (a new network may want either at once).
fn retire_bridge(host: &mut dyn HostOps, name: &str, id: &str) -> Result<()> {
    if host.deletes_later()
        && let Ok(Some(link)) = host.links().link_by_name(name)
    {
        let nl = host.links();
        let freed = nl
            .addresses(Some(link.index))
            .and_then(|addrs| {
                addrs
                    .iter()
                    .try_for_each(|(_, a)| nl.del_address(link.index, *a).map(drop))
            })
            .and_then(|()| nl.rename(link.index, &reaper::gone_name(id)));
        if let Ok(()) = freed {
            return host.delete_link(&reaper::gone_name(id));
        }
    }
    host.links()
        .delete_link(name)
        .map(drop)
        .map_err(kernel(format!("delete bridge {name}")))
}

/// Removes the lnet-shaped veths on bridge `name` (index `index`), which a network taken
/// over at its create cannot have made: a store lost with containers joined leaves them.
fn remove_stale_ports(host: &mut dyn HostOps, name: &str, index: u32) -> Result<()> {
    let ports = host
        .links()
        .bridge_ports()
        .map_err(kernel(format!("list the ports of bridge {name}")))?;
    for p in ports
        .iter()
        .filter(|p| p.master == Some(index) && is_host_ifname(&p.name))
    {
        tracing::info!(bridge = %name, interface = %p.name, "removing a port no record names");
        host.delete_link(&p.name)?;
    }
    Ok(())
}

fn expected_bridge_addrs(net: &NetworkRecord, cfg: &BridgeConfig) -> Vec<IpNet> {
    let mut out = Vec::new();
    for p in &net.pools {
        if let Some(gw) = p.gateway
            && (p.is_v6() || !cfg.inhibit_ipv4)
        {
            out.push(gw);
        }
    }
    if net.enable_ipv6 {
        out.push("fe80::1/64".parse().expect("valid"));
    }
    out
}

/// The bridge of a network as it should be.
fn want_bridge(net: &NetworkRecord, cfg: &BridgeConfig) -> LinkWant {
    LinkWant {
        kind: Some("bridge"),
        up: true,
        alias: Some(mark(&net.id)),
        mtu: cfg.mtu,
        addrs: expected_bridge_addrs(net, cfg),
        // lnet owns the bridge: an address it did not put there is drift.
        only_addrs: true,
        ..LinkWant::new(Side::Host, "bridge", cfg.bridge.clone())
    }
}

/// A join's two links as they should be: the host end on the bridge (isolated when ICC is
/// off, hairpin when it publishes ports), the peer in the sandbox with its MAC and
/// addresses.
fn want_pair(cfg: &BridgeConfig, ep: &EndpointRecord, join: &JoinRecord) -> Result<Wanted> {
    let (host_if, ctr_if) = pair_names(ep, join)?;
    let host = LinkWant {
        master: Some(cfg.bridge.clone()),
        up: true,
        isolated: !cfg.enable_icc,
        hairpin: !ep.ports.is_empty(),
        ..LinkWant::new(Side::Host, "veth", host_if)
    };
    if join.handover.is_some() {
        // The engine moves the peer into its sandbox and configures it there.
        return Ok(Wanted { links: vec![host] });
    }
    let peer = LinkWant {
        up: true,
        mac: ep
            .mac
            .as_deref()
            .and_then(|m| parse_mac("MacAddress", m).ok()),
        addrs: ep
            .addr_v4
            .iter()
            .chain(ep.addr_v6.iter())
            .copied()
            .collect(),
        ..LinkWant::new(Side::Sandbox, "interface", ctr_if)
    };
    Ok(Wanted {
        links: vec![host, peer],
    })
}

/// The firewall facts of a bridge network.
fn net_fw(net: &NetworkRecord, cfg: &BridgeConfig) -> NetFw {
    NetFw {
        bridge: cfg.bridge.clone(),
        internal: net.internal,
        masq4: cfg.enable_ip_masquerade,
        snat4: cfg.host_ipv4,
        // IPv6 is masqueraded like IPv4 (Docker 27+'s default `nat` gateway mode).
        masq6: cfg.enable_ip_masquerade && net.enable_ipv6,
        subnets: net.pools.iter().map(|p| p.pool).collect(),
    }
}

/// An endpoint's published ports, each aimed at its address of the host address's family.
fn port_fw(ep: &EndpointRecord) -> Vec<PortFw> {
    ep.ports
        .iter()
        .filter_map(|p| {
            let ctr = if p.host_ip.is_ipv4() {
                ep.addr_v4
            } else {
                ep.addr_v6
            }?;
            Some(PortFw {
                proto: p.proto,
                host_ip: p.host_ip,
                host_port: p.host_port,
                ctr_ip: ctr.addr(),
                ctr_port: p.container_port,
            })
        })
        .collect()
}

fn kernel(ctx: impl Into<String>) -> impl FnOnce(lnet_kernel::KernelError) -> CoreError {
    CoreError::kernel(ctx)
}

/// A join record's two interface names.
fn pair_names<'a>(ep: &EndpointRecord, join: &'a JoinRecord) -> Result<(&'a str, &'a str)> {
    match (&join.host_ifname, &join.container_ifname) {
        (Some(h), Some(c)) => Ok((h, c)),
        _ => Err(CoreError::Forbidden(format!(
            "endpoint {} has a join record without interface names; leave and join again",
            ep.name
        ))),
    }
}

impl Driver for BridgeDriver {
    fn name(&self) -> &str {
        "bridge"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            requires_ipv4: true,
            ..Capabilities::default()
        }
    }

    fn plan_network(&self, plan: &mut PlanNetwork<'_>) -> Result<serde_json::Value> {
        let cfg = BridgeConfig::parse(plan.id, plan.options)?;
        for other in &plan.others {
            if let Ok(o) = BridgeConfig::of(other)
                && o.bridge == cfg.bridge
            {
                return Err(CoreError::invalid(
                    OPT_NAME,
                    &cfg.bridge,
                    format!(
                        "the bridge name is taken by network {}; choose another name",
                        other.name
                    ),
                ));
            }
        }
        let existing = plan
            .host
            .links()
            .link_by_name(&cfg.bridge)
            .map_err(kernel(format!("look up interface {}", cfg.bridge)))?;
        let mut cfg = cfg;
        if let Some(link) = existing {
            // lnet's own bridge that no record names (a store lost or restored): taken over,
            // keeping its MAC so that neighbours' caches stay right. Anything else is not
            // lnet's to take.
            let leftover = link.is_kind("bridge")
                && marked_network(link.alias.as_deref())
                    .is_some_and(|id| plan.others.iter().all(|o| o.id != id));
            if leftover {
                tracing::info!(bridge = %cfg.bridge, mark = ?link.alias, network = %plan.name,
                    "taking over a bridge lnet made that no record names");
                if let Some(mac) = link.mac.filter(|m| *m != [0; 6]) {
                    cfg.mac = format_mac(&mac);
                }
                plan.adopted = Some(link.index);
                return Ok(serde_json::to_value(cfg).expect("BridgeConfig serializes"));
            }
            return Err(CoreError::invalid(
                OPT_NAME,
                &cfg.bridge,
                format!(
                    "an interface of that name ({}) already exists on the host and lnet did not make it (it lacks lnet's mark, alias {}…); lnet only uses bridges it creates — choose another name",
                    link.kind.as_deref().unwrap_or("unknown kind"),
                    mark_prefix()
                ),
            ));
        }
        Ok(serde_json::to_value(cfg).expect("BridgeConfig serializes"))
    }

    fn create_network(
        &self,
        host: &mut dyn HostOps,
        net: &NetworkRecord,
        config: &Config,
    ) -> Result<()> {
        let cfg = BridgeConfig::of(net)?;
        let name = &cfg.bridge;
        let mac = parse_mac("bridge mac", &cfg.mac)?;
        let link = host
            .links()
            .ensure_bridge(
                name,
                BridgeOptions {
                    mtu: cfg.mtu,
                    mac: Some(mac),
                    alias: Some(&mark(&net.id)),
                },
            )
            .map_err(kernel(format!("create bridge {name}")))?;
        // A bridge taken over by a new network (see `plan_network`): lnet's own, and no
        // network's but this one. Its ports were a lost network's.
        let marked_for = marked_network(link.alias.as_deref());
        if net.state == Lifecycle::Creating && marked_for.is_some_and(|id| id != net.id) {
            remove_stale_ports(host, name, link.index)?;
            // Set, not inherited: a bridge whose MAC was never set takes its ports'.
            if link.mac != Some(mac) {
                host.links()
                    .set_mac(link.index, mac)
                    .map_err(kernel(format!("set the MAC of bridge {name}")))?;
            }
        }
        self.remember_bridge(name, link.index);
        let want = want_bridge(net, &cfg);
        let have: Vec<IpNet> = host
            .links()
            .addresses(Some(link.index))
            .map_err(kernel(format!("list addresses of {name}")))?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        let drift = compare(&want, Some(&link), &have, |_| None);
        if let Some(d) = drift.iter().find(|d| d.needs_remake()) {
            return Err(CoreError::Forbidden(format!(
                "network {}: {d}; remove that interface or give the network another bridge name",
                net.name
            )));
        }
        // Up last, with its firewall and sysctls in place.
        let (down, rest): (Vec<_>, Vec<_>) = drift
            .into_iter()
            .partition(|d| matches!(d, crate::want::Drift::Down { .. }));
        reconcile::apply(host.links(), link.index, &want, &rest, |_| None)?;
        self.refresh_network(host, net, config)?;
        if !down.is_empty() {
            host.links()
                .set_up(link.index)
                .map_err(kernel(format!("bring up bridge {name}")))?;
        }
        Ok(())
    }

    fn refresh_network(
        &self,
        host: &mut dyn HostOps,
        net: &NetworkRecord,
        config: &Config,
    ) -> Result<()> {
        let cfg = BridgeConfig::of(net)?;
        let bridge = cfg.bridge.as_str();
        // The bridge must not autoconfigure from router advertisements (libnetwork's
        // setupDefaultSysctl).
        host.sysctl(&["net", "ipv6", "conf", bridge, "accept_ra"], "0")?;
        // Published ports answer on the host's 127.0.0.1 by DNAT without a proxy: the
        // kernel must then route 127/8 sources out of the bridge (they are masqueraded to
        // the bridge's address on the way).
        host.sysctl(&["net", "ipv4", "conf", bridge, "route_localnet"], "1")?;
        let mut want = Want::new();
        want.network(&net_fw(net, &cfg));
        host.firewall(&want, &Want::new())?;
        if config.enable_ip_forward {
            let mut families = vec![IpFamily::V4];
            if net.enable_ipv6 {
                families.push(IpFamily::V6);
            }
            host.forward(&families)?;
        }
        host.allow_forward(bridge, true)
    }

    fn delete_network(&self, host: &mut dyn HostOps, net: &NetworkRecord) -> Result<()> {
        let cfg = BridgeConfig::of(net)?;
        self.forget_bridge(&cfg.bridge);
        let mut errors = crate::error::Errors::default();
        let mut gone = Want::new();
        gone.network(&net_fw(net, &cfg));
        errors.push(host.firewall(&Want::new(), &gone));
        errors.push(host.allow_forward(&cfg.bridge, false));
        errors.push(retire_bridge(host, &cfg.bridge, &net.id));
        errors.into_result()
    }

    fn plan_join(
        &self,
        host: &mut dyn HostOps,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        sandbox: &SandboxRecord,
    ) -> Result<JoinPlan> {
        if sandbox.host_mode {
            return Err(CoreError::Forbidden(format!(
                "sandbox {} uses host networking and cannot join a bridge network",
                sandbox.container_id
            )));
        }
        let free = |host: &mut dyn HostOps, name: &str| -> Result<bool> {
            Ok(host
                .links()
                .link_by_name(name)
                .map_err(kernel(format!("look up {name}")))?
                .is_none())
        };
        let prefix = BridgeConfig::of(net)
            .map(|c| c.container_iface_prefix)
            .unwrap_or_else(|_| "eth".into());
        // Named from the endpoint id so a leftover is recognisable; a different slice of the id
        // on the (rare) clash with an existing interface.
        for start in (0..ep.id.len().saturating_sub(7)).step_by(7) {
            let slice = &ep.id[start..start + 7];
            let name = format!("veth{slice}");
            // An engine's sandbox takes the peer from the host namespace: it needs a free
            // name there too.
            let peer = sandbox
                .handover
                .then(|| format!("{HANDOVER_PREFIX}{slice}"));
            if free(host, &name)? && peer.as_deref().map_or(Ok(true), |p| free(host, p))? {
                return Ok(JoinPlan {
                    host_ifname: Some(name),
                    iface_prefix: Some(prefix),
                    handover_ifname: peer,
                });
            }
        }
        Err(CoreError::Forbidden(format!(
            "no free host interface name for endpoint {}; remove stray veth interfaces",
            ep.name
        )))
    }

    fn want_network(&self, net: &NetworkRecord) -> Wanted {
        match BridgeConfig::of(net) {
            Ok(cfg) => Wanted {
                links: vec![want_bridge(net, &cfg)],
            },
            Err(_) => Wanted::default(),
        }
    }

    fn want_join(&self, net: &NetworkRecord, ep: &EndpointRecord, join: &JoinRecord) -> Wanted {
        BridgeConfig::of(net)
            .and_then(|cfg| want_pair(&cfg, ep, join))
            .unwrap_or_default()
    }

    fn join(
        &self,
        host: &mut dyn HostOps,
        sandbox: &mut dyn SandboxOps,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        join: &JoinRecord,
        mode: JoinMode,
    ) -> Result<()> {
        let cfg = BridgeConfig::of(net)?;
        let (host_if, ctr_if) = pair_names(ep, join)?;
        let want = want_pair(&cfg, ep, join)?;
        let want_host = &want.links[0];
        let want_peer = want.links.get(1);
        // The hot path: a fresh join makes the pair in one request and knows what it made.
        // It falls back to the repair path only if something is already there.
        // What a fresh pair is: its host end up and on the bridge, no port flags yet.
        let fresh = |(index, bridge): (u32, u32)| {
            let link = lnet_kernel::Link {
                index,
                name: host_if.to_string(),
                kind: Some("veth".into()),
                mac: None,
                mtu: cfg.mtu.unwrap_or(0),
                up: true,
                lower_up: false,
                master: Some(bridge),
                hairpin: Some(false),
                isolated: Some(false),
                alias: None,
            };
            let drift = compare(want_host, Some(&link), &[], |_| Some(bridge));
            (link, drift, bridge)
        };
        let mut pair = match mode {
            JoinMode::Fresh => self
                .make_pair(host, sandbox, (net, &cfg), ep, (host_if, ctr_if), true)?
                .map(fresh),
            JoinMode::Repair => None,
        };
        let made = pair.is_some();
        if pair.is_none() {
            // What is already right is left alone: a change to a link (its master, its
            // bridge port flags) makes the kernel walk the whole IPv6 routing table
            // (NETDEV_CHANGE), so a start that re-set ten thousand healthy ports took
            // minutes.
            let bridge = self.bridge_index(host.links(), &cfg, net)?;
            let (h, drift) = reconcile::observe(host.links(), want_host, |_| Some(bridge))?;
            if join.handover.is_some() {
                // The engine took the peer into a namespace lnet does not open: a pair
                // made anew would leave the container without it. Only the host end's
                // settings can be put right.
                let h = h.filter(|_| !drift.iter().any(|d| d.needs_remake())).ok_or_else(|| {
                    CoreError::Forbidden(format!(
                        "the host end {host_if} of endpoint {}, handed over to its engine, is gone with the container's interface; lnet cannot remake it: disconnect and connect the container again",
                        ep.name
                    ))
                })?;
                pair = Some((h, drift, bridge));
            }
        }
        if pair.is_none() {
            let bridge = self.bridge_index(host.links(), &cfg, net)?;
            let (h, drift) = reconcile::observe(host.links(), want_host, |_| Some(bridge))?;
            let peer = sandbox
                .links()
                .link_by_name(ctr_if)
                .map_err(kernel(format!("look up {ctr_if} in sandbox")))?;
            pair = match (h, peer) {
                (Some(h), Some(_)) if !drift.iter().any(|d| d.needs_remake()) => {
                    Some((h, drift, bridge))
                }
                (h, _) => {
                    // Half a pair cannot be repaired in place: make it anew.
                    if h.is_some() {
                        host.links()
                            .delete_link(host_if)
                            .map_err(kernel(format!("delete stale {host_if}")))?;
                    }
                    let made = self
                        .make_pair(host, sandbox, (net, &cfg), ep, (host_if, ctr_if), false)?
                        .ok_or_else(|| {
                            CoreError::Forbidden(format!("veth {host_if} could not be made"))
                        })?;
                    host.disable_ipv6(host_if);
                    Some(fresh(made))
                }
            };
        }
        let Some((host_link, host_drift, bridge)) = pair else {
            return Ok(());
        };
        if made {
            // A bridge port needs no IPv6 of its own. Without it the host's IPv6 routing table
            // gains nothing per join (three routes otherwise) and the port sends no router
            // solicitations or MLD reports. Each join makes the kernel walk that table once
            // (here, or when the carrier comes up with the peer below); at 10,000 joins a
            // table grown by every join before made joins cost ever more. Done before the
            // peer is up, so that the carrier finds IPv6 already off.
            host.disable_ipv6(host_if);
        }
        reconcile::apply(
            host.links(),
            host_link.index,
            want_host,
            &host_drift,
            |_| Some(bridge),
        )?;
        if let Some(want_peer) = want_peer {
            let (peer, peer_drift) = reconcile::observe(sandbox.links(), want_peer, |_| None)?;
            let peer = peer.ok_or_else(|| {
                CoreError::Forbidden(format!("{ctr_if} did not appear in the sandbox"))
            })?;
            reconcile::apply(sandbox.links(), peer.index, want_peer, &peer_drift, |_| {
                None
            })?;
        }
        if mode == JoinMode::Fresh {
            crate::failpoint::hit("join:interface-made");
        }
        if !ep.ports.is_empty() {
            let mut want = Want::new();
            want.ports(&port_fw(ep));
            host.firewall(&want, &Want::new())?;
            if mode == JoinMode::Fresh {
                crate::failpoint::hit("join:ports-published");
            }
        }
        Ok(())
    }

    fn leave(
        &self,
        host: &mut dyn HostOps,
        sandbox: Option<&mut dyn SandboxOps>,
        _net: &NetworkRecord,
        ep: &EndpointRecord,
        join: &JoinRecord,
    ) -> Result<()> {
        // Ports first: once the address is free it may be handed to another endpoint, and
        // no packet must be sent its way meanwhile.
        if !ep.ports.is_empty() {
            let ports = port_fw(ep);
            let mut gone = Want::new();
            gone.ports(&ports);
            host.firewall(&Want::new(), &gone)?;
            host.flush_udp(&ports);
            crate::failpoint::hit("leave:ports-unpublished");
        }
        let Some(h) = &join.host_ifname else {
            return Ok(());
        };
        // Handed over: the peer is in the engine's namespace, which lnet does not open.
        // Taken off the bridge at once (the address may go to another container), the pair
        // is deleted in the background.
        if host.deletes_later()
            && join.handover.is_some()
            && let Ok(Some(l)) = host.links().link_by_name(h)
            && host.links().set_master(l.index, None).is_ok()
        {
            return host.delete_link(h);
        }
        // Deleted in the background: first free what others may take at once — the
        // addresses (IPAM hands them out again) and the interface name in the sandbox (its
        // next join may want it) — so the lingering pair harms no one.
        if host.deletes_later()
            && let (Some(sb), Some(c)) = (sandbox, &join.container_ifname)
            && let Ok(Some(peer)) = sb.links().link_by_name(c)
        {
            let nl = sb.links();
            let freed = ep
                .addr_v4
                .iter()
                .chain(ep.addr_v6.iter())
                .try_for_each(|a| nl.del_address(peer.index, *a).map(drop))
                .and_then(|()| nl.rename(peer.index, &reaper::gone_name(&ep.id)));
            if freed.is_ok() {
                return host.delete_link(h);
            }
        }
        // Removing the host end removes the peer, its addresses and its routes with it.
        host.links()
            .delete_link(h)
            .map_err(kernel(format!("delete veth {h}")))?;
        Ok(())
    }

    fn leftovers(
        &self,
        links: &HostLinks<'_>,
        named: &BTreeSet<String>,
        networks: &[&NetworkRecord],
        config: &Config,
    ) -> Vec<Orphan> {
        let orphan = |name: &str, network: String| Orphan {
            name: name.to_string(),
            noun: "interface",
            network,
            driver: Some(self.name().to_string()),
            marked: None,
            unrecorded: false,
        };
        let is_veth = |l: &lnet_kernel::Link| l.kind.as_deref().is_none_or(|k| k == "veth");
        let mut out = Vec::new();
        // lnet-shaped veths on a ready network's bridge that no join names (a crash
        // between making the pair and recording the join). A bridge port's own description
        // does not give its kind: let it through, the caller confirms.
        for net in networks
            .iter()
            .filter(|n| n.state == Lifecycle::Ready && n.driver == "bridge")
        {
            let Ok(cfg) = BridgeConfig::of(net) else {
                continue;
            };
            let Some(bridge) = links.by_name.get(cfg.bridge.as_str()) else {
                continue;
            };
            for p in links.ports.get(&bridge.index).into_iter().flatten() {
                if is_veth(p) && is_host_ifname(&p.name) && !named.contains(&p.name) {
                    out.push(orphan(&p.name, net.name.clone()));
                }
            }
        }
        // Bridges carrying lnet's mark that no network names, with the lnet-shaped veths
        // on them (ports first: deleting a bridge does not delete its ports). A marked
        // bridge renamed for the background deleter keeps its mark: it is a delete a crash
        // interrupted, not a lost record, and the generic `lnetgone` sweep takes it.
        let claimed: BTreeSet<String> = networks
            .iter()
            .filter(|n| n.driver == "bridge")
            .filter_map(|n| BridgeConfig::of(n).ok())
            .map(|c| c.bridge)
            .collect();
        let mut bridges: Vec<&&lnet_kernel::Link> = links
            .by_name
            .values()
            .filter(|l| l.is_kind("bridge") && !reaper::is_gone_name(&l.name))
            .collect();
        bridges.sort_by_key(|l| l.index);
        for l in bridges {
            let Some(id) = marked_network(l.alias.as_deref()) else {
                continue;
            };
            if claimed.contains(&l.name) {
                continue;
            }
            let network = format!("(no record) {}", short_id(id));
            for p in links.ports.get(&l.index).into_iter().flatten() {
                if is_veth(p) && is_host_ifname(&p.name) {
                    out.push(Orphan {
                        unrecorded: true,
                        ..orphan(&p.name, network.clone())
                    });
                }
            }
            // The predefined network's own bridge is kept for that network to take over.
            if config.predefined_bridge.as_deref() != Some(l.name.as_str()) {
                out.push(Orphan {
                    noun: "bridge",
                    marked: Some(id.to_string()),
                    unrecorded: true,
                    ..orphan(&l.name, network)
                });
            }
        }
        // lnet-shaped veths still on a bridge the background deleter was to remove
        // (deleting a bridge does not delete its ports).
        let mut gone: Vec<&&lnet_kernel::Link> = links
            .by_name
            .values()
            .filter(|l| reaper::is_gone_name(&l.name))
            .collect();
        gone.sort_by_key(|l| l.index);
        for g in gone {
            for p in links.ports.get(&g.index).into_iter().flatten() {
                if is_veth(p) && is_host_ifname(&p.name) {
                    out.push(orphan(&p.name, "(deleted)".into()));
                }
            }
        }
        out
    }

    fn remove_leftover(&self, host: &mut dyn HostOps, orphan: &Orphan) -> Result<()> {
        match &orphan.marked {
            Some(id) => retire_bridge(host, &orphan.name, id),
            None => host.delete_link(&orphan.name),
        }
    }

    fn facts(&self, net: &NetworkRecord) -> NetworkFacts {
        let cfg = BridgeConfig::of(net);
        let gw = |v6: bool| {
            net.pools
                .iter()
                .find(|p| p.is_v6() == v6)
                .and_then(|p| p.gateway)
                .map(|g| g.addr())
        };
        NetworkFacts {
            gateways: if net.internal {
                (None, None)
            } else {
                (gw(false), gw(true))
            },
            publish_on: if net.internal {
                Err(format!(
                    "network {} is internal: nothing outside it can reach its containers, so it publishes no ports",
                    net.name
                ))
            } else {
                cfg.as_ref()
                    .map(|c| IpAddr::V4(c.host_binding_ipv4))
                    .map_err(|e| e.to_string())
            },
            // Docker's default bridge has no embedded DNS.
            resolves_names: cfg.is_ok_and(|c| !c.default_bridge),
        }
    }

    fn firewall(&self, net: &NetworkRecord, joined: &[&EndpointRecord], want: &mut Want) {
        let Ok(cfg) = BridgeConfig::of(net) else {
            return;
        };
        want.network(&net_fw(net, &cfg));
        for ep in joined {
            want.ports(&port_fw(ep));
        }
    }

    fn forward_links(&self, net: &NetworkRecord) -> Vec<String> {
        BridgeConfig::of(net)
            .map(|c| vec![c.bridge])
            .unwrap_or_default()
    }

    fn endpoint_info(
        &self,
        net: &NetworkRecord,
        ep: &EndpointRecord,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if let Some(mac) = &ep.mac {
            m.insert(
                "com.docker.network.endpoint.macaddress".into(),
                mac.clone().into(),
            );
        }
        if let Ok(cfg) = BridgeConfig::of(net) {
            m.insert("com.docker.network.bridge.name".into(), cfg.bridge.into());
        }
        if let Some(h) = ep.join.as_ref().and_then(|j| j.host_ifname.clone()) {
            m.insert("host_interface".into(), h.into());
        }
        m
    }
}

/// The name a handed-over join's peer has in the host namespace until its engine takes it:
/// this and the seven hex digits of its host end's name.
pub const HANDOVER_PREFIX: &str = "lnc";

/// Whether `name` has the shape of the host interfaces this driver makes: `veth` and seven
/// hex digits of an endpoint id.
pub(crate) fn is_host_ifname(name: &str) -> bool {
    name.len() == 11
        && name.starts_with("veth")
        && name[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_lnet_shaped_names_count_as_orphans() {
        assert!(is_host_ifname("veth0a1b2c3"));
        for other in [
            "veth0a1b2c",
            "veth0A1B2C3",
            "vethxyz1234",
            "eth0",
            "veth0a1b2c3d",
        ] {
            assert!(!is_host_ifname(other), "{other}");
        }
    }

    #[test]
    fn only_lnets_mark_names_a_network() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(marked_network(Some(&mark(&id))), Some(id.as_str()));
        for other in [
            None,
            Some(""),
            Some("lnet:network:"),
            Some("lnet:network:0123"),
            Some("lnet:network:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"),
            Some("docker:network:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
            Some("lnet:network:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"),
            Some("lnet:br-1:in"),
        ] {
            assert_eq!(marked_network(other), None, "{other:?}");
        }
        assert!(mark(&id).len() <= lnet_kernel::MAX_ALIAS_LEN);
    }

    #[test]
    fn defaults_match_docker() {
        let id = "0123456789abcdef".repeat(4);
        let c = BridgeConfig::parse(&id, &BTreeMap::new()).unwrap();
        assert_eq!(c.bridge, "br-0123456789ab");
        assert!(c.enable_icc && c.enable_ip_masquerade && !c.inhibit_ipv4);
        assert_eq!(c.host_binding_ipv4, Ipv4Addr::UNSPECIFIED);
        assert_eq!(c.container_iface_prefix, "eth");
        assert_eq!(c.mtu, None);
        assert!(c.mac.starts_with("02:42:"));
    }

    #[test]
    fn options_are_parsed() {
        let c = BridgeConfig::parse(
            "x",
            &opts(&[
                (OPT_NAME, "lnet-br0"),
                (OPT_ICC, "false"),
                (OPT_MASQ, "false"),
                (OPT_HOST_BINDING, "127.0.0.1"),
                (OPT_INHIBIT, "true"),
                (OPT_MTU, "1400"),
                (OPT_IFACE_PREFIX, "net"),
                (OPT_HOST_IPV4, "192.0.2.1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.bridge, "lnet-br0");
        assert!(!c.enable_icc && !c.enable_ip_masquerade && c.inhibit_ipv4);
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.container_iface_prefix, "net");
        assert_eq!(c.host_ipv4, Some(Ipv4Addr::new(192, 0, 2, 1)));
    }

    #[test]
    fn bad_options_name_the_field_and_the_rule() {
        let cases: &[(&str, &str, &str)] = &[
            (OPT_MTU, "67", "68 to 65535"),
            (OPT_MTU, "65536", "68 to 65535"),
            (OPT_MTU, "big", "whole number"),
            (OPT_NAME, "this-name-is-too-long", "1 to 15"),
            (OPT_NAME, "a b", "whitespace"),
            (OPT_ICC, "maybe", "boolean"),
            (OPT_HOST_IPV4, "::1", "IPv4"),
            (OPT_HOST_BINDING, "nope", "IPv4"),
            (OPT_IFACE_PREFIX, "", "1 to 12"),
            (
                "com.docker.network.bridge.enable_iccc",
                "true",
                "does not take",
            ),
        ];
        for (k, v, want) in cases {
            let e = BridgeConfig::parse("x", &opts(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{k}={v}: {e}");
            if !want.contains("does not take") {
                assert!(e.contains(k), "{k}={v}: {e}");
            }
        }
    }
}

#[cfg(test)]
#[path = "bridge_seam_tests.rs"]
mod seam_tests;
