//! [`NftSocket`]: a synchronous `NETLINK_NETFILTER` socket for nf_tables.
//!
//! Opening, numbering, counting, the dump loop and error decoding are the
//! shared [`NlSocket`]'s (the same as [`Netlink`](crate::Netlink)'s); what is
//! nf_tables-specific stays here: transactions (one `send` of a whole batch,
//! one ACK per message, buffers grown to fit) and naming the message and
//! attribute the kernel rejected.

use std::fmt;
use std::io;

use nix::sys::socket::{setsockopt, sockopt};
use rtnetlink::packet_core::{NLM_F_DUMP, NLM_F_REQUEST};
use rtnetlink::sys::{Socket, protocols::NETLINK_NETFILTER};

use lnet_nft::decode::DecodeError;
use lnet_nft::{describe, describe_attr, rejected_attr};
use lnet_nla::{Attrs, NLMSG_HDRLEN, Writer};

use super::Batch;
use super::Family;
use super::sys::*;
use crate::error::{KernelError, Result};
use crate::netns::Netns;
use crate::socket::{
    self, Messages, NLMSG_ERROR, NlError, NlSocket, RECV_BUF_SIZE, error_extack, error_tlvs,
};

/// Receive-queue room reserved per message of a batch: each ACK is its own
/// skb, and an skb's accounted size (`truesize`) is far larger than the
/// 36-byte ACK in it. Generous on purpose; see [`NftSocket::commit`].
const ACK_TRUESIZE: usize = 1024;

/// A synchronous nf_tables socket bound to one network namespace.
///
/// Like [`Netlink`](crate::Netlink): the namespace is fixed at creation
/// ([`NftSocket::new`], [`NftSocket::in_netns`]); afterwards the value may be
/// moved between threads. Each [`commit`](NftSocket::commit) is exactly one
/// `send` of one transaction; each listing is one dump request.
pub struct NftSocket {
    sock: NlSocket,
    /// Current `SO_RCVBUF` / `SO_SNDBUF` sizes as far as we set them.
    rcvbuf: usize,
    sndbuf: usize,
}

impl NftSocket {
    /// Open a `NETLINK_NETFILTER` socket in the calling thread's current
    /// network namespace.
    pub fn new() -> Result<NftSocket> {
        let sock = NlSocket::open(NETLINK_NETFILTER, "NETLINK_NETFILTER", 4096)?;
        let rcvbuf = sock.socket.get_rx_buf_sz().unwrap_or(RECV_BUF_SIZE);
        let sndbuf = get_sndbuf(&sock.socket).unwrap_or(RECV_BUF_SIZE);
        Ok(NftSocket {
            sock,
            rcvbuf,
            sndbuf,
        })
    }

    /// Open a socket inside `ns`, from a short-lived helper thread; the
    /// calling thread's namespace is never touched.
    pub fn in_netns(ns: &Netns) -> Result<NftSocket> {
        socket::in_netns(ns, NftSocket::new)
    }

    /// The netlink port of this socket: nf_tables notifications of the changes it asks for
    /// carry it (see [`crate::monitor::Event::Nft`]).
    pub fn portid(&self) -> u32 {
        let mut addr = rtnetlink::sys::SocketAddr::new(0, 0);
        match self.sock.socket.get_address(&mut addr) {
            Ok(()) => addr.port_number(),
            Err(_) => 0,
        }
    }

