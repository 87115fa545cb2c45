//! [`Batch`]: the messages of one nf_tables transaction.

use lnet_nla::Messages;
use lnet_nla::flags::{NLM_F_ACK, NLM_F_REQUEST};

use crate::Family;
use crate::sys::*;
use crate::wire::{Checked, Writer, msg_attrs};

/// The messages of one nf_tables transaction, built with the `add_*`,
/// `delete_*`, `destroy_*` and `flush_*` methods and sent by
/// lnet-kernel's `NftSocket::commit`.
///
/// A batch is plain bytes: building one does not touch the kernel, it can be
/// committed more than once (e.g. to several namespaces), and sequence
/// numbers are assigned when it is sent. The kernel applies a committed
/// batch atomically: all messages or none.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub(crate) w: Writer,
    pub(crate) count: usize,
    /// Sets added so far (for `NFTA_SET_ID`).
    pub(crate) sets: u32,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Number of messages in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the batch has no messages (committing it does nothing).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The messages, as the bytes that are sent (sequence numbers 0: the
    /// sender numbers them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.w.buf
    }

    /// The messages one by one, whole (`nlmsghdr` included).
    pub fn messages(&self) -> impl Iterator<Item = &[u8]> {
        Messages(&self.w.buf).map(|m| m.whole)
    }

    /// Forget all messages, keeping the buffer for reuse.
    pub fn clear(&mut self) {
        self.w.buf.clear();
        self.count = 0;
        self.sets = 0;
    }

    /// Start an nf_tables message. Every message asks for an ACK so the
    /// outcome of each one is reported.
    pub(crate) fn begin(&mut self, msg: u16, flags: u16, family: Family) -> usize {
        self.count += 1;
        self.w.begin_msg(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            family.nfproto(),
            0,
        )
    }

    pub(crate) fn end(&mut self, start: usize) {
        self.w.end_msg(start);
    }
}

/// Describe one nf_tables message for an error: verb, object and names, read
/// back from the bytes that were sent (so nothing is allocated for messages
/// that succeed).
pub fn describe(msg: &[u8]) -> String {
    if msg.len() < 20 {
        return "<short message>".into();
    }
    let ty = u16::from_ne_bytes([msg[4], msg[5]]);
    let family = Family::from_nfproto(msg[16]).map_or("?", Family::name);
    // Names are read as far as the attributes are well formed.
    let attrs = msg_attrs(msg).unwrap_or_else(|_| Checked::empty());
    let s = |t| attrs.get(t).map(|a| a.string()).unwrap_or_default();
    let (verb, what) = match ty & 0xff {
        NFT_MSG_NEWTABLE => ("add", "table"),
        NFT_MSG_DELTABLE => ("delete", "table"),
        NFT_MSG_DESTROYTABLE => ("destroy", "table"),
        NFT_MSG_NEWCHAIN => ("add", "chain"),
        NFT_MSG_DELCHAIN => ("delete", "chain"),
        NFT_MSG_DESTROYCHAIN => ("destroy", "chain"),
        NFT_MSG_NEWRULE => ("add", "rule"),
        NFT_MSG_DELRULE => ("delete", "rule"),
        NFT_MSG_DESTROYRULE => ("destroy", "rule"),
        NFT_MSG_NEWSET => ("add", "set"),
        NFT_MSG_DELSET => ("delete", "set"),
        NFT_MSG_DESTROYSET => ("destroy", "set"),
        NFT_MSG_NEWSETELEM => ("add", "elements"),
        NFT_MSG_DELSETELEM => ("delete", "elements"),
        NFT_MSG_DESTROYSETELEM => ("destroy", "elements"),
        NFT_MSG_GETRULE => ("list", "rules"),
        NFT_MSG_GETSETELEM => ("list", "elements"),
        NFT_MSG_GETTABLE => ("list", "tables"),
        NFT_MSG_GETCHAIN => ("list", "chains"),
        NFT_MSG_GETSET => ("list", "sets"),
        _ => ("message", "?"),
    };
    match ty & 0xff {
        NFT_MSG_NEWTABLE | NFT_MSG_DELTABLE | NFT_MSG_DESTROYTABLE => {
            format!("{verb} table {family} {}", s(NFTA_TABLE_NAME))
        }
        NFT_MSG_NEWCHAIN | NFT_MSG_DELCHAIN | NFT_MSG_DESTROYCHAIN => format!(
            "{verb} chain {family} {} {}",
            s(NFTA_CHAIN_TABLE),
            s(NFTA_CHAIN_NAME)
        ),
        NFT_MSG_NEWRULE | NFT_MSG_DELRULE | NFT_MSG_DESTROYRULE | NFT_MSG_GETRULE => {
            let handle = attrs
                .get(NFTA_RULE_HANDLE)
                .and_then(|a| a.be64())
                .map(|h| format!(" handle {h}"))
                .unwrap_or_default();
            let chain = s(NFTA_RULE_CHAIN);
            let chain = if chain.is_empty() {
                String::new()
            } else {
                format!(" {chain}")
            };
            format!(
                "{verb} {what} in chain {family} {}{chain}{handle}",
                s(NFTA_RULE_TABLE)
            )
        }
        NFT_MSG_NEWSET | NFT_MSG_DELSET | NFT_MSG_DESTROYSET => {
            format!(
                "{verb} set {family} {} {}",
                s(NFTA_SET_TABLE),
                s(NFTA_SET_NAME)
            )
        }
        NFT_MSG_GETSETELEM => format!(
            "list elements of set {family} {} {}",
            s(NFTA_SET_ELEM_LIST_TABLE),
            s(NFTA_SET_ELEM_LIST_SET)
        ),
        _ if what == "elements" => {
            let n = attrs
                .get(NFTA_SET_ELEM_LIST_ELEMENTS)
                .map_or(0, |a| a.nested().count());
            format!(
                "{verb} {n} element(s) of set {family} {} {}",
                s(NFTA_SET_ELEM_LIST_TABLE),
                s(NFTA_SET_ELEM_LIST_SET)
            )
        }
        NFT_MSG_GETTABLE => format!("list tables {family}"),
        NFT_MSG_GETCHAIN => format!("list chains of table {family} {}", s(NFTA_CHAIN_TABLE)),
        NFT_MSG_GETSET => format!("list sets of table {family} {}", s(NFTA_SET_TABLE)),
        other => format!("nf_tables message type {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataType, Element, Rule, Set};

    #[test]
    fn messages_describe_themselves() {
        let mut b = Batch::new();
        b.add_table(Family::Inet, "t")
            .delete_chain(Family::Ip, "t", "c")
            .add_set(&Set::new(Family::Ip6, "t", "s", &[DataType::Ipv6Addr]))
            .destroy_elements(
                Family::Ip,
                "t",
                "s",
                &[Element::new([1]), Element::new([2])],
            )
            .add_rule(&Rule::new(Family::Ip, "t", "c").accept())
            .delete_rule(Family::Ip, "t", "c", 7);
        assert_eq!(b.len(), 6);
        let descs: Vec<String> = b.messages().map(describe).collect();
        assert_eq!(
            descs,
            [
                "add table inet t",
                "delete chain ip t c",
                "add set ip6 t s",
                "destroy 2 element(s) of set ip t s",
                "add rule in chain ip t c",
                "delete rule in chain ip t c handle 7",
            ]
        );
        b.clear();
        assert!(b.is_empty() && b.w.buf.is_empty());
    }
}
