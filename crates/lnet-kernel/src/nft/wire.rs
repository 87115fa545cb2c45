//! Netlink attribute encoding and decoding for nf_tables messages.
//!
//! nf_tables puts almost every integer on the wire in network byte order
//! (`NLA_BE32`, `NLA_BE64`), strings NUL-terminated, and nests with
//! `NLA_F_NESTED` set (the kernel's strict parser wants it on newer
//! attributes, and libmnl always sets it). Register *contents* (cmp data,
//! set keys) are raw bytes and keep whatever order the expression that
//! fills the register uses.

/// `NLA_F_NESTED`.
const NLA_F_NESTED: u16 = 0x8000;
/// Mask that strips `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER` from a type.
const NLA_TYPE_MASK: u16 = 0x3fff;
pub(crate) use crate::socket::NLMSG_HDRLEN;
/// `struct nfgenmsg`: family, version, resource id.
pub(crate) const NFGENMSG_LEN: usize = 4;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends netlink messages and attributes to a byte buffer.
#[derive(Debug, Default, Clone)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
    /// Start offsets of open nests.
    nests: Vec<usize>,
}

impl Writer {
    /// A writer that appends to `buf` (cleared first), to reuse its
    /// allocation.
    pub(crate) fn reuse(mut buf: Vec<u8>) -> Writer {
        buf.clear();
        Writer {
            buf,
            nests: Vec::new(),
        }
    }

    /// Start a message: `nlmsghdr` (length and sequence patched later) and
    /// `nfgenmsg`. Returns the message's offset.
    pub(crate) fn begin_msg(&mut self, ty: u16, flags: u16, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, see end_msg
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // seq, set at send time
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: kernel fills
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    /// Finish the message started at `start` by writing its length.
    pub(crate) fn end_msg(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    pub(crate) fn bytes(&mut self, ty: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(self.buf.len() + align4(len) - len, 0);
    }

    /// A NUL-terminated string attribute.
    pub(crate) fn str(&mut self, ty: u16, value: &str) {
        let len = 4 + value.len() + 1;
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self.buf.resize(self.buf.len() + align4(len) - len, 0);
    }

    pub(crate) fn be32(&mut self, ty: u16, value: u32) {
        self.bytes(ty, &value.to_be_bytes());
    }

    pub(crate) fn be64(&mut self, ty: u16, value: u64) {
        self.bytes(ty, &value.to_be_bytes());
    }

    pub(crate) fn nest(&mut self, ty: u16) {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    }

    pub(crate) fn end_nest(&mut self) {
        let start = self.nests.pop().expect("end_nest without nest");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }
}

/// One decoded attribute.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attr<'a> {
    pub(crate) ty: u16,
    pub(crate) value: &'a [u8],
}

impl<'a> Attr<'a> {
    pub(crate) fn be32(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.value.get(..4)?.try_into().ok()?))
    }

    pub(crate) fn be64(&self) -> Option<u64> {
        Some(u64::from_be_bytes(self.value.get(..8)?.try_into().ok()?))
    }

    pub(crate) fn string(&self) -> String {
        let end = self
            .value
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.value.len());
        String::from_utf8_lossy(&self.value[..end]).into_owned()
    }

    pub(crate) fn nested(&self) -> Attrs<'a> {
        Attrs(self.value)
    }
}

/// Iterator over a TLV stream; stops at the first malformed attribute.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attrs<'a>(pub(crate) &'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = Attr<'a>;

    fn next(&mut self) -> Option<Attr<'a>> {
        let b = self.0;
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            self.0 = &[];
            return None;
        }
        self.0 = b.get(align4(len)..).unwrap_or(&[]);
        Some(Attr {
            ty,
            value: &b[4..len],
        })
    }
}

impl<'a> Attrs<'a> {
    /// The first attribute of type `ty`.
    pub(crate) fn get(self, ty: u16) -> Option<Attr<'a>> {
        self.into_iter().find(|a| a.ty == ty)
    }
}

/// The attributes of a whole nf_tables message (after `nlmsghdr` and
/// `nfgenmsg`).
pub(crate) fn msg_attrs(msg: &[u8]) -> Attrs<'_> {
    Attrs(msg.get(NLMSG_HDRLEN + NFGENMSG_LEN..).unwrap_or(&[]))
}

/// The attribute of `msg` (a whole message) that starts at byte offset
/// `off`, as the path of attribute types leading to it and its value. The
/// kernel points at a rejected attribute this way (`NLMSGERR_ATTR_OFFS`).
pub(crate) fn attr_at(msg: &[u8], off: usize) -> Option<(Vec<u16>, &[u8])> {
    let mut path = Vec::new();
    let mut pos = NLMSG_HDRLEN + NFGENMSG_LEN;
    let mut end = msg.len();
    while pos + 4 <= end {
        let len = u16::from_ne_bytes([msg[pos], msg[pos + 1]]) as usize;
        let raw_ty = u16::from_ne_bytes([msg[pos + 2], msg[pos + 3]]);
        if len < 4 || pos + len > end {
            return None;
        }
        if pos == off {
            path.push(raw_ty & NLA_TYPE_MASK);
            return Some((path, &msg[pos + 4..pos + len]));
        }
        if off > pos && off < pos + len && raw_ty & NLA_F_NESTED != 0 {
            path.push(raw_ty & NLA_TYPE_MASK);
            end = pos + len;
            pos += 4;
        } else {
            pos += align4(len);
        }
    }
    None
}

/// Render an attribute for an error message: its type path, and its value
/// when it is a printable string (a table, chain or set name).
pub(crate) fn describe_attr(path: &[u16], value: &[u8]) -> String {
    let path: Vec<String> = path.iter().map(u16::to_string).collect();
    let text = value.strip_suffix(&[0]).unwrap_or(value);
    if !text.is_empty() && text.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!(
            "attribute {} = {:?}",
            path.join("/"),
            String::from_utf8_lossy(text)
        )
    } else {
        format!("attribute {}", path.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = Writer::default();
        let start = w.begin_msg(0x0a00, 1, 2, 0);
        w.str(1, "lnet");
        w.nest(4);
        w.be32(1, 7);
        w.bytes(2, &[1, 2, 3]);
        w.end_nest();
        w.be64(3, 9);
        w.end_msg(start);
        assert_eq!(w.buf.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(w.buf[..4].try_into().unwrap()) as usize,
            w.buf.len()
        );
        let attrs: Vec<_> = msg_attrs(&w.buf).collect();
        assert_eq!(attrs.len(), 3);
        assert_eq!(attrs[0].string(), "lnet");
        let inner: Vec<_> = attrs[1].nested().collect();
        assert_eq!(inner[0].be32(), Some(7));
        assert_eq!(inner[1].value, &[1, 2, 3]);
        assert_eq!(attrs[2].be64(), Some(9));
        assert_eq!(Attrs(&[5, 0, 1]).count(), 0);

        // The kernel reports a rejected attribute by offset.
        let (path, value) = attr_at(&w.buf, 20).unwrap();
        assert_eq!((path, value), (vec![1], &b"lnet\0"[..]));
        let inner = 20 + 12 + 4 + 8; // table name, nest header, first be32
        let (path, value) = attr_at(&w.buf, inner).unwrap();
        assert_eq!((path.as_slice(), value), (&[4, 2][..], &[1, 2, 3][..]));
        assert_eq!(attr_at(&w.buf, 21), None);
        assert_eq!(describe_attr(&[1], b"lnet\0"), "attribute 1 = \"lnet\"");
        assert_eq!(describe_attr(&[4, 2], &[1, 2, 3]), "attribute 4/2");
    }
}
