//! libnetwork's README flow against the real kernel, real packets between sandboxes, and
//! interface naming and default-gateway selection with several networks.

mod common;

use std::net::IpAddr;

use common::*;
use lnet_core::{EndpointOptions, JoinOptions, SandboxOptions};
use lnet_kernel::IpFamily;

#[test]
fn readme_flow_makes_and_removes_real_kernel_state() {
    let Some(env) = common::env("readme_flow_makes_and_removes_real_kernel_state") else {
        return;
    };
    let ctrl = env.ctrl();
    let net = bridge(ctrl, "network1");
    let ep = endpoint(&net, "Endpoint1");
    let sb = ctrl
        .new_sandbox(
            "container1",
            SandboxOptions {
                hostname: "test".into(),
                domainname: "example.com".into(),
                ..Default::default()
            },
        )
        .unwrap();
    ep.join(&sb, JoinOptions::default()).unwrap();

    // The bridge: br-<first 12 hex of the id>, up, with the gateway of Docker's first
    // default pool.
    let (pool, gw) = pool_and_gateway(&net);
    assert_eq!(pool, "172.17.0.0/16".parse().unwrap());
    assert_eq!(gw, "172.17.0.1/16".parse().unwrap());
    let br_name = bridge_name(&net);
    assert_eq!(br_name, format!("br-{}", &net.id()[..12]));
    let mut host = host_nl();
    let br = must_link(&mut host, &br_name);
    assert!(br.is_kind("bridge") && br.up, "{br:?}");
    assert!(addrs(&mut host, &br_name).contains(&gw));

    // The host end of the veth pair, enslaved to the bridge.
    let veth = host_ifname(&ep);
    assert!(veth.starts_with("veth"), "{veth}");
    let hl = must_link(&mut host, &veth);
    assert!(hl.is_kind("veth") && hl.up);
    assert_eq!(hl.master, Some(br.index));

    // Inside the sandbox: eth0 with the endpoint's address and Docker's MAC, default route.
    let addr = ep.info().unwrap().addr_v4.unwrap();
    assert_eq!(addr, "172.17.0.2/16".parse().unwrap());
    let mut inside = sandbox_nl(&sb);
    let eth0 = must_link(&mut inside, "eth0");
    assert!(eth0.up);
    assert_eq!(
        eth0.mac.map(|m| lnet_core::format_mac(&m)).as_deref(),
        Some("02:42:ac:11:00:02")
    );
    assert!(addrs(&mut inside, "eth0").contains(&addr));
    assert_eq!(default_gw(&mut inside, IpFamily::V4), Some(gw.addr()));
    assert_eq!(links_in(&sb.key().unwrap()), ["eth0".to_string()].into());

    // Files.
    let hosts = read(&sb.hosts_path().unwrap());
    assert!(
        hosts.ends_with("172.17.0.2\ttest.example.com test\n"),
        "{hosts}"
    );
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert_eq!(
        read(&sb.resolv_conf_path().unwrap()),
        "search example.org\nnameserver 192.0.2.53\n"
    );
    let info = ep.driver_info().unwrap();
    assert_eq!(
        info["com.docker.network.endpoint.macaddress"],
        "02:42:ac:11:00:02"
    );
    assert_eq!(info["container_interface"], "eth0");
    assert_eq!(sb.endpoints().len(), 1);

    // Leave: everything the join made is gone.
    ep.leave(&sb).unwrap();
    assert!(links_in(&sb.key().unwrap()).is_empty());
    assert!(!has_default_route(&mut inside, IpFamily::V4));
    assert!(link(&mut host, &veth).is_none(), "host veth removed");
    let hosts = read(&sb.hosts_path().unwrap());
    assert!(!hosts.contains("172.17.0.2"), "{hosts}");
    assert!(ep.info().unwrap().join.is_none());
    assert!(sb.endpoints().is_empty());

    // Delete the endpoint: its address is free again.
    ep.delete().unwrap();
    assert!(net.endpoints().is_empty());
    let again = endpoint(&net, "Endpoint2");
    assert_eq!(ip4(&again), addr.addr());
    again.delete().unwrap();

    // Delete the sandbox: its namespace mount and files go.
    let (key, files) = (sb.key().unwrap(), sb.info().unwrap().files_dir);
    assert!(env.netns_mounts().contains(&key));
    drop(inside);
    sb.delete().unwrap();
    assert!(!key.exists(), "netns file removed");
    assert!(env.netns_mounts().is_empty());
    assert!(!files.exists(), "files dir removed");
    assert!(ctrl.sandboxes().is_empty());

    // Delete the network: bridge gone, the pool can be had again (asked for by name: like
    // Docker's, automatic picks rotate through the default pools).
    net.delete().unwrap();
    assert!(link(&mut host, &br_name).is_none());
    assert!(ctrl.allocated_pools().is_empty());
    let next = bridge_on(ctrl, "network2", "172.17.0.0/16");
    assert_eq!(pool_and_gateway(&next), (pool, gw));
}

