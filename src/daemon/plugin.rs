//! lnet as Docker's network and IPAM plugin `lnet`: dockerd's calls on
//! `/run/docker/plugins/lnet.sock`, answered with lnet's own networks, endpoints and
//! IPAM.
//!
//! Each call maps onto one controller operation, which journals as every other does; the
//! only state of this module's own is what dockerd asks for before the object exists (a
//! pool before its network, an address before its endpoint), held in memory: a hold no
//! record names does not outlive the daemon, so a crash between two of dockerd's calls
//! leaks nothing, and dockerd's next call (or its retry) finds the records it needs.
//! Every call may be repeated: an object that exists already is answered as it is.
//!
//! An engine's sandbox is dockerd's namespace, which lnet never opens: a join makes the
//! veth pair in lnet's namespace and hands the peer over (`InterfaceName`), and dockerd
//! moves it in, addresses it and routes it, as with any remote driver. dockerd's own
//! embedded DNS serves names there; lnet runs no resolver in it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use lnet_core::{
    Controller, EndpointOptions, IpamPoolConfig, JoinOptions, NetworkOptions, PortSpec,
    SandboxOptions,
};
use lnet_plugin::{
    Api, CreateEndpoint, CreateEndpointResponse, CreateNetwork, EndpointInterface, EndpointRef,
    InterfaceName, IpamData, Join, JoinResponse, Request, RequestAddress, RequestPool,
};
use serde_json::{Value, json};

/// The address spaces lnet's IPAM answers `GetDefaultAddressSpaces` with. A pool of
/// another space in `CreateNetwork` came from another IPAM (dockerd's default).
pub const LOCAL_SPACE: &str = "lnet-local";
const GLOBAL_SPACE: &str = "lnet-global";

/// A network's label saying which IPAM gave its pools: `lnet`, or the address space of
/// another.
pub const IPAM_LABEL: &str = "lnet.plugin.ipam";

/// How often [`Plugin::sweep`] runs: an endpoint dockerd never joins goes after one to two
/// of these, well after dockerd's 30 s of retries.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The prefix of a PoolID lnet's IPAM hands out; the pool follows.
const POOL_ID_PREFIX: &str = "lnet/";

/// The plugin's state: the controller, and the pools held for networks not yet created.
#[derive(Debug, Clone)]
pub struct Plugin {
    ctrl: Controller,
    /// By PoolID: the pool and the range dockerd asked for (`CreateNetwork` does not
    /// repeat the range), and the gateway handed out.
    held: Arc<Mutex<HashMap<String, HeldPool>>>,
    /// One lock per engine sandbox (by its label): finding or making it and joining it,
    /// and leaving it and removing it when empty, are one step each, whoever else calls.
    sandbox_locks: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

#[derive(Debug, Clone)]
struct HeldPool {
    range: Option<IpNet>,
}

/// A call's failure, as dockerd shows it to the user.
type Answer = Result<Value, String>;

impl Plugin {
    /// The plugin over `ctrl`. An engine's sandbox lives only while an endpoint is joined
    /// to it: one left with none (a join that a crash undid at this start) is removed.
    pub fn new(ctrl: Controller) -> Plugin {
        let plugin = Plugin {
            ctrl,
            held: Default::default(),
            sandbox_locks: Default::default(),
        };
        let records = plugin.ctrl.records();
        for s in records.sandboxes.iter().filter(|s| s.handover) {
            plugin.drop_if_empty(&s.container_id);
        }
        plugin
    }

