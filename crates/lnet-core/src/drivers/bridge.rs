//! The bridge driver: a Linux bridge per network, a veth pair per joined endpoint.
//!
//! Options are libnetwork's (reference §2.3). They are parsed and validated when the network
//! is planned and stored in the record with the bridge's name and MAC, so recovery rebuilds
//! exactly the same bridge. The firewall facts of a network (`enable_icc`,
//! `enable_ip_masquerade`, `host_ipv4`, internal) and of its endpoints' published ports are
//! elements of lnet's nftables sets ([`crate::firewall`]): a network adds its bridge to them
//! when it is made, a join adds the endpoint's ports to the DNAT maps, a leave removes them —
//! one transaction each, whatever the number of networks and ports.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use ipnet::IpNet;
use lnet_kernel::{AddrFlags, BridgeOptions, IpFamily, VethSpec, sysctl};
use lnet_store::{EndpointRecord, JoinRecord, Lifecycle, NetworkRecord};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::doctor::Findings;
use crate::driver::{
    Driver, HostKernel, HostLinks, HostView, KernelView, PlanNetwork, SandboxKernel,
};
use crate::error::{CoreError, Result};
use crate::firewall::{NetFw, PortFw, Want};
use crate::ids::{self, format_mac, parse_mac, short_id};
use crate::reaper;

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
pub const MARK_PREFIX: &str = "lnet:network:";

/// The mark of network `id`'s bridge.
pub fn mark(id: &str) -> String {
    format!("{MARK_PREFIX}{id}")
}

