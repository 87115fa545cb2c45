//! Bad input is refused with an error that names the field and what is allowed, and changes
//! nothing: records, IPAM pools, host links, namespace mounts, sandbox files and interfaces
//! are compared before and after every refused request.

mod common;

use std::collections::BTreeMap;

use common::*;
use lnet_core::drivers::bridge::{OPT_MTU, OPT_NAME};
use lnet_core::{
    EndpointOptions, ErrorKind, IpamPoolConfig, JoinOptions, NetworkOptions, SandboxOptions,
};
use lnet_kernel::{BridgeOptions, VethSpec};

use ErrorKind::{Conflict, Forbidden, InvalidInput};

fn pool(subnet: &str, f: impl FnOnce(&mut IpamPoolConfig)) -> NetworkOptions {
    let mut c = IpamPoolConfig {
        subnet: Some(subnet.parse().unwrap()),
        ..Default::default()
    };
    f(&mut c);
    let mut o = NetworkOptions::default();
    o.ipam.v4.push(c);
    o
}

fn with_ip(ip4: &str) -> EndpointOptions {
    EndpointOptions {
        ipv4: Some(ip(ip4)),
        ..Default::default()
    }
}

fn with_mac(mac: &str) -> EndpointOptions {
    EndpointOptions {
        mac: Some(mac.into()),
        ..Default::default()
    }
}