    /// Answers one parsed call. Blocking: run it off the async runtime.
    pub fn answer(&self, req: Request) -> Answer {
        check_ids(&req)?;
        match req {
            Request::Activate => Ok(json!({ "Implements": lnet_plugin::IMPLEMENTS })),
            Request::NetworkCapabilities => Ok(json!({
                "Scope": "local",
                "ConnectivityScope": "local",
            })),
            Request::IpamCapabilities => Ok(json!({
                "RequiresMACAddress": false,
                "RequiresRequestReplay": false,
            })),
            Request::DefaultAddressSpaces => Ok(json!({
                "LocalDefaultAddressSpace": LOCAL_SPACE,
                "GlobalDefaultAddressSpace": GLOBAL_SPACE,
            })),
            Request::RequestPool(r) => self.request_pool(r),
            Request::ReleasePool(r) => {
                if let Some(pool) = pool_of_id(&r.pool_id) {
                    self.ctrl.release_pool(pool);
                }
                self.held_pools().remove(&r.pool_id);
                Ok(json!({}))
            }
            Request::RequestAddress(r) => self.request_address(r),
            Request::ReleaseAddress(r) => {
                let ip = r
                    .address
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .parse::<IpAddr>()
                    .map_err(|_| {
                        format!(
                            "ReleaseAddress: Address {:?} is not an IP address",
                            r.address
                        )
                    })?;
                if let Some(net) = pool_of_id(&r.pool_id).and_then(|p| self.network_with(p)) {
                    // dockerd gives an address back once it has given up on the endpoint
                    // that had it. An endpoint of lnet's still holding it, unjoined, is one
                    // whose CreateEndpoint answer dockerd never read: it goes now.
                    let records = self.ctrl.records();
                    let stale = records
                        .endpoints
                        .iter()
                        .find(|e| {
                            e.network_id == net.id()
                                && e.join.is_none()
                                && e.addr_v4
                                    .iter()
                                    .chain(e.addr_v6.iter())
                                    .any(|a| a.addr() == ip)
                        })
                        .and_then(|e| self.ctrl.endpoint(&e.id).ok());
                    match stale {
                        Some(ep) => {
                            tracing::info!(endpoint = %ep.id(), address = %ip, "dockerd gave back the address of an endpoint it never joined: removing it");
                            ep.delete().map_err(|e| e.to_string())?;
                        }
                        None => net.release_address(ip).map_err(|e| e.to_string())?,
                    }
                }
                Ok(json!({}))
            }
            Request::CreateNetwork(r) => self.create_network(r),
            Request::DeleteNetwork(r) => {
                if let Ok(net) = self.ctrl.network(&r.network_id)
                    && net.id() == r.network_id
                {
                    // dockerd deletes a network only when none of its endpoints is left:
                    // any lnet still has is one dockerd took for failed (see `sweep`).
                    for ep in net.endpoints() {
                        let r = EndpointRef {
                            network_id: r.network_id.clone(),
                            endpoint_id: ep.id().to_string(),
                        };
                        self.leave(&r)?;
                        ep.delete().map_err(|e| e.to_string())?;
                    }
                    net.delete().map_err(|e| e.to_string())?;
                }
                Ok(json!({}))
            }
            Request::CreateEndpoint(r) => self.create_endpoint(r),
            Request::DeleteEndpoint(r) => {
                let Ok(ep) = self.ctrl.endpoint(&r.endpoint_id) else {
                    return Ok(json!({}));
                };
                // dockerd leaves first; a join it did not take back is taken back here.
                self.leave(&r)?;
                // With lnet's IPAM the addresses stay held until dockerd's ReleaseAddress,
                // which comes next: given out again at once, an address would be another
                // container's when that call arrives.
                let ours = self
                    .ctrl
                    .network(&r.network_id)
                    .and_then(|n| n.info())
                    .is_ok_and(|n| n.labels.get(IPAM_LABEL).map(String::as_str) == Some("lnet"));
                if ours {
                    ep.delete_holding_addresses()
                } else {
                    ep.delete()
                }
                .map_err(|e| e.to_string())?;
                Ok(json!({}))
            }
            Request::EndpointOperInfo(r) => {
                let value = match self.ctrl.endpoint(&r.endpoint_id) {
                    Ok(ep) => ep.driver_info().map_err(|e| e.to_string())?,
                    Err(_) => Default::default(),
                };
                Ok(json!({ "Value": value }))
            }
            Request::Join(r) => self.join(r),
            Request::Leave(r) => {
                self.leave(&r)?;
                Ok(json!({}))
            }
            // Ports are published with the join, from the endpoint's record, and taken
            // away with the leave.
            Request::ProgramExternalConnectivity(_)
            | Request::RevokeExternalConnectivity(_)
            | Request::Discover => Ok(json!({})),
        }
    }

