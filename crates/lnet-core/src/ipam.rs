//! The controller's side of IPAM: which IPAM driver a network uses, the pools it holds, and
//! the replay of allocations from records at start.
//!
//! Nothing here is persisted (DESIGN §3.1): the network record's [`PoolAssignment`]s and the
//! endpoint records' addresses are the truth, and [`IpamState`] is rebuilt from them by
//! requesting exactly those pools and addresses again.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use lnet_ipam::{AddressRequest, AddressSpace, Ipam, PoolId, PoolRequest};
use lnet_store::{EndpointRecord, IpamSpec, NetworkRecord, PoolAssignment};

use crate::error::{CoreError, Result};

/// The IPAM drivers lnet has built in.
pub const IPAM_DRIVERS: [&str; 2] = ["default", "null"];

/// The controller's IPAM state: the built-in allocator and each network's pool leases, in the
/// order of the network's [`PoolAssignment`]s.
#[derive(Debug)]
pub(crate) struct IpamState {
    builtin: Ipam,
    leases: HashMap<String, Vec<PoolId>>,
    /// Pools held for networks about to be created (an engine asks its IPAM for the pool
    /// before it creates the network), by pool. In memory only, as address holds.
    holds: HashMap<IpNet, PoolId>,
}

fn space(scope: &str) -> AddressSpace {
    if scope == "global" {
        AddressSpace::Global
    } else {
        AddressSpace::Local
    }
}

/// Whether `driver` names lnet's built-in IPAM (the others are plugins); none named is
/// `default`.
pub fn is_builtin(driver: &str) -> bool {
    driver.is_empty() || IPAM_DRIVERS.contains(&driver)
}

/// A network's pool configs in the order they are requested, each with whether it is IPv6:
/// the IPv4 ones (one automatic pool when none is given), then, with IPv6 enabled, the IPv6
/// ones likewise. The same for lnet's IPAM and a plugin's.
pub(crate) fn pool_configs(
    spec: &IpamSpec,
    enable_ipv6: bool,
) -> Result<Vec<(bool, lnet_store::IpamPoolConfig)>> {
    let v4 = if spec.v4.is_empty() {
        vec![Default::default()]
    } else {
        spec.v4.clone()
    };
    let mut cfgs: Vec<(bool, lnet_store::IpamPoolConfig)> =
        v4.into_iter().map(|c| (false, c)).collect();
    if enable_ipv6 {
        let v6 = if spec.v6.is_empty() {
            vec![Default::default()]
        } else {
            spec.v6.clone()
        };
        cfgs.extend(v6.into_iter().map(|c| (true, c)));
    } else if !spec.v6.is_empty() {
        return Err(CoreError::invalid(
            "IPAM.Config",
            spec.v6
                .iter()
                .filter_map(|c| c.subnet)
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(","),
            "an IPv6 subnet was given but IPv6 is not enabled: set EnableIPv6 (--ipv6)",
        ));
    }
    for (v6, cfg) in &cfgs {
        if let Some(subnet) = cfg.subnet
            && matches!(subnet, IpNet::V6(_)) != *v6
        {
            return Err(CoreError::invalid(
                "IPAM.Config.Subnet",
                subnet,
                "the subnet's family does not match its section",
            ));
        }
    }
    Ok(cfgs)
}

impl IpamState {
    pub(crate) fn new(builtin: Ipam) -> Self {
        IpamState {
            builtin,
            leases: HashMap::new(),
            holds: HashMap::new(),
        }
    }

    /// Holds a pool for a network about to be created: `subnet` (with `ip_range` inside
    /// it), or the next free default pool of the family outside `exclude`.
    pub(crate) fn hold_pool(
        &mut self,
        subnet: Option<IpNet>,
        ip_range: Option<IpNet>,
        v6: bool,
        exclude: &[IpNet],
    ) -> Result<IpNet> {
        if let Some(s) = subnet
            && self.holds.contains_key(&s.trunc())
        {
            // The same request again (a retry): the hold stands.
            return Ok(s.trunc());
        }
        let lease = self
            .builtin
            .request_pool(&PoolRequest {
                space: AddressSpace::Local,
                pool: subnet,
                sub_pool: ip_range,
                v6,
                exclude: if subnet.is_none() {
                    exclude.to_vec()
                } else {
                    Vec::new()
                },
            })
            .map_err(CoreError::ipam_field(if ip_range.is_some() {
                "IPAM.Config.IPRange"
            } else {
                "IPAM.Config.Subnet"
            }))?;
        self.holds.insert(lease.pool, lease.id);
        Ok(lease.pool)
    }

