//! The firewall with real packets: masquerade and SNAT out, published ports in (TCP, UDP,
//! SCTP, IPv6), from the host itself and hairpin, isolation between networks, `enable_icc`,
//! internal networks, the operators' `user` chain, living beside a drop-policy forward
//! chain, conntrack flushing, and forwarding that lnet turned on carrying lnet's traffic
//! only.
//!
//! Each test's own namespace is "the host" (lnet runs there). An "outside" namespace is
//! joined to it by a veth: `uplink` (198.51.100.1, 2001:db8:ff::1) on the host, 198.51.100.2
//! and 2001:db8:ff::2 outside. The outside has no default route: replies go to the host's
//! directly connected address, so anything reaching a container from there came through
//! lnet's DNAT, and anything reaching it from a container came through lnet's masquerade.
//!
//! Where the kernel has br_netfilter, a new namespace passes bridged frames through the ip
//! hooks (`net.bridge.bridge-nf-call-iptables=1`, as on a Docker host); the tests run with
//! whatever the namespace starts with, and the hairpin tests set it both ways.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use lnet_core::firewall::Firewall;
use lnet_core::firewall::ruleset::SetName;
use lnet_core::{
    Controller, Endpoint, EndpointOptions, IpamPoolConfig, JoinOptions, Network, NetworkOptions,
    PortSpec, Sandbox,
};
use lnet_kernel::testing::TempNetns;
use lnet_kernel::{AddrFlags, Conntrack, IpNet, Netlink, Netns, Route, VethSpec};

/// The host's address on the uplink.
const HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The outside's address.
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The host's IPv6 address on the uplink.
const HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);
/// The outside's IPv6 address.
const OUTSIDE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 2);

/// How long traffic that must get through may take.
const PASS: Duration = Duration::from_secs(3);
/// How long to wait for traffic that must not get through.
const BLOCK: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------
// Topology.

/// Makes the "outside" namespace and joins it to the host (the calling thread's namespace)
/// by a veth: `uplink` on the host side.
fn outside() -> TempNetns {
    plug("uplink", (HOST, HOST6), (OUTSIDE, OUTSIDE6))
}

