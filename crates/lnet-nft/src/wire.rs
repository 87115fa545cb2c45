//! Netlink attributes of nf_tables messages, read and written with
//! `lnet-nla`.
//!
//! nf_tables puts almost every integer on the wire in network byte order
//! (`NLA_BE32`, `NLA_BE64`), strings NUL-terminated, and nests with
//! `NLA_F_NESTED` set (the kernel's strict parser wants it on newer
//! attributes, and libmnl always sets it). Register *contents* (cmp data,
//! set keys) are raw bytes and keep whatever order the expression that
//! fills the register uses.

use std::cell::Cell;

pub(crate) use lnet_nla::{Attr, Attrs, Checked, NFGENMSG_LEN, NlaError, Writer};

/// The attributes of a whole nf_tables message (after `nlmsghdr` and
/// `nfgenmsg`), walked once and checked.
pub(crate) fn msg_attrs(msg: &[u8]) -> Result<Checked<'_>, NlaError> {
    Attrs::of_message(msg, NFGENMSG_LEN)?.checked()
}

/// The attribute of `msg` (a whole nf_tables message) that starts at byte
/// offset `off`, as the path of attribute types leading to it and its
/// value: the kernel points at a rejected attribute this way
/// (`NLMSGERR_ATTR_OFFS`).
pub fn rejected_attr(msg: &[u8], off: usize) -> Option<(Vec<u16>, &[u8])> {
    lnet_nla::attr_at(msg, NFGENMSG_LEN, off)
}

/// Render an attribute for an error message: its type path, and its value
/// when it is a printable string (a table, chain or set name).
pub fn describe_attr(path: &[u16], value: &[u8]) -> String {
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

/// Opens nests for decoders written as `Option` chains ("absent or not
/// understood" is `None`), remembering the first malformed nest so that the
/// decoder can report it instead of mistaking it for an absent attribute.
#[derive(Debug, Default)]
pub(crate) struct Nests(Cell<Option<NlaError>>);

impl Nests {
    /// The attributes nested in `a`, checked; `None` (and the error
    /// remembered) when they are malformed.
    pub(crate) fn open<'a>(&self, a: Attr<'a>) -> Option<Checked<'a>> {
        match a.nested().checked() {
            Ok(c) => Some(c),
            Err(e) => {
                if self.0.get().is_none() {
                    self.0.set(Some(e));
                }
                None
            }
        }
    }

    /// `value`, unless a nest opened on the way was malformed.
    pub(crate) fn finish<T>(&self, value: T) -> Result<T, NlaError> {
        match self.0.get() {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_attributes_are_named() {
        assert_eq!(describe_attr(&[1], b"lnet\0"), "attribute 1 = \"lnet\"");
        assert_eq!(describe_attr(&[4, 2], &[1, 2, 3]), "attribute 4/2");
    }
}
