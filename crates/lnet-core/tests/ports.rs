//! Published ports and the firewall's state, without packets (the packet tests are in
//! `firewall.rs`): bad port requests are refused clearly and change nothing — no host port,
//! no set element, no record — host ports are chosen, held, replayed at start and given
//! back; drift in lnet's table is reported and repaired at start; and the ruleset lnet
//! programs is pinned by a golden file.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;

use common::*;
use lnet_core::drivers::bridge::{OPT_HOST_BINDING, OPT_NAME};
use lnet_core::{Controller, EndpointOptions, ErrorKind, JoinOptions, NetworkOptions, PortSpec};
use lnet_kernel::nft::{Batch, Element, Family, NftSocket, Rule};

use ErrorKind::{Forbidden, InvalidInput};

fn publish(ports: &[&str]) -> EndpointOptions {
    EndpointOptions {
        ports: ports.iter().map(|p| PortSpec::parse(p).unwrap()).collect(),
        ..Default::default()
    }
}

fn bindings(ctrl: &Controller) -> BTreeSet<String> {
    ctrl.port_bindings()
        .into_iter()
        .map(|(ip, proto, port, _)| format!("{ip}:{port}/{proto}"))
        .collect()
}

/// A bridge network with an IPv4 and an IPv6 subnet.
fn dual_stack(ctrl: &Controller, name: &str, v4: &str, v6: &str) -> lnet_core::Network {
    let mut o = subnet_opts(v4);
    o.enable_ipv6 = true;
    o.ipam.v6.push(lnet_core::IpamPoolConfig {
        subnet: Some(v6.parse().unwrap()),
        ..Default::default()
    });
    ctrl.new_network("bridge", name, o).unwrap()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn bad_port_requests_change_nothing() {
    let Some(env) = common::env("bad_port_requests_change_nothing") else {
        return;
    };
    let ctrl = env.ctrl();
    let n = bridge_on(ctrl, "n", "10.60.0.0/24");
    let web = n
        .create_endpoint("web", publish(&["8080:80", "10.60.0.1:9000:90/udp"]))
        .unwrap();
    web.join(&sandbox(ctrl, "c1"), JoinOptions::default())
        .unwrap();
    let internal = ctrl
        .new_network(
            "bridge",
            "inside",
            NetworkOptions {
                internal: true,
                ..subnet_opts("10.61.0.0/24")
            },
        )
        .unwrap();
    let null = ctrl
        .new_network("null", "none", NetworkOptions::default())
        .unwrap();
    let try_ports = |net: &lnet_core::Network, ports: Vec<PortSpec>| {
        let net = net.clone();
        move |_: &Controller| {
            net.create_endpoint(
                "e",
                EndpointOptions {
                    ports,
                    ..Default::default()
                },
            )
        }
    };
    let spec = |s: &str| PortSpec::parse(s).unwrap();

    // Taken, exactly or through the unspecified address, either way round; the error
    // names the holder.
    for (req, held) in [
        ("8080:80", "0.0.0.0:8080"),
        ("10.60.0.1:8080:80", "0.0.0.0:8080"),
        ("9000:90/udp", "10.60.0.1:9000"),
    ] {
        assert_refused(
            &env,
            Forbidden,
            &[
                "PortBindings",
                held,
                "endpoint web on network n",
                "not available",
            ],
            try_ports(&n, vec![spec(req)]),
        );
    }
    // The first of two requests is fine, the second is not: the first is given back.
    assert_refused(
        &env,
        Forbidden,
        &["PortBindings", "8080"],
        try_ports(&n, vec![spec("7000:70"), spec("8080:81")]),
    );
    assert_refused(
        &env,
        InvalidInput,
        &["PortBindings", "192.0.2.77", "not an address of this host"],
        try_ports(&n, vec![spec("192.0.2.77:80:80")]),
    );
    assert_refused(
        &env,
        InvalidInput,
        &["PortBindings", "IPv6", "no IPv6 address"],
        try_ports(&n, vec![spec("[::1]:80:80")]),
    );
    assert_refused(
        &env,
        InvalidInput,
        &["PortBindings", "internal", "publishes no ports"],
        try_ports(&internal, vec![spec("80")]),
    );
    assert_refused(
        &env,
        InvalidInput,
        &["PortBindings", "null driver", "does not publish ports"],
        try_ports(&null, vec![spec("80")]),
    );
    // Requests built field by field (Docker's API) are checked the same way.
    for (r, want) in [
        (
            PortSpec::new(lnet_core::Proto::Tcp, (0, 0), None, None),
            "1 to 65535",
        ),
        (
            PortSpec::new(lnet_core::Proto::Tcp, (90, 80), None, None),
            "inverted",
        ),
        (
            PortSpec::new(lnet_core::Proto::Udp, (80, 81), None, Some((8000, 8009))),
            "same length",
        ),
    ] {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), InvalidInput);
        assert!(e.to_string().contains(want), "{e}");
    }
    // A bad binding default is refused when the network is made.
    assert_refused(&env, InvalidInput, &[OPT_HOST_BINDING, "IPv4"], |c| {
        c.new_network("bridge", "bad", driver_opt(OPT_HOST_BINDING, "::1"))
    });

    // Nothing was held by the refusals: 7000 is free, and so is 8081 on a specific address.
    let ok = n
        .create_endpoint("ok", publish(&["7000:70", "127.0.0.1:8081:81"]))
        .unwrap();
    assert_eq!(
        bindings(ctrl),
        set(&[
            "0.0.0.0:8080/tcp",
            "10.60.0.1:9000/udp",
            "0.0.0.0:7000/tcp",
            "127.0.0.1:8081/tcp"
        ])
    );
    ok.delete().unwrap();
    assert_eq!(
        bindings(ctrl),
        set(&["0.0.0.0:8080/tcp", "10.60.0.1:9000/udp"])
    );
}

