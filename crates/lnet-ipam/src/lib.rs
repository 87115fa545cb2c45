//! lnet-ipam owns IP address management for lnet, modelled on libnetwork's
//! default IPAM driver: the two address spaces (`LocalDefault`,
//! `GlobalDefault`), the predefined pool lists and their round-robin
//! selection, master pools and sub-pools with their overlap rules, and one
//! address bitmap per master pool — and the host ports of published container ports
//! ([`ports`]). It is pure: no I/O, no kernel, no store.
//! Nothing here is persisted; after a restart the caller rebuilds the state
//! by replaying `request_pool`/`request_address` with the same explicit
//! pools and preferred addresses.
//!
//! Differences from libnetwork, all deliberate:
//! - releasing an address that is already free is a no-op and never skews
//!   the free count (libnetwork's counter drifts);
//! - a pool request for a master that exists only implicitly, because a
//!   sub-pool of it was requested, claims that master instead of failing, so
//!   that replaying allocations in any order rebuilds the same state;
//! - implicitly created masters are checked for overlap like explicit ones;
//! - IPv6 pools with more than 64 host bits allocate from their first 2^64
//!   addresses, and addresses or sub-pools past that are rejected (libnetwork
//!   silently aliased them onto the first 2^64).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bitmap;
mod error;
mod pools;
pub mod ports;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use bitmap::{Bitmap, BitmapError};
pub use error::IpamError;
pub use pools::{
    PoolSpec, default_global_pool_specs, default_local_pool_specs, default_local_pools, overlaps,
};
pub use ports::{PortAllocator, PortError, Proto};

use pools::{Cursor, addr_bits, bits_addr, find_free, host_bits, is_v6, next_cursor, span};

/// libnetwork's two address spaces: `Local` for single-host networks,
/// `Global` for multi-host ones. Pools only collide within one space.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum AddressSpace {
    /// `LocalDefault`.
    #[default]
    #[serde(rename = "LocalDefault")]
    Local,
    /// `GlobalDefault`.
    #[serde(rename = "GlobalDefault")]
    Global,
}

impl AddressSpace {
    /// libnetwork's name for the space, as used in pool ids.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressSpace::Local => "LocalDefault",
            AddressSpace::Global => "GlobalDefault",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "LocalDefault" => Some(AddressSpace::Local),
            "GlobalDefault" => Some(AddressSpace::Global),
            _ => None,
        }
    }
}

impl fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies a pool lease, formatted like libnetwork's:
/// `LocalDefault/172.17.0.0/16`, or with a sub-pool
/// `LocalDefault/10.0.0.0/16/10.0.1.0/24`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PoolId(String);

impl PoolId {
    fn new(space: AddressSpace, pool: IpNet, sub_pool: Option<IpNet>) -> Self {
        Self(match sub_pool {
            Some(sub) => format!("{space}/{pool}/{sub}"),
            None => format!("{space}/{pool}"),
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Splits the id back into its parts. Only canonical prefixes parse to
    /// something that can match a lease, since leases are keyed by them.
    fn parse(&self) -> Option<(AddressSpace, IpNet, Option<IpNet>)> {
        // Hand-split rather than a generic tokenizer: this runs on every
        // address request, and parsing dominated the profile.
        let (space, rest) = self.0.split_once('/')?;
        let space = AddressSpace::parse(space)?;
        let (addr, rest) = rest.split_once('/')?;
        let (len, sub) = match rest.split_once('/') {
            Some((len, sub)) => (len, Some(sub)),
            None => (rest, None),
        };
        let pool = IpNet::new(addr.parse().ok()?, len.parse().ok()?).ok()?;
        let sub = match sub {
            Some(sub) => Some(sub.parse::<IpNet>().ok()?),
            None => None,
        };
        Some((space, pool, sub))
    }
}

impl fmt::Display for PoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<PoolId> for String {
    fn from(id: PoolId) -> Self {
        id.0
    }
}

/// Arguments of [`Ipam::request_pool`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolRequest {
    /// Address space to allocate in.
    pub space: AddressSpace,
    /// An explicit pool (`--subnet`); `None` picks a predefined one. Host
    /// bits are masked off, as libnetwork does.
    pub pool: Option<IpNet>,
    /// A range inside `pool` to hand addresses out from (`--ip-range`).
    pub sub_pool: Option<IpNet>,
    /// Whether an IPv6 pool is wanted.
    pub v6: bool,
    /// Prefixes a predefined pool must not overlap (host on-link routes,
    /// nameservers). Ignored for explicit pools: the user's choice wins.
    /// Do not pass the default route: `0.0.0.0/0` overlaps every pool.
    pub exclude: Vec<IpNet>,
}

/// A granted pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolLease {
    /// Handle for the other calls.
    pub id: PoolId,
    /// The master pool; addresses are returned with its prefix length.
    pub pool: IpNet,
    /// The sub-pool addresses are picked from, if one was requested.
    pub sub_pool: Option<IpNet>,
}

/// Arguments of [`Ipam::request_address`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AddressRequest {
    /// A specific address; anywhere in the master pool, even for a sub-pool
    /// lease (libnetwork does the same).
    pub preferred: Option<IpAddr>,
    /// Continue after the pool's last dynamically allocated address instead
    /// of taking the lowest free one, so freed addresses are not reused at
    /// once.
    pub serial: bool,
}

