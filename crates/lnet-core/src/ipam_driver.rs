//! IPAM drivers outside lnet (plugins): the interface one implements, and how a network's
//! pools and an endpoint's addresses are asked of one and given back.
//!
//! lnet's own IPAM ([`crate::ipam`]) is derived state, rebuilt from the records at every
//! start. A plugin's is not: the plugin keeps it, so every request is made before the record
//! that names its answer is written, and every release after the record says `deleting` and
//! before it goes — a crash leaves a record whose grants the next start gives back, never
//! a record naming an address the plugin has given away. The one window no protocol call can
//! close is between the plugin's answer and lnet's write: a crash there leaves the plugin
//! holding what lnet never recorded, as it does dockerd.
//!
//! Every call is made without the state lock (holding only the keys of the objects it is
//! about), so a slow plugin holds up its own networks and nothing else.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use lnet_store::{EndpointRecord, IpamSpec, NetworkRecord, PoolAssignment};

use crate::error::{CoreError, Errors, Result};

/// What a network asks of an IPAM driver for one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAsk {
    /// A global-scope network's pool (else a local one).
    pub global: bool,
    /// The subnet asked for; `None`: the driver chooses.
    pub pool: Option<IpNet>,
    /// The range inside it to hand addresses out of.
    pub sub_pool: Option<IpNet>,
    /// The network's IPAM options (`--ipam-opt`).
    pub options: BTreeMap<String, String>,
    /// An IPv6 pool.
    pub v6: bool,
}

/// What an IPAM driver granted for a [`PoolAsk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolGrant {
    /// The pool's id, which every later call about it names.
    pub id: String,
    /// The pool.
    pub pool: IpNet,
    /// The address space it is in.
    pub space: String,
    /// The gateway the driver chose with the pool (Docker's `com.docker.network.gateway`
    /// in the answer's data), if it did.
    pub gateway: Option<IpAddr>,
}

/// What an endpoint or a network asks of an IPAM driver for one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressAsk {
    /// The address wanted; `None`: the driver chooses.
    pub preferred: Option<IpAddr>,
    /// The network's gateway (Docker's `RequestAddressType: com.docker.network.gateway`).
    pub gateway: bool,
    /// The endpoint's MAC, for drivers that want it.
    pub mac: Option<String>,
}

/// An IPAM driver outside lnet. Its answers are checked (a pool of the family and subnet
/// asked, addresses inside their pool); what it refuses reaches the user with its message.
pub trait IpamDriver: Send + Sync + std::fmt::Debug {
    /// Its name, as networks name it (`--ipam-driver`).
    fn name(&self) -> &str;

    /// Gets ready (found and activated) before any lock is taken.
    fn prepare(&self) -> Result<()> {
        Ok(())
    }

    /// Whether it answers now, for `doctor`: why not, if not.
    fn reachable(&self) -> std::result::Result<(), String> {
        Ok(())
    }

    /// Grants a pool.
    fn request_pool(&self, ask: &PoolAsk) -> Result<PoolGrant>;

    /// Gives a pool back.
    fn release_pool(&self, pool_id: &str) -> Result<()>;

    /// Grants an address of pool `pool_id`.
    fn request_address(&self, pool_id: &str, ask: &AddressAsk) -> Result<IpAddr>;

    /// Gives an address back.
    fn release_address(&self, pool_id: &str, ip: IpAddr) -> Result<()>;
}

/// Finds an IPAM driver lnet does not have built in, by name: `None` when there is no such
/// name to find.
pub type IpamFinder = dyn Fn(&str) -> Option<Arc<dyn IpamDriver>> + Send + Sync;

/// Whether a failed release may be counted as done: the driver answered, and no longer
/// has the pool or address (it lost it, or it was given back before a crash). One that
/// could not be reached is asked again later.
fn settled(e: &CoreError) -> bool {
    !matches!(
        e,
        CoreError::Driver {
            unreachable: true,
            ..
        }
    )
}