#[test]
fn bad_network_requests_change_nothing() {
    let Some(env) = common::env("bad_network_requests_change_nothing") else {
        return;
    };
    let mut taken = pool("10.50.0.0/16", |_| {});
    taken.options.insert(OPT_NAME.into(), "lnet-taken".into());
    env.ctrl().new_network("bridge", "taken", taken).unwrap();
    // An interface lnet did not make, with the name a user then asks for.
    host_nl()
        .ensure_bridge("lnet-mine", BridgeOptions::default())
        .unwrap();
    let create = |name: &'static str, driver: &'static str, o: NetworkOptions| {
        move |c: &lnet_core::Controller| c.new_network(driver, name, o)
    };
    let bridge_opts = |k: &str, v: &str| driver_opt(k, v);

    for blank in ["", "   ", "\t"] {
        assert_refused(&env, InvalidInput, &["name", "empty"], |c| {
            c.new_network("bridge", blank, NetworkOptions::default())
        });
    }
    assert_refused(
        &env,
        Conflict,
        &["taken", "already exists"],
        create("taken", "bridge", NetworkOptions::default()),
    );
    assert_refused(
        &env,
        InvalidInput,
        &["driver", "macvlan9", "bridge, host, ipvlan, macvlan, null"],
        create("n", "macvlan9", NetworkOptions::default()),
    );
    for overlapping in ["10.50.1.0/24", "10.0.0.0/8", "10.50.0.0/16"] {
        assert_refused(
            &env,
            Forbidden,
            &[overlapping, "10.50.0.0/16", "overlaps"],
            create("n", "bridge", pool(overlapping, |_| {})),
        );
    }
    assert_refused(
        &env,
        InvalidInput,
        &[
            "IPAM.Config.Gateway",
            "10.61.0.1",
            "inside subnet 10.60.0.0/24",
        ],
        create(
            "n",
            "bridge",
            pool("10.60.0.0/24", |c| c.gateway = Some(ip("10.61.0.1"))),
        ),
    );
    assert_refused(
        &env,
        InvalidInput,
        &[
            "IPAM.Config.IPRange",
            "10.60.1.0/25",
            "inside subnet 10.60.0.0/24",
        ],
        create(
            "n",
            "bridge",
            pool("10.60.0.0/24", |c| {
                c.ip_range = Some("10.60.1.0/25".parse().unwrap())
            }),
        ),
    );
    assert_refused(
        &env,
        InvalidInput,
        &["IPAM.Config.IPRange", "10.60.0.0/23"],
        create(
            "n",
            "bridge",
            pool("10.60.0.0/24", |c| {
                c.ip_range = Some("10.60.0.0/23".parse().unwrap())
            }),
        ),
    );
    assert_refused(
        &env,
        InvalidInput,
        &[
            "IPAM.Config.AuxiliaryAddresses[router]",
            "10.99.0.1",
            "inside subnet 10.60.0.0/24",
        ],
        create(
            "n",
            "bridge",
            pool("10.60.0.0/24", |c| {
                c.aux_addresses = BTreeMap::from([("router".into(), ip("10.99.0.1"))])
            }),
        ),
    );
    for mtu in ["67", "65536", "0", "-1", "1500x"] {
        assert_refused(
            &env,
            InvalidInput,
            &[OPT_MTU, mtu, "68 to 65535"],
            create("n", "bridge", bridge_opts(OPT_MTU, mtu)),
        );
    }
    assert_refused(
        &env,
        InvalidInput,
        &[OPT_NAME, "lnet-0123456789a", "1 to 15"],
        create("n", "bridge", bridge_opts(OPT_NAME, "lnet-0123456789a")),
    );
    assert_refused(
        &env,
        InvalidInput,
        &[
            OPT_NAME,
            "lnet-taken",
            "network taken",
            "choose another name",
        ],
        create("n", "bridge", bridge_opts(OPT_NAME, "lnet-taken")),
    );
    assert_refused(
        &env,
        InvalidInput,
        &[
            OPT_NAME,
            "lnet-mine",
            "already exists",
            "choose another name",
        ],
        create("n", "bridge", bridge_opts(OPT_NAME, "lnet-mine")),
    );
    assert_refused(
        &env,
        InvalidInput,
        &["IPAM.Config.Subnet (IPv6, EnableIPv6)", "IPv6", "subnet"],
        create(
            "n",
            "bridge",
            NetworkOptions {
                enable_ipv6: true,
                ..Default::default()
            },
        ),
    );
    let mut v6_without_flag = NetworkOptions::default();
    v6_without_flag.ipam.v6.push(IpamPoolConfig {
        subnet: Some("fd00:9::/64".parse().unwrap()),
        ..Default::default()
    });
    assert_refused(
        &env,
        InvalidInput,
        &["IPAM.Config", "fd00:9::/64", "EnableIPv6"],
        create("n", "bridge", v6_without_flag),
    );
    assert_refused(
        &env,
        InvalidInput,
        &["Options", "com.docker.network.bridge.bogus", OPT_MTU],
        create(
            "n",
            "bridge",
            bridge_opts("com.docker.network.bridge.bogus", "1"),
        ),
    );
    assert_refused(
        &env,
        InvalidInput,
        &[
            "com.docker.network.bridge.enable_icc",
            "maybe",
            "true or false",
        ],
        create(
            "n",
            "bridge",
            bridge_opts("com.docker.network.bridge.enable_icc", "maybe"),
        ),
    );
    for flag in [
        "com.docker.network.enable_ipv6",
        "com.docker.network.internal",
    ] {
        assert_refused(
            &env,
            InvalidInput,
            &[flag, "maybe", "true or false"],
            create("n", "bridge", bridge_opts(flag, "maybe")),
        );
    }
    for driver in ["null", "host"] {
        assert_refused(
            &env,
            InvalidInput,
            &[
                "Options",
                OPT_MTU,
                &format!("the {driver} driver takes no options"),
            ],
            create("n", driver, bridge_opts(OPT_MTU, "1400")),
        );
        assert_refused(
            &env,
            InvalidInput,
            &["IPAM.Config", "takes no subnets"],
            create("n", driver, pool("10.90.0.0/24", |_| {})),
        );
    }
    let mut bad_ipam = NetworkOptions::default();
    bad_ipam.ipam.driver = "dhcp".into();
    assert_refused(
        &env,
        InvalidInput,
        &["IPAM.Driver", "dhcp", "default, null"],
        create("n", "bridge", bad_ipam),
    );
    // And the refused names are all still free.
    bridge_on(env.ctrl(), "n", "10.60.0.0/24");
}

