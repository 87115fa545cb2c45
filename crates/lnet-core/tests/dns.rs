//! The embedded DNS with real queries from inside sandboxes to 127.0.0.11: names, aliases,
//! `name.network`, PTR, case, per-network scoping, forwarding to an upstream the test runs
//! on the host's loopback, UDP and TCP, leave, and a restart.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;
use lnet_core::{EndpointOptions, JoinOptions};
use lnet_kernel::Netns;
use simple_dns::rdata::{A, PTR, RData};
use simple_dns::{CLASS, Name, Packet, Question, RCODE, ResourceRecord, TYPE};

const RESOLVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);

/// An upstream on the host's 127.0.0.1:53: `example.org` is 192.0.2.99, the rest NXDOMAIN.
fn upstream() {
    let s = UdpSocket::bind("127.0.0.1:53").expect("bind the test upstream");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let Ok(q) = Packet::parse(&buf[..n]) else {
                continue;
            };
            let mut r = q.clone().into_reply();
            if q.questions[0].qname.to_string() == "example.org" {
                r.answers.push(ResourceRecord::new(
                    q.questions[0].qname.clone(),
                    CLASS::IN,
                    60,
                    RData::A(A {
                        address: u32::from(Ipv4Addr::new(192, 0, 2, 99)),
                    }),
                ));
            } else {
                *r.rcode_mut() = RCODE::NameError;
            }
            let _ = s.send_to(&r.build_bytes_vec().unwrap(), from);
        }
    });
}

fn query(name: &str, qtype: TYPE) -> Vec<u8> {
    let mut p = Packet::new_query(7);
    p.questions.push(Question::new(
        Name::new_unchecked(name),
        qtype.into(),
        CLASS::IN.into(),
        false,
    ));
    p.build_bytes_vec().unwrap()
}

/// Asks the sandbox's resolver over UDP; the rcode and the answers as text.
fn ask(ns: &Netns, name: &str, qtype: TYPE) -> (RCODE, Vec<String>) {
    let sock = ns.run(|| UdpSocket::bind("127.0.0.1:0")).unwrap().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(&query(name, qtype), RESOLVER).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer from 127.0.0.11");
    decode(&buf[..n])
}

