//! The drivers that put containers straight on a host link's LAN: `macvlan` (each container
//! its own MAC on the parent) and `ipvlan` (each its own address behind the parent's MAC,
//! where a switch allows one MAC per port), with Docker's options.
//!
//! A network names its parent (`-o parent=eth0`). `eth0.10` is VLAN 10 on `eth0`: the
//! sub-interface is made when missing, recorded as lnet's, and removed with the network —
//! one that was there before is only borrowed. Without a parent Docker makes an isolated
//! network on a dummy link, which lnet does too where the kernel has dummy links. One network
//! per parent. A join makes the container's link on the parent straight in the sandbox, with
//! its final name, MAC and addresses: there is no host end and no bridge, so nothing of a
//! join is left in the host, and a leave deletes one link. No NAT, no published ports.
//!
//! What a kernel lacks (ipvlan, 802.1q, dummy) is probed once and refused by name before
//! anything is written.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use lnet_kernel::{IpvlanFlag, IpvlanMode, MacvlanMode, SubLinkKind, SubLinkSpec};
use lnet_store::{EndpointRecord, JoinRecord, NetworkRecord, SandboxRecord};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::driver::{
    Capabilities, Driver, JoinMode, JoinPlan, NetworkFacts, PlanNetwork, sandbox_ifname,
};
use crate::error::{CoreError, Result};
use crate::ids::{self, parse_mac};
use crate::kernel::{HostOps, Links, SandboxOps};
use crate::reconcile;
use crate::want::{Drift, LinkWant, Side, Wanted};

/// `-o parent=`.
pub const OPT_PARENT: &str = "parent";
/// `-o macvlan_mode=`.
pub const OPT_MACVLAN_MODE: &str = "macvlan_mode";
/// `-o ipvlan_mode=`.
pub const OPT_IPVLAN_MODE: &str = "ipvlan_mode";
/// `-o ipvlan_flag=`.
pub const OPT_IPVLAN_FLAG: &str = "ipvlan_flag";

/// Options every driver is handed by Docker's clients and that are the controller's.
const GENERIC: [&str; 2] = [
    "com.docker.network.enable_ipv6",
    "com.docker.network.internal",
];

/// Which of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Macvlan,
    Ipvlan,
}

/// `macvlan` or `ipvlan`.
#[derive(Debug)]
pub struct LanDriver {
    flavor: Flavor,
    /// What the kernel was found to have, by link type: probed once.
    kinds: Mutex<HashMap<&'static str, bool>>,
}

impl LanDriver {
    /// The `macvlan` driver.
    pub fn macvlan() -> LanDriver {
        LanDriver {
            flavor: Flavor::Macvlan,
            kinds: Mutex::default(),
        }
    }

    /// The `ipvlan` driver.
    pub fn ipvlan() -> LanDriver {
        LanDriver {
            flavor: Flavor::Ipvlan,
            kinds: Mutex::default(),
        }
    }