/// Predefined pool lists per address space and family. `None` means Docker's
/// defaults; a configured list replaces them. There are no IPv6 defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IpamConfig {
    /// IPv4 pools of `LocalDefault`.
    pub local: Option<Vec<PoolSpec>>,
    /// IPv4 pools of `GlobalDefault`.
    pub global: Option<Vec<PoolSpec>>,
    /// IPv6 pools of `LocalDefault`.
    pub local_v6: Vec<PoolSpec>,
    /// IPv6 pools of `GlobalDefault`.
    pub global_v6: Vec<PoolSpec>,
}

/// Key of a master pool inside a space: `(v6, first address)`. Masters are
/// disjoint, so the first address is unique, and numeric order lets one
/// range lookup find the master overlapping any prefix.
type MasterKey = (bool, u128);

#[derive(Debug)]
struct Master {
    net: IpNet,
    /// `span(&net)`, cached: it is needed on every address operation.
    v6: bool,
    first: u128,
    last: u128,
    /// Whether the master itself is leased (it may also live on only for
    /// its sub-pools, and then goes away with the last of them).
    held: bool,
    children: BTreeSet<IpNet>,
    bitmap: Bitmap,
    /// Where serial allocation resumes: one past the last ordinal handed out
    /// without a preferred address (libnetwork's `curr`).
    cursor: u64,
    reserve_network: bool,
    reserve_broadcast: bool,
}

impl Master {
    fn new(net: IpNet) -> Self {
        let (v6, first, last) = span(&net);
        let host = host_bits(&net);
        // 2^64 ordinals at most: see the crate docs.
        let last_ordinal = if host >= 64 {
            u64::MAX
        } else {
            (1u64 << host) - 1
        };
        let reserve_network = v6 || host >= 2;
        let reserve_broadcast = !v6 && host >= 2;
        let mut bitmap = Bitmap::with_last(last_ordinal);
        // Both ordinals are within the bitmap, so these cannot fail.
        if reserve_network {
            let _ = bitmap.set(0);
        }
        if reserve_broadcast {
            let _ = bitmap.set(last_ordinal);
        }
        Self {
            net,
            v6,
            first,
            last,
            held: false,
            children: BTreeSet::new(),
            bitmap,
            cursor: 0,
            reserve_network,
            reserve_broadcast,
        }
    }

    /// Whether `pool`/`sub` names a live lease on this master.
    fn has_lease(&self, pool: &IpNet, sub: Option<&IpNet>) -> bool {
        self.net == *pool
            && match sub {
                Some(sub) => self.children.contains(sub),
                None => self.held,
            }
    }

    fn addr(&self, ordinal: u64) -> IpAddr {
        bits_addr(self.v6, self.first + u128::from(ordinal))
    }

    fn with_len(&self, addr: IpAddr) -> IpNet {
        // `addr` is inside `net`, so the prefix length is valid for it.
        IpNet::new(addr, self.net.prefix_len()).unwrap_or(self.net)
    }

    /// The ordinal of `addr`, checked against the pool, the 2^64 cap and the
    /// reserved ordinals.
    fn ordinal(&self, addr: IpAddr) -> Result<u64, IpamError> {
        let bits = addr_bits(addr);
        if addr.is_ipv6() != self.v6 || bits < self.first || bits > self.last {
            return Err(IpamError::AddressOutOfRange {
                address: addr,
                pool: self.net,
            });
        }
        let Ok(ordinal) = u64::try_from(bits - self.first) else {
            return Err(IpamError::AddressBeyondRange {
                address: addr,
                pool: self.net,
                last: self.addr(u64::MAX),
            });
        };
        let role = if ordinal == 0 && self.reserve_network {
            Some("network")
        } else if ordinal == self.bitmap.last() && self.reserve_broadcast {
            Some("broadcast")
        } else {
            None
        };
        if let Some(role) = role {
            return Err(IpamError::AddressReserved {
                address: addr,
                pool: self.net,
                role,
            });
        }
        Ok(ordinal)
    }

