//! Connection tracking entries over ctnetlink (`NETLINK_NETFILTER`,
//! subsystem `NFNL_SUBSYS_CTNETLINK`): list the entries of one address
//! family and delete entries by their original tuple.
//!
//! lnet needs this where Docker runs `conntrack -D`: once a published port
//! or a NAT rule goes away, existing entries keep translating packets of
//! flows that started before (UDP especially, whose entries live as long as
//! packets keep coming), so they have to be removed.
//!
//! [`Conntrack`] is a socket bound to one network namespace, like
//! [`Netlink`](crate::Netlink) and [`NftSocket`](crate::nft::NftSocket), on
//! the same socket core. The conntrack table is per namespace: a socket
//! only sees and deletes the entries of its own.
//!
//! The few attributes needed (the two tuples: addresses, protocol, ports)
//! are written and parsed here by hand, with the crate's checked TLV
//! reader: replies are parsed without trusting any length, and an entry
//! whose tuple cannot be read is skipped, never a panic.
//! `netlink-packet-netfilter` (0.4) models ctnetlink messages too, but using
//! it would add a dependency tree (and workspace lock file changes) for a
//! dozen attributes that this crate's nf_tables code already knows how to
//! encode and decode.
//!
//! Only entries whose protocol has ports (TCP, UDP, UDP-Lite, SCTP, DCCP)
//! are listed; ICMP and other port-less entries are skipped, so every
//! [`CtEntry`] can be deleted again by its tuple. Entries are assumed to be
//! in conntrack zone 0, the only zone lnet uses: a delete sends no zone.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use rtnetlink::sys::protocols::NETLINK_NETFILTER;

use crate::error::Result;
use crate::netns::Netns;
use crate::socket::{self, NlError, NlSocket, OpContext};
use lnet_nla::{Attrs, Checked, NFGENMSG_LEN, Writer};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// One direction of a connection: addresses, IP protocol and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number (6 = TCP, 17 = UDP, 132 = SCTP).
    pub proto: u8,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

impl fmt::Display for CtTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sock = |a: IpAddr, p: u16| match a {
            IpAddr::V4(a) => format!("{a}:{p}"),
            IpAddr::V6(a) => format!("[{a}]:{p}"),
        };
        write!(
            f,
            "proto {} {} -> {}",
            self.proto,
            sock(self.src, self.sport),
            sock(self.dst, self.dport)
        )
    }
}

/// A conntrack entry: the tuple of the first packet, and the tuple replies
/// are expected to have. They differ when NAT applies: after a DNAT the
/// reply comes from the translated address (`reply.src`), after a SNAT it
/// goes to the translated address (`reply.dst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtEntry {
    /// The original direction.
    pub orig: CtTuple,
    /// The reply direction.
    pub reply: CtTuple,
}

/// A synchronous ctnetlink socket bound to one network namespace.
///
/// Like [`Netlink`](crate::Netlink): the namespace is fixed at creation
/// ([`Conntrack::new`], [`Conntrack::in_netns`]); afterwards the value may
/// be moved between threads. A listing is one dump request, a delete one
/// request.
pub struct Conntrack {
    sock: NlSocket,
}

impl Conntrack {
    /// Open a socket in the calling thread's current network namespace.
    pub fn new() -> Result<Conntrack> {
        Ok(Conntrack {
            sock: NlSocket::open(NETLINK_NETFILTER, "NETLINK_NETFILTER (ctnetlink)", 256)?,
        })
    }

    /// Open a socket inside `ns`, from a short-lived helper thread; the
    /// calling thread's namespace is never touched.
    pub fn in_netns(ns: &Netns) -> Result<Conntrack> {
        socket::in_netns(ns, Conntrack::new)
    }

    /// How many requests this socket has sent.
    pub fn request_count(&self) -> u64 {
        self.sock.request_count()
    }

    /// Start a ctnetlink message of `msg` for `v6`'s family in the send
    /// buffer.
    fn begin(&mut self, msg: u16, flags: u16, v6: bool) -> (Writer, usize) {
        let mut w = Writer::reuse(std::mem::take(&mut self.sock.send_buf));
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
        let start = w.begin_msg((NFNL_SUBSYS_CTNETLINK << 8) | msg, flags, family, 0);
        (w, start)
    }

