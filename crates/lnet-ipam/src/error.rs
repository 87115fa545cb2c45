//! The one error type of the crate. Every message names the object and the
//! offending value, says what was wrong, and what is allowed instead, because
//! these messages end up in front of users of `docker network create`-like
//! commands.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{AddressSpace, PoolId};

/// Everything that can go wrong in [`crate::Ipam`]. A call that returns an
/// error has changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// A configured pool spec whose base is of the wrong family for its list.
    #[error(
        "default address pool base {base} in `{list}` has the wrong family: `{list}` only takes \
         {expected} prefixes"
    )]
    PoolSpecFamily {
        /// The [`crate::IpamConfig`] field holding the spec.
        list: &'static str,
        /// The spec's base.
        base: IpNet,
        /// `"IPv4"` or `"IPv6"`.
        expected: &'static str,
    },
    /// A configured pool spec whose size does not fit its base.
    #[error(
        "default address pool {base} in `{list}` has size {size}: the size must be between \
         {min} (the base's prefix length) and {max}"
    )]
    PoolSpecSize {
        /// The [`crate::IpamConfig`] field holding the spec.
        list: &'static str,
        /// The spec's base.
        base: IpNet,
        /// The rejected size.
        size: u8,
        /// Smallest allowed size (the base prefix length).
        min: u8,
        /// Largest allowed size (32 or 128).
        max: u8,
    },
    /// `::/0` cut in /128s: 2^128 pools cannot be counted.
    #[error(
        "default address pool {base} with size {size} in `{list}` describes 2^128 pools: use a \
         longer base prefix or a smaller size"
    )]
    PoolSpecTooLarge {
        /// The [`crate::IpamConfig`] field holding the spec.
        list: &'static str,
        /// The spec's base.
        base: IpNet,
        /// The spec's size.
        size: u8,
    },
    /// `sub_pool` given without `pool`.
    #[error(
        "sub_pool {sub_pool} was given without a pool: a sub-pool must name the pool it is \
         carved from"
    )]
    SubPoolWithoutPool {
        /// The orphan sub-pool.
        sub_pool: IpNet,
    },
    /// The requested pool is not of the family the request asks for.
    #[error(
        "pool {pool} is {actual} but the request asks for {requested} (v6 = {v6}): the pool's \
         family must match the request"
    , actual = crate::pools::family_name(!*.v6), requested = crate::pools::family_name(*.v6))]
    PoolFamilyMismatch {
        /// The requested pool.
        pool: IpNet,
        /// The request's `v6` flag.
        v6: bool,
    },
    /// An IPv6 request without a subnet, and no IPv6 pool list configured.
    #[error(
        "IPv6 needs a subnet: give one, or configure an IPv6 default address pool for address \
         space {space}"
    )]
    Ipv6NeedsSubnet {
        /// The address space of the request.
        space: AddressSpace,
    },
    /// Every predefined pool is taken or overlaps something.
    #[error(
        "no available {family} pool in address space {space}: every default address pool is \
         allocated or overlaps an allocated pool or an excluded prefix; release a network or \
         configure more default address pools"
    , family = crate::pools::family_name(*.v6))]
    NoAvailablePool {
        /// The address space of the request.
        space: AddressSpace,
        /// Whether an IPv6 pool was asked for.
        v6: bool,
    },
    /// The requested pool equals, contains or is inside an allocated pool.
    #[error(
        "pool {pool} overlaps pool {existing}, already allocated in address space {space}: pools \
         in one address space must be disjoint (not equal, not inside one another)"
    )]
    PoolOverlap {
        /// The address space of the request.
        space: AddressSpace,
        /// The requested pool.
        pool: IpNet,
        /// The allocated pool it collides with.
        existing: IpNet,
    },
    /// The sub-pool is not inside the pool.
    #[error(
        "sub_pool {sub_pool} is not inside pool {pool}: the sub-pool must be a subnet of the pool"
    )]
    InvalidSubPool {
        /// The requested pool.
        pool: IpNet,
        /// The requested sub-pool.
        sub_pool: IpNet,
    },
    /// The sub-pool starts past the 2^64 addresses a pool can allocate.
    #[error(
        "sub_pool {sub_pool} starts beyond the first 2^64 addresses of pool {pool}: only those \
         addresses can be allocated, so the sub-pool must start before {limit}"
    )]
    SubPoolBeyondRange {
        /// The requested pool.
        pool: IpNet,
        /// The requested sub-pool.
        sub_pool: IpNet,
        /// First address past the allocatable range.
        limit: IpAddr,
    },
    /// The same sub-pool of the same pool was requested twice.
    #[error(
        "sub_pool {sub_pool} of pool {pool} is already allocated: each sub-pool can be allocated \
         only once"
    )]
    SubPoolInUse {
        /// The requested pool.
        pool: IpNet,
        /// The requested sub-pool.
        sub_pool: IpNet,
    },
    /// The id does not name a live lease.
    #[error(
        "pool id {id} does not name an allocated pool: use an id returned by request_pool that \
         has not been released"
    )]
    PoolNotFound {
        /// The unknown id.
        id: PoolId,
    },
    /// The address is not in the pool (or of the other family).
    #[error("address {address} is outside pool {pool}: the address must be inside the pool")]
    AddressOutOfRange {
        /// The offending address.
        address: IpAddr,
        /// The lease's master pool.
        pool: IpNet,
    },
    /// The address is in a huge IPv6 pool, past the first 2^64 addresses.
    #[error(
        "address {address} is beyond the allocatable range of pool {pool}: only the first 2^64 \
         addresses, up to {last}, can be allocated"
    )]
    AddressBeyondRange {
        /// The offending address.
        address: IpAddr,
        /// The lease's master pool.
        pool: IpNet,
        /// Last allocatable address of the pool.
        last: IpAddr,
    },
    /// The network or broadcast address.
    #[error(
        "address {address} is the {role} address of pool {pool}: it is reserved and can be \
         neither allocated nor released"
    )]
    AddressReserved {
        /// The offending address.
        address: IpAddr,
        /// The lease's master pool.
        pool: IpNet,
        /// `"network"` or `"broadcast"`.
        role: &'static str,
    },
    /// The preferred address is already allocated.
    #[error(
        "address {address} in pool {pool} is already allocated: choose a free address or omit \
         the preferred address"
    )]
    AddressInUse {
        /// The offending address.
        address: IpAddr,
        /// The lease's master pool.
        pool: IpNet,
    },
    /// The lease's range is full.
    #[error(
        "no available address in pool {pool}{range}: every address is allocated; release one or \
         use a larger pool"
    , range = match .range { Some(r) => format!(" (sub_pool {r})"), None => String::new() })]
    NoAvailableAddress {
        /// The lease's master pool.
        pool: IpNet,
        /// The lease's sub-pool, if it has one.
        range: Option<IpNet>,
    },
}
