//! A store lost (deleted, restored from an older copy, moved aside as corrupt) leaves kernel
//! objects lnet made that no record names. lnet marks its bridges (`lnet:network:<id>` in
//! the alias), so that a start can tell them from anyone else's: what carries the mark and
//! no record claims is removed (with its ports, the namespace mounts and files under lnet's
//! own folders, and lnet's rules in other tables), the start never refuses, and what lacks
//! the mark is never taken.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::*;
use lnet_core::drivers::bridge::{OPT_DEFAULT_BRIDGE, OPT_NAME, mark};
use lnet_core::{EndpointOptions, ErrorKind, JoinOptions, NetworkOptions, PortSpec};
use lnet_kernel::nft::{Family, NftSocket};
use lnet_kernel::{BridgeOptions, Netlink, VethSpec};

/// The comments of the rules in that chain.
fn foreign_rules() -> Vec<String> {
    NftSocket::new()
        .unwrap()
        .rules(Family::Ip, "otherfw", "forward")
        .unwrap()
        .into_iter()
        .filter_map(|r| r.comment)
        .collect()
}

/// The predefined `bridge` network, as the daemon makes it.
fn predefined(ctrl: &lnet_core::Controller) -> lnet_core::Result<lnet_core::Network> {
    let mut o = NetworkOptions::default();
    o.options.insert(OPT_NAME.into(), "lnet0".into());
    o.options.insert(OPT_DEFAULT_BRIDGE.into(), "true".into());
    ctrl.new_network("bridge", "bridge", o)
}

