//! nf_tables over netlink, each test in its own network namespace. What was
//! programmed is checked with `nft -j list ruleset`, run from the test's
//! thread so that it sees the test's namespace (lnet itself never runs nft).

use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use lnet_kernel::nft::*;
use lnet_kernel::testing::{TempNetns, enter_new_netns};
use lnet_kernel::{AddrFlags, Netlink, Netns, Route, VethSpec, skip_unless_root, sysctl};
use serde_json::{Value, json};

const T: &str = "lnet";
const KEY: [DataType; 3] = [
    DataType::Ipv4Addr,
    DataType::InetProto,
    DataType::InetService,
];
const VAL: [DataType; 2] = [DataType::Ipv4Addr, DataType::InetService];

macro_rules! setup {
    ($name:literal) => {
        skip_unless_root!();
        if !lnet_kernel::testing::require_tool($name, "nft") {
            return;
        }
        enter_new_netns().unwrap();
    };
}

/// `nft -j list ruleset` of the calling thread's namespace, as the list of
/// objects under `"nftables"` without `metainfo`.
fn ruleset() -> Vec<Value> {
    let out = Command::new("nft")
        .args(["-j", "list", "ruleset"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o.get("metainfo").is_none())
        .cloned()
        .collect()
}

fn ruleset_text() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The object of kind `kind` (`"table"`, `"chain"`, `"map"`, ...) named `name`.
fn object(rs: &[Value], kind: &str, name: &str) -> Option<Value> {
    rs.iter()
        .filter_map(|o| o.get(kind))
        .find(|o| o["name"] == name)
        .cloned()
}

fn port_key(addr: [u8; 4], proto: u8, port: u16) -> Vec<u8> {
    Concat::new()
        .ipv4(Ipv4Addr::from(addr))
        .inet_proto(proto)
        .inet_service(port)
        .build()
}

fn port_val(addr: [u8; 4], port: u16) -> Vec<u8> {
    Concat::new()
        .ipv4(Ipv4Addr::from(addr))
        .inet_service(port)
        .build()
}

fn base(b: &mut Batch) {
    b.add_table(Family::Ip, T)
        .add_chain(&Chain::base(
            Family::Ip,
            T,
            "pre",
            ChainType::Nat,
            Hook::Prerouting,
            -100,
        ))
        .add_chain(
            &Chain::base(Family::Ip, T, "fwd", ChainType::Filter, Hook::Forward, 0)
                .policy(Policy::Accept),
        )
        .add_chain(&Chain::regular(Family::Ip, T, "isolate"))
        .add_set(&Set::map(Family::Ip, T, "ports", &KEY, &VAL))
        .add_set(&Set::new(Family::Ip, T, "bridges", &[DataType::IfName]))
        .add_set(&Set::vmap(Family::Ip, T, "verdicts", &[DataType::IfName]));
}

#[test]
fn ensure_twice_and_delete_twice() {
    setup!("ensure_twice_and_delete_twice");
    let mut nft = NftSocket::new().unwrap();
    let mut b = Batch::new();
    base(&mut b);
    assert_eq!(b.len(), 7);
    nft.commit(&b).unwrap();
    let first = ruleset();
    // Ensuring again is fine and changes nothing.
    nft.commit(&b).unwrap();
    assert_eq!(ruleset(), first);
    assert!(object(&first, "chain", "pre").is_some());
    assert!(object(&first, "map", "ports").is_some());
    assert!(object(&first, "set", "bridges").is_some());
    assert_eq!(nft.request_count(), 2);

    // Read the objects back over netlink.
    assert_eq!(nft.tables(Family::Ip).unwrap(), [T]);
    assert!(nft.tables(Family::Ip6).unwrap().is_empty());
    let mut chains = nft.chains(Family::Ip, T).unwrap();
    chains.sort_by(|a, b| a.name.cmp(&b.name));
    let summary: Vec<_> = chains
        .iter()
        .map(|c| (c.name.as_str(), c.hook, c.policy))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "fwd",
                Some((ChainType::Filter, Hook::Forward, 0)),
                Some(Policy::Accept)
            ),
            ("isolate", None, None),
            (
                "pre",
                Some((ChainType::Nat, Hook::Prerouting, -100)),
                Some(Policy::Accept)
            ),
        ]
    );
    let sets = nft.sets(Family::Ip, T).unwrap();
    let ports = sets.iter().find(|s| s.name == "ports").unwrap();
    assert_eq!(ports.key_len, 12);
    assert_eq!(ports.data_len, Some(8));
    assert_eq!(ports.field_lens, [4, 1, 2]);
    assert_eq!(ports.flags & set_flags::MAP, set_flags::MAP);
    let verdicts = sets.iter().find(|s| s.name == "verdicts").unwrap();
    assert_eq!(verdicts.data_type, Some(0xffff_ff00));
    assert_eq!(sets.len(), 3);

    // An existing base chain cannot be re-hooked by "ensuring" it.
    let mut moved = Batch::new();
    moved.add_chain(&Chain::base(
        Family::Ip,
        T,
        "pre",
        ChainType::Nat,
        Hook::Prerouting,
        -50,
    ));
    let e = nft.commit(&moved).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EOPNOTSUPP), "{e}");
    assert!(e.to_string().contains("add chain ip lnet pre"), "{e}");

    // ... but its policy can be changed.
    let mut pol = Batch::new();
    pol.add_chain(
        &Chain::base(Family::Ip, T, "fwd", ChainType::Filter, Hook::Forward, 0)
            .policy(Policy::Drop),
    );
    nft.commit(&pol).unwrap();
    let fwd = nft.chains(Family::Ip, T).unwrap();
    let fwd = fwd.iter().find(|c| c.name == "fwd").unwrap();
    assert_eq!(fwd.policy, Some(Policy::Drop));

    // create_table insists on a new table.
    let mut excl = Batch::new();
    excl.create_table(Family::Ip, T);
    let e = nft.commit(&excl).unwrap_err();
    assert!(e.is_exists(), "{e}");

    // Destroy is idempotent (Linux 6.3+) as long as the table exists.
    let mut d = Batch::new();
    d.destroy_set(Family::Ip, T, "bridges")
        .destroy_chain(Family::Ip, T, "isolate");
    nft.commit(&d).unwrap();
    nft.commit(&d).unwrap();
    let rs = ruleset();
    assert!(object(&rs, "set", "bridges").is_none());
    assert!(object(&rs, "chain", "isolate").is_none());
    let mut d = Batch::new();
    d.destroy_table(Family::Ip, T);
    nft.commit(&d).unwrap();
    assert!(ruleset().is_empty());
    nft.commit(&d).unwrap();
    // Without the table, destroying what would be in it is ENOENT.
    let mut d = Batch::new();
    d.destroy_set(Family::Ip, T, "bridges");
    let e = nft.commit(&d).unwrap_err();
    assert!(e.is_not_found(), "{e}");

    // Delete of something absent fails, naming it.
    let mut d = Batch::new();
    d.delete_table(Family::Ip, T);
    let e = nft.commit(&d).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("delete table ip lnet (message 1"), "{msg}");

    // An empty batch sends nothing.
    let before = nft.request_count();
    nft.commit(&Batch::new()).unwrap();
    assert_eq!(nft.request_count(), before);
}

