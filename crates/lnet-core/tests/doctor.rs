//! `doctor` and `repair` against real drift: something other than lnet deletes a bridge, a
//! veth, an address, a default route, a namespace mount, lnet's nftables table or one of its
//! elements, a sandbox's DNS redirect, or leaves an lnet-shaped interface behind. Each time
//! `doctor` must name what differs (and nothing when all agree), `repair` must put it back
//! without restarting anything, and traffic must flow again.

mod common;

use common::*;

use lnet_kernel::nft::{Batch, Family, NftSocket};
use lnet_kernel::{Netns, VethSpec};

/// The findings as `kind object: what` lines.
fn findings(ctrl: &lnet_core::Controller) -> Vec<String> {
    let report = ctrl.doctor();
    assert!(
        report.errors.is_empty(),
        "doctor errors: {:?}",
        report.errors
    );
    report
        .findings
        .iter()
        .map(|f| format!("{} {}: {}", f.kind, f.object, f.what))
        .collect()
}

#[test]
fn doctor_names_each_drift_and_repair_puts_it_back() {
    let Some(mut env) = common::env("doctor_names_each_drift_and_repair_puts_it_back") else {
        return;
    };
    let mut config = env.config();
    config.embedded_dns = true;
    std::fs::write(&config.host_resolv_conf, "nameserver 127.0.0.1\n").unwrap();
    env.restart_with(config);
    let ctrl = env.ctrl();
    let Pair { net, a, b, ea, eb } = pair(ctrl, "web", "10.61.0.0/24");
    let (a_ip, b_ip) = (ip4(&ea), ip4(&eb));
    let (bridge, host_if, ctr_if) = (bridge_name(&net), host_ifname(&ea), container_ifname(&ea));
    let gateway = pool_and_gateway(&net).1.addr();

    assert_eq!(
        findings(ctrl),
        Vec::<String>::new(),
        "a fresh world is clean"
    );
    let report = ctrl.doctor();
    assert_eq!(
        (report.networks, report.sandboxes, report.endpoints),
        (1, 2, 2)
    );
    assert_traffic(&a, a_ip, &b, b_ip, 7100);

    type Break = Box<dyn Fn()>;
    let a_key = a.key().unwrap();
    let cases: Vec<(&str, Break, Vec<String>)> = vec![
        (
            "the bridge deleted",
            Box::new({
                let bridge = bridge.clone();
                move || {
                    host_nl().delete_link(&bridge).unwrap();
                }
            }),
            vec![format!("missing network web: bridge {bridge}")],
        ),
        (
            "a veth deleted",
            Box::new({
                let host_if = host_if.clone();
                move || {
                    host_nl().delete_link(&host_if).unwrap();
                }
            }),
            vec![
                format!("missing sandbox a endpoint ea: veth {host_if}"),
                format!("missing sandbox a endpoint ea: interface {ctr_if}"),
            ],
        ),
        (
            "an address removed in the sandbox",
            Box::new({
                let (key, ctr_if) = (a_key.clone(), ctr_if.clone());
                move || {
                    let mut nl = ns_nl(&key);
                    let l = must_link(&mut nl, &ctr_if);
                    let addr = *addrs(&mut nl, &ctr_if)
                        .iter()
                        .find(|n| n.addr().is_ipv4())
                        .unwrap();
                    nl.del_address(l.index, addr).unwrap();
                }
            }),
            vec![format!(
                "missing sandbox a endpoint ea: address {a_ip}/24 on {ctr_if}"
            )],
        ),
        (
            "the default route removed",
            Box::new({
                let key = a_key.clone();
                move || {
                    let mut nl = ns_nl(&key);
                    nl.del_route(&lnet_kernel::Route::default_via(gateway))
                        .unwrap();
                }
            }),
            vec![format!("missing sandbox a: default route via {gateway}")],
        ),
        (
            "the default route replaced by one without a gateway",
            Box::new({
                let (key, ctr_if) = (a_key.clone(), ctr_if.clone());
                move || {
                    let mut nl = ns_nl(&key);
                    let eth = must_link(&mut nl, &ctr_if).index;
                    nl.replace_route(&lnet_kernel::Route {
                        gateway: None,
                        oif: Some(eth),
                        ..lnet_kernel::Route::default_via(gateway)
                    })
                    .unwrap();
                }
            }),
            vec![format!(
                "different sandbox a: default route without a gateway, not via {gateway}"
            )],
        ),
        (
            "lnet's firewall table deleted",
            Box::new(|| {
                let mut b = Batch::new();
                b.delete_table(Family::Inet, "lnet");
                NftSocket::new().unwrap().commit(&b).unwrap();
            }),
            vec!["missing firewall: table inet lnet".to_string()],
        ),
        (
            "the sandbox's DNS redirect flushed",
            Box::new({
                let key = a_key.clone();
                move || {
                    let mut b = Batch::new();
                    b.delete_table(Family::Ip, "lnetdns");
                    NftSocket::in_netns(&Netns::open(&key).unwrap())
                        .unwrap()
                        .commit(&b)
                        .unwrap();
                }
            }),
            vec!["missing sandbox a: redirect of 127.0.0.11:53".to_string()],
        ),
        (
            "the namespace's mount removed",
            Box::new({
                let key = a_key.clone();
                move || {
                    // The mount and its file go; the namespace lives on, held by lnet.
                    Netns::delete_at(&key).unwrap();
                }
            }),
            vec![format!(
                "missing sandbox a: network namespace {}",
                a_key.display()
            )],
        ),
        (
            "an lnet-shaped veth nobody recorded",
            Box::new({
                let bridge = bridge.clone();
                move || {
                    let mut nl = host_nl();
                    let br = must_link(&mut nl, &bridge).index;
                    nl.create_veth(VethSpec {
                        host_name: "veth0ddba11",
                        host_mtu: None,
                        host_master: Some(br),
                        host_up: false,
                        peer_name: "veth0ddba11p",
                        peer_ns: None,
                        peer_mac: None,
                        peer_mtu: None,
                    })
                    .unwrap();
                }
            }),
            vec!["extra network web: interface veth0ddba11".to_string()],
        ),
    ];
    for (what, break_it, expected) in cases {
        break_it();
        let found = findings(ctrl);
        for e in &expected {
            assert!(
                found.iter().any(|f| f.starts_with(e.as_str())),
                "{what}: doctor should say {e:?}; it says {found:#?}"
            );
        }
        let report = ctrl.repair().unwrap();
        assert!(report.errors.is_empty(), "{what}: repair errors {report:?}");
        assert_eq!(
            findings(ctrl),
            Vec::<String>::new(),
            "{what}: still differs after repair"
        );
        assert_traffic(&a, a_ip, &b, b_ip, 7200);
        // The resolver answers again too (its sockets were kept, its redirect is back).
        let dns = Netns::open(a.key().unwrap())
            .unwrap()
            .run(|| {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
                    .unwrap();
                let q = [
                    0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'b', 0, 0, 1, 0, 1,
                ];
                s.send_to(&q, "127.0.0.11:53").unwrap();
                let mut buf = [0u8; 512];
                s.recv(&mut buf).map(|n| buf[..n].to_vec())
            })
            .unwrap()
            .unwrap_or_else(|e| panic!("{what}: no DNS answer after repair: {e}"));
        assert_eq!(dns[3] & 0x0f, 0, "{what}: rcode");
        assert_eq!(
            &dns[dns.len() - 4..],
            &match b_ip {
                std::net::IpAddr::V4(v) => v.octets(),
                _ => unreachable!(),
            }
        );
    }
}