#[test]
fn tcp_and_udp_flow_between_sandboxes() {
    let Some(env) = common::env("tcp_and_udp_flow_between_sandboxes") else {
        return;
    };
    let ctrl = env.ctrl();
    let net = bridge(ctrl, "net1");
    let (s1, s2) = (sandbox(ctrl, "c1"), sandbox(ctrl, "c2"));
    let (e1, e2) = (attach(&net, "e1", &s1), attach(&net, "e2", &s2));
    assert_ne!(ip4(&e1), ip4(&e2));
    assert_traffic(&s1, ip4(&e1), &s2, ip4(&e2), 7000);
    assert_traffic(&s2, ip4(&e2), &s1, ip4(&e1), 7100);

    // A second network has its own subnet and its own bridge.
    let net2 = bridge(ctrl, "net2");
    let s3 = sandbox(ctrl, "c3");
    let e3 = attach(&net2, "e3", &s3);
    let (p1, _) = pool_and_gateway(&net);
    let (p2, g2) = pool_and_gateway(&net2);
    assert_ne!(p1, p2);
    assert!(!p1.contains(&p2) && !p2.contains(&p1), "{p1} / {p2}");
    assert!(p2.contains(&ip4(&e3)));
    assert_ne!(bridge_name(&net), bridge_name(&net2));
    let mut host = host_nl();
    let br2 = must_link(&mut host, &bridge_name(&net2));
    assert_eq!(
        must_link(&mut host, &host_ifname(&e3)).master,
        Some(br2.index)
    );
    assert!(addrs(&mut host, &bridge_name(&net2)).contains(&g2));
    assert_eq!(
        default_gw(&mut sandbox_nl(&s3), IpFamily::V4),
        Some(g2.addr())
    );
    // e3 on its own bridge still talks to its gateway (the bridge address).
    let s3_ns = lnet_kernel::Netns::open(s3.key().unwrap()).unwrap();
    let g = g2.addr();
    let reached = s3_ns
        .run(move || {
            std::net::TcpStream::connect_timeout(&(g, 9).into(), std::time::Duration::from_secs(5))
        })
        .unwrap();
    // Nothing listens on the bridge: a refusal proves the packet got there and back.
    assert_eq!(
        reached.expect_err("nothing listens").kind(),
        std::io::ErrorKind::ConnectionRefused
    );
}

#[test]
fn interfaces_are_named_in_join_order_and_the_gateway_follows_priority() {
    let Some(env) =
        common::env("interfaces_are_named_in_join_order_and_the_gateway_follows_priority")
    else {
        return;
    };
    let ctrl = env.ctrl();
    let a = bridge_on(ctrl, "net-a", "10.1.0.0/24");
    let b = bridge_on(ctrl, "net-b", "10.2.0.0/24");
    let mut internal = subnet_opts("10.3.0.0/24");
    internal.internal = true;
    let c = ctrl.new_network("bridge", "net-c", internal).unwrap();
    let gw = |n: &lnet_core::Network| -> Option<IpAddr> { Some(pool_and_gateway(n).1.addr()) };

    let sb = sandbox(ctrl, "multi");
    let mut nl = sandbox_nl(&sb);
    let ea = attach(&a, "ea", &sb);
    assert_eq!(container_ifname(&ea), "eth0");
    assert_eq!(default_gw(&mut nl, IpFamily::V4), gw(&a));

    // A higher priority takes the default route.
    let eb = attach_with(&b, "eb", &sb, JoinOptions { priority: 10 });
    assert_eq!(container_ifname(&eb), "eth1");
    assert_eq!(default_gw(&mut nl, IpFamily::V4), gw(&b));
    assert!(addrs(&mut nl, "eth1").contains(&eb.info().unwrap().addr_v4.unwrap()));

    // An internal network never provides it, whatever its priority.
    let ec = attach_with(&c, "ec", &sb, JoinOptions { priority: 100 });
    assert_eq!(container_ifname(&ec), "eth2");
    assert_eq!(default_gw(&mut nl, IpFamily::V4), gw(&b));

    // Leaving the gateway endpoint moves the default route to the next one.
    eb.leave(&sb).unwrap();
    assert_eq!(default_gw(&mut nl, IpFamily::V4), gw(&a));
    assert_eq!(
        links_in(&sb.key().unwrap()),
        ["eth0".to_string(), "eth2".to_string()].into()
    );

    // Rejoining takes the lowest free name.
    eb.join(&sb, JoinOptions::default()).unwrap();
    assert_eq!(container_ifname(&eb), "eth1");
    // Equal priorities: the network name decides (net-a before net-b).
    assert_eq!(default_gw(&mut nl, IpFamily::V4), gw(&a));
    ea.leave(&sb).unwrap();
    assert_eq!(default_gw(&mut nl, IpFamily::V4), gw(&b));
    ea.join(&sb, JoinOptions::default()).unwrap();
    assert_eq!(container_ifname(&ea), "eth0");
    assert_eq!(
        sb.endpoints()
            .iter()
            .map(|e| e.name().to_string())
            .collect::<Vec<_>>(),
        ["ec", "eb", "ea"],
        "join order"
    );

    // Only the internal network left: no default route at all.
    ea.leave(&sb).unwrap();
    eb.leave(&sb).unwrap();
    assert!(!has_default_route(&mut nl, IpFamily::V4));
    assert_eq!(links_in(&sb.key().unwrap()), ["eth2".to_string()].into());
    let ed = c.create_endpoint("ed", EndpointOptions::default()).unwrap();
    let other = sandbox(ctrl, "other");
    ed.join(&other, JoinOptions::default()).unwrap();
    assert!(!has_default_route(&mut sandbox_nl(&other), IpFamily::V4));
    assert_traffic(&other, ip4(&ed), &sb, ip4(&ec), 7200);
}