    /// Removes the endpoints of plugin networks found unjoined at two sweeps in a row.
    /// dockerd joins an endpoint right after creating it and deletes it after the leave;
    /// one left unjoined is one whose CreateEndpoint answer dockerd never read (lnet died
    /// as it answered, and dockerd's retry came with an empty body), or whose delete was
    /// cut short: dockerd takes it for failed and will never delete it. `seen` carries the
    /// ids found unjoined from one sweep to the next.
    pub fn sweep(&self, seen: &mut std::collections::HashSet<String>) {
        let records = self.ctrl.records();
        let plugin_networks: std::collections::HashSet<&str> = records
            .networks
            .iter()
            .filter(|n| n.labels.contains_key(IPAM_LABEL))
            .map(|n| n.id.as_str())
            .collect();
        let now: std::collections::HashSet<String> = records
            .endpoints
            .iter()
            .filter(|e| e.join.is_none() && plugin_networks.contains(e.network_id.as_str()))
            .map(|e| e.id.clone())
            .collect();
        for id in now.intersection(seen) {
            match self.ctrl.endpoint(id).and_then(|e| e.delete()) {
                Ok(()) => {
                    tracing::info!(endpoint = %id, "removed an endpoint dockerd created and never joined")
                }
                Err(e) => {
                    tracing::warn!(endpoint = %id, error = %e, "removing an endpoint dockerd never joined")
                }
            }
        }
        *seen = now;
    }

    /// The lock of engine sandbox `label`.
    fn sandbox_lock(&self, label: &str) -> Arc<Mutex<()>> {
        self.sandbox_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(label.to_string())
            .or_default()
            .clone()
    }

    fn held_pools(&self) -> std::sync::MutexGuard<'_, HashMap<String, HeldPool>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ready network whose pool is `pool`, from one snapshot of the records (this is
    /// on every container's way in and out).
    fn network_with(&self, pool: IpNet) -> Option<lnet_core::Network> {
        let records = self.ctrl.records();
        let net = records.networks.iter().find(|n| {
            n.state == lnet_core::Lifecycle::Ready && n.pools.iter().any(|p| p.pool == pool)
        })?;
        self.ctrl.network(&net.id).ok()
    }

    fn request_pool(&self, r: RequestPool) -> Answer {
        let cidr = |field: &str, s: &str| -> Result<Option<IpNet>, String> {
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<IpNet>().map(Some).map_err(|_| {
                format!("RequestPool: {field} {s:?} is not a CIDR such as 10.77.0.0/24")
            })
        };
        let pool = cidr("Pool", &r.pool)?;
        let range = cidr("SubPool", &r.sub_pool)?;
        if let Some(o) = r.options.keys().next() {
            return Err(format!(
                "RequestPool: IPAM option {o:?} is not known to lnet's IPAM, which takes none"
            ));
        }
        let got = self
            .ctrl
            .hold_pool(pool, range, r.v6)
            .map_err(|e| e.to_string())?;
        let id = format!("{POOL_ID_PREFIX}{got}");
        self.held_pools().insert(id.clone(), HeldPool { range });
        Ok(json!({ "PoolID": id, "Pool": got.to_string(), "Data": {} }))
    }

