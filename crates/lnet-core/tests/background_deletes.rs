//! With `background_deletes` (the daemon's setting) a leave or a network delete returns
//! before the kernel has finished deleting the veth or bridge: what others may take at once
//! — addresses, the interface name in the sandbox, the bridge name and subnet — is free at
//! once, the links go shortly after, and a crash before they go leaves nothing that the next
//! start does not remove.

mod common;

use common::*;
use lnet_core::{EndpointOptions, JoinOptions};
use lnet_kernel::{BridgeOptions, VethSpec};

/// The names of the links of the test's namespace.
fn link_names() -> std::collections::BTreeSet<String> {
    host_nl()
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect()
}

fn background(env: &mut Env) {
    let mut c = env.config();
    c.background_deletes = true;
    env.restart_with(c);
}

#[test]
fn what_a_leave_frees_is_free_at_once_and_the_links_go_soon_after() {
    let Some(mut env) =
        common::env("what_a_leave_frees_is_free_at_once_and_the_links_go_soon_after")
    else {
        return;
    };
    background(&mut env);
    let ctrl = env.ctrl();
    let net = bridge_on(ctrl, "n", "10.57.0.0/24");
    let sb = sandbox(ctrl, "c");
    let e1 = attach(&net, "e1", &sb);
    let (addr, host_if) = (ip4(&e1), host_ifname(&e1));
    e1.leave(&sb).unwrap();
    e1.delete().unwrap();
    // At once: the sandbox's eth0 name and the address can be had again, and the old pair
    // no longer holds the address.
    let e2 = net
        .create_endpoint(
            "e2",
            EndpointOptions {
                ipv4: Some(addr),
                ..Default::default()
            },
        )
        .unwrap();
    e2.join(&sb, JoinOptions::default()).unwrap();
    assert_eq!(container_ifname(&e2), "eth0");
    let mut nl = sandbox_nl(&sb);
    assert!(addrs(&mut nl, "eth0").contains(&cidr("10.57.0.2/24")));
    // Soon after: the old veth is gone from the host, and its peer from the sandbox.
    ctrl.settle();
    assert!(
        link(&mut host_nl(), &host_if).is_none(),
        "{host_if} is deleted"
    );
    assert_eq!(links_in(&sb.key().unwrap()), ["eth0".to_string()].into());

    // A network delete frees its bridge name and subnet at once.
    e2.leave(&sb).unwrap();
    e2.delete().unwrap();
    let bridge = bridge_name(&net);
    net.delete().unwrap();
    let mut o = subnet_opts("10.57.0.0/24");
    o.options
        .insert("com.docker.network.bridge.name".into(), bridge.clone());
    let again = ctrl.new_network("bridge", "again", o).unwrap();
    assert_eq!(bridge_name(&again), bridge);
    ctrl.settle();
    let names: Vec<String> = host_nl()
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("lnetgone")),
        "nothing waits for deletion: {names:?}"
    );
    again.delete().unwrap();
    sb.delete().unwrap();
    ctrl.settle();
    drop((again, sb, e1, e2, net));
    assert_converged(&mut env);
}

#[test]
fn links_a_crash_left_waiting_for_deletion_are_removed_at_start() {
    let Some(mut env) = common::env("links_a_crash_left_waiting_for_deletion_are_removed_at_start")
    else {
        return;
    };
    // What a crash right after a network delete leaves: a renamed bridge and an lnet veth
    // still enslaved to it; and a renamed bridge alone.
    let mut nl = host_nl();
    let gone = nl
        .ensure_bridge("lnetgone0a1b2c3", BridgeOptions::default())
        .unwrap();
    nl.ensure_bridge("lnetgone0d0e0f0", BridgeOptions::default())
        .unwrap();
    nl.create_veth(VethSpec {
        host_name: "veth0a1b2c3",
        host_master: Some(gone.index),
        peer_name: "veth0a1b2c3p",
        ..Default::default()
    })
    .unwrap();
    // Not lnet's: a veth of that shape on a bridge lnet did not make stays.
    let theirs = nl
        .ensure_bridge("docker0", BridgeOptions::default())
        .unwrap();
    nl.create_veth(VethSpec {
        host_name: "veth9f9f9f9",
        host_master: Some(theirs.index),
        peer_name: "veth9f9f9f9p",
        ..Default::default()
    })
    .unwrap();
    env.restart();
    let report = env.ctrl().recovery_report().clone();
    let names = link_names();
    for n in [
        "lnetgone0a1b2c3",
        "lnetgone0d0e0f0",
        "veth0a1b2c3",
        "veth0a1b2c3p",
    ] {
        assert!(!names.contains(n), "{n} removed: {names:?}");
    }
    for n in ["docker0", "veth9f9f9f9"] {
        assert!(names.contains(n), "{n} kept: {names:?}");
    }
    assert_eq!(report.rolled_back.len(), 3, "{report:?}");
    let mut nl = host_nl();
    nl.delete_link("veth9f9f9f9").unwrap();
    nl.delete_link("docker0").unwrap();
    assert_converged(&mut env);
}

#[test]
fn a_marked_bridge_a_crash_left_waiting_for_deletion_is_named_once_and_no_lost_store() {
    let Some(mut env) = common::env(
        "a_marked_bridge_a_crash_left_waiting_for_deletion_is_named_once_and_no_lost_store",
    ) else {
        return;
    };
    // What a crash during a network delete leaves now that lnet marks its bridges: the
    // bridge renamed for the background deleter, its mark still on it, a port still on it.
    let id = "0a1b2c3".repeat(10);
    let gone = lnet_core::reaper::gone_name(&id);
    let mut nl = host_nl();
    let bridge = nl
        .ensure_bridge(
            &gone,
            BridgeOptions {
                alias: Some(&lnet_core::drivers::bridge::mark(&id[..64])),
                ..Default::default()
            },
        )
        .unwrap();
    nl.create_veth(VethSpec {
        host_name: "veth0a1b2c3",
        host_master: Some(bridge.index),
        peer_name: "veth0a1b2c3p",
        ..Default::default()
    })
    .unwrap();
    let doctor = env.ctrl().doctor();
    for name in [gone.as_str(), "veth0a1b2c3"] {
        let about: Vec<_> = doctor
            .findings
            .iter()
            .filter(|f| f.what.contains(name))
            .collect();
        assert_eq!(
            about.len(),
            1,
            "{name} is one finding: {:?}",
            doctor.findings
        );
    }
    env.restart();
    let report = env.ctrl().recovery_report().clone();
    assert!(
        report.leftovers.is_empty() && report.errors.is_empty(),
        "a delete a crash interrupted is no lost store: {report:?}"
    );
    assert_eq!(report.rolled_back.len(), 2, "{report:?}");
    let names = link_names();
    for n in [gone.as_str(), "veth0a1b2c3", "veth0a1b2c3p"] {
        assert!(!names.contains(n), "{n} removed: {names:?}");
    }
    assert_converged(&mut env);
}
