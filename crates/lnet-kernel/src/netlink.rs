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

use std::fmt;
use std::io;
use std::thread;

use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{KernelError, Result};
use crate::netns::Netns;

/// Receive buffer size. The kernel caps dump skbs at 32 KiB
/// (`netlink_dump`); single replies (one link) are far smaller.
const RECV_BUF_SIZE: usize = 64 * 1024;
const NLMSG_HDRLEN: usize = 16;
/// `NLMSGERR_ATTR_MSG`: extended-ack error string.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// How often a dump is retried when the kernel flags it inconsistent
/// (`NLM_F_DUMP_INTR`, concurrent modification).
const DUMP_RETRIES: usize = 5;

/// A synchronous `NETLINK_ROUTE` socket bound to one network namespace.
///
/// The namespace is fixed at creation (see [`Netlink::new`] and
/// [`Netlink::in_netns`]); afterwards the value may be moved to and used from
/// any thread. Methods take `&mut self`: one request is in flight at a time.
/// Open one `Netlink` per namespace you work in and keep it; opening costs a
/// `socket` + `bind` + a few `setsockopt`s (plus a thread for `in_netns`).
pub struct Netlink {
    socket: Socket,
    seq: u32,
    requests: u64,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use std::os::fd::AsRawFd;
        f.debug_struct("Netlink")
            .field("fd", &self.socket.as_raw_fd())
            .field("seq", &self.seq)
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

/// Error of one netlink exchange, before the operation name is attached.
#[derive(Debug)]
pub(crate) enum NlError {
    Errno {
        errno: i32,
        kernel_message: Option<String>,
    },
    Io(io::Error),
    Protocol(String),
}

impl NlError {
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            NlError::Errno { errno, .. } => Some(*errno),
            NlError::Io(e) => e.raw_os_error(),
            NlError::Protocol(_) => None,
        }
    }

    /// Attach the operation description.
    pub(crate) fn into_kernel(self, op: String) -> KernelError {
        match self {
            NlError::Errno {
                errno,
                kernel_message,
            } => KernelError::Netlink {
                op,
                errno,
                message: nix::errno::Errno::from_raw(errno).desc().to_string(),
                kernel_message,
            },
            NlError::Io(source) => KernelError::Io { op, source },
            NlError::Protocol(detail) => KernelError::Protocol { op, detail },
        }
    }
}

/// Lazily attach an operation description to a low-level result.
pub(crate) trait OpContext<T> {
    fn op(self, op: impl FnOnce() -> String) -> Result<T>;
}

impl<T> OpContext<T> for std::result::Result<T, NlError> {
    fn op(self, op: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.into_kernel(op()))
    }
}

impl Netlink {
    /// Open a `NETLINK_ROUTE` socket in the calling thread's current network
    /// namespace.
    pub fn new() -> Result<Netlink> {
        let op = "open NETLINK_ROUTE socket";
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| KernelError::io(op, e))?;
        socket.bind_auto().map_err(|e| KernelError::io(op, e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| KernelError::io(op, e))?;
        // Extended acks give human-readable kernel messages ("Master device
        // not found"); capped acks stop the kernel from echoing the whole
        // request back in every error. Both are best effort (old kernels).
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        // Strict checking lets dumps be filtered in the kernel (addresses by
        // interface, routes by table) and rejects malformed requests instead
        // of silently ignoring fields.
        let _ = socket.set_netlink_get_strict_chk(true);
        Ok(Netlink {
            socket,
            seq: 0,
            requests: 0,
            send_buf: Vec::with_capacity(1024),
            recv_buf: Vec::with_capacity(RECV_BUF_SIZE),
        })
    }