    fn request_address(&self, r: RequestAddress) -> Answer {
        let pool = pool_of_id(&r.pool_id).ok_or_else(|| {
            format!(
                "RequestAddress: PoolID {:?} is not one of lnet's (they read lnet/<subnet>)",
                r.pool_id
            )
        })?;
        let preferred = if r.address.is_empty() {
            None
        } else {
            Some(r.address.parse::<IpAddr>().map_err(|_| {
                format!(
                    "RequestAddress: Address {:?} is not an IP address",
                    r.address
                )
            })?)
        };
        if let Some(ip) = preferred
            && !pool.contains(&ip)
        {
            return Err(format!(
                "RequestAddress: Address {ip} is outside the pool {pool}"
            ));
        }
        let net = self.network_with(pool);
        if r.is_gateway() {
            // Asked before the network exists; `CreateNetwork` brings it back.
            let gw = match (&net, preferred) {
                (Some(n), _) => n
                    .info()
                    .ok()
                    .and_then(|r| r.pools.iter().find(|p| p.pool == pool)?.gateway)
                    .map(|g| g.addr()),
                (None, Some(ip)) => Some(ip),
                (None, None) => first_host(pool),
            }
            .ok_or_else(|| format!("RequestAddress: the pool {pool} has no room for a gateway"))?;
            return Ok(
                json!({ "Address": IpNet::new(gw, pool.prefix_len()).expect("prefix of the pool").to_string(), "Data": {} }),
            );
        }
        let net = match net {
            Some(n) => n,
            // An auxiliary address (`--aux-address`), asked before the network exists:
            // `CreateNetwork`'s AuxAddresses set it aside.
            None if preferred.is_some() && self.held_pools().contains_key(&r.pool_id) => {
                let ip = preferred.expect("checked");
                return Ok(
                    json!({ "Address": IpNet::new(ip, pool.prefix_len()).expect("prefix of the pool").to_string(), "Data": {} }),
                );
            }
            None => {
                return Err(format!(
                    "RequestAddress: the pool {pool} belongs to no lnet network: lnet's IPAM serves networks of the lnet driver (docker network create -d lnet --ipam-driver lnet)"
                ));
            }
        };
        let got = net
            .hold_address(preferred, pool.addr().is_ipv6())
            .map_err(|e| e.to_string())?;
        Ok(json!({ "Address": got.to_string(), "Data": {} }))
    }

    fn create_network(&self, r: CreateNetwork) -> Answer {
        if let Ok(net) = self.ctrl.network(&r.network_id)
            && net.id() == r.network_id
        {
            // A retry: the network is there.
            return Ok(json!({}));
        }
        let opts =
            lnet_plugin::network_options("CreateNetwork", &r.options).map_err(|e| e.to_string())?;
        let internal = match r.options.get("com.docker.network.internal").cloned() {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(other) => {
                return Err(format!(
                    "CreateNetwork: com.docker.network.internal: expected true or false, got {other}"
                ));
            }
        };
        let ours = r
            .ipv4_data
            .iter()
            .chain(r.ipv6_data.iter())
            .any(|d| d.address_space == LOCAL_SPACE);
        let config = |d: &IpamData| -> IpamPoolConfig {
            let range = self
                .held_pools()
                .get(&format!("{POOL_ID_PREFIX}{}", d.pool.trunc()))
                .and_then(|h| h.range);
            IpamPoolConfig {
                subnet: Some(d.pool),
                ip_range: range,
                gateway: d.gateway.map(|g| g.addr()),
                aux_addresses: d
                    .aux_addresses
                    .iter()
                    .map(|(k, v)| (k.clone(), v.addr()))
                    .collect(),
            }
        };
        let mut labels = BTreeMap::new();
        let space = r
            .ipv4_data
            .first()
            .map(|d| d.address_space.clone())
            .unwrap_or_default();
        labels.insert(
            IPAM_LABEL.to_string(),
            if ours { "lnet".into() } else { space },
        );
        let options = NetworkOptions {
            id: Some(r.network_id.clone()),
            ipam: lnet_core::IpamSpec {
                driver: "default".into(),
                options: Default::default(),
                v4: r.ipv4_data.iter().map(config).collect(),
                v6: r.ipv6_data.iter().map(config).collect(),
            },
            enable_ipv6: opts.enable_ipv6,
            internal,
            labels,
            options: opts.generic,
            held_pools: ours,
            ..Default::default()
        };
        let name = network_name(&r.network_id);
        self.ctrl
            .new_network("bridge", &name, options)
            .map_err(|e| e.to_string())?;
        let mut held = self.held_pools();
        for d in r.ipv4_data.iter().chain(r.ipv6_data.iter()) {
            held.remove(&format!("{POOL_ID_PREFIX}{}", d.pool.trunc()));
        }
        Ok(json!({}))
    }

