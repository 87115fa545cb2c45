use std::time::{Duration, Instant};

use super::*;
use crate::{IpamError, PoolId, PoolSpec, default_local_pools};

fn predefined(space: AddressSpace, v6: bool, exclude: &[&str]) -> PoolRequest {
    PoolRequest {
        space,
        pool: None,
        sub_pool: None,
        v6,
        exclude: exclude.iter().map(|s| net(s)).collect(),
    }
}

fn next_local(ipam: &mut Ipam) -> Result<PoolLease, IpamError> {
    ipam.request_pool(&predefined(AddressSpace::Local, false, &[]))
}

/// Runs `f`, which must fail, and checks that the allocator did not change.
fn fails_cleanly<T: std::fmt::Debug>(
    ipam: &mut Ipam,
    f: impl FnOnce(&mut Ipam) -> Result<T, IpamError>,
) -> IpamError {
    let before = format!("{ipam:?}");
    let err = f(ipam).expect_err("the call should fail");
    assert_eq!(before, format!("{ipam:?}"), "a failed call changed state");
    err
}

// ---- predefined pools -------------------------------------------------------

#[test]
fn predefined_local_pools_come_in_docker_order_then_run_out() {
    let mut ipam = ipam();
    let got: Vec<IpNet> = (0..31)
        .map(|_| next_local(&mut ipam).unwrap().pool)
        .collect();
    assert_eq!(got, default_local_pools());
    assert_eq!(got[0], net("172.17.0.0/16"));
    assert_eq!(got[3], net("172.20.0.0/16"));
    assert_eq!(got[14], net("172.31.0.0/16"));
    assert_eq!(got[15], net("192.168.0.0/20"));
    assert_eq!(got[30], net("192.168.240.0/20"));
    let err = fails_cleanly(&mut ipam, next_local);
    assert_eq!(
        err,
        IpamError::NoAvailablePool {
            space: AddressSpace::Local,
            v6: false
        }
    );
    assert!(
        err.to_string()
            .starts_with("no available IPv4 pool in address space LocalDefault"),
        "{err}"
    );
}

#[test]
fn predefined_lease_ids_look_like_libnetwork() {
    let mut ipam = ipam();
    let l = next_local(&mut ipam).unwrap();
    assert_eq!(l.id.to_string(), "LocalDefault/172.17.0.0/16");
    assert_eq!(l.id.as_str(), "LocalDefault/172.17.0.0/16");
    assert_eq!(l.sub_pool, None);
    let g = ipam
        .request_pool(&predefined(AddressSpace::Global, false, &[]))
        .unwrap();
    assert_eq!(g.id.to_string(), "GlobalDefault/10.0.0.0/24");
    let g2 = ipam
        .request_pool(&predefined(AddressSpace::Global, false, &[]))
        .unwrap();
    assert_eq!(g2.pool, net("10.0.1.0/24"));
    assert_eq!(AddressSpace::Local.to_string(), "LocalDefault");
    assert_eq!(AddressSpace::Global.to_string(), "GlobalDefault");
}

#[test]
fn released_predefined_pool_is_not_reused_at_once() {
    let mut ipam = ipam();
    let a = next_local(&mut ipam).unwrap();
    ipam.release_pool(&a.id).unwrap();
    assert_eq!(next_local(&mut ipam).unwrap().pool, net("172.18.0.0/16"));
}

#[test]
fn round_robin_wraps_to_freed_pools() {
    let mut ipam = ipam();
    let leases: Vec<PoolLease> = (0..31).map(|_| next_local(&mut ipam).unwrap()).collect();
    ipam.release_pool(&leases[3].id).unwrap();
    ipam.release_pool(&leases[0].id).unwrap();
    assert_eq!(next_local(&mut ipam).unwrap().pool, net("172.17.0.0/16"));
    assert_eq!(next_local(&mut ipam).unwrap().pool, net("172.20.0.0/16"));
    next_local(&mut ipam).unwrap_err();
}

#[test]
fn round_robin_continues_past_a_freed_middle_pool() {
    let mut ipam = ipam();
    let leases: Vec<PoolLease> = (0..5).map(|_| next_local(&mut ipam).unwrap()).collect();
    ipam.release_pool(&leases[1].id).unwrap();
    // Cursor sits after the 5th pool; the freed 2nd one waits for the wrap.
    assert_eq!(next_local(&mut ipam).unwrap().pool, net("172.22.0.0/16"));
}