    /// The entries of one family (`v6`: IPv6, else IPv4) with ports; see
    /// the module documentation for what is skipped.
    pub fn entries(&mut self, v6: bool) -> Result<Vec<CtEntry>> {
        let (mut w, start) = self.begin(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, v6);
        w.end_msg(start);
        self.sock.send_buf = w.buf;
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
        self.sock.dump(|m| Ok(parse_entry(m, family))).op(|| {
            format!(
                "list conntrack entries ({})",
                if v6 { "ipv6" } else { "ipv4" }
            )
        })
    }

    /// Delete the entry with `e`'s original tuple. `Ok(false)` when there
    /// is none (already expired or deleted).
    pub fn delete(&mut self, e: &CtEntry) -> Result<bool> {
        let t = &e.orig;
        let v6 = t.src.is_ipv6();
        let (mut w, start) = self.begin(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, v6);
        // Never send a delete without a tuple: the kernel reads that as
        // "flush the table".
        w.nest(CTA_TUPLE_ORIG);
        w.nest(CTA_TUPLE_IP);
        match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                w.bytes(CTA_IP_V4_SRC, &s.octets());
                w.bytes(CTA_IP_V4_DST, &d.octets());
            }
            (s, d) => {
                w.bytes(CTA_IP_V6_SRC, &v6_octets(s));
                w.bytes(CTA_IP_V6_DST, &v6_octets(d));
            }
        }
        w.end_nest();
        w.nest(CTA_TUPLE_PROTO);
        w.bytes(CTA_PROTO_NUM, &[t.proto]);
        w.bytes(CTA_PROTO_SRC_PORT, &t.sport.to_be_bytes());
        w.bytes(CTA_PROTO_DST_PORT, &t.dport.to_be_bytes());
        w.end_nest();
        w.end_nest();
        w.end_msg(start);
        self.sock.send_buf = w.buf;
        match self.sock.request(|_| Ok(())) {
            Ok(_) => Ok(true),
            Err(NlError::Errno { errno, .. }) if errno == libc::ENOENT => Ok(false),
            Err(e) => Err(e.into_kernel(format!("delete conntrack entry {t}"))),
        }
    }

    /// Delete every entry of one family for which `pred` is true (one dump,
    /// then one request per match); returns how many were deleted. Entries
    /// that vanish in between are not counted.
    pub fn delete_where(&mut self, v6: bool, pred: impl Fn(&CtEntry) -> bool) -> Result<usize> {
        let mut n = 0;
        for e in self.entries(v6)?.iter().filter(|e| pred(e)) {
            if self.delete(e)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

impl fmt::Debug for Conntrack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.sock.debug("Conntrack", f)
    }
}

