//! Addresses and routes. Each test runs in its own fresh network namespace.

use std::net::IpAddr;

use lnet_kernel::testing::enter_new_netns;
use lnet_kernel::{
    AddrFlags, BridgeOptions, IpFamily, IpNet, Link, Netlink, Route, VethSpec, skip_unless_root,
};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A bridge that is up and has carrier (a veth pair, both ends up, with one
/// end enslaved), so IPv6 DAD and routes behave as on a real network.
fn bridge_with_carrier(nl: &mut Netlink, name: &str) -> Link {
    let br = nl.ensure_bridge(name, BridgeOptions::default()).unwrap();
    nl.set_up(br.index).unwrap();
    let h = nl
        .create_veth(VethSpec {
            host_name: &format!("{name}-h"),
            host_master: Some(br.index),
            host_up: true,
            peer_name: &format!("{name}-p"),
            ..Default::default()
        })
        .unwrap();
    let p = nl.link_by_name(&format!("{name}-p")).unwrap().unwrap();
    nl.set_up(p.index).unwrap();
    let _ = h;
    br
}

#[test]
fn addresses_add_list_delete() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    let mut nl = Netlink::new().unwrap();
    let br = nl.ensure_bridge("br-a", BridgeOptions::default()).unwrap();
    let i = br.index;
    let v4 = net("10.99.0.1/24");
    let v4b = net("10.98.5.1/16");
    let v6 = net("fd00:99::1/64");

    assert!(nl.add_address(i, v4, AddrFlags::default()).unwrap());
    assert!(!nl.add_address(i, v4, AddrFlags::default()).unwrap());
    assert!(nl.add_address(i, v4b, AddrFlags::default()).unwrap());
    assert!(nl.add_address(i, v6, AddrFlags { nodad: true }).unwrap());
    assert!(!nl.add_address(i, v6, AddrFlags { nodad: true }).unwrap());

    let mine = nl.addresses(Some(i)).unwrap();
    assert!(mine.iter().all(|(idx, _)| *idx == i), "{mine:?}");
    for n in [v4, v4b, v6] {
        assert!(mine.contains(&(i, n)), "{n} missing from {mine:?}");
    }
    // Unfiltered listing also has loopback's 127.0.0.1/8.
    let all = nl.addresses(None).unwrap();
    assert!(all.contains(&(1, net("127.0.0.1/8"))), "{all:?}");
    assert!(all.contains(&(i, v4)));

    assert!(nl.del_address(i, v4).unwrap());
    assert!(!nl.del_address(i, v4).unwrap());
    assert!(nl.del_address(i, v6).unwrap());
    assert!(!nl.del_address(i, v6).unwrap());
    let mine = nl.addresses(Some(i)).unwrap();
    assert_eq!(mine, vec![(i, v4b)]);

    // Errors name address and link; a missing link is "not found".
    let err = nl
        .add_address(9999, net("10.1.1.1/24"), AddrFlags::default())
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("10.1.1.1/24") && text.contains("9999"),
        "{text}"
    );
    nl.del_address(9999, v4).unwrap_err();
}

#[test]
fn ipv6_nodad_address_is_not_tentative() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    let mut nl = Netlink::new().unwrap();
    let br = bridge_with_carrier(&mut nl, "br-6");
    let nodad = net("fd00:6::2/64");
    let dad = net("fd00:6::3/64");
    nl.add_address(br.index, nodad, AddrFlags { nodad: true })
        .unwrap();
    nl.add_address(br.index, dad, AddrFlags::default()).unwrap();

    let infos = nl.address_infos(Some(br.index)).unwrap();
    let a = infos.iter().find(|a| a.net == nodad).unwrap();
    assert!(!a.is_tentative(), "{a:?}");
    assert!(!a.is_dad_failed(), "{a:?}");
    assert_ne!(a.flags & lnet_kernel::addr::IFA_F_NODAD, 0, "{a:?}");
    // The control: without nodad the address starts tentative.
    let b = infos.iter().find(|a| a.net == dad).unwrap();
    assert!(b.is_tentative(), "{b:?}");
}

