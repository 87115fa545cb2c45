//! Conntrack entries over ctnetlink, in a fresh network namespace per test:
//! real UDP flows over loopback make the entries (conntrack tracks a
//! namespace's traffic once an nftables rule there uses `ct`).

use std::net::{IpAddr, UdpSocket};

use lnet_kernel::nft::{Batch, Chain, ChainType, Family, Hook, NftSocket, Rule, ct_state};
use lnet_kernel::testing::{TempNetns, enter_new_netns};
use lnet_kernel::{Conntrack, CtEntry, skip_unless_root};

/// Turn conntrack on in the calling thread's namespace: a `ct state`
/// rule on the output hook of an inet table.
fn track_connections() {
    let mut b = Batch::new();
    b.add_table(Family::Inet, "ct")
        .add_chain(&Chain::base(
            Family::Inet,
            "ct",
            "out",
            ChainType::Filter,
            Hook::Output,
            0,
        ))
        .add_rule(
            &Rule::new(Family::Inet, "ct", "out")
                .ct_state(ct_state::NEW)
                .counter(),
        );
    NftSocket::new().unwrap().commit(&b).unwrap();
}

/// Send one datagram from an ephemeral port to `to`, which a bound socket
/// receives (so the flow is a real one); returns the source port.
fn flow(ip: &str, port: u16) -> u16 {
    let rx = UdpSocket::bind((ip, port)).unwrap();
    let tx = UdpSocket::bind((ip, 0)).unwrap();
    tx.send_to(b"x", (ip, port)).unwrap();
    rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4];
    rx.recv_from(&mut buf).unwrap();
    tx.local_addr().unwrap().port()
}

fn find(entries: &[CtEntry], dport: u16) -> Vec<CtEntry> {
    entries
        .iter()
        .filter(|e| e.orig.proto == 17 && e.orig.dport == dport)
        .copied()
        .collect()
}

#[test]
fn list_and_delete_udp_entries() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    let mut ct = Conntrack::new().unwrap();
    // Nothing is tracked before a rule asks for it.
    assert!(ct.entries(false).unwrap().is_empty());
    track_connections();
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let s1 = flow("127.0.0.1", 40001);
    let s2 = flow("127.0.0.1", 40002);
    let s6 = flow("::1", 40001);

    let v4 = ct.entries(false).unwrap();
    let e1 = find(&v4, 40001);
    assert_eq!(e1.len(), 1, "{v4:?}");
    let e1 = e1[0];
    assert_eq!((e1.orig.src, e1.orig.dst, e1.orig.sport), (lo, lo, s1));
    // No NAT: the reply tuple is the original one reversed.
    assert_eq!(
        (e1.reply.src, e1.reply.dst, e1.reply.sport, e1.reply.dport),
        (lo, lo, 40001, s1)
    );
    assert_eq!(find(&v4, 40002)[0].orig.sport, s2);
    assert!(v4.iter().all(|e| e.orig.src.is_ipv4()));
    let v6 = ct.entries(true).unwrap();
    let e6 = find(&v6, 40001);
    assert_eq!(e6.len(), 1, "{v6:?}");
    assert_eq!(e6[0].orig.src, "::1".parse::<IpAddr>().unwrap());
    assert_eq!(e6[0].orig.sport, s6);

    // Only the matching IPv4 entry goes.
    let n = ct
        .delete_where(false, |e| e.orig.proto == 17 && e.orig.dport == 40001)
        .unwrap();
    assert_eq!(n, 1);
    let v4 = ct.entries(false).unwrap();
    assert!(find(&v4, 40001).is_empty(), "{v4:?}");
    assert_eq!(find(&v4, 40002).len(), 1);
    assert_eq!(find(&ct.entries(true).unwrap(), 40001).len(), 1);
    // Gone already: not an error.
    assert!(!ct.delete(&e1).unwrap());
    assert_eq!(
        ct.delete_where(false, |e| e.orig.dport == 40001).unwrap(),
        0
    );
    assert!(ct.delete(&e6[0]).unwrap());
    assert!(find(&ct.entries(true).unwrap(), 40001).is_empty());
}

#[test]
fn sockets_see_their_own_namespace_only() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    track_connections();
    flow("127.0.0.1", 40003);
    let other = TempNetns::new().unwrap();
    let mut there = Conntrack::in_netns(&other).unwrap();
    assert!(there.entries(false).unwrap().is_empty());
    let mut here = Conntrack::new().unwrap();
    assert_eq!(find(&here.entries(false).unwrap(), 40003).len(), 1);
    assert_eq!(there.delete_where(false, |_| true).unwrap(), 0);
    assert_eq!(find(&here.entries(false).unwrap(), 40003).len(), 1);
}