#[test]
fn exclude_skips_routes_and_nameservers() {
    let mut ipam = ipam();
    let req = predefined(
        AddressSpace::Local,
        false,
        &[
            "172.17.0.0/16",
            "172.18.5.0/24",
            "172.19.0.53/32",
            "fd00::/8",
        ],
    );
    assert_eq!(ipam.request_pool(&req).unwrap().pool, net("172.20.0.0/16"));
    let all_172 = predefined(AddressSpace::Local, false, &["172.16.0.0/12"]);
    assert_eq!(
        ipam.request_pool(&all_172).unwrap().pool,
        net("192.168.0.0/20")
    );
    // Excluded pools were skipped, not consumed: after the wrap they are
    // handed out once nothing excludes them.
    let mut rest = Vec::new();
    while let Ok(l) = next_local(&mut ipam) {
        rest.push(l.pool);
    }
    assert!(rest.contains(&net("172.17.0.0/16")));
    assert_eq!(rest.len(), 29);
}

#[test]
fn exclude_everything_is_no_available_pool() {
    let mut ipam = ipam();
    let err = fails_cleanly(&mut ipam, |i| {
        i.request_pool(&predefined(AddressSpace::Local, false, &["0.0.0.0/0"]))
    });
    assert!(matches!(err, IpamError::NoAvailablePool { .. }));
}

#[test]
fn exclude_of_half_the_global_space_is_fast() {
    let mut ipam = ipam();
    let t = Instant::now();
    let req = predefined(
        AddressSpace::Global,
        false,
        &["10.0.0.0/9", "10.128.0.0/24"],
    );
    assert_eq!(ipam.request_pool(&req).unwrap().pool, net("10.128.1.0/24"));
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
}

#[test]
fn global_space_exhausts_all_65536_pools() {
    let mut ipam = ipam();
    let req = predefined(AddressSpace::Global, false, &[]);
    for _ in 0..65_536 {
        ipam.request_pool(&req).unwrap();
    }
    assert!(matches!(
        ipam.request_pool(&req),
        Err(IpamError::NoAvailablePool {
            space: AddressSpace::Global,
            v6: false
        })
    ));
    assert_eq!(ipam.allocated_pools().len(), 65_536);
}

#[test]
fn predefined_skips_explicit_pools_that_overlap() {
    let mut ipam = ipam();
    lease(&mut ipam, "172.17.0.0/16");
    lease(&mut ipam, "172.18.1.0/24");
    assert_eq!(next_local(&mut ipam).unwrap().pool, net("172.19.0.0/16"));
    lease(&mut ipam, "172.20.0.0/14");
    assert_eq!(next_local(&mut ipam).unwrap().pool, net("172.24.0.0/16"));
}

#[test]
fn spaces_do_not_collide() {
    let mut ipam = ipam();
    lease(&mut ipam, "10.0.0.0/16");
    let g = ipam
        .request_pool(&explicit(AddressSpace::Global, "10.0.0.0/16", None))
        .unwrap();
    assert_eq!(g.id.as_str(), "GlobalDefault/10.0.0.0/16");
    assert_eq!(ipam.allocated_pools(), vec![net("10.0.0.0/16")]);
    assert_eq!(
        ipam.allocated_pools_in(AddressSpace::Global),
        vec![net("10.0.0.0/16")]
    );
    // Global predefined pools skip the global 10.0.0.0/16 but not local ones.
    let next = ipam
        .request_pool(&predefined(AddressSpace::Global, false, &[]))
        .unwrap();
    assert_eq!(next.pool, net("10.1.0.0/24"));
}

// ---- configuration ---------------------------------------------------------

#[test]
fn configured_pools_replace_defaults() {
    let config = IpamConfig {
        local: Some(vec![PoolSpec::new(net("10.10.0.0/16"), 24)]),
        ..IpamConfig::default()
    };
    let mut ipam = Ipam::new(config).unwrap();
    assert_eq!(next_local(&mut ipam).unwrap().pool, net("10.10.0.0/24"));
    assert_eq!(next_local(&mut ipam).unwrap().pool, net("10.10.1.0/24"));
    // Global keeps its default.
    let g = ipam
        .request_pool(&predefined(AddressSpace::Global, false, &[]))
        .unwrap();
    assert_eq!(g.pool, net("10.0.0.0/24"));
}

#[test]
fn configured_base_is_masked() {
    let config = IpamConfig {
        local: Some(vec![PoolSpec::new(net("10.10.3.4/16"), 17)]),
        ..IpamConfig::default()
    };
    let mut ipam = Ipam::new(config).unwrap();
    assert_eq!(next_local(&mut ipam).unwrap().pool, net("10.10.0.0/17"));
    assert_eq!(next_local(&mut ipam).unwrap().pool, net("10.10.128.0/17"));
    next_local(&mut ipam).unwrap_err();
}