#[test]
fn deleting_a_sandbox_leaves_and_deletes_its_endpoints() {
    let Some(env) = common::env("deleting_a_sandbox_leaves_and_deletes_its_endpoints") else {
        return;
    };
    let ctrl = env.ctrl();
    let (a, b) = (
        bridge_on(ctrl, "a", "10.5.0.0/24"),
        bridge_on(ctrl, "b", "10.6.0.0/24"),
    );
    let sb = sandbox(ctrl, "c1");
    let eps = [attach(&a, "ea", &sb), attach(&b, "eb", &sb)];
    let veths: Vec<String> = eps.iter().map(host_ifname).collect();
    let addrs: Vec<IpAddr> = eps.iter().map(ip4).collect();
    sb.delete().unwrap();
    let mut host = host_nl();
    for v in &veths {
        assert!(link(&mut host, v).is_none(), "{v} removed");
    }
    assert!(a.endpoints().is_empty() && b.endpoints().is_empty());
    assert_eq!(
        host_links().len(),
        env.base_links.len() + 2,
        "only the bridges remain"
    );
    assert!(env.netns_files().is_empty() && env.sandbox_dirs().is_empty());
    // The addresses are free again: the next endpoints get them.
    assert_eq!(ip4(&endpoint(&a, "next-a")), addrs[0]);
    assert_eq!(ip4(&endpoint(&b, "next-b")), addrs[1]);
}

#[test]
fn concurrent_callers_get_distinct_addresses_and_working_interfaces() {
    let Some(env) = common::env("concurrent_callers_get_distinct_addresses_and_working_interfaces")
    else {
        return;
    };
    let ctrl = env.ctrl().clone();
    let net = bridge_on(&ctrl, "shared", "10.7.0.0/24");
    // Threads spawned now share the test's namespace.
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let (ctrl, net) = (ctrl.clone(), net.clone());
            std::thread::spawn(move || {
                let sb = sandbox(&ctrl, &format!("c{i}"));
                let ep = attach(&net, &format!("e{i}"), &sb);
                (sb, ep)
            })
        })
        .collect();
    let joined: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let addrs: std::collections::BTreeSet<IpAddr> = joined.iter().map(|(_, e)| ip4(e)).collect();
    assert_eq!(addrs.len(), joined.len(), "distinct addresses: {addrs:?}");
    for (sb, ep) in &joined {
        assert_eq!(container_ifname(ep), "eth0");
        assert!(addrs_of_eth0(sb).contains(&ep.info().unwrap().addr_v4.unwrap()));
    }
    let ((s0, e0), (s5, e5)) = (&joined[0], &joined[5]);
    assert_traffic(s0, ip4(e0), s5, ip4(e5), 7800);
}

fn addrs_of_eth0(sb: &lnet_core::Sandbox) -> std::collections::BTreeSet<ipnet::IpNet> {
    addrs(&mut sandbox_nl(sb), "eth0")
}