#[test]
fn bad_endpoint_requests_change_nothing() {
    let Some(env) = common::env("bad_endpoint_requests_change_nothing") else {
        return;
    };
    let n = bridge_on(env.ctrl(), "n", "10.70.0.0/24");
    let e1 = endpoint(&n, "e1");
    assert_eq!(ip4(&e1), ip("10.70.0.2"));
    let tiny = bridge_on(env.ctrl(), "tiny", "10.80.0.0/30");
    let only = endpoint(&tiny, "only");
    assert_eq!(ip4(&only), ip("10.80.0.2"));
    let create = |net: &lnet_core::Network, name: &'static str, o: EndpointOptions| {
        let net = net.clone();
        move |_: &lnet_core::Controller| net.create_endpoint(name, o)
    };

    for blank in ["", " ", "\t\n"] {
        assert_refused(&env, InvalidInput, &["name", "empty"], {
            let n = n.clone();
            move |_| n.create_endpoint(blank, EndpointOptions::default())
        });
    }
    // Forbidden, as libnetwork answers a taken endpoint name (403).
    assert_refused(
        &env,
        Forbidden,
        &["e1", "already exists", "in network n"],
        create(&n, "e1", EndpointOptions::default()),
    );
    for taken in ["10.70.0.2", "10.70.0.1"] {
        assert_refused(
            &env,
            Forbidden,
            &["IPv4Address", taken, "already allocated"],
            create(&n, "e2", with_ip(taken)),
        );
    }
    assert_refused(
        &env,
        InvalidInput,
        &["IPv4Address", "10.71.0.5", "10.70.0.0/24"],
        create(&n, "e2", with_ip("10.71.0.5")),
    );
    assert_refused(
        &env,
        InvalidInput,
        &["IPv6Address", "fd00::5", "no IPv6 subnet"],
        create(
            &n,
            "e2",
            EndpointOptions {
                ipv6: Some(ip("fd00::5")),
                ..Default::default()
            },
        ),
    );
    for mac in ["02:42:zz:00:00:01", "01:00:5e:00:00:01", "02:42:0a", ""] {
        assert_refused(
            &env,
            InvalidInput,
            &["MacAddress", "six hex bytes"],
            create(&n, "e2", with_mac(mac)),
        );
    }
    // The pool is exhausted: the gateway and one endpoint fill a /30.
    let err = assert_refused(
        &env,
        Forbidden,
        &["10.80.0.0/30", "no available address"],
        create(&tiny, "second", EndpointOptions::default()),
    );
    assert!(!err.to_string().is_empty());
    // Nothing was leaked by the refusals: the next addresses are the expected ones.
    assert_eq!(ip4(&endpoint(&n, "e2")), ip("10.70.0.3"));
    only.delete().unwrap();
    assert_eq!(ip4(&endpoint(&tiny, "again")), ip("10.80.0.2"));
}

#[test]
fn conflicting_lifecycle_requests_change_nothing() {
    let Some(env) = common::env("conflicting_lifecycle_requests_change_nothing") else {
        return;
    };
    let ctrl = env.ctrl();
    let n = bridge_on(ctrl, "n", "10.71.0.0/24");
    let (s1, s2) = (sandbox(ctrl, "s1"), sandbox(ctrl, "s2"));
    let e1 = attach(&n, "e1", &s1);
    let e2 = endpoint(&n, "e2");

    assert_refused(
        &env,
        Forbidden,
        &["network n", "e1", "e2", "delete them first"],
        {
            let n = n.clone();
            move |_| n.delete()
        },
    );
    assert_refused(
        &env,
        Forbidden,
        &["e1", "joined to sandbox s1", "leave it"],
        {
            let e1 = e1.clone();
            move |_| e1.delete()
        },
    );
    for target in [&s1, &s2] {
        assert_refused(&env, Forbidden, &["e1", "already joined", "s1"], |_| {
            e1.join(target, JoinOptions::default())
        });
    }
    assert_refused(
        &env,
        Forbidden,
        &["s1", "already connected to network n", "e1"],
        |_| e2.join(&s1, JoinOptions::default()),
    );
    assert_refused(&env, Forbidden, &["e2", "not joined"], |_| e2.leave(&s1));
    assert_refused(
        &env,
        Forbidden,
        &["e1", "joined to sandbox s1, not to s2"],
        |_| e1.leave(&s2),
    );
    assert_refused(&env, Conflict, &["s1", "already exists"], |c| {
        c.new_sandbox("s1", SandboxOptions::default())
    });
    // The same requests in the right order work.
    e1.leave(&s1).unwrap();
    e2.join(&s1, JoinOptions::default()).unwrap();
    e1.join(&s2, JoinOptions::default()).unwrap();
}

