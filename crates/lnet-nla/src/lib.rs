//! lnet-nla owns the netlink attribute (`struct nlattr`) format for every
//! lnet decoder and encoder: one checked walker over attribute streams
//! ([`Attrs`], [`Checked`]) and one writer ([`Writer`]). It is pure: no
//! sockets, no I/O, no `unsafe`, and it knows nothing of which protocol
//! (rtnetlink, nf_tables, ctnetlink) the attributes belong to.
//!
//! The bytes come from the kernel or from anyone who can write to a socket,
//! so they are parsed the way smoltcp parses packets: every length is
//! checked before it is used, and an attribute whose length is shorter than
//! its header, runs past the bytes it sits in, or leaves a stub too short to
//! be a header is an [`NlaError`] — never a panic, never a read out of
//! bounds. Nested attributes are walked by the same code ([`Attr::nested`]).
//!
//! An attribute is `u16 len` (header included, padding excluded), `u16 type`
//! (with the `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` bits), then the value,
//! padded to 4 bytes. Padding after the last attribute may be missing (the
//! kernel's `nla_ok` accepts that too).
//!
//! Netlink messages (`nlmsghdr`) are split the same checked way
//! ([`Messages`]).
//!
//! Walking allocates nothing, so hot decoders (lnet-kernel reads a dump of
//! 10,000 links through it) pay only for the values they keep.

use std::fmt;

