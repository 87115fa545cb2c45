//! [`NlSocket`]: the protocol-independent half of a synchronous netlink
//! client, shared by [`Netlink`](crate::Netlink) (`NETLINK_ROUTE`) and
//! [`NftSocket`](crate::nft::NftSocket) (`NETLINK_NETFILTER`).
//!
//! Both clients open a blocking socket in a known namespace, number their
//! requests, count them, reuse one send and one receive buffer, read
//! answers until the ACK / error / `NLMSG_DONE` of their sequence number,
//! retry dumps the kernel flags inconsistent, and decode errors with their
//! extended-ack text. That logic lives here once; the wrappers only build
//! their protocol's messages (rtnetlink types for route, raw nf_tables
//! attributes for netfilter) and decode the answers. nf_tables batches,
//! which answer with one ACK per message, keep their own receive loop in
//! `nft::socket` but use the framing, send and receive helpers below.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::thread;

use rtnetlink::packet_core::{NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP_INTR};
use rtnetlink::sys::{Socket, SocketAddr};

use lnet_nla::Attrs;

use crate::error::{KernelError, Result};
use crate::netns::Netns;

/// Receive buffer size. The kernel caps dump skbs at 32 KiB
/// (`netlink_dump`); single replies are far smaller.
pub(crate) const RECV_BUF_SIZE: usize = 64 * 1024;
pub(crate) use lnet_nla::{Message, Messages, NLMSG_HDRLEN};
const NLMSG_NOOP: u16 = 1;
pub(crate) const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
/// `NLMSGERR_ATTR_MSG`: extended-ack error string.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// How often a dump is retried when the kernel flags it inconsistent
/// (`NLM_F_DUMP_INTR`, concurrent modification).
const DUMP_RETRIES: usize = 5;

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

/// Lazily attach an operation description to a low-level result: the
/// description is only formatted when there is an error to report.
pub(crate) trait OpContext<T> {
    fn op(self, op: impl FnOnce() -> String) -> Result<T>;
}

impl<T> OpContext<T> for std::result::Result<T, NlError> {
    fn op(self, op: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.into_kernel(op()))
    }
}