#[test]
fn concat_map_elements() {
    setup!("concat_map_elements");
    let mut nft = NftSocket::new().unwrap();
    let mut b = Batch::new();
    base(&mut b);
    let e1 = Element::new(port_key([192, 0, 2, 1], 17, 8080)).data(port_val([10, 0, 0, 2], 80));
    let e2 = Element::new(port_key([192, 0, 2, 1], 6, 8443)).data(port_val([10, 0, 0, 3], 443));
    let e3 = Element::new(port_key([192, 0, 2, 9], 6, 22)).data(port_val([10, 0, 0, 4], 2222));
    b.add_elements(
        Family::Ip,
        T,
        "ports",
        &[e1.clone(), e2.clone(), e3.clone()],
    );
    nft.commit(&b).unwrap();

    let mut d = Batch::new();
    d.delete_elements(Family::Ip, T, "ports", std::slice::from_ref(&e2));
    nft.commit(&d).unwrap();
    // Deleting it again fails (ENOENT); destroying it again is fine.
    let e = nft.commit(&d).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(
        e.to_string()
            .contains("delete 1 element(s) of set ip lnet ports"),
        "{e}"
    );
    let mut d = Batch::new();
    d.destroy_elements(Family::Ip, T, "ports", std::slice::from_ref(&e2));
    nft.commit(&d).unwrap();
    // Adding an existing element with the same data is fine.
    let mut a = Batch::new();
    a.add_elements(Family::Ip, T, "ports", std::slice::from_ref(&e1));
    nft.commit(&a).unwrap();

    // Re-pointing an existing key needs delete + add (in one batch).
    let moved = Element::new(port_key([192, 0, 2, 1], 17, 8080)).data(port_val([10, 0, 0, 9], 80));
    let mut a = Batch::new();
    a.add_elements(Family::Ip, T, "ports", std::slice::from_ref(&moved));
    let e = nft.commit(&a).unwrap_err();
    assert!(e.is_exists(), "{e}");
    let mut a = Batch::new();
    a.delete_elements(Family::Ip, T, "ports", std::slice::from_ref(&moved))
        .add_elements(Family::Ip, T, "ports", std::slice::from_ref(&moved))
        .delete_elements(Family::Ip, T, "ports", std::slice::from_ref(&moved))
        .add_elements(Family::Ip, T, "ports", std::slice::from_ref(&e1));
    nft.commit(&a).unwrap();

    let rs = ruleset();
    let map = object(&rs, "map", "ports").unwrap();
    assert_eq!(
        map["type"],
        json!(["ipv4_addr", "inet_proto", "inet_service"])
    );
    assert_eq!(map["map"], json!("ipv4_addr . inet_service"));
    let mut elems = map["elem"].as_array().unwrap().clone();
    elems.sort_by_key(|e| e.to_string());
    let mut want = vec![
        json!([{"concat": ["192.0.2.1", "udp", 8080]}, {"concat": ["10.0.0.2", 80]}]),
        json!([{"concat": ["192.0.2.9", "tcp", 22]}, {"concat": ["10.0.0.4", 2222]}]),
    ];
    want.sort_by_key(|e| e.to_string());
    assert_eq!(elems, want);

    // Read back over netlink.
    let mut got = nft.set_elements(Family::Ip, T, "ports").unwrap();
    got.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(got, vec![e1, e3]);
    let e = nft.set_elements(Family::Ip, T, "nope").unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[test]
fn verdict_map_and_set_elements() {
    setup!("verdict_map_and_set_elements");
    let mut nft = NftSocket::new().unwrap();
    let mut b = Batch::new();
    base(&mut b);
    let br = |n: &str| Concat::new().ifname(n).build();
    let v1 = Element::new(br("br-a")).verdict(Verdict::Jump("isolate".into()));
    let v2 = Element::new(br("br-b")).verdict(Verdict::Drop);
    b.add_elements(Family::Ip, T, "verdicts", &[v1.clone(), v2.clone()]);
    b.add_elements(Family::Ip, T, "bridges", &[Element::new(br("br-a"))]);
    nft.commit(&b).unwrap();
    let mut got = nft.set_elements(Family::Ip, T, "verdicts").unwrap();
    got.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(got, vec![v1, v2]);
    let text = ruleset_text();
    assert!(text.contains("\"br-a\" : jump isolate"), "{text}");
    assert!(text.contains("\"br-b\" : drop"), "{text}");
    assert!(text.contains("elements = { \"br-a\" }"), "{text}");

    let mut f = Batch::new();
    f.flush_set(Family::Ip, T, "verdicts");
    nft.commit(&f).unwrap();
    assert!(
        nft.set_elements(Family::Ip, T, "verdicts")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn failing_batch_changes_nothing() {
    setup!("failing_batch_changes_nothing");
    let mut nft = NftSocket::new().unwrap();
    let mut b = Batch::new();
    base(&mut b);
    b.add_elements(
        Family::Ip,
        T,
        "ports",
        &[Element::new(port_key([192, 0, 2, 1], 17, 53)).data(port_val([10, 0, 0, 2], 53))],
    );
    // The last message refers to a set that does not exist.
    b.add_rule(
        &Rule::new(Family::Ip, T, "fwd")
            .in_set(&[Field::IifName], "missing")
            .drop(),
    );
    let e = nft.commit(&b).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.errno(), Some(libc::ENOENT), "{msg}");
    assert!(
        msg.contains("add rule in chain ip lnet fwd (message 9, at attribute 4/1)"),
        "{msg}"
    );
    assert!(ruleset().is_empty(), "{}", ruleset_text());

    // Two failures: the first one is named, the count of others given.
    let mut b = Batch::new();
    b.add_table(Family::Ip, T)
        .delete_chain(Family::Ip, T, "nope1")
        .delete_set(Family::Ip, T, "nope2");
    let msg = nft.commit(&b).unwrap_err().to_string();
    assert!(
        msg.contains("delete chain ip lnet nope1 (message 2")
            && msg.contains("1 more message(s) failed"),
        "{msg}"
    );
    assert!(ruleset().is_empty(), "{}", ruleset_text());

    // A kernel-side validation error comes with the message that caused it.
    let mut b = Batch::new();
    b.add_table(Family::Ip, T).add_chain(&Chain::base(
        Family::Ip,
        T,
        "out",
        ChainType::Route,
        Hook::Forward,
        0,
    ));
    let e = nft.commit(&b).unwrap_err();
    assert!(
        e.to_string().contains("add chain ip lnet out (message 2"),
        "{e}"
    );
    assert!(ruleset().is_empty(), "{}", ruleset_text());
}

#[test]
fn rules_round_trip() {
    setup!("rules_round_trip");
    let mut nft = NftSocket::new().unwrap();
    let mut b = Batch::new();
    base(&mut b);
    let key = [Field::IpDaddr, Field::L4Proto, Field::ThDport];
    let rules = [
        Rule::new(Family::Ip, T, "pre")
            .fib_daddr_local()
            .dnat_map(&key, "ports", Family::Ip),
        Rule::new(Family::Ip, T, "fwd")
            .ct_state(ct_state::ESTABLISHED | ct_state::RELATED)
            .accept(),
        Rule::new(Family::Ip, T, "fwd")
            .iifname("br-a")
            .oifname_not("br-a")
            .counter()
            .jump("isolate"),
        Rule::new(Family::Ip, T, "fwd").vmap(&[Field::OifName], "verdicts"),
        Rule::new(Family::Ip, T, "fwd")
            .saddr_in("10.0.0.0/8".parse().unwrap())
            .daddr_not_in("10.1.2.3/32".parse().unwrap())
            .l4proto(6)
            .dport(80)
            .in_set(&[Field::IifName], "bridges")
            .drop(),
        Rule::new(Family::Ip, T, "post")
            .not_in_set(&[Field::OifName], "bridges")
            .masquerade(),
        Rule::new(Family::Ip, T, "post")
            .snat_to("192.0.2.7".parse().unwrap(), Some(1000))
            .ret(),
    ];
    // nat statements only work in nat chains.
    b.add_chain(&Chain::base(
        Family::Ip,
        T,
        "post",
        ChainType::Nat,
        Hook::Postrouting,
        100,
    ));
    for r in &rules {
        b.add_rule(r);
    }
    nft.commit(&b).unwrap();
    let text = ruleset_text();
    for want in [
        "fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @ports",
        "ct state established,related accept",
        "iifname \"br-a\" oifname != \"br-a\" counter packets 0 bytes 0 jump isolate",
        "oifname vmap @verdicts",
        "ip saddr 10.0.0.0/8 ip daddr != 10.1.2.3 tcp dport 80 iifname @bridges drop",
        "oifname != @bridges masquerade",
        "snat to 192.0.2.7:1000",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }

    let fwd = nft.rules(Family::Ip, T, "fwd").unwrap();
    assert_eq!(fwd.len(), 4);
    for (got, want) in fwd.iter().zip(&rules[1..5]) {
        assert_eq!(got.exprs, want.exprs());
        assert_eq!((got.table.as_str(), got.chain.as_str()), (T, "fwd"));
    }
    let pre = nft.rules(Family::Ip, T, "pre").unwrap();
    assert_eq!(pre[0].exprs, rules[0].exprs());
    let post = nft.rules(Family::Ip, T, "post").unwrap();
    assert_eq!(post[0].exprs, rules[5].exprs());
    assert_eq!(post[1].exprs, rules[6].exprs());
    assert!(
        nft.rules(Family::Ip, T, "absent")
            .unwrap_or_default()
            .is_empty()
    );

    // Positions: before the first rule, after it; delete by handle.
    let h = fwd[0].handle;
    let mut b = Batch::new();
    b.add_rule(
        &Rule::new(Family::Ip, T, "fwd")
            .position(Position::Before(h))
            .iif(1)
            .drop(),
    )
    .add_rule(
        &Rule::new(Family::Ip, T, "fwd")
            .position(Position::After(h))
            .oif(1)
            .drop(),
    )
    .add_rule(
        &Rule::new(Family::Ip, T, "fwd")
            .position(Position::Prepend)
            .nfproto(Family::Ip)
            .accept(),
    );
    nft.commit(&b).unwrap();
    let fwd = nft.rules(Family::Ip, T, "fwd").unwrap();
    let firsts: Vec<_> = fwd.iter().map(|r| r.exprs[0].clone()).collect();
    let r0 = Reg::R32(0);
    assert_eq!(
        firsts[..4],
        [
            Expr::Meta {
                key: MetaKey::NfProto,
                dreg: r0
            },
            Field::Iif.load(r0),
            Expr::Ct {
                key: CtKey::State,
                dreg: r0
            },
            Field::Oif.load(r0),
        ]
    );
    let mut d = Batch::new();
    for r in &fwd[..3] {
        d.delete_rule(Family::Ip, T, "fwd", r.handle);
    }
    nft.commit(&d).unwrap();
    assert_eq!(
        nft.rules(Family::Ip, T, "fwd").unwrap().len(),
        fwd.len() - 3
    );
    let e = nft.commit(&d).unwrap_err();
    assert!(e.is_not_found(), "{e}");

    let mut f = Batch::new();
    f.flush_chain(Family::Ip, T, "fwd");
    nft.commit(&f).unwrap();
    assert!(nft.rules(Family::Ip, T, "fwd").unwrap().is_empty());
}

/// Plug `ns` into the test namespace with a veth: `host` gets `gw/24`, the
/// peer `eth0` in `ns` gets `addr/24` and a default route via `gw`.
fn plug(nl: &mut Netlink, host: &str, gw: &str, ns: &Netns, addr: &str) {
    nl.create_veth(VethSpec {
        host_name: host,
        host_up: true,
        peer_name: "eth0",
        peer_ns: Some(ns),
        ..Default::default()
    })
    .unwrap();
    let h = nl.link_by_name(host).unwrap().unwrap();
    nl.add_address(
        h.index,
        format!("{gw}/24").parse().unwrap(),
        AddrFlags { nodad: true },
    )
    .unwrap();
    let mut inside = Netlink::in_netns(ns).unwrap();
    let eth0 = inside.link_by_name("eth0").unwrap().unwrap();
    inside
        .add_address(
            eth0.index,
            format!("{addr}/24").parse().unwrap(),
            AddrFlags { nodad: true },
        )
        .unwrap();
    inside.set_up(eth0.index).unwrap();
    inside
        .replace_route(&Route::default_via(gw.parse().unwrap()))
        .unwrap();
}

#[test]
fn published_port_dnat_moves_a_datagram() {
    setup!("published_port_dnat_moves_a_datagram");
    // This (test) namespace is the router between a client and a server.
    let client = TempNetns::new().unwrap();
    let server = TempNetns::new().unwrap();
    let mut nl = Netlink::new().unwrap();
    plug(&mut nl, "vc", "10.1.0.1", &client, "10.1.0.2");
    plug(&mut nl, "vs", "10.2.0.1", &server, "10.2.0.2");
    sysctl::set("net.ipv4.ip_forward", "1").unwrap();

    let mut nft = NftSocket::in_netns(&Netns::current().unwrap()).unwrap();
    let mut b = Batch::new();
    base(&mut b);
    b.add_rule(&Rule::new(Family::Ip, T, "pre").fib_daddr_local().dnat_map(
        &[Field::IpDaddr, Field::L4Proto, Field::ThDport],
        "ports",
        Family::Ip,
    ));
    nft.commit(&b).unwrap();
    // Publishing is one element in one transaction.
    let mut publish = Batch::new();
    publish.add_elements(
        Family::Ip,
        T,
        "ports",
        &[Element::new(port_key([10, 1, 0, 1], 17, 8080)).data(port_val([10, 2, 0, 2], 5353))],
    );
    nft.commit(&publish).unwrap();

    let (rx, tx) = udp_pair(&server, &client);
    tx.send_to(b"published", "10.1.0.1:8080").unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = rx.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"published");
    assert_eq!(from.ip(), "10.1.0.2".parse::<std::net::IpAddr>().unwrap());
    // The reply is un-NATed by conntrack: it comes from the published
    // address.
    rx.send_to(b"reply", from).unwrap();
    let (n, from) = tx.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"reply");
    assert_eq!(from, "10.1.0.1:8080".parse().unwrap());

    // Unpublish: the next datagram (a new flow, another source port) is no
    // longer forwarded.
    let mut unpublish = Batch::new();
    unpublish.delete_elements(
        Family::Ip,
        T,
        "ports",
        &[Element::new(port_key([10, 1, 0, 1], 17, 8080))],
    );
    nft.commit(&unpublish).unwrap();
    let tx2 = client
        .run(|| UdpSocket::bind("10.1.0.2:0"))
        .unwrap()
        .unwrap();
    tx2.send_to(b"again", "10.1.0.1:8080").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    rx.recv_from(&mut buf).unwrap_err();
}

