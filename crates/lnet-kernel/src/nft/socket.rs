//! [`NftSocket`]: a synchronous `NETLINK_NETFILTER` socket for nf_tables.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::thread;

use nix::sys::socket::{setsockopt, sockopt};
use rtnetlink::packet_core::{
    NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use super::Family;
use super::batch::{Batch, describe};
use super::sys::*;
use super::wire::{Attrs, NLMSG_HDRLEN, Writer, attr_at, describe_attr};
use crate::error::{KernelError, Result};
use crate::netlink::{NlError, error_extack, extack_msg};
use crate::netns::Netns;

const RECV_BUF_SIZE: usize = 64 * 1024;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Receive-queue room reserved per message of a batch: each ACK is its own
/// skb, and an skb's accounted size (`truesize`) is far larger than the
/// 36-byte ACK in it. Generous on purpose; see [`NftSocket::commit`].
const ACK_TRUESIZE: usize = 1024;
const DUMP_RETRIES: usize = 5;

/// A synchronous nf_tables socket bound to one network namespace.
///
/// Like [`Netlink`](crate::Netlink): the namespace is fixed at creation
/// ([`NftSocket::new`], [`NftSocket::in_netns`]); afterwards the value may be
/// moved between threads. Each [`commit`](NftSocket::commit) is exactly one
/// `send` of one transaction; each listing is one dump request.
pub struct NftSocket {
    socket: Socket,
    seq: u32,
    requests: u64,
    /// Current `SO_RCVBUF` / `SO_SNDBUF` sizes as far as we set them.
    rcvbuf: usize,
    sndbuf: usize,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
}

impl fmt::Debug for NftSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NftSocket")
            .field("fd", &self.socket.as_raw_fd())
            .field("seq", &self.seq)
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

impl NftSocket {
    /// Open a `NETLINK_NETFILTER` socket in the calling thread's current
    /// network namespace.
    pub fn new() -> Result<NftSocket> {
        let op = "open NETLINK_NETFILTER socket";
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|e| KernelError::io(op, e))?;
        socket.bind_auto().map_err(|e| KernelError::io(op, e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| KernelError::io(op, e))?;
        // Human-readable kernel messages, and errors that do not echo the
        // whole (possibly large) request back. Best effort.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        let rcvbuf = socket.get_rx_buf_sz().unwrap_or(RECV_BUF_SIZE);
        let sndbuf = setsockopt_get_sndbuf(&socket).unwrap_or(RECV_BUF_SIZE);
        Ok(NftSocket {
            socket,
            seq: 0,
            requests: 0,
            rcvbuf,
            sndbuf,
            send_buf: Vec::with_capacity(4096),
            recv_buf: Vec::with_capacity(RECV_BUF_SIZE),
        })
    }

    /// Open a socket inside `ns`, from a short-lived helper thread; the
    /// calling thread's namespace is never touched.
    pub fn in_netns(ns: &Netns) -> Result<NftSocket> {
        thread::scope(|s| {
            s.spawn(|| {
                ns.enter_on_this_thread()?;
                NftSocket::new()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// How many requests (transactions and dumps) this socket has sent.
    pub fn request_count(&self) -> u64 {
        self.requests
    }

    /// Reserve `n` consecutive sequence numbers; returns the first.
    fn seqs(&mut self, n: u32) -> u32 {
        let first = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(n);
        first
    }

    /// Apply `batch` as one transaction: `BATCH_BEGIN`, the batch's
    /// messages, `BATCH_END`, in a single `send`. The kernel applies all of
    /// it or none of it. An empty batch sends nothing.
    ///
    /// On failure the error names the first message the kernel rejected
    /// (matched by sequence number), with errno and extack text; later
    /// messages may have failed too (the kernel checks them all), and the
    /// error says how many did.
    ///
    /// The kernel processes a batch synchronously inside `send` and queues
    /// every answer before `send` returns, so the answers are read without
    /// blocking: a batch the kernel dropped without answering cannot hang
    /// the caller. Because every message is ACKed, the receive buffer is
    /// grown (`SO_RCVBUFFORCE`, which needs `CAP_NET_ADMIN` like nf_tables
    /// itself) to hold one ACK per message, as `nft` does.
    pub fn commit(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.count as u32;
        let first = self.seqs(n + 2);
        self.requests += 1;
        let op_all = || format!("nft transaction of {n} message(s)");

        // Assemble BEGIN + messages + END and number them.
        let mut w = Writer::reuse(std::mem::take(&mut self.send_buf));
        let b = w.begin_msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        w.end_msg(b);
        w.buf.extend_from_slice(&batch.w.buf);
        let e = w.begin_msg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        w.end_msg(e);
        self.send_buf = w.buf;
        let mut off = 0;
        let mut seq = first;
        while off + NLMSG_HDRLEN <= self.send_buf.len() {
            let len = u32::from_ne_bytes(self.send_buf[off..off + 4].try_into().unwrap()) as usize;
            self.send_buf[off + 8..off + 12].copy_from_slice(&seq.to_ne_bytes());
            seq = seq.wrapping_add(1);
            // Writer-built messages are never shorter than a header and
            // always 4-byte aligned; max() only guards against looping.
            off += ((len + 3) & !3).max(NLMSG_HDRLEN);
        }

        self.reserve_buffers(self.send_buf.len(), (n as usize + 2) * ACK_TRUESIZE);
        send_all(&self.socket, &self.send_buf).map_err(|e| KernelError::io(op_all(), e))?;

        let last = first.wrapping_add(n);
        let mut acked_last = false;
        // (seq, errno, extack, bad attribute offset) of the first error, and
        // how many there were.
        let mut first_err: Option<(u32, i32, Option<String>, Option<usize>)> = None;
        let mut errors = 0usize;
        loop {
            self.recv_buf.clear();
            let r = self
                .socket
                .recv(&mut self.recv_buf, libc::MSG_DONTWAIT | libc::MSG_TRUNC);
            let len = match r {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Err(KernelError::Protocol {
                        op: op_all(),
                        detail: "receive queue overflowed (ENOBUFS), answers were lost; \
                                 outcome unknown"
                            .into(),
                    });
                }
                Err(e) => return Err(KernelError::io(op_all(), e)),
            };
            if len > self.recv_buf.len() {
                return Err(KernelError::Protocol {
                    op: op_all(),
                    detail: format!("answer of {len} bytes truncated"),
                });
            }
            for m in Messages(&self.recv_buf[..len]) {
                if m.ty != NLMSG_ERROR || m.seq.wrapping_sub(first) > n + 1 {
                    continue;
                }
                let code =
                    i32::from_ne_bytes(m.payload.get(..4).unwrap_or(&[0; 4]).try_into().unwrap());
                if code == 0 {
                    if m.seq == last {
                        acked_last = true;
                    }
                    continue;
                }
                errors += 1;
                if first_err
                    .as_ref()
                    .is_none_or(|(s, ..)| m.seq.wrapping_sub(first) < s.wrapping_sub(first))
                {
                    let tlvs = m.payload.get(4..).unwrap_or(&[]);
                    first_err = Some((
                        m.seq,
                        -code,
                        error_extack(m.flags, tlvs),
                        error_offset(m.flags, tlvs),
                    ));
                }
            }
        }

        if let Some((seq, errno, kernel_message, offset)) = first_err {
            let idx = seq.wrapping_sub(first) as usize;
            let what = if idx == 0 || idx > n as usize {
                // Errors on BEGIN come from the commit phase (or a
                // malformed batch): the transaction as a whole failed.
                "commit".to_string()
            } else {
                let msg = nth_message(&batch.w.buf, idx - 1);
                // nf_tables rarely sends extack text but usually points at
                // the attribute it rejected; name it (and show the value
                // if it is a name, e.g. the set that does not exist).
                let at = offset
                    .and_then(|o| attr_at(msg, o))
                    .map(|(path, value)| format!(", at {}", describe_attr(&path, value)))
                    .unwrap_or_default();
                format!("{} (message {idx}{at})", describe(msg))
            };
            let more = if errors > 1 {
                format!(", {} more message(s) failed", errors - 1)
            } else {
                String::new()
            };
            return Err(NlError::Errno {
                errno,
                kernel_message,
            }
            .into_kernel(format!("{}: {what}{more}", op_all())));
        }
        if !acked_last {
            return Err(KernelError::Protocol {
                op: op_all(),
                detail: "the kernel did not acknowledge the batch; outcome unknown".into(),
            });
        }
        Ok(())
    }

    /// Grow `SO_SNDBUF` / `SO_RCVBUF` so one batch and its ACKs fit.
    fn reserve_buffers(&mut self, send: usize, recv: usize) {
        // netlink_sendmsg refuses messages larger than sk_sndbuf - 32.
        if send + 64 > self.sndbuf {
            let want = (send + 64).next_power_of_two();
            if set_buf(&self.socket, want, true) {
                self.sndbuf = want;
            }
        }
        if recv > self.rcvbuf {
            let want = recv.next_power_of_two();
            if set_buf(&self.socket, want, false) {
                self.rcvbuf = want;
            }
        }
    }

    /// One dump request; retried when the kernel flags it interrupted by a
    /// concurrent change. Calls `each` with every answer message.
    pub(crate) fn dump(
        &mut self,
        msg: u16,
        family: Family,
        attrs: impl Fn(&mut Writer),
        mut each: impl FnMut(&[u8]),
    ) -> Result<()> {
        let mut w = Writer::reuse(std::mem::take(&mut self.send_buf));
        let start = w.begin_msg(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | NLM_F_DUMP,
            family.nfproto(),
            0,
        );
        attrs(&mut w);
        w.end_msg(start);
        self.send_buf = w.buf;
        for attempt in 0.. {
            let seq = self.seqs(1);
            self.send_buf[8..12].copy_from_slice(&seq.to_ne_bytes());
            self.requests += 1;
            let mut collected: Vec<Vec<u8>> = Vec::new();
            let interrupted = match self.dump_once(seq, &mut collected) {
                Ok(i) => i,
                Err(e) => return Err(e.into_kernel(describe(&self.send_buf))),
            };
            if !interrupted || attempt + 1 >= DUMP_RETRIES {
                for m in &collected {
                    each(m);
                }
                return Ok(());
            }
        }
        unreachable!()
    }

    fn dump_once(
        &mut self,
        seq: u32,
        out: &mut Vec<Vec<u8>>,
    ) -> std::result::Result<bool, NlError> {
        send_all(&self.socket, &self.send_buf).map_err(NlError::Io)?;
        let mut interrupted = false;
        loop {
            self.recv_buf.clear();
            let len = loop {
                match self.socket.recv(&mut self.recv_buf, libc::MSG_TRUNC) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(NlError::Io(e)),
                }
            };
            if len > self.recv_buf.len() {
                return Err(NlError::Protocol(format!("reply of {len} bytes truncated")));
            }
            for m in Messages(&self.recv_buf[..len]) {
                if m.seq != seq {
                    continue;
                }
                if m.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match m.ty {
                    NLMSG_ERROR | NLMSG_DONE => {
                        let code = i32::from_ne_bytes(
                            m.payload.get(..4).unwrap_or(&[0; 4]).try_into().unwrap(),
                        );
                        if code == 0 {
                            return Ok(interrupted);
                        }
                        let kernel_message = if m.ty == NLMSG_ERROR {
                            error_extack(m.flags, m.payload.get(4..).unwrap_or(&[]))
                        } else {
                            extack_msg(m.payload.get(4..).unwrap_or(&[]))
                        };
                        return Err(NlError::Errno {
                            errno: code.abs(),
                            kernel_message,
                        });
                    }
                    _ => out.push(m.whole.to_vec()),
                }
            }
        }
    }
}

fn send_all(socket: &Socket, buf: &[u8]) -> io::Result<()> {
    loop {
        match socket.send(buf, 0) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Set a socket buffer size, forcing past `[rw]mem_max` when allowed.
fn set_buf(socket: &Socket, size: usize, send: bool) -> bool {
    if send {
        setsockopt(socket, sockopt::SndBufForce, &size).is_ok()
            || setsockopt(socket, sockopt::SndBuf, &size).is_ok()
    } else {
        setsockopt(socket, sockopt::RcvBufForce, &size).is_ok()
            || setsockopt(socket, sockopt::RcvBuf, &size).is_ok()
    }
}

fn setsockopt_get_sndbuf(socket: &Socket) -> Option<usize> {
    nix::sys::socket::getsockopt(socket, sockopt::SndBuf).ok()
}

/// `NLMSGERR_ATTR_OFFS` of an `NLMSG_ERROR` payload (after the error
/// code): the offset of the rejected attribute in the request.
fn error_offset(flags: u16, payload: &[u8]) -> Option<usize> {
    const NLMSGERR_ATTR_OFFS: u16 = 2;
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < NLMSG_HDRLEN {
        return None;
    }
    let orig_len = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32::from_ne_bytes(payload[..4].try_into().ok()?) as usize
    };
    let tlvs = payload.get((orig_len + 3) & !3..)?;
    let a = Attrs(tlvs).get(NLMSGERR_ATTR_OFFS)?;
    Some(u32::from_ne_bytes(a.value.get(..4)?.try_into().ok()?) as usize)
}

/// The `idx`-th message in a buffer of messages.
pub(crate) fn nth_message(buf: &[u8], idx: usize) -> &[u8] {
    Messages(buf).nth(idx).map_or(&[][..], |m| m.whole)
}

/// One netlink message in a received buffer.
struct Message<'a> {
    ty: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
    whole: &'a [u8],
}

/// Iterator over the netlink messages in a buffer; stops at the first
/// malformed header.
struct Messages<'a>(&'a [u8]);

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        let b = self.0;
        if b.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(b[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            self.0 = &[];
            return None;
        }
        self.0 = b.get((len + 3) & !3..).unwrap_or(&[]);
        Some(Message {
            ty: u16::from_ne_bytes([b[4], b[5]]),
            flags: u16::from_ne_bytes([b[6], b[7]]),
            seq: u32::from_ne_bytes(b[8..12].try_into().ok()?),
            payload: &b[NLMSG_HDRLEN..len],
            whole: &b[..len],
        })
    }
}