#[test]
fn bad_sandbox_requests_change_nothing() {
    let Some(env) = common::env("bad_sandbox_requests_change_nothing") else {
        return;
    };
    sandbox(env.ctrl(), "existing");
    let create = |container: &'static str, o: SandboxOptions| {
        move |c: &lnet_core::Controller| c.new_sandbox(container, o)
    };
    for blank in ["", "  "] {
        assert_refused(
            &env,
            InvalidInput,
            &["container", "empty"],
            create(blank, SandboxOptions::default()),
        );
    }
    assert_refused(
        &env,
        InvalidInput,
        &["container", "'/'"],
        create("a/b", SandboxOptions::default()),
    );
    let cases: Vec<(&[&str], SandboxOptions)> = vec![
        (
            &["hostname", "my host", "letters, digits and '-'"],
            SandboxOptions {
                hostname: "my host".into(),
                ..Default::default()
            },
        ),
        (
            &["domainname", "-bad.example", "letters, digits and '-'"],
            SandboxOptions {
                domainname: "-bad.example".into(),
                ..Default::default()
            },
        ),
        (
            &["dns-option", "ndots:x", "ndots:N"],
            SandboxOptions {
                dns_options: vec!["ndots:x".into()],
                ..Default::default()
            },
        ),
        (
            &["add-host", "two words", "without whitespace"],
            SandboxOptions {
                extra_hosts: vec![("two words".into(), ip("10.0.0.1"))],
                ..Default::default()
            },
        ),
        (
            &["netns", "host's namespace"],
            SandboxOptions {
                host_mode: true,
                netns_path: Some("/proc/self/ns/net".into()),
                ..Default::default()
            },
        ),
        (
            &["netns", "not a network namespace"],
            SandboxOptions {
                netns_path: Some(env.root().join("no-such-netns")),
                ..Default::default()
            },
        ),
    ];
    for (needles, o) in cases {
        assert_refused(&env, InvalidInput, needles, create("c1", o));
    }
    sandbox(env.ctrl(), "c1");
}

#[test]
fn a_join_the_kernel_refuses_is_undone_completely() {
    let Some(env) = common::env("a_join_the_kernel_refuses_is_undone_completely") else {
        return;
    };
    let ctrl = env.ctrl();
    let n = bridge_on(ctrl, "n", "10.72.0.0/24");
    let m = bridge_on(ctrl, "m", "10.73.0.0/24");
    let s = sandbox(ctrl, "s");
    // Something else already put an eth1 into the sandbox's namespace.
    let em = attach(&m, "em", &s);
    sandbox_nl(&s)
        .ensure_bridge("eth1", BridgeOptions::default())
        .unwrap();
    let e = endpoint(&n, "e");
    let before = env.snapshot();
    let err = e.join(&s, JoinOptions { priority: 10 }).unwrap_err();
    assert!(
        err.to_string().contains("eth1") && err.to_string().contains("exists"),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Internal);
    // The join was journaled, so revisions moved; nothing else may have.
    assert_eq!(
        env.snapshot().without_revisions(),
        before.without_revisions()
    );
    // The interface that was there is untouched, and the sandbox still routes through em.
    assert!(must_link(&mut sandbox_nl(&s), "eth1").is_kind("bridge"));
    assert_eq!(
        default_gw(&mut sandbox_nl(&s), lnet_kernel::IpFamily::V4),
        Some(ip("10.73.0.1"))
    );
    assert!(e.info().unwrap().join.is_none());
    // Once the name is free, the same join works.
    assert!(sandbox_nl(&s).delete_link("eth1").unwrap());
    e.join(&s, JoinOptions { priority: 10 }).unwrap();
    assert_eq!(container_ifname(&e), "eth1");
    assert_eq!(
        default_gw(&mut sandbox_nl(&s), lnet_kernel::IpFamily::V4),
        Some(ip("10.72.0.1"))
    );
    assert!(read(&s.hosts_path().unwrap()).ends_with("10.72.0.2\ts\n"));
    drop(em);
}

