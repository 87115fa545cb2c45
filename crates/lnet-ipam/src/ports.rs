//! Host ports for published container ports: which `(host IP, protocol, port)` is whose.
//!
//! The rule libnetwork's allocator misses: a port bound on the unspecified address
//! (`0.0.0.0:80`, or `[::]:80`) covers every address of that family, so it conflicts with
//! the same port on any specific address of the family, and the other way round — the kernel
//! would refuse the second bind, and a DNAT rule for it would shadow or be shadowed by the
//! first. Addresses of different families never conflict (`0.0.0.0:80` and `[::]:80` are two
//! bindings, as Docker makes them).
//!
//! Like the address allocator this is pure and rebuilt at start by replaying the recorded
//! bindings (explicit ports) in any order. Requests for a range or an ephemeral port scan
//! round-robin from just after the last port handed out for that protocol, as libnetwork
//! does, so a freed port is not handed out again at once.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Proto {
    /// Parses `tcp`, `udp` or `sctp` (any case); `field` names the input in the error.
    pub fn parse(field: &str, s: &str) -> Result<Proto, PortError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => Err(PortError::UnknownProtocol {
                field: field.to_string(),
                value: s.to_string(),
            }),
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a host port could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// A protocol other than tcp, udp or sctp.
    #[error("invalid {field} {value:?}: the protocol must be tcp, udp or sctp")]
    UnknownProtocol {
        /// The request field.
        field: String,
        /// The value given.
        value: String,
    },
    /// A port of 0 where a port is needed, or a range whose start is above its end.
    #[error(
        "invalid host port range {start}-{end}: ports are 1 to 65535 and a range runs from its lower port to its higher"
    )]
    BadRange {
        /// First port.
        start: u16,
        /// Last port.
        end: u16,
    },
    /// The port, or one that covers it, is held by someone else.
    #[error(
        "host port {}/{proto} is not available: {holder} holds {}/{proto}; choose another host port or host IP",
        std::net::SocketAddr::new(*.host_ip, *.port),
        std::net::SocketAddr::new(*.held_ip, *.port)
    )]
    InUse {
        /// The address asked for.
        host_ip: IpAddr,
        /// The port.
        port: u16,
        /// The protocol.
        proto: Proto,
        /// The address the conflicting binding is on (the same, or the unspecified one).
        held_ip: IpAddr,
        /// Who holds it.
        holder: String,
    },
    /// Every port of the range is taken.
    #[error(
        "no free host port for {host_ip}/{proto} in {start}-{end}: every port of the range is in use"
    )]
    Exhausted {
        /// The address asked for.
        host_ip: IpAddr,
        /// The protocol.
        proto: Proto,
        /// First port of the range.
        start: u16,
        /// Last port of the range.
        end: u16,
    },
}

/// The host ports handed out, by protocol and port, then address.
#[derive(Debug, Clone)]
pub struct PortAllocator {
    ephemeral: (u16, u16),
    taken: BTreeMap<(Proto, u16), BTreeMap<IpAddr, String>>,
    last: BTreeMap<Proto, u16>,
}

/// Whether bindings on `a` and `b` (same protocol and port) collide.
fn collide(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a == b || a.is_unspecified() || b.is_unspecified())
}

impl PortAllocator {
    /// An allocator whose ephemeral ports (a request for port 0) come from `ephemeral`,
    /// inclusive — the host's `net.ipv4.ip_local_port_range`, which the caller reads.
    pub fn new(ephemeral: (u16, u16)) -> Result<PortAllocator, PortError> {
        let (start, end) = ephemeral;
        if start == 0 || start > end {
            return Err(PortError::BadRange { start, end });
        }
        Ok(PortAllocator {
            ephemeral,
            taken: BTreeMap::new(),
            last: BTreeMap::new(),
        })
    }

    /// The ephemeral range in use.
    pub fn ephemeral(&self) -> (u16, u16) {
        self.ephemeral
    }

    /// Who holds a binding that collides with `host_ip:port/proto`, and on which address.
    pub fn holder(&self, host_ip: IpAddr, proto: Proto, port: u16) -> Option<(IpAddr, &str)> {
        self.taken
            .get(&(proto, port))?
            .iter()
            .find(|(ip, _)| collide(**ip, host_ip))
            .map(|(ip, who)| (*ip, who.as_str()))
    }

    /// Takes a host port for `owner`: exactly `start` when `start == end`, the next free
    /// one in `start..=end` otherwise, and an ephemeral one when both are 0. Returns it.
    pub fn request(
        &mut self,
        host_ip: IpAddr,
        proto: Proto,
        range: (u16, u16),
        owner: &str,
    ) -> Result<u16, PortError> {
        self.request_where(host_ip, proto, range, owner, |_| true)
    }