    /// Ordinal range of a lease: the sub-pool's (clipped to the bitmap) or
    /// the whole master.
    fn range(&self, sub: Option<&IpNet>) -> (u64, u64) {
        let Some(sub) = sub else {
            return (0, self.bitmap.last());
        };
        let (_, s_start, s_last) = span(sub);
        let base = self.first;
        // Sub-pools starting past the cap are refused in `request_pool`.
        let lo = u64::try_from(s_start - base).unwrap_or(u64::MAX);
        let hi = u64::try_from(s_last - base).unwrap_or(u64::MAX);
        (lo, hi)
    }
}

#[derive(Debug)]
struct Space {
    v4: Vec<PoolSpec>,
    v6: Vec<PoolSpec>,
    cursor_v4: Cursor,
    cursor_v6: Cursor,
    masters: BTreeMap<MasterKey, Master>,
}

impl Space {
    fn new(v4: Vec<PoolSpec>, v6: Vec<PoolSpec>) -> Self {
        Self {
            v4,
            v6,
            cursor_v4: (0, 0),
            cursor_v6: (0, 0),
            masters: BTreeMap::new(),
        }
    }

    /// The allocated master overlapping `net`, if any. Masters are disjoint
    /// and sorted by start, so the only candidate is the last master starting
    /// at or before `net`'s last address: it either contains `net`, lies
    /// inside it, or ends before it (and then so do all earlier ones).
    fn overlapping_master<'a>(
        masters: &'a BTreeMap<MasterKey, Master>,
        net: &IpNet,
    ) -> Option<&'a Master> {
        let (v6, start, last) = span(net);
        let (&(m_v6, _), master) = masters.range(..=(v6, last)).next_back()?;
        (m_v6 == v6 && master.last >= start).then_some(master)
    }

    fn find(&self, pool: &IpNet, sub: Option<&IpNet>) -> Option<&Master> {
        let (v6, start, _) = span(pool);
        self.masters
            .get(&(v6, start))
            .filter(|m| m.has_lease(pool, sub))
    }

    fn find_mut(&mut self, pool: &IpNet, sub: Option<&IpNet>) -> Option<&mut Master> {
        let (v6, start, _) = span(pool);
        self.masters
            .get_mut(&(v6, start))
            .filter(|m| m.has_lease(pool, sub))
    }
}

/// The allocator: pools per address space, and addresses per pool.
///
/// ```
/// use lnet_ipam::{AddressRequest, Ipam, IpamConfig, PoolRequest};
///
/// let mut ipam = Ipam::new(IpamConfig::default())?;
/// let lease = ipam.request_pool(&PoolRequest::default())?;
/// assert_eq!(lease.id.to_string(), "LocalDefault/172.17.0.0/16");
/// let gw = ipam.request_address(&lease.id, &AddressRequest::default())?;
/// assert_eq!(gw.to_string(), "172.17.0.1/16");
/// ipam.release_address(&lease.id, gw.addr())?;
/// ipam.release_pool(&lease.id)?;
/// # Ok::<(), lnet_ipam::IpamError>(())
/// ```
#[derive(Debug)]
pub struct Ipam {
    local: Space,
    global: Space,
}

impl Ipam {
    /// An allocator with the given predefined pool lists, validated.
    pub fn new(config: IpamConfig) -> Result<Self, IpamError> {
        fn check(
            list: &'static str,
            specs: &[PoolSpec],
            v6: bool,
        ) -> Result<Vec<PoolSpec>, IpamError> {
            specs.iter().map(|s| s.validated(list, v6)).collect()
        }
        let local = match &config.local {
            Some(specs) => check("local", specs, false)?,
            None => default_local_pool_specs(),
        };
        let global = match &config.global {
            Some(specs) => check("global", specs, false)?,
            None => default_global_pool_specs(),
        };
        let local_v6 = check("local_v6", &config.local_v6, true)?;
        let global_v6 = check("global_v6", &config.global_v6, true)?;
        Ok(Self {
            local: Space::new(local, local_v6),
            global: Space::new(global, global_v6),
        })
    }

    fn space(&self, space: AddressSpace) -> &Space {
        match space {
            AddressSpace::Local => &self.local,
            AddressSpace::Global => &self.global,
        }
    }

    fn space_mut(&mut self, space: AddressSpace) -> &mut Space {
        match space {
            AddressSpace::Local => &mut self.local,
            AddressSpace::Global => &mut self.global,
        }
    }

