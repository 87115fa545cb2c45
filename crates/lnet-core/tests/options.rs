//! Network and endpoint options, checked where a user would check them: in the kernel.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use common::*;
use lnet_core::drivers::bridge::{OPT_IFACE_PREFIX, OPT_MTU, OPT_NAME};
use lnet_core::{EndpointOptions, ErrorKind, IpamPoolConfig, JoinOptions, NetworkOptions};
use lnet_kernel::IpFamily;

fn ipam(cfg: IpamPoolConfig) -> NetworkOptions {
    let mut o = NetworkOptions::default();
    o.ipam.v4.push(cfg);
    o
}

#[test]
fn bridge_name_mtu_and_interface_prefix_reach_the_kernel() {
    let Some(env) = common::env("bridge_name_mtu_and_interface_prefix_reach_the_kernel") else {
        return;
    };
    let ctrl = env.ctrl();
    let mut o = driver_opt(OPT_NAME, "lnet-test0");
    o.options.insert(OPT_MTU.into(), "1400".into());
    o.options.insert(OPT_IFACE_PREFIX.into(), "net".into());
    let custom = ctrl.new_network("bridge", "custom", o).unwrap();
    let plain = bridge(ctrl, "plain");
    let sb = sandbox(ctrl, "c1");
    let ec = attach(&custom, "ec", &sb);
    let ep = attach(&plain, "ep", &sb);

    let mut host = host_nl();
    let br = must_link(&mut host, "lnet-test0");
    assert!(br.is_kind("bridge") && br.up);
    assert_eq!(br.mtu, 1400);
    let veth = must_link(&mut host, &host_ifname(&ec));
    assert_eq!((veth.mtu, veth.master), (1400, Some(br.index)));
    let mut inside = sandbox_nl(&sb);
    assert_eq!(container_ifname(&ec), "net0");
    assert_eq!(must_link(&mut inside, "net0").mtu, 1400);
    assert!(addrs(&mut inside, "net0").contains(&ec.info().unwrap().addr_v4.unwrap()));
    // The other network keeps Docker's defaults: its own prefix and the kernel's MTU.
    assert_eq!(container_ifname(&ep), "eth0");
    assert_eq!(must_link(&mut inside, "eth0").mtu, 1500);
    assert_eq!(
        links_in(&sb.key().unwrap()),
        BTreeSet::from(["net0".to_string(), "eth0".to_string()])
    );
    assert_eq!(
        ec.driver_info().unwrap()["com.docker.network.bridge.name"],
        "lnet-test0"
    );
}