fn ask_tcp(ns: &Netns, name: &str) -> (RCODE, Vec<String>) {
    let mut s = ns
        .run(|| TcpStream::connect_timeout(&RESOLVER, Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let q = query(name, TYPE::A);
    s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
    s.write_all(&q).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    decode(&buf)
}

fn decode(b: &[u8]) -> (RCODE, Vec<String>) {
    let p = Packet::parse(b).unwrap();
    let answers = p
        .answers
        .iter()
        .map(|rr| match &rr.rdata {
            RData::A(a) => Ipv4Addr::from(a.address).to_string(),
            RData::PTR(PTR(n)) => n.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    (p.rcode(), answers)
}

/// A test's environment with embedded DNS on and the host's resolv.conf saying `resolv`.
fn dns_env(test: &str, resolv: &str) -> Option<(Env, lnet_core::Config)> {
    let mut env = common::env(test)?;
    let mut config = env.config();
    config.embedded_dns = true;
    std::fs::write(&config.host_resolv_conf, resolv).unwrap();
    env.restart_with(config.clone());
    Some((env, config))
}

#[test]
fn sandboxes_resolve_each_other_by_name_on_their_networks() {
    let Some((mut env, config)) = dns_env(
        "sandboxes_resolve_each_other_by_name_on_their_networks",
        "nameserver 127.0.0.1\nsearch example.com\n",
    ) else {
        return;
    };
    upstream();
    let ctrl = env.ctrl();
    let front = bridge_on(ctrl, "front", "10.58.0.0/24");
    let other = bridge_on(ctrl, "other", "10.59.0.0/24");
    let (a, b, c) = (sandbox(ctrl, "a"), sandbox(ctrl, "b"), sandbox(ctrl, "c"));
    attach(&front, "ea", &a);
    let eb = front
        .create_endpoint(
            "eb",
            EndpointOptions {
                aliases: vec!["db".into()],
                ..Default::default()
            },
        )
        .unwrap();
    eb.join(&b, JoinOptions::default()).unwrap();
    attach(&other, "ec", &c);
    let b_ip = ip4(&eb).to_string();
    let ns_a = Netns::open(a.key().unwrap()).unwrap();
    let ns_c = Netns::open(c.key().unwrap()).unwrap();

    let resolv = read(&a.resolv_conf_path().unwrap());
    assert!(
        resolv.contains("nameserver 127.0.0.11")
            && resolv.contains("search example.com")
            && resolv.contains("ndots:0"),
        "{resolv}"
    );
    for name in ["b", "eb", "db", "B", "b.front", "DB.FRONT"] {
        assert_eq!(
            ask(&ns_a, name, TYPE::A),
            (RCODE::NoError, vec![b_ip.clone()]),
            "{name}"
        );
    }
    assert_eq!(ask_tcp(&ns_a, "db"), (RCODE::NoError, vec![b_ip.clone()]));
    // A name with no IPv6 address: NOERROR, nothing, not forwarded.
    assert_eq!(ask(&ns_a, "b", TYPE::AAAA), (RCODE::NoError, vec![]));
    // PTR of a container's address.
    let rev: Vec<&str> = b_ip.split('.').rev().collect();
    let ptr = format!("{}.in-addr.arpa", rev.join("."));
    assert_eq!(
        ask(&ns_a, &ptr, TYPE::PTR),
        (RCODE::NoError, vec!["b.front".into()])
    );
    // Everything else goes upstream.
    assert_eq!(
        ask(&ns_a, "example.org", TYPE::A),
        (RCODE::NoError, vec!["192.0.2.99".into()])
    );
    assert_eq!(ask(&ns_a, "nosuch", TYPE::A).0, RCODE::NameError);
    // Another network's sandbox does not see front's names.
    assert_eq!(ask(&ns_c, "b", TYPE::A).0, RCODE::NameError);
    assert_eq!(ask(&ns_c, "c", TYPE::A).0, RCODE::NoError);

    // A leave takes the names away at once.
    eb.leave(&b).unwrap();
    assert_eq!(ask(&ns_a, "db", TYPE::A).0, RCODE::NameError);
    eb.join(&b, JoinOptions::default()).unwrap();

    // A rename: the new name answers at once, the old one no longer does.
    let mut renamed = b.clone();
    renamed.rename("b2").unwrap();
    assert_eq!(
        ask(&ns_a, "b2.front", TYPE::A),
        (RCODE::NoError, vec![b_ip.clone()])
    );
    assert_eq!(ask(&ns_a, "b", TYPE::A).0, RCODE::NameError);
    // A name in use, or not a name: refused, and nothing changes.
    let taken = renamed.rename("a").unwrap_err().to_string();
    assert!(taken.contains("\"a\"") || taken.contains(" a "), "{taken}");
    let bad = renamed.rename("no/slash").unwrap_err().to_string();
    assert!(bad.contains("no/slash"), "{bad}");
    assert_eq!(
        ask(&ns_a, "b2", TYPE::A),
        (RCODE::NoError, vec![b_ip.clone()])
    );
    assert_eq!(ask(&ns_a, "a", TYPE::A).0, RCODE::NoError);
    renamed.rename("b").unwrap();
    assert_eq!(ask(&ns_a, "b2", TYPE::A).0, RCODE::NameError);

    // A restart serves again (new sockets, the same answers), on the port its predecessor
    // had: the sandbox's redirect is left exactly as it was (same rules, same handles).
    let redirect = |ns: &Netns| {
        lnet_kernel::nft::NftSocket::in_netns(ns)
            .unwrap()
            .rules(lnet_kernel::nft::Family::Ip, "lnetdns", "rewrite")
            .unwrap()
    };
    let before = redirect(&ns_a);
    assert_eq!(before.len(), 4, "{before:?}");
    drop((ns_a, ns_c, front, other, a, b, c, eb, renamed));
    env.restart_with(config);
    let a = env.ctrl().sandbox("a").unwrap();
    let ns_a = Netns::open(a.key().unwrap()).unwrap();
    assert_eq!(
        ask(&ns_a, "db.front", TYPE::A),
        (RCODE::NoError, vec![b_ip])
    );
    assert_eq!(
        redirect(&ns_a),
        before,
        "the restart left the redirect alone"
    );
}

/// Port 53 of 127.0.0.11 goes to lnet's resolver, and nothing else does: a container's own
/// DNS server on port 53 of its other addresses keeps working, and the redirect puts no
/// connection tracking on the container's traffic.
#[test]
fn a_container_keeps_its_own_port_53_and_gets_no_conntrack() {
    let Some((env, _)) = dns_env(
        "a_container_keeps_its_own_port_53_and_gets_no_conntrack",
        "nameserver 127.0.0.1\n",
    ) else {
        return;
    };
    let ctrl = env.ctrl();
    let net = bridge_on(ctrl, "own", "10.57.0.0/24");
    let (a, b) = (sandbox(ctrl, "a"), sandbox(ctrl, "b"));
    let a_ip = ip4(&attach(&net, "ea", &a));
    let eb = attach(&net, "eb", &b);
    let b_ip = ip4(&eb);
    let ns_a = Netns::open(a.key().unwrap()).unwrap();
    let ns_b = Netns::open(b.key().unwrap()).unwrap();

    // b runs its own server on every address's port 53: it answers 192.0.2.53 to all.
    let own = ns_b
        .run(|| UdpSocket::bind("0.0.0.0:53"))
        .unwrap()
        .expect("port 53 of the wildcard address is free for the container");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = own.recv_from(&mut buf) {
            let Ok(q) = Packet::parse(&buf[..n]) else {
                continue;
            };
            let mut r = q.clone().into_reply();
            r.answers.push(ResourceRecord::new(
                q.questions[0].qname.clone(),
                CLASS::IN,
                5,
                RData::A(A {
                    address: u32::from(Ipv4Addr::new(192, 0, 2, 53)),
                }),
            ));
            let _ = own.send_to(&r.build_bytes_vec().unwrap(), from);
        }
    });
    // From a, b's own server answers on b's address...
    let sock = ns_a.run(|| UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(&query("anything", TYPE::A), (b_ip, 53))
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("b's own DNS server answers");
    assert_eq!(
        decode(&buf[..n]),
        (RCODE::NoError, vec!["192.0.2.53".into()])
    );
    // ...and inside b, 127.0.0.11 is still lnet's resolver.
    assert_eq!(
        ask(&ns_b, "a", TYPE::A),
        (RCODE::NoError, vec![a_ip.to_string()])
    );
    assert_eq!(ask_tcp(&ns_b, "a").0, RCODE::NoError);
    // No connection was tracked in either sandbox for all of that.
    for (name, ns) in [("a", &ns_a), ("b", &ns_b)] {
        let tracked = lnet_kernel::Conntrack::in_netns(ns)
            .and_then(|mut c| c.entries(false))
            .unwrap();
        assert!(tracked.is_empty(), "sandbox {name} tracks {tracked:?}");
    }
}
