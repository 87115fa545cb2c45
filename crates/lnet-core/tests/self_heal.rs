//! Self-healing while running: with [`lnet_core::Config::self_heal`] on, what someone else
//! deletes or changes of lnet's — a bridge, a veth, a link's state, lnet's nftables table,
//! one of its elements (the guard of the forwarding lnet turned on too), everything in a ruleset flush, lnet's accept rule in another
//! engine's drop-policy forward chain — is put back while lnet runs, with no call from
//! anyone and no restart; traffic flows again. lnet's own connects and disconnects, and
//! changes to what lnet does not own, trigger nothing.

mod common;

use std::time::{Duration, Instant};

use common::*;

use lnet_kernel::nft::{Batch, Element, Family, NftSocket};
use lnet_kernel::{BridgeOptions, Netlink};

/// Waits (up to a generous 5 s: the watcher acts within about 60 ms) until `doctor` finds
/// nothing and the watcher has healed `n` times in all; how long it took.
fn healed(ctrl: &lnet_core::Controller, n: u64, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let report = ctrl.doctor();
        if report.is_clean() && ctrl.heals() >= n {
            assert_eq!(ctrl.heals(), n, "{what}: healed more often than broken");
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: not put back: heals {}, {report:#?}",
            ctrl.heals()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn nft(batch: impl FnOnce(&mut Batch)) {
    let mut b = Batch::new();
    batch(&mut b);
    NftSocket::new().unwrap().commit(&b).unwrap();
}

#[test]
fn what_others_delete_is_put_back_while_running() {
    let Some(mut env) = common::env("what_others_delete_is_put_back_while_running") else {
        return;
    };
    // A host that does not route: lnet turns forwarding on, and guards it.
    lnet_kernel::sysctl::set("net.ipv4.ip_forward", "0").unwrap();
    let mut config = env.config();
    config.self_heal = true;
    env.restart_with(config);
    let ctrl = env.ctrl();
    let Pair { net, a, b, ea, eb } = pair(ctrl, "heal", "10.63.0.0/24");
    let (a_ip, b_ip) = (ip4(&ea), ip4(&eb));
    let (bridge, veth) = (bridge_name(&net), host_ifname(&ea));

    // lnet's own work, and other people's links, are not drift.
    let churn = sandbox(ctrl, "churn");
    for i in 0..5 {
        let e = attach(&net, &format!("c{i}"), &churn);
        e.leave(&churn).unwrap();
        e.delete().unwrap();
    }
    let mut nl = Netlink::new().unwrap();
    nl.ensure_bridge("other0", BridgeOptions::default())
        .unwrap();
    nl.delete_link("other0").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ctrl.heals(), 0, "nothing of lnet's was touched");

    let mut n = 0;
    let mut took = Vec::new();
    let mut check = |what: &str, took: &mut Vec<Duration>| {
        n += 1;
        took.push(healed(ctrl, n, what));
        assert_traffic(&a, a_ip, &b, b_ip, 7300 + 2 * n as u16);
    };
    nl.delete_link(&bridge).unwrap();
    check("the bridge deleted", &mut took);
    nl.delete_link(&veth).unwrap();
    check("a veth deleted", &mut took);
    let v = must_link(&mut nl, &veth);
    nl.set_down(v.index).unwrap();
    check("a veth set down", &mut took);
    nft(|b| {
        b.delete_table(Family::Inet, "lnet");
    });
    check("lnet's table deleted", &mut took);
    nft(|b| {
        let ipv4 = Element::new(vec![Family::Ip.nfproto()]);
        b.delete_elements(Family::Inet, "lnet", "forward_guard", &[ipv4]);
    });
    check(
        "the guard of the forwarding lnet turned on deleted",
        &mut took,
    );
    // A flush of the whole ruleset, as `nft flush ruleset` or an nftables restart does,
    // then another engine's forward chain with policy drop (as Docker's and firewalld's).
    let tables = NftSocket::new().unwrap().tables(Family::Inet).unwrap();
    nft(|b| {
        for t in &tables {
            b.delete_table(Family::Inet, t);
        }
    });
    check("the ruleset flushed", &mut took);
    other_engine_drop_chain("otherfw");
    check("another engine's drop-policy forward chain", &mut took);
    nft(|b| {
        b.delete_table(Family::Ip, "otherfw");
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ctrl.heals(),
        n,
        "another engine's table going away is not drift"
    );
    println!("put back in {took:?}");
}