#[test]
fn interval_sets() {
    setup!("interval_sets");
    let mut nft = NftSocket::new().unwrap();
    let mut b = Batch::new();
    b.add_table(Family::Ip, T);
    b.add_set(&Set::new(Family::Ip, T, "nets", &[DataType::Ipv4Addr]).flags(set_flags::INTERVAL));
    let pair = [DataType::Ipv4Addr, DataType::InetService];
    b.add_set(&Set::new(Family::Ip, T, "pairs", &pair).flags(set_flags::INTERVAL));
    // Plain interval sets: a start element and an interval-end element.
    b.add_elements(
        Family::Ip,
        T,
        "nets",
        &[
            Element::new([10, 0, 0, 0]),
            Element::new([10, 0, 1, 0]).interval_end(),
        ],
    );
    // Concatenated interval sets: key and key end in one element.
    let from = Concat::new()
        .ipv4(Ipv4Addr::new(10, 0, 0, 0))
        .inet_service(1000)
        .build();
    let to = Concat::new()
        .ipv4(Ipv4Addr::new(10, 0, 0, 255))
        .inet_service(2000)
        .build();
    b.add_elements(
        Family::Ip,
        T,
        "pairs",
        &[Element::new(from.clone()).key_end(to.clone())],
    );
    nft.commit(&b).unwrap();
    let text = ruleset_text();
    assert!(text.contains("elements = { 10.0.0.0/24 }"), "{text}");
    assert!(
        text.contains("elements = { 10.0.0.0/24 . 1000-2000 }"),
        "{text}"
    );
    let pairs = nft.set_elements(Family::Ip, T, "pairs").unwrap();
    assert_eq!(pairs, vec![Element::new(from).key_end(to)]);
    let nets = nft.set_elements(Family::Ip, T, "nets").unwrap();
    assert!(
        nets.iter()
            .any(|e| e.key == [10, 0, 1, 0] && e.interval_end),
        "{nets:?}"
    );
}