fn publish(
    net: &lnet_core::Network,
    name: &str,
    sb: &lnet_core::Sandbox,
    port: &str,
) -> lnet_core::Endpoint {
    let ep = net
        .create_endpoint(
            name,
            EndpointOptions {
                ports: vec![PortSpec::parse(port).unwrap()],
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("endpoint {name}: {e}"));
    ep.join(sb, JoinOptions::default())
        .unwrap_or_else(|e| panic!("join {name}: {e}"));
    ep
}

/// What the world below is made of, to make it again.
struct Built {
    subnets: BTreeSet<String>,
    bridges: Vec<String>,
    veths: Vec<String>,
    mounts: BTreeSet<PathBuf>,
}

/// The predefined bridge with `a` publishing 8080, `web` on 10.60.0.0/24 with `b`
/// publishing 9090, `c` on `web` too; beside another engine's drop-policy forward chain.
fn build(env: &Env) -> Built {
    let ctrl = env.ctrl();
    let def = predefined(ctrl).unwrap();
    let web = bridge_on(ctrl, "web", "10.60.0.0/24");
    let (a, b, c) = (sandbox(ctrl, "a"), sandbox(ctrl, "b"), sandbox(ctrl, "c"));
    let eps = [
        publish(&def, "ea", &a, "8080:80"),
        publish(&web, "eb", &b, "9090:90"),
        attach(&web, "ec", &c),
    ];
    assert_traffic(&c, ip4(&eps[2]), &b, ip4(&eps[1]), 7100);
    Built {
        subnets: [&def, &web]
            .iter()
            .map(|n| pool_and_gateway(n).0.to_string())
            .collect(),
        bridges: vec![bridge_name(&def), bridge_name(&web)],
        veths: eps.iter().map(host_ifname).collect(),
        mounts: env.netns_mounts(),
    }
}

/// After the start that found the store gone: the same networks, subnets, host ports and
/// joins can be made again, and packets flow.
fn make_again(env: &Env, built: &Built) {
    let ctrl = env.ctrl();
    let def = predefined(ctrl).expect("the predefined network is made again");
    let web = bridge_on(ctrl, "web", "10.60.0.0/24");
    let subnets: BTreeSet<String> = [&def, &web]
        .iter()
        .map(|n| pool_and_gateway(n).0.to_string())
        .collect();
    assert_eq!(subnets, built.subnets, "the same subnets");
    // By container id exactly: `Controller::sandbox` also takes a unique id prefix, and a
    // lost sandbox "c" would be found as whichever new sandbox's id starts with "c".
    let sb = |name: &str| {
        ctrl.sandboxes()
            .into_iter()
            .find(|s| s.container_id() == name)
            .unwrap_or_else(|| sandbox(ctrl, name))
    };
    let (a, b, c) = (sb("a"), sb("b"), sb("c"));
    publish(&def, "ea", &a, "8080:80");
    let eb = publish(&web, "eb", &b, "9090:90");
    let ec = attach(&web, "ec", &c);
    assert_traffic(&c, ip4(&ec), &b, ip4(&eb), 7200);
    let doctor = ctrl.doctor();
    assert!(doctor.is_clean(), "{doctor:#?}");
}

/// Builds, stops as a crash would, loses the store (and with `state`, the sandbox and
/// endpoint records on the exec root too), and starts again.
fn lose_the_store(test: &str, state: bool, background: bool) {
    let Some(mut env) = common::env(test) else {
        return;
    };
    let mut config = env.config();
    config.background_deletes = background;
    env.restart_with(config.clone());
    other_engine_drop_chain("otherfw");
    let built = build(&env);
    assert_eq!(foreign_rules().len(), 4, "{:?}", foreign_rules());
    assert!(!firewall_elements().is_empty());
    env.ctrl = None;

    std::fs::remove_file(config.store_path()).unwrap();
    if state {
        std::fs::remove_dir_all(config.state_dir()).unwrap();
    }

    // Before a start, `doctor` shows what the start will remove.
    let offline = lnet_core::Controller::doctor_offline(config.clone()).unwrap();
    let found: Vec<String> = offline
        .findings
        .iter()
        .map(|f| format!("{} {}: {}", f.kind, f.object, f.what))
        .collect();
    let says = |what: &str| found.iter().any(|f| f.contains(what));
    assert!(says("extra network (no record) "), "{found:#?}");
    for b in &built.bridges {
        assert!(
            says(&format!("bridge {b} (no record names it)")),
            "{b}: {found:#?}"
        );
    }
    for v in &built.veths {
        assert!(
            says(&format!("interface {v} (no record names it)")),
            "{v}: {found:#?}"
        );
    }
    assert!(says("lnet:lnet0:in"), "the foreign rules: {found:#?}");
    assert!(says("element"), "lnet's elements: {found:#?}");
    if state {
        for m in &built.mounts {
            assert!(
                says(&format!("network namespace mount {}", m.display())),
                "{found:#?}"
            );
        }
        assert!(says("sandbox file directory"), "{found:#?}");
    }

    let ctrl = env.restart_with(config);
    let report = ctrl.recovery_report().clone();
    assert!(report.errors.is_empty(), "{report:#?}");
    for b in &built.bridges {
        assert!(
            report
                .leftovers
                .iter()
                .any(|l| l.starts_with(&format!("bridge {b} "))),
            "{b}: {report:#?}"
        );
    }
    if state {
        assert!(
            report
                .leftovers
                .iter()
                .any(|l| l.contains("run/netns/") && l.contains("no sandbox names it")),
            "{report:#?}"
        );
        assert!(ctrl.sandboxes().is_empty());
    } else {
        // The sandboxes' records survived on the exec root; their endpoints' networks did
        // not, so the endpoints were set aside with their interfaces.
        assert_eq!(ctrl.sandboxes().len(), 3);
        assert_eq!(report.quarantined.len(), 3, "{report:#?}");
    }

    // Nothing of lnet's is left that no record names: no bridge, no veth, no mount, no
    // element, no rule in the other engine's chain; doctor agrees, and a second start
    // finds nothing to do.
    assert!(ctrl.doctor().is_clean(), "{:#?}", ctrl.doctor());
    assert_eq!(host_links(), env.base_links, "host links");
    // The forwarding lnet turned on stays on, and so does its guard (its record lives
    // beside the store, until the next reboot): every other element went with the records.
    let elements: Vec<String> = firewall_elements()
        .into_iter()
        .filter(|e| e != "forward_guard: ipv4")
        .collect();
    assert!(elements.is_empty(), "{elements:?}");
    assert!(foreign_rules().is_empty(), "{:?}", foreign_rules());
    if state {
        assert!(env.netns_files().is_empty(), "{:?}", env.netns_files());
        assert!(env.sandbox_dirs().is_empty(), "{:?}", env.sandbox_dirs());
    }
    assert_converged(&mut env);

    make_again(&env, &built);
    assert_converged(&mut env);
}

#[test]
fn a_lost_store_leaves_nothing_behind_and_everything_can_be_made_again() {
    lose_the_store(
        "a_lost_store_leaves_nothing_behind_and_everything_can_be_made_again",
        false,
        true,
    );
}

#[test]
fn a_lost_store_and_lost_sandbox_records_leave_nothing_behind() {
    lose_the_store(
        "a_lost_store_and_lost_sandbox_records_leave_nothing_behind",
        true,
        false,
    );
}

/// A bridge made by hand (with a MAC of its own, as lnet makes them), with `alias` if
/// given, and a veth port named as lnet names them.
fn hand_made_bridge(nl: &mut Netlink, name: &str, alias: Option<&str>, port: &str) -> u32 {
    let br = nl
        .ensure_bridge(
            name,
            BridgeOptions {
                alias,
                mac: Some([0x02, 0x42, 0, 0, 0, name.len() as u8]),
                ..Default::default()
            },
        )
        .unwrap();
    nl.create_veth(VethSpec {
        host_name: port,
        host_master: Some(br.index),
        peer_name: &format!("{port}p"),
        ..Default::default()
    })
    .unwrap();
    br.index
}

#[test]
fn a_marked_bridge_no_record_names_is_taken_over_by_a_new_network() {
    let Some(env) = common::env("a_marked_bridge_no_record_names_is_taken_over_by_a_new_network")
    else {
        return;
    };
    let mut nl = host_nl();
    // As a store lost while lnet0 had a container on it leaves it.
    let old_id = "0a1b2c3d".repeat(8);
    let index = hand_made_bridge(&mut nl, "lnet0", Some(&mark(&old_id)), "veth0a1b2c3");
    let old_mac = must_link(&mut nl, "lnet0").mac.unwrap();
    nl.add_address(index, cidr("172.17.0.1/16"), Default::default())
        .unwrap();

    let def = predefined(env.ctrl()).expect("lnet's own lnet0 is taken over");
    let br = must_link(&mut nl, "lnet0");
    assert_eq!(br.index, index, "the same bridge");
    assert_eq!(br.mac, Some(old_mac), "with its MAC");
    let id = def.info().unwrap().id;
    assert_eq!(br.alias, Some(mark(&id)), "marked as the new network's");
    assert_eq!(
        pool_and_gateway(&def).0,
        cidr("172.17.0.0/16"),
        "its old subnet does not count against it"
    );
    assert_eq!(addrs(&mut nl, "lnet0"), [cidr("172.17.0.1/16")].into());
    assert!(
        link(&mut nl, "veth0a1b2c3").is_none(),
        "its stale port is gone"
    );
    let doctor = env.ctrl().doctor();
    assert!(doctor.is_clean(), "{doctor:#?}");
    let (a, b) = (sandbox(env.ctrl(), "a"), sandbox(env.ctrl(), "b"));
    let (ea, eb) = (attach(&def, "ea", &a), attach(&def, "eb", &b));
    assert_traffic(&a, ip4(&ea), &b, ip4(&eb), 7300);
}

#[test]
fn a_bridge_without_lnets_mark_is_never_taken() {
    let Some(mut env) = common::env("a_bridge_without_lnets_mark_is_never_taken") else {
        return;
    };
    let mut nl = host_nl();
    // Someone else's lnet0: no alias at all, then another alias, then one that only looks
    // like lnet's.
    hand_made_bridge(&mut nl, "lnet0", None, "veth0000001");
    let index = must_link(&mut nl, "lnet0").index;
    for alias in [None, Some("docker0 for tests"), Some("lnet:network:zz")] {
        nl.set_alias(index, alias.unwrap_or("")).unwrap();
        let err = assert_refused(
            &env,
            ErrorKind::InvalidInput,
            &[OPT_NAME, "lnet0", "already exists", "lnet did not make it"],
            predefined,
        );
        println!("{alias:?}: {err}");
    }
    // A foreign bridge named as lnet names its own, with a port named as lnet's are: the
    // start leaves both alone, and says nothing of them.
    let foreign = "br-0123456789ab";
    hand_made_bridge(&mut nl, foreign, None, "veth0a1b2c3");
    let other = "br-0123456789ac";
    hand_made_bridge(&mut nl, other, Some("lnet:network:"), "veth0a1b2c4");
    let links_before = host_links();
    let ctrl = env.restart();
    assert!(
        ctrl.recovery_report().is_clean(),
        "{:#?}",
        ctrl.recovery_report()
    );
    assert_eq!(host_links(), links_before);
    let doctor = ctrl.doctor();
    assert!(doctor.is_clean(), "{doctor:#?}");
    assert_eq!(
        must_link(&mut nl, "veth0a1b2c3").master,
        Some(must_link(&mut nl, foreign).index)
    );
}

#[test]
fn a_recorded_bridge_without_the_mark_gets_it_back_at_start() {
    let Some(mut env) = common::env("a_recorded_bridge_without_the_mark_gets_it_back_at_start")
    else {
        return;
    };
    let net = bridge_on(env.ctrl(), "old", "10.61.0.0/24");
    let (id, name) = (net.info().unwrap().id, bridge_name(&net));
    drop(net);
    let mut nl = host_nl();
    assert_eq!(must_link(&mut nl, &name).alias, Some(mark(&id)));
    // As lnet before marks left it.
    let index = must_link(&mut nl, &name).index;
    nl.set_alias(index, "").unwrap();
    let found: Vec<String> = env
        .ctrl()
        .doctor()
        .findings
        .into_iter()
        .map(|f| f.what)
        .collect();
    assert!(
        found.iter().any(|f| f.contains("lacks lnet's mark")),
        "{found:?}"
    );
    env.restart();
    assert_eq!(must_link(&mut nl, &name).alias, Some(mark(&id)));
    assert_converged(&mut env);
}
