//! A network driver that is a plugin: each of lnet's steps is a call of Docker's
//! `/NetworkDriver.*` protocol, made as dockerd makes it, and the plugin's join answer is
//! applied in the sandbox (its interface moved in and named, addressed, routed).
//!
//! The controller journals around every call ([`Capabilities::calls_out`]), so a crash
//! between lnet's record and the plugin's answer is finished or undone at the next start,
//! and the plugin is told (`DeleteNetwork`, `DeleteEndpoint`, `Leave`) of what lnet undid.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lnet_core::want::{Drift, LinkWant, Side, Wanted};
use lnet_core::{
    Capabilities, Config, CoreError, Driver, HostOps, JoinMode, JoinPlan, NetworkFacts,
    PlanNetwork, Result, SandboxOps, Scope,
};
use lnet_plugin::{EndpointInterface, JoinResponse};
use lnet_store::{EndpointRecord, JoinRecord, NetworkRecord, SandboxRecord};
use serde_json::{Value, json};

use crate::client::{self, Addr, Bounds, CallError};
use crate::discovery::Dirs;

/// How long a plugin found unreachable is not retried for: calls fail at once meanwhile, so
/// a plugin that went away costs every other network nothing and its own one connection
/// attempt each.
const DOWN_FOR: Duration = Duration::from_secs(5);

/// A plugin as a network driver.
#[derive(Debug)]
pub struct RemoteDriver {
    name: String,
    dirs: Arc<Dirs>,
    bounds: Bounds,
    /// lnet's own plugin socket: a daemon is never its own remote driver (its calls would
    /// wait on the very locks the caller holds).
    own: Option<PathBuf>,
    active: Mutex<Option<Active>>,
    down_since: Mutex<Option<Instant>>,
}

#[derive(Debug, Clone)]
struct Active {
    addr: Addr,
    scope: Scope,
}

impl RemoteDriver {
    /// The plugin called `name`, looked for in `dirs` when first used.
    pub fn new(name: &str, dirs: Arc<Dirs>, bounds: Bounds, own: Option<PathBuf>) -> Self {
        RemoteDriver {
            name: name.to_string(),
            dirs,
            bounds,
            own,
            active: Mutex::new(None),
            down_since: Mutex::new(None),
        }
    }

    fn err(&self, message: impl Into<String>, unreachable: bool) -> CoreError {
        CoreError::Driver {
            driver: format!("network plugin {}", self.name),
            message: message.into(),
            unreachable,
        }
    }

    fn call_error(&self, e: CallError) -> CoreError {
        let unreachable = matches!(e, CallError::Unreachable { .. } | CallError::Timeout { .. });
        self.err(e.to_string(), unreachable)
    }

