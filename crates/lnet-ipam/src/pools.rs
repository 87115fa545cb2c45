//! Predefined pool lists (Docker's `default-address-pools`) and the prefix
//! arithmetic the allocator is built on.
//!
//! Prefixes are handled as `(v6, start, last)` integer spans so that IPv4 and
//! IPv6 share one code path; an IPv4 address is its `u32` value widened to
//! `u128`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::IpamError;

/// One entry of a predefined pool list: `base` is cut into consecutive
/// subnets of prefix length `size` (Docker's `default-address-pools`
/// `{"base": ..., "size": ...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PoolSpec {
    /// The prefix the pools are carved from.
    pub base: IpNet,
    /// Prefix length of every pool cut from `base`.
    pub size: u8,
}

impl PoolSpec {
    /// A spec; it is validated when handed to [`crate::Ipam::new`].
    pub fn new(base: IpNet, size: u8) -> Self {
        Self { base, size }
    }

    /// The pools this spec describes, in address order. Lazy: a spec can
    /// describe billions of pools.
    pub fn pools(&self) -> impl Iterator<Item = IpNet> + use<> {
        let base = self.base.trunc();
        let size = self.size;
        let count = pool_count(&base, size).unwrap_or(0);
        (0..count).map(move |i| nth_pool(&base, size, i))
    }

    /// Checks the spec for use in the list named `list` (an [`crate::IpamConfig`]
    /// field name) and returns it with its base masked.
    pub(crate) fn validated(&self, list: &'static str, v6: bool) -> Result<Self, IpamError> {
        let base = self.base.trunc();
        if is_v6(&base) != v6 {
            return Err(IpamError::PoolSpecFamily {
                list,
                base,
                expected: family_name(v6),
            });
        }
        let min = base.prefix_len();
        let max = base.max_prefix_len();
        if self.size < min || self.size > max {
            return Err(IpamError::PoolSpecSize {
                list,
                base,
                size: self.size,
                min,
                max,
            });
        }
        if pool_count(&base, self.size).is_none() {
            return Err(IpamError::PoolSpecTooLarge {
                list,
                base,
                size: self.size,
            });
        }
        Ok(Self {
            base,
            size: self.size,
        })
    }
}

fn v4(a: [u8; 4], len: u8) -> IpNet {
    // Prefix lengths below are literals <= 32, so `new` cannot fail; the
    // fallback keeps this panic-free anyway.
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), len).unwrap_or_default())
}

/// Docker's default local pool specs: 172.17-19/16, 172.20-31/16 (from three
/// /14s), then 192.168.0.0/16 cut in /20s.
pub fn default_local_pool_specs() -> Vec<PoolSpec> {
    vec![
        PoolSpec::new(v4([172, 17, 0, 0], 16), 16),
        PoolSpec::new(v4([172, 18, 0, 0], 16), 16),
        PoolSpec::new(v4([172, 19, 0, 0], 16), 16),
        PoolSpec::new(v4([172, 20, 0, 0], 14), 16),
        PoolSpec::new(v4([172, 24, 0, 0], 14), 16),
        PoolSpec::new(v4([172, 28, 0, 0], 14), 16),
        PoolSpec::new(v4([192, 168, 0, 0], 16), 20),
    ]
}

/// Docker's default global pool spec: 10.0.0.0/8 cut in /24s.
pub fn default_global_pool_specs() -> Vec<PoolSpec> {
    vec![PoolSpec::new(v4([10, 0, 0, 0], 8), 24)]
}

/// The 31 default local pools, expanded, in allocation order.
pub fn default_local_pools() -> Vec<IpNet> {
    default_local_pool_specs()
        .iter()
        .flat_map(PoolSpec::pools)
        .collect()
}

/// Whether `a` and `b` share an address: one contains the other (prefixes
/// cannot partially overlap). Prefixes of different families never overlap.
/// Host bits are ignored, so `10.1.2.3/16` is treated as `10.1.0.0/16`.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    let (av6, a_start, a_last) = span(a);
    let (bv6, b_start, b_last) = span(b);
    av6 == bv6 && a_start <= b_last && b_start <= a_last
}

pub(crate) fn family_name(v6: bool) -> &'static str {
    if v6 { "IPv6" } else { "IPv4" }
}

pub(crate) fn is_v6(net: &IpNet) -> bool {
    matches!(net, IpNet::V6(_))
}

pub(crate) fn addr_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(crate) fn bits_addr(v6: bool, bits: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(bits))
    } else {
        // Callers only pass values derived from IPv4 spans, which fit.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(bits).unwrap_or(u32::MAX)))
    }
}

/// Number of host bits of `net`.
pub(crate) fn host_bits(net: &IpNet) -> u32 {
    u32::from(net.max_prefix_len() - net.prefix_len())
}

/// `(v6, first address, last address)` of `net`, host bits ignored.
pub(crate) fn span(net: &IpNet) -> (bool, u128, u128) {
    let t = net.trunc();
    (is_v6(&t), addr_bits(t.network()), addr_bits(t.broadcast()))
}

/// How many pools of prefix length `size` fit in `base`; `None` when that is
/// 2^128 (`::/0` cut in /128s) or `size` is out of range.
fn pool_count(base: &IpNet, size: u8) -> Option<u128> {
    let shift = size.checked_sub(base.prefix_len())?;
    1u128.checked_shl(u32::from(shift))
}

/// The `i`th pool of prefix length `size` inside `base` (no bounds check).
fn nth_pool(base: &IpNet, size: u8, i: u128) -> IpNet {
    let (v6, start, _) = span(base);
    let host = u32::from(base.max_prefix_len() - size);
    let addr = start + i.checked_shl(host).unwrap_or(0);
    IpNet::new(bits_addr(v6, addr), size).unwrap_or(*base)
}