#[test]
fn large_batches() {
    setup!("large_batches");
    const N: u16 = 3000;
    let mut nft = NftSocket::new().unwrap();
    let mut b = Batch::new();
    b.add_table(Family::Ip, T);
    b.add_set(&Set::new(Family::Ip, T, "svc", &[DataType::InetService]));
    // One message per element: thousands of ACKs must fit the receive
    // buffer, and the whole batch must fit one send.
    for port in 1..=N {
        b.add_elements(Family::Ip, T, "svc", &[Element::new(port.to_be_bytes())]);
    }
    nft.commit(&b).unwrap();
    // The dump spans many messages.
    let got = nft.set_elements(Family::Ip, T, "svc").unwrap();
    assert_eq!(got.len(), usize::from(N));

    // A large batch whose last message fails leaves nothing behind.
    let mut b = Batch::new();
    for port in N + 1..=2 * N {
        b.add_elements(Family::Ip, T, "svc", &[Element::new(port.to_be_bytes())]);
    }
    b.delete_set(Family::Ip, T, "absent");
    let e = nft.commit(&b).unwrap_err();
    assert!(
        e.to_string().contains(&format!("(message {}", N + 1)),
        "{e}"
    );
    assert_eq!(
        nft.set_elements(Family::Ip, T, "svc").unwrap().len(),
        usize::from(N)
    );
}