    fn lease(&self, id: &PoolId) -> Option<(&Master, Option<IpNet>)> {
        let (space, pool, sub) = id.parse()?;
        let master = self.space(space).find(&pool, sub.as_ref())?;
        Some((master, sub))
    }

    fn lease_mut(
        &mut self,
        id: &PoolId,
    ) -> Result<(AddressSpace, &mut Master, Option<IpNet>), IpamError> {
        let found = id.parse().and_then(|(space, pool, sub)| {
            let master = self.space_mut(space).find_mut(&pool, sub.as_ref())?;
            Some((space, master, sub))
        });
        found.ok_or_else(|| IpamError::PoolNotFound { id: id.clone() })
    }

    /// Allocates a pool: a predefined one when `req.pool` is `None`, else the
    /// given pool (and sub-pool).
    pub fn request_pool(&mut self, req: &PoolRequest) -> Result<PoolLease, IpamError> {
        match req.pool {
            None => {
                if let Some(sub_pool) = req.sub_pool {
                    return Err(IpamError::SubPoolWithoutPool { sub_pool });
                }
                self.request_predefined(req.space, req.v6, &req.exclude)
            }
            Some(pool) => self.request_explicit(req.space, pool, req.sub_pool, req.v6),
        }
    }

    fn request_predefined(
        &mut self,
        name: AddressSpace,
        v6: bool,
        exclude: &[IpNet],
    ) -> Result<PoolLease, IpamError> {
        let space = self.space_mut(name);
        let (specs, cursor) = if v6 {
            (&space.v6, space.cursor_v6)
        } else {
            (&space.v4, space.cursor_v4)
        };
        if v6 && specs.is_empty() {
            return Err(IpamError::Ipv6NeedsSubnet { space: name });
        }
        let excluded: Vec<(u128, u128)> = exclude
            .iter()
            .map(span)
            .filter(|&(x_v6, _, _)| x_v6 == v6)
            .map(|(_, s, l)| (s, l))
            .collect();
        let masters = &space.masters;
        let found = find_free(specs, cursor, |pool| {
            let (_, start, last) = span(pool);
            if let Some(m) = Space::overlapping_master(masters, pool) {
                return Some((m.first, m.last));
            }
            excluded
                .iter()
                .copied()
                .find(|&(s, l)| s <= last && start <= l)
        });
        let Some((at, pool)) = found else {
            return Err(IpamError::NoAvailablePool { space: name, v6 });
        };
        let next = next_cursor(specs, at);
        if v6 {
            space.cursor_v6 = next;
        } else {
            space.cursor_v4 = next;
        }
        let mut master = Master::new(pool);
        master.held = true;
        space.masters.insert((v6, span(&pool).1), master);
        Ok(PoolLease {
            id: PoolId::new(name, pool, None),
            pool,
            sub_pool: None,
        })
    }

    fn request_explicit(
        &mut self,
        name: AddressSpace,
        pool: IpNet,
        sub_pool: Option<IpNet>,
        v6: bool,
    ) -> Result<PoolLease, IpamError> {
        let pool = pool.trunc();
        if is_v6(&pool) != v6 {
            return Err(IpamError::PoolFamilyMismatch { pool, v6 });
        }
        let sub_pool = sub_pool.map(|s| s.trunc());
        if let Some(sub) = sub_pool {
            if is_v6(&sub) != v6 || sub.prefix_len() < pool.prefix_len() || !overlaps(&pool, &sub) {
                return Err(IpamError::InvalidSubPool {
                    pool,
                    sub_pool: sub,
                });
            }
            if host_bits(&pool) > 64 && span(&sub).1 - span(&pool).1 > u128::from(u64::MAX) {
                return Err(IpamError::SubPoolBeyondRange {
                    pool,
                    sub_pool: sub,
                    limit: bits_addr(v6, span(&pool).1 + (1u128 << 64)),
                });
            }
        }
        let space = self.space_mut(name);
        let key = (v6, span(&pool).1);
        match space.masters.get_mut(&key).filter(|m| m.net == pool) {
            Some(master) => match sub_pool {
                None if master.held => {
                    return Err(IpamError::PoolOverlap {
                        space: name,
                        pool,
                        existing: pool,
                    });
                }
                None => master.held = true,
                Some(sub) => {
                    if !master.children.insert(sub) {
                        return Err(IpamError::SubPoolInUse {
                            pool,
                            sub_pool: sub,
                        });
                    }
                }
            },
            None => {
                if let Some(other) = Space::overlapping_master(&space.masters, &pool) {
                    return Err(IpamError::PoolOverlap {
                        space: name,
                        pool,
                        existing: other.net,
                    });
                }
                let mut master = Master::new(pool);
                match sub_pool {
                    Some(sub) => {
                        master.children.insert(sub);
                    }
                    None => master.held = true,
                }
                space.masters.insert(key, master);
            }
        }
        Ok(PoolLease {
            id: PoolId::new(name, pool, sub_pool),
            pool,
            sub_pool,
        })
    }

