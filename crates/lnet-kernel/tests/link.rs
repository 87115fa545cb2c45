//! Links: bridges, veth pairs (peer in another netns), set operations,
//! deletion. Each test runs in its own fresh network namespace.

use lnet_kernel::testing::{TempNetns, enter_new_netns};
use lnet_kernel::{BridgeOptions, KernelError, Netlink, VethSpec, skip_unless_root};

fn setup() -> Netlink {
    enter_new_netns().unwrap();
    Netlink::new().unwrap()
}

#[test]
fn ensure_bridge_is_idempotent() {
    skip_unless_root!();
    let mut nl = setup();
    let mac = [0x02, 0x42, 0x0a, 0x00, 0x00, 0x01];
    let before = nl.request_count();
    let br = nl
        .ensure_bridge(
            "br-t0",
            BridgeOptions {
                mtu: Some(1450),
                mac: Some(mac),
                alias: None,
            },
        )
        .unwrap();
    assert_eq!(
        nl.request_count() - before,
        2,
        "created and echoed in one request, its MTU set in a second"
    );
    assert_eq!(br.name, "br-t0");
    assert!(br.is_kind("bridge"));
    assert_eq!(br.mtu, 1450);
    assert_eq!(br.mac, Some(mac));
    assert!(!br.up, "bridges are created down");
    assert_eq!(nl.link_by_name("br-t0").unwrap().unwrap(), br);

    // Second time: same bridge, options not reapplied.
    let again = nl
        .ensure_bridge(
            "br-t0",
            BridgeOptions {
                mtu: Some(1300),
                mac: None,
                alias: Some("not applied either"),
            },
        )
        .unwrap();
    assert_eq!(again.index, br.index);
    assert_eq!(again.mtu, 1450);
    assert_eq!(again.alias, None);

    let links = nl.links().unwrap();
    assert_eq!(links.iter().filter(|l| l.name == "br-t0").count(), 1);
    assert!(links.iter().any(|l| l.name == "lo" && l.up));
}