    fn create_endpoint(&self, r: CreateEndpoint) -> Answer {
        let asked = r.interface.clone().unwrap_or_default();
        if let Ok(ep) = self.ctrl.endpoint(&r.endpoint_id) {
            // A retry: answer what was chosen then.
            let rec = ep.info().map_err(|e| e.to_string())?;
            return Ok(endpoint_answer(&asked, &rec));
        }
        let net = match self.ctrl.network(&r.network_id) {
            Ok(n) if n.id() == r.network_id => n,
            _ => {
                return Err(format!(
                    "CreateEndpoint: network {} is not one of lnet's: create it with docker network create -d lnet",
                    r.network_id
                ));
            }
        };
        let info = net.info().map_err(|e| e.to_string())?;
        let held = info.labels.get(IPAM_LABEL).map(String::as_str) == Some("lnet");
        let addr = |field: &str, s: &str| -> Result<Option<IpAddr>, String> {
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<IpNet>()
                .map(|n| Some(n.addr()))
                .or_else(|_| s.parse::<IpAddr>().map(Some))
                .map_err(|_| format!("CreateEndpoint: Interface.{field} {s:?} is not an address"))
        };
        let mac = match lnet_plugin::endpoint_mac("CreateEndpoint", &r.options)
            .map_err(|e| e.to_string())?
        {
            Some(m) => Some(lnet_core::format_mac(&m)),
            None if !asked.mac_address.is_empty() => Some(asked.mac_address.clone()),
            None => None,
        };
        let ports = lnet_plugin::port_bindings("CreateEndpoint", &r.options)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|b| {
                let host_ip = b.host_addr()?;
                let proto = match b.proto {
                    lnet_plugin::Proto::Tcp => lnet_core::Proto::Tcp,
                    lnet_plugin::Proto::Udp => lnet_core::Proto::Udp,
                    lnet_plugin::Proto::Sctp => lnet_core::Proto::Sctp,
                };
                Ok(PortSpec {
                    proto,
                    container: (b.port, b.port),
                    host_ip,
                    host: match (b.host_port, b.host_port_end) {
                        (0, _) => None,
                        (p, end) if end > p => Some((p, end)),
                        (p, _) => Some((p, p)),
                    },
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| format!("CreateEndpoint: {e}"))?;
        let options = EndpointOptions {
            id: Some(r.endpoint_id.clone()),
            // Not `ephemeral` (gone at the next start if unjoined): dockerd may be about to
            // join it, retrying a Join that found lnet restarting. [`Plugin::sweep`] removes
            // the ones dockerd will never join.
            ipv4: addr("Address", &asked.address)?,
            ipv6: addr("AddressIPv6", &asked.address_ipv6)?,
            held,
            mac,
            ports,
            ..Default::default()
        };
        let ep = net
            .create_endpoint(lnet_core::short_id(&r.endpoint_id), options)
            .map_err(|e| e.to_string())?;
        let rec = ep.info().map_err(|e| e.to_string())?;
        Ok(endpoint_answer(&asked, &rec))
    }

    fn join(&self, r: Join) -> Answer {
        let ep = self
            .ctrl
            .endpoint(&r.endpoint_id)
            .map_err(|_| {
                format!(
                    "Join: endpoint {} is not lnet's: it was never created, or was removed as one dockerd never joined",
                    r.endpoint_id
                )
            })?;
        let label = sandbox_label(&r.sandbox_key)?;
        let lock = self.sandbox_lock(&label);
        let _one = lock.lock().unwrap_or_else(|p| p.into_inner());
        let rec = ep.info().map_err(|e| e.to_string())?;
        if rec.join.is_none() {
            let sandbox = match self.sandbox(&label) {
                Some(s) => s,
                None => self
                    .ctrl
                    .new_sandbox(
                        &label,
                        SandboxOptions {
                            netns_path: Some(r.sandbox_key.clone().into()),
                            handover: true,
                            ..Default::default()
                        },
                    )
                    .map_err(|e| e.to_string())?,
            };
            if let Err(e) = ep.join(&sandbox, JoinOptions::default()) {
                self.drop_if_empty(&label);
                return Err(e.to_string());
            }
        }
        let h = ep.handover().map_err(|e| e.to_string())?.ok_or_else(|| {
            format!(
                "Join: endpoint {} is joined to a sandbox of lnet's own, not to {}",
                r.endpoint_id, r.sandbox_key
            )
        })?;
        let answer = JoinResponse {
            interface_name: Some(InterfaceName {
                src_name: h.src_name,
                dst_prefix: h.dst_prefix,
            }),
            gateway: h.gateway_v4.map(|g| g.to_string()).unwrap_or_default(),
            gateway_ipv6: h.gateway_v6.map(|g| g.to_string()).unwrap_or_default(),
            static_routes: Vec::new(),
            // lnet gives its own gateway: dockerd must not add its docker_gwbridge.
            disable_gateway_service: true,
        };
        serde_json::to_value(answer).map_err(|e| e.to_string())
    }

    /// Takes back the join of endpoint `r`, if it has one, and the engine's sandbox with
    /// its last join.
    fn leave(&self, r: &EndpointRef) -> Result<(), String> {
        let Ok(ep) = self.ctrl.endpoint(&r.endpoint_id) else {
            return Ok(());
        };
        let Some(h) = ep.handover().map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let Ok(sandbox) = self.ctrl.sandbox(&h.sandbox_id) else {
            return Ok(());
        };
        let label = sandbox.container_id().to_string();
        let lock = self.sandbox_lock(&label);
        let _one = lock.lock().unwrap_or_else(|p| p.into_inner());
        ep.leave(&sandbox).map_err(|e| e.to_string())?;
        self.drop_if_empty(&label);
        Ok(())
    }

    /// Engine sandbox `label` (`dockerd-…`: not hex, so never taken for an id prefix).
    fn sandbox(&self, label: &str) -> Option<lnet_core::Sandbox> {
        self.ctrl
            .sandbox(label)
            .ok()
            .filter(|s| s.container_id() == label)
    }

    /// Deletes the engine's sandbox `label` when no endpoint is joined to it. The caller
    /// holds its lock ([`Plugin::sandbox_lock`]), or is the start, when nothing else runs.
    fn drop_if_empty(&self, label: &str) {
        if let Some(s) = self.sandbox(label)
            && s.endpoints().is_empty()
        {
            match s.delete() {
                Ok(()) => {
                    self.sandbox_locks
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(label);
                }
                Err(e) => {
                    tracing::warn!(sandbox = %label, error = %e, "removing an engine's sandbox record")
                }
            }
        }
    }
}

/// Refuses a call whose network or endpoint id is not dockerd's shape (64 hex digits)
/// before anything is looked up or made of it.
fn check_ids(req: &Request) -> Result<(), String> {
    let ids: Vec<(&str, &str)> = match req {
        Request::CreateNetwork(r) => vec![("NetworkID", &r.network_id)],
        Request::DeleteNetwork(r) => vec![("NetworkID", &r.network_id)],
        Request::CreateEndpoint(r) => {
            vec![("NetworkID", &r.network_id), ("EndpointID", &r.endpoint_id)]
        }
        Request::Join(r) => vec![("NetworkID", &r.network_id), ("EndpointID", &r.endpoint_id)],
        Request::ProgramExternalConnectivity(r) => {
            vec![("NetworkID", &r.network_id), ("EndpointID", &r.endpoint_id)]
        }
        Request::DeleteEndpoint(r)
        | Request::EndpointOperInfo(r)
        | Request::Leave(r)
        | Request::RevokeExternalConnectivity(r) => {
            vec![("NetworkID", &r.network_id), ("EndpointID", &r.endpoint_id)]
        }
        _ => Vec::new(),
    };
    for (field, id) in ids {
        if id.len() != 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "{field} {id:?}: expected 64 lowercase hexadecimal digits, as dockerd's ids"
            ));
        }
    }
    Ok(())
}