/// Asks `ipam` for a new network's pools, gateways and auxiliary addresses, as dockerd
/// does: each pool, then its auxiliary addresses, then its gateway (the one the driver gave
/// with the pool, or one asked for). On error everything granted is given back, so bad
/// input changes nothing.
pub(crate) fn allocate_network(
    ipam: &dyn IpamDriver,
    global: bool,
    spec: &IpamSpec,
    enable_ipv6: bool,
) -> Result<Vec<PoolAssignment>> {
    let mut done: Vec<PoolAssignment> = Vec::new();
    let res = (|| {
        for (v6, cfg) in crate::ipam::pool_configs(spec, enable_ipv6)? {
            let grant = ipam.request_pool(&PoolAsk {
                global,
                pool: cfg.subnet,
                sub_pool: cfg.ip_range,
                options: spec.options.clone(),
                v6,
            })?;
            let mut a = PoolAssignment {
                pool: grant.pool.trunc(),
                sub_pool: cfg.ip_range,
                gateway: None,
                aux_addresses: Default::default(),
                pool_id: Some(grant.id.clone()),
                address_space: Some(grant.space.clone()),
            };
            done.push(a.clone());
            let wrong = match cfg.subnet {
                Some(s) if s.trunc() != a.pool => Some(format!("subnet {s} was asked for")),
                _ if a.pool.addr().is_ipv6() != v6 => Some(format!(
                    "an IPv{} pool was asked for",
                    if v6 { 6 } else { 4 }
                )),
                _ => None,
            };
            if let Some(why) = wrong {
                return Err(refusal(
                    ipam,
                    format!("RequestPool: it granted pool {}, but {why}", a.pool),
                ));
            }
            for (name, ip) in &cfg.aux_addresses {
                let got = request_in(ipam, &a, Some(*ip), false, None)
                    .map_err(|e| in_field(format!("IPAM.Config.AuxiliaryAddresses[{name}]"), e))?;
                a.aux_addresses.insert(name.clone(), got.addr());
                *done.last_mut().expect("pushed above") = a.clone();
            }
            let gw = match grant.gateway {
                Some(ip) if a.pool.contains(&ip) => IpNet::new(ip, a.pool.prefix_len())
                    .map_err(|_| refusal(ipam, format!("RequestPool: gateway {ip}")))?,
                Some(ip) => {
                    return Err(refusal(
                        ipam,
                        format!(
                            "RequestPool: it gave gateway {ip}, outside its pool {}",
                            a.pool
                        ),
                    ));
                }
                None => request_in(ipam, &a, cfg.gateway, true, None)
                    .map_err(|e| in_field("IPAM.Config.Gateway", e))?,
            };
            a.gateway = Some(gw);
            *done.last_mut().expect("pushed above") = a;
        }
        Ok(())
    })();
    match res {
        Ok(()) => Ok(done),
        Err(e) => {
            if let Err(r) = release_pools(ipam, &done) {
                tracing::warn!(ipam = %ipam.name(), error = %r, "giving back the pools of a network not created");
            }
            Err(e)
        }
    }
}

/// Gives back every grant of `pools`: auxiliary addresses, gateway, pool, each pool in
/// turn from the last. Keeps going past failures and reports them all; what the driver
/// answers it no longer has counts as given back.
pub(crate) fn release_pools(ipam: &dyn IpamDriver, pools: &[PoolAssignment]) -> Result<()> {
    let mut errors = Errors::default();
    for a in pools.iter().rev() {
        let Some(id) = &a.pool_id else { continue };
        for ip in a.aux_addresses.values() {
            given_back(&mut errors, ipam, ip, ipam.release_address(id, *ip));
        }
        if let Some(gw) = a.gateway {
            given_back(
                &mut errors,
                ipam,
                gw.addr(),
                ipam.release_address(id, gw.addr()),
            );
        }
        given_back(&mut errors, ipam, a.pool, ipam.release_pool(id));
    }
    errors.into_result()
}

/// Notes how giving `what` back went: what the driver answers it no longer has counts as
/// given back (logged); any other failure is kept.
fn given_back(
    errors: &mut Errors,
    ipam: &dyn IpamDriver,
    what: impl std::fmt::Display,
    r: Result<()>,
) {
    match r {
        Err(e) if settled(&e) => {
            tracing::info!(ipam = %ipam.name(), %what, error = %e, "the IPAM driver no longer has it");
        }
        r => {
            errors.push(r);
        }
    }
}

/// Asks `ipam` for an endpoint's addresses on `net`: IPv4 from its IPv4 pools (the one
/// holding the preferred address, or the first that grants one), IPv6 likewise when it has
/// IPv6 pools. On error what was granted is given back.
pub(crate) fn allocate_endpoint(
    ipam: &dyn IpamDriver,
    net: &NetworkRecord,
    preferred: (Option<IpAddr>, Option<IpAddr>),
    mac: Option<&str>,
) -> Result<(Option<IpNet>, Option<IpNet>)> {
    let v4 = allocate_family(ipam, net, false, preferred.0, mac)?;
    match allocate_family(ipam, net, true, preferred.1, mac) {
        Ok(v6) => Ok((v4, v6)),
        Err(e) => {
            if let Err(r) = release_endpoint(ipam, net, v4.iter()) {
                tracing::warn!(ipam = %ipam.name(), error = %r, "giving back an address not used");
            }
            Err(e)
        }
    }
}