    /// Releases a pool lease. A master's addresses go away with it once it
    /// is released and has no sub-pools left.
    pub fn release_pool(&mut self, id: &PoolId) -> Result<(), IpamError> {
        let (space, master, sub) = self.lease_mut(id)?;
        match sub {
            Some(sub) => {
                master.children.remove(&sub);
            }
            None => master.held = false,
        }
        if !master.held && master.children.is_empty() {
            let key = (master.v6, master.first);
            self.space_mut(space).masters.remove(&key);
        }
        Ok(())
    }

    /// Allocates an address from a lease and returns it with the master
    /// pool's prefix length.
    pub fn request_address(
        &mut self,
        id: &PoolId,
        req: &AddressRequest,
    ) -> Result<IpNet, IpamError> {
        let (_, master, sub) = self.lease_mut(id)?;
        if let Some(addr) = req.preferred {
            let ordinal = master.ordinal(addr)?;
            // `ordinal` passed `Master::ordinal`, so it is inside the bitmap.
            if !master.bitmap.set(ordinal).unwrap_or(false) {
                return Err(IpamError::AddressInUse {
                    address: addr,
                    pool: master.net,
                });
            }
            return Ok(master.with_len(addr));
        }
        let (lo, hi) = master.range(sub.as_ref());
        let serial = req.serial.then_some(master.cursor);
        // The range comes from `Master::range`, which stays in the bitmap.
        match master.bitmap.set_any_in_range(lo, hi, serial) {
            Ok(Some(ordinal)) => {
                master.cursor = ordinal.wrapping_add(1);
                Ok(master.with_len(master.addr(ordinal)))
            }
            Ok(None) | Err(_) => Err(IpamError::NoAvailableAddress {
                pool: master.net,
                range: sub,
            }),
        }
    }

    /// Returns an address to its pool. Releasing a free address is a no-op.
    /// Any address of the master pool is accepted, even for a sub-pool lease.
    pub fn release_address(&mut self, id: &PoolId, addr: IpAddr) -> Result<(), IpamError> {
        let (_, master, _) = self.lease_mut(id)?;
        let ordinal = master.ordinal(addr)?;
        // In range by `Master::ordinal`; `Ok(false)` (already free) is fine.
        let _ = master.bitmap.unset(ordinal);
        Ok(())
    }

    /// The master pool of a live lease.
    pub fn pool_of(&self, id: &PoolId) -> Option<IpNet> {
        self.lease(id).map(|(m, _)| m.net)
    }

    /// Whether `addr` is allocated (or reserved) in the lease's master pool.
    pub fn is_allocated(&self, id: &PoolId, addr: IpAddr) -> bool {
        let Some((master, _)) = self.lease(id) else {
            return false;
        };
        let bits = addr_bits(addr);
        addr.is_ipv6() == master.v6
            && (master.first..=master.last).contains(&bits)
            && u64::try_from(bits - master.first).is_ok_and(|o| master.bitmap.is_set(o))
    }

    /// Free, allocatable addresses in the lease's range (its sub-pool, or
    /// the whole master pool; at most 2^64).
    pub fn free_count(&self, id: &PoolId) -> Option<u128> {
        let (master, sub) = self.lease(id)?;
        let (lo, hi) = master.range(sub.as_ref());
        let set = master.bitmap.count_set_in_range(lo, hi).ok()?;
        Some(u128::from(hi - lo) + 1 - set)
    }

    /// Every master pool currently allocated, in either address space,
    /// sorted, each once.
    pub fn allocated_pools(&self) -> Vec<IpNet> {
        let mut pools: Vec<IpNet> = [&self.local, &self.global]
            .iter()
            .flat_map(|s| s.masters.values().map(|m| m.net))
            .collect();
        pools.sort();
        pools.dedup();
        pools
    }

    /// The master pools allocated in one address space, sorted.
    pub fn allocated_pools_in(&self, space: AddressSpace) -> Vec<IpNet> {
        let mut pools: Vec<IpNet> = self.space(space).masters.values().map(|m| m.net).collect();
        pools.sort();
        pools
    }
}

#[cfg(test)]
mod tests;