/// A new namespace joined to the host by a veth, `host_if` on the host side with addresses
/// `host` (/24, /64), `eth0` on the far side with `far`.
fn plug(host_if: &str, host: (Ipv4Addr, Ipv6Addr), far: (Ipv4Addr, Ipv6Addr)) -> TempNetns {
    let out = TempNetns::new().expect("create the outside namespace");
    let (host_addrs, far_addrs) = (host, far);
    let mut host = Netlink::new().expect("netlink");
    let uplink = host
        .create_veth(VethSpec {
            host_name: host_if,
            host_up: true,
            peer_name: "eth0",
            peer_ns: Some(&out),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("create the {host_if} veth: {e}"));
    let mut far = Netlink::in_netns(&out).expect("netlink outside");
    let eth0 = far
        .link_by_name("eth0")
        .unwrap()
        .expect("eth0 outside")
        .index;
    for (nl, index, (v4, v6)) in [(&mut host, uplink, host_addrs), (&mut far, eth0, far_addrs)] {
        nl.add_address(index, net(IpAddr::V4(v4), 24), AddrFlags::default())
            .unwrap();
        nl.add_address(index, net(IpAddr::V6(v6), 64), AddrFlags { nodad: true })
            .unwrap();
        nl.set_up(index).unwrap();
        nl.set_up(lnet_kernel::LOOPBACK_INDEX).unwrap();
    }
    out
}

fn net(ip: IpAddr, prefix: u8) -> IpNet {
    IpNet::new(ip, prefix).unwrap()
}

/// Adds an address to the host's uplink.
fn add_uplink_address(a: &str) {
    let mut nl = Netlink::new().unwrap();
    let index = nl.link_by_name("uplink").unwrap().expect("uplink").index;
    nl.add_address(index, cidr(a), AddrFlags { nodad: true })
        .unwrap();
}

/// The test's own namespace: the host.
fn host_ns() -> Netns {
    Netns::current().expect("the host namespace")
}

/// A sandbox's namespace.
fn ns(sb: &Sandbox) -> Netns {
    Netns::open(sb.key().unwrap()).expect("open the sandbox namespace")
}

/// An endpoint publishing `ports`, joined to `sb`.
fn publish(net: &Network, name: &str, sb: &Sandbox, ports: &[&str]) -> Endpoint {
    let ep = net
        .create_endpoint(
            name,
            EndpointOptions {
                ports: ports.iter().map(|p| PortSpec::parse(p).unwrap()).collect(),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("create endpoint {name} publishing {ports:?}: {e}"));
    ep.join(sb, JoinOptions::default())
        .unwrap_or_else(|e| panic!("join {name}: {e}"));
    ep
}

/// A dual-stack bridge network.
fn dual_stack(ctrl: &Controller, name: &str, v4: &str, v6: &str) -> Network {
    let mut o = subnet_opts(v4);
    o.enable_ipv6 = true;
    o.ipam.v6.push(IpamPoolConfig {
        subnet: Some(cidr(v6)),
        ..Default::default()
    });
    ctrl.new_network("bridge", name, o)
        .unwrap_or_else(|e| panic!("create network {name}: {e}"))
}

/// The endpoint's IPv6 address.
fn ip6(ep: &Endpoint) -> IpAddr {
    ep.info().unwrap().addr_v6.expect("an IPv6 address").addr()
}

/// The network's IPv4 gateway.
fn gateway(net: &Network) -> IpAddr {
    pool_and_gateway(net).1.addr()
}

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

// ---------------------------------------------------------------------------------------
// Real packets.

/// A TCP server made inside `ns`.
fn tcp_server(ns: &Netns, at: SocketAddr) -> TcpListener {
    let l = ns
        .run(move || TcpListener::bind(at))
        .unwrap()
        .unwrap_or_else(|e| panic!("listen on {at}: {e}"));
    l.set_nonblocking(true).unwrap();
    l
}

/// A connection `server` accepted within `wait`, with the peer it saw.
fn accept_within(server: &TcpListener, wait: Duration) -> Option<(TcpStream, SocketAddr)> {
    let deadline = Instant::now() + wait;
    loop {
        match server.accept() {
            Ok(c) => return Some(c),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Connects from `client` to `dst` within `wait`.
fn tcp_connect(client: &Netns, dst: SocketAddr, wait: Duration) -> std::io::Result<TcpStream> {
    client
        .run(move || TcpStream::connect_timeout(&dst, wait))
        .unwrap()
}

/// Connects from `client` to `dst`, which must lead to `server`; a message goes through.
/// Returns the peer address the server saw.
#[track_caller]
fn tcp_reaches(client: &Netns, dst: SocketAddr, server: &TcpListener) -> SocketAddr {
    let mut c = tcp_connect(client, dst, PASS)
        .unwrap_or_else(|e| panic!("TCP connect to {dst} must succeed: {e}"));
    c.write_all(b"lnet firewall probe").unwrap();
    drop(c);
    let (mut conn, peer) = accept_within(server, PASS)
        .unwrap_or_else(|| panic!("the server behind {dst} must get the connection"));
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(PASS)).unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    assert_eq!(got, "lnet firewall probe", "the message through {dst}");
    peer
}

/// A TCP connection from `client` to `dst` must fail, and `server` (if any) get nothing.
#[track_caller]
fn tcp_blocked(client: &Netns, dst: SocketAddr, server: Option<&TcpListener>) {
    let res = tcp_connect(client, dst, BLOCK);
    assert!(res.is_err(), "TCP connect to {dst} must fail: {res:?}");
    if let Some(s) = server {
        assert!(
            accept_within(s, Duration::ZERO).is_none(),
            "the server behind {dst} must get nothing"
        );
    }
}

/// A UDP socket made inside `ns`.
fn udp_socket(ns: &Netns, at: SocketAddr) -> UdpSocket {
    ns.run(move || UdpSocket::bind(at))
        .unwrap()
        .unwrap_or_else(|e| panic!("bind UDP {at}: {e}"))
}

fn any_addr(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// Sends a datagram from `client` to `dst`; returns where `server` saw it come from, if it
/// arrived within `wait`.
fn udp_probe(
    client: &Netns,
    dst: SocketAddr,
    server: &UdpSocket,
    wait: Duration,
) -> Option<SocketAddr> {
    let tx = udp_socket(client, sa(any_addr(dst.ip()), 0));
    tx.send_to(b"lnet udp probe", dst).unwrap();
    server.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    match server.recv_from(&mut buf) {
        Ok((n, from)) => {
            assert_eq!(&buf[..n], b"lnet udp probe");
            Some(from)
        }
        Err(_) => None,
    }
}

/// Sends a datagram from `client` to `dst`, where `server` echoes it; returns the echo's
/// source address as the client saw it.
#[track_caller]
fn udp_echo(client: &Netns, dst: SocketAddr, server: &UdpSocket) -> SocketAddr {
    let tx = udp_socket(client, sa(any_addr(dst.ip()), 0));
    tx.send_to(b"ping", dst).unwrap();
    server.set_read_timeout(Some(PASS)).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = server
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("the server behind {dst} must get the datagram: {e}"));
    assert_eq!(&buf[..n], b"ping");
    server.send_to(b"pong", from).unwrap();
    tx.set_read_timeout(Some(PASS)).unwrap();
    let (n, echo_from) = tx
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("the echo from {dst} must come back: {e}"));
    assert_eq!(&buf[..n], b"pong");
    echo_from
}

/// Runs `nft` in the host namespace (a child forked from the test thread is in it).
#[track_caller]
fn nft(args: &[&str]) -> String {
    let out = Command::new("nft").args(args).output().expect("run nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------------------------------
// The firewall agrees with the records.

/// lnet's firewall holds exactly what its records call for.
#[track_caller]
fn assert_firewall_agrees(ctrl: &Controller) {
    let drift = ctrl.firewall_check().unwrap();
    assert!(drift.is_empty(), "firewall vs records: {drift:?}");
}

/// Leaves and deletes every endpoint, deletes every network and sandbox, and checks that
/// nothing is left in lnet's sets and maps.
#[track_caller]
fn teardown(ctrl: &Controller) {
    assert_firewall_agrees(ctrl);
    for net in ctrl.networks() {
        for ep in net.endpoints() {
            if let Some(j) = ep.info().unwrap().join {
                ep.leave(&ctrl.sandbox(&j.sandbox_id).unwrap()).unwrap();
            }
            ep.delete().unwrap();
        }
        net.delete().unwrap();
    }
    for sb in ctrl.sandboxes() {
        sb.delete().unwrap();
    }
    // The forwarding lnet turned on stays on, and so does its guard.
    let mut want = ctrl.firewall_want();
    want.sets.remove(&SetName::ForwardGuard);
    assert!(want.is_empty(), "{:?}", want.render());
    assert_firewall_agrees(ctrl);
    let mut left = Firewall::new().unwrap().elements().unwrap();
    left.sets.remove(&SetName::ForwardGuard);
    assert!(left.is_empty(), "elements left: {:?}", left.render());
}

// ---------------------------------------------------------------------------------------
// Out.

#[test]
fn containers_reach_the_outside_as_the_host_address_or_the_snat_source() {
    let Some(env) =
        common::env("containers_reach_the_outside_as_the_host_address_or_the_snat_source")
    else {
        return;
    };
    let out = outside();
    add_uplink_address("198.51.100.5/24");
    let ctrl = env.ctrl();
    let server = tcp_server(&out, sa(OUTSIDE, 7000));

    let masq = bridge_on(ctrl, "masq", "10.31.0.0/24");
    let sb = sandbox(ctrl, "c1");
    attach(&masq, "e1", &sb);
    let peer = tcp_reaches(&ns(&sb), sa(OUTSIDE, 7000), &server);
    assert_eq!(
        peer.ip(),
        IpAddr::V4(HOST),
        "masqueraded to the uplink address"
    );

    let mut o = subnet_opts("10.31.1.0/24");
    o.options
        .insert("com.docker.network.host_ipv4".into(), "198.51.100.5".into());
    let snat = ctrl.new_network("bridge", "snat", o).unwrap();
    let sb2 = sandbox(ctrl, "c2");
    attach(&snat, "e2", &sb2);
    let peer = tcp_reaches(&ns(&sb2), sa(OUTSIDE, 7000), &server);
    assert_eq!(peer.ip(), ip("198.51.100.5"), "SNAT to host_ipv4");

    teardown(ctrl);
}

// ---------------------------------------------------------------------------------------
// In: published ports.

#[test]
fn outside_reaches_a_published_tcp_port_and_the_container_sees_its_address() {
    let Some(env) =
        common::env("outside_reaches_a_published_tcp_port_and_the_container_sees_its_address")
    else {
        return;
    };
    let out = outside();
    let ctrl = env.ctrl();
    let net = bridge_on(ctrl, "web", "10.32.0.0/24");
    let sb = sandbox(ctrl, "web1");
    let ep = publish(&net, "web", &sb, &["8080:80/tcp"]);
    let server = tcp_server(&ns(&sb), sa(ip4(&ep), 80));
    let peer = tcp_reaches(&out, sa(HOST, 8080), &server);
    assert_eq!(peer.ip(), IpAddr::V4(OUTSIDE), "inbound is not SNATed");
    // Only the published port is open, also to a neighbour that routes the containers'
    // subnet through the host.
    let other = tcp_server(&ns(&sb), sa(ip4(&ep), 81));
    tcp_blocked(&out, sa(HOST, 8081), Some(&other));
    Netlink::in_netns(&out)
        .unwrap()
        .add_route(&Route {
            dst: cidr("10.32.0.0/24"),
            gateway: Some(IpAddr::V4(HOST)),
            oif: None,
            scope_link: false,
        })
        .unwrap();
    tcp_blocked(&out, sa(ip4(&ep), 81), Some(&other));
    teardown(ctrl);
}

#[test]
fn outside_gets_a_udp_echo_through_a_published_port() {
    let Some(env) = common::env("outside_gets_a_udp_echo_through_a_published_port") else {
        return;
    };
    let out = outside();
    let ctrl = env.ctrl();
    let net = bridge_on(ctrl, "dns", "10.33.0.0/24");
    let sb = sandbox(ctrl, "dns1");
    let ep = publish(&net, "dns", &sb, &["5353:53/udp"]);
    let server = udp_socket(&ns(&sb), sa(ip4(&ep), 53));
    let from = udp_echo(&out, sa(HOST, 5353), &server);
    assert_eq!(
        from,
        sa(HOST, 5353),
        "the echo comes back from the published address"
    );
    teardown(ctrl);
}

/// CRC32c (Castagnoli), as SCTP checksums it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An SCTP packet (common header and one INIT chunk) from `sport` to `dport`.
fn sctp_init(sport: u16, dport: u16) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend(sport.to_be_bytes());
    p.extend(dport.to_be_bytes());
    p.extend(0u32.to_be_bytes()); // verification tag: 0 in an INIT
    p.extend(0u32.to_be_bytes()); // checksum, filled in below
    p.push(1); // INIT
    p.push(0); // flags
    p.extend(20u16.to_be_bytes()); // chunk length
    p.extend(0x1234_5678u32.to_be_bytes()); // initiate tag
    p.extend(65535u32.to_be_bytes()); // advertised receiver window
    p.extend(1u16.to_be_bytes()); // outbound streams
    p.extend(1u16.to_be_bytes()); // inbound streams
    p.extend(1u32.to_be_bytes()); // initial TSN
    let sum = crc32c(&p);
    p[8..12].copy_from_slice(&sum.to_le_bytes());
    p
}

/// A raw IPv4 socket for IP protocol 132 (SCTP), made in `ns`.
fn raw_sctp_socket(ns: &Netns) -> OwnedFd {
    ns.run(|| {
        // SAFETY: socket(2) with constant arguments; the fd is owned from here on.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, 132) };
        assert!(
            fd >= 0,
            "raw SCTP socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
        unsafe { OwnedFd::from_raw_fd(fd) }
    })
    .unwrap()
}

fn sockaddr_in(ip: Ipv4Addr) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all zeroes is a valid value.
    let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_addr.s_addr = u32::from_ne_bytes(ip.octets());
    a
}

/// Receives IPv4 packets on a raw socket until one carries SCTP from `sport`; returns
/// (source address, destination address, destination port).
fn recv_sctp(fd: &OwnedFd, sport: u16, wait: Duration) -> Option<(Ipv4Addr, Ipv4Addr, u16)> {
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: setsockopt with a valid fd and a timeval of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        // SAFETY: recv into a buffer we own, with its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            continue;
        }
        let pkt = &buf[..n as usize];
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        if pkt.len() < ihl + 12 || pkt[9] != 132 {
            continue;
        }
        let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
        let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
        let sctp = &pkt[ihl..];
        let (s, d) = (
            u16::from_be_bytes([sctp[0], sctp[1]]),
            u16::from_be_bytes([sctp[2], sctp[3]]),
        );
        if s == sport {
            return Some((src, dst, d));
        }
    }
    None
}

#[test]
fn outside_sctp_init_is_dnated_to_the_published_container_port() {
    let Some(env) = common::env("outside_sctp_init_is_dnated_to_the_published_container_port")
    else {
        return;
    };
    let out = outside();
    let ctrl = env.ctrl();
    let net = bridge_on(ctrl, "sctp", "10.34.0.0/24");
    let sb = sandbox(ctrl, "sctp1");
    let ep = publish(&net, "sctp", &sb, &["9000:9/sctp"]);
    let rx = raw_sctp_socket(&ns(&sb));
    let tx = raw_sctp_socket(&out);
    let pkt = sctp_init(40000, 9000);
    let to = sockaddr_in(HOST);
    // SAFETY: sendto with a valid fd, a buffer we own and a sockaddr_in of the right size.
    let sent = unsafe {
        libc::sendto(
            tx.as_raw_fd(),
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(
        sent,
        pkt.len() as isize,
        "send the INIT: {}",
        std::io::Error::last_os_error()
    );
    let got = recv_sctp(&rx, 40000, PASS);
    let IpAddr::V4(ctr) = ip4(&ep) else {
        unreachable!()
    };
    assert_eq!(
        got,
        Some((OUTSIDE, ctr, 9)),
        "the container gets the INIT from the outside, aimed at its port 9"
    );
    let tracked = Conntrack::new().unwrap().entries(false).unwrap();
    assert!(
        tracked.iter().any(|e| e.orig.proto == 132
            && e.orig.dport == 9000
            && e.reply.src == IpAddr::V4(ctr)
            && e.reply.sport == 9),
        "the host tracks the association, DNATed: {tracked:?}"
    );
    teardown(ctrl);
}

#[test]
fn the_host_reaches_a_published_port_on_loopback_and_its_own_address() {
    let Some(env) =
        common::env("the_host_reaches_a_published_port_on_loopback_and_its_own_address")
    else {
        return;
    };
    let _out = outside();
    let ctrl = env.ctrl();
    let net = bridge_on(ctrl, "web", "10.35.0.0/24");
    let sb = sandbox(ctrl, "web1");
    let ep = publish(&net, "web", &sb, &["8080:80/tcp"]);
    let server = tcp_server(&ns(&sb), sa(ip4(&ep), 80));
    let host = host_ns();
    let peer = tcp_reaches(&host, sa(Ipv4Addr::LOCALHOST, 8080), &server);
    assert_eq!(
        peer.ip(),
        gateway(&net),
        "127.0.0.1 is masqueraded to the gateway"
    );
    tcp_reaches(&host, sa(HOST, 8080), &server);
    teardown(ctrl);
}

/// Whether bridged IP frames of the host namespace pass through netfilter
/// (`net.bridge.bridge-nf-call-ip{,6}tables`). `false` when the kernel has no br_netfilter.
fn set_bridge_netfilter(on: bool) -> bool {
    let v = if on { "1" } else { "0" };
    let mut ok = true;
    for key in [
        "net.bridge.bridge-nf-call-iptables",
        "net.bridge.bridge-nf-call-ip6tables",
    ] {
        ok &= lnet_kernel::sysctl::set(key, v).is_ok();
    }
    ok
}

/// A container and its neighbour reach its published port on the host's address, over
/// IPv4 and IPv6.
fn hairpin(env: &common::Env) {
    let _out = outside();
    let ctrl = env.ctrl();
    let net = dual_stack(ctrl, "web", "10.36.0.0/24", "fd00:36::/64");
    let sb = sandbox(ctrl, "web1");
    let ep = publish(&net, "web", &sb, &["8080:80/tcp"]);
    let server4 = tcp_server(&ns(&sb), sa(ip4(&ep), 80));
    let server6 = tcp_server(&ns(&sb), sa(ip6(&ep), 80));
    let sb2 = sandbox(ctrl, "client");
    attach(&net, "client", &sb2);
    tcp_reaches(&ns(&sb2), sa(HOST, 8080), &server4);
    tcp_reaches(&ns(&sb2), sa(HOST6, 8080), &server6);
    tcp_reaches(&ns(&sb), sa(HOST, 8080), &server4);
    tcp_reaches(&ns(&sb), sa(HOST6, 8080), &server6);
    teardown(ctrl);
}

#[test]
fn a_container_reaches_its_own_published_port_and_so_does_its_neighbour() {
    let Some(env) =
        common::env("a_container_reaches_its_own_published_port_and_so_does_its_neighbour")
    else {
        return;
    };
    // As lnet expects a host: bridged frames skip netfilter (a no-op without br_netfilter).
    set_bridge_netfilter(false);
    hairpin(&env);
}

#[test]
fn a_container_reaches_its_own_published_port_where_bridged_traffic_is_filtered() {
    let Some(env) =
        common::env("a_container_reaches_its_own_published_port_where_bridged_traffic_is_filtered")
    else {
        return;
    };
    // As on a Docker host: br_netfilter passes bridged frames through the ip hooks (in a
    // new namespace, the default wherever the kernel has br_netfilter).
    if !lnet_kernel::testing::require_installed(
        "a_container_reaches_its_own_published_port_where_bridged_traffic_is_filtered",
        "br_netfilter (the net.bridge.bridge-nf-call-* sysctls)",
        "the kernel module br_netfilter, loaded on the host (modprobe br_netfilter)",
        set_bridge_netfilter(true),
    ) {
        return;
    }
    hairpin(&env);
}

// ---------------------------------------------------------------------------------------
// Isolation.

/// Neither container reaches the other, by TCP or UDP, in either direction.
fn assert_cut_off(a: (&Sandbox, &Endpoint), b: (&Sandbox, &Endpoint)) {
    for ((from, _), (to, to_ep)) in [(a, b), (b, a)] {
        let to_ip = ip4(to_ep);
        let tcp = tcp_server(&ns(to), sa(to_ip, 7000));
        tcp_blocked(&ns(from), sa(to_ip, 7000), Some(&tcp));
        let udp = udp_socket(&ns(to), sa(to_ip, 7001));
        assert_eq!(udp_probe(&ns(from), sa(to_ip, 7001), &udp, BLOCK), None);
    }
}

#[test]
fn containers_on_different_networks_cannot_reach_each_other() {
    let Some(env) = common::env("containers_on_different_networks_cannot_reach_each_other") else {
        return;
    };
    let out = outside();
    let ctrl = env.ctrl();
    let (na, nb) = (
        bridge_on(ctrl, "a", "10.37.0.0/24"),
        bridge_on(ctrl, "b", "10.37.1.0/24"),
    );
    let (sa_, sb_) = (sandbox(ctrl, "ca"), sandbox(ctrl, "cb"));
    let (ea, eb) = (attach(&na, "ea", &sa_), attach(&nb, "eb", &sb_));
    assert_cut_off((&sa_, &ea), (&sb_, &eb));
    let server = tcp_server(&out, sa(OUTSIDE, 7000));
    for sb in [&sa_, &sb_] {
        assert_eq!(tcp_reaches(&ns(sb), sa(OUTSIDE, 7000), &server).ip(), HOST);
    }
    teardown(ctrl);
}

#[test]
fn icc_off_separates_containers_but_not_from_the_gateway_or_the_outside() {
    let Some(env) =
        common::env("icc_off_separates_containers_but_not_from_the_gateway_or_the_outside")
    else {
        return;
    };
    let out = outside();
    let ctrl = env.ctrl();
    let mut o = subnet_opts("10.38.0.0/24");
    o.options.insert(
        "com.docker.network.bridge.enable_icc".into(),
        "false".into(),
    );
    let net = ctrl.new_network("bridge", "noicc", o).unwrap();
    let (s1, s2) = (sandbox(ctrl, "c1"), sandbox(ctrl, "c2"));
    let (e1, e2) = (attach(&net, "e1", &s1), attach(&net, "e2", &s2));
    assert_cut_off((&s1, &e1), (&s2, &e2));
    let gw = gateway(&net);
    let on_host = tcp_server(&host_ns(), sa(gw, 7100));
    let outside_server = tcp_server(&out, sa(OUTSIDE, 7000));
    for (sb, ep) in [(&s1, &e1), (&s2, &e2)] {
        assert_eq!(tcp_reaches(&ns(sb), sa(gw, 7100), &on_host).ip(), ip4(ep));
        assert_eq!(
            tcp_reaches(&ns(sb), sa(OUTSIDE, 7000), &outside_server).ip(),
            HOST
        );
    }
    teardown(ctrl);
}

#[test]
fn an_internal_network_talks_within_itself_only_and_publishes_nothing() {
    let Some(env) =
        common::env("an_internal_network_talks_within_itself_only_and_publishes_nothing")
    else {
        return;
    };
    let out = outside();
    let ctrl = env.ctrl();
    let o = NetworkOptions {
        internal: true,
        ..subnet_opts("10.39.0.0/24")
    };
    let net = ctrl.new_network("bridge", "int", o).unwrap();
    let (s1, s2) = (sandbox(ctrl, "c1"), sandbox(ctrl, "c2"));
    let (e1, e2) = (attach(&net, "e1", &s1), attach(&net, "e2", &s2));
    assert_traffic(&s1, ip4(&e1), &s2, ip4(&e2), 7000);

    let out_server = tcp_server(&out, sa(OUTSIDE, 7000));
    let host_server = tcp_server(&host_ns(), sa(HOST, 7000));
    tcp_blocked(&ns(&s1), sa(OUTSIDE, 7000), Some(&out_server));
    tcp_blocked(&ns(&s1), sa(HOST, 7000), Some(&host_server));
    // Even a container that routes out by itself gets nothing through the host.
    let gw = gateway(&net);
    let mut nl = sandbox_nl(&s1);
    nl.add_route(&Route::default_via(gw))
        .expect("a default route in the container");
    tcp_blocked(&ns(&s1), sa(OUTSIDE, 7000), Some(&out_server));
    let udp = udp_socket(&out, sa(OUTSIDE, 7001));
    assert_eq!(udp_probe(&ns(&s1), sa(OUTSIDE, 7001), &udp, BLOCK), None);

    let err = net
        .create_endpoint(
            "web",
            EndpointOptions {
                ports: vec![PortSpec::parse("8080:80/tcp").unwrap()],
                ..Default::default()
            },
        )
        .expect_err("an internal network publishes no ports");
    assert!(err.to_string().contains("PortBindings"), "{err}");
    teardown(ctrl);
}

// ---------------------------------------------------------------------------------------
// Other rules: the operators' and other firewalls'.

/// The handles of the rules of `inet lnet user` matching `text`.
fn user_rule_handles(text: &str) -> Vec<String> {
    nft(&["-a", "list", "chain", "inet", "lnet", "user"])
        .lines()
        .filter(|l| l.contains(text))
        .filter_map(|l| {
            l.rsplit_once("# handle ")
                .map(|(_, h)| h.trim().to_string())
        })
        .collect()
}

#[test]
fn a_rule_in_the_user_chain_comes_first_and_survives_a_restart() {
    let Some(mut env) = common::env("a_rule_in_the_user_chain_comes_first_and_survives_a_restart")
    else {
        return;
    };
    let out = outside();
    let server;
    {
        let ctrl = env.ctrl();
        let net = bridge_on(ctrl, "web", "10.40.0.0/24");
        let sb = sandbox(ctrl, "web1");
        let ep = publish(&net, "web", &sb, &["8080:80/tcp"]);
        server = tcp_server(&ns(&sb), sa(ip4(&ep), 80));
    }
    tcp_reaches(&out, sa(HOST, 8080), &server);

    let rule = "ip saddr 198.51.100.2 drop";
    nft(&[
        "add",
        "rule",
        "inet",
        "lnet",
        "user",
        "ip",
        "saddr",
        "198.51.100.2",
        "drop",
    ]);
    tcp_blocked(&out, sa(HOST, 8080), Some(&server));
    assert_firewall_agrees(env.ctrl());

    let handles = user_rule_handles(rule);
    assert_eq!(handles.len(), 1, "{handles:?}");
    nft(&[
        "delete",
        "rule",
        "inet",
        "lnet",
        "user",
        "handle",
        &handles[0],
    ]);
    tcp_reaches(&out, sa(HOST, 8080), &server);

    nft(&[
        "add",
        "rule",
        "inet",
        "lnet",
        "user",
        "ip",
        "saddr",
        "198.51.100.2",
        "drop",
    ]);
    env.restart();
    assert_eq!(user_rule_handles(rule).len(), 1, "the rule is still there");
    tcp_blocked(&out, sa(HOST, 8080), Some(&server));
    assert_firewall_agrees(env.ctrl());
    let handles = user_rule_handles(rule);
    nft(&[
        "delete",
        "rule",
        "inet",
        "lnet",
        "user",
        "handle",
        &handles[0],
    ]);
    tcp_reaches(&out, sa(HOST, 8080), &server);
    teardown(env.ctrl());
}

/// What iptables-nft makes when Docker sets the FORWARD policy to DROP.
fn docker_forward_drop() {
    nft(&["add", "table", "ip", "filter"]);
    nft(&[
        "add",
        "chain",
        "ip",
        "filter",
        "FORWARD",
        "{ type filter hook forward priority 0; policy drop; }",
    ]);
}

/// The rules of `ip filter FORWARD` (without the chain's own lines), and whether its
/// policy is still drop.
fn docker_forward_rules() -> (Vec<String>, bool) {
    let text = nft(&["list", "chain", "ip", "filter", "FORWARD"]);
    let policy_drop = text.contains("policy drop;");
    let rules = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.starts_with("table") && !l.starts_with("chain") && !l.starts_with("type"))
        .filter(|l| *l != "}")
        .map(String::from)
        .collect();
    (rules, policy_drop)
}

#[test]
fn traffic_flows_beside_a_drop_policy_forward_chain() {
    let Some(env) = common::env("traffic_flows_beside_a_drop_policy_forward_chain") else {
        return;
    };
    let out = outside();
    docker_forward_drop();
    let ctrl = env.ctrl();
    let net = bridge_on(ctrl, "web", "10.41.0.0/24");
    let br = bridge_name(&net);
    let sb = sandbox(ctrl, "web1");
    let ep = publish(&net, "web", &sb, &["8080:80/tcp"]);
    let server = tcp_server(&ns(&sb), sa(ip4(&ep), 80));
    let out_server = tcp_server(&out, sa(OUTSIDE, 7000));
    assert_eq!(
        tcp_reaches(&ns(&sb), sa(OUTSIDE, 7000), &out_server).ip(),
        HOST
    );
    assert_eq!(tcp_reaches(&out, sa(HOST, 8080), &server).ip(), OUTSIDE);

    let (rules, drop) = docker_forward_rules();
    assert!(drop, "the policy is still drop");
    assert_eq!(rules.len(), 2, "exactly lnet's two rules: {rules:?}");
    for dir in ["in", "out"] {
        let comment = format!("comment \"lnet:{br}:{dir}\"");
        assert!(
            rules
                .iter()
                .any(|r| r.ends_with(&comment) && r.contains("accept")),
            "{comment} in {rules:?}"
        );
    }
    assert_firewall_agrees(ctrl);

    teardown(ctrl);
    let (rules, drop) = docker_forward_rules();
    assert!(drop, "the policy is still drop");
    assert!(rules.is_empty(), "lnet's rules are gone: {rules:?}");
}

#[test]
fn a_restart_lets_traffic_through_a_drop_policy_forward_chain_made_later() {
    let Some(mut env) =
        common::env("a_restart_lets_traffic_through_a_drop_policy_forward_chain_made_later")
    else {
        return;
    };
    let out = outside();
    let (server, sb_ns);
    {
        let ctrl = env.ctrl();
        let net = bridge_on(ctrl, "web", "10.42.0.0/24");
        let sb = sandbox(ctrl, "web1");
        let ep = publish(&net, "web", &sb, &["8080:80/tcp"]);
        server = tcp_server(&ns(&sb), sa(ip4(&ep), 80));
        sb_ns = ns(&sb);
    }
    let out_server = tcp_server(&out, sa(OUTSIDE, 7000));
    tcp_reaches(&out, sa(HOST, 8080), &server);

    docker_forward_drop();
    let drift = env.ctrl().firewall_check().unwrap();
    assert!(
        drift.iter().any(|d| d.what.contains("ip filter FORWARD")),
        "the check sees lnet's rules missing from the new chain: {drift:?}"
    );
    env.restart();
    assert_firewall_agrees(env.ctrl());
    assert_eq!(tcp_reaches(&out, sa(HOST, 8080), &server).ip(), OUTSIDE);
    assert_eq!(
        tcp_reaches(&sb_ns, sa(OUTSIDE, 7000), &out_server).ip(),
        HOST
    );
    let (rules, drop) = docker_forward_rules();
    assert!(drop && rules.len() == 2, "{rules:?}");
    teardown(env.ctrl());
}

// ---------------------------------------------------------------------------------------
// IPv6 and conntrack.

#[test]
fn ipv6_is_masqueraded_out_and_published_in() {
    let Some(env) = common::env("ipv6_is_masqueraded_out_and_published_in") else {
        return;
    };
    let out = outside();
    let ctrl = env.ctrl();
    assert!(ctrl.config().enable_ip_forward, "lnet turns forwarding on");
    let net = dual_stack(ctrl, "dual", "10.43.0.0/24", "fd00:a:b::/64");
    let sb = sandbox(ctrl, "web1");
    let ep = publish(&net, "web", &sb, &["8080:80/tcp"]);
    assert_eq!(
        lnet_kernel::sysctl::get("net.ipv6.conf.all.forwarding")
            .unwrap()
            .trim(),
        "1"
    );

    let out_server = tcp_server(&out, sa(OUTSIDE6, 7000));
    let peer = tcp_reaches(&ns(&sb), sa(OUTSIDE6, 7000), &out_server);
    assert_eq!(
        peer.ip(),
        IpAddr::V6(HOST6),
        "masqueraded to the uplink address"
    );

    let server6 = tcp_server(&ns(&sb), sa(ip6(&ep), 80));
    let peer = tcp_reaches(&out, sa(HOST6, 8080), &server6);
    assert_eq!(peer.ip(), IpAddr::V6(OUTSIDE6), "inbound is not SNATed");
    let server4 = tcp_server(&ns(&sb), sa(ip4(&ep), 80));
    assert_eq!(tcp_reaches(&out, sa(HOST, 8080), &server4).ip(), OUTSIDE);
    teardown(ctrl);
}

/// The host's UDP conntrack entries whose original destination port is `port`.
fn udp_entries_to(port: u16) -> Vec<lnet_kernel::CtEntry> {
    let mut ct = Conntrack::new().unwrap();
    ct.entries(false)
        .unwrap()
        .into_iter()
        .filter(|e| e.orig.proto == 17 && e.orig.dport == port)
        .collect()
}

#[test]
fn leaving_flushes_the_udp_conntrack_entries_of_its_published_ports() {
    let Some(env) = common::env("leaving_flushes_the_udp_conntrack_entries_of_its_published_ports")
    else {
        return;
    };
    let out = outside();
    let ctrl = env.ctrl();
    let net = bridge_on(ctrl, "dns", "10.44.0.0/24");
    let sb = sandbox(ctrl, "dns1");
    let ep = publish(&net, "dns", &sb, &["5353:53/udp"]);
    let server = udp_socket(&ns(&sb), sa(ip4(&ep), 53));
    assert_eq!(udp_echo(&out, sa(HOST, 5353), &server), sa(HOST, 5353));
    let entries = udp_entries_to(5353);
    assert!(
        entries
            .iter()
            .any(|e| e.orig.src == IpAddr::V4(OUTSIDE) && e.reply.src == ip4(&ep)),
        "a DNATed entry: {entries:?}"
    );
    ep.leave(&sb).unwrap();
    assert_eq!(udp_entries_to(5353), [], "the entries went with the port");
    assert_firewall_agrees(ctrl);
    teardown(ctrl);
}

// ---------------------------------------------------------------------------------------
// Another engine's bridge on the same host.

/// A bridge lnet did not make (`docker0`, 172.31.0.1/16) with one container namespace
/// (172.31.0.2) behind it, and the other engine's own NAT in its own table: masquerade out
/// and a DNAT of host port 9090 to the container's port 80.
fn other_engine() -> TempNetns {
    // An engine routing its containers turns forwarding on itself, before lnet comes: the
    // host is then a router by the operator's choice, not lnet's to guard.
    lnet_kernel::sysctl::set("net.ipv4.ip_forward", "1").unwrap();
    let ctr = TempNetns::new().expect("the other engine's container");
    let mut host = Netlink::new().unwrap();
    let br = host
        .ensure_bridge("docker0", Default::default())
        .expect("docker0");
    host.add_address(br.index, cidr("172.31.0.1/16"), AddrFlags::default())
        .unwrap();
    host.set_up(br.index).unwrap();
    host.create_veth(VethSpec {
        host_name: "vethdock",
        host_master: Some(br.index),
        host_up: true,
        peer_name: "eth0",
        peer_ns: Some(&ctr),
        ..Default::default()
    })
    .unwrap();
    let mut inside = Netlink::in_netns(&ctr).unwrap();
    let eth0 = inside.link_by_name("eth0").unwrap().unwrap().index;
    inside
        .add_address(eth0, cidr("172.31.0.2/16"), AddrFlags::default())
        .unwrap();
    inside.set_up(eth0).unwrap();
    inside.set_up(lnet_kernel::LOOPBACK_INDEX).unwrap();
    inside
        .replace_route(&Route {
            dst: cidr("0.0.0.0/0"),
            gateway: Some(ip("172.31.0.1")),
            oif: None,
            scope_link: false,
        })
        .unwrap();
    nft(&["add", "table", "ip", "othernat"]);
    nft(&[
        "add",
        "chain",
        "ip",
        "othernat",
        "post",
        "{ type nat hook postrouting priority 100; }",
    ]);
    nft(&[
        "add",
        "rule",
        "ip",
        "othernat",
        "post",
        "ip",
        "saddr",
        "172.31.0.0/16",
        "oifname",
        "!=",
        "docker0",
        "masquerade",
    ]);
    nft(&[
        "add",
        "chain",
        "ip",
        "othernat",
        "pre",
        "{ type nat hook prerouting priority -100; }",
    ]);
    nft(&[
        "add",
        "rule",
        "ip",
        "othernat",
        "pre",
        "fib",
        "daddr",
        "type",
        "local",
        "tcp",
        "dport",
        "9090",
        "dnat",
        "to",
        "172.31.0.2:80",
    ]);
    ctr
}

#[test]
fn another_engines_bridge_and_nat_keep_working() {
    let Some(env) = common::env("another_engines_bridge_and_nat_keep_working") else {
        return;
    };
    let out = outside();
    let docker = other_engine();
    let ctrl = env.ctrl();
    let net = bridge_on(ctrl, "web", "10.43.0.0/24");
    let sb = sandbox(ctrl, "web1");
    let ep = publish(&net, "web", &sb, &["8080:80/tcp"]);
    let ours = tcp_server(&ns(&sb), sa(ip4(&ep), 80));
    let theirs = tcp_server(&docker, sa(ip("172.31.0.2"), 80));
    let out_server = tcp_server(&out, sa(OUTSIDE, 7000));

    // The other engine's container goes out through its own masquerade, and its own
    // published port answers, with lnet's table in place.
    assert_eq!(
        tcp_reaches(&docker, sa(OUTSIDE, 7000), &out_server).ip(),
        HOST
    );
    assert_eq!(tcp_reaches(&out, sa(HOST, 9090), &theirs).ip(), OUTSIDE);
    // lnet's own traffic is unaffected by the other engine's rules.
    assert_eq!(tcp_reaches(&out, sa(HOST, 8080), &ours).ip(), OUTSIDE);
    assert_eq!(
        tcp_reaches(&ns(&sb), sa(OUTSIDE, 7000), &out_server).ip(),
        HOST
    );
    // The two engines' containers stay apart.
    tcp_blocked(&docker, sa(ip4(&ep), 80), Some(&ours));
    assert_firewall_agrees(ctrl);
    teardown(ctrl);
    // Nothing of lnet's is left to disturb the other engine.
    assert_eq!(tcp_reaches(&out, sa(HOST, 9090), &theirs).ip(), OUTSIDE);
}

// ---------------------------------------------------------------------------------------
// Forwarding lnet turned on routes lnet's traffic only.
//
// "left" is the outside namespace above (behind `uplink`); "right" is a second one behind
// `right0`. Each routes the other's subnets through the host, so whatever passes between
// them is forwarded by the host and is none of lnet's business.

/// The host's address towards the right.
const RIGHT_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The right's address.
const RIGHT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The host's IPv6 address towards the right.
const RIGHT_HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
/// The right's IPv6 address.
const RIGHT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);

/// The right namespace, with routes between it and `left` through the host.
fn right_of(left: &Netns) -> TempNetns {
    let right = plug("right0", (RIGHT_HOST, RIGHT_HOST6), (RIGHT, RIGHT6));
    for (ns, dsts, gw4, gw6) in [
        (left, ["203.0.113.0/24", "2001:db8:2::/64"], HOST, HOST6),
        (
            &*right,
            ["198.51.100.0/24", "2001:db8:ff::/64"],
            RIGHT_HOST,
            RIGHT_HOST6,
        ),
    ] {
        let mut nl = Netlink::in_netns(ns).unwrap();
        for (dst, gw) in dsts.into_iter().zip([IpAddr::V4(gw4), IpAddr::V6(gw6)]) {
            nl.add_route(&Route {
                dst: cidr(dst),
                gateway: Some(gw),
                oif: None,
                scope_link: false,
            })
            .unwrap_or_else(|e| panic!("route {dst} via {gw}: {e}"));
        }
    }
    right
}

/// A test's host, its forwarding `on` or off to begin with, and its left and right.
fn routed_host(test: &str, on: bool) -> Option<(common::Env, TempNetns, TempNetns)> {
    let env = common::env(test)?;
    set_forwarding(on);
    let left = outside();
    let right = right_of(&left);
    Some((env, left, right))
}

/// The test namespace's forwarding sysctl of a family (`"0"` or `"1"`).
fn forwarding(v6: bool) -> String {
    let key = if v6 {
        "net.ipv6.conf.all.forwarding"
    } else {
        "net.ipv4.ip_forward"
    };
    lnet_kernel::sysctl::get(key).unwrap().trim().to_string()
}

/// Sets the test namespace's forwarding of both families: off is a host that does not
/// route (a new namespace copies the host's IPv4 setting, so it is set either way).
fn set_forwarding(on: bool) {
    let v = if on { "1" } else { "0" };
    lnet_kernel::sysctl::set("net.ipv4.ip_forward", v).unwrap();
    lnet_kernel::sysctl::set("net.ipv6.conf.all.forwarding", v).unwrap();
}

/// Whether an ICMP echo from `ns` to `dst` is answered within `wait`: a ping socket, so
/// the kernel fills in the identifier and the checksum.
fn pings(ns: &Netns, dst: IpAddr, wait: Duration) -> bool {
    ns.run(move || {
        // Ping sockets are for the groups in this range; the namespace is the test's.
        lnet_kernel::sysctl::set("net.ipv4.ping_group_range", "0 0").unwrap();
        let (domain, proto, echo) = match dst {
            IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP, 8u8),
            IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8),
        };
        // SAFETY: socket(2) with constant arguments; the fd is owned from here on.
        let fd = unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, proto) };
        assert!(fd >= 0, "ping socket: {}", std::io::Error::last_os_error());
        // SAFETY: fd was just returned by socket(2) and is not owned elsewhere; a ping
        // socket is a datagram socket, which is all UdpSocket does with it.
        let sock = unsafe { UdpSocket::from_raw_fd(fd) };
        sock.send_to(&[echo, 0, 0, 0, 0, 0, 0, 1], sa(dst, 0))
            .unwrap();
        sock.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 64];
        // The kernel hands a ping socket only the replies to its own echoes.
        matches!(sock.recv_from(&mut buf), Ok((n, from)) if n >= 8 && from.ip() == dst)
    })
    .unwrap()
}