    fn kernel_kind(&self) -> &'static str {
        match self.flavor {
            Flavor::Macvlan => "macvlan",
            Flavor::Ipvlan => "ipvlan",
        }
    }

    /// Whether the kernel has link type `kind`, asked once.
    fn has(&self, links: &mut dyn Links, kind: &'static str) -> Result<bool> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = kinds.get(kind) {
            return Ok(*k);
        }
        let has = links
            .kind_supported(kind)
            .map_err(CoreError::kernel(format!(
                "probe the kernel for {kind} links"
            )))?;
        kinds.insert(kind, has);
        Ok(has)
    }

    /// Refuses, naming the kernel feature, when the kernel lacks link type `kind`.
    fn need(&self, links: &mut dyn Links, kind: &'static str, why: &str) -> Result<()> {
        if self.has(links, kind)? {
            return Ok(());
        }
        let (module, config) = match kind {
            "vlan" => ("8021q", "CONFIG_VLAN_8021Q"),
            "dummy" => ("dummy", "CONFIG_DUMMY"),
            "ipvlan" => ("ipvlan", "CONFIG_IPVLAN"),
            _ => ("macvlan", "CONFIG_MACVLAN"),
        };
        Err(CoreError::Forbidden(format!(
            "{why} needs the kernel's {kind} links (module {module}, {config}), which this kernel does not have"
        )))
    }

    fn sub_kind(&self, cfg: &LanConfig) -> SubLinkKind {
        match (self.flavor, cfg.mode.as_str()) {
            (Flavor::Macvlan, m) => SubLinkKind::Macvlan(match m {
                "private" => MacvlanMode::Private,
                "vepa" => MacvlanMode::Vepa,
                "passthru" => MacvlanMode::Passthru,
                _ => MacvlanMode::Bridge,
            }),
            (Flavor::Ipvlan, m) => SubLinkKind::Ipvlan(
                match m {
                    "l3" => IpvlanMode::L3,
                    "l3s" => IpvlanMode::L3s,
                    _ => IpvlanMode::L2,
                },
                match cfg.flag.as_deref() {
                    Some("private") => IpvlanFlag::Private,
                    Some("vepa") => IpvlanFlag::Vepa,
                    _ => IpvlanFlag::Bridge,
                },
            ),
        }
    }

    /// An L3 ipvlan routes: no gateway, a default route through the link instead.
    fn routed(&self, cfg: &LanConfig) -> bool {
        self.flavor == Flavor::Ipvlan && cfg.mode != "l2"
    }

    /// The container's link as a join wants it.
    fn want_link(&self, ep: &EndpointRecord, name: &str) -> LinkWant {
        LinkWant {
            kind: Some(self.kernel_kind()),
            up: true,
            // An ipvlan has its parent's MAC.
            mac: (self.flavor == Flavor::Macvlan)
                .then(|| {
                    ep.mac
                        .as_deref()
                        .and_then(|m| parse_mac("MacAddress", m).ok())
                })
                .flatten(),
            addrs: ep
                .addr_v4
                .iter()
                .chain(ep.addr_v6.iter())
                .copied()
                .collect(),
            ..LinkWant::new(Side::Sandbox, "interface", name)
        }
    }

    /// Makes the container's link on the parent, in the sandbox; `false` when its name is
    /// taken there.
    fn make_link(
        &self,
        host: &mut dyn HostOps,
        sandbox: &mut dyn SandboxOps,
        (net, cfg): (&NetworkRecord, &LanConfig),
        ep: &EndpointRecord,
        name: &str,
    ) -> Result<bool> {
        let parent = parent_index(host.links(), net, cfg)?;
        let mac = match self.flavor {
            Flavor::Macvlan => ep
                .mac
                .as_deref()
                .map(|m| parse_mac("MacAddress", m))
                .transpose()?,
            Flavor::Ipvlan => None,
        };
        let spec = SubLinkSpec {
            name,
            kind: self.sub_kind(cfg),
            parent,
            ns: sandbox.netns(),
            mac,
            mtu: None,
            up: false,
        };
        match host.links().create_sublink(spec) {
            Ok(_) => Ok(true),
            Err(e) if e.is_exists() => Ok(false),
            Err(e) if e.is_busy() => Err(CoreError::Forbidden(format!(
                "parent {} of network {} is in use by another kind of link (a macvlan and an ipvlan cannot share a parent, and a passthru macvlan takes it whole)",
                cfg.parent, net.name
            ))),
            Err(e) => Err(CoreError::kernel(format!(
                "create {} {name} on {} in the sandbox",
                self.kernel_kind(),
                cfg.parent
            ))(e)),
        }
    }
}

/// What a macvlan or ipvlan network records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanConfig {
    /// The link containers' links hang on.
    pub parent: String,
    /// macvlan: bridge, private, vepa, passthru; ipvlan: l2, l3, l3s.
    pub mode: String,
    /// ipvlan: bridge, private, vepa.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// The parent is lnet's: made with the network and removed with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made: Option<Made>,
}

/// A parent lnet makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Made {
    /// VLAN `id` on link `base`.
    Vlan {
        /// The link it is on.
        base: String,
        /// The VLAN id.
        id: u16,
    },
    /// A dummy link: an isolated network.
    Dummy,
}

impl LanConfig {
    /// Reads the config back from a record.
    pub fn of(net: &NetworkRecord) -> Result<LanConfig> {
        serde_json::from_value(net.driver_state.clone()).map_err(|e| {
            CoreError::Forbidden(format!(
                "network {}'s record has no {} config it can read: {e}",
                net.name, net.driver
            ))
        })
    }
}

/// The parent's index now; an error naming it when it is gone.
fn parent_index(links: &mut dyn Links, net: &NetworkRecord, cfg: &LanConfig) -> Result<u32> {
    match links
        .link_by_name(&cfg.parent)
        .map_err(CoreError::kernel(format!("look up {}", cfg.parent)))?
    {
        Some(l) => Ok(l.index),
        None => Err(CoreError::Forbidden(format!(
            "parent {} of network {} is gone{}",
            cfg.parent,
            net.name,
            if cfg.made.is_some() {
                ""
            } else {
                ": lnet did not make it and cannot make it again; bring it back, or remove the network"
            }
        ))),
    }
}