    /// [`PortAllocator::request`] for a range or an ephemeral port that also skips every
    /// port `usable` turns down (one some other program holds on the host, say); `usable`
    /// is asked only about ports free here, in the order they would be handed out. An
    /// exact port is not asked about: the caller checks it and names its holder.
    pub fn request_where(
        &mut self,
        host_ip: IpAddr,
        proto: Proto,
        (start, end): (u16, u16),
        owner: &str,
        mut usable: impl FnMut(u16) -> bool,
    ) -> Result<u16, PortError> {
        let (start, end) = if (start, end) == (0, 0) {
            self.ephemeral
        } else {
            (start, end)
        };
        if start == 0 || start > end {
            return Err(PortError::BadRange { start, end });
        }
        if start == end {
            if let Some((held_ip, holder)) = self.holder(host_ip, proto, start) {
                return Err(PortError::InUse {
                    host_ip,
                    port: start,
                    proto,
                    held_ip,
                    holder: holder.to_string(),
                });
            }
            self.take(host_ip, proto, start, owner);
            return Ok(start);
        }
        // Round-robin: start just after the last port handed out, if that is in the range.
        let after = self
            .last
            .get(&proto)
            .copied()
            .filter(|p| (start..end).contains(p));
        let first = after.map_or(start, |p| p + 1);
        let candidates = (first..=end).chain(start..first);
        for port in candidates {
            if self.holder(host_ip, proto, port).is_none() && usable(port) {
                self.take(host_ip, proto, port, owner);
                return Ok(port);
            }
        }
        Err(PortError::Exhausted {
            host_ip,
            proto,
            start,
            end,
        })
    }

    fn take(&mut self, host_ip: IpAddr, proto: Proto, port: u16, owner: &str) {
        self.taken
            .entry((proto, port))
            .or_default()
            .insert(host_ip, owner.to_string());
        self.last.insert(proto, port);
    }

    /// Gives a binding back; releasing what is not held is not an error (recovery may
    /// repeat a release).
    pub fn release(&mut self, host_ip: IpAddr, proto: Proto, port: u16) {
        if let Some(m) = self.taken.get_mut(&(proto, port)) {
            m.remove(&host_ip);
            if m.is_empty() {
                self.taken.remove(&(proto, port));
            }
        }
    }