/// Servers on the right (TCP and UDP, at `RIGHT` or `RIGHT6`).
fn right_servers(right: &Netns, v6: bool) -> (TcpListener, UdpSocket) {
    let at: IpAddr = if v6 { RIGHT6.into() } else { RIGHT.into() };
    (
        tcp_server(right, sa(at, 7100)),
        udp_socket(right, sa(at, 7101)),
    )
}

/// Left to right — TCP, UDP and ICMP — and right to left by ICMP, over IPv4 or IPv6, all
/// pass (`routed`) or none does.
#[track_caller]
fn assert_routed(left: &Netns, right: &Netns, v6: bool, routed: bool) {
    let (tcp, udp) = right_servers(right, v6);
    let (to, back): (IpAddr, IpAddr) = if v6 {
        (RIGHT6.into(), OUTSIDE6.into())
    } else {
        (RIGHT.into(), OUTSIDE.into())
    };
    // The host answers either side itself (input, not forwarding), which also settles
    // neighbour discovery on both links: what is blocked below is blocked by the firewall,
    // not by a slow first packet.
    let (host, right_host): (IpAddr, IpAddr) = if v6 {
        (HOST6.into(), RIGHT_HOST6.into())
    } else {
        (HOST.into(), RIGHT_HOST.into())
    };
    assert!(pings(left, host, PASS), "left pings the host at {host}");
    assert!(
        pings(right, right_host, PASS),
        "right pings the host at {right_host}"
    );
    if routed {
        assert_eq!(tcp_reaches(left, sa(to, 7100), &tcp).ip(), back);
        assert_eq!(
            udp_probe(left, sa(to, 7101), &udp, PASS).map(|a| a.ip()),
            Some(back)
        );
        assert!(pings(left, to, PASS), "left pings {to}");
        assert!(pings(right, back, PASS), "right pings {back}");
    } else {
        tcp_blocked(left, sa(to, 7100), Some(&tcp));
        assert_eq!(
            udp_probe(left, sa(to, 7101), &udp, BLOCK),
            None,
            "UDP to {to}"
        );
        assert!(!pings(left, to, BLOCK), "left must not ping {to}");
        assert!(!pings(right, back, BLOCK), "right must not ping {back}");
    }
}