#[test]
fn ipv4_routes() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    let mut nl = Netlink::new().unwrap();
    let br = bridge_with_carrier(&mut nl, "br-r4");
    let i = br.index;
    nl.add_address(i, net("10.97.0.1/24"), AddrFlags::default())
        .unwrap();

    let routes = nl.routes(IpFamily::V4).unwrap();
    // The kernel's connected route for the address.
    assert!(
        routes.contains(&Route::on_link(net("10.97.0.0/24"), i)),
        "{routes:?}"
    );

    // Default route via a gateway; add twice is fine.
    let default = Route::default_via(ip("10.97.0.254"));
    assert!(nl.add_route(&default).unwrap());
    assert!(!nl.add_route(&default).unwrap());
    let routes = nl.routes(IpFamily::V4).unwrap();
    let d: Vec<_> = routes.iter().filter(|r| r.is_default()).collect();
    assert_eq!(d.len(), 1, "{routes:?}");
    assert_eq!(d[0].gateway, Some(ip("10.97.0.254")));
    assert_eq!(d[0].oif, Some(i), "kernel resolves the output interface");
    assert!(!d[0].scope_link);

    // EEXIST is reported for a different gateway too: add keeps the old one.
    assert!(
        !nl.add_route(&Route::default_via(ip("10.97.0.253")))
            .unwrap()
    );
    // Replace switches it.
    nl.replace_route(&Route::default_via(ip("10.97.0.253")))
        .unwrap();
    let d: Vec<_> = nl
        .routes(IpFamily::V4)
        .unwrap()
        .into_iter()
        .filter(|r| r.is_default())
        .collect();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].gateway, Some(ip("10.97.0.253")));

    // Deleting with the wrong gateway does not match.
    assert!(!nl.del_route(&default).unwrap());
    assert!(
        nl.del_route(&Route::default_via(ip("10.97.0.253")))
            .unwrap()
    );
    assert!(
        !nl.del_route(&Route::default_via(ip("10.97.0.253")))
            .unwrap()
    );
    assert!(
        !nl.routes(IpFamily::V4)
            .unwrap()
            .iter()
            .any(Route::is_default)
    );

    // A prefix via a gateway, and an on-link prefix; host bits are ignored.
    let via = Route {
        dst: net("10.50.0.0/16"),
        gateway: Some(ip("10.97.0.2")),
        oif: Some(i),
        scope_link: false,
    };
    let onlink = Route::on_link(net("10.60.1.7/24"), i);
    assert!(nl.add_route(&via).unwrap());
    assert!(nl.add_route(&onlink).unwrap());
    let routes = nl.routes(IpFamily::V4).unwrap();
    assert!(routes.contains(&via), "{routes:?}");
    assert!(
        routes.contains(&Route::on_link(net("10.60.1.0/24"), i)),
        "{routes:?}"
    );
    assert!(nl.del_route(&via).unwrap());
    assert!(nl.del_route(&onlink).unwrap());
    assert!(!nl.del_route(&onlink).unwrap());

    // Unreachable gateway: a clear error naming the route.
    let err = nl
        .add_route(&Route::default_via(ip("192.0.2.1")))
        .unwrap_err();
    eprintln!("unreachable gateway: {err}");
    assert!(err.to_string().contains("192.0.2.1"), "{err}");
}

#[test]
fn ipv6_routes() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    let mut nl = Netlink::new().unwrap();
    let br = bridge_with_carrier(&mut nl, "br-r6");
    let i = br.index;
    nl.add_address(i, net("fd00:97::1/64"), AddrFlags { nodad: true })
        .unwrap();

    let default = Route::default_via(ip("fd00:97::fe"));
    assert!(nl.add_route(&default).unwrap());
    assert!(!nl.add_route(&default).unwrap());
    let routes = nl.routes(IpFamily::V6).unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r.is_default() && r.gateway == Some(ip("fd00:97::fe")) && r.oif == Some(i)),
        "{routes:?}"
    );
    // The prefix route of the address (IPv6 routes have no scope).
    assert!(
        routes
            .iter()
            .any(|r| r.dst == net("fd00:97::/64") && r.oif == Some(i)),
        "{routes:?}"
    );

    nl.replace_route(&Route::default_via(ip("fd00:97::fd")))
        .unwrap();
    let d: Vec<_> = nl
        .routes(IpFamily::V6)
        .unwrap()
        .into_iter()
        .filter(|r| r.is_default())
        .collect();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].gateway, Some(ip("fd00:97::fd")));

    assert!(
        nl.del_route(&Route::default_via(ip("fd00:97::fd")))
            .unwrap()
    );
    assert!(
        !nl.del_route(&Route::default_via(ip("fd00:97::fd")))
            .unwrap()
    );

    let r = Route {
        dst: net("fd00:1234::/48"),
        gateway: Some(ip("fd00:97::2")),
        oif: None,
        scope_link: false,
    };
    assert!(nl.add_route(&r).unwrap());
    assert!(nl.del_route(&r).unwrap());
    assert!(!nl.del_route(&r).unwrap());
}