/// Position in a predefined pool list: `(spec index, pool index in spec)`.
/// Two numbers rather than one flat index, so that lists of huge IPv6 specs
/// cannot overflow it.
pub(crate) type Cursor = (usize, u128);

/// Walks `specs` from `cursor` to the end, then from the start back to
/// `cursor`, and returns the first pool (and its position) that `blocker`
/// does not reject.
///
/// `blocker(pool)` returns the span `(start, last)` of something the pool
/// overlaps. When that span covers the whole pool, the walk jumps past its
/// end in one step, so a /8 exclusion costs one step rather than 65,536; the
/// walk therefore takes O(specs + blockers) steps, never O(pools).
pub(crate) fn find_free(
    specs: &[PoolSpec],
    cursor: Cursor,
    mut blocker: impl FnMut(&IpNet) -> Option<(u128, u128)>,
) -> Option<(Cursor, IpNet)> {
    let n = specs.len();
    if n == 0 {
        return None;
    }
    let (start_spec, start_idx) = if cursor.0 < n { cursor } else { (0, 0) };
    // The starting spec is visited twice: first from the cursor to its end,
    // finally (after wrapping) from its beginning up to the cursor.
    let segments = (0..n)
        .map(|k| {
            let s = (start_spec + k) % n;
            (s, if k == 0 { start_idx } else { 0 }, None)
        })
        .chain(std::iter::once((start_spec, 0, Some(start_idx))));
    for (s, from, until) in segments {
        let spec = &specs[s];
        let Some(count) = pool_count(&spec.base, spec.size) else {
            continue;
        };
        let until = until.unwrap_or(count).min(count);
        let (_, base_start, _) = span(&spec.base);
        let host = u32::from(spec.base.max_prefix_len() - spec.size);
        let mut i = from;
        while i < until {
            let pool = nth_pool(&spec.base, spec.size, i);
            let Some((b_start, b_last)) = blocker(&pool) else {
                return Some(((s, i), pool));
            };
            let (_, p_start, p_last) = span(&pool);
            i = if b_start <= p_start && b_last >= p_last {
                // Index of the pool holding `b_last`, plus one. Saturates
                // when the blocker reaches past the spec.
                ((b_last - base_start).checked_shr(host).unwrap_or(0)).saturating_add(1)
            } else {
                i + 1
            };
        }
    }
    None
}

/// The cursor position right after `at`, wrapping to the list start.
pub(crate) fn next_cursor(specs: &[PoolSpec], at: Cursor) -> Cursor {
    let (s, i) = at;
    let count = specs
        .get(s)
        .and_then(|spec| pool_count(&spec.base, spec.size))
        .unwrap_or(0);
    if i + 1 < count {
        (s, i + 1)
    } else if s + 1 < specs.len() {
        (s + 1, 0)
    } else {
        (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn default_local_order() {
        let pools = default_local_pools();
        assert_eq!(pools.len(), 31);
        assert_eq!(pools[0], net("172.17.0.0/16"));
        assert_eq!(pools[3], net("172.20.0.0/16"));
        assert_eq!(pools[14], net("172.31.0.0/16"));
        assert_eq!(pools[15], net("192.168.0.0/20"));
        assert_eq!(pools[16], net("192.168.16.0/20"));
        assert_eq!(pools[30], net("192.168.240.0/20"));
    }

    #[test]
    fn default_global_is_lazy_and_complete() {
        let spec = default_global_pool_specs()[0];
        let mut it = spec.pools();
        assert_eq!(it.next(), Some(net("10.0.0.0/24")));
        assert_eq!(it.next(), Some(net("10.0.1.0/24")));
        assert_eq!(spec.pools().count(), 65_536);
        assert_eq!(spec.pools().last(), Some(net("10.255.255.0/24")));
    }

    #[test]
    fn overlaps_is_containment_either_way() {
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.1.0.0/16")));
        assert!(overlaps(&net("10.1.0.0/16"), &net("10.0.0.0/8")));
        assert!(overlaps(&net("10.1.2.3/16"), &net("10.1.0.0/16")));
        assert!(!overlaps(&net("10.1.0.0/16"), &net("10.2.0.0/16")));
        assert!(!overlaps(&net("0.0.0.0/0"), &net("::/0")));
        assert!(overlaps(&net("fd00::/8"), &net("fd00:1::/64")));
    }

    #[test]
    fn find_free_jumps_over_a_big_blocker() {
        let specs = default_global_pool_specs();
        let big = span(&net("10.0.0.0/9"));
        let mut steps = 0;
        let found = find_free(&specs, (0, 0), |p| {
            steps += 1;
            let s = span(p);
            (s.1 <= big.2 && big.1 <= s.2).then_some((big.1, big.2))
        });
        assert_eq!(found, Some(((0, 32_768), net("10.128.0.0/24"))));
        assert_eq!(steps, 2);
    }

    #[test]
    fn find_free_wraps_and_stops() {
        let specs = vec![PoolSpec::new(net("192.0.2.0/24"), 26)];
        let taken = span(&net("192.0.2.128/25"));
        let block = |p: &IpNet| {
            let s = span(p);
            (s.1 <= taken.2 && taken.1 <= s.2).then_some((taken.1, taken.2))
        };
        assert_eq!(
            find_free(&specs, (0, 2), block),
            Some(((0, 0), net("192.0.2.0/26")))
        );
        let all = span(&net("192.0.2.0/24"));
        assert_eq!(find_free(&specs, (0, 1), |_| Some((all.1, all.2))), None);
        assert_eq!(next_cursor(&specs, (0, 3)), (0, 0));
    }
}