#[test]
fn empty_configured_list_means_no_automatic_pools() {
    let config = IpamConfig {
        local: Some(vec![]),
        ..IpamConfig::default()
    };
    let mut ipam = Ipam::new(config).unwrap();
    assert!(matches!(
        next_local(&mut ipam),
        Err(IpamError::NoAvailablePool { .. })
    ));
    // Explicit pools still work.
    lease(&mut ipam, "172.17.0.0/16");
}

#[test]
fn config_validation() {
    let bad = |config: IpamConfig| Ipam::new(config).unwrap_err();
    let err = bad(IpamConfig {
        local: Some(vec![PoolSpec::new(net("10.0.0.0/16"), 8)]),
        ..IpamConfig::default()
    });
    assert_eq!(
        err.to_string(),
        "default address pool 10.0.0.0/16 in `local` has size 8: the size must be between 16 \
         (the base's prefix length) and 32"
    );
    let err = bad(IpamConfig {
        global: Some(vec![PoolSpec::new(net("10.0.0.0/8"), 33)]),
        ..IpamConfig::default()
    });
    assert!(matches!(
        err,
        IpamError::PoolSpecSize {
            list: "global",
            size: 33,
            max: 32,
            ..
        }
    ));
    let err = bad(IpamConfig {
        local_v6: vec![PoolSpec::new(net("fd00::/48"), 129)],
        ..IpamConfig::default()
    });
    assert!(
        err.to_string()
            .contains("between 48 (the base's prefix length) and 128")
    );
    let err = bad(IpamConfig {
        local: Some(vec![PoolSpec::new(net("fd00::/48"), 64)]),
        ..IpamConfig::default()
    });
    assert_eq!(
        err.to_string(),
        "default address pool base fd00::/48 in `local` has the wrong family: `local` only takes \
         IPv4 prefixes"
    );
    let err = bad(IpamConfig {
        global_v6: vec![PoolSpec::new(net("10.0.0.0/8"), 24)],
        ..IpamConfig::default()
    });
    assert!(
        err.to_string().contains("only takes IPv6 prefixes"),
        "{err}"
    );
    let err = bad(IpamConfig {
        local_v6: vec![PoolSpec::new(net("::/0"), 128)],
        ..IpamConfig::default()
    });
    assert!(matches!(err, IpamError::PoolSpecTooLarge { .. }));
}

// ---- IPv6 pools ----------------------------------------------------------------

#[test]
fn ipv6_without_subnet_or_config_fails_clearly() {
    let mut ipam = ipam();
    let err = fails_cleanly(&mut ipam, |i| {
        i.request_pool(&predefined(AddressSpace::Local, true, &[]))
    });
    assert_eq!(
        err.to_string(),
        "IPv6 needs a subnet: give one, or configure an IPv6 default address pool for address \
         space LocalDefault"
    );
}

#[test]
fn configured_ipv6_pools_are_used() {
    let config = IpamConfig {
        local_v6: vec![PoolSpec::new(net("fd00::/48"), 64)],
        ..IpamConfig::default()
    };
    let mut ipam = Ipam::new(config).unwrap();
    let req = predefined(AddressSpace::Local, true, &["fd00::/64"]);
    assert_eq!(
        ipam.request_pool(&req).unwrap().pool,
        net("fd00:0:0:1::/64")
    );
    let req = predefined(AddressSpace::Local, true, &[]);
    assert_eq!(
        ipam.request_pool(&req).unwrap().pool,
        net("fd00:0:0:2::/64")
    );
    // IPv4 requests are unaffected by the IPv6 list.
    assert_eq!(next_local(&mut ipam).unwrap().pool, net("172.17.0.0/16"));
}

#[test]
fn huge_ipv6_spec_is_walked_lazily() {
    let config = IpamConfig {
        global_v6: vec![PoolSpec::new(net("fd00::/8"), 64)],
        ..IpamConfig::default()
    };
    let mut ipam = Ipam::new(config).unwrap();
    let t = Instant::now();
    let req = predefined(AddressSpace::Global, true, &["fd00::/9"]);
    assert_eq!(ipam.request_pool(&req).unwrap().pool, net("fd80::/64"));
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
}