/// The network id in `alias` when it is lnet's mark (a 64-hex id, as lnet makes them);
/// `None` for any other alias or none.
pub fn marked_network(alias: Option<&str>) -> Option<&str> {
    let id = alias?.strip_prefix(MARK_PREFIX)?;
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

/// A boolean option value, as the bridge driver and network flags accept it.
pub(crate) fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "t" | "yes" => Ok(true),
        "false" | "0" | "f" | "no" => Ok(false),
        _ => Err(CoreError::invalid(
            key,
            v,
            "expected a boolean: true or false",
        )),
    }
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
        host: &mut HostKernel,
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
            .nl
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

    /// What a network needs beyond its bridge and addresses: the bridge's sysctls and the
    /// network's firewall rules.
    fn finish_network(
        &self,
        host: &mut HostKernel,
        net: &NetworkRecord,
        cfg: &BridgeConfig,
        config: &Config,
    ) -> Result<()> {
        let name = &cfg.bridge;
        let (bridge, v6, forward) = (name.clone(), net.enable_ipv6, config.enable_ip_forward);
        let forwarding = &mut host.forwarding;
        let turn_on = host
            .ns
            .run(move || -> Result<Vec<IpFamily>> {
                // The bridge must not autoconfigure from router advertisements (libnetwork's
                // setupDefaultSysctl); absent when the kernel has IPv6 disabled.
                let ra = ["net", "ipv6", "conf", bridge.as_str(), "accept_ra"];
                if sysctl::get_path(&ra).is_ok() {
                    sysctl::set_path(&ra, "0")
                        .map_err(kernel(format!("disable accept_ra on {bridge}")))?;
                }
                // Published ports answer on the host's 127.0.0.1 by DNAT without a proxy:
                // the kernel must then route 127/8 sources out of the bridge (they are
                // masqueraded to the bridge's address on the way).
                let localnet = ["net", "ipv4", "conf", bridge.as_str(), "route_localnet"];
                if sysctl::get_path(&localnet).is_ok_and(|v| v.trim() != "1") {
                    sysctl::set_path(&localnet, "1")
                        .map_err(kernel(format!("enable route_localnet on {bridge}")))?;
                }
                let mut off = Vec::new();
                if forward {
                    for family in [IpFamily::V4, IpFamily::V6] {
                        if (family == IpFamily::V4 || v6) && forwarding.record_on(family)? {
                            off.push(family);
                        }
                    }
                }
                Ok(off)
            })
            .map_err(kernel("enter the host namespace for sysctls"))??;
        let mut want = Want::new();
        want.network(&net_fw(net, cfg))
            .forward_guard(&host.forwarding.guarded());
        host.fw.apply(&want, &Want::new())?;
        // Forwarding goes on only with its guard in place (see `forwarding`).
        if !turn_on.is_empty() {
            let forwarding = &host.forwarding;
            host.ns
                .run(|| turn_on.iter().try_for_each(|f| forwarding.turn_on(*f)))
                .map_err(kernel("enter the host namespace for sysctls"))??;
        }
        host.fw.add_foreign(name)?;
        Ok(())
    }

    /// Deletes the bridge; in the background when allowed, after freeing its name and its
    /// addresses (a new network may want either at once).
    fn remove_bridge(
        &self,
        host: &mut HostKernel,
        net: &NetworkRecord,
        cfg: &BridgeConfig,
    ) -> Result<()> {
        retire_bridge(host, &cfg.bridge, &net.id)
    }

    fn forget_bridge(&self, name: &str) {
        self.indices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

/// Deletes bridge `name` of network `id`; in the background when allowed, after freeing its
/// name and its addresses (a new network may want either at once).
pub(crate) fn retire_bridge(host: &mut HostKernel, name: &str, id: &str) -> Result<()> {
    if host.deletes_later()
        && let Ok(Some(link)) = host.nl.link_by_name(name)
    {
        let freed = host
            .nl
            .addresses(Some(link.index))
            .and_then(|addrs| {
                addrs
                    .iter()
                    .try_for_each(|(_, a)| host.nl.del_address(link.index, *a).map(drop))
            })
            .and_then(|()| host.nl.rename(link.index, &reaper::gone_name(id)));
        if let Ok(()) = freed {
            return host.delete_link(&reaper::gone_name(id));
        }
    }
    host.nl
        .delete_link(name)
        .map(drop)
        .map_err(kernel(format!("delete bridge {name}")))
}

/// Removes the lnet-shaped veths on bridge `name` (index `index`), which a network taken
/// over at its create cannot have made: a store lost with containers joined leaves them.
fn remove_stale_ports(host: &mut HostKernel, name: &str, index: u32) -> Result<()> {
    let ports = host
        .nl
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

impl Driver for BridgeDriver {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn uses_ipam(&self) -> bool {
        true
    }

    fn requires_ipv4(&self) -> bool {
        true
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
            .nl
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
                    "an interface of that name ({}) already exists on the host and lnet did not make it (it lacks lnet's mark, alias {MARK_PREFIX}…); lnet only uses bridges it creates — choose another name",
                    link.kind.as_deref().unwrap_or("unknown kind")
                ),
            ));
        }
        Ok(serde_json::to_value(cfg).expect("BridgeConfig serializes"))
    }

    fn create_network(
        &self,
        host: &mut HostKernel,
        net: &NetworkRecord,
        config: &Config,
    ) -> Result<()> {
        let cfg = BridgeConfig::of(net)?;
        let name = &cfg.bridge;
        let mac = parse_mac("bridge mac", &cfg.mac)?;
        let link = host
            .nl
            .ensure_bridge(
                name,
                BridgeOptions {
                    mtu: cfg.mtu,
                    mac: Some(mac),
                    alias: Some(&mark(&net.id)),
                },
            )
            .map_err(kernel(format!("create bridge {name}")))?;
        // A bridge that was there already: a recorded network's from before lnet marked its
        // bridges, or one taken over by a new network (see `plan_network`).
        let marked_for = marked_network(link.alias.as_deref());
        if marked_for != Some(net.id.as_str()) {
            host.nl
                .set_alias(link.index, &mark(&net.id))
                .map_err(kernel(format!("mark bridge {name} as lnet's")))?;
            // Only what `plan_network` took over: lnet's own, and no network's but this one.
            if net.state == Lifecycle::Creating && marked_for.is_some() {
                remove_stale_ports(host, name, link.index)?;
                // Set, not inherited: a bridge whose MAC was never set takes its ports'.
                if link.mac != Some(mac) {
                    host.nl
                        .set_mac(link.index, mac)
                        .map_err(kernel(format!("set the MAC of bridge {name}")))?;
                }
            }
        }
        // A bridge found with another MTU (the kernel moves an MTU set at creation with
        // the ports; one set now stays).
        if let Some(mtu) = cfg.mtu.filter(|m| *m != link.mtu) {
            host.nl
                .set_mtu(link.index, mtu)
                .map_err(kernel(format!("set the MTU of bridge {name} to {mtu}")))?;
        }
        self.remember_bridge(name, link.index);
        let want = expected_bridge_addrs(net, &cfg);
        let have = host
            .nl
            .addresses(Some(link.index))
            .map_err(kernel(format!("list addresses of {name}")))?;
        // lnet owns the bridge, so any address it did not put there is drift to remove
        // (IPv6 link-local addresses the kernel adds itself are left alone).
        for (_, addr) in &have {
            if !want.contains(addr) && !is_kernel_link_local(addr) {
                host.nl
                    .del_address(link.index, *addr)
                    .map_err(kernel(format!("remove stray address {addr} from {name}")))?;
            }
        }
        for addr in &want {
            if !have.iter().any(|(_, a)| a == addr) {
                host.nl
                    .add_address(
                        link.index,
                        *addr,
                        AddrFlags {
                            nodad: addr.addr().is_ipv6(),
                        },
                    )
                    .map_err(kernel(format!("add address {addr} to bridge {name}")))?;
            }
        }
        self.finish_network(host, net, &cfg, config)?;
        host.nl
            .set_up(link.index)
            .map_err(kernel(format!("bring up bridge {name}")))?;
        Ok(())
    }

    fn recover_network(
        &self,
        host: &mut HostKernel,
        net: &NetworkRecord,
        config: &Config,
        view: &HostView,
    ) -> Result<bool> {
        let cfg = BridgeConfig::of(net)?;
        let right = view.bridges.get(&cfg.bridge).filter(|l| {
            let want = expected_bridge_addrs(net, &cfg);
            let have = view.addrs.get(&l.index).map_or(&[][..], Vec::as_slice);
            l.is_kind("bridge")
                && l.up
                && cfg.mtu.is_none_or(|m| m == l.mtu)
                && want.iter().all(|a| have.contains(a))
                && have
                    .iter()
                    .all(|a| want.contains(a) || is_kernel_link_local(a))
        });
        match right {
            Some(l) => {
                if marked_network(l.alias.as_deref()) != Some(net.id.as_str()) {
                    tracing::info!(bridge = %cfg.bridge, network = %net.name, "marking the bridge as lnet's");
                    host.nl
                        .set_alias(l.index, &mark(&net.id))
                        .map_err(kernel(format!("mark bridge {} as lnet's", cfg.bridge)))?;
                }
                self.remember_bridge(&cfg.bridge, l.index);
                self.finish_network(host, net, &cfg, config)?;
                Ok(false)
            }
            None => self.create_network(host, net, config).map(|()| true),
        }
    }

    fn delete_network(&self, host: &mut HostKernel, net: &NetworkRecord) -> Result<()> {
        let cfg = BridgeConfig::of(net)?;
        self.forget_bridge(&cfg.bridge);
        let mut errors = crate::error::Errors::default();
        let mut gone = Want::new();
        gone.network(&net_fw(net, &cfg));
        errors.push(host.fw.apply(&Want::new(), &gone));
        errors.push(host.fw.remove_foreign(&cfg.bridge));
        errors.push(self.remove_bridge(host, net, &cfg));
        errors.into_result()
    }

    fn plan_join_host_ifname(
        &self,
        host: &mut HostKernel,
        ep: &EndpointRecord,
    ) -> Result<Option<String>> {
        // Named from the endpoint id so a leftover is recognisable; a different slice of the id
        // on the (rare) clash with an existing interface.
        for start in (0..ep.id.len().saturating_sub(7)).step_by(7) {
            let name = format!("veth{}", &ep.id[start..start + 7]);
            if host
                .nl
                .link_by_name(&name)
                .map_err(kernel(format!("look up {name}")))?
                .is_none()
            {
                return Ok(Some(name));
            }
        }
        Err(CoreError::Forbidden(format!(
            "no free host interface name for endpoint {}; remove stray veth interfaces",
            ep.name
        )))
    }

    fn container_iface_prefix(&self, net: &NetworkRecord) -> Option<String> {
        Some(
            BridgeConfig::of(net)
                .map(|c| c.container_iface_prefix)
                .unwrap_or_else(|_| "eth".into()),
        )
    }

    fn join(
        &self,
        host: &mut HostKernel,
        sandbox: &mut SandboxKernel,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        join: &JoinRecord,
        repair: bool,
    ) -> Result<()> {
        let cfg = BridgeConfig::of(net)?;
        let (Some(host_if), Some(ctr_if)) = (&join.host_ifname, &join.container_ifname) else {
            return Err(CoreError::Forbidden(format!(
                "endpoint {} has a join record without interface names; leave and join again",
                ep.name
            )));
        };
        let mac = ep
            .mac
            .as_deref()
            .map(|m| parse_mac("MacAddress", m))
            .transpose()?;
        let spec = |bridge: u32| VethSpec {
            host_name: host_if,
            host_mtu: cfg.mtu,
            host_master: Some(bridge),
            host_up: true,
            peer_name: ctr_if,
            peer_ns: Some(&sandbox.ns),
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
        // The hot path: a fresh join makes the pair in one request, with the cached bridge
        // index. It falls back to the repair path only if something is already there.
        let mut created = None;
        if !repair {
            let bridge = self.bridge_index(host, &cfg, net)?;
            match host.nl.create_veth(spec(bridge)) {
                Ok(i) => created = Some(i),
                Err(e) if e.is_exists() => {}
                Err(e) if e.is_full() => return Err(create_err(e)),
                Err(_) => {
                    // Perhaps the bridge was re-created under a new index: look again, once.
                    self.forget_bridge(&cfg.bridge);
                    let bridge = self.bridge_index(host, &cfg, net)?;
                    created = Some(host.nl.create_veth(spec(bridge)).map_err(create_err)?);
                }
            }
        }
        // What is already right is left alone: a change to a link (its master, its bridge
        // port flags) makes the kernel walk the whole IPv6 routing table (NETDEV_CHANGE), so
        // a start that re-set ten thousand healthy ports took minutes. `kept`: the link as
        // it was found, when it was kept.
        let mut kept = None;
        let host_index = match created {
            Some(i) => i,
            None => {
                let bridge = self.bridge_index(host, &cfg, net)?;
                let host_link = host
                    .nl
                    .link_by_name(host_if)
                    .map_err(kernel(format!("look up {host_if}")))?;
                let peer = sandbox
                    .nl
                    .link_by_name(ctr_if)
                    .map_err(kernel(format!("look up {ctr_if} in sandbox")))?;
                match (host_link, peer) {
                    (Some(h), Some(_)) => {
                        if h.master != Some(bridge) {
                            host.nl
                                .set_master(h.index, Some(bridge))
                                .map_err(kernel(format!("attach {host_if} to {}", cfg.bridge)))?;
                        }
                        if !h.up {
                            host.nl
                                .set_up(h.index)
                                .map_err(kernel(format!("bring up {host_if}")))?;
                        }
                        let index = h.index;
                        // Port flags are the bridge's: re-read them if the port is new to it.
                        kept = Some(h).filter(|h| h.master == Some(bridge));
                        index
                    }
                    (h, _) => {
                        // Half a pair cannot be repaired in place: make it anew.
                        if h.is_some() {
                            host.nl
                                .delete_link(host_if)
                                .map_err(kernel(format!("delete stale {host_if}")))?;
                        }
                        host.nl.create_veth(spec(bridge)).map_err(create_err)?
                    }
                }
            }
        };
        // A bridge port needs no IPv6 of its own. Without it the host's IPv6 routing table
        // gains nothing per join (three routes otherwise) and the port sends no router
        // solicitations or MLD reports. Each join makes the kernel walk that table once
        // (here, or when the carrier comes up with the peer below); at 10,000 joins a
        // table grown by every join before made joins cost ever more. Done before the
        // peer is up, so that the carrier finds IPv6 already off.
        if kept.is_none() {
            let name = host_if.clone();
            match host.ns.run(move || sysctl::disable_ipv6(&name)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(interface = %host_if, error = %e, "could not turn IPv6 off on a bridge port")
                }
            }
        }
        let peer = sandbox
            .nl
            .link_by_name(ctr_if)
            .map_err(kernel(format!("look up {ctr_if} in sandbox")))?
            .ok_or_else(|| {
                CoreError::Forbidden(format!("{ctr_if} did not appear in the sandbox"))
            })?;
        let peer_index = peer.index;
        for addr in ep.addr_v4.iter().chain(ep.addr_v6.iter()) {
            sandbox
                .nl
                .add_address(
                    peer_index,
                    *addr,
                    AddrFlags {
                        nodad: addr.addr().is_ipv6(),
                    },
                )
                .map_err(kernel(format!("add address {addr} to {ctr_if}")))?;
        }
        if !peer.up {
            sandbox
                .nl
                .set_up(peer_index)
                .map_err(kernel(format!("bring up {ctr_if}")))?;
        }
        let isolated = kept.as_ref().is_some_and(|h| h.isolated == Some(true));
        let hairpin = kept.as_ref().is_some_and(|h| h.hairpin == Some(true));
        if !cfg.enable_icc && !isolated {
            // Inter-container traffic off: isolated ports exchange no frames with each
            // other, only with the bridge (the gateway), so containers still reach the
            // host and the world.
            host.nl
                .set_isolated(host_index, true)
                .map_err(kernel(format!("isolate bridge port {host_if}")))?;
        }
        if !repair {
            crate::failpoint::hit("join:interface-made");
        }
        if !ep.ports.is_empty() {
            // Where br_netfilter is loaded (Docker loads it), a container's packet to its
            // own published port is DNATed at the bridge and sent back out of the port it
            // came in on, which needs hairpin mode.
            if !hairpin {
                host.nl
                    .set_hairpin(host_index, true)
                    .map_err(kernel(format!("turn on hairpin mode of {host_if}")))?;
            }
            let mut want = Want::new();
            want.ports(&port_fw(ep));
            host.fw.apply(&want, &Want::new())?;
            if !repair {
                crate::failpoint::hit("join:ports-published");
            }
        }
        Ok(())
    }

    fn leave(
        &self,
        host: &mut HostKernel,
        sandbox: Option<&mut SandboxKernel>,
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
            host.fw.apply(&Want::new(), &gone)?;
            host.fw.flush_udp(&ports);
            crate::failpoint::hit("leave:ports-unpublished");
        }
        let Some(h) = &join.host_ifname else {
            return Ok(());
        };
        // Deleted in the background: first free what others may take at once — the
        // addresses (IPAM hands them out again) and the interface name in the sandbox (its
        // next join may want it) — so the lingering pair harms no one.
        if host.deletes_later()
            && let (Some(sb), Some(c)) = (sandbox, &join.container_ifname)
            && let Ok(Some(peer)) = sb.nl.link_by_name(c)
        {
            let freed = ep
                .addr_v4
                .iter()
                .chain(ep.addr_v6.iter())
                .try_for_each(|a| sb.nl.del_address(peer.index, *a).map(drop))
                .and_then(|()| sb.nl.rename(peer.index, &reaper::gone_name(&ep.id)));
            if freed.is_ok() {
                return host.delete_link(h);
            }
        }
        // Removing the host end removes the peer, its addresses and its routes with it.
        host.nl
            .delete_link(h)
            .map_err(kernel(format!("delete veth {h}")))?;
        Ok(())
    }

    fn orphans(
        &self,
        net: &NetworkRecord,
        links: &HostLinks<'_>,
        named: &std::collections::BTreeSet<String>,
    ) -> Vec<String> {
        let Ok(cfg) = BridgeConfig::of(net) else {
            return Vec::new();
        };
        let Some(bridge) = links.by_name.get(cfg.bridge.as_str()) else {
            return Vec::new();
        };
        links
            .ports
            .get(&bridge.index)
            .into_iter()
            .flatten()
            // A bridge port's own description does not give its kind: let it through.
            .filter(|l| l.kind.as_deref().is_none_or(|k| k == "veth"))
            .filter(|l| is_host_ifname(&l.name) && !named.contains(&l.name))
            .map(|l| l.name.clone())
            .collect()
    }

    fn join_looks_right(
        &self,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        join: &JoinRecord,
        view: KernelView<'_>,
    ) -> bool {
        let Ok(cfg) = BridgeConfig::of(net) else {
            return false;
        };
        let (Some(host_if), Some(ctr_if)) = (&join.host_ifname, &join.container_ifname) else {
            return false;
        };
        let (Some(bridge), Some(h), Some(peer)) = (
            view.host_links.get(&cfg.bridge),
            view.host_links.get(host_if),
            view.sandbox_links.get(ctr_if),
        ) else {
            return false;
        };
        let mac_right = match (ep.mac.as_deref(), peer.mac) {
            (Some(want), Some(have)) => want.eq_ignore_ascii_case(&lnet_kernel::format_mac(&have)),
            (None, _) => true,
            (Some(_), None) => false,
        };
        h.master == Some(bridge.index)
            && h.up
            && peer.up
            && mac_right
            && (cfg.enable_icc || h.isolated == Some(true))
            && (ep.ports.is_empty() || h.hairpin == Some(true))
            && ep
                .addr_v4
                .iter()
                .chain(ep.addr_v6.iter())
                .all(|a| view.sandbox_addrs.contains(&(peer.index, *a)))
    }

    fn check_network(
        &self,
        host: &mut HostKernel,
        net: &NetworkRecord,
        found: &mut Findings,
    ) -> Result<()> {
        let cfg = BridgeConfig::of(net)?;
        let name = &cfg.bridge;
        let Some(link) = host
            .nl
            .link_by_name(name)
            .map_err(kernel(format!("look up bridge {name}")))?
        else {
            found.missing(format!("bridge {name}"));
            return Ok(());
        };
        if !link.is_kind("bridge") {
            found.different(format!(
                "{name} is a {}, not a bridge",
                link.kind.as_deref().unwrap_or("device")
            ));
            return Ok(());
        }
        if !link.up {
            found.different(format!("bridge {name} is down"));
        }
        if marked_network(link.alias.as_deref()) != Some(net.id.as_str()) {
            found.different(format!(
                "bridge {name} lacks lnet's mark (alias {}, not {:?})",
                mark(&net.id),
                link.alias.as_deref().unwrap_or("")
            ));
        }
        if let Some(mtu) = cfg.mtu.filter(|m| *m != link.mtu) {
            found.different(format!("bridge {name} has MTU {}, not {mtu}", link.mtu));
        }
        let want = expected_bridge_addrs(net, &cfg);
        let have: Vec<IpNet> = host
            .nl
            .addresses(Some(link.index))
            .map_err(kernel(format!("list addresses of {name}")))?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        for a in want.iter().filter(|a| !have.contains(a)) {
            found.missing(format!("address {a} on {name}"));
        }
        for a in have
            .iter()
            .filter(|a| !want.contains(a) && !is_kernel_link_local(a))
        {
            found.extra(format!("address {a} on {name}"));
        }
        Ok(())
    }

    fn check_join(
        &self,
        host: &mut HostKernel,
        sandbox: &mut SandboxKernel,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        join: &JoinRecord,
        found: &mut Findings,
    ) -> Result<()> {
        let cfg = BridgeConfig::of(net)?;
        let (Some(host_if), Some(ctr_if)) = (&join.host_ifname, &join.container_ifname) else {
            found.different("a join record without interface names");
            return Ok(());
        };
        let bridge = host
            .nl
            .link_by_name(&cfg.bridge)
            .map_err(kernel(format!("look up bridge {}", cfg.bridge)))?;
        match host
            .nl
            .link_by_name(host_if)
            .map_err(kernel(format!("look up {host_if}")))?
        {
            None => found.missing(format!("veth {host_if}")),
            Some(h) => {
                if bridge.is_some_and(|b| h.master != Some(b.index)) {
                    found.different(format!("{host_if} is not on bridge {}", cfg.bridge));
                }
                if !h.up {
                    found.different(format!("{host_if} is down"));
                }
                if !cfg.enable_icc && h.isolated != Some(true) {
                    found.different(format!(
                        "{host_if} is not an isolated bridge port (ICC is off)"
                    ));
                }
                if !ep.ports.is_empty() && h.hairpin != Some(true) {
                    found.different(format!(
                        "{host_if} has hairpin mode off (it publishes ports)"
                    ));
                }
            }
        }
        let Some(peer) = sandbox
            .nl
            .link_by_name(ctr_if)
            .map_err(kernel(format!("look up {ctr_if} in the sandbox")))?
        else {
            found.missing(format!("interface {ctr_if}"));
            return Ok(());
        };
        if !peer.up {
            found.different(format!("{ctr_if} is down"));
        }
        if let (Some(want), Some(have)) = (ep.mac.as_deref(), peer.mac) {
            let have = lnet_kernel::format_mac(&have);
            if !want.eq_ignore_ascii_case(&have) {
                found.different(format!("{ctr_if} has MAC {have}, not {want}"));
            }
        }
        let have: Vec<IpNet> = sandbox
            .nl
            .addresses(Some(peer.index))
            .map_err(kernel(format!("list addresses of {ctr_if}")))?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        for a in ep.addr_v4.iter().chain(ep.addr_v6.iter()) {
            if !have.contains(a) {
                found.missing(format!("address {a} on {ctr_if}"));
            }
        }
        Ok(())
    }

    fn check_sandbox(&self, sandbox: &lnet_store::SandboxRecord) -> Result<()> {
        if sandbox.host_mode {
            return Err(CoreError::Forbidden(format!(
                "sandbox {} uses host networking and cannot join a bridge network",
                sandbox.container_id
            )));
        }
        Ok(())
    }

    fn default_host_ip(&self, net: &NetworkRecord) -> Result<IpAddr> {
        if net.internal {
            return Err(CoreError::invalid(
                crate::ports::FIELD,
                "",
                format!(
                    "network {} is internal: nothing outside it can reach its containers, so it publishes no ports",
                    net.name
                ),
            ));
        }
        Ok(IpAddr::V4(BridgeConfig::of(net)?.host_binding_ipv4))
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

    fn gateways(&self, net: &NetworkRecord) -> (Option<IpAddr>, Option<IpAddr>) {
        if net.internal {
            return (None, None);
        }
        let gw = |v6: bool| {
            net.pools
                .iter()
                .find(|p| p.is_v6() == v6)
                .and_then(|p| p.gateway)
                .map(|g| g.addr())
        };
        (gw(false), gw(true))
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

/// Whether `name` has the shape of the host interfaces this driver makes: `veth` and seven
/// hex digits of an endpoint id.
/// An IPv6 link-local address, which the kernel gives a link itself (not drift).
fn is_kernel_link_local(addr: &IpNet) -> bool {
    matches!(addr, IpNet::V6(a) if a.addr().segments()[0] & 0xffc0 == 0xfe80)
}

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