    /// Lets go of a held pool; whether there was one.
    pub(crate) fn release_pool_hold(&mut self, pool: IpNet) -> bool {
        match self.holds.remove(&pool) {
            Some(id) => {
                if let Err(e) = self.builtin.release_pool(&id) {
                    tracing::warn!(%pool, error = %e, "releasing a held pool");
                }
                true
            }
            None => false,
        }
    }

    /// Allocates the pools, gateways and auxiliary addresses of a new network. On error,
    /// everything allocated by this call is released again, so bad input changes nothing.
    pub(crate) fn allocate_network(
        &mut self,
        network_id: &str,
        scope: &str,
        spec: &IpamSpec,
        enable_ipv6: bool,
        exclude: &[IpNet],
    ) -> Result<Vec<PoolAssignment>> {
        if spec.driver == "null" {
            return Ok(Vec::new());
        }
        let mut done: Vec<(PoolId, PoolAssignment)> = Vec::new();
        let res = (|| {
            for (v6, cfg) in pool_configs(spec, enable_ipv6)? {
                let lease = self
                    .builtin
                    .request_pool(&PoolRequest {
                        space: space(scope),
                        pool: cfg.subnet,
                        sub_pool: cfg.ip_range,
                        v6,
                        exclude: if cfg.subnet.is_none() {
                            exclude.to_vec()
                        } else {
                            Vec::new()
                        },
                    })
                    .map_err(CoreError::ipam_field(match (v6, cfg.ip_range.is_some()) {
                        (_, true) => "IPAM.Config.IPRange",
                        (false, false) => "IPAM.Config.Subnet",
                        (true, false) => "IPAM.Config.Subnet (IPv6, EnableIPv6)",
                    }))?;
                let mut assignment = PoolAssignment {
                    pool: lease.pool,
                    sub_pool: lease.sub_pool,
                    gateway: None,
                    aux_addresses: Default::default(),
                    pool_id: None,
                    address_space: None,
                };
                done.push((lease.id.clone(), assignment.clone()));
                // Aux addresses first so the automatic gateway cannot take one of them.
                for (name, ip) in &cfg.aux_addresses {
                    if !lease.pool.contains(ip) {
                        return Err(CoreError::invalid(
                            format!("IPAM.Config.AuxiliaryAddresses[{name}]"),
                            ip,
                            format!("the address is outside subnet {}", lease.pool),
                        ));
                    }
                    self.builtin
                        .request_address(
                            &lease.id,
                            &AddressRequest {
                                preferred: Some(*ip),
                                serial: false,
                            },
                        )
                        .map_err(CoreError::ipam_field(format!(
                            "IPAM.Config.AuxiliaryAddresses[{name}]"
                        )))?;
                    assignment.aux_addresses.insert(name.clone(), *ip);
                    done.last_mut().expect("pushed above").1 = assignment.clone();
                }
                if let Some(gw) = cfg.gateway
                    && !lease.pool.contains(&gw)
                {
                    return Err(CoreError::invalid(
                        "IPAM.Config.Gateway",
                        gw,
                        format!("the gateway is outside subnet {}", lease.pool),
                    ));
                }
                let gw = self.request_gateway(&lease.id, lease.pool, cfg.gateway)?;
                assignment.gateway = Some(gw);
                done.last_mut().expect("pushed above").1 = assignment.clone();
            }
            Ok(())
        })();
        match res {
            Ok(()) => {
                let (ids, assignments): (Vec<_>, Vec<_>) = done.into_iter().unzip();
                self.leases.insert(network_id.to_string(), ids);
                Ok(assignments)
            }
            Err(e) => {
                for (id, a) in done.iter().rev() {
                    self.release_assignment(id, a);
                }
                Err(e)
            }
        }
    }

