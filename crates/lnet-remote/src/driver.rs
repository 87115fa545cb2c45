//! A network driver that is a plugin: each of lnet's steps is a call of Docker's
//! `/NetworkDriver.*` protocol, made as dockerd makes it, and the plugin's join answer is
//! applied in the sandbox (its interface moved in and named, addressed, routed).
//!
//! The controller journals around every call ([`Capabilities::calls_out`]), so a crash
//! between lnet's record and the plugin's answer is finished or undone at the next start,
//! and the plugin is told (`DeleteNetwork`, `DeleteEndpoint`, `Leave`) of what lnet undid.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use lnet_core::want::{Drift, LinkWant, Side, Wanted};
use lnet_core::{
    Capabilities, Config, CoreError, Driver, HostOps, JoinMode, JoinPlan, NetworkFacts,
    PlanNetwork, Result, SandboxOps, Scope, sandbox_ifname,
};
use lnet_plugin::{EndpointInterface, JoinResponse};
use lnet_store::{EndpointRecord, JoinRecord, NetworkRecord, SandboxRecord};
use serde_json::{Value, json};

use crate::client::Bounds;
use crate::discovery::Dirs;
use crate::plugin::Plugin;

/// A plugin as a network driver.
#[derive(Debug)]
pub struct RemoteDriver {
    name: String,
    plugin: Plugin<Scope>,
}

/// Activation's second call: the driver's scope.
fn scope(ask: &mut dyn FnMut(&str) -> Result<Value>) -> Result<Scope> {
    let caps = ask("GetCapabilities")?;
    Ok(match caps.get("Scope").and_then(Value::as_str) {
        Some("global") => Scope::Global,
        _ => Scope::Local,
    })
}

impl RemoteDriver {
    /// The plugin called `name`, looked for in `dirs` when first used.
    pub fn new(name: &str, dirs: Arc<Dirs>, bounds: Bounds, own: Option<PathBuf>) -> Self {
        RemoteDriver {
            name: name.to_string(),
            plugin: Plugin::new(
                name,
                ("NetworkDriver", "network plugin"),
                dirs,
                bounds,
                own,
                scope,
            ),
        }
    }

    fn err(&self, message: impl Into<String>, unreachable: bool) -> CoreError {
        self.plugin.err(message, unreachable)
    }

    /// `/NetworkDriver.<method>` with `body`.
    fn call(&self, method: &str, body: Value) -> Result<Value> {
        // Optional calls a plugin need not implement, as dockerd treats them.
        let optional = matches!(
            method,
            "ProgramExternalConnectivity"
                | "RevokeExternalConnectivity"
                | "EndpointOperInfo"
                | "DiscoverNew"
                | "DiscoverDelete"
        );
        self.plugin.call(method, body, optional)
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
        let scope = self.plugin.learnt().unwrap_or(Scope::Local);
        Capabilities {
            scope,
            calls_out: true,
            ..Capabilities::default()
        }
    }

    fn prepare(&self) -> Result<()> {
        if self.plugin.activate()?.1 == Scope::Global {
            return Err(self.err(
                "it is a global-scope driver, and this lnet daemon has no cluster store (--cluster-store)",
                false,
            ));
        }
        Ok(())
    }

    fn reachable(&self) -> std::result::Result<(), String> {
        self.plugin.reachable()
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
                        "AddressSpace": p.address_space.as_deref().unwrap_or("LocalDefault"),
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
        JoinPlan::sandbox_side(
            sandbox,
            &format!("network {} of plugin {}", net.name, self.name),
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
        let name = sandbox_ifname(ep, join)?;
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