/// What `CreateEndpoint` answers: the fields dockerd left to the driver (dockerd refuses an
/// answer that sets one it gave).
fn endpoint_answer(asked: &EndpointInterface, rec: &lnet_core::EndpointRecord) -> Value {
    let mut iface = EndpointInterface::default();
    if asked.address.is_empty()
        && let Some(a) = rec.addr_v4
    {
        iface.address = a.to_string();
    }
    if asked.address_ipv6.is_empty()
        && let Some(a) = rec.addr_v6
    {
        iface.address_ipv6 = a.to_string();
    }
    if asked.mac_address.is_empty()
        && let Some(m) = &rec.mac
    {
        iface.mac_address = m.clone();
    }
    let answer = CreateEndpointResponse {
        interface: (iface != EndpointInterface::default()).then_some(iface),
    };
    serde_json::to_value(answer).unwrap_or_else(|_| json!({}))
}

/// The pool a PoolID of lnet's names.
fn pool_of_id(id: &str) -> Option<IpNet> {
    id.strip_prefix(POOL_ID_PREFIX)?.parse().ok()
}

/// The first address of `pool` a host may have (the gateway dockerd is given when it asks
/// for none).
fn first_host(pool: IpNet) -> Option<IpAddr> {
    // An IPv6 pool's `hosts()` starts at its network address, which is no host's.
    pool.hosts().find(|a| *a != pool.network())
}