#[test]
fn inet_family_tables() {
    setup!("inet_family_tables");
    let mut nft = NftSocket::new().unwrap();
    let mut b = Batch::new();
    let f = Family::Inet;
    b.add_table(f, T)
        .add_chain(&Chain::base(
            f,
            T,
            "pre",
            ChainType::Nat,
            Hook::Prerouting,
            -100,
        ))
        .add_set(&Set::map(f, T, "ports", &KEY, &VAL));
    // In an inet table, `ip` matches need the `meta nfproto` dependency
    // first; the builder does not add it behind the caller's back.
    let rule = Rule::new(f, T, "pre").nfproto(Family::Ip).dnat_map(
        &[Field::IpDaddr, Field::L4Proto, Field::ThDport],
        "ports",
        Family::Ip,
    );
    b.add_rule(&rule);
    nft.commit(&b).unwrap();
    let text = ruleset_text();
    assert!(
        text.contains("dnat ip to ip daddr . meta l4proto . th dport map @ports"),
        "{text}"
    );
    assert_eq!(nft.rules(f, T, "pre").unwrap()[0].exprs, rule.exprs());
    // The ip family sees nothing of it.
    assert!(nft.tables(Family::Ip).unwrap().is_empty());
    assert_eq!(nft.tables(f).unwrap(), [T]);
}