/// A bridge port lists no kind, so an interface that only looks like lnet's host end (its
/// name, on lnet's bridge) is looked up before it is called lnet's: another engine's VXLAN device
/// stays, and neither `doctor` nor a start names or removes it.
#[test]
fn a_lookalike_interface_that_is_not_a_veth_is_left_alone() {
    let Some(mut env) = common::env("a_lookalike_interface_that_is_not_a_veth_is_left_alone")
    else {
        return;
    };
    let ctrl = env.ctrl();
    let net = bridge_on(ctrl, "web", "10.62.0.0/24");
    let bridge = bridge_name(&net);
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    };
    ip(&[
        "link",
        "add",
        "veth0ddba12",
        "type",
        "vxlan",
        "id",
        "42",
        "dstport",
        "4789",
    ]);
    ip(&["link", "set", "veth0ddba12", "master", &bridge]);
    // Its veth twin is lnet's by every sign, and is found.
    let br = must_link(&mut host_nl(), &bridge).index;
    host_nl()
        .create_veth(VethSpec {
            host_name: "veth0ddba13",
            host_master: Some(br),
            peer_name: "veth0ddba13p",
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        findings(ctrl),
        vec!["extra network web: interface veth0ddba13 (no record names it)".to_string()]
    );
    drop(net);
    env.restart();
    assert_eq!(findings(env.ctrl()), Vec::<String>::new());
    let mut nl = host_nl();
    assert!(nl.link_by_name("veth0ddba13").unwrap().is_none());
    let kept = must_link(&mut nl, "veth0ddba12");
    assert_eq!(kept.master, Some(br));
}
