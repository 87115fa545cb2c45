//! A small synchronous request/ack/dump client for `NETLINK_ROUTE`.
//!
//! Messages are built with `rtnetlink`'s builders and `netlink-packet-route`
//! types, but they are sent over a plain blocking [`rtnetlink::sys::Socket`]
//! instead of rtnetlink's async `Handle`/`Connection`. Two reasons:
//!
//! * **Deterministic namespace binding.** A netlink socket talks to the
//!   network namespace it was created in, forever. With a blocking socket that
//!   is created on a known thread ([`Netlink::new`] on the caller's thread,
//!   [`Netlink::in_netns`] on a helper thread that `setns`ed), the namespace an
//!   operation acts on is obvious from the code. An async connection driven by
//!   some runtime worker thread would make that depend on scheduling.
//! * **No runtime nesting.** The daemon runs tokio and calls into this layer
//!   from blocking threads (`spawn_blocking`); a synchronous API needs no
//!   runtime of its own and cannot deadlock one.
//!
//! Each operation is exactly one request (one `send`, then `recv` until the
//! ACK, error or `NLMSG_DONE`); the receive buffer is allocated once per socket
//! and reused. Success paths do not allocate error strings: the operation
//! description is built lazily, only when the kernel reports an error.
//!
//! The socket plumbing (opening, sequence numbers, the request and dump
//! loops, error decoding) is shared with the nf_tables client and lives in
//! the private `socket` module; this file builds and decodes route messages.

use std::fmt;

use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::protocols::NETLINK_ROUTE;

use crate::error::{KernelError, Result};
use crate::netns::Netns;
use crate::socket::{self, NlSocket};
// Re-exported: the route modules (`link`, `addr`, `route`) name them here.
pub(crate) use crate::socket::{NlError, OpContext};

/// A synchronous `NETLINK_ROUTE` socket bound to one network namespace.
///
/// The namespace is fixed at creation (see [`Netlink::new`] and
/// [`Netlink::in_netns`]); afterwards the value may be moved to and used from
/// any thread. Methods take `&mut self`: one request is in flight at a time.
/// Open one `Netlink` per namespace you work in and keep it; opening costs a
/// `socket` + `bind` + a few `setsockopt`s (plus a thread for `in_netns`).
pub struct Netlink {
    /// Socket, sequence and request counters, buffers, and the request /
    /// dump loops shared with [`NftSocket`](crate::nft::NftSocket).
    sock: NlSocket,
}

impl Netlink {
    /// Open a `NETLINK_ROUTE` socket in the calling thread's current network
    /// namespace.
    pub fn new() -> Result<Netlink> {
        let sock = NlSocket::open(NETLINK_ROUTE, "NETLINK_ROUTE", 1024)?;
        // Strict checking lets dumps be filtered in the kernel (addresses by
        // interface, routes by table) and rejects malformed requests instead
        // of silently ignoring fields. Best effort (old kernels).
        let _ = sock.socket.set_netlink_get_strict_chk(true);
        Ok(Netlink { sock })
    }

    /// Open a `NETLINK_ROUTE` socket inside `ns`.
    ///
    /// The socket is created on a short-lived helper thread that `setns`es
    /// into `ns`; the calling thread's namespace is never touched. The
    /// returned socket keeps acting on `ns` whichever thread uses it.
    pub fn in_netns(ns: &Netns) -> Result<Netlink> {
        socket::in_netns(ns, Netlink::new)
    }

    /// How many requests this socket has sent (each operation is one
    /// request; a dump retried after `NLM_F_DUMP_INTR` counts again). Meant
    /// for tests and benchmarks.
    pub fn request_count(&self) -> u64 {
        self.sock.request_count()
    }

    /// Serialize `msg` into the reused send buffer; the sequence number is
    /// filled in per attempt by [`NlSocket::request`].
    fn serialize(&mut self, msg: RouteNetlinkMessage, flags: u16) {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let len = packet.buffer_len();
        let buf = &mut self.sock.send_buf;
        buf.clear();
        buf.resize(len, 0);
        packet.serialize(&mut buf[..len]);
    }

    /// Send one request and read the answer.
    ///
    /// Non-dump requests carry `NLM_F_ACK` and end at the ACK or error; any
    /// messages before it (replies to `GET`, `NLM_F_ECHO` notifications) go to
    /// `each`. Dump requests (`NLM_F_DUMP` in `flags`) end at `NLMSG_DONE`.
    /// Returns whether the kernel flagged the dump as interrupted.
    pub(crate) fn transact(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> std::result::Result<bool, NlError> {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        self.serialize(
            msg,
            NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK },
        );
        self.sock.request(|m| {
            if let Some(m) = decode(m)? {
                each(m);
            }
            Ok(())
        })
    }

    /// One request that expects only an ACK (create, delete, set).
    pub(crate) fn ack(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> std::result::Result<(), NlError> {
        self.transact(msg, flags, |_| {}).map(|_| ())
    }

    /// A dump whose answers `map` reads straight from their bytes (header included; `None`
    /// skips one), for dumps large enough that decoding every attribute of every message
    /// would be most of their cost. Retried like [`Netlink::dump`].
    pub(crate) fn dump_raw<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        map: impl FnMut(&[u8]) -> std::result::Result<Option<T>, String>,
    ) -> std::result::Result<Vec<T>, NlError> {
        self.serialize(msg, NLM_F_REQUEST | NLM_F_DUMP);
        self.sock.dump(map)
    }

    /// A dump; retried when the kernel flags it interrupted by a concurrent
    /// change, so the result is a consistent snapshot.
    pub(crate) fn dump<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        mut map: impl FnMut(RouteNetlinkMessage) -> Option<T>,
    ) -> std::result::Result<Vec<T>, NlError> {
        self.serialize(msg, NLM_F_REQUEST | NLM_F_DUMP);
        self.sock.dump(|m| Ok(decode(m)?.and_then(&mut map)))
    }
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.sock.debug("Netlink", f)
    }
}

/// Decode one answer message; `None` for anything but a route message.
fn decode(m: &[u8]) -> std::result::Result<Option<RouteNetlinkMessage>, String> {
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(m) {
        Ok(NetlinkMessage {
            payload: NetlinkPayload::InnerMessage(m),
            ..
        }) => Ok(Some(m)),
        Ok(_) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Validate an interface name the way the kernel does (`dev_valid_name`),
/// so errors name the problem instead of returning a bare `EINVAL`.
pub(crate) fn check_ifname(op: impl FnOnce() -> String, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "interface name is empty"
    } else if name.len() > 15 {
        "interface name longer than 15 bytes (IFNAMSIZ)"
    } else if name == "." || name == ".." {
        "interface name may not be \".\" or \"..\""
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        "interface name contains '/', ':', NUL or whitespace"
    } else {
        return Ok(());
    };
    Err(KernelError::invalid(op(), format!("{reason}: {name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_validation() {
        let op = || "t".to_string();
        check_ifname(op, "eth0").unwrap();
        check_ifname(op, "a23456789012345").unwrap();
        check_ifname(op, "a234567890123456").unwrap_err();
        check_ifname(op, "").unwrap_err();
        check_ifname(op, "a/b").unwrap_err();
        check_ifname(op, "..").unwrap_err();
    }
}