#[test]
fn ipv6_64_pool_allocates_fast_and_counts_right() {
    let mut ipam = ipam();
    let l = lease(&mut ipam, "fd00:1::/64");
    assert_eq!(ipam.free_count(&l.id), Some((1u128 << 64) - 1));
    let t = Instant::now();
    for i in 1..=10_000u32 {
        let a = ipam.request_address(&l.id, &dynamic()).unwrap();
        assert_eq!(a.prefix_len(), 64);
        let base: std::net::Ipv6Addr = "fd00:1::".parse().unwrap();
        assert_eq!(
            a.addr(),
            IpAddr::from(std::net::Ipv6Addr::from(u128::from(base) + u128::from(i)))
        );
    }
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(ipam.free_count(&l.id), Some((1u128 << 64) - 1 - 10_000));
    // IPv6 has no broadcast: the last address is allocatable.
    let last = "fd00:1::ffff:ffff:ffff:ffff";
    assert_eq!(
        ipam.request_address(&l.id, &preferred(last)).unwrap(),
        net("fd00:1::ffff:ffff:ffff:ffff/64")
    );
    let err = ipam
        .request_address(&l.id, &preferred("fd00:1::"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "address fd00:1:: is the network address of pool fd00:1::/64: it is reserved and can be \
         neither allocated nor released"
    );
}

#[test]
fn ipv6_48_pool_caps_at_2_pow_64_addresses() {
    let mut ipam = ipam();
    let l = lease(&mut ipam, "fd00:2::/48");
    assert_eq!(ipam.free_count(&l.id), Some((1u128 << 64) - 1));
    assert_eq!(
        ipam.request_address(&l.id, &dynamic()).unwrap(),
        net("fd00:2::1/48")
    );
    ipam.request_address(&l.id, &preferred("fd00:2::ffff:ffff:ffff:ffff"))
        .unwrap();
    let err = fails_cleanly(&mut ipam, |i| {
        i.request_address(&l.id, &preferred("fd00:2:0:1::"))
    });
    assert_eq!(
        err.to_string(),
        "address fd00:2:0:1:: is beyond the allocatable range of pool fd00:2::/48: only the first \
         2^64 addresses, up to fd00:2::ffff:ffff:ffff:ffff, can be allocated"
    );
    // Sub-pools must start inside the first 2^64 addresses.
    let err = fails_cleanly(&mut ipam, |i| {
        i.request_pool(&explicit(
            AddressSpace::Global,
            "fd00:3::/48",
            Some("fd00:3:0:1::/64"),
        ))
    });
    assert_eq!(
        err.to_string(),
        "sub_pool fd00:3:0:1::/64 starts beyond the first 2^64 addresses of pool fd00:3::/48: only \
         those addresses can be allocated, so the sub-pool must start before fd00:3:0:1::"
    );
    let sub = ipam
        .request_pool(&explicit(
            AddressSpace::Global,
            "fd00:3::/48",
            Some("fd00:3::/64"),
        ))
        .unwrap();
    assert_eq!(
        ipam.request_address(&sub.id, &dynamic()).unwrap(),
        net("fd00:3::1/48")
    );
    // A sub-pool larger than the cap is clipped to it.
    let big = ipam
        .request_pool(&explicit(
            AddressSpace::Global,
            "fd00:4::/48",
            Some("fd00:4::/56"),
        ))
        .unwrap();
    assert_eq!(ipam.free_count(&big.id), Some((1u128 << 64) - 1));
}

#[test]
fn ipv6_reserves_only_the_network_address() {
    let mut ipam = ipam();
    let l = lease(&mut ipam, "fd00::/126");
    let got: Vec<IpNet> = (0..3)
        .map(|_| ipam.request_address(&l.id, &dynamic()).unwrap())
        .collect();
    assert_eq!(
        got,
        vec![net("fd00::1/126"), net("fd00::2/126"), net("fd00::3/126")]
    );
    ipam.request_address(&l.id, &dynamic()).unwrap_err();
    let single = lease(&mut ipam, "fd00:9::1/128");
    assert_eq!(ipam.free_count(&single.id), Some(0));
}

// ---- explicit pools and sub-pools ---------------------------------------------

#[test]
fn explicit_pool_is_masked_and_family_checked() {
    let mut ipam = ipam();
    let l = lease(&mut ipam, "10.1.2.3/16");
    assert_eq!(l.pool, net("10.1.0.0/16"));
    assert_eq!(l.id.as_str(), "LocalDefault/10.1.0.0/16");
    let mut req = local("10.9.0.0/16");
    req.v6 = true;
    let err = fails_cleanly(&mut ipam, |i| i.request_pool(&req));
    assert_eq!(
        err.to_string(),
        "pool 10.9.0.0/16 is IPv4 but the request asks for IPv6 (v6 = true): the pool's family \
         must match the request"
    );
    let mut req = local("fd00::/64");
    req.v6 = false;
    let err = fails_cleanly(&mut ipam, |i| i.request_pool(&req));
    assert!(
        err.to_string()
            .starts_with("pool fd00::/64 is IPv6 but the request asks for IPv4")
    );
}

#[test]
fn explicit_pool_ignores_exclude() {
    let mut ipam = ipam();
    let mut req = local("172.17.0.0/16");
    req.exclude = vec![net("172.16.0.0/12")];
    assert_eq!(ipam.request_pool(&req).unwrap().pool, net("172.17.0.0/16"));
}

#[test]
fn explicit_pool_overlap_errors() {
    let mut ipam = ipam();
    lease(&mut ipam, "10.0.0.0/16");
    let err = fails_cleanly(&mut ipam, |i| i.request_pool(&local("10.0.0.0/16")));
    assert_eq!(
        err,
        IpamError::PoolOverlap {
            space: AddressSpace::Local,
            pool: net("10.0.0.0/16"),
            existing: net("10.0.0.0/16"),
        }
    );
    let err = fails_cleanly(&mut ipam, |i| i.request_pool(&local("10.0.0.0/8")));
    assert_eq!(
        err.to_string(),
        "pool 10.0.0.0/8 overlaps pool 10.0.0.0/16, already allocated in address space \
         LocalDefault: pools in one address space must be disjoint (not equal, not inside one \
         another)"
    );
    let err = fails_cleanly(&mut ipam, |i| i.request_pool(&local("10.0.3.0/24")));
    assert!(
        err.to_string()
            .contains("pool 10.0.3.0/24 overlaps pool 10.0.0.0/16")
    );
    // An implicit master (created for a sub-pool) is checked the same way.
    let err = fails_cleanly(&mut ipam, |i| {
        i.request_pool(&explicit(
            AddressSpace::Local,
            "10.0.0.0/12",
            Some("10.0.1.0/24"),
        ))
    });
    assert!(matches!(err, IpamError::PoolOverlap { .. }));
    lease(&mut ipam, "10.1.0.0/16");
}

#[test]
fn sub_pool_needs_pool_and_must_be_inside() {
    let mut ipam = ipam();
    let req = PoolRequest {
        sub_pool: Some(net("10.0.1.0/24")),
        ..PoolRequest::default()
    };
    let err = fails_cleanly(&mut ipam, |i| i.request_pool(&req));
    assert_eq!(
        err.to_string(),
        "sub_pool 10.0.1.0/24 was given without a pool: a sub-pool must name the pool it is \
         carved from"
    );
    for sub in ["10.1.0.0/24", "10.0.0.0/8", "fd00::/64"] {
        let err = fails_cleanly(&mut ipam, |i| {
            i.request_pool(&explicit(AddressSpace::Local, "10.0.0.0/16", Some(sub)))
        });
        assert_eq!(
            err.to_string(),
            format!(
                "sub_pool {sub} is not inside pool 10.0.0.0/16: the sub-pool must be a subnet of \
                 the pool"
            )
        );
    }
}

#[test]
fn sub_pools_share_an_implicit_master_that_auto_releases() {
    let mut ipam = ipam();
    let a = ipam
        .request_pool(&explicit(
            AddressSpace::Local,
            "10.0.0.0/16",
            Some("10.0.1.0/24"),
        ))
        .unwrap();
    assert_eq!(a.id.as_str(), "LocalDefault/10.0.0.0/16/10.0.1.0/24");
    assert_eq!(a.pool, net("10.0.0.0/16"));
    assert_eq!(a.sub_pool, Some(net("10.0.1.0/24")));
    let b = ipam
        .request_pool(&explicit(
            AddressSpace::Local,
            "10.0.0.0/16",
            Some("10.0.2.5/24"),
        ))
        .unwrap();
    assert_eq!(b.sub_pool, Some(net("10.0.2.0/24")));
    let err = fails_cleanly(&mut ipam, |i| {
        i.request_pool(&explicit(
            AddressSpace::Local,
            "10.0.0.0/16",
            Some("10.0.1.0/24"),
        ))
    });
    assert_eq!(
        err.to_string(),
        "sub_pool 10.0.1.0/24 of pool 10.0.0.0/16 is already allocated: each sub-pool can be \
         allocated only once"
    );
    // Both sub-pools draw from the master's one bitmap.
    let x = ipam.request_address(&a.id, &preferred("10.0.2.7")).unwrap();
    assert!(ipam.is_allocated(&b.id, x.addr()));
    assert_eq!(ipam.pool_of(&b.id), Some(net("10.0.0.0/16")));
    // The master id itself is not a lease.
    let master_id = PoolId::new(AddressSpace::Local, net("10.0.0.0/16"), None);
    assert!(ipam.pool_of(&master_id).is_none());
    assert!(matches!(
        ipam.release_pool(&master_id),
        Err(IpamError::PoolNotFound { .. })
    ));
    ipam.release_pool(&a.id).unwrap();
    assert_eq!(ipam.allocated_pools(), vec![net("10.0.0.0/16")]);
    ipam.release_pool(&b.id).unwrap();
    assert!(ipam.allocated_pools().is_empty());
    // The bitmap went with the master.
    let again = lease(&mut ipam, "10.0.0.0/16");
    assert!(!ipam.is_allocated(&again.id, ip("10.0.2.7")));
}

#[test]
fn explicit_master_outlives_released_lease_while_children_remain() {
    let mut ipam = ipam();
    let m = lease(&mut ipam, "10.0.0.0/16");
    let c = ipam
        .request_pool(&explicit(
            AddressSpace::Local,
            "10.0.0.0/16",
            Some("10.0.1.0/24"),
        ))
        .unwrap();
    ipam.release_pool(&m.id).unwrap();
    assert!(ipam.pool_of(&m.id).is_none());
    assert_eq!(ipam.allocated_pools(), vec![net("10.0.0.0/16")]);
    ipam.release_pool(&m.id).unwrap_err();
    ipam.release_pool(&c.id).unwrap();
    assert!(ipam.allocated_pools().is_empty());
}

#[test]
fn master_request_claims_an_implicit_master_so_replay_order_does_not_matter() {
    let mut ipam = ipam();
    let c = ipam
        .request_pool(&explicit(
            AddressSpace::Local,
            "10.0.0.0/16",
            Some("10.0.1.0/24"),
        ))
        .unwrap();
    let m = lease(&mut ipam, "10.0.0.0/16");
    assert!(matches!(
        ipam.request_pool(&local("10.0.0.0/16")),
        Err(IpamError::PoolOverlap { .. })
    ));
    ipam.release_pool(&c.id).unwrap();
    assert_eq!(ipam.pool_of(&m.id), Some(net("10.0.0.0/16")));
    ipam.release_pool(&m.id).unwrap();
    assert!(ipam.allocated_pools().is_empty());
}

#[test]
fn unknown_or_released_ids_are_pool_not_found() {
    let mut ipam = ipam();
    let l = lease(&mut ipam, "10.0.0.0/24");
    ipam.release_pool(&l.id).unwrap();
    let err = fails_cleanly(&mut ipam, |i| i.release_pool(&l.id));
    assert_eq!(
        err.to_string(),
        "pool id LocalDefault/10.0.0.0/24 does not name an allocated pool: use an id returned by \
         request_pool that has not been released"
    );
    assert!(matches!(
        ipam.request_address(&l.id, &dynamic()),
        Err(IpamError::PoolNotFound { .. })
    ));
    ipam.release_address(&l.id, ip("10.0.0.1")).unwrap_err();
    assert_eq!(ipam.free_count(&l.id), None);
    assert_eq!(ipam.pool_of(&l.id), None);
    assert!(!ipam.is_allocated(&l.id, ip("10.0.0.0")));
    // Ids that do not parse, or name the wrong space, or a non-canonical
    // prefix, are not found either.
    let l = lease(&mut ipam, "10.0.0.0/24");
    for bogus in [
        "",
        "LocalDefault",
        "LocalDefault/10.0.0.0",
        "LocalDefault/10.0.0.1/24",
        "GlobalDefault/10.0.0.0/24",
        "Other/10.0.0.0/24",
        "LocalDefault/10.0.0.0/24/",
        "LocalDefault/10.0.0.0/24/10.0.0.0/25/x",
    ] {
        let id = PoolId(bogus.to_string());
        assert!(ipam.pool_of(&id).is_none(), "{bogus}");
        assert!(
            matches!(ipam.release_pool(&id), Err(IpamError::PoolNotFound { .. })),
            "{bogus}"
        );
    }
    assert_eq!(ipam.pool_of(&l.id), Some(net("10.0.0.0/24")));
}

// ---- addresses -------------------------------------------------------------------

#[test]
fn ipv4_reserves_network_and_broadcast() {
    let mut ipam = ipam();
    let l = lease(&mut ipam, "192.0.2.0/24");
    assert_eq!(ipam.free_count(&l.id), Some(254));
    assert_eq!(
        ipam.request_address(&l.id, &dynamic()).unwrap(),
        net("192.0.2.1/24")
    );
    let err = fails_cleanly(&mut ipam, |i| {
        i.request_address(&l.id, &preferred("192.0.2.0"))
    });
    assert_eq!(
        err,
        IpamError::AddressReserved {
            address: ip("192.0.2.0"),
            pool: net("192.0.2.0/24"),
            role: "network"
        }
    );
    let err = fails_cleanly(&mut ipam, |i| {
        i.request_address(&l.id, &preferred("192.0.2.255"))
    });
    assert_eq!(
        err.to_string(),
        "address 192.0.2.255 is the broadcast address of pool 192.0.2.0/24: it is reserved and \
         can be neither allocated nor released"
    );
    // Reserved addresses cannot be released either, and still count as taken.
    assert!(
        fails_cleanly(&mut ipam, |i| i.release_address(&l.id, ip("192.0.2.255")))
            .to_string()
            .contains("broadcast")
    );
    assert!(ipam.is_allocated(&l.id, ip("192.0.2.255")));
}

#[test]
fn slash_31_and_32_have_no_reserved_addresses() {
    let mut ipam = ipam();
    let l31 = lease(&mut ipam, "192.0.2.0/31");
    assert_eq!(ipam.free_count(&l31.id), Some(2));
    assert_eq!(
        ipam.request_address(&l31.id, &dynamic()).unwrap(),
        net("192.0.2.0/31")
    );
    assert_eq!(
        ipam.request_address(&l31.id, &dynamic()).unwrap(),
        net("192.0.2.1/31")
    );
    ipam.request_address(&l31.id, &dynamic()).unwrap_err();
    let l32 = lease(&mut ipam, "192.0.2.9/32");
    assert_eq!(
        ipam.request_address(&l32.id, &preferred("192.0.2.9"))
            .unwrap(),
        net("192.0.2.9/32")
    );
    assert_eq!(ipam.free_count(&l32.id), Some(0));
    let l30 = lease(&mut ipam, "192.0.2.4/30");
    assert_eq!(ipam.free_count(&l30.id), Some(2));
}

#[test]
fn preferred_address_rules() {
    let mut ipam = ipam();
    let l = lease(&mut ipam, "10.0.0.0/16");
    assert_eq!(
        ipam.request_address(&l.id, &preferred("10.0.200.3"))
            .unwrap(),
        net("10.0.200.3/16")
    );
    let err = fails_cleanly(&mut ipam, |i| {
        i.request_address(&l.id, &preferred("10.0.200.3"))
    });
    assert_eq!(
        err.to_string(),
        "address 10.0.200.3 in pool 10.0.0.0/16 is already allocated: choose a free address or \
         omit the preferred address"
    );
    let err = fails_cleanly(&mut ipam, |i| {
        i.request_address(&l.id, &preferred("10.1.0.1"))
    });
    assert_eq!(
        err.to_string(),
        "address 10.1.0.1 is outside pool 10.0.0.0/16: the address must be inside the pool"
    );
    let err = fails_cleanly(&mut ipam, |i| {
        i.request_address(&l.id, &preferred("::ffff:10.0.0.1"))
    });
    assert!(matches!(err, IpamError::AddressOutOfRange { .. }));
    // Dynamic allocation still starts at the bottom.
    assert_eq!(
        ipam.request_address(&l.id, &dynamic()).unwrap(),
        net("10.0.0.1/16")
    );
}

#[test]
fn sub_pool_ranges_dynamic_but_not_preferred_addresses() {
    let mut ipam = ipam();
    let l = ipam
        .request_pool(&explicit(
            AddressSpace::Local,
            "10.0.0.0/16",
            Some("10.0.1.0/30"),
        ))
        .unwrap();
    assert_eq!(ipam.free_count(&l.id), Some(4));
    // The sub-pool's own network address is handed out, as in libnetwork:
    // only the master's network and broadcast addresses are reserved.
    let got: Vec<IpNet> = (0..4)
        .map(|_| ipam.request_address(&l.id, &dynamic()).unwrap())
        .collect();
    assert_eq!(
        got,
        ["10.0.1.0/16", "10.0.1.1/16", "10.0.1.2/16", "10.0.1.3/16"].map(net)
    );
    let err = fails_cleanly(&mut ipam, |i| i.request_address(&l.id, &dynamic()));
    assert_eq!(
        err.to_string(),
        "no available address in pool 10.0.0.0/16 (sub_pool 10.0.1.0/30): every address is \
         allocated; release one or use a larger pool"
    );
    // A preferred address anywhere in the master is accepted (libnetwork quirk).
    assert_eq!(
        ipam.request_address(&l.id, &preferred("10.0.9.9")).unwrap(),
        net("10.0.9.9/16")
    );
    ipam.release_address(&l.id, ip("10.0.9.9")).unwrap();
    assert!(!ipam.is_allocated(&l.id, ip("10.0.9.9")));
    // A sub-pool at the master's start loses the network address.
    let first = ipam
        .request_pool(&explicit(
            AddressSpace::Local,
            "10.0.0.0/16",
            Some("10.0.0.0/24"),
        ))
        .unwrap();
    assert_eq!(ipam.free_count(&first.id), Some(255));
    assert_eq!(
        ipam.request_address(&first.id, &dynamic()).unwrap(),
        net("10.0.0.1/16")
    );
}

#[test]
fn serial_allocation_continues_and_wraps() {
    let mut ipam = ipam();
    let l = lease(&mut ipam, "192.0.2.0/29"); // .1 to .6
    let take =
        |ipam: &mut Ipam, req: AddressRequest| ipam.request_address(&l.id, &req).unwrap().addr();
    assert_eq!(take(&mut ipam, serial()), ip("192.0.2.1"));
    assert_eq!(take(&mut ipam, serial()), ip("192.0.2.2"));
    assert_eq!(take(&mut ipam, serial()), ip("192.0.2.3"));
    ipam.release_address(&l.id, ip("192.0.2.2")).unwrap();
    assert_eq!(
        take(&mut ipam, serial()),
        ip("192.0.2.4"),
        "freed .2 is not reused yet"
    );
    // Non-serial takes the lowest free one, and moves the cursor like
    // libnetwork does.
    assert_eq!(take(&mut ipam, dynamic()), ip("192.0.2.2"));
    assert_eq!(take(&mut ipam, serial()), ip("192.0.2.5"));
    // Preferred allocations do not move the cursor.
    assert_eq!(take(&mut ipam, preferred("192.0.2.6")), ip("192.0.2.6"));
    ipam.release_address(&l.id, ip("192.0.2.6")).unwrap();
    assert_eq!(take(&mut ipam, serial()), ip("192.0.2.6"));
    ipam.release_address(&l.id, ip("192.0.2.1")).unwrap();
    ipam.release_address(&l.id, ip("192.0.2.3")).unwrap();
    assert_eq!(
        take(&mut ipam, serial()),
        ip("192.0.2.1"),
        "wraps to the start"
    );
    assert_eq!(take(&mut ipam, serial()), ip("192.0.2.3"));
    ipam.request_address(&l.id, &serial()).unwrap_err();
}

#[test]
fn exhaustion_and_reuse() {
    let mut ipam = ipam();
    let l = lease(&mut ipam, "198.51.100.0/28");
    for i in 1..=14 {
        assert_eq!(
            ipam.request_address(&l.id, &dynamic()).unwrap().addr(),
            ip(&format!("198.51.100.{i}"))
        );
    }
    assert_eq!(ipam.free_count(&l.id), Some(0));
    let err = fails_cleanly(&mut ipam, |i| i.request_address(&l.id, &dynamic()));
    assert_eq!(
        err,
        IpamError::NoAvailableAddress {
            pool: net("198.51.100.0/28"),
            range: None
        }
    );
    assert!(
        err.to_string()
            .starts_with("no available address in pool 198.51.100.0/28: ")
    );
    ipam.release_address(&l.id, ip("198.51.100.7")).unwrap();
    assert_eq!(
        ipam.request_address(&l.id, &dynamic()).unwrap().addr(),
        ip("198.51.100.7")
    );
}

#[test]
fn releasing_a_free_address_changes_nothing() {
    let mut ipam = ipam();
    let l = lease(&mut ipam, "192.0.2.0/24");
    ipam.request_address(&l.id, &dynamic()).unwrap();
    let before = format!("{ipam:?}");
    ipam.release_address(&l.id, ip("192.0.2.77")).unwrap();
    ipam.release_address(&l.id, ip("192.0.2.77")).unwrap();
    assert_eq!(before, format!("{ipam:?}"));
    assert_eq!(ipam.free_count(&l.id), Some(253));
    ipam.release_address(&l.id, ip("192.0.2.1")).unwrap();
    ipam.release_address(&l.id, ip("192.0.2.1")).unwrap();
    assert_eq!(ipam.free_count(&l.id), Some(254));
    let err = fails_cleanly(&mut ipam, |i| i.release_address(&l.id, ip("192.0.3.1")));
    assert!(matches!(err, IpamError::AddressOutOfRange { .. }));
    let err = fails_cleanly(&mut ipam, |i| i.release_address(&l.id, ip("fd00::1")));
    assert!(
        err.to_string()
            .contains("fd00::1 is outside pool 192.0.2.0/24")
    );
}

#[test]
fn query_helpers() {
    let mut ipam = ipam();
    let a = lease(&mut ipam, "10.2.0.0/16");
    let b = lease(&mut ipam, "10.1.0.0/16");
    assert_eq!(
        ipam.allocated_pools(),
        vec![net("10.1.0.0/16"), net("10.2.0.0/16")]
    );
    assert_eq!(ipam.pool_of(&a.id), Some(net("10.2.0.0/16")));
    let x = ipam.request_address(&b.id, &dynamic()).unwrap();
    assert!(ipam.is_allocated(&b.id, x.addr()));
    assert!(!ipam.is_allocated(&a.id, x.addr()));
    assert!(!ipam.is_allocated(&b.id, ip("10.1.0.2")));
    assert!(
        ipam.is_allocated(&b.id, ip("10.1.0.0")),
        "reserved counts as taken"
    );
    assert_eq!(ipam.free_count(&b.id), Some(65_533));
}