/// `NAME.VLAN` → (`NAME`, VLAN) when it reads so.
fn vlan_of(parent: &str) -> Option<(&str, &str)> {
    parent.rsplit_once('.').filter(|(b, _)| !b.is_empty())
}

impl Driver for LanDriver {
    fn name(&self) -> &str {
        self.kernel_kind()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            requires_ipv4: true,
            shares_subnets: true,
            ..Capabilities::default()
        }
    }

    fn plan_network(&self, plan: &mut PlanNetwork<'_>) -> Result<serde_json::Value> {
        let known: &[&str] = match self.flavor {
            Flavor::Macvlan => &[OPT_PARENT, OPT_MACVLAN_MODE],
            Flavor::Ipvlan => &[OPT_PARENT, OPT_IPVLAN_MODE, OPT_IPVLAN_FLAG],
        };
        for key in plan.options.keys() {
            if !known.contains(&key.as_str()) && !GENERIC.contains(&key.as_str()) {
                return Err(CoreError::invalid(
                    "Options",
                    key,
                    format!(
                        "the {} driver does not take this option; it takes: {}",
                        self.kernel_kind(),
                        known.join(", ")
                    ),
                ));
            }
        }
        let get = |k: &str| plan.options.get(k).map(String::as_str);
        let one_of = |k: &str, default: &str, allowed: &[&str]| -> Result<String> {
            let v = get(k).unwrap_or(default);
            if allowed.contains(&v) {
                Ok(v.to_string())
            } else {
                Err(CoreError::invalid(
                    k,
                    v,
                    format!("must be one of: {}", allowed.join(", ")),
                ))
            }
        };
        let (mode, flag) = match self.flavor {
            Flavor::Macvlan => (
                one_of(
                    OPT_MACVLAN_MODE,
                    "bridge",
                    &["bridge", "private", "vepa", "passthru"],
                )?,
                None,
            ),
            Flavor::Ipvlan => (
                one_of(OPT_IPVLAN_MODE, "l2", &["l2", "l3", "l3s"])?,
                Some(one_of(
                    OPT_IPVLAN_FLAG,
                    "bridge",
                    &["bridge", "private", "vepa"],
                )?),
            ),
        };
        let links = plan.host.links();
        self.need(
            links,
            self.kernel_kind(),
            &format!("the {} driver", self.kernel_kind()),
        )?;
        let exists = |links: &mut dyn Links, name: &str| -> Result<bool> {
            Ok(links
                .link_by_name(name)
                .map_err(CoreError::kernel(format!("look up {name}")))?
                .is_some())
        };
        let (parent, made) = match get(OPT_PARENT) {
            None | Some("") => {
                self.need(
                    links,
                    "dummy",
                    &format!(
                        "a {} network without -o parent (Docker isolates it on a dummy link)",
                        self.kernel_kind()
                    ),
                )?;
                let prefix = if self.flavor == Flavor::Macvlan {
                    "dm-"
                } else {
                    "di-"
                };
                (format!("{prefix}{}", &plan.id[..12]), Some(Made::Dummy))
            }
            Some(p) => {
                ids::validate_ifname(OPT_PARENT, p)?;
                if self.flavor == Flavor::Macvlan && p == "lo" {
                    return Err(CoreError::invalid(
                        OPT_PARENT,
                        p,
                        "a macvlan cannot sit on the loopback interface; name a LAN interface",
                    ));
                }
                if exists(links, p)? {
                    (p.to_string(), None)
                } else if let Some((base, vlan)) = vlan_of(p) {
                    let id: u16 = vlan
                        .parse()
                        .ok()
                        .filter(|i| (1..=4094).contains(i))
                        .ok_or_else(|| {
                            CoreError::invalid(
                                OPT_PARENT,
                                p,
                                "a VLAN parent reads IFACE.VLAN, with a VLAN id from 1 to 4094",
                            )
                        })?;
                    if !exists(links, base)? {
                        return Err(CoreError::invalid(
                            OPT_PARENT,
                            p,
                            format!("there is no interface {base} to put VLAN {id} on"),
                        ));
                    }
                    self.need(
                        links,
                        "vlan",
                        &format!("-o parent={p} (VLAN {id} on {base})"),
                    )?;
                    (
                        p.to_string(),
                        Some(Made::Vlan {
                            base: base.to_string(),
                            id,
                        }),
                    )
                } else {
                    return Err(CoreError::invalid(
                        OPT_PARENT,
                        p,
                        "there is no such interface on this host",
                    ));
                }
            }
        };
        if let Some(other) = plan
            .others
            .iter()
            .find(|n| LanConfig::of(n).is_ok_and(|c| c.parent == parent))
        {
            return Err(CoreError::Forbidden(format!(
                "parent {parent} is taken by {} network {}: one network per parent (a VLAN sub-interface, -o parent={parent}.ID, gives another)",
                self.kernel_kind(),
                other.name
            )));
        }
        Ok(serde_json::to_value(LanConfig {
            parent,
            mode,
            flag,
            made,
        })
        .expect("a config serialises"))
    }

    fn create_network(
        &self,
        host: &mut dyn HostOps,
        net: &NetworkRecord,
        _config: &Config,
    ) -> Result<()> {
        let cfg = LanConfig::of(net)?;
        let kind = match &cfg.made {
            None => {
                parent_index(host.links(), net, &cfg)?;
                return Ok(());
            }
            Some(Made::Dummy) => SubLinkKind::Dummy,
            Some(Made::Vlan { id, .. }) => SubLinkKind::Vlan(*id),
        };
        let base = match &cfg.made {
            Some(Made::Vlan { base, .. }) => {
                let cfg = LanConfig {
                    parent: base.clone(),
                    made: None,
                    ..cfg.clone()
                };
                parent_index(host.links(), net, &cfg)?
            }
            _ => 0,
        };
        let made = host.links().create_sublink(SubLinkSpec {
            name: &cfg.parent,
            kind,
            parent: base,
            ns: None,
            mac: None,
            mtu: None,
            up: true,
        });
        match made {
            Ok(_) => Ok(()),
            // Made before (a retry, a repair): brought up if it is down.
            Err(e) if e.is_exists() => {
                let l = parent_index(host.links(), net, &cfg)?;
                host.links()
                    .set_up(l)
                    .map_err(CoreError::kernel(format!("set {} up", cfg.parent)))
            }
            Err(e) => Err(CoreError::kernel(format!(
                "create {} {}",
                kind.kernel_kind(),
                cfg.parent
            ))(e)),
        }
    }

    fn delete_network(&self, host: &mut dyn HostOps, net: &NetworkRecord) -> Result<()> {
        let cfg = LanConfig::of(net)?;
        if cfg.made.is_some() {
            host.links()
                .delete_link(&cfg.parent)
                .map_err(CoreError::kernel(format!("delete {}", cfg.parent)))?;
        }
        Ok(())
    }

    fn plan_join(
        &self,
        _host: &mut dyn HostOps,
        net: &NetworkRecord,
        _ep: &EndpointRecord,
        sandbox: &SandboxRecord,
    ) -> Result<JoinPlan> {
        JoinPlan::sandbox_side(
            sandbox,
            &format!("{} network {}", self.kernel_kind(), net.name),
        )
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
        let cfg = LanConfig::of(net)?;
        let name = sandbox_ifname(ep, join)?;
        let want = self.want_link(ep, name);
        let mut made =
            mode == JoinMode::Fresh && self.make_link(host, sandbox, (net, &cfg), ep, name)?;
        let (mut have, mut drift) = reconcile::observe(sandbox.links(), &want, |_| None)?;
        if !made && (have.is_none() || drift.iter().any(Drift::needs_remake)) {
            // Gone, or of another kind: made anew.
            if have.is_some() {
                sandbox
                    .links()
                    .delete_link(name)
                    .map_err(CoreError::kernel(format!("delete stale {name}")))?;
            }
            made = self.make_link(host, sandbox, (net, &cfg), ep, name)?;
            if !made {
                return Err(CoreError::Forbidden(format!(
                    "{name} could not be made in sandbox {}",
                    join.sandbox_id
                )));
            }
            (have, drift) = reconcile::observe(sandbox.links(), &want, |_| None)?;
        }
        let link = have
            .ok_or_else(|| CoreError::Forbidden(format!("{name} did not appear in the sandbox")))?;
        reconcile::apply(sandbox.links(), link.index, &want, &drift, |_| None)?;
        if self.routed(&cfg) && !net.internal {
            for (fam, any) in [
                (ep.addr_v4.is_some(), IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                (ep.addr_v6.is_some(), IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            ] {
                if !fam {
                    continue;
                }
                let route = lnet_kernel::Route {
                    dst: lnet_kernel::IpNet::new(any, 0).expect("a zero prefix fits every family"),
                    gateway: None,
                    oif: Some(link.index),
                    scope_link: true,
                };
                sandbox
                    .links()
                    .replace_route(&route)
                    .map_err(CoreError::kernel(format!("route {any}/0 through {name}")))?;
            }
        }
        if made && mode == JoinMode::Fresh {
            crate::failpoint::hit("join:interface-made");
        }
        Ok(())
    }

    fn leave(
        &self,
        _host: &mut dyn HostOps,
        sandbox: Option<&mut dyn SandboxOps>,
        _net: &NetworkRecord,
        _ep: &EndpointRecord,
        join: &JoinRecord,
    ) -> Result<()> {
        // Without its sandbox the link went with the namespace.
        if let (Some(sb), Some(name)) = (sandbox, &join.container_ifname) {
            sb.links()
                .delete_link(name)
                .map_err(CoreError::kernel(format!("delete {name} in the sandbox")))?;
        }
        Ok(())
    }

    fn want_network(&self, net: &NetworkRecord) -> Wanted {
        let Ok(cfg) = LanConfig::of(net) else {
            return Wanted::default();
        };
        let want = match &cfg.made {
            // lnet's own: there, of its kind, up.
            Some(m) => LinkWant {
                kind: Some(match m {
                    Made::Vlan { .. } => "vlan",
                    Made::Dummy => "dummy",
                }),
                up: true,
                ..LinkWant::new(Side::Host, "parent", cfg.parent.clone())
            },
            // Borrowed: only there.
            None => LinkWant::new(Side::Host, "parent", cfg.parent.clone()),
        };
        Wanted { links: vec![want] }
    }

    fn want_join(&self, _net: &NetworkRecord, ep: &EndpointRecord, join: &JoinRecord) -> Wanted {
        match &join.container_ifname {
            Some(name) => Wanted {
                links: vec![self.want_link(ep, name)],
            },
            None => Wanted::default(),
        }
    }

    fn facts(&self, net: &NetworkRecord) -> NetworkFacts {
        let routed = LanConfig::of(net).is_ok_and(|c| self.routed(&c));
        let gw = |v6: bool| {
            net.pools
                .iter()
                .find(|p| p.is_v6() == v6)
                .and_then(|p| p.gateway)
                .map(|g| g.addr())
        };
        NetworkFacts {
            gateways: if net.internal || routed {
                (None, None)
            } else {
                (gw(false), gw(true))
            },
            publish_on: Err(format!(
                "network {} ({} driver) publishes no ports: its containers are on the LAN with addresses of their own; reach them there and drop -p",
                net.name,
                self.kernel_kind()
            )),
            resolves_names: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lnet_store::{IpamSpec, Lifecycle, SCHEMA_VERSION};

    use super::*;
    use crate::testing::{Fake, FakeHost, Side as At};

    const ID: &str = "4f3c2b1a00112233445566778899aabbccddeeff00112233445566778899aabb";

    fn plan(
        d: &LanDriver,
        host: &mut FakeHost,
        kv: &[(&str, &str)],
        others: Vec<&NetworkRecord>,
    ) -> Result<LanConfig> {
        let o: BTreeMap<String, String> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut p = crate::drivers::plan_of(ID, &o, others, host);
        d.plan_network(&mut p)
            .map(|v| serde_json::from_value(v).unwrap())
    }

    fn net(cfg: &LanConfig) -> NetworkRecord {
        NetworkRecord {
            schema: SCHEMA_VERSION,
            state: Lifecycle::Ready,
            revision: 1,
            id: ID.into(),
            name: "lan".into(),
            driver: "macvlan".into(),
            scope: "local".into(),
            created_unix_nanos: 0,
            ipam: IpamSpec::default(),
            pools: Vec::new(),
            enable_ipv6: false,
            internal: false,
            attachable: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            driver_state: serde_json::to_value(cfg).unwrap(),
        }
    }

    #[test]
    fn options_are_dockers_and_bad_ones_are_named() {
        let fake = Fake::new();
        let mut host = fake.host();
        fake.add_link(At::Host, "eth9", "veth");
        let d = LanDriver::macvlan();
        let c = plan(&d, &mut host, &[("parent", "eth9")], vec![]).unwrap();
        assert_eq!(
            (c.parent.as_str(), c.mode.as_str(), c.made),
            ("eth9", "bridge", None)
        );
        let c = plan(
            &d,
            &mut host,
            &[("parent", "eth9"), ("macvlan_mode", "private")],
            vec![],
        )
        .unwrap();
        assert_eq!(c.mode, "private");
        for (kv, field, says) in [
            (
                vec![("parent", "eth9"), ("macvlan_mode", "l2")],
                "macvlan_mode",
                "one of",
            ),
            (vec![("parent", "eth8")], "parent", "no such interface"),
            (vec![("parent", "lo")], "parent", "loopback"),
            (
                vec![("parent", "eth9"), ("mode", "x")],
                "Options",
                "takes: parent",
            ),
            (vec![("parent", "eth8.10")], "parent", "no interface eth8"),
            (vec![("parent", "eth9.5000")], "parent", "1 to 4094"),
        ] {
            let e = plan(&d, &mut host, &kv, vec![]).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains(says), "{kv:?}: {e}");
        }
        let d = LanDriver::ipvlan();
        let c = plan(
            &d,
            &mut host,
            &[
                ("parent", "eth9"),
                ("ipvlan_mode", "l3"),
                ("ipvlan_flag", "private"),
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(
            (c.mode.as_str(), c.flag.as_deref()),
            ("l3", Some("private"))
        );
    }

    #[test]
    fn what_the_kernel_lacks_is_named_and_probed_once() {
        let fake = Fake::new();
        let mut host = fake.host();
        fake.add_link(At::Host, "eth9", "veth");
        fake.world().kinds_missing = vec!["ipvlan".into(), "vlan".into(), "dummy".into()];
        let e = plan(
            &LanDriver::ipvlan(),
            &mut host,
            &[("parent", "eth9")],
            vec![],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ipvlan") && e.contains("CONFIG_IPVLAN"), "{e}");
        let d = LanDriver::macvlan();
        let e = plan(&d, &mut host, &[("parent", "eth9.10")], vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("8021q"), "{e}");
        let e = plan(&d, &mut host, &[], vec![]).unwrap_err().to_string();
        assert!(e.contains("dummy") && e.contains("-o parent"), "{e}");
        let probes = |fake: &Fake| {
            fake.world()
                .calls
                .iter()
                .filter(|c| c.contains("kind_supported macvlan"))
                .count()
        };
        assert_eq!(probes(&fake), 1);
        let _ = plan(&d, &mut host, &[("parent", "eth9")], vec![]);
        assert_eq!(probes(&fake), 1, "asked again");
    }

    #[test]
    fn a_vlan_parent_is_made_and_removed_only_when_lnet_made_it() {
        let fake = Fake::new();
        let mut host = fake.host();
        fake.add_link(At::Host, "eth9", "veth");
        fake.add_link(At::Host, "eth9.20", "vlan");
        let d = LanDriver::macvlan();
        let c = plan(&d, &mut host, &[("parent", "eth9.10")], vec![]).unwrap();
        assert_eq!(
            c.made,
            Some(Made::Vlan {
                base: "eth9".into(),
                id: 10
            })
        );
        // Borrowed: there before.
        let borrowed = plan(&d, &mut host, &[("parent", "eth9.20")], vec![]).unwrap();
        assert_eq!(borrowed.made, None);
        let config = Config::default();
        d.create_network(&mut host, &net(&c), &config).unwrap();
        let made = fake.link(At::Host, "eth9.10").unwrap();
        assert!(made.is_kind("vlan") && made.up, "{made:?}");
        d.create_network(&mut host, &net(&c), &config)
            .expect("made again: a retry");
        d.delete_network(&mut host, &net(&c)).unwrap();
        assert!(fake.link(At::Host, "eth9.10").is_none());
        d.create_network(&mut host, &net(&borrowed), &config)
            .unwrap();
        d.delete_network(&mut host, &net(&borrowed)).unwrap();
        assert!(
            fake.link(At::Host, "eth9.20").is_some(),
            "removed a link lnet did not make"
        );
        // One network per parent.
        let first = net(&borrowed);
        let e = plan(&d, &mut host, &[("parent", "eth9.20")], vec![&first])
            .unwrap_err()
            .to_string();
        assert!(e.contains("taken by macvlan network lan"), "{e}");
        // A borrowed parent gone behind lnet's back is named, not made.
        fake.world().host.links.remove("eth9.20");
        let e = d
            .create_network(&mut host, &net(&borrowed), &config)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("eth9.20") && e.contains("cannot make it again"),
            "{e}"
        );
    }
}