    fn request_gateway(
        &mut self,
        id: &PoolId,
        pool: IpNet,
        preferred: Option<IpAddr>,
    ) -> Result<IpNet> {
        // The gateway comes from the master pool even with an ip-range, as in libnetwork;
        // libnetwork's request with no preferred address is "lowest free in the (sub-)pool",
        // which for a sub-pool would put the gateway inside the range; Docker takes the
        // first address of the subnet instead, and so do we.
        let preferred = match preferred {
            Some(ip) => Some(ip),
            None => first_host(pool).filter(|ip| !self.builtin.is_allocated(id, *ip)),
        };
        self.builtin
            .request_address(
                id,
                &AddressRequest {
                    preferred,
                    serial: false,
                },
            )
            .map_err(CoreError::ipam_field("IPAM.Config.Gateway"))
    }

    fn release_assignment(&mut self, id: &PoolId, a: &PoolAssignment) {
        // Releasing the pool drops its bitmap with every address in it.
        if let Err(e) = self.builtin.release_pool(id) {
            tracing::warn!(pool = %a.pool, error = %e, "releasing pool");
        }
    }

    /// Re-reserves a ready network's pools, gateways and aux addresses exactly as recorded.
    pub(crate) fn replay_network(&mut self, net: &NetworkRecord) -> Result<()> {
        if !is_builtin(&net.ipam.driver) {
            // A plugin's pools are the plugin's to keep across lnet's restarts.
            return Ok(());
        }
        let mut ids = Vec::new();
        let res = (|| {
            for a in &net.pools {
                let lease = self.builtin.request_pool(&PoolRequest {
                    space: space(&net.scope),
                    pool: Some(a.pool),
                    sub_pool: a.sub_pool,
                    v6: a.is_v6(),
                    exclude: Vec::new(),
                })?;
                ids.push((lease.id.clone(), a.clone()));
                for ip in a
                    .aux_addresses
                    .values()
                    .chain(a.gateway.as_ref().map(|g| g.addr()).as_ref())
                {
                    self.builtin.request_address(
                        &lease.id,
                        &AddressRequest {
                            preferred: Some(*ip),
                            serial: false,
                        },
                    )?;
                }
            }
            Ok(())
        })();
        match res {
            Ok(()) => {
                self.leases
                    .insert(net.id.clone(), ids.into_iter().map(|(id, _)| id).collect());
                Ok(())
            }
            Err(e) => {
                for (id, a) in ids.iter().rev() {
                    self.release_assignment(id, a);
                }
                Err(e)
            }
        }
    }

    /// Releases everything a network holds. Safe to call for a network that holds nothing.
    pub(crate) fn release_network(&mut self, net: &NetworkRecord) {
        if let Some(ids) = self.leases.remove(&net.id) {
            for (id, a) in ids.iter().zip(&net.pools).rev() {
                self.release_assignment(id, a);
            }
        }
    }

    /// Allocates an endpoint's addresses: IPv4 from the network's v4 pools (the first with room,
    /// or the one holding the preferred address), IPv6 likewise when the network has v6 pools.
    pub(crate) fn allocate_endpoint(
        &mut self,
        net: &NetworkRecord,
        preferred_v4: Option<IpAddr>,
        preferred_v6: Option<IpAddr>,
    ) -> Result<(Option<IpNet>, Option<IpNet>)> {
        let v4 = self.allocate_family(net, false, preferred_v4)?;
        let v6 = match self.allocate_family(net, true, preferred_v6) {
            Ok(v6) => v6,
            Err(e) => {
                if let Some(a) = v4 {
                    self.release_address(net, a.addr());
                }
                return Err(e);
            }
        };
        Ok((v4, v6))
    }

