//! Real packets: two namespaces, each with a veth peer on a bridge in the
//! test's own namespace, exchange UDP and TCP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use lnet_kernel::testing::{TempNetns, enter_new_netns};
use lnet_kernel::{AddrFlags, BridgeOptions, Netlink, Netns, VethSpec, skip_unless_root};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Attach `ns` to the bridge with a veth whose peer is `eth0` in `ns`,
/// address `addr`, everything up.
fn plug(nl: &mut Netlink, bridge: u32, host: &str, ns: &Netns, addr: &str) {
    nl.create_veth(VethSpec {
        host_name: host,
        host_master: Some(bridge),
        host_up: true,
        peer_name: "eth0",
        peer_ns: Some(ns),
        ..Default::default()
    })
    .unwrap();
    let mut inside = Netlink::in_netns(ns).unwrap();
    let eth0 = inside.link_by_name("eth0").unwrap().unwrap();
    inside
        .add_address(eth0.index, addr.parse().unwrap(), AddrFlags { nodad: true })
        .unwrap();
    inside.set_up(eth0.index).unwrap();
}

struct Pair {
    a: TempNetns,
    b: TempNetns,
}

fn two_namespaces_on_a_bridge() -> Pair {
    enter_new_netns().unwrap();
    let mut nl = Netlink::new().unwrap();
    let br = nl
        .ensure_bridge("br-traffic", BridgeOptions::default())
        .unwrap();
    nl.set_up(br.index).unwrap();
    let a = TempNetns::new().unwrap();
    let b = TempNetns::new().unwrap();
    plug(&mut nl, br.index, "veth-a", &a, "10.99.0.2/24");
    plug(&mut nl, br.index, "veth-b", &b, "10.99.0.3/24");
    Pair { a, b }
}

#[test]
fn udp_between_namespaces() {
    skip_unless_root!();
    let p = two_namespaces_on_a_bridge();

    // Sockets stay in the namespace they were created in.
    let rx =
        p.b.run(|| UdpSocket::bind("10.99.0.3:5353"))
            .unwrap()
            .unwrap();
    rx.set_read_timeout(Some(TIMEOUT)).unwrap();
    let tx = p.a.run(|| UdpSocket::bind("10.99.0.2:0")).unwrap().unwrap();
    tx.send_to(b"hello over the bridge", "10.99.0.3:5353")
        .unwrap();

    let mut buf = [0u8; 64];
    let (n, from) = rx.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello over the bridge");
    assert_eq!(from.ip(), "10.99.0.2".parse::<std::net::IpAddr>().unwrap());

    // The address is not reachable from the test's own namespace (no
    // address on the bridge there).
    let local = UdpSocket::bind("0.0.0.0:0").unwrap();
    local.send_to(b"x", "10.99.0.3:5353").unwrap_err();
}

#[test]
fn tcp_between_namespaces() {
    skip_unless_root!();
    let p = two_namespaces_on_a_bridge();

    let listener =
        p.b.run(|| TcpListener::bind("10.99.0.3:8080"))
            .unwrap()
            .unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).unwrap();
        conn.write_all(b"pong").unwrap();
        (buf, peer)
    });

    let target: SocketAddr = "10.99.0.3:8080".parse().unwrap();
    let mut client =
        p.a.run(|| TcpStream::connect_timeout(&target, TIMEOUT))
            .unwrap()
            .unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.write_all(b"ping").unwrap();
    let mut reply = [0u8; 4];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"pong");

    let (got, peer) = server.join().unwrap();
    assert_eq!(&got, b"ping");
    assert_eq!(peer.ip(), "10.99.0.2".parse::<std::net::IpAddr>().unwrap());
}