/// Run `nft -f -` with `script` in the calling thread's namespace.
fn nft_script(script: &str) {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft -f: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bridge_family_forward_chain() {
    setup!("bridge_family_forward_chain");
    let mut nft = NftSocket::new().unwrap();
    let f = Family::Bridge;
    let mut b = Batch::new();
    b.add_table(f, T)
        .add_chain(&Chain::base(
            f,
            T,
            "forward",
            ChainType::Filter,
            Hook::Forward,
            -200,
        ))
        .add_set(&Set::new(f, T, "icc_off", &[DataType::IfName]))
        .add_elements(
            f,
            T,
            "icc_off",
            &[Element::new(*b"br-x\0\0\0\0\0\0\0\0\0\0\0\0")],
        );
    // Bridge ports are matched by name like any interface.
    let rule = Rule::new(f, T, "forward")
        .in_set(&[Field::IifName], "icc_off")
        .oifname("br-x")
        .drop();
    b.add_rule(&rule);
    nft.commit(&b).unwrap();

    let text = ruleset_text();
    for want in [
        "table bridge lnet",
        // -200 is the bridge family's named `filter` priority.
        "type filter hook forward priority filter;",
        "iifname @icc_off oifname \"br-x\" drop",
        "elements = { \"br-x\" }",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert_eq!(nft.tables(f).unwrap(), [T]);
    assert!(nft.tables(Family::Ip).unwrap().is_empty());
    let chains = nft.chains(f, T).unwrap();
    assert_eq!(chains.len(), 1);
    assert_eq!(
        chains[0].hook,
        Some((ChainType::Filter, Hook::Forward, -200))
    );
    let got = nft.rules(f, T, "forward").unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].exprs, rule.exprs());
    assert_eq!(got[0].family, f);
    let sets = nft.sets(f, T).unwrap();
    assert_eq!((sets[0].name.as_str(), sets[0].key_len), ("icc_off", 16));

    // `meta ibrname` / `obrname` live in nft_meta_bridge
    // (CONFIG_NFT_BRIDGE_META), which not every kernel has: where it is
    // missing the kernel refuses the rule exactly as it refuses nft's.
    let bri = Rule::new(f, T, "forward")
        .in_set(&[Field::BriIifName], "icc_off")
        .cmp(
            Field::BriOifName,
            CmpOp::Eq,
            b"br-x\0\0\0\0\0\0\0\0\0\0\0\0",
        )
        .drop();
    let mut b = Batch::new();
    b.add_rule(&bri);
    let by_nft = Command::new("nft")
        .args(["add", "rule", "bridge", T, "forward"])
        .args([
            "meta", "ibrname", "@icc_off", "meta", "obrname", "br-x", "drop",
        ])
        .output()
        .unwrap();
    match nft.commit(&b) {
        Ok(()) => {
            assert!(by_nft.status.success());
            let text = ruleset_text();
            let want = "meta ibrname @icc_off meta obrname \"br-x\" drop";
            assert!(text.contains(want), "missing {want:?} in\n{text}");
            let got = nft.rules(f, T, "forward").unwrap();
            assert_eq!(got[1].exprs, bri.exprs());
            // nft's rule decodes into the same expressions.
            assert_eq!(got[2].exprs, bri.exprs());
        }
        Err(e) => {
            assert_eq!(e.errno(), Some(libc::EOPNOTSUPP), "{e}");
            assert!(
                String::from_utf8_lossy(&by_nft.stderr).contains("Operation not supported"),
                "nft: {}",
                String::from_utf8_lossy(&by_nft.stderr)
            );
            eprintln!("bridge_family_forward_chain: no meta ibrname in this kernel");
            assert_eq!(nft.rules(f, T, "forward").unwrap().len(), 1);
        }
    }
}