/// An address as 16 bytes (IPv4 mapped, which a v6 delete then simply
/// does not find).
fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// One message of a conntrack dump, if it is an entry of `family` with
/// readable tuples.
fn parse_entry(msg: &[u8], family: u8) -> Option<CtEntry> {
    let ty = u16::from_ne_bytes([*msg.get(4)?, *msg.get(5)?]);
    if ty != (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW || *msg.get(16)? != family {
        return None;
    }
    // An entry whose attributes are malformed is not readable either.
    let attrs = Attrs::of_message(msg, NFGENMSG_LEN).ok()?.checked().ok()?;
    Some(CtEntry {
        orig: parse_tuple(attrs.nested(CTA_TUPLE_ORIG).ok()??)?,
        reply: parse_tuple(attrs.nested(CTA_TUPLE_REPLY).ok()??)?,
    })
}

fn parse_tuple(t: Checked<'_>) -> Option<CtTuple> {
    let ip = t.nested(CTA_TUPLE_IP).ok()??;
    let v4 = |ty| -> Option<IpAddr> {
        let b: [u8; 4] = ip.get(ty)?.value().try_into().ok()?;
        Some(Ipv4Addr::from(b).into())
    };
    let v6 = |ty| -> Option<IpAddr> {
        let b: [u8; 16] = ip.get(ty)?.value().try_into().ok()?;
        Some(Ipv6Addr::from(b).into())
    };
    let (src, dst) = match (v4(CTA_IP_V4_SRC), v4(CTA_IP_V4_DST)) {
        (Some(s), Some(d)) => (s, d),
        _ => (v6(CTA_IP_V6_SRC)?, v6(CTA_IP_V6_DST)?),
    };
    let proto = t.nested(CTA_TUPLE_PROTO).ok()??;
    let port = |ty| proto.get(ty)?.be16();
    Some(CtTuple {
        src,
        dst,
        proto: *proto.get(CTA_PROTO_NUM)?.value().first()?,
        sport: port(CTA_PROTO_SRC_PORT)?,
        dport: port(CTA_PROTO_DST_PORT)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dump answer with the given tuple attributes.
    fn entry_msg(family: u8, build: impl Fn(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::default();
        let s = w.begin_msg(
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW,
            0,
            family,
            0,
        );
        build(&mut w);
        w.end_msg(s);
        w.buf
    }

    fn tuple(w: &mut Writer, ty: u16, src: [u8; 4], dst: [u8; 4], ports: Option<(u16, u16)>) {
        w.nest(ty);
        w.nest(CTA_TUPLE_IP);
        w.bytes(CTA_IP_V4_SRC, &src);
        w.bytes(CTA_IP_V4_DST, &dst);
        w.end_nest();
        w.nest(CTA_TUPLE_PROTO);
        w.bytes(CTA_PROTO_NUM, &[if ports.is_some() { 17 } else { 1 }]);
        if let Some((s, d)) = ports {
            w.bytes(CTA_PROTO_SRC_PORT, &s.to_be_bytes());
            w.bytes(CTA_PROTO_DST_PORT, &d.to_be_bytes());
        }
        w.end_nest();
        w.end_nest();
    }

    #[test]
    fn parses_entries_and_skips_the_rest() {
        let af = libc::AF_INET as u8;
        let ok = entry_msg(af, |w| {
            tuple(
                w,
                CTA_TUPLE_ORIG,
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                Some((1000, 53)),
            );
            tuple(
                w,
                CTA_TUPLE_REPLY,
                [10, 0, 0, 2],
                [10, 0, 0, 1],
                Some((53, 1000)),
            );
        });
        let e = parse_entry(&ok, af).unwrap();
        assert_eq!(
            e.orig,
            CtTuple {
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.0.0.2".parse().unwrap(),
                proto: 17,
                sport: 1000,
                dport: 53,
            }
        );
        assert_eq!((e.reply.sport, e.reply.dport), (53, 1000));
        assert_eq!(e.orig.to_string(), "proto 17 10.0.0.1:1000 -> 10.0.0.2:53");
        // Another family, an ICMP entry, a missing reply tuple.
        assert_eq!(parse_entry(&ok, libc::AF_INET6 as u8), None);
        let icmp = entry_msg(af, |w| {
            tuple(w, CTA_TUPLE_ORIG, [10, 0, 0, 1], [10, 0, 0, 2], None);
            tuple(w, CTA_TUPLE_REPLY, [10, 0, 0, 2], [10, 0, 0, 1], None);
        });
        assert_eq!(parse_entry(&icmp, af), None);
        let half = entry_msg(af, |w| {
            tuple(
                w,
                CTA_TUPLE_ORIG,
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                Some((1, 2)),
            );
        });
        assert_eq!(parse_entry(&half, af), None);
        // Every truncation of a good message parses to nothing or to the
        // entry, and never panics; so does garbage in the attribute lengths.
        for n in 0..ok.len() {
            let _ = parse_entry(&ok[..n], af);
        }
        let mut bad = ok.clone();
        bad[20] = 0xff;
        bad[21] = 0xff;
        assert_eq!(parse_entry(&bad, af), None);
        let mut short_addr = ok.clone();
        // Shrink the first address attribute (length 8 -> 6).
        let at = ok
            .windows(4)
            .position(|w| w == [8, 0, CTA_IP_V4_SRC as u8, 0])
            .unwrap();
        short_addr[at] = 6;
        assert_eq!(parse_entry(&short_addr, af), None);
    }
}
