//! The `null` and `host` drivers: what they put in the kernel (nothing), who may join them,
//! and that each may exist only once.

mod common;

use common::*;
use lnet_core::{EndpointOptions, ErrorKind, JoinOptions, NetworkOptions, SandboxOptions};
use lnet_kernel::{IpFamily, Netns};

fn host_mode_sandbox(ctrl: &lnet_core::Controller, container: &str) -> lnet_core::Sandbox {
    ctrl.new_sandbox(
        container,
        SandboxOptions {
            host_mode: true,
            extra_hosts: vec![("db".into(), "10.9.9.9".parse().unwrap())],
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn a_null_endpoint_leaves_the_sandbox_with_only_loopback() {
    let Some(mut env) = common::env("a_null_endpoint_leaves_the_sandbox_with_only_loopback") else {
        return;
    };
    let ctrl = env.ctrl();
    let none = ctrl
        .new_network("null", "none", NetworkOptions::default())
        .unwrap();
    assert!(none.info().unwrap().pools.is_empty());
    assert!(ctrl.allocated_pools().is_empty());
    let sb = sandbox(ctrl, "c1");
    let e = attach(&none, "e", &sb);
    let rec = e.info().unwrap();
    assert_eq!((rec.addr_v4, rec.addr_v6, rec.mac), (None, None, None));
    let mut nl = sandbox_nl(&sb);
    let all: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(all, ["lo"]);
    assert!(must_link(&mut nl, "lo").up);
    assert!(!has_default_route(&mut nl, IpFamily::V4));
    assert_eq!(host_links(), env.base_links, "nothing on the host either");
    assert_eq!(sb.endpoints().len(), 1);
    // A null endpoint takes no addresses.
    let err = none
        .create_endpoint(
            "addressed",
            EndpointOptions {
                ipv4: Some("10.0.0.5".parse().unwrap()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("IPv4Address"), "{err}");
    drop((none, sb, e));
    assert_converged(&mut env);
    let (sb, e) = (
        env.ctrl().sandbox("c1").unwrap(),
        env.ctrl()
            .network("none")
            .unwrap()
            .endpoint_by_name("e")
            .unwrap(),
    );
    e.leave(&sb).unwrap();
    e.delete().unwrap();
    env.ctrl().network("none").unwrap().delete().unwrap();
}

#[test]
fn only_one_null_and_one_host_network_may_exist() {
    let Some(env) = common::env("only_one_null_and_one_host_network_may_exist") else {
        return;
    };
    for driver in ["null", "host"] {
        let first = env
            .ctrl()
            .new_network(driver, driver, NetworkOptions::default())
            .unwrap();
        assert_refused(
            &env,
            ErrorKind::Forbidden,
            &[&format!("only one {driver} network"), driver],
            |c| c.new_network(driver, &format!("{driver}2"), NetworkOptions::default()),
        );
        // Once the first is gone, another may be made.
        first.delete().unwrap();
        env.ctrl()
            .new_network(driver, &format!("{driver}2"), NetworkOptions::default())
            .unwrap();
    }
}

#[test]
fn host_mode_sandboxes_join_only_the_host_network() {
    let Some(mut env) = common::env("host_mode_sandboxes_join_only_the_host_network") else {
        return;
    };
    let ctrl = env.ctrl();
    let host = ctrl
        .new_network("host", "host", NetworkOptions::default())
        .unwrap();
    let br = bridge(ctrl, "br");
    let none = ctrl
        .new_network("null", "none", NetworkOptions::default())
        .unwrap();
    let hm = host_mode_sandbox(ctrl, "hm");
    let normal = sandbox(ctrl, "normal");

    // The host-mode sandbox's key is the host's own namespace.
    let key = hm.key().unwrap();
    assert_eq!(
        Netns::open(&key).unwrap().inode().unwrap(),
        Netns::current().unwrap().inode().unwrap()
    );
    // Its files follow the host's.
    assert_eq!(
        read(&hm.hosts_path().unwrap()),
        "127.0.0.1\tlocalhost\n10.9.9.9\tdb\n"
    );
    assert_eq!(
        read(&hm.resolv_conf_path().unwrap()),
        read(&env.root().join("host-resolv.conf"))
    );

    let links_before = host_links();
    let eh = attach(&host, "eh", &hm);
    assert!(eh.info().unwrap().addr_v4.is_none());
    assert_eq!(
        host_links(),
        links_before,
        "joining the host network makes no links"
    );
    assert_eq!(hm.endpoints().len(), 1);

    for (net, sb, needles) in [
        (&host, &normal, ["normal", "cannot join the host network"]),
        (&br, &hm, ["hm", "cannot join a bridge network"]),
        (&none, &hm, ["hm", "cannot join a null network"]),
    ] {
        let e = endpoint(net, &format!("try-{}", sb.container_id()));
        assert_refused(&env, ErrorKind::Forbidden, &needles, |_| {
            e.join(sb, JoinOptions::default())
        });
    }

    drop((host, br, none, hm, normal, eh));
    assert_converged(&mut env);
    let ctrl = env.ctrl();
    let (hm, eh) = (
        ctrl.sandbox("hm").unwrap(),
        ctrl.network("host")
            .unwrap()
            .endpoint_by_name("eh")
            .unwrap(),
    );
    assert_eq!(
        hm.endpoints().len(),
        1,
        "the host-mode join survived a restart"
    );
    eh.leave(&hm).unwrap();
    hm.delete().unwrap();
    // Deleting a host-mode sandbox leaves the host's own namespace and links alone.
    assert_eq!(hm.info().unwrap_err().kind(), ErrorKind::NotFound);
    let br = ctrl.network("br").unwrap();
    assert!(must_link(&mut host_nl(), &bridge_name(&br)).up);
    assert_eq!(
        Netns::open(&key).unwrap().inode().unwrap(),
        Netns::current().unwrap().inode().unwrap()
    );
}