#[test]
fn ct_status_and_comments() {
    setup!("ct_status_and_comments");
    let mut nft = NftSocket::new().unwrap();
    let mut b = Batch::new();
    base(&mut b);
    let commented = Rule::new(Family::Ip, T, "fwd")
        .ct_status(ct_status::SNAT | ct_status::DNAT)
        .accept()
        .comment("lnet: nat'd flows");
    let plain = Rule::new(Family::Ip, T, "fwd").counter();
    b.add_rule(&commented).add_rule(&plain);
    nft.commit(&b).unwrap();
    let text = ruleset_text();
    assert!(
        text.contains("ct status snat,dnat accept comment \"lnet: nat'd flows\""),
        "{text}"
    );
    let got = nft.rules(Family::Ip, T, "fwd").unwrap();
    assert_eq!(got[0].exprs, commented.exprs());
    assert_eq!(got[0].comment.as_deref(), Some("lnet: nat'd flows"));
    assert_eq!(got[1].comment, None);

    // A comment nft itself writes reads back the same way.
    nft_script(&format!(
        "add rule ip {T} isolate iifname \"br-y\" accept comment \"by nft\"\n"
    ));
    let got = nft.rules(Family::Ip, T, "isolate").unwrap();
    assert_eq!(got[0].comment.as_deref(), Some("by nft"));
    assert_eq!(
        got[0].exprs,
        Rule::new(Family::Ip, T, "isolate")
            .iifname("br-y")
            .accept()
            .exprs()
    );

    // A comment too long for nft is cut to nft's limit, and the kernel and
    // nft take the longest one there can be.
    let long = Rule::new(Family::Ip, T, "isolate")
        .accept()
        .comment(&"c".repeat(COMMENT_MAX_LEN + 10));
    let mut b = Batch::new();
    b.add_rule(&long);
    nft.commit(&b).unwrap();
    let got = nft.rules(Family::Ip, T, "isolate").unwrap();
    let max = "c".repeat(COMMENT_MAX_LEN);
    assert_eq!(got[1].comment.as_deref(), Some(max.as_str()));
    let text = ruleset_text();
    assert!(
        text.contains(&format!("accept comment \"{max}\"")),
        "{text}"
    );
}

