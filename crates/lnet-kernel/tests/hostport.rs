//! Host ports held by bound sockets, and who holds a port. Each test runs in its own fresh
//! network namespace, so the ports it binds are its own.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};

use lnet_kernel::hostport::{Transport, holders, reserve};
use lnet_kernel::skip_unless_root;
use lnet_kernel::testing::enter_new_netns;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn tcp_bind(a: &str) -> Result<(), ErrorKind> {
    TcpListener::bind(a).map(drop).map_err(|e| e.kind())
}

#[test]
fn a_held_port_refuses_host_programs_and_is_free_once_dropped() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    let v4 = reserve(addr("0.0.0.0:4000"), Transport::Tcp).unwrap();
    assert!(v4.is_held());
    // std's listeners set SO_REUSEADDR, as most servers do: still refused.
    assert_eq!(tcp_bind("0.0.0.0:4000"), Err(ErrorKind::AddrInUse));
    assert_eq!(tcp_bind("127.0.0.1:4000"), Err(ErrorKind::AddrInUse));
    // A dual-stack [::] socket takes IPv4 too, so it collides as well.
    assert_eq!(tcp_bind("[::]:4000"), Err(ErrorKind::AddrInUse));
    // Not listening: a connection is refused, not left hanging.
    let e = TcpStream::connect("127.0.0.1:4000").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    drop(v4);
    assert_eq!(tcp_bind("0.0.0.0:4000"), Ok(()));

    // [::] is held for IPv6 only: lnet holds 0.0.0.0 with its own socket.
    let v6 = reserve(addr("[::]:4001"), Transport::Tcp).unwrap();
    assert_eq!(tcp_bind("[::1]:4001"), Err(ErrorKind::AddrInUse));
    assert_eq!(tcp_bind("0.0.0.0:4001"), Ok(()));
    drop(v6);

    let udp = reserve(addr("0.0.0.0:4002"), Transport::Udp).unwrap();
    let e = UdpSocket::bind("127.0.0.1:4002").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrInUse);
    drop(udp);
    UdpSocket::bind("127.0.0.1:4002").unwrap();

    // This kernel may lack SCTP sockets: then nothing is held, and no program can bind
    // an SCTP port either.
    let sctp = reserve(addr("0.0.0.0:4003"), Transport::Sctp).unwrap();
    let have_sctp = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::empty(),
        nix::sys::socket::SockProtocol::Sctp,
    )
    .is_ok();
    assert_eq!(sctp.is_held(), have_sctp);
}

#[test]
fn a_port_someone_holds_is_refused_and_its_holder_named() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    let service = TcpListener::bind("127.0.0.1:4100").unwrap();
    let e = reserve(addr("0.0.0.0:4100"), Transport::Tcp).unwrap_err();
    assert!(e.is_in_use(), "{e}");
    assert!(e.to_string().contains("0.0.0.0:4100/tcp"), "{e}");
    let found = holders(addr("0.0.0.0:4100"), Transport::Tcp);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].local, addr("127.0.0.1:4100"));
    assert_eq!(found[0].state, "listening");
    assert_eq!(
        found[0].process.as_ref().map(|p| p.0),
        Some(std::process::id())
    );
    assert!(
        found[0]
            .to_string()
            .contains(&format!("pid {}, listening", std::process::id())),
        "{}",
        found[0]
    );
    // Another address of the family does not collide.
    assert!(holders(addr("127.0.0.2:4100"), Transport::Tcp).is_empty());
    reserve(addr("127.0.0.2:4100"), Transport::Tcp).unwrap();

    // The service served a connection and closed it first: its side lingers in TIME_WAIT,
    // which holds the port for a minute, and is named so.
    let mut c = TcpStream::connect("127.0.0.1:4100").unwrap();
    let (mut s, _) = service.accept().unwrap();
    drop(service);
    s.write_all(b"bye").unwrap();
    drop(s);
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).unwrap();
    drop(c);
    let e = reserve(addr("0.0.0.0:4100"), Transport::Tcp).unwrap_err();
    assert!(e.is_in_use(), "{e}");
    let found = holders(addr("0.0.0.0:4100"), Transport::Tcp);
    let tw = found
        .iter()
        .find(|h| h.state == "time-wait")
        .unwrap_or_else(|| panic!("a TIME_WAIT socket in {found:?}"));
    assert!(tw.to_string().contains("TIME_WAIT"), "{tw}");
}