/// The name of a network created through the plugin: dockerd does not send its own.
pub fn network_name(network_id: &str) -> String {
    format!("dockerd-{}", lnet_core::short_id(network_id))
}

/// The container id lnet records an engine's sandbox under: `dockerd-` and the last part
/// of its SandboxKey (dockerd's sandbox id).
fn sandbox_label(key: &str) -> Result<String, String> {
    let base = std::path::Path::new(key)
        .file_name()
        .and_then(|b| b.to_str())
        .filter(|b| !b.is_empty() && key.starts_with('/'))
        .ok_or_else(|| {
            format!("Join: SandboxKey {key:?} is not the path of a network namespace")
        })?;
    Ok(format!("dockerd-{base}"))
}

/// The plugin's HTTP face: every path is a call.
pub fn router(plugin: Plugin) -> Router {
    Router::new().fallback(handle).with_state(plugin)
}

async fn handle(State(plugin): State<Plugin>, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let api = lnet_plugin::api_of(&path);
    let answer = match Request::parse(&path, &body) {
        Err(e) => {
            tracing::warn!(call = %path, error = %e, "plugin call refused");
            Err(e.to_string())
        }
        Ok(req) => {
            let api = req.api();
            let started = std::time::Instant::now();
            let res = tokio::task::spawn_blocking(move || plugin.answer(req))
                .await
                .unwrap_or_else(|e| Err(format!("{path}: the call failed inside lnet: {e}")));
            tracing::debug!(call = %path, ok = res.is_ok(), ms = started.elapsed().as_secs_f64() * 1e3, "plugin call");
            if let Err(e) = &res {
                tracing::info!(call = %path, error = %e, "plugin call failed");
            }
            return reply(api, res);
        }
    };
    reply(api, answer)
}

/// dockerd reads a failure from the body of a 200 answer (`Err` or `Error`), and from
/// any other status too: 200 keeps its message as the user sees it.
fn reply(api: Api, answer: Answer) -> Response {
    let body = match answer {
        Ok(v) => v,
        Err(msg) => api.error(&msg),
    };
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(lnet_plugin::CONTENT_TYPE),
    );
    resp
}