#[test]
fn prepend_into_a_foreign_chain() {
    setup!("prepend_into_a_foreign_chain");
    // What iptables-nft or an admin would have made.
    nft_script(
        "table ip filter {\n\
         \tchain FORWARD { type filter hook forward priority 0; policy drop; }\n\
         }\n\
         add rule ip filter FORWARD counter\n",
    );
    let mut nft = NftSocket::new().unwrap();
    let mine = Rule::new(Family::Ip, "filter", "FORWARD")
        .position(Position::Prepend)
        .iifname("br-x")
        .accept()
        .comment("lnet br-x");
    let mut b = Batch::new();
    b.add_rule(&mine);
    nft.commit(&b).unwrap();
    let text = ruleset_text();
    assert!(
        text.contains("iifname \"br-x\" accept comment \"lnet br-x\""),
        "{text}"
    );

    let rules = nft.rules(Family::Ip, "filter", "FORWARD").unwrap();
    assert_eq!(rules.len(), 2);
    // Prepended: before the rule that was there.
    assert_eq!(rules[0].comment.as_deref(), Some("lnet br-x"));
    assert_eq!(rules[0].exprs, mine.exprs());
    let handle = rules
        .iter()
        .find(|r| r.comment.as_deref() == Some("lnet br-x"))
        .unwrap()
        .handle;
    let mut d = Batch::new();
    d.delete_rule(Family::Ip, "filter", "FORWARD", handle);
    nft.commit(&d).unwrap();
    let rules = nft.rules(Family::Ip, "filter", "FORWARD").unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].exprs, [Expr::Counter]);
    let chains = nft.chains(Family::Ip, "filter").unwrap();
    let fwd = chains.iter().find(|c| c.name == "FORWARD").unwrap();
    assert_eq!(fwd.policy, Some(Policy::Drop));
    assert_eq!(fwd.hook, Some((ChainType::Filter, Hook::Forward, 0)));
}

#[test]
fn snat_map_rewrites_the_source() {
    setup!("snat_map_rewrites_the_source");
    let client = TempNetns::new().unwrap();
    let server = TempNetns::new().unwrap();
    let mut nl = Netlink::new().unwrap();
    plug(&mut nl, "vc", "10.1.0.1", &client, "10.1.0.2");
    plug(&mut nl, "vs", "10.2.0.1", &server, "10.2.0.2");
    sysctl::set("net.ipv4.ip_forward", "1").unwrap();

    let mut nft = NftSocket::new().unwrap();
    let mut b = Batch::new();
    b.add_table(Family::Ip, T)
        .add_chain(&Chain::base(
            Family::Ip,
            T,
            "post",
            ChainType::Nat,
            Hook::Postrouting,
            100,
        ))
        .add_set(&Set::map(
            Family::Ip,
            T,
            "m",
            &[DataType::IfName],
            &[DataType::Ipv4Addr],
        ))
        .add_elements(
            Family::Ip,
            T,
            "m",
            &[Element::new(*b"vc\0\0\0\0\0\0\0\0\0\0\0\0\0\0").data([10, 2, 0, 1])],
        );
    let rule = Rule::new(Family::Ip, T, "post").snat_map(&[Field::IifName], "m", Family::Ip);
    b.add_rule(&rule);
    nft.commit(&b).unwrap();
    let text = ruleset_text();
    assert!(text.contains("snat to iifname map @m"), "{text}");
    assert_eq!(
        nft.rules(Family::Ip, T, "post").unwrap()[0].exprs,
        rule.exprs()
    );

    let (rx, tx) = udp_pair(&server, &client);
    tx.send_to(b"hi", "10.2.0.2:5353").unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = rx.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hi");
    // The map's address for the input interface, not the client's.
    assert_eq!(from.ip(), "10.2.0.1".parse::<std::net::IpAddr>().unwrap());
    rx.send_to(b"back", from).unwrap();
    let (n, from) = tx.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"back");
    assert_eq!(from, "10.2.0.2:5353".parse().unwrap());

    // Conntrack remembers the translation: replies go to the new source.
    let entries = lnet_kernel::Conntrack::new()
        .unwrap()
        .entries(false)
        .unwrap();
    let e = entries.iter().find(|e| e.orig.dport == 5353).unwrap();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert_eq!((e.orig.src, e.orig.dst), (ip("10.1.0.2"), ip("10.2.0.2")));
    assert_eq!((e.reply.src, e.reply.dst), (ip("10.2.0.2"), ip("10.2.0.1")));
}

/// A UDP server socket on 10.2.0.2:5353 in `server` and a client socket on 10.1.0.2 in
/// `client`, both with 5 s read timeouts.
fn udp_pair(server: &Netns, client: &Netns) -> (UdpSocket, UdpSocket) {
    let bind = |ns: &Netns, addr: &'static str| {
        let s = ns.run(move || UdpSocket::bind(addr)).unwrap().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    (bind(server, "10.2.0.2:5353"), bind(client, "10.1.0.2:0"))
}