    /// Open a `NETLINK_ROUTE` socket inside `ns`.
    ///
    /// The socket is created on a short-lived helper thread that `setns`es
    /// into `ns`; the calling thread's namespace is never touched. The
    /// returned socket keeps acting on `ns` whichever thread uses it.
    pub fn in_netns(ns: &Netns) -> Result<Netlink> {
        thread::scope(|s| {
            s.spawn(|| {
                ns.enter_on_this_thread()?;
                Netlink::new()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// How many requests this socket has sent (each operation is one
    /// request; a dump retried after `NLM_F_DUMP_INTR` counts again). Meant
    /// for tests and benchmarks.
    pub fn request_count(&self) -> u64 {
        self.requests
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            self.seq = 1;
        }
        self.seq
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
        let seq = self.next_seq();
        self.requests += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let len = packet.buffer_len();
        self.send_buf.clear();
        self.send_buf.resize(len, 0);
        packet.serialize(&mut self.send_buf[..len]);
        loop {
            match self.socket.send(&self.send_buf[..len], 0) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NlError::Io(e)),
            }
        }

        let mut interrupted = false;
        // A decode failure of one message is remembered, but the answer is
        // still read to its end so the socket stays in sync.
        let mut first_decode_error: Option<String> = None;
        loop {
            self.recv_buf.clear();
            let n = loop {
                match self.socket.recv(&mut self.recv_buf, libc::MSG_TRUNC) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(NlError::Io(e)),
                }
            };
            if n > self.recv_buf.len() {
                return Err(NlError::Protocol(format!(
                    "reply of {n} bytes truncated to {} bytes",
                    self.recv_buf.len()
                )));
            }
            let mut off = 0;
            while off + NLMSG_HDRLEN <= n {
                let rest = &self.recv_buf[off..n];
                let msg_len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if msg_len < NLMSG_HDRLEN || msg_len > rest.len() {
                    return Err(NlError::Protocol(format!(
                        "bad message length {msg_len} at offset {off} of {n}"
                    )));
                }
                let msg_flags = u16::from_ne_bytes([rest[6], rest[7]]);
                let msg_seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
                off += (msg_len + 3) & !3;
                if msg_seq != seq {
                    // Stale answer to an earlier request; skip it.
                    continue;
                }
                if msg_flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                let parsed =
                    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..msg_len]) {
                        Ok(m) => m,
                        Err(e) => {
                            first_decode_error.get_or_insert_with(|| e.to_string());
                            continue;
                        }
                    };
                match parsed.payload {
                    NetlinkPayload::InnerMessage(m) => each(m),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => match first_decode_error {
                                Some(d) => Err(NlError::Protocol(d)),
                                None => Ok(interrupted),
                            },
                            Some(code) => Err(NlError::Errno {
                                errno: code.get().abs(),
                                kernel_message: error_extack(msg_flags, &e.header),
                            }),
                        };
                    }
                    NetlinkPayload::Done(d) => {
                        if d.code < 0 {
                            return Err(NlError::Errno {
                                errno: -d.code,
                                kernel_message: extack_msg(&d.extended_ack),
                            });
                        }
                        return match first_decode_error {
                            Some(d) => Err(NlError::Protocol(d)),
                            None => Ok(interrupted),
                        };
                    }
                    NetlinkPayload::Noop => {}
                    NetlinkPayload::Overrun(_) => {
                        return Err(NlError::Protocol("NLMSG_OVERRUN".into()));
                    }
                    _ => {}
                }
            }
        }
    }

    /// One request that expects only an ACK (create, delete, set).
    pub(crate) fn ack(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> std::result::Result<(), NlError> {
        self.transact(msg, flags, |_| {}).map(|_| ())
    }

    /// A dump; retried when the kernel flags it interrupted by a concurrent
    /// change, so the result is a consistent snapshot.
    pub(crate) fn dump<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        mut map: impl FnMut(RouteNetlinkMessage) -> Option<T>,
    ) -> std::result::Result<Vec<T>, NlError> {
        let mut out = Vec::new();
        for attempt in 0.. {
            out.clear();
            let interrupted = self.transact(msg.clone(), NLM_F_DUMP, |m| {
                if let Some(t) = map(m) {
                    out.push(t);
                }
            })?;
            if !interrupted || attempt + 1 >= DUMP_RETRIES {
                break;
            }
        }
        Ok(out)
    }
}

/// Extract the extended-ack message from an `NLMSG_ERROR` payload (after the
/// error code): the original request header (capped) or whole request,
/// followed by TLVs when `NLM_F_ACK_TLVS` is set.
pub(crate) fn error_extack(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < NLMSG_HDRLEN {
        return None;
    }
    let orig_len = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize
    };
    let start = (orig_len + 3) & !3;
    payload.get(start..).and_then(extack_msg)
}

/// Find `NLMSGERR_ATTR_MSG` in a TLV stream.
pub(crate) fn extack_msg(mut tlvs: &[u8]) -> Option<String> {
    while tlvs.len() >= 4 {
        let len = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let value = &tlvs[4..len];
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            let s = String::from_utf8_lossy(&value[..end]).into_owned();
            return (!s.is_empty()).then_some(s);
        }
        let next = (len + 3) & !3;
        tlvs = tlvs.get(next..)?;
    }
    None
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
    fn extack_parsing() {
        // header (16 bytes, capped) + one MSG TLV "boom\0" padded to 12
        let mut p = vec![0u8; 16];
        p.extend_from_slice(&9u16.to_ne_bytes());
        p.extend_from_slice(&1u16.to_ne_bytes());
        p.extend_from_slice(b"boom\0\0\0\0");
        assert_eq!(
            error_extack(NLM_F_ACK_TLVS | NLM_F_CAPPED, &p).as_deref(),
            Some("boom")
        );
        assert_eq!(error_extack(NLM_F_CAPPED, &p), None);
        assert_eq!(extack_msg(&[1, 0]), None);
    }

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
