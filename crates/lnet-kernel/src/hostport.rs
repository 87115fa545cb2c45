//! Host ports held by a bound socket, and who else holds one.
//!
//! lnet publishes a port with a DNAT map element and no proxy process, so nothing stops a
//! host service from binding the same port — and from then on its traffic would go to the
//! container. A [`Reservation`] is a socket bound to the published address and port for as
//! long as the port is published: a host service's `bind` then fails with `EADDRINUSE`, and
//! a port a host service already holds cannot be reserved (Docker 28 does the same).
//!
//! The socket is bound and never listens (TCP) or read (UDP): a TCP socket that is bound
//! but not listening answers nothing, and DNAT sends the port's traffic elsewhere before it
//! could reach the socket anyway. It is bound without `SO_REUSEADDR`: two sockets both
//! marked reusable may share a port while neither listens, and most servers set it, so
//! ours must not. An IPv6 socket is `IPV6_V6ONLY`: lnet publishes `0.0.0.0:p` and `[::]:p`
//! as two bindings (two map elements), and reserves each on its own.
//!
//! [`holders`] reads the namespace's socket tables (`/proc/thread-self/net/{tcp,udp}[6]`)
//! to say who holds a port, and finds the process owning the socket through `/proc/*/fd`:
//! for error messages, never on a fast path.
//!
//! Both work in the calling thread's network namespace.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6, bind, setsockopt,
    socket, sockopt,
};

use crate::error::{KernelError, Result};

/// The transport protocol of a host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Sctp => "sctp",
        })
    }
}

/// A host port held by a bound socket; dropping it frees the port.
#[derive(Debug)]
pub struct Reservation {
    /// `None` when the kernel has no sockets of the protocol (SCTP without its module):
    /// then no host program can bind the port either, and there is nothing to hold.
    fd: Option<OwnedFd>,
}

impl Reservation {
    /// Whether a socket holds the port (false where the kernel lacks the protocol).
    pub fn is_held(&self) -> bool {
        self.fd.is_some()
    }
}

/// Holds `addr` for `proto` with a bound socket, in the calling thread's namespace.
///
/// A port someone else holds fails with `EADDRINUSE` ([`KernelError::is_in_use`]). A
/// kernel without sockets of `proto` (`EPROTONOSUPPORT`, `ESOCKTNOSUPPORT`: SCTP without
/// its module) gives a reservation that holds nothing ([`Reservation::is_held`]).
pub fn reserve(addr: SocketAddr, proto: Transport) -> Result<Reservation> {
    let op = || format!("reserve host port {addr}/{proto}");
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let (ty, protocol) = match proto {
        Transport::Tcp => (SockType::Stream, SockProtocol::Tcp),
        Transport::Udp => (SockType::Datagram, SockProtocol::Udp),
        Transport::Sctp => (SockType::Stream, SockProtocol::Sctp),
    };
    let err = |e: Errno| KernelError::nix(op(), e);
    let fd = match socket(family, ty, SockFlag::SOCK_CLOEXEC, protocol) {
        Ok(fd) => fd,
        Err(Errno::EPROTONOSUPPORT | Errno::ESOCKTNOSUPPORT) if proto == Transport::Sctp => {
            return Ok(Reservation { fd: None });
        }
        Err(e) => return Err(err(e)),
    };
    if proto == Transport::Udp {
        // Nothing reads it: keep what could queue there (packets no DNAT element took) small.
        setsockopt(&fd, sockopt::RcvBuf, &0).map_err(err)?;
    }
    match addr {
        SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a)).map_err(err)?,
        SocketAddr::V6(a) => {
            setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(err)?;
            bind(fd.as_raw_fd(), &SockaddrIn6::from(a)).map_err(err)?
        }
    }
    Ok(Reservation { fd: Some(fd) })
}

/// A socket that holds a host port, as the namespace's socket table lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The address and port it is bound to.
    pub local: SocketAddr,
    /// `listening`, `bound`, `connected`, `time-wait`, …
    pub state: &'static str,
    /// Its owner's user id.
    pub uid: u32,
    /// The process that has it open, with its command name, when one was found.
    pub process: Option<(u32, String)>,
}

impl fmt::Display for Holder {
    /// `process nc (pid 42, listening)`, as the holder in "… holds 0.0.0.0:80/tcp".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.process {
            Some((pid, comm)) => write!(f, "process {comm} (pid {pid}, {})", self.state),
            None if self.state == "time-wait" => f.write_str(
                "a closed connection in TIME_WAIT (the kernel lets it go within a minute)",
            ),
            None => write!(f, "a {} socket of uid {}", self.state, self.uid),
        }
    }
}