/// `NLA_F_NESTED`: the value is itself a list of attributes.
pub const NLA_F_NESTED: u16 = 0x8000;
/// `NLA_F_NET_BYTEORDER`: the value is in network byte order.
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
/// Strips both flags from a type.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
/// `sizeof(struct nlattr)`.
pub const NLA_HDRLEN: usize = 4;
/// `sizeof(struct nlmsghdr)`.
pub const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct nfgenmsg)`: family, version, resource id.
pub const NFGENMSG_LEN: usize = 4;

/// `nlmsg_flags` bits (`linux/netlink.h`).
pub mod flags {
    /// `NLM_F_REQUEST`.
    pub const NLM_F_REQUEST: u16 = 0x01;
    /// `NLM_F_ACK`.
    pub const NLM_F_ACK: u16 = 0x04;
    /// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
    pub const NLM_F_DUMP: u16 = 0x300;
    /// `NLM_F_EXCL`.
    pub const NLM_F_EXCL: u16 = 0x200;
    /// `NLM_F_CREATE`.
    pub const NLM_F_CREATE: u16 = 0x400;
    /// `NLM_F_APPEND`.
    pub const NLM_F_APPEND: u16 = 0x800;
}

/// Rounds up to the 4-byte alignment of netlink.
pub fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A malformed attribute stream. Offsets count from the start of the bytes
/// the walk was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NlaError {
    /// Fewer bytes are left than an attribute header needs.
    #[error("netlink attribute at byte {offset}: {remaining} byte(s) left, a header needs 4")]
    Truncated {
        /// Where the stub starts.
        offset: usize,
        /// How many bytes are left.
        remaining: usize,
    },
    /// A message's length (`nlmsg_len`) is shorter than its headers or
    /// longer than the bytes that hold it.
    #[error(
        "netlink message of length {len}: it must be at least {need} (its headers) \
         and at most {have} (the bytes received)"
    )]
    BadMessage {
        /// The length the message claims.
        len: usize,
        /// The length of its headers.
        need: usize,
        /// The bytes there are.
        have: usize,
    },
    /// The attribute's length is shorter than its header or longer than
    /// what is left.
    #[error(
        "netlink attribute of type {kind} at byte {offset}: length {len}, \
         but it must be 4..={remaining}"
    )]
    BadLength {
        /// Where the attribute starts.
        offset: usize,
        /// Its type, flags masked off.
        kind: u16,
        /// The length it claims.
        len: usize,
        /// How many bytes are left from its start.
        remaining: usize,
    },
}

/// One attribute, borrowed from the bytes it was read from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    raw_kind: u16,
    offset: usize,
    value: &'a [u8],
}

impl fmt::Debug for Attr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attr")
            .field("kind", &self.kind())
            .field("nested", &self.is_nested())
            .field("offset", &self.offset)
            .field("len", &self.value.len())
            .finish()
    }
}

impl<'a> Attr<'a> {
    /// The type, flags masked off.
    #[inline]
    pub fn kind(&self) -> u16 {
        self.raw_kind & NLA_TYPE_MASK
    }

    /// Whether `NLA_F_NESTED` is set. Old rtnetlink nests (`IFLA_LINKINFO`)
    /// do not set it, so decoders nest by type, not by this flag.
    #[inline]
    pub fn is_nested(&self) -> bool {
        self.raw_kind & NLA_F_NESTED != 0
    }

    /// Whether `NLA_F_NET_BYTEORDER` is set.
    #[inline]
    pub fn is_net_byteorder(&self) -> bool {
        self.raw_kind & NLA_F_NET_BYTEORDER != 0
    }

    /// The value, padding excluded.
    #[inline]
    pub fn value(&self) -> &'a [u8] {
        self.value
    }

    /// Where the attribute's header starts, counted from the start of the
    /// bytes its walk was given.
    #[inline]
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The attributes inside this one, walked by the same code.
    #[inline]
    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.value)
    }

    #[inline]
    fn array<const N: usize>(&self) -> Option<[u8; N]> {
        self.value.try_into().ok()
    }

    /// A one-byte value.
    #[inline]
    pub fn u8(&self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    /// A 16-bit value in network byte order (ports).
    #[inline]
    pub fn be16(&self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    /// A 32-bit value in network byte order (`NLA_BE32`, most of nf_tables).
    #[inline]
    pub fn be32(&self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    /// A 64-bit value in network byte order (`NLA_BE64`: rule handles).
    #[inline]
    pub fn be64(&self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// A 32-bit value in host byte order (`NLA_U32`: rtnetlink).
    #[inline]
    pub fn ne32(&self) -> Option<u32> {
        self.array().map(u32::from_ne_bytes)
    }

    /// The value up to its first NUL (or all of it), when that is UTF-8.
    #[inline]
    pub fn c_str(&self) -> Option<&'a str> {
        std::str::from_utf8(until_nul(self.value)).ok()
    }

    /// The value up to its first NUL (or all of it), bytes that are not
    /// UTF-8 replaced.
    pub fn string(&self) -> String {
        String::from_utf8_lossy(until_nul(self.value)).into_owned()
    }
}

#[inline]
fn until_nul(v: &[u8]) -> &[u8] {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    &v[..end]
}

/// A walk over an attribute stream: yields each attribute, or the error
/// that stops the walk (after which it yields nothing).
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Attrs<'a> {
    /// Walks `bytes` from its start.
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Attrs<'a> {
        Attrs { bytes, pos: 0 }
    }

    /// The attributes of a netlink message that has a fixed header of
    /// `header` bytes after `nlmsghdr` (`nfgenmsg`, `ifinfomsg`, ...), up to
    /// the length its `nlmsghdr` gives; offsets count from the message's
    /// start. A message whose length is shorter than its headers or longer
    /// than `msg` is an error.
    #[inline]
    pub fn of_message(msg: &'a [u8], header: usize) -> Result<Attrs<'a>, NlaError> {
        let start = NLMSG_HDRLEN + header;
        let len = msg
            .first_chunk::<4>()
            .map_or(0, |l| u32::from_ne_bytes(*l) as usize);
        match msg.get(..len) {
            Some(bytes) if len >= start => Ok(Attrs { bytes, pos: start }),
            _ => Err(NlaError::BadMessage {
                len,
                need: start,
                have: msg.len(),
            }),
        }
    }

    /// The first attribute of type `kind`; an error when the stream is
    /// malformed before it.
    #[inline]
    pub fn get(self, kind: u16) -> Result<Option<Attr<'a>>, NlaError> {
        for a in self {
            let a = a?;
            if a.kind() == kind {
                return Ok(Some(a));
            }
        }
        Ok(None)
    }

    /// Walks the whole stream once and hands back a view that can be
    /// searched and iterated without further checks.
    pub fn checked(self) -> Result<Checked<'a>, NlaError> {
        let walk = self.clone();
        for a in self {
            a?;
        }
        Ok(Checked(walk))
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, NlaError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.pos;
        let rest = self.bytes.get(offset..).unwrap_or_default();
        if rest.is_empty() {
            return None;
        }
        // Whatever happens next, a failed walk stops here.
        self.pos = self.bytes.len();
        let Some(&[l0, l1, t0, t1]) = rest.get(..NLA_HDRLEN) else {
            return Some(Err(NlaError::Truncated {
                offset,
                remaining: rest.len(),
            }));
        };
        let len = usize::from(u16::from_ne_bytes([l0, l1]));
        let raw_kind = u16::from_ne_bytes([t0, t1]);
        // `get` is `None` for a length below the header too (the range would end before it starts).
        let Some(value) = rest.get(NLA_HDRLEN..len) else {
            return Some(Err(NlaError::BadLength {
                offset,
                kind: raw_kind & NLA_TYPE_MASK,
                len,
                remaining: rest.len(),
            }));
        };
        // Missing padding after the last attribute ends the walk cleanly.
        self.pos = (offset + align4(len)).min(self.bytes.len());
        Some(Ok(Attr {
            raw_kind,
            offset,
            value,
        }))
    }
}

impl std::iter::FusedIterator for Attrs<'_> {}

/// An attribute stream already walked once without error ([`Attrs::checked`]):
/// lookups and iteration need no error handling.
#[derive(Debug, Clone)]
pub struct Checked<'a>(Attrs<'a>);

impl<'a> Checked<'a> {
    /// A stream with no attributes.
    pub fn empty() -> Checked<'a> {
        Checked(Attrs::new(&[]))
    }

    /// The first attribute of type `kind`.
    #[inline]
    pub fn get(&self, kind: u16) -> Option<Attr<'a>> {
        self.clone().find(|a| a.kind() == kind)
    }

    /// The attributes nested in the first attribute of type `kind`, checked.
    pub fn nested(&self, kind: u16) -> Result<Option<Checked<'a>>, NlaError> {
        self.get(kind).map(|a| a.nested().checked()).transpose()
    }
}

impl<'a> Iterator for Checked<'a> {
    type Item = Attr<'a>;

    #[inline]
    fn next(&mut self) -> Option<Attr<'a>> {
        // Already walked without error, so `ok()` drops nothing.
        self.0.next()?.ok()
    }
}

/// The attribute of `msg` (a whole message whose attributes start after a
/// fixed header of `header` bytes) that starts at byte `off`, as the path of
/// attribute types leading to it and its value, following nests marked
/// `NLA_F_NESTED`. The kernel points at a rejected attribute this way
/// (`NLMSGERR_ATTR_OFFS`).
pub fn attr_at(msg: &[u8], header: usize, off: usize) -> Option<(Vec<u16>, &[u8])> {
    let mut path = Vec::new();
    let mut walk = Attrs::of_message(msg, header).ok()?;
    loop {
        let a = walk.find_map(|a| {
            let a = a.ok()?;
            let end = a.offset() + NLA_HDRLEN + a.value().len();
            (a.offset() == off || (a.is_nested() && off > a.offset() && off < end)).then_some(a)
        })?;
        path.push(a.kind());
        if a.offset() == off {
            return Some((path, a.value()));
        }
        // Walk the nest in place so that offsets keep counting from `msg`.
        walk = Attrs {
            bytes: &msg[..a.offset() + NLA_HDRLEN + a.value().len()],
            pos: a.offset() + NLA_HDRLEN,
        };
    }
}

/// One netlink message (`nlmsghdr` and payload) in a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// The sender's netlink port (0 for the kernel itself).
    pub portid: u32,
    /// Everything after the header.
    pub payload: &'a [u8],
    /// Header and payload.
    pub whole: &'a [u8],
}

impl<'a> Message<'a> {
    /// Split the first message off `buf` (advancing past its padding);
    /// `None` on a malformed header.
    pub fn parse(buf: &mut &'a [u8]) -> Option<Message<'a>> {
        let b = *buf;
        if b.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(b[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return None;
        }
        *buf = b.get((len + 3) & !3..).unwrap_or(&[]);
        Some(Message {
            ty: u16::from_ne_bytes([b[4], b[5]]),
            flags: u16::from_ne_bytes([b[6], b[7]]),
            seq: u32::from_ne_bytes(b[8..12].try_into().ok()?),
            portid: u32::from_ne_bytes(b[12..16].try_into().ok()?),
            payload: &b[NLMSG_HDRLEN..len],
            whole: &b[..len],
        })
    }

    /// The error code of an `NLMSG_ERROR` / `NLMSG_DONE` message.
    #[inline]
    pub fn code(&self) -> i32 {
        i32::from_ne_bytes(self.payload.get(..4).unwrap_or(&[0; 4]).try_into().unwrap())
    }
}

/// Iterator over the netlink messages in a buffer; stops at the first
/// malformed header.
#[derive(Debug, Clone)]
pub struct Messages<'a>(pub &'a [u8]);

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        let m = Message::parse(&mut self.0);
        if m.is_none() {
            self.0 = &[];
        }
        m
    }
}

/// Appends netlink messages and attributes to a byte buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
    /// Start offsets of open nests.
    nests: Vec<usize>,
}

impl Writer {
    /// A writer that appends to `buf` (cleared first), to reuse its
    /// allocation.
    pub fn reuse(mut buf: Vec<u8>) -> Writer {
        buf.clear();
        Writer {
            buf,
            nests: Vec::new(),
        }
    }

    /// Start an nfnetlink message (nf_tables, ctnetlink): `nlmsghdr` (length
    /// written by [`Writer::end_msg`], sequence number left 0 for the
    /// sender) and `nfgenmsg`. Returns the message's offset.
    pub fn begin_msg(&mut self, ty: u16, flags: u16, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        // Port id: the kernel fills it in.
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    /// Finish the message started at `start` by writing its length.
    pub fn end_msg(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// A raw attribute.
    pub fn bytes(&mut self, ty: u16, value: &[u8]) {
        self.header(ty, value.len());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    /// A NUL-terminated string attribute.
    pub fn str(&mut self, ty: u16, value: &str) {
        self.header(ty, value.len() + 1);
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    /// A 32-bit attribute in network byte order.
    pub fn be32(&mut self, ty: u16, value: u32) {
        self.bytes(ty, &value.to_be_bytes());
    }

    /// A 64-bit attribute in network byte order.
    pub fn be64(&mut self, ty: u16, value: u64) {
        self.bytes(ty, &value.to_be_bytes());
    }

    /// Open a nest (`NLA_F_NESTED` set, as the kernel's strict parser wants
    /// on newer attributes); close it with [`Writer::end_nest`].
    pub fn nest(&mut self, ty: u16) {
        self.nests.push(self.buf.len());
        self.header(ty | NLA_F_NESTED, 0);
    }

    /// Close the innermost open nest by writing its length.
    pub fn end_nest(&mut self) {
        let start = self.nests.pop().expect("end_nest without nest");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn header(&mut self, ty: u16, value_len: usize) {
        let len = (NLA_HDRLEN + value_len) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
    }

    fn pad(&mut self) {
        self.buf.resize(align4(self.buf.len()), 0);
    }
}

#[cfg(test)]
mod tests;