fn allocate_family(
    ipam: &dyn IpamDriver,
    net: &NetworkRecord,
    v6: bool,
    preferred: Option<IpAddr>,
    mac: Option<&str>,
) -> Result<Option<IpNet>> {
    let field = if v6 { "IPv6Address" } else { "IPv4Address" };
    let pools: Vec<&PoolAssignment> = net.pools.iter().filter(|a| a.is_v6() == v6).collect();
    if let Some(ip) = preferred {
        if ip.is_ipv6() != v6 {
            return Err(CoreError::invalid(
                field,
                ip,
                "wrong address family for this field",
            ));
        }
        let Some(a) = pools.iter().find(|a| a.pool.contains(&ip)) else {
            return Err(CoreError::invalid(
                field,
                ip,
                format!(
                    "the address does not belong to any of network {}'s {} subnets ({})",
                    net.name,
                    if v6 { "IPv6" } else { "IPv4" },
                    pools
                        .iter()
                        .map(|a| a.pool.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        return request_in(ipam, a, Some(ip), false, mac)
            .map(Some)
            .map_err(|e| in_field(field, e));
    }
    let mut last = None;
    for a in &pools {
        match request_in(ipam, a, None, false, mac) {
            Ok(got) => return Ok(Some(got)),
            // One the driver cannot be asked is not asked again for the next pool.
            Err(e) if !settled(&e) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    last.map_or(Ok(None), Err)
}

/// Gives back an endpoint's addresses (`addrs`, of `net`'s pools); what the driver no
/// longer has counts as given back.
pub(crate) fn release_endpoint<'a>(
    ipam: &dyn IpamDriver,
    net: &NetworkRecord,
    addrs: impl Iterator<Item = &'a IpNet>,
) -> Result<()> {
    let mut errors = Errors::default();
    for ip in addrs.map(IpNet::addr) {
        if let Some(id) = net
            .pools
            .iter()
            .find(|a| a.pool.contains(&ip))
            .and_then(|a| a.pool_id.as_deref())
        {
            given_back(&mut errors, ipam, ip, ipam.release_address(id, ip));
        }
    }
    errors.into_result()
}

/// Gives back the addresses of `ep`, an endpoint of `net`.
pub(crate) fn release_endpoint_record(
    ipam: &dyn IpamDriver,
    net: &NetworkRecord,
    ep: &EndpointRecord,
) -> Result<()> {
    release_endpoint(ipam, net, ep.addr_v4.iter().chain(ep.addr_v6.iter()))
}

/// One address of pool `a`, checked to lie in it, with the pool's prefix length.
fn request_in(
    ipam: &dyn IpamDriver,
    a: &PoolAssignment,
    preferred: Option<IpAddr>,
    gateway: bool,
    mac: Option<&str>,
) -> Result<IpNet> {
    let id = a.pool_id.as_deref().unwrap_or_default();
    let ip = ipam.request_address(
        id,
        &AddressAsk {
            preferred,
            gateway,
            mac: mac.map(str::to_string),
        },
    )?;
    let wrong = if !a.pool.contains(&ip) {
        Some(format!("outside its pool {}", a.pool))
    } else {
        preferred
            .filter(|p| *p != ip)
            .map(|p| format!("but {p} was asked for"))
    };
    if let Some(why) = wrong {
        if let Err(e) = ipam.release_address(id, ip) {
            tracing::warn!(ipam = %ipam.name(), %ip, error = %e, "giving back an address it should not have granted");
        }
        return Err(refusal(
            ipam,
            format!("RequestAddress: it granted {ip}, {why}"),
        ));
    }
    IpNet::new(ip, a.pool.prefix_len()).map_err(|_| refusal(ipam, format!("RequestAddress: {ip}")))
}

fn refusal(ipam: &dyn IpamDriver, message: String) -> CoreError {
    CoreError::Driver {
        driver: format!("IPAM plugin {}", ipam.name()),
        message,
        unreachable: false,
    }
}

/// The driver's refusal, said of the field whose value it refused.
fn in_field(field: impl Into<String>, e: CoreError) -> CoreError {
    match e {
        CoreError::Driver {
            driver,
            message,
            unreachable: false,
        } => CoreError::Driver {
            driver,
            message: format!("{}: {message}", field.into()),
            unreachable: false,
        },
        other => other,
    }
}