#[test]
fn host_ports_are_chosen_held_replayed_and_given_back() {
    let Some(mut env) = common::env("host_ports_are_chosen_held_replayed_and_given_back") else {
        return;
    };
    let ctrl = env.ctrl();
    let (lo, hi) = {
        let v = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let mut it = v.split_whitespace().map(|p| p.parse::<u16>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    let n = bridge_on(ctrl, "n", "10.62.0.0/24");
    // Ephemeral, from a host range, and a range mapped port for port.
    let e = n
        .create_endpoint("e", publish(&["80", "8000-8010:81/udp", "9000-9002:90-92"]))
        .unwrap();
    let ports = e.info().unwrap().ports;
    assert_eq!(ports.len(), 5);
    let eph = ports.iter().find(|p| p.container_port == 80).unwrap();
    assert!(
        (lo..=hi).contains(&eph.host_port),
        "{eph:?} not in {lo}-{hi}"
    );
    let ranged = ports.iter().find(|p| p.container_port == 81).unwrap();
    assert!((8000..=8010).contains(&ranged.host_port));
    let mapped: Vec<(u16, u16)> = ports
        .iter()
        .filter(|p| p.container_port >= 90)
        .map(|p| (p.host_port, p.container_port))
        .collect();
    assert_eq!(mapped, [(9000, 90), (9001, 91), (9002, 92)]);
    for p in &ports {
        assert_eq!(p.host_ip, "0.0.0.0".parse::<IpAddr>().unwrap());
    }
    let held = bindings(env.ctrl());
    drop((n, e));

    // Held across a restart exactly as recorded: the same ports are refused to others.
    env.restart();
    assert_eq!(bindings(env.ctrl()), held);
    let n = env.ctrl().network("n").unwrap();
    let e = n.endpoint_by_name("e").unwrap();
    assert_eq!(e.info().unwrap().ports, ports);
    let clash = format!("{}:80", eph.host_port);
    let err = n.create_endpoint("f", publish(&[&clash])).unwrap_err();
    assert!(err.to_string().contains("endpoint e on network n"), "{err}");

    // The network's host_binding_ipv4 is the default host address.
    let local = env
        .ctrl()
        .new_network("bridge", "local", {
            let mut o = subnet_opts("10.63.0.0/24");
            o.options
                .insert(OPT_HOST_BINDING.into(), "127.0.0.1".into());
            o
        })
        .unwrap();
    let l = local.create_endpoint("l", publish(&["8080:80"])).unwrap();
    assert_eq!(
        l.info().unwrap().ports[0].host_ip,
        "127.0.0.1".parse::<IpAddr>().unwrap()
    );

    // Deleting the endpoints gives every port back.
    e.delete().unwrap();
    l.delete().unwrap();
    assert!(env.ctrl().port_bindings().is_empty());
}

#[test]
fn a_dual_stack_endpoint_publishes_the_same_port_on_both_families() {
    let Some(env) = common::env("a_dual_stack_endpoint_publishes_the_same_port_on_both_families")
    else {
        return;
    };
    let ctrl = env.ctrl();
    let n = dual_stack(ctrl, "dual", "10.64.0.0/24", "fd00:64::/64");
    let e = n
        .create_endpoint("e", publish(&["80", "8443:443"]))
        .unwrap();
    let ports = e.info().unwrap().ports;
    let by_family = |v6: bool| -> Vec<(u16, u16)> {
        ports
            .iter()
            .filter(|p| p.host_ip.is_ipv6() == v6)
            .map(|p| (p.host_port, p.container_port))
            .collect()
    };
    assert_eq!(by_family(false), by_family(true));
    assert_eq!(by_family(false).len(), 2);
    // `::` is taken for 8443 now, so a v6 request for it is refused, naming e.
    let err = n
        .create_endpoint("f", publish(&["[::1]:8443:443"]))
        .unwrap_err();
    assert!(
        err.to_string().contains("endpoint e on network dual"),
        "{err}"
    );
}

#[test]
fn firewall_drift_is_reported_and_repaired_at_start() {
    let Some(mut env) = common::env("firewall_drift_is_reported_and_repaired_at_start") else {
        return;
    };
    let ctrl = env.ctrl();
    let n = bridge_on(ctrl, "n", "10.65.0.0/24");
    let e = n.create_endpoint("web", publish(&["8080:80"])).unwrap();
    e.join(&sandbox(ctrl, "c"), JoinOptions::default()).unwrap();
    assert_eq!(ctrl.firewall_check().unwrap(), vec![]);
    drop((n, e));
    let published = firewall_elements();
    assert!(
        published.contains("ports4_any: tcp . 8080 : 10.65.0.2 . 80"),
        "{published:?}"
    );

    // Someone removes the published port, adds a stray one and empties a chain.
    let key = |port: u16| {
        lnet_kernel::nft::Concat::new()
            .inet_proto(6)
            .inet_service(port)
            .build()
    };
    let val = lnet_kernel::nft::Concat::new()
        .ipv4("10.65.0.9".parse().unwrap())
        .inet_service(99)
        .build();
    let mut b = Batch::new();
    b.delete_elements(
        Family::Inet,
        "lnet",
        "ports4_any",
        &[Element::new(key(8080))],
    )
    .add_elements(
        Family::Inet,
        "lnet",
        "ports4_any",
        &[Element::new(key(9999)).data(val)],
    )
    .flush_chain(Family::Inet, "lnet", "postrouting");
    NftSocket::new().unwrap().commit(&b).unwrap();

    let drift: Vec<String> = ctrl
        .firewall_check()
        .unwrap()
        .into_iter()
        .map(|d| format!("{} {}", d.kind, d.what))
        .collect();
    assert!(
        drift.contains(&"missing element ports4_any tcp . 8080 : 10.65.0.2 . 80".to_string()),
        "{drift:#?}"
    );
    assert!(
        drift.contains(&"extra element ports4_any tcp . 9999 : 10.65.0.9 . 99".to_string()),
        "{drift:#?}"
    );
    assert!(
        drift
            .iter()
            .any(|d| d.starts_with("different chain inet lnet postrouting")),
        "{drift:#?}"
    );

    // The next start puts it right and says so; the user chain is left alone.
    let user_rule = Rule::new(Family::Inet, "lnet", "user").counter();
    let mut b = Batch::new();
    b.add_rule(&user_rule);
    NftSocket::new().unwrap().commit(&b).unwrap();
    env.restart();
    let report = env.ctrl().recovery_report().clone();
    assert_eq!(report.firewall.len(), 3, "{report:?}");
    assert_eq!(env.ctrl().firewall_check().unwrap(), vec![]);
    assert_eq!(firewall_elements(), published);
    let user = NftSocket::new()
        .unwrap()
        .rules(Family::Inet, "lnet", "user")
        .unwrap();
    assert_eq!(user.len(), 1, "the user chain keeps its rule");

    // A chain of lnet's name on another hook, and a set of lnet's name with another type
    // (what an older lnet, or a hand, might leave): replaced at the next start.
    let mut b = Batch::new();
    b.flush_chain(Family::Inet, "lnet", "postrouting")
        .flush_chain(Family::Inet, "lnet", "prerouting")
        .delete_chain(Family::Inet, "lnet", "prerouting")
        .add_chain(&lnet_kernel::nft::Chain::base(
            Family::Inet,
            "lnet",
            "prerouting",
            lnet_kernel::nft::ChainType::Filter,
            lnet_kernel::nft::Hook::Prerouting,
            0,
        ))
        .delete_set(Family::Inet, "lnet", "masq6")
        .add_set(&lnet_kernel::nft::Set::new(
            Family::Inet,
            "lnet",
            "masq6",
            &[lnet_kernel::nft::DataType::Ipv4Addr],
        ));
    NftSocket::new().unwrap().commit(&b).unwrap();
    let drift: Vec<String> = env
        .ctrl()
        .firewall_check()
        .unwrap()
        .into_iter()
        .map(|d| format!("{} {}", d.kind, d.what))
        .collect();
    for want in [
        "different set inet lnet masq6",
        "different chain inet lnet prerouting: hook",
        "different chain inet lnet postrouting",
    ] {
        assert!(
            drift.iter().any(|d| d.starts_with(want)),
            "{want}: {drift:#?}"
        );
    }
    env.restart();
    assert_eq!(env.ctrl().recovery_report().errors, Vec::<String>::new());
    assert_eq!(env.ctrl().firewall_check().unwrap(), vec![]);
    assert_eq!(firewall_elements(), published);

    // The whole table deleted: back at the next start, with the elements.
    let mut b = Batch::new();
    b.delete_table(Family::Inet, "lnet");
    NftSocket::new().unwrap().commit(&b).unwrap();
    assert!(!env.ctrl().firewall_check().unwrap().is_empty());
    env.restart();
    assert_eq!(env.ctrl().firewall_check().unwrap(), vec![]);
    assert_eq!(firewall_elements(), published);
}

/// `nft list table inet lnet` for a fixed set of networks and ports, against
/// `tests/golden/ruleset.nft`. Set `LNET_UPDATE_GOLDEN=1` to rewrite the file after a
/// deliberate change, and review the diff.
#[test]
fn the_ruleset_matches_the_golden_file() {
    let Some(env) = common::env("the_ruleset_matches_the_golden_file") else {
        return;
    };
    if !lnet_kernel::testing::require_tool("the_ruleset_matches_the_golden_file", "nft") {
        return;
    }
    // Off, as on a host that does not route: lnet turns it on and guards it. (A new
    // namespace copies the host's IPv4 setting.)
    lnet_kernel::sysctl::set("net.ipv4.ip_forward", "0").unwrap();
    let ctrl = env.ctrl();
    let named = |name: &str, subnet: &str, extra: &[(&str, &str)], internal: bool| {
        let mut o = subnet_opts(subnet);
        o.options.insert(OPT_NAME.into(), format!("lnet-{name}"));
        for (k, v) in extra {
            o.options.insert(k.to_string(), v.to_string());
        }
        o.internal = internal;
        ctrl.new_network("bridge", name, o).unwrap()
    };
    let front = named("front", "10.90.0.0/24", &[], false);
    named("back", "10.91.0.0/24", &[], true);
    named(
        "snat",
        "10.92.0.0/24",
        &[("com.docker.network.host_ipv4", "192.0.2.10")],
        false,
    );
    named(
        "plain",
        "10.93.0.0/24",
        &[("com.docker.network.bridge.enable_ip_masquerade", "false")],
        false,
    );
    let web = front
        .create_endpoint(
            "web",
            publish(&["8080:80", "127.0.0.1:5353:53/udp", "9000-9001:90-91/sctp"]),
        )
        .unwrap();
    web.join(&sandbox(ctrl, "c"), JoinOptions::default())
        .unwrap();

    let out = Command::new("nft")
        .args(["list", "table", "inet", "lnet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = sorted_elements(&String::from_utf8(out.stdout).unwrap());
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ruleset.nft");
    if std::env::var_os("LNET_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(
        text,
        want,
        "nft's listing differs from {}",
        golden.display()
    );
    // The text lnet prints for its rules is nft's own.
    for line in lnet_core::firewall::ruleset::describe(&Default::default()).lines() {
        let line = line.trim();
        if line.contains("dnat ip") || line.contains("ip saddr 127") {
            continue; // nft drops the implied `meta nfproto` of these
        }
        if line.starts_with("jump") || line.contains("@") {
            assert!(text.contains(line), "nft does not print {line:?}:\n{text}");
        }
    }
}

/// `nft` lists the elements of a hash set in hash order, which changes from run to run:
/// put every `elements = { … }` list in sorted order, one element per line.
fn sorted_elements(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some((indent, first)) = line.split_once("elements = { ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let mut body = first.to_string();
        let mut l = line;
        while !l.trim_end().ends_with('}') {
            l = lines.next().expect("an element list ends");
            body.push(' ');
            body.push_str(l.trim());
        }
        let body = body.trim_end().trim_end_matches('}');
        let mut elems: Vec<&str> = body
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        elems.sort();
        out.push_str(&format!("{indent}elements = {{\n"));
        for e in elems {
            out.push_str(&format!("{indent}\t{e},\n"));
        }
        out.push_str(&format!("{indent}}}\n"));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Published ports against the host's own services (issue 12 §3): lnet holds each published
// host port with a bound socket, so a port a host program holds is refused, a host program
// cannot take a published one, and ephemeral ports pass over ports in use.

/// What a host program gets when it binds `addr` now: `Ok` (and the socket closed at once)
/// or the error kind (`AddrInUse` when lnet, or anyone, holds the port).
fn host_bind(addr: &str, udp: bool) -> Result<(), std::io::ErrorKind> {
    let r = if udp {
        std::net::UdpSocket::bind(addr).map(drop)
    } else {
        std::net::TcpListener::bind(addr).map(drop)
    };
    r.map_err(|e| e.kind())
}

/// Checks that `listener` (a host service) still gets a connection to `addr`.
fn host_service_answers(listener: &std::net::TcpListener, addr: &str) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"ping").unwrap();
    let (mut s, _) = listener.accept().unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping", "the host service on {addr} heard its client");
    // The client closes first, as clients do, so that the TIME_WAIT that follows is on the
    // client's port, not on the service's.
    drop(c);
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}

#[test]
fn a_port_a_host_program_holds_is_refused_and_changes_nothing() {
    let Some(env) = common::env("a_port_a_host_program_holds_is_refused_and_changes_nothing")
    else {
        return;
    };
    let ctrl = env.ctrl();
    let n = bridge_on(ctrl, "n", "10.66.0.0/24");
    let c1 = sandbox(ctrl, "c1");
    let pid = format!("pid {}", std::process::id());
    // Host services: TCP on all addresses (std sets SO_REUSEADDR, as most servers do), UDP
    // on all addresses, TCP on loopback only, and TCP on [::] (dual-stack: it takes IPv4
    // too).
    let tcp = std::net::TcpListener::bind("0.0.0.0:2222").unwrap();
    let _udp = std::net::UdpSocket::bind("0.0.0.0:5353").unwrap();
    let lo = std::net::TcpListener::bind("127.0.0.1:2223").unwrap();
    let _v6 = std::net::TcpListener::bind("[::]:2224").unwrap();
    let try_publish = |port: &'static str| {
        let (n, c1) = (n.clone(), c1.clone());
        move |_: &Controller| -> lnet_core::Result<()> {
            let ep = n.create_endpoint("web", publish(&[port]))?;
            ep.join(&c1, JoinOptions::default())
        }
    };
    for (req, held) in [
        ("2222:80", "holds 0.0.0.0:2222/tcp"),
        ("5353:53/udp", "holds 0.0.0.0:5353/udp"),
        ("2223:80", "holds 127.0.0.1:2223/tcp"),
        ("2224:80", "holds [::]:2224/tcp"),
    ] {
        let err = assert_refused(
            &env,
            Forbidden,
            &["PortBindings", req.split(':').next().unwrap(), held, &pid],
            try_publish(req),
        );
        let msg = err.to_string();
        assert!(
            msg.contains("not available") && msg.contains("choose another host port"),
            "{msg}"
        );
        if !req.ends_with("udp") {
            assert!(msg.contains("listening"), "{msg}");
        }
    }
    // Among several requests, the first held one refuses them all, and the ports taken
    // before it are given back (the snapshot above checked lnet's allocator; this checks the
    // host: 7000 is free again).
    assert_refused(
        &env,
        Forbidden,
        &["PortBindings", "2222", &pid],
        try_publish_many(&n, &["7000:70", "2222:80"]),
    );
    assert_eq!(host_bind("0.0.0.0:7000", false), Ok(()));
    // The host services still have their traffic.
    host_service_answers(&tcp, "127.0.0.1:2222");
    host_service_answers(&lo, "127.0.0.1:2223");
    // A port nobody holds is published as before.
    let ep = n.create_endpoint("web", publish(&["2225:80"])).unwrap();
    ep.join(&c1, JoinOptions::default()).unwrap();
}

fn try_publish_many(
    n: &lnet_core::Network,
    ports: &'static [&'static str],
) -> impl FnOnce(&Controller) -> lnet_core::Result<lnet_core::Endpoint> {
    let n = n.clone();
    move |_| n.create_endpoint("web", publish(ports))
}

#[test]
fn a_published_port_is_held_from_the_host_until_the_endpoint_goes() {
    let Some(mut env) =
        common::env("a_published_port_is_held_from_the_host_until_the_endpoint_goes")
    else {
        return;
    };
    let ctrl = env.ctrl();
    let dual = dual_stack(ctrl, "dual", "10.67.0.0/24", "fd00:67::/64");
    let v4 = bridge_on(ctrl, "v4", "10.68.0.0/24");
    let c1 = sandbox(ctrl, "c1");
    let c2 = sandbox(ctrl, "c2");
    dual.create_endpoint("web", publish(&["2222:80", "5353:53/udp"]))
        .unwrap()
        .join(&c1, JoinOptions::default())
        .unwrap();
    v4.create_endpoint("api", publish(&["127.0.0.1:3333:80"]))
        .unwrap()
        .join(&c2, JoinOptions::default())
        .unwrap();
    let held = || {
        [
            ("0.0.0.0:2222", false),
            ("127.0.0.1:2222", false),
            ("[::]:2222", false),
            ("[::1]:2222", false),
            ("0.0.0.0:5353", true),
            ("[::]:5353", true),
            ("127.0.0.1:3333", false),
            ("0.0.0.0:3333", false),
        ]
        .map(|(a, udp)| (a, host_bind(a, udp)))
        .into_iter()
        .filter(|(_, r)| *r != Err(std::io::ErrorKind::AddrInUse))
        .map(|(a, r)| format!("{a}: {r:?}"))
        .collect::<Vec<_>>()
        .join(", ")
    };
    assert_eq!(held(), "", "every published port is held from the host");
    // lnet's own endpoints publish beside its holds: another address of the host for 3333.
    v4.create_endpoint("api2", publish(&["10.68.0.1:3333:80"]))
        .unwrap()
        .delete()
        .unwrap();

    // A dropped controller (a crash) lets go of them; the next start takes them again.
    drop((dual, v4, c1, c2));
    env.ctrl = None;
    assert_eq!(host_bind("0.0.0.0:2222", false), Ok(()));
    assert_eq!(host_bind("0.0.0.0:5353", true), Ok(()));
    assert_eq!(host_bind("127.0.0.1:3333", false), Ok(()));
    env.restart();
    assert_eq!(held(), "", "a start holds the recorded ports again");
    assert!(env.ctrl().recovery_report().errors.is_empty());
    assert!(env.ctrl().doctor().is_clean(), "{:?}", env.ctrl().doctor());

    // Leaving keeps them (the endpoint still has them); deleting the endpoint frees them.
    let ctrl = env.ctrl();
    let web = find_endpoint(ctrl, "dual", "web").unwrap();
    web.leave(&ctrl.sandbox("c1").unwrap()).unwrap();
    assert_eq!(
        host_bind("0.0.0.0:2222", false),
        Err(std::io::ErrorKind::AddrInUse)
    );
    web.delete().unwrap();
    find_endpoint(ctrl, "v4", "api")
        .unwrap()
        .leave(&ctrl.sandbox("c2").unwrap())
        .unwrap();
    find_endpoint(ctrl, "v4", "api").unwrap().delete().unwrap();
    for (a, udp) in [
        ("0.0.0.0:2222", false),
        ("[::]:2222", false),
        ("0.0.0.0:5353", true),
        ("[::]:5353", true),
        ("0.0.0.0:3333", false),
    ] {
        assert_eq!(host_bind(a, udp), Ok(()), "{a} is free again");
    }
}

#[test]
fn a_port_taken_while_lnet_was_down_is_reported_and_never_stops_a_start() {
    let Some(mut env) =
        common::env("a_port_taken_while_lnet_was_down_is_reported_and_never_stops_a_start")
    else {
        return;
    };
    let ctrl = env.ctrl();
    let n = bridge_on(ctrl, "n", "10.69.0.0/24");
    let c1 = sandbox(ctrl, "c1");
    n.create_endpoint("web", publish(&["2222:80"]))
        .unwrap()
        .join(&c1, JoinOptions::default())
        .unwrap();
    // Created, not joined yet.
    n.create_endpoint("later", publish(&["2233:80"])).unwrap();
    let recorded = find_endpoint(ctrl, "n", "web")
        .unwrap()
        .info()
        .unwrap()
        .ports;
    let firewall = env.snapshot().firewall;
    drop((n, c1));

    // lnet is down; host programs take both ports.
    env.ctrl = None;
    let squatter = std::net::TcpListener::bind("0.0.0.0:2222").unwrap();
    let squatter2 = std::net::TcpListener::bind("127.0.0.1:2233").unwrap();
    let pid = format!("pid {}", std::process::id());

    // The start goes through, keeps the records and the published element, and says so.
    env.restart();
    let ctrl = env.ctrl();
    let errors = ctrl.recovery_report().errors.join("\n");
    for want in [
        "endpoint web",
        "0.0.0.0:2222/tcp",
        "endpoint later",
        "2233",
        &pid,
    ] {
        assert!(errors.contains(want), "{want} in {errors}");
    }
    let web = find_endpoint(ctrl, "n", "web").unwrap();
    assert_eq!(web.info().unwrap().ports, recorded);
    assert_eq!(env.snapshot().firewall, firewall);
    let doctor = ctrl.doctor();
    let findings: Vec<String> = doctor
        .findings
        .iter()
        .map(|f| format!("{} {} {}", f.kind, f.object, f.what))
        .collect();
    assert!(
        findings.iter().any(|f| f
            .starts_with("different endpoint web host port 0.0.0.0:2222/tcp is held by process")
            && f.contains(&pid)),
        "{findings:#?}"
    );
    assert_eq!(findings.len(), 2, "{findings:#?}");

    // Joining the endpoint whose port a host program holds would take that program's
    // traffic: refused, nothing changes.
    let c2 = sandbox(ctrl, "c2");
    let later = find_endpoint(ctrl, "n", "later").unwrap();
    assert_refused(
        &env,
        Forbidden,
        &["PortBindings", "2233", "127.0.0.1:2233/tcp", &pid],
        |_| later.join(&c2, JoinOptions::default()),
    );
    host_service_answers(&squatter2, "127.0.0.1:2233");

    // The programs go; a repair holds the ports again and the doctor is content.
    drop((squatter, squatter2));
    let ctrl = env.ctrl();
    let rep = ctrl.repair().unwrap();
    assert_eq!(
        host_bind("0.0.0.0:2222", false),
        Err(std::io::ErrorKind::AddrInUse),
        "{rep:?}"
    );
    assert_eq!(
        host_bind("0.0.0.0:2233", false),
        Err(std::io::ErrorKind::AddrInUse)
    );
    assert!(ctrl.doctor().is_clean(), "{:?}", ctrl.doctor());
    later.join(&c2, JoinOptions::default()).unwrap();
}

#[test]
fn ephemeral_and_ranged_host_ports_pass_over_ports_in_use_on_the_host() {
    let Some(mut env) =
        common::env("ephemeral_and_ranged_host_ports_pass_over_ports_in_use_on_the_host")
    else {
        return;
    };
    // A narrow ephemeral range, in the test's own namespace (the sysctl is per namespace);
    // the controller reads it at start.
    std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "40000 40003").unwrap();
    let ctrl = env.restart();
    let n = bridge_on(ctrl, "n", "10.70.0.0/24");
    let _a = std::net::TcpListener::bind("0.0.0.0:40000").unwrap();
    let _b = std::net::TcpListener::bind("127.0.0.1:40001").unwrap();
    let _u = std::net::UdpSocket::bind("0.0.0.0:40000").unwrap();
    let host_port = |ep: &lnet_core::Endpoint| ep.info().unwrap().ports[0].host_port;
    let e = n.create_endpoint("e", publish(&["80"])).unwrap();
    assert_eq!(host_port(&e), 40002);
    let u = n.create_endpoint("u", publish(&["53/udp"])).unwrap();
    assert_eq!(
        host_port(&u),
        40001,
        "UDP 40000 is held, TCP ones are not in the way"
    );
    let r = n
        .create_endpoint("r", publish(&["40000-40003:81"]))
        .unwrap();
    assert_eq!(host_port(&r), 40003);
    // Every port of the range is held by someone now: a clear error, nothing changes.
    assert_refused(
        &env,
        Forbidden,
        &[
            "PortBindings",
            "40000-40003",
            "every port of the range is in use",
        ],
        try_publish_many(&n, &["80"]),
    );
}