#[test]
fn user_subnet_with_ip_range_and_preferred_addresses() {
    let Some(env) = common::env("user_subnet_with_ip_range_and_preferred_addresses") else {
        return;
    };
    let ctrl = env.ctrl();
    let n = ctrl
        .new_network(
            "bridge",
            "ranged",
            ipam(IpamPoolConfig {
                subnet: Some(cidr("10.10.0.0/16")),
                ip_range: Some(cidr("10.10.5.0/24")),
                ..Default::default()
            }),
        )
        .unwrap();
    // The gateway is the first address of the subnet, not of the range.
    let (pool, gw) = pool_and_gateway(&n);
    assert_eq!((pool, gw), (cidr("10.10.0.0/16"), cidr("10.10.0.1/16")));
    assert!(addrs(&mut host_nl(), &bridge_name(&n)).contains(&gw));
    let range = cidr("10.10.5.0/24");
    let eps: Vec<_> = (0..3).map(|i| endpoint(&n, &format!("e{i}"))).collect();
    for e in &eps {
        let a = e.info().unwrap().addr_v4.unwrap();
        assert!(range.contains(&a.addr()), "{a} in {range}");
        assert_eq!(a.prefix_len(), 16, "addresses carry the subnet's prefix");
    }
    let distinct: BTreeSet<IpAddr> = eps.iter().map(ip4).collect();
    assert_eq!(distinct.len(), 3);

    // A preferred address is taken exactly, and shows up in the sandbox.
    let pref = n
        .create_endpoint(
            "pref",
            EndpointOptions {
                ipv4: Some(ip("10.10.5.77")),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(ip4(&pref), ip("10.10.5.77"));
    let sb = sandbox(ctrl, "c1");
    pref.join(&sb, JoinOptions::default()).unwrap();
    let mut inside = sandbox_nl(&sb);
    assert!(addrs(&mut inside, "eth0").contains(&cidr("10.10.5.77/16")));
    assert_eq!(default_gw(&mut inside, IpFamily::V4), Some(gw.addr()));
    assert_eq!(
        must_link(&mut inside, "eth0")
            .mac
            .map(|m| lnet_core::format_mac(&m)),
        Some("02:42:0a:0a:05:4d".to_string()),
        "the MAC derives from the address"
    );
}

#[test]
fn explicit_gateway_is_on_the_bridge_and_is_the_default_route() {
    let Some(env) = common::env("explicit_gateway_is_on_the_bridge_and_is_the_default_route")
    else {
        return;
    };
    let ctrl = env.ctrl();
    let n = ctrl
        .new_network(
            "bridge",
            "gw",
            ipam(IpamPoolConfig {
                subnet: Some(cidr("10.20.0.0/24")),
                gateway: Some(ip("10.20.0.254")),
                ..Default::default()
            }),
        )
        .unwrap();
    assert_eq!(pool_and_gateway(&n).1, cidr("10.20.0.254/24"));
    let on_bridge = addrs(&mut host_nl(), &bridge_name(&n));
    assert!(on_bridge.contains(&cidr("10.20.0.254/24")), "{on_bridge:?}");
    assert!(!on_bridge.contains(&cidr("10.20.0.1/24")), "{on_bridge:?}");
    let sb = sandbox(ctrl, "c1");
    let e = attach(&n, "e", &sb);
    // .1 is free now, and endpoints take the lowest free address.
    assert_eq!(ip4(&e), ip("10.20.0.1"));
    assert_eq!(
        default_gw(&mut sandbox_nl(&sb), IpFamily::V4),
        Some(ip("10.20.0.254"))
    );
}

#[test]
fn aux_addresses_are_never_handed_to_endpoints() {
    let Some(env) = common::env("aux_addresses_are_never_handed_to_endpoints") else {
        return;
    };
    let ctrl = env.ctrl();
    let n = ctrl
        .new_network(
            "bridge",
            "aux",
            ipam(IpamPoolConfig {
                subnet: Some(cidr("10.30.0.0/29")),
                aux_addresses: [("a".into(), ip("10.30.0.2")), ("b".into(), ip("10.30.0.5"))]
                    .into(),
                ..Default::default()
            }),
        )
        .unwrap();
    let aux = &n.info().unwrap().pools[0].aux_addresses;
    assert_eq!(aux.len(), 2);
    // A /29 has six usable addresses: the gateway, two aux, and three for endpoints.
    let got: BTreeSet<IpAddr> = (0..3)
        .map(|i| ip4(&endpoint(&n, &format!("e{i}"))))
        .collect();
    assert_eq!(
        got,
        BTreeSet::from([ip("10.30.0.3"), ip("10.30.0.4"), ip("10.30.0.6")])
    );
    let err = n
        .create_endpoint("one-too-many", EndpointOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("10.30.0.0/29"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    // Asking for an aux address by name is refused too.
    let err = n
        .create_endpoint(
            "wants-aux",
            EndpointOptions {
                ipv4: Some(ip("10.30.0.5")),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("10.30.0.5"), "{err}");
}

#[test]
fn user_mac_address_is_set_on_the_interface() {
    let Some(env) = common::env("user_mac_address_is_set_on_the_interface") else {
        return;
    };
    let ctrl = env.ctrl();
    let n = bridge(ctrl, "n");
    let e = n
        .create_endpoint(
            "e",
            EndpointOptions {
                mac: Some("02:00:5E:10:00:01".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let sb = sandbox(ctrl, "c1");
    e.join(&sb, JoinOptions::default()).unwrap();
    assert_eq!(e.info().unwrap().mac.as_deref(), Some("02:00:5e:10:00:01"));
    assert_eq!(
        must_link(&mut sandbox_nl(&sb), "eth0")
            .mac
            .map(|m| lnet_core::format_mac(&m)),
        Some("02:00:5e:10:00:01".to_string())
    );
    assert_eq!(
        e.driver_info().unwrap()["com.docker.network.endpoint.macaddress"],
        "02:00:5e:10:00:01"
    );
}

#[test]
fn ipv6_dual_stack_gives_usable_v6_addresses_and_routes() {
    let Some(env) = common::env("ipv6_dual_stack_gives_usable_v6_addresses_and_routes") else {
        return;
    };
    let ctrl = env.ctrl();
    let mut o = NetworkOptions {
        enable_ipv6: true,
        ..Default::default()
    };
    o.ipam.v6.push(IpamPoolConfig {
        subnet: Some(cidr("fd00:1::/64")),
        ..Default::default()
    });
    let n = ctrl.new_network("bridge", "dual", o).unwrap();
    let rec = n.info().unwrap();
    assert!(rec.enable_ipv6);
    let v6pool = rec.pools.iter().find(|p| p.is_v6()).expect("a v6 pool");
    assert_eq!(v6pool.gateway, Some(cidr("fd00:1::1/64")));
    let on_bridge = addrs(&mut host_nl(), &bridge_name(&n));
    for want in ["fe80::1/64", "fd00:1::1/64"] {
        assert!(on_bridge.contains(&cidr(want)), "{want} on {on_bridge:?}");
    }
    assert!(
        on_bridge.iter().any(|a| a.addr().is_ipv4()),
        "still dual stack: {on_bridge:?}"
    );

    let (s1, s2) = (sandbox(ctrl, "c1"), sandbox(ctrl, "c2"));
    let (e1, e2) = (attach(&n, "e1", &s1), attach(&n, "e2", &s2));
    let a1 = e1.info().unwrap().addr_v6.expect("a v6 address");
    assert_eq!(a1, cidr("fd00:1::2/64"));
    let mut inside = sandbox_nl(&s1);
    let eth0 = must_link(&mut inside, "eth0");
    let infos = inside.address_infos(Some(eth0.index)).unwrap();
    let info = infos
        .iter()
        .find(|a| a.net == a1)
        .expect("the v6 address is on eth0");
    assert!(!info.is_tentative() && !info.is_dad_failed(), "{info:?}");
    assert_eq!(default_gw(&mut inside, IpFamily::V6), Some(ip("fd00:1::1")));
    assert!(default_gw(&mut inside, IpFamily::V4).is_some());
    let hosts = read(&s1.hosts_path().unwrap());
    assert!(hosts.contains("fd00:1::2\tc1\n"), "{hosts}");

    // The host ends are bridge ports only: no IPv6 of their own (no link-local address,
    // no routes), which the containers' IPv6 does not need.
    for e in [&e1, &e2] {
        let veth = host_ifname(e);
        let conf = ["net", "ipv6", "conf", veth.as_str(), "disable_ipv6"];
        assert_eq!(lnet_kernel::sysctl::get_path(&conf).unwrap(), "1", "{veth}");
        let v6: Vec<_> = addrs(&mut host_nl(), &veth)
            .into_iter()
            .filter(|a| a.addr().is_ipv6())
            .collect();
        assert!(v6.is_empty(), "{veth} has {v6:?}");
    }

    // Real packets over IPv6.
    let a2 = e2.info().unwrap().addr_v6.unwrap().addr();
    assert_traffic(&s1, a1.addr(), &s2, a2, 7300);
}

#[test]
fn sandbox_dns_settings_and_extra_hosts_shape_its_files() {
    let Some(mut env) = common::env("sandbox_dns_settings_and_extra_hosts_shape_its_files") else {
        return;
    };
    let ctrl = env.ctrl();
    let sb = ctrl
        .new_sandbox(
            "web",
            lnet_core::SandboxOptions {
                hostname: "web".into(),
                domainname: "corp.example".into(),
                dns: vec![ip("10.0.0.53")],
                dns_options: vec!["ndots:2".into()],
                extra_hosts: vec![("db".into(), ip("10.9.9.9"))],
                ..Default::default()
            },
        )
        .unwrap();
    // User servers and options win; the search list still comes from the host.
    let want_resolv = "search example.org\nnameserver 10.0.0.53\noptions ndots:2\n";
    assert_eq!(read(&sb.resolv_conf_path().unwrap()), want_resolv);
    let n = bridge_on(ctrl, "n", "10.31.0.0/24");
    attach(&n, "e", &sb);
    let want_hosts_tail = "10.9.9.9\tdb\n10.31.0.2\tweb.corp.example web\n";
    assert!(read(&sb.hosts_path().unwrap()).ends_with(want_hosts_tail));
    let hosts_path = sb.hosts_path().unwrap();
    drop((sb, n));
    // The files are regenerated from the records at start: damage does not survive.
    std::fs::write(&hosts_path, "garbage\n").unwrap();
    env.restart();
    let sb = env.ctrl().sandbox("web").unwrap();
    assert!(read(&sb.hosts_path().unwrap()).ends_with(want_hosts_tail));
    assert_eq!(read(&sb.resolv_conf_path().unwrap()), want_resolv);
}

#[test]
fn network_flags_given_as_driver_options_take_effect() {
    let Some(env) = common::env("network_flags_given_as_driver_options_take_effect") else {
        return;
    };
    let ctrl = env.ctrl();
    // Every spelling the bridge driver accepts as "true" must also switch the flag on.
    for (i, yes) in ["true", "1", "True", "TRUE", "t", "yes"].iter().enumerate() {
        let mut o = driver_opt("com.docker.network.enable_ipv6", yes);
        o.options
            .insert("com.docker.network.internal".into(), yes.to_string());
        o.ipam.v6.push(IpamPoolConfig {
            subnet: Some(cidr(&format!("fd00:{}::/64", i + 10))),
            ..Default::default()
        });
        let n = ctrl
            .new_network("bridge", &format!("flags-{i}"), o)
            .unwrap_or_else(|e| panic!("{yes}: {e}"));
        let rec = n.info().unwrap();
        assert!(rec.enable_ipv6 && rec.internal, "{yes}: {rec:?}");
        // Internal: the sandbox gets no default route through it.
        let sb = sandbox(ctrl, &format!("c{i}"));
        let e = attach(&n, "e", &sb);
        assert!(e.info().unwrap().addr_v6.is_some());
        let mut nl = sandbox_nl(&sb);
        assert!(!has_default_route(&mut nl, IpFamily::V4));
        assert!(!has_default_route(&mut nl, IpFamily::V6));
    }
}
