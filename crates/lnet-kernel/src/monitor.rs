//! The kernel's change notifications, for noticing when someone else touches what lnet
//! made: link and address changes (rtnetlink's multicast groups) and nf_tables changes
//! (`NFNLGRP_NFTABLES`), in the namespace the [`Monitor`] was opened in.
//!
//! Decoded only as far as a watcher needs to decide whether to look closer: which link
//! (by name) went or changed, which address went, and for nf_tables which table, what kind
//! of object, whether it was a deletion, and the netlink port that asked for the change —
//! so that a watcher can ignore its own. A notification lost to a full socket buffer is
//! reported as [`Event::Overrun`]: then anything may have happened.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{Socket, SocketAddr, protocols};

use lnet_nla::{Attrs, NFGENMSG_LEN};

use crate::error::{KernelError, Result};
use crate::link::Link;
use crate::socket::{Message, Messages};

const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const NFNLGRP_NFTABLES: u32 = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;

/// What kind of nf_tables object a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NftObject {
    /// A table.
    Table,
    /// A chain.
    Chain,
    /// A rule.
    Rule,
    /// A set or map.
    Set,
    /// Elements of a set or map.
    Element,
}

/// One change the kernel announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A link was deleted.
    LinkGone {
        /// Its name.
        name: String,
    },
    /// A link was created or changed (flags, master, name, ...): its state now.
    LinkChanged(Link),
    /// An address was removed from the link with this index.
    AddressGone {
        /// The link's index.
        index: u32,
    },
    /// An nf_tables object was added or deleted.
    Nft {
        /// What kind of object.
        object: NftObject,
        /// Whether it was deleted (else created or changed).
        deleted: bool,
        /// The table's family (`NFPROTO_*`).
        family: u8,
        /// The table's name.
        table: String,
        /// The netlink port that asked for the change (compare with
        /// [`crate::nft::NftSocket::portid`]); 0 for the kernel itself.
        portid: u32,
    },
    /// Notifications were lost (the socket's buffer overflowed): anything may have changed.
    Overrun,
}

/// Listens to link, address and nf_tables changes in the namespace it was opened in.
#[derive(Debug)]
pub struct Monitor {
    route: Socket,
    nft: Socket,
    buf: Vec<u8>,
}

fn subscribe(protocol: isize, groups: &[u32], what: &str) -> Result<Socket> {
    let op = || format!("listen to {what} notifications");
    let mut s = Socket::new(protocol).map_err(|e| KernelError::io(op(), e))?;
    s.bind(&SocketAddr::new(0, 0))
        .map_err(|e| KernelError::io(op(), e))?;
    for g in groups {
        s.add_membership(*g).map_err(|e| KernelError::io(op(), e))?;
    }
    s.set_non_blocking(true)
        .map_err(|e| KernelError::io(op(), e))?;
    // Room for a burst (a ruleset flush announces every object): a lost notification is
    // an overrun, which costs the watcher a full check.
    let _ = crate::sysctl::force_recv_buffer(&s, 4 << 20);
    Ok(s)
}

impl Monitor {
    /// Subscribes, in the calling thread's network namespace.
    pub fn new() -> Result<Monitor> {
        Ok(Monitor {
            route: subscribe(
                protocols::NETLINK_ROUTE,
                &[RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR],
                "link and address",
            )?,
            nft: subscribe(
                protocols::NETLINK_NETFILTER,
                &[NFNLGRP_NFTABLES],
                "nftables",
            )?,
            buf: Vec::with_capacity(256 * 1024),
        })
    }

    /// Waits up to `timeout` for notifications and returns every one waiting (none when
    /// the time ran out).
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<Event>> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [
            PollFd::new(self.route.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.nft.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(KernelError::nix("wait for notifications", e)),
        }
        let mut events = Vec::new();
        self.drain(true, &mut events)?;
        self.drain(false, &mut events)?;
        Ok(events)
    }

    fn drain(&mut self, route: bool, events: &mut Vec<Event>) -> Result<()> {
        loop {
            self.buf.clear();
            let sock = if route { &self.route } else { &self.nft };
            match sock.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    events.push(Event::Overrun);
                    continue;
                }
                Err(e) => {
                    return Err(KernelError::io(
                        format!("read notifications (fd {})", sock.as_raw_fd()),
                        e,
                    ));
                }
            }
            for m in Messages(&self.buf) {
                let decoded = if route {
                    route_event(m.whole)
                } else {
                    nft_event(&m)
                };
                events.extend(decoded);
            }
        }
    }
}

fn route_event(msg: &[u8]) -> Option<Event> {
    let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg).ok()?;
    let NetlinkPayload::InnerMessage(m) = parsed.payload else {
        return None;
    };
    match m {
        RouteNetlinkMessage::DelLink(l) => Some(Event::LinkGone {
            name: Link::from_message(l).name,
        }),
        RouteNetlinkMessage::NewLink(l) => Some(Event::LinkChanged(Link::from_message(l))),
        RouteNetlinkMessage::DelAddress(a) => Some(Event::AddressGone {
            index: a.header.index,
        }),
        _ => None,
    }
}

fn nft_event(m: &Message<'_>) -> Option<Event> {
    if m.ty >> 8 != NFNL_SUBSYS_NFTABLES {
        return None;
    }
    // NFT_MSG_NEW*/DEL* of tables, chains, rules, sets and elements.
    let (object, deleted) = match m.ty & 0xff {
        0 => (NftObject::Table, false),
        2 => (NftObject::Table, true),
        3 => (NftObject::Chain, false),
        5 => (NftObject::Chain, true),
        6 => (NftObject::Rule, false),
        8 => (NftObject::Rule, true),
        9 => (NftObject::Set, false),
        11 => (NftObject::Set, true),
        12 => (NftObject::Element, false),
        14 => (NftObject::Element, true),
        _ => return None,
    };
    let family = *m.payload.first()?;
    // The table's name is attribute 1 in every one of these messages; a
    // notification too damaged to name it still says that something changed.
    let table = Attrs::of_message(m.whole, NFGENMSG_LEN)
        .and_then(|a| a.get(1))
        .ok()
        .flatten()
        .map(|a| a.string())
        .unwrap_or_default();
    Some(Event::Nft {
        object,
        deleted,
        family,
        table,
        portid: m.portid,
    })
}