/// A network of lnet's with a container publishing port 8080; its traffic out to the left
/// and in from there passes.
#[track_caller]
fn lnet_traffic_passes(ctrl: &Controller, left: &Netns, v6: bool) {
    let net = if v6 {
        dual_stack(ctrl, "web", "10.46.0.0/24", "fd00:46::/64")
    } else {
        bridge_on(ctrl, "web", "10.46.0.0/24")
    };
    let sb = sandbox(ctrl, "web1");
    let ep = publish(&net, "web", &sb, &["8080:80/tcp"]);
    let mut paths = vec![(IpAddr::V4(HOST), IpAddr::V4(OUTSIDE), ip4(&ep))];
    if v6 {
        paths.push((HOST6.into(), OUTSIDE6.into(), ip6(&ep)));
    }
    for (host, outside, ctr) in paths {
        let out_server = tcp_server(left, sa(outside, 7000));
        let seen = tcp_reaches(&ns(&sb), sa(outside, 7000), &out_server);
        assert_eq!(
            seen.ip(),
            host,
            "the container reaches the left, masqueraded"
        );
        assert!(
            pings(&ns(&sb), outside, PASS),
            "the container pings {outside}"
        );
        let server = tcp_server(&ns(&sb), sa(ctr, 80));
        let seen = tcp_reaches(left, sa(host, 8080), &server);
        assert_eq!(seen.ip(), outside, "the left reaches the published port");
    }
}

