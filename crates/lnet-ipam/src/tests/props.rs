//! Random allocate/release sequences on small pools, checked against a
//! model that is a plain set of allocated ordinals.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::IpamError;

/// `(pool, sub_pool)` pairs small enough to fill up within a test case.
const POOLS: &[(&str, Option<&str>)] = &[
    ("10.0.0.0/24", None),
    ("10.0.0.0/28", None),
    ("10.0.0.0/30", None),
    ("10.0.0.0/31", None),
    ("fd00::/120", None),
    ("10.0.0.0/26", Some("10.0.0.16/29")),
    ("10.0.0.0/28", Some("10.0.0.0/29")),
];

#[derive(Debug, Clone)]
enum Op {
    /// Dynamic allocation.
    Alloc { serial: bool },
    /// Preferred allocation of the address at this offset into the master
    /// (offsets past the pool produce out-of-range addresses).
    Prefer(u128),
    /// Release of the address at this offset.
    Release(u128),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(|serial| Op::Alloc { serial }),
        1 => (0u128..260).prop_map(Op::Prefer),
        2 => (0u128..260).prop_map(Op::Release),
    ]
}

struct Model {
    size: u128,
    reserved: BTreeSet<u128>,
    allocated: BTreeSet<u128>,
    /// Lease range (inclusive), in offsets from the master's start.
    lo: u128,
    hi: u128,
    cursor: u128,
}

impl Model {
    fn is_free(&self, o: u128) -> bool {
        !self.reserved.contains(&o) && !self.allocated.contains(&o)
    }

    fn first_free(&self, from: u128, to: u128) -> Option<u128> {
        (from..=to).find(|&o| self.is_free(o))
    }

    fn next(&self, serial: bool) -> Option<u128> {
        if serial && self.cursor > self.lo && self.cursor <= self.hi {
            self.first_free(self.cursor, self.hi)
                .or_else(|| self.first_free(self.lo, self.cursor - 1))
        } else {
            self.first_free(self.lo, self.hi)
        }
    }

    fn free_in_range(&self) -> u128 {
        (self.lo..=self.hi).filter(|&o| self.is_free(o)).count() as u128
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn allocator_matches_set_model(
        which in 0..POOLS.len(),
        ops in proptest::collection::vec(op(), 1..400),
    ) {
        let (pool, sub) = POOLS[which];
        let mut ipam = ipam();
        let lease = ipam.request_pool(&explicit(AddressSpace::Local, pool, sub)).unwrap();
        let master = lease.pool;
        let v6 = matches!(master, IpNet::V6(_));
        let base = crate::pools::span(&master).1;
        let size = 1u128 << crate::pools::host_bits(&master);
        let (lo, hi) = match lease.sub_pool {
            Some(s) => {
                let (_, s_lo, s_hi) = crate::pools::span(&s);
                (s_lo - base, s_hi - base)
            }
            None => (0, size - 1),
        };
        let mut reserved = BTreeSet::new();
        if v6 || size > 2 {
            reserved.insert(0);
        }
        if !v6 && size > 2 {
            reserved.insert(size - 1);
        }
        let mut m = Model { size, reserved, allocated: BTreeSet::new(), lo, hi, cursor: 0 };
        let addr = |o: u128| crate::pools::bits_addr(v6, base + o);

        for op in ops {
            match op {
                Op::Alloc { serial } => {
                    let req = AddressRequest { preferred: None, serial };
                    let got = ipam.request_address(&lease.id, &req);
                    match m.next(serial) {
                        Some(o) => {
                            let got = got.unwrap();
                            prop_assert_eq!(got.prefix_len(), master.prefix_len());
                            prop_assert_eq!(got.addr(), addr(o));
                            prop_assert!(m.allocated.insert(o), "handed out twice");
                            m.cursor = o + 1;
                        }
                        None => {
                            let is_full = matches!(got, Err(IpamError::NoAvailableAddress { .. }));
                            prop_assert!(is_full, "{:?}", got);
                        }
                    }
                }
                Op::Prefer(o) => {
                    let a = addr(o);
                    let got = ipam.request_address(&lease.id, &AddressRequest { preferred: Some(a), serial: false });
                    if o >= m.size {
                        let out = matches!(got, Err(IpamError::AddressOutOfRange { .. }));
                        prop_assert!(out, "{:?}", got);
                    } else if m.reserved.contains(&o) {
                        let res = matches!(got, Err(IpamError::AddressReserved { .. }));
                        prop_assert!(res, "{:?}", got);
                    } else if m.allocated.contains(&o) {
                        let used = matches!(got, Err(IpamError::AddressInUse { .. }));
                        prop_assert!(used, "{:?}", got);
                    } else {
                        prop_assert_eq!(got.map(|n| n.addr()), Ok(a));
                        m.allocated.insert(o);
                    }
                }
                Op::Release(o) => {
                    let got = ipam.release_address(&lease.id, addr(o));
                    if o >= m.size {
                        let out = matches!(got, Err(IpamError::AddressOutOfRange { .. }));
                        prop_assert!(out, "{:?}", got);
                    } else if m.reserved.contains(&o) {
                        let res = matches!(got, Err(IpamError::AddressReserved { .. }));
                        prop_assert!(res, "{:?}", got);
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        m.allocated.remove(&o);
                    }
                }
            }
            // Also catches failed calls that changed the count anyway, and
            // releases of free addresses that skewed it.
            prop_assert_eq!(ipam.free_count(&lease.id), Some(m.free_in_range()));
        }
        for o in 0..m.size {
            prop_assert_eq!(ipam.is_allocated(&lease.id, addr(o)), !m.is_free(o));
        }
    }
}