    /// Every binding held, as `(host IP, protocol, port, owner)`.
    pub fn bindings(&self) -> impl Iterator<Item = (IpAddr, Proto, u16, &str)> {
        self.taken.iter().flat_map(|((proto, port), m)| {
            m.iter()
                .map(move |(ip, who)| (*ip, *proto, *port, who.as_str()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unspecified_and_specific_addresses_conflict_both_ways() {
        let mut a = PortAllocator::new((49153, 65535)).unwrap();
        a.request(ip("10.1.2.3"), Proto::Tcp, (80, 80), "web")
            .unwrap();
        let e = a
            .request(ip("0.0.0.0"), Proto::Tcp, (80, 80), "api")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "host port 0.0.0.0:80/tcp is not available: web holds 10.1.2.3:80/tcp; choose another host port or host IP"
        );
        // Other protocols, other families and other specific addresses are free.
        a.request(ip("0.0.0.0"), Proto::Udp, (80, 80), "dns")
            .unwrap();
        a.request(ip("::"), Proto::Tcp, (80, 80), "web6").unwrap();
        a.request(ip("10.1.2.4"), Proto::Tcp, (80, 80), "other")
            .unwrap();

        let mut b = PortAllocator::new((49153, 65535)).unwrap();
        b.request(ip("0.0.0.0"), Proto::Sctp, (9, 9), "any")
            .unwrap();
        let e = b
            .request(ip("192.0.2.1"), Proto::Sctp, (9, 9), "one")
            .unwrap_err();
        assert!(
            matches!(e, PortError::InUse { ref holder, .. } if holder == "any"),
            "{e}"
        );
        assert!(
            b.request(ip("::1"), Proto::Sctp, (9, 9), "v6")
                .is_ok_and(|p| p == 9)
        );
    }

    #[test]
    fn ranges_and_ephemeral_ports_go_round_robin() {
        let mut a = PortAllocator::new((40000, 40002)).unwrap();
        let any = ip("0.0.0.0");
        assert_eq!(a.request(any, Proto::Tcp, (0, 0), "a").unwrap(), 40000);
        assert_eq!(a.request(any, Proto::Tcp, (0, 0), "b").unwrap(), 40001);
        a.release(any, Proto::Tcp, 40000);
        // The freed port is not handed out again at once.
        assert_eq!(a.request(any, Proto::Tcp, (0, 0), "c").unwrap(), 40002);
        assert_eq!(a.request(any, Proto::Tcp, (0, 0), "d").unwrap(), 40000);
        let e = a.request(any, Proto::Tcp, (0, 0), "e").unwrap_err();
        assert_eq!(
            e,
            PortError::Exhausted {
                host_ip: any,
                proto: Proto::Tcp,
                start: 40000,
                end: 40002
            }
        );
        assert_eq!(a.request(any, Proto::Tcp, (8000, 8001), "f").unwrap(), 8000);
    }

    #[test]
    fn ports_the_caller_turns_down_are_skipped() {
        let mut a = PortAllocator::new((40000, 40003)).unwrap();
        let any = ip("0.0.0.0");
        let mut asked = Vec::new();
        let got = a
            .request_where(any, Proto::Udp, (0, 0), "a", |p| {
                asked.push(p);
                p != 40000 && p != 40001
            })
            .unwrap();
        assert_eq!((got, asked), (40002, vec![40000, 40001, 40002]));
        let e = a
            .request_where(any, Proto::Udp, (40000, 40003), "b", |p| p == 40002)
            .unwrap_err();
        assert!(matches!(e, PortError::Exhausted { .. }), "{e}");
        assert_eq!(a.bindings().count(), 1);
    }

    #[test]
    fn bad_requests_change_nothing() {
        PortAllocator::new((0, 10)).unwrap_err();
        PortAllocator::new((20, 10)).unwrap_err();
        let mut a = PortAllocator::new((49153, 65535)).unwrap();
        for range in [(0, 80), (90, 80)] {
            let e = a
                .request(ip("0.0.0.0"), Proto::Tcp, range, "x")
                .unwrap_err();
            assert!(matches!(e, PortError::BadRange { .. }), "{e}");
        }
        assert_eq!(a.bindings().count(), 0);
        let e = Proto::parse("Proto", "icmp").unwrap_err().to_string();
        assert!(
            e.contains("Proto") && e.contains("icmp") && e.contains("tcp, udp or sctp"),
            "{e}"
        );
        assert_eq!(Proto::parse("Proto", "UDP").unwrap(), Proto::Udp);
    }

    #[test]
    fn release_is_idempotent_and_frees_the_binding() {
        let mut a = PortAllocator::new((49153, 65535)).unwrap();
        a.request(ip("10.0.0.1"), Proto::Tcp, (443, 443), "a")
            .unwrap();
        a.release(ip("10.0.0.1"), Proto::Tcp, 443);
        a.release(ip("10.0.0.1"), Proto::Tcp, 443);
        a.request(ip("0.0.0.0"), Proto::Tcp, (443, 443), "b")
            .unwrap();
        assert_eq!(
            a.bindings().collect::<Vec<_>>(),
            [(ip("0.0.0.0"), Proto::Tcp, 443, "b")]
        );
    }

    proptest! {
        /// Random requests and releases on a few addresses and a small port space: no two
        /// bindings held at once ever collide, and a refusal is always justified.
        #[test]
        fn no_two_held_bindings_collide(ops in proptest::collection::vec((0usize..5, 0u8..3, 1u16..6, any::<bool>()), 1..200)) {
            let ips = ["0.0.0.0", "10.0.0.1", "10.0.0.2", "::", "fd00::1"].map(ip);
            let mut a = PortAllocator::new((1, 5)).unwrap();
            for (i, (ipi, proto, port, release)) in ops.into_iter().enumerate() {
                let proto = [Proto::Tcp, Proto::Udp, Proto::Sctp][proto as usize];
                let host_ip = ips[ipi];
                if release {
                    a.release(host_ip, proto, port);
                    continue;
                }
                let range = if i % 3 == 0 { (0, 0) } else { (port, port) };
                let held: Vec<_> = a.bindings().map(|(ip, p, port, _)| (ip, p, port)).collect();
                match a.request(host_ip, proto, range, "x") {
                    Ok(got) => prop_assert!(!held.iter().any(|&(ip, p, pt)| p == proto && pt == got && collide(ip, host_ip))),
                    Err(PortError::InUse { .. }) => prop_assert!(held.iter().any(|&(ip, p, pt)| p == proto && pt == port && collide(ip, host_ip))),
                    Err(PortError::Exhausted { .. }) => prop_assert!((1..=5).all(|pt| held.iter().any(|&(ip, p, x)| p == proto && x == pt && collide(ip, host_ip)))),
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
            let all: Vec<_> = a.bindings().collect();
            for (i, x) in all.iter().enumerate() {
                for y in &all[i + 1..] {
                    prop_assert!(!(x.1 == y.1 && x.2 == y.2 && collide(x.0, y.0)), "{x:?} and {y:?}");
                }
            }
        }
    }
}