#[test]
fn forwarding_lnet_turned_on_carries_lnet_traffic_only() {
    let Some((env, left, right)) =
        routed_host("forwarding_lnet_turned_on_carries_lnet_traffic_only", false)
    else {
        return;
    };
    let ctrl = env.ctrl();
    lnet_traffic_passes(ctrl, &left, false);
    assert_eq!(forwarding(false), "1", "lnet turned IPv4 forwarding on");
    assert_eq!(
        forwarding(true),
        "0",
        "no IPv6 network: IPv6 forwarding stays off"
    );
    assert_routed(&left, &right, false, false);
    assert_firewall_agrees(ctrl);

    // The operators' chain comes first: what they accept there is routed.
    nft(&[
        "add", "rule", "inet", "lnet", "user", "iifname", "{", "uplink", ",", "right0", "}",
        "oifname", "{", "uplink", ",", "right0", "}", "accept",
    ]);
    assert_routed(&left, &right, false, true);
    teardown(ctrl);
}

#[test]
fn a_network_create_whose_firewall_fails_leaves_the_host_not_routing() {
    let Some((mut env, left, right)) = routed_host(
        "a_network_create_whose_firewall_fails_leaves_the_host_not_routing",
        false,
    ) else {
        return;
    };
    // lnet's table gone (someone flushed the ruleset): the create's firewall step fails.
    nft(&["delete", "table", "inet", "lnet"]);
    let e = env
        .ctrl()
        .new_network("bridge", "web", subnet_opts("10.46.0.0/24"))
        .expect_err("the firewall cannot take the network");
    assert!(e.to_string().contains("restart lnet"), "{e}");
    assert_eq!(
        forwarding(false),
        "0",
        "forwarding is not turned on without its guard in place"
    );
    assert_routed(&left, &right, false, false);

    // A start puts the firewall back; the same network then works, guarded.
    let ctrl = env.restart();
    lnet_traffic_passes(ctrl, &left, false);
    assert_eq!(forwarding(false), "1", "lnet turned IPv4 forwarding on");
    assert_routed(&left, &right, false, false);
    teardown(ctrl);
}