#[test]
fn a_join_onto_a_bridge_removed_by_hand_fails_cleanly_until_a_restart_repairs_it() {
    let Some(mut env) = common::env(
        "a_join_onto_a_bridge_removed_by_hand_fails_cleanly_until_a_restart_repairs_it",
    ) else {
        return;
    };
    {
        let ctrl = env.ctrl();
        let n = bridge_on(ctrl, "n", "10.74.0.0/24");
        let s = sandbox(ctrl, "s");
        // A first join primes whatever the driver caches about the bridge.
        attach(&n, "first", &sandbox(ctrl, "other"));
        assert!(host_nl().delete_link(&bridge_name(&n)).unwrap());
        let e = endpoint(&n, "e");
        let before = env.snapshot();
        let err = e.join(&s, JoinOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&bridge_name(&n)) && msg.contains("restart"),
            "{msg}"
        );
        assert_eq!(
            env.snapshot().without_revisions(),
            before.without_revisions()
        );
    }
    env.restart();
    assert!(env.ctrl().recovery_report().errors.is_empty());
    {
        let ctrl = env.ctrl();
        let (n, s) = (ctrl.network("n").unwrap(), ctrl.sandbox("s").unwrap());
        let e = n.endpoint_by_name("e").unwrap();
        e.join(&s, JoinOptions::default()).unwrap();
        let first = n.endpoint_by_name("first").unwrap();
        assert_traffic(
            &s,
            ip4(&e),
            &ctrl.sandbox("other").unwrap(),
            ip4(&first),
            7900,
        );
    }
    assert_converged(&mut env);
}

/// A Linux bridge takes at most 1024 ports: the join that would be one too many gets an
/// error that says so (not a bare "Exchange full"), and changes nothing.
#[test]
fn a_join_to_a_full_bridge_is_refused_clearly_and_changes_nothing() {
    let Some(env) = common::env("a_join_to_a_full_bridge_is_refused_clearly_and_changes_nothing")
    else {
        return;
    };
    let ctrl = env.ctrl();
    let n = bridge_on(ctrl, "n", "10.74.0.0/22");
    let s = sandbox(ctrl, "s");
    let e = endpoint(&n, "e");
    // Fill the bridge with veth pairs made directly in the test's namespace; they go with it.
    let mut nl = host_nl();
    let br = must_link(&mut nl, &bridge_name(&n)).index;
    let mut made = 0;
    loop {
        let (name, peer) = (format!("fill{made}"), format!("fillp{made}"));
        let spec = VethSpec {
            host_name: &name,
            host_master: Some(br),
            peer_name: &peer,
            ..Default::default()
        };
        match nl.create_veth(spec) {
            Ok(_) => made += 1,
            Err(err) if err.is_full() => break,
            Err(err) => panic!("filling the bridge: {err}"),
        }
        assert!(made <= 1024, "the bridge took more than 1024 ports");
    }
    let before = env.snapshot();
    let err = e.join(&s, JoinOptions::default()).unwrap_err();
    let msg = err.to_string();
    for needle in [
        "network n is full",
        &bridge_name(&n),
        "1024",
        "another network",
    ] {
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    }
    assert_eq!(err.kind(), Forbidden);
    assert_eq!(
        env.snapshot().without_revisions(),
        before.without_revisions()
    );
    assert!(e.info().unwrap().join.is_none());
}

#[test]
fn a_subnet_overlapping_another_networks_range_is_refused() {
    let Some(env) = common::env("a_subnet_overlapping_another_networks_range_is_refused") else {
        return;
    };
    env.ctrl()
        .new_network(
            "bridge",
            "ranged",
            pool("10.7.0.0/24", |c| c.ip_range = Some(cidr("10.7.0.128/25"))),
        )
        .unwrap();
    for subnet in ["10.7.0.0/24", "10.7.0.0/16", "10.7.0.64/26"] {
        assert_refused(
            &env,
            Forbidden,
            &[subnet, "overlaps", "10.7.0.0/24"],
            move |c| c.new_network("bridge", "other", subnet_opts(subnet)),
        );
    }
    // Next door is fine.
    bridge_on(env.ctrl(), "next", "10.7.1.0/24");
}