#[test]
fn a_bridge_is_made_with_its_alias_and_the_alias_reads_back_everywhere() {
    skip_unless_root!();
    let mut nl = setup();
    let mark = format!("lnet:network:{}", "0a1b2c3d".repeat(8));
    let br = nl
        .ensure_bridge(
            "br-mark",
            BridgeOptions {
                alias: Some(&mark),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(br.alias.as_deref(), Some(mark.as_str()));
    // As the kernel holds it: by name (decoded), in a dump of bridges (read from the
    // bytes), in a dump of every link.
    let by_name = nl.link_by_name("br-mark").unwrap().unwrap();
    assert_eq!(by_name.alias.as_deref(), Some(mark.as_str()));
    let dumped = |nl: &mut Netlink| {
        nl.links_of_kind("bridge")
            .unwrap()
            .into_iter()
            .find(|l| l.name == "br-mark")
            .unwrap()
            .alias
    };
    assert_eq!(dumped(&mut nl).as_deref(), Some(mark.as_str()));
    let all = nl.links().unwrap();
    let l = all.iter().find(|l| l.name == "br-mark").unwrap();
    assert_eq!(l.alias.as_deref(), Some(mark.as_str()));
    assert_eq!(all.iter().find(|l| l.name == "lo").unwrap().alias, None);

    // Changed, then removed.
    nl.set_alias(br.index, "someone else's").unwrap();
    assert_eq!(dumped(&mut nl).as_deref(), Some("someone else's"));
    nl.set_alias(br.index, "").unwrap();
    assert_eq!(dumped(&mut nl), None);
    assert_eq!(nl.link_by_name("br-mark").unwrap().unwrap().alias, None);

    // Too long: refused before anything is asked of the kernel or made.
    let long = "x".repeat(lnet_kernel::MAX_ALIAS_LEN + 1);
    let before = nl.request_count();
    nl.set_alias(br.index, &long).unwrap_err();
    nl.ensure_bridge(
        "br-long",
        BridgeOptions {
            alias: Some(&long),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(nl.request_count(), before);
    assert!(nl.link_by_name("br-long").unwrap().is_none());
}

#[test]
fn ensure_bridge_rejects_other_kind() {
    skip_unless_root!();
    let mut nl = setup();
    nl.create_veth(VethSpec {
        host_name: "notbr",
        peer_name: "notbr-p",
        ..Default::default()
    })
    .unwrap();
    let err = nl
        .ensure_bridge("notbr", BridgeOptions::default())
        .unwrap_err();
    match &err {
        KernelError::WrongKind { name, found, .. } => {
            assert_eq!(name, "notbr");
            assert_eq!(found.as_deref(), Some("veth"));
        }
        other => panic!("unexpected error {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("notbr") && text.contains("veth"), "{text}");
}

#[test]
fn veth_peer_created_in_other_netns() {
    skip_unless_root!();
    let mut nl = setup();
    let br = nl.ensure_bridge("br-v", BridgeOptions::default()).unwrap();
    let ns = TempNetns::new().unwrap();
    let peer_mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];

    let before = nl.request_count();
    let host_index = nl
        .create_veth(VethSpec {
            host_name: "veth-h0",
            host_mtu: Some(1400),
            host_master: Some(br.index),
            peer_name: "eth0",
            peer_ns: Some(&ns),
            peer_mac: Some(peer_mac),
            peer_mtu: Some(1400),
            ..Default::default()
        })
        .unwrap();
    // One request: the kernel echoes the new link (NLM_F_ECHO), so the
    // index comes back without a lookup.
    assert_eq!(nl.request_count() - before, 1);

    let host = nl.link_by_index(host_index).unwrap().unwrap();
    assert_eq!(host.name, "veth-h0");
    assert!(host.is_kind("veth"));
    assert_eq!(host.mtu, 1400);
    assert_eq!(host.master, Some(br.index));
    assert!(!host.up);
    // The peer is not in our namespace...
    assert!(nl.link_by_name("eth0").unwrap().is_none());

    // ...but in the other one, with its final name, MAC and MTU.
    let mut inside = Netlink::in_netns(&ns).unwrap();
    let peer = inside.link_by_name("eth0").unwrap().unwrap();
    assert!(peer.is_kind("veth"));
    assert_eq!(peer.mac, Some(peer_mac));
    assert_eq!(peer.mtu, 1400);
    assert_eq!(peer.master, None);
    assert!(!peer.up);

    // Host name taken: EEXIST, nothing created.
    let err = nl
        .create_veth(VethSpec {
            host_name: "veth-h0",
            peer_name: "eth1",
            peer_ns: Some(&ns),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.is_exists(), "{err}");
    assert_eq!(err.errno(), Some(libc::EEXIST));
    let text = err.to_string();
    assert!(
        text.contains("veth-h0") && text.contains("eth1"),
        "error should name the objects: {text}"
    );
    assert!(inside.link_by_name("eth1").unwrap().is_none());

    // Peer name taken in the target namespace: also EEXIST, host end not
    // left behind.
    let err = nl
        .create_veth(VethSpec {
            host_name: "veth-h1",
            peer_name: "eth0",
            peer_ns: Some(&ns),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.is_exists(), "{err}");
    eprintln!("peer-name clash error: {err}");
    assert!(nl.link_by_name("veth-h1").unwrap().is_none());

    // Host end created up; peer brought up from inside: carrier.
    let idx = nl
        .create_veth(VethSpec {
            host_name: "veth-h2",
            host_up: true,
            host_master: Some(br.index),
            peer_name: "eth2",
            peer_ns: Some(&ns),
            ..Default::default()
        })
        .unwrap();
    let h2 = nl.link_by_index(idx).unwrap().unwrap();
    assert!(h2.up);
    let p2 = inside.link_by_name("eth2").unwrap().unwrap();
    assert!(!p2.up);
    inside.set_up(p2.index).unwrap();
    let p2 = inside.link_by_index(p2.index).unwrap().unwrap();
    assert!(p2.up);
    assert!(p2.lower_up);

    // Deleting the host end removes the peer too.
    assert!(nl.delete_link("veth-h0").unwrap());
    assert!(inside.link_by_name("eth0").unwrap().is_none());
}

#[test]
fn set_operations_are_reflected() {
    skip_unless_root!();
    let mut nl = setup();
    let br = nl
        .ensure_bridge("br-ops", BridgeOptions::default())
        .unwrap();
    let i = br.index;

    nl.set_up(i).unwrap();
    nl.set_up(i).unwrap();
    assert!(nl.link_by_name("br-ops").unwrap().unwrap().up);
    nl.set_down(i).unwrap();
    nl.set_down(i).unwrap();
    assert!(!nl.link_by_name("br-ops").unwrap().unwrap().up);

    nl.set_mtu(i, 1280).unwrap();
    assert_eq!(nl.link_by_index(i).unwrap().unwrap().mtu, 1280);

    let mac = [0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc];
    nl.set_mac(i, mac).unwrap();
    assert_eq!(nl.link_by_index(i).unwrap().unwrap().mac, Some(mac));

    nl.rename(i, "br-renamed").unwrap();
    assert!(nl.link_by_name("br-ops").unwrap().is_none());
    let renamed = nl.link_by_name("br-renamed").unwrap().unwrap();
    assert_eq!(renamed.index, i);

    // Renaming while up.
    nl.set_up(i).unwrap();
    match nl.rename(i, "br-live") {
        Ok(()) => eprintln!("kernel allows renaming an up bridge"),
        Err(e) => eprintln!("kernel refuses renaming an up bridge: {e}"),
    }
    nl.set_down(i).unwrap();

    // Master on / off.
    let v = nl
        .create_veth(VethSpec {
            host_name: "veth-m",
            peer_name: "veth-m-p",
            ..Default::default()
        })
        .unwrap();
    nl.set_master(v, Some(i)).unwrap();
    assert_eq!(nl.link_by_index(v).unwrap().unwrap().master, Some(i));
    nl.set_master(v, None).unwrap();
    assert_eq!(nl.link_by_index(v).unwrap().unwrap().master, None);

    // Rename onto an existing name.
    let err = nl.rename(v, "lo").unwrap_err();
    assert!(err.is_exists(), "{err}");

    // Errors on a missing link name the index and are "not found".
    let err = nl.set_up(9999).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("9999"), "{err}");
    let err = nl.set_master(v, Some(9999)).unwrap_err();
    eprintln!("bad master error: {err}");
    assert!(err.to_string().contains("9999"), "{err}");

    // Invalid names never reach the kernel.
    let err = nl.rename(v, "this-name-is-too-long").unwrap_err();
    assert!(matches!(err, KernelError::InvalidArgument { .. }), "{err}");
}

#[test]
fn delete_link_is_idempotent() {
    skip_unless_root!();
    let mut nl = setup();
    let br = nl
        .ensure_bridge("br-del", BridgeOptions::default())
        .unwrap();
    assert!(nl.delete_link("br-del").unwrap());
    assert!(!nl.delete_link("br-del").unwrap());
    assert!(nl.link_by_name("br-del").unwrap().is_none());
    assert!(!nl.delete_link_index(br.index).unwrap());

    let br = nl
        .ensure_bridge("br-del", BridgeOptions::default())
        .unwrap();
    assert!(nl.delete_link_index(br.index).unwrap());
    assert!(!nl.delete_link_index(br.index).unwrap());
    assert!(nl.link_by_index(br.index).unwrap().is_none());
    nl.delete_link_index(0).unwrap_err();
    // Loopback cannot be deleted: a real error, not "absent".
    let err = nl.delete_link("lo").unwrap_err();
    assert!(!err.is_not_found(), "{err}");
}

#[test]
fn move_link_to_netns() {
    skip_unless_root!();
    let mut nl = setup();
    let ns = TempNetns::new().unwrap();
    nl.create_veth(VethSpec {
        host_name: "mv-h",
        peer_name: "mv-p",
        ..Default::default()
    })
    .unwrap();
    let p = nl.link_by_name("mv-p").unwrap().unwrap();
    nl.move_to_netns(p.index, &ns).unwrap();
    assert!(nl.link_by_name("mv-p").unwrap().is_none());
    let mut inside = Netlink::in_netns(&ns).unwrap();
    assert!(inside.link_by_name("mv-p").unwrap().is_some());
}

#[test]
fn hairpin_mode_of_a_bridge_port() {
    skip_unless_root!();
    let mut nl = setup();
    let br = nl.ensure_bridge("br-hp", BridgeOptions::default()).unwrap();
    let port = nl
        .create_veth(VethSpec {
            host_name: "vhp0",
            host_master: Some(br.index),
            peer_name: "vhp1",
            ..Default::default()
        })
        .unwrap();
    // Bridge ports start with hairpin off; other links are not ports.
    assert_eq!(
        nl.link_by_index(port).unwrap().unwrap().hairpin,
        Some(false)
    );
    let peer = nl.link_by_name("vhp1").unwrap().unwrap();
    assert_eq!(peer.hairpin, None);
    assert_eq!(br.hairpin, None);

    nl.set_hairpin(port, true).unwrap();
    assert_eq!(nl.link_by_index(port).unwrap().unwrap().hairpin, Some(true));
    // iproute2 reads the same port flag.
    if lnet_kernel::testing::require_tool("hairpin_mode_of_a_bridge_port: the check with ip", "ip")
    {
        let out = std::process::Command::new("ip")
            .args(["-d", "link", "show", "vhp0"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("hairpin on"), "{text}");
    }
    nl.set_hairpin(port, true).unwrap();
    let links = nl.links().unwrap();
    let listed = links.iter().find(|l| l.index == port).unwrap();
    assert_eq!(listed.hairpin, Some(true));

    nl.set_hairpin(port, false).unwrap();
    assert_eq!(
        nl.link_by_index(port).unwrap().unwrap().hairpin,
        Some(false)
    );

    // Isolation is another flag of the same port, set and read back alone.
    assert_eq!(listed.isolated, Some(false));
    nl.set_isolated(port, true).unwrap();
    let l = nl.link_by_index(port).unwrap().unwrap();
    assert_eq!((l.isolated, l.hairpin), (Some(true), Some(false)));
    nl.set_isolated(port, false).unwrap();
    assert_eq!(
        nl.link_by_index(port).unwrap().unwrap().isolated,
        Some(false)
    );

    // Not a bridge port.
    let e = nl.set_hairpin(peer.index, true).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EOPNOTSUPP), "{e}");
    assert_eq!(nl.link_by_index(peer.index).unwrap().unwrap().hairpin, None);
}

#[test]
fn bridge_ports_and_links_of_a_kind_match_the_full_dump() {
    skip_unless_root!();
    let mut nl = setup();
    let br = nl.ensure_bridge("br-bp", BridgeOptions::default()).unwrap();
    let other = nl.ensure_bridge("br-bq", BridgeOptions::default()).unwrap();
    let port = |nl: &mut Netlink, name: &str, peer: &str, master: u32| {
        nl.create_veth(VethSpec {
            host_name: name,
            host_master: Some(master),
            host_up: true,
            peer_name: peer,
            ..Default::default()
        })
        .unwrap()
    };
    let (a, b, c) = (
        port(&mut nl, "vbp0", "vbp0p", br.index),
        port(&mut nl, "vbp1", "vbp1p", br.index),
        port(&mut nl, "vbq0", "vbq0p", other.index),
    );
    nl.set_hairpin(a, true).unwrap();
    nl.set_isolated(b, true).unwrap();
    let full = nl.links().unwrap();
    // A dump reads its answers from their bytes; a lookup decodes the whole message: the
    // two agree on every link.
    for l in &full {
        assert_eq!(Some(l), nl.link_by_index(l.index).unwrap().as_ref());
    }

    // Only the ports, each as the full dump has it, less its kind.
    let ports = nl.bridge_ports().unwrap();
    let mut names: Vec<&str> = ports.iter().map(|l| l.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["vbp0", "vbp1", "vbq0"]);
    for p in &ports {
        let mut want = full.iter().find(|l| l.index == p.index).unwrap().clone();
        assert_eq!(want.kind.as_deref(), Some("veth"));
        want.kind = None;
        assert_eq!(p, &want);
    }
    let flags = |i: u32| {
        let p = ports.iter().find(|l| l.index == i).unwrap();
        (p.master, p.hairpin, p.isolated)
    };
    assert_eq!(flags(a), (Some(br.index), Some(true), Some(false)));
    assert_eq!(flags(b), (Some(br.index), Some(false), Some(true)));
    assert_eq!(flags(c), (Some(other.index), Some(false), Some(false)));

    // Of a kind: the two bridges and nothing else, as the full dump has them.
    let bridges = nl.links_of_kind("bridge").unwrap();
    let mut names: Vec<&str> = bridges.iter().map(|l| l.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["br-bp", "br-bq"]);
    for l in &bridges {
        assert_eq!(Some(l), full.iter().find(|f| f.index == l.index));
    }
    assert_eq!(nl.links_of_kind("veth").unwrap().len(), 6);
    assert!(nl.links_of_kind("vxlan").unwrap().is_empty());
}

#[test]
fn a_bridge_keeps_the_mtu_it_was_made_with_when_its_ports_come_and_go() {
    skip_unless_root!();
    let mut nl = setup();
    let br = nl
        .ensure_bridge(
            "br-mtu",
            BridgeOptions {
                mtu: Some(9000),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(br.mtu, 9000);
    for mtu in [9000, 1400] {
        nl.create_veth(VethSpec {
            host_name: "vmtu0",
            host_master: Some(br.index),
            host_mtu: Some(mtu),
            host_up: true,
            peer_name: "vmtu1",
            ..Default::default()
        })
        .unwrap();
        assert!(nl.delete_link("vmtu0").unwrap());
        // The kernel would take a bridge whose MTU came with its creation back to 1500
        // (or down to its smallest port's); this one was set and stays set.
        assert_eq!(nl.link_by_index(br.index).unwrap().unwrap().mtu, 9000);
    }
}

#[test]
fn a_macvlan_is_made_in_another_namespace_on_a_parent_here() {
    skip_unless_root!();
    let mut nl = setup();
    // The parent: one end of a veth pair (a LAN port stands in).
    nl.create_veth(VethSpec {
        host_name: "lan0",
        peer_name: "lan0p",
        host_up: true,
        ..Default::default()
    })
    .unwrap();
    let parent = nl.link_by_name("lan0").unwrap().unwrap();
    let ns = TempNetns::new().unwrap();
    let mac = [0x02, 0x42, 0x0a, 0x00, 0x00, 0x07];
    let made = nl
        .create_sublink(lnet_kernel::SubLinkSpec {
            name: "eth0",
            kind: lnet_kernel::SubLinkKind::Macvlan(lnet_kernel::MacvlanMode::Private),
            parent: parent.index,
            ns: Some(&ns),
            mac: Some(mac),
            mtu: None,
            up: false,
        })
        .unwrap();
    assert_eq!(made, None, "made in another namespace: its index is there");
    assert!(nl.link_by_name("eth0").unwrap().is_none(), "made here");
    let mut inside = Netlink::in_netns(&ns).unwrap();
    let l = inside.link_by_name("eth0").unwrap().unwrap();
    assert!(l.is_kind("macvlan"), "{l:?}");
    assert_eq!(l.mac, Some(mac));
    // The same name again there: taken.
    let again = nl.create_sublink(lnet_kernel::SubLinkSpec {
        name: "eth0",
        kind: lnet_kernel::SubLinkKind::Macvlan(lnet_kernel::MacvlanMode::Bridge),
        parent: parent.index,
        ns: Some(&ns),
        mac: None,
        mtu: None,
        up: false,
    });
    assert!(again.unwrap_err().is_exists());
}

#[test]
fn the_kind_probe_tells_what_the_kernel_has_and_makes_nothing() {
    skip_unless_root!();
    let mut nl = setup();
    let before = nl.links().unwrap().len();
    for kind in ["macvlan", "veth", "bridge"] {
        assert!(nl.kind_supported(kind).unwrap(), "{kind}");
    }
    assert!(!nl.kind_supported("nosuchkind").unwrap());
    // What this machine lacks is answered too, whichever way (ipvlan, vlan, dummy).
    for kind in ["ipvlan", "vlan", "dummy"] {
        let _ = nl.kind_supported(kind).unwrap();
    }
    assert_eq!(nl.links().unwrap().len(), before, "the probe made a link");
}