    /// Found and activated: `/Plugin.Activate` (it must implement `NetworkDriver`), then
    /// `GetCapabilities`. Kept until the plugin cannot be reached.
    fn activate(&self) -> Result<Active> {
        if let Some(a) = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(a);
        }
        let addr = self.dirs.find(&self.name).map_err(|e| {
            tracing::info!(plugin = %self.name, "{e}");
            CoreError::NotFound {
                kind: "network driver or plugin",
                name: self.name.clone(),
            }
        })?;
        if let (Addr::Unix(p), Some(own)) = (&addr, &self.own)
            && (p == own
                || std::fs::canonicalize(p)
                    .ok()
                    .is_some_and(|c| Some(c) == std::fs::canonicalize(own).ok()))
        {
            return Err(self.err(
                "its socket is this lnet daemon's own: lnet serves its networks directly (-d bridge)",
                false,
            ));
        }
        let bounds = self.bounds_now();
        let v = client::call(&addr, "/Plugin.Activate", &json!({}), bounds)
            .map_err(|e| self.note(e))?;
        let implements: Vec<&str> = v
            .get("Implements")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !implements.contains(&"NetworkDriver") {
            return Err(self.err(
                format!("it implements {implements:?}, not NetworkDriver"),
                false,
            ));
        }
        let caps = client::call(&addr, "/NetworkDriver.GetCapabilities", &json!({}), bounds)
            .map_err(|e| self.note(e))?;
        let scope = match caps.get("Scope").and_then(Value::as_str) {
            Some("global") => Scope::Global,
            _ => Scope::Local,
        };
        let a = Active { addr, scope };
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = Some(a.clone());
        tracing::info!(plugin = %self.name, addr = %a.addr, ?scope, "network plugin activated");
        Ok(a)
    }

    /// The bounds of the next call: no retries while the plugin is known to be down.
    fn bounds_now(&self) -> Bounds {
        let down = self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        match *down {
            Some(t) if t.elapsed() < DOWN_FOR => Bounds {
                retry: Duration::ZERO,
                ..self.bounds
            },
            _ => self.bounds,
        }
    }

    /// Remembers a call's failure: a plugin that cannot be reached is found and activated
    /// anew next time (it may have restarted elsewhere), and not waited for meanwhile.
    fn note(&self, e: CallError) -> CoreError {
        // A plugin that hangs is as good as gone: its next calls fail at once too.
        if matches!(e, CallError::Unreachable { .. } | CallError::Timeout { .. }) {
            *self.down_since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            *self.active.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.call_error(e)
    }

    /// `/NetworkDriver.<method>` with `body`.
    fn call(&self, method: &str, body: Value) -> Result<Value> {
        let a = self.activate()?;
        let started = Instant::now();
        let res = client::call(
            &a.addr,
            &format!("/NetworkDriver.{method}"),
            &body,
            self.bounds_now(),
        );
        tracing::debug!(plugin = %self.name, %method, ok = res.is_ok(), ms = started.elapsed().as_secs_f64() * 1e3, "plugin call");
        match res {
            Ok(v) => {
                *self.down_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(v)
            }
            // Optional calls a plugin need not implement, as dockerd treats them.
            Err(CallError::Refused { status: 404, .. })
                if matches!(
                    method,
                    "ProgramExternalConnectivity"
                        | "RevokeExternalConnectivity"
                        | "EndpointOperInfo"
                        | "DiscoverNew"
                        | "DiscoverDelete"
                ) =>
            {
                Ok(json!({}))
            }
            Err(e) => Err(self.note(e)),
        }
    }

    /// The gateways lnet's IPAM gave the network (the plugin is told them in
    /// `CreateNetwork`).
    fn gateways(net: &NetworkRecord) -> (Option<IpAddr>, Option<IpAddr>) {
        let gw = |v6: bool| {
            net.pools
                .iter()
                .filter(|p| p.pool.addr().is_ipv6() == v6)
                .find_map(|p| p.gateway.map(|g| g.addr()))
        };
        (gw(false), gw(true))
    }

    /// The interface a join wants in the sandbox: the plugin's, named as journaled, with
    /// the endpoint's MAC and addresses, up.
    fn want_peer(ep: &EndpointRecord, name: &str) -> LinkWant {
        LinkWant {
            up: true,
            mac: ep
                .mac
                .as_deref()
                .and_then(|m| lnet_core::parse_mac("MacAddress", m).ok()),
            addrs: ep
                .addr_v4
                .iter()
                .chain(ep.addr_v6.iter())
                .copied()
                .collect(),
            ..LinkWant::new(Side::Sandbox, "interface", name)
        }
    }

    /// A fresh join: the plugin's `Join`, then its answer applied in the sandbox.
    fn join_fresh(
        &self,
        host: &mut dyn HostOps,
        sandbox: &mut dyn SandboxOps,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        name: &str,
    ) -> Result<()> {
        let key = sandbox
            .netns()
            .and_then(|n| n.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let answer = self.call(
            "Join",
            json!({ "NetworkID": net.id, "EndpointID": ep.id, "SandboxKey": key, "Options": {} }),
        )?;
        let answer: JoinResponse = serde_json::from_value(answer)
            .map_err(|e| self.err(format!("Join: the answer is not Join's: {e}"), false))?;
        let (gw4, gw6) = Self::gateways(net);
        for (said, ours) in [(&answer.gateway, gw4), (&answer.gateway_ipv6, gw6)] {
            if said.is_empty() {
                continue;
            }
            let said_ip = said.parse::<IpAddr>().ok();
            if said_ip != ours {
                return Err(self.err(
                    format!(
                        "Join: it answered gateway {said}, but network {} routes through {} (the gateway its IPAM gave it)",
                        net.name,
                        ours.map_or_else(|| "none".into(), |g| g.to_string())
                    ),
                    false,
                ));
            }
        }
        let Some(iface) = answer.interface_name else {
            return Err(self.err(
                "Join: it answered no interface (InterfaceName), and lnet has nothing to put in the sandbox",
                false,
            ));
        };
        let src = host
            .links()
            .link_by_name(&iface.src_name)
            .map_err(CoreError::kernel(format!("look up {}", iface.src_name)))?
            .ok_or_else(|| {
                self.err(
                    format!(
                        "Join: its interface {} does not exist in lnet's namespace",
                        iface.src_name
                    ),
                    false,
                )
            })?;
        let ns = sandbox
            .netns()
            .ok_or_else(|| self.err("the sandbox has no namespace to move into", false))?;
        host.links()
            .move_to_netns(src.index, ns)
            .map_err(CoreError::kernel(format!(
                "move {} into the sandbox",
                iface.src_name
            )))?;
        let configured = self.configure(sandbox, ep, &iface, name, &answer.static_routes);
        if configured.is_err() {
            // What the move left in the sandbox goes, under either name (the undo knows
            // only the journaled one).
            let _ = sandbox.links().delete_link(&iface.src_name);
        }
        configured
    }

    /// The plugin's interface, moved into the sandbox: named as journaled, with lnet's MAC
    /// and addresses, up, with the plugin's static routes.
    fn configure(
        &self,
        sandbox: &mut dyn SandboxOps,
        ep: &EndpointRecord,
        iface: &lnet_plugin::InterfaceName,
        name: &str,
        routes: &[lnet_plugin::StaticRoute],
    ) -> Result<()> {
        let nl = sandbox.links();
        let moved = nl
            .link_by_name(&iface.src_name)
            .map_err(CoreError::kernel(format!(
                "look up {} in the sandbox",
                iface.src_name
            )))?
            .ok_or_else(|| {
                self.err(
                    format!("{} did not arrive in the sandbox", iface.src_name),
                    false,
                )
            })?;
        if iface.src_name != name {
            nl.rename(moved.index, name)
                .map_err(CoreError::kernel(format!("name {} {name}", iface.src_name)))?;
        }
        let want = Self::want_peer(ep, name);
        let (peer, drift) = lnet_core::reconcile::observe(nl, &want, |_| None)?;
        let peer = peer.ok_or_else(|| self.err(format!("{name} vanished"), false))?;
        lnet_core::reconcile::apply(nl, peer.index, &want, &drift, |_| None)?;
        for r in routes {
            let dst: ipnet::IpNet = r.destination.parse().map_err(|_| {
                self.err(
                    format!(
                        "Join: static route destination {:?} is not a CIDR",
                        r.destination
                    ),
                    false,
                )
            })?;
            let route = if r.route_type == 1 || r.next_hop.is_empty() {
                lnet_kernel::route::Route::on_link(dst, peer.index)
            } else {
                let via: IpAddr = r.next_hop.parse().map_err(|_| {
                    self.err(
                        format!(
                            "Join: static route next hop {:?} is not an address",
                            r.next_hop
                        ),
                        false,
                    )
                })?;
                lnet_kernel::route::Route {
                    dst,
                    gateway: Some(via),
                    oif: Some(peer.index),
                    scope_link: false,
                }
            };
            nl.replace_route(&route)
                .map_err(CoreError::kernel(format!("add route {dst} in the sandbox")))?;
        }
        Ok(())
    }
}

impl Driver for RemoteDriver {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        // Never a call here: the controller asks under its lock. `prepare` activates first.
        let scope = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(Scope::Local, |a| a.scope);
        Capabilities {
            scope,
            calls_out: true,
            ..Capabilities::default()
        }
    }

    fn prepare(&self) -> Result<()> {
        if self.activate()?.scope == Scope::Global {
            return Err(self.err(
                "it is a global-scope driver, and this lnet daemon has no cluster store (--cluster-store)",
                false,
            ));
        }
        Ok(())
    }

    fn reachable(&self) -> std::result::Result<(), String> {
        let addr = self.dirs.find(&self.name)?;
        let quick = Bounds {
            answer: Duration::from_secs(5),
            retry: Duration::ZERO,
        };
        client::call(&addr, "/Plugin.Activate", &json!({}), quick)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn plan_network(&self, _plan: &mut PlanNetwork<'_>) -> Result<Value> {
        // The plugin checks the options when the network is created; lnet keeps nothing of
        // its own for it.
        Ok(json!({}))
    }

    fn create_network(
        &self,
        _host: &mut dyn HostOps,
        net: &NetworkRecord,
        _config: &Config,
    ) -> Result<()> {
        let data = |v6: bool| -> Vec<Value> {
            net.pools
                .iter()
                .filter(|p| p.pool.addr().is_ipv6() == v6)
                .map(|p| {
                    json!({
                        "AddressSpace": "LocalDefault",
                        "Pool": p.pool.to_string(),
                        "Gateway": p.gateway.map(|g| g.to_string()).unwrap_or_default(),
                        "AuxAddresses": p.aux_addresses.iter()
                            .map(|(k, a)| (k.clone(), Value::String(
                                ipnet::IpNet::new(*a, p.pool.prefix_len()).map_or_else(|_| a.to_string(), |n| n.to_string()))))
                            .collect::<serde_json::Map<_, _>>(),
                    })
                })
                .collect()
        };
        let mut options = serde_json::Map::new();
        options.insert(lnet_plugin::GENERIC.into(), json!(net.options));
        options.insert(lnet_plugin::ENABLE_IPV6.into(), json!(net.enable_ipv6));
        if net.internal {
            options.insert("com.docker.network.internal".into(), json!(true));
        }
        self.call(
            "CreateNetwork",
            json!({
                "NetworkID": net.id,
                "Options": options,
                "IPv4Data": data(false),
                "IPv6Data": data(true),
            }),
        )
        .map(drop)
    }

    fn delete_network(&self, _host: &mut dyn HostOps, net: &NetworkRecord) -> Result<()> {
        match self.call("DeleteNetwork", json!({ "NetworkID": net.id })) {
            // A plugin that refuses (it lost the network, say) must not keep lnet's record
            // and pools for ever: as dockerd, the refusal is logged and the network goes.
            // One that cannot be reached is asked again by the next delete or start.
            Err(CoreError::Driver {
                unreachable: false,
                message,
                ..
            }) => {
                tracing::warn!(plugin = %self.name, network = %net.name, %message, "DeleteNetwork refused; removing the network anyway");
                Ok(())
            }
            other => other.map(drop),
        }
    }

    fn create_endpoint(&self, net: &NetworkRecord, ep: &EndpointRecord) -> Result<()> {
        let ours = EndpointInterface {
            address: ep.addr_v4.map(|a| a.to_string()).unwrap_or_default(),
            address_ipv6: ep.addr_v6.map(|a| a.to_string()).unwrap_or_default(),
            mac_address: ep.mac.clone().unwrap_or_default(),
        };
        let mut options = serde_json::Map::new();
        if let Some(m) = ep
            .mac
            .as_deref()
            .and_then(|m| lnet_core::parse_mac("MacAddress", m).ok())
        {
            options.insert(lnet_plugin::MAC.into(), json!(lnet_plugin::mac_option(m)));
        }
        options.insert(lnet_plugin::EXPOSED.into(), json!([]));
        options.insert(lnet_plugin::PORTMAP.into(), json!([]));
        let answer = self.call(
            "CreateEndpoint",
            json!({ "NetworkID": net.id, "EndpointID": ep.id, "Interface": ours, "Options": options }),
        )?;
        // lnet gave the addresses and the MAC: a plugin may not choose others.
        if let Some(theirs) = answer
            .get("Interface")
            .filter(|v| !v.is_null())
            .and_then(|v| serde_json::from_value::<EndpointInterface>(v.clone()).ok())
        {
            for (field, said, given) in [
                ("Address", &theirs.address, &ours.address),
                ("AddressIPv6", &theirs.address_ipv6, &ours.address_ipv6),
                ("MacAddress", &theirs.mac_address, &ours.mac_address),
            ] {
                if !said.is_empty() && said != given {
                    let _ = self.delete_endpoint(net, ep);
                    return Err(self.err(
                        format!(
                            "CreateEndpoint: it answered {field} {said}, but lnet gave {given:?}; lnet's IPAM chooses addresses"
                        ),
                        false,
                    ));
                }
            }
        }
        Ok(())
    }

    fn delete_endpoint(&self, net: &NetworkRecord, ep: &EndpointRecord) -> Result<()> {
        self.call(
            "DeleteEndpoint",
            json!({ "NetworkID": net.id, "EndpointID": ep.id }),
        )
        .map(drop)
    }

    fn plan_join(
        &self,
        _host: &mut dyn HostOps,
        net: &NetworkRecord,
        _ep: &EndpointRecord,
        sandbox: &SandboxRecord,
    ) -> Result<JoinPlan> {
        if !sandbox.lnet_inside() {
            return Err(CoreError::Forbidden(format!(
                "sandbox {} uses host networking or an engine's namespace, and cannot join network {} of plugin {}",
                sandbox.container_id, net.name, self.name
            )));
        }
        Ok(JoinPlan {
            host_ifname: None,
            iface_prefix: Some("eth".into()),
            handover_ifname: None,
        })
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
        let name = join.container_ifname.as_deref().ok_or_else(|| {
            CoreError::Forbidden(format!(
                "endpoint {} has a join record without its interface name; leave and join again",
                ep.name
            ))
        })?;
        if mode == JoinMode::Repair {
            let want = Self::want_peer(ep, name);
            let (have, drift) = lnet_core::reconcile::observe(sandbox.links(), &want, |_| None)?;
            if let Some(l) = have {
                if drift.is_empty() {
                    return Ok(());
                }
                if !drift.iter().any(Drift::needs_remake) {
                    return lnet_core::reconcile::apply(
                        sandbox.links(),
                        l.index,
                        &want,
                        &drift,
                        |_| None,
                    );
                }
            }
            // Gone (or not to be put right in place): the plugin is asked again.
            if let Err(e) = self.call("Leave", json!({ "NetworkID": net.id, "EndpointID": ep.id }))
            {
                tracing::debug!(plugin = %self.name, error = %e, "Leave before joining again");
            }
            let _ = sandbox.links().delete_link(name);
        }
        self.join_fresh(host, sandbox, net, ep, name)
    }

    fn leave(
        &self,
        _host: &mut dyn HostOps,
        sandbox: Option<&mut dyn SandboxOps>,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        join: &JoinRecord,
    ) -> Result<()> {
        // As dockerd: a refused Revoke is logged, and the Leave is made anyway.
        if let Err(e) = self.call(
            "RevokeExternalConnectivity",
            json!({ "NetworkID": net.id, "EndpointID": ep.id }),
        ) {
            tracing::warn!(plugin = %self.name, endpoint = %ep.name, error = %e, "RevokeExternalConnectivity");
        }
        let told = self.call("Leave", json!({ "NetworkID": net.id, "EndpointID": ep.id }));
        // What is left of the interface in the sandbox goes too (a veth's peer went with
        // the plugin's end).
        if let (Some(sb), Some(name)) = (sandbox, &join.container_ifname) {
            sb.links()
                .delete_link(name)
                .map_err(CoreError::kernel(format!("delete {name} in the sandbox")))?;
        }
        told.map(drop)
    }

    fn want_join(&self, _net: &NetworkRecord, ep: &EndpointRecord, join: &JoinRecord) -> Wanted {
        match &join.container_ifname {
            Some(name) => Wanted {
                links: vec![Self::want_peer(ep, name)],
            },
            None => Wanted::default(),
        }
    }

    fn facts(&self, net: &NetworkRecord) -> NetworkFacts {
        NetworkFacts {
            gateways: Self::gateways(net),
            publish_on: Err(format!(
                "network {} belongs to plugin {}, which publishes ports itself; lnet does not",
                net.name, self.name
            )),
            resolves_names: true,
        }
    }

    fn endpoint_info(
        &self,
        net: &NetworkRecord,
        ep: &EndpointRecord,
    ) -> serde_json::Map<String, Value> {
        self.call(
            "EndpointOperInfo",
            json!({ "NetworkID": net.id, "EndpointID": ep.id }),
        )
        .ok()
        .and_then(|v| v.get("Value").and_then(Value::as_object).cloned())
        .unwrap_or_default()
    }
}