    /// How many requests (transactions and dumps) this socket has sent.
    pub fn request_count(&self) -> u64 {
        self.sock.request_count()
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
        let n = batch.len() as u32;
        let first = self.sock.start_request(n + 2);
        let op_all = || format!("nft transaction of {n} message(s)");

        // Assemble BEGIN + messages + END and number them.
        let mut w = Writer::reuse(std::mem::take(&mut self.sock.send_buf));
        let b = w.begin_msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        w.end_msg(b);
        w.buf.extend_from_slice(batch.as_bytes());
        let e = w.begin_msg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        w.end_msg(e);
        let buf = &mut w.buf;
        let mut off = 0;
        let mut seq = first;
        while off + NLMSG_HDRLEN <= buf.len() {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            buf[off + 8..off + 12].copy_from_slice(&seq.to_ne_bytes());
            seq = seq.wrapping_add(1);
            // Writer-built messages are never shorter than a header and
            // always 4-byte aligned; max() only guards against looping.
            off += ((len + 3) & !3).max(NLMSG_HDRLEN);
        }

        self.sock.send_buf = w.buf;

        self.reserve_buffers(self.sock.send_buf.len(), (n as usize + 2) * ACK_TRUESIZE);
        self.sock.send().map_err(|e| KernelError::io(op_all(), e))?;

        let last = first.wrapping_add(n);
        let mut acked_last = false;
        // (seq, errno, extack, bad attribute offset) of the first error, and
        // how many there were.
        let mut first_err: Option<(u32, i32, Option<String>, Option<usize>)> = None;
        let mut errors = 0usize;
        loop {
            let len = match self.sock.recv(libc::MSG_DONTWAIT) {
                Ok(len) => len,
                Err(NlError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(NlError::Io(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Err(KernelError::Protocol {
                        op: op_all(),
                        detail: "receive queue overflowed (ENOBUFS), answers were lost; \
                                 outcome unknown"
                            .into(),
                    });
                }
                Err(e) => return Err(e.into_kernel(op_all())),
            };
            for m in Messages(&self.sock.recv_buf[..len]) {
                if m.ty != NLMSG_ERROR || m.seq.wrapping_sub(first) > n + 1 {
                    continue;
                }
                let code = m.code();
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
                let msg = batch.messages().nth(idx - 1).unwrap_or_default();
                // nf_tables rarely sends extack text but usually points at
                // the attribute it rejected; name it (and show the value
                // if it is a name, e.g. the set that does not exist).
                let at = offset
                    .and_then(|o| rejected_attr(msg, o))
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
            if set_buf(&self.sock.socket, want, true) {
                self.sndbuf = want;
            }
        }
        if recv > self.rcvbuf {
            let want = recv.next_power_of_two();
            if set_buf(&self.sock.socket, want, false) {
                self.rcvbuf = want;
            }
        }
    }

    /// One dump request; retried when the kernel flags it interrupted by a
    /// concurrent change. Calls `each` with every answer message of the
    /// consistent attempt only; a message `each` cannot read fails the dump.
    pub(crate) fn dump(
        &mut self,
        msg: u16,
        family: Family,
        attrs: impl Fn(&mut Writer),
        mut each: impl FnMut(&[u8]) -> std::result::Result<(), DecodeError>,
    ) -> Result<()> {
        let mut w = Writer::reuse(std::mem::take(&mut self.sock.send_buf));
        let start = w.begin_msg(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | NLM_F_DUMP,
            family.nfproto(),
            0,
        );
        attrs(&mut w);
        w.end_msg(start);
        self.sock.send_buf = w.buf;
        match self.sock.dump(|m| Ok(Some(m.to_vec()))) {
            Ok(collected) => collected.iter().try_for_each(|m| {
                each(m).map_err(|e| KernelError::Protocol {
                    op: describe(&self.sock.send_buf),
                    detail: e.to_string(),
                })
            }),
            Err(e) => Err(e.into_kernel(describe(&self.sock.send_buf))),
        }
    }
}

impl fmt::Debug for NftSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.sock.debug("NftSocket", f)
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

fn get_sndbuf(socket: &Socket) -> Option<usize> {
    nix::sys::socket::getsockopt(socket, sockopt::SndBuf).ok()
}

/// `NLMSGERR_ATTR_OFFS` of an `NLMSG_ERROR` payload (after the error
/// code): the offset of the rejected attribute in the request.
fn error_offset(flags: u16, payload: &[u8]) -> Option<usize> {
    const NLMSGERR_ATTR_OFFS: u16 = 2;
    let a = Attrs::new(error_tlvs(flags, payload)?)
        .get(NLMSGERR_ATTR_OFFS)
        .ok()??;
    Some(a.ne32()? as usize)
}