    fn allocate_family(
        &mut self,
        net: &NetworkRecord,
        v6: bool,
        preferred: Option<IpAddr>,
    ) -> Result<Option<IpNet>> {
        let Some(ids) = self.leases.get(&net.id) else {
            return match preferred {
                Some(ip) => Err(CoreError::invalid(
                    if v6 { "IPv6Address" } else { "IPv4Address" },
                    ip,
                    format!(
                        "network {} has no IPAM pools to take an address from",
                        net.name
                    ),
                )),
                None => Ok(None),
            };
        };
        let field = if v6 { "IPv6Address" } else { "IPv4Address" };
        if let Some(ip) = preferred
            && ip.is_ipv6() != v6
        {
            return Err(CoreError::invalid(
                field,
                ip,
                "wrong address family for this field",
            ));
        }
        let pools: Vec<(PoolId, &PoolAssignment)> = ids
            .iter()
            .cloned()
            .zip(&net.pools)
            .filter(|(_, a)| a.is_v6() == v6)
            .collect();
        if pools.is_empty() {
            return match preferred {
                Some(ip) => Err(CoreError::invalid(
                    field,
                    ip,
                    format!(
                        "network {} has no {} subnet",
                        net.name,
                        if v6 { "IPv6" } else { "IPv4" }
                    ),
                )),
                None => Ok(None),
            };
        }
        let serial = net
            .ipam
            .options
            .get("com.docker.network.ipam.serial")
            .is_some_and(|v| v == "true");
        if let Some(ip) = preferred {
            let Some((id, _)) = pools.iter().find(|(_, a)| a.pool.contains(&ip)) else {
                return Err(CoreError::invalid(
                    field,
                    ip,
                    format!(
                        "the address does not belong to any of network {}'s subnets ({})",
                        net.name,
                        pools
                            .iter()
                            .map(|(_, a)| a.pool.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            return self
                .builtin
                .request_address(
                    id,
                    &AddressRequest {
                        preferred: Some(ip),
                        serial,
                    },
                )
                .map(Some)
                .map_err(CoreError::ipam_field(field));
        }
        let mut last_err = None;
        for (id, _) in &pools {
            match self.builtin.request_address(
                id,
                &AddressRequest {
                    preferred: None,
                    serial,
                },
            ) {
                Ok(a) => return Ok(Some(a)),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("pools is not empty").into())
    }

    /// Re-reserves a ready endpoint's addresses exactly as recorded.
    pub(crate) fn replay_endpoint(
        &mut self,
        net: &NetworkRecord,
        ep: &EndpointRecord,
    ) -> Result<()> {
        if !is_builtin(&net.ipam.driver) {
            return Ok(());
        }
        let v4 = ep.addr_v4.map(|a| a.addr());
        let v6 = ep.addr_v6.map(|a| a.addr());
        let got = self.allocate_endpoint(net, v4, v6)?;
        // Without a recorded address nothing may be taken on replay.
        if v4.is_none()
            && let Some(a) = got.0
        {
            self.release_address(net, a.addr());
        }
        if v6.is_none()
            && let Some(a) = got.1
        {
            self.release_address(net, a.addr());
        }
        Ok(())
    }

    /// Releases one address of a network (a no-op if it is not allocated).
    pub(crate) fn release_address(&mut self, net: &NetworkRecord, ip: IpAddr) {
        let Some(ids) = self.leases.get(&net.id) else {
            return;
        };
        for (id, a) in ids.iter().zip(&net.pools) {
            if a.pool.contains(&ip) {
                if let Err(e) = self.builtin.release_address(id, ip) {
                    tracing::warn!(%ip, error = %e, "releasing address");
                }
                return;
            }
        }
    }

    /// Releases an endpoint's addresses.
    pub(crate) fn release_endpoint(&mut self, net: &NetworkRecord, ep: &EndpointRecord) {
        for a in ep.addr_v4.iter().chain(ep.addr_v6.iter()) {
            self.release_address(net, a.addr());
        }
    }

    /// The pools allocated right now, for diagnostics and tests.
    pub(crate) fn allocated_pools(&self) -> Vec<IpNet> {
        self.builtin.allocated_pools()
    }
}

/// The first usable address of a pool: network + 1 (the pool itself for /31, /32, /127, /128).
fn first_host(pool: IpNet) -> Option<IpAddr> {
    let net = pool.network();
    let small = match pool {
        IpNet::V4(p) => p.prefix_len() >= 31,
        IpNet::V6(p) => p.prefix_len() >= 127,
    };
    if small {
        return Some(net);
    }
    match net {
        IpAddr::V4(a) => u32::from(a).checked_add(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(a) => u128::from(a).checked_add(1).map(|n| IpAddr::V6(n.into())),
    }
}