#[test]
fn ip_forward_no_drop_lets_the_host_route_what_is_not_lnets() {
    let Some((mut env, left, right)) = routed_host(
        "ip_forward_no_drop_lets_the_host_route_what_is_not_lnets",
        false,
    ) else {
        return;
    };
    let mut config = env.config();
    config.ip_forward_no_drop = true;
    let ctrl = env.restart_with(config);
    lnet_traffic_passes(ctrl, &left, false);
    assert_eq!(forwarding(false), "1", "lnet turned IPv4 forwarding on");
    assert_routed(&left, &right, false, true);
    teardown(ctrl);
}

#[test]
fn forwarding_that_was_on_before_lnet_is_left_to_route() {
    let Some((env, left, right)) =
        routed_host("forwarding_that_was_on_before_lnet_is_left_to_route", true)
    else {
        return;
    };
    let ctrl = env.ctrl();
    lnet_traffic_passes(ctrl, &left, true);
    assert_routed(&left, &right, false, true);
    assert_routed(&left, &right, true, true);
    teardown(ctrl);
}

#[test]
fn the_guard_outlives_a_restart_but_not_a_reboot() {
    let Some((mut env, left, right)) =
        routed_host("the_guard_outlives_a_restart_but_not_a_reboot", false)
    else {
        return;
    };
    lnet_traffic_passes(env.ctrl(), &left, false);
    assert_routed(&left, &right, false, false);

    // A restart: lnet still knows it turned forwarding on.
    env.restart();
    assert_routed(&left, &right, false, false);
    assert_firewall_agrees(env.ctrl());
    let doctor = env.ctrl().doctor();
    assert!(doctor.is_clean(), "{doctor:#?}");

    // The guard deleted by hand is drift, and a start puts it back.
    let mut b = lnet_kernel::nft::Batch::new();
    b.delete_elements(
        lnet_kernel::nft::Family::Inet,
        "lnet",
        "forward_guard",
        &[lnet_kernel::nft::Element::new(vec![2])],
    );
    lnet_kernel::nft::NftSocket::new()
        .unwrap()
        .commit(&b)
        .unwrap();
    let drift = env.ctrl().firewall_check().unwrap();
    assert!(
        drift
            .iter()
            .any(|d| d.kind == "missing" && d.what == "element forward_guard ipv4"),
        "{drift:?}"
    );
    assert_routed(&left, &right, false, true);
    env.restart();
    assert!(!env.ctrl().recovery_report().firewall.is_empty());
    assert_routed(&left, &right, false, false);

    // Restarted with --ip-forward-no-drop, then without: the guard goes and comes back.
    let mut no_drop = env.config();
    no_drop.ip_forward_no_drop = true;
    env.restart_with(no_drop);
    assert_routed(&left, &right, false, true);
    assert_firewall_agrees(env.ctrl());
    env.restart();
    assert_routed(&left, &right, false, false);

    // A reboot empties the exec root; forwarding on at boot is the operator's doing.
    std::fs::remove_file(env.root().join("run/forwarding.json")).unwrap();
    env.restart();
    assert_routed(&left, &right, false, true);
    assert_firewall_agrees(env.ctrl());
    assert!(
        !env.root().join("run/forwarding.json").exists(),
        "lnet turned nothing on: nothing recorded"
    );
    // Off at boot: lnet turns it on again, and guards it again.
    set_forwarding(false);
    env.restart();
    assert_eq!(forwarding(false), "1");
    assert_routed(&left, &right, false, false);
    // And the start after that has nothing to fix.
    env.restart();
    let report = env.ctrl().recovery_report();
    assert!(report.is_clean(), "{report:?}");
    assert_routed(&left, &right, false, false);
    teardown(env.ctrl());
}

#[test]
fn ipv6_forwarding_lnet_turned_on_carries_lnet_traffic_only() {
    let Some((env, left, right)) = routed_host(
        "ipv6_forwarding_lnet_turned_on_carries_lnet_traffic_only",
        false,
    ) else {
        return;
    };
    let ctrl = env.ctrl();
    lnet_traffic_passes(ctrl, &left, true);
    assert_eq!(
        (forwarding(false), forwarding(true)),
        ("1".into(), "1".into())
    );
    assert_routed(&left, &right, true, false);
    assert_routed(&left, &right, false, false);
    assert_firewall_agrees(ctrl);
    teardown(ctrl);
}