/// Every socket in the calling thread's namespace whose binding collides with
/// `addr`/`proto` (the same port on the same address, or on the unspecified address of the
/// family, either way round; and an IPv6 socket on `[::]`, which may take IPv4 too, for an
/// IPv4 address), listening and bound sockets first. Empty for SCTP, whose table is not read.
pub fn holders(addr: SocketAddr, proto: Transport) -> Vec<Holder> {
    let tables: &[(&str, bool)] = match proto {
        Transport::Tcp => &[("tcp", false), ("tcp6", true)],
        Transport::Udp => &[("udp", false), ("udp6", true)],
        Transport::Sctp => &[],
    };
    let mut found: Vec<(Holder, u64)> = Vec::new();
    for (table, v6) in tables {
        let Ok(text) = std::fs::read_to_string(format!("/proc/thread-self/net/{table}")) else {
            continue;
        };
        for entry in text.lines().skip(1).filter_map(|l| parse_entry(l, *v6)) {
            if entry.local.port() == addr.port() && collides(addr.ip(), entry.local.ip()) {
                let state = state_name(proto, entry.state);
                found.push((
                    Holder {
                        local: entry.local,
                        state,
                        uid: entry.uid,
                        process: None,
                    },
                    entry.inode,
                ));
            }
        }
    }
    found.sort_by_key(|(h, _)| !matches!(h.state, "listening" | "bound"));
    let inodes: Vec<u64> = found.iter().map(|(_, i)| *i).filter(|i| *i != 0).collect();
    let owners = socket_owners(&inodes);
    found
        .into_iter()
        .map(|(mut h, inode)| {
            h.process = owners
                .iter()
                .find(|(i, _)| *i == inode)
                .map(|(_, p)| p.clone());
            h
        })
        .collect()
}

/// Whether a socket bound to `held` takes a bind to `want` (same port): same family and
/// equal or either unspecified; or `held` is `[::]` (dual-stack unless `IPV6_V6ONLY`,
/// which the table does not show) or the IPv4-mapped form of an IPv4 `want`.
fn collides(want: IpAddr, held: IpAddr) -> bool {
    match (want, held) {
        (IpAddr::V4(w), IpAddr::V6(h)) => {
            h.is_unspecified() || h.to_ipv4_mapped().is_some_and(|m| collides_v4(w, m))
        }
        (IpAddr::V4(w), IpAddr::V4(h)) => collides_v4(w, h),
        (IpAddr::V6(w), IpAddr::V6(h)) => w == h || w.is_unspecified() || h.is_unspecified(),
        (IpAddr::V6(_), IpAddr::V4(_)) => false,
    }
}

fn collides_v4(w: Ipv4Addr, h: Ipv4Addr) -> bool {
    w == h || w.is_unspecified() || h.is_unspecified()
}

/// One line of a `/proc/net/{tcp,udp}[6]` table.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    local: SocketAddr,
    state: u8,
    uid: u32,
    inode: u64,
}

/// Parses `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …`.
/// Addresses are the kernel's network-order words printed as native integers in hex.
fn parse_entry(line: &str, v6: bool) -> Option<Entry> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (ip, port) = f.get(1)?.split_once(':')?;
    let ip = if v6 {
        if ip.len() != 32 {
            return None;
        }
        let mut b = [0u8; 16];
        for (i, chunk) in b.chunks_mut(4).enumerate() {
            let word = u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).ok()?;
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_ne_bytes(),
        ))
    };
    Some(Entry {
        local: SocketAddr::new(ip, u16::from_str_radix(port, 16).ok()?),
        state: u8::from_str_radix(f.get(3)?, 16).ok()?,
        uid: f.get(7)?.parse().ok()?,
        inode: f.get(9)?.parse().ok()?,
    })
}

fn state_name(proto: Transport, state: u8) -> &'static str {
    match (proto, state) {
        (Transport::Tcp, 0x0A) => "listening",
        (Transport::Tcp, 0x06) => "time-wait",
        (_, 0x07) => "bound",
        (_, 0x01) => "connected",
        _ => "closing",
    }
}

/// The processes holding the sockets `inodes`, by scanning `/proc/*/fd` (best effort: a
/// process that ends meanwhile, or one whose descriptors cannot be read, is skipped).
fn socket_owners(inodes: &[u64]) -> Vec<(u64, (u32, String))> {
    let mut out = Vec::new();
    if inodes.is_empty() {
        return out;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(i) = inode.filter(|i| inodes.contains(i))
                && !out.iter().any(|(seen, _)| *seen == i)
            {
                let comm = std::fs::read_to_string(p.path().join("comm"))
                    .map(|c| c.trim().to_string())
                    .unwrap_or_default();
                out.push((i, (pid, comm)));
            }
        }
        if out.len() == inodes.len() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lines_parse() {
        let v4 = "   0: 0100007F:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
        let e = parse_entry(v4, false).unwrap();
        assert_eq!(
            e,
            Entry {
                local: "127.0.0.1:2222".parse().unwrap(),
                state: 0x0A,
                uid: 0,
                inode: 4242
            }
        );
        let v6 = "   1: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 77 2 0000000000000000 0";
        let e = parse_entry(v6, true).unwrap();
        assert_eq!(e.local, "[::1]:80".parse().unwrap());
        assert_eq!((e.state, e.uid, e.inode), (7, 1000, 77));
        assert_eq!(parse_entry("  sl  local_address rem_address", false), None);
    }

    #[test]
    fn bindings_collide_as_the_kernel_has_them() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(collides(ip("0.0.0.0"), ip("127.0.0.1")));
        assert!(collides(ip("127.0.0.1"), ip("0.0.0.0")));
        assert!(!collides(ip("127.0.0.1"), ip("127.0.0.2")));
        assert!(collides(ip("10.0.0.1"), ip("::")));
        assert!(collides(ip("10.0.0.1"), ip("::ffff:10.0.0.1")));
        assert!(!collides(ip("::"), ip("0.0.0.0")));
        assert!(collides(ip("::"), ip("::1")));
    }
}