/// Run `open` on a short-lived helper thread that has `setns`ed into `ns`.
///
/// A netlink socket acts on the namespace it was created in, forever, so a
/// socket opened there keeps acting on `ns` whichever thread uses it later;
/// the calling thread's namespace is never touched.
pub(crate) fn in_netns<T: Send>(ns: &Netns, open: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    thread::scope(|s| {
        s.spawn(|| {
            ns.enter_on_this_thread()?;
            open()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// A blocking netlink socket with its sequence counter, request counter and
/// reusable buffers.
pub(crate) struct NlSocket {
    pub(crate) socket: Socket,
    seq: u32,
    requests: u64,
    /// The request being sent; builders serialize into it in place.
    pub(crate) send_buf: Vec<u8>,
    /// Allocated once ([`RECV_BUF_SIZE`]) and reused for every `recv`.
    pub(crate) recv_buf: Vec<u8>,
}

impl NlSocket {
    /// Open, bind and connect a socket of `protocol` in the calling thread's
    /// namespace. `name` (e.g. `"NETLINK_ROUTE"`) names it in errors.
    pub(crate) fn open(protocol: isize, name: &str, send_capacity: usize) -> Result<NlSocket> {
        let op = || format!("open {name} socket");
        let mut socket = Socket::new(protocol).map_err(|e| KernelError::io(op(), e))?;
        socket.bind_auto().map_err(|e| KernelError::io(op(), e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| KernelError::io(op(), e))?;
        // Extended acks give human-readable kernel messages ("Master device
        // not found"); capped acks stop the kernel from echoing the whole
        // (possibly large) request back in every error. Both are best
        // effort (old kernels).
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(NlSocket {
            socket,
            seq: 0,
            requests: 0,
            send_buf: Vec::with_capacity(send_capacity),
            recv_buf: Vec::with_capacity(RECV_BUF_SIZE),
        })
    }

    /// The `Debug` output of a wrapper named `name`.
    pub(crate) fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("fd", &self.socket.as_raw_fd())
            .field("seq", &self.seq)
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }

    /// How many requests were sent (a batch or a dump attempt is one).
    pub(crate) fn request_count(&self) -> u64 {
        self.requests
    }

    /// Reserve `n` consecutive sequence numbers for one request (one
    /// number for a plain request, one per message for a batch) and count
    /// the request. Returns the first; 0 is skipped as it would look like
    /// an unsolicited message.
    pub(crate) fn start_request(&mut self, n: u32) -> u32 {
        self.requests += 1;
        let mut first = self.seq.wrapping_add(1);
        if first == 0 {
            first = 1;
        }
        self.seq = first.wrapping_add(n - 1);
        first
    }

    /// Send `send_buf` in one `send`.
    pub(crate) fn send(&self) -> io::Result<()> {
        loop {
            match self.socket.send(&self.send_buf, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Receive one datagram into `recv_buf` (`MSG_TRUNC` is always added so
    /// a truncated datagram is detected); returns its length.
    pub(crate) fn recv(&mut self, flags: libc::c_int) -> std::result::Result<usize, NlError> {
        self.recv_buf.clear();
        let n = loop {
            match self
                .socket
                .recv(&mut self.recv_buf, flags | libc::MSG_TRUNC)
            {
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
        Ok(n)
    }

    /// Send the single message in `send_buf` (its sequence number is filled
    /// in here) and read the answer to its end: the ACK or error of a plain
    /// request, or `NLMSG_DONE` of a dump. Every other message of the
    /// answer goes to `each`; a message `each` cannot decode is remembered
    /// and reported after the answer was read to its end, so the socket
    /// stays in sync. Returns whether the kernel flagged a dump as
    /// interrupted.
    pub(crate) fn request(
        &mut self,
        mut each: impl FnMut(&[u8]) -> std::result::Result<(), String>,
    ) -> std::result::Result<bool, NlError> {
        let seq = self.start_request(1);
        self.send_buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.send().map_err(NlError::Io)?;
        let mut interrupted = false;
        let mut first_decode_error: Option<String> = None;
        loop {
            let n = self.recv(0)?;
            let mut rest = &self.recv_buf[..n];
            while rest.len() >= NLMSG_HDRLEN {
                let Some(m) = Message::parse(&mut rest) else {
                    return Err(NlError::Protocol(format!(
                        "bad message header in a reply of {n} bytes"
                    )));
                };
                if m.seq != seq {
                    // Stale answer to an earlier request; skip it.
                    continue;
                }
                if m.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match m.ty {
                    NLMSG_ERROR | NLMSG_DONE => {
                        let code = m.code();
                        if code == 0 {
                            return match first_decode_error {
                                Some(d) => Err(NlError::Protocol(d)),
                                None => Ok(interrupted),
                            };
                        }
                        let tlvs = m.payload.get(4..).unwrap_or(&[]);
                        let kernel_message = if m.ty == NLMSG_ERROR {
                            error_extack(m.flags, tlvs)
                        } else {
                            extack_msg(tlvs)
                        };
                        return Err(NlError::Errno {
                            errno: code.abs(),
                            kernel_message,
                        });
                    }
                    NLMSG_NOOP => {}
                    NLMSG_OVERRUN => return Err(NlError::Protocol("NLMSG_OVERRUN".into())),
                    _ => {
                        if let Err(e) = each(m.whole) {
                            first_decode_error.get_or_insert(e);
                        }
                    }
                }
            }
        }
    }

    /// A dump of the request in `send_buf`, retried (with a fresh sequence
    /// number) when the kernel flags it interrupted by a concurrent change,
    /// so the result is a consistent snapshot. `map` turns each answer
    /// message into an item, or skips it.
    pub(crate) fn dump<T>(
        &mut self,
        mut map: impl FnMut(&[u8]) -> std::result::Result<Option<T>, String>,
    ) -> std::result::Result<Vec<T>, NlError> {
        let mut out = Vec::new();
        for attempt in 0.. {
            out.clear();
            let interrupted = self.request(|m| {
                out.extend(map(m)?);
                Ok(())
            })?;
            if !interrupted || attempt + 1 >= DUMP_RETRIES {
                break;
            }
        }
        Ok(out)
    }
}

/// The TLVs of an `NLMSG_ERROR` payload (after the error code): they follow
/// the original request header (capped) or whole request, and are present
/// only when `NLM_F_ACK_TLVS` is set.
pub(crate) fn error_tlvs(flags: u16, payload: &[u8]) -> Option<&[u8]> {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < NLMSG_HDRLEN {
        return None;
    }
    let orig_len = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize
    };
    payload.get((orig_len + 3) & !3..)
}

/// Extract the extended-ack message from an `NLMSG_ERROR` payload (after
/// the error code).
pub(crate) fn error_extack(flags: u16, payload: &[u8]) -> Option<String> {
    error_tlvs(flags, payload).and_then(extack_msg)
}

/// Find `NLMSGERR_ATTR_MSG` in a TLV stream. A malformed stream has no
/// message to show (the errno is still reported).
pub(crate) fn extack_msg(tlvs: &[u8]) -> Option<String> {
    let s = Attrs::new(tlvs).get(NLMSGERR_ATTR_MSG).ok()??.string();
    (!s.is_empty()).then_some(s)
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
}
