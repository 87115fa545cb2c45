//! lnet-nft owns the nftables codec: nf_tables netlink messages built and
//! read as bytes, with no `nft` process, no libnftnl and no I/O — sockets,
//! transactions and namespaces are lnet-kernel's (`lnet_kernel::nft`, which
//! re-exports everything here). It knows nothing of networks, endpoints or
//! the kernel it will talk to; it uses `lnet-nla` for every attribute it
//! writes or reads.
//!
//! * [`Batch`] collects changes — tables, chains, sets and maps, set
//!   elements, rules — as the bytes of one transaction; lnet-kernel's
//!   `NftSocket::commit` sends them in one `send`, and the kernel applies
//!   all of it or none of it. [`describe`] names a message of a batch for
//!   an error, [`describe_attr`] the attribute the kernel pointed at.
//! * [`Rule`] is a typed builder for rule expressions ([`Expr`]);
//!   [`decode`] reads back what the kernel reports (its dump messages are
//!   input like any other: a malformed one is a [`DecodeError`], never a
//!   panic), rules decoded into the same [`Expr`] values the builder
//!   makes, so "what is there" can be compared with "what should be there".
//! * Tables of the `ip`, `ip6`, `inet` and `bridge` families ([`Family`]).
//!   Rules can carry a comment ([`Rule::comment`], in the format `nft`
//!   prints), which is how a rule lnet adds to a chain it does not own
//!   (say `ip filter FORWARD`, made by iptables-nft or an admin, added with
//!   [`Position::Prepend`]) is found again by [`decode::rule`] and
//!   deleted by handle, leaving the rest of that chain alone.
//!
//! `tests/fuzz.rs` feeds arbitrary bytes to every decoder and checks that
//! what the builders encode decodes back to the same values.
//!
//! Higher layers keep per-container state in sets and maps, so connecting a
//! container or publishing a port is one element update in one batch.
//!
//! Kernel rules worth knowing when building batches:
//!
//! * `add_*` is "ensure" (`NLM_F_CREATE` without `NLM_F_EXCL`); `delete_*`
//!   of something absent fails the whole batch with `ENOENT`; `destroy_*`
//!   (Linux 6.3+) ignores an absent object, but not an absent *table*.
//! * An element key that exists with other data is `EEXIST`: re-point it
//!   with delete + add in the same batch.
//! * `nat`/`masq` only work in chains of type nat (`EOPNOTSUPP` elsewhere),
//!   and a base chain's hook or priority cannot be changed by re-adding it.
//! * The builder adds no implicit dependencies: in an `inet` table, put
//!   [`Rule::nfproto`] before `ip`/`ip6` matches, as `nft` would.
//! * Some expressions depend on kernel options: `meta ibrname`/`obrname`
//!   ([`Field::BriIifName`]) need `CONFIG_NFT_BRIDGE_META` (`EOPNOTSUPP`
//!   without it), and `ct` in a bridge table needs `nf_conntrack_bridge`
//!   (`EPROTO` without it).
//!
//! ```
//! use std::net::Ipv4Addr;
//! use lnet_nft::*;
//! let key = [DataType::Ipv4Addr, DataType::InetProto, DataType::InetService];
//! let data = [DataType::Ipv4Addr, DataType::InetService];
//! let mut b = Batch::new();
//! b.add_table(Family::Ip, "lnet");
//! b.add_chain(&Chain::base(Family::Ip, "lnet", "pre", ChainType::Nat, Hook::Prerouting, -100));
//! b.add_set(&Set::map(Family::Ip, "lnet", "ports", &key, &data));
//! b.add_rule(&Rule::new(Family::Ip, "lnet", "pre").dnat_map(
//!     &[Field::IpDaddr, Field::L4Proto, Field::ThDport], "ports", Family::Ip));
//! b.add_elements(Family::Ip, "lnet", "ports", &[Element::new(
//!     Concat::new().ipv4(Ipv4Addr::new(192, 0, 2, 1)).inet_proto(17).inet_service(8080).build(),
//! ).data(Concat::new().ipv4(Ipv4Addr::new(10, 0, 0, 2)).inet_service(80).build())]);
//! assert_eq!(b.len(), 5);
//! assert_eq!(describe(b.messages().next().unwrap()), "add table ip lnet");
//! ```

mod batch;
pub mod decode;
mod expr;
mod objects;
mod wire;

pub use batch::{Batch, describe};
pub use decode::{ChainInfo, DecodeError, RuleInfo, SetInfo};
pub use expr::{
    COMMENT_MAX_LEN, CmpOp, CtKey, Data, Expr, Field, MetaKey, NatKind, PayloadBase, Position, Reg,
    Rule, Verdict, ct_state, ct_status,
};
pub use objects::{
    Chain, ChainType, Concat, DataType, Element, ElementData, Hook, Policy, Set, SetData, set_flags,
};
pub use wire::{describe_attr, rejected_attr};

/// An nftables address family (`nfgen_family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `inet`: IPv4 and IPv6.
    Inet,
    /// `ip`: IPv4.
    Ip,
    /// `ip6`: IPv6.
    Ip6,
    /// `bridge`: frames crossing a Linux bridge. Its hooks have the same
    /// numbers as the inet ones ([`Hook::Forward`] is a frame forwarded
    /// from one bridge port to another).
    Bridge,
}

impl Family {
    /// The `NFPROTO_*` value.
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Inet => 1,
            Family::Ip => 2,
            Family::Ip6 => 10,
            Family::Bridge => 7,
        }
    }

    /// Inverse of [`Family::nfproto`].
    pub fn from_nfproto(v: u8) -> Option<Family> {
        match v {
            1 => Some(Family::Inet),
            2 => Some(Family::Ip),
            10 => Some(Family::Ip6),
            7 => Some(Family::Bridge),
            _ => None,
        }
    }

    /// The name `nft` uses.
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Bridge => "bridge",
        }
    }
}

/// Protocol constants from `linux/netfilter/nfnetlink.h` and
/// `linux/netfilter/nf_tables.h`.
pub mod sys {
    pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
    pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
    pub const NFNL_MSG_BATCH_END: u16 = 0x11;

    pub const NFT_MSG_NEWTABLE: u16 = 0;
    pub const NFT_MSG_GETTABLE: u16 = 1;
    pub const NFT_MSG_DELTABLE: u16 = 2;
    pub const NFT_MSG_NEWCHAIN: u16 = 3;
    pub const NFT_MSG_GETCHAIN: u16 = 4;
    pub const NFT_MSG_DELCHAIN: u16 = 5;
    pub const NFT_MSG_NEWRULE: u16 = 6;
    pub const NFT_MSG_GETRULE: u16 = 7;
    pub const NFT_MSG_DELRULE: u16 = 8;
    pub const NFT_MSG_NEWSET: u16 = 9;
    pub const NFT_MSG_GETSET: u16 = 10;
    pub const NFT_MSG_DELSET: u16 = 11;
    pub const NFT_MSG_NEWSETELEM: u16 = 12;
    pub const NFT_MSG_GETSETELEM: u16 = 13;
    pub const NFT_MSG_DELSETELEM: u16 = 14;
    // Linux 6.3+: like DEL*, but absence is not an error.
    pub const NFT_MSG_DESTROYTABLE: u16 = 26;
    pub const NFT_MSG_DESTROYCHAIN: u16 = 27;
    pub const NFT_MSG_DESTROYRULE: u16 = 28;
    pub const NFT_MSG_DESTROYSET: u16 = 29;
    pub const NFT_MSG_DESTROYSETELEM: u16 = 30;

    pub const NFTA_TABLE_NAME: u16 = 1;

    pub const NFTA_HOOK_HOOKNUM: u16 = 1;
    pub const NFTA_HOOK_PRIORITY: u16 = 2;

    pub const NFTA_CHAIN_TABLE: u16 = 1;
    pub const NFTA_CHAIN_NAME: u16 = 3;
    pub const NFTA_CHAIN_HOOK: u16 = 4;
    pub const NFTA_CHAIN_POLICY: u16 = 5;
    pub const NFTA_CHAIN_TYPE: u16 = 7;

    pub const NFTA_RULE_TABLE: u16 = 1;
    pub const NFTA_RULE_CHAIN: u16 = 2;
    pub const NFTA_RULE_HANDLE: u16 = 3;
    pub const NFTA_RULE_EXPRESSIONS: u16 = 4;
    pub const NFTA_RULE_POSITION: u16 = 6;
    pub const NFTA_RULE_USERDATA: u16 = 7;
    /// libnftnl's udata TLV type of a rule comment.
    pub const NFTNL_UDATA_RULE_COMMENT: u8 = 0;

    pub const NFTA_LIST_ELEM: u16 = 1;
    pub const NFTA_EXPR_NAME: u16 = 1;
    pub const NFTA_EXPR_DATA: u16 = 2;

    pub const NFTA_SET_TABLE: u16 = 1;
    pub const NFTA_SET_NAME: u16 = 2;
    pub const NFTA_SET_FLAGS: u16 = 3;
    pub const NFTA_SET_KEY_TYPE: u16 = 4;
    pub const NFTA_SET_KEY_LEN: u16 = 5;
    pub const NFTA_SET_DATA_TYPE: u16 = 6;
    pub const NFTA_SET_DATA_LEN: u16 = 7;
    pub const NFTA_SET_DESC: u16 = 9;
    pub const NFTA_SET_ID: u16 = 10;
    pub const NFTA_SET_USERDATA: u16 = 13;
    pub const NFTA_SET_DESC_CONCAT: u16 = 2;
    pub const NFTA_SET_FIELD_LEN: u16 = 1;

    pub const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
    pub const NFTA_SET_ELEM_LIST_SET: u16 = 2;
    pub const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
    pub const NFTA_SET_ELEM_KEY: u16 = 1;
    pub const NFTA_SET_ELEM_DATA: u16 = 2;
    pub const NFTA_SET_ELEM_FLAGS: u16 = 3;
    pub const NFTA_SET_ELEM_KEY_END: u16 = 10;
    pub const NFT_SET_ELEM_INTERVAL_END: u32 = 1;

    pub const NFTA_DATA_VALUE: u16 = 1;
    pub const NFTA_DATA_VERDICT: u16 = 2;
    pub const NFTA_VERDICT_CODE: u16 = 1;
    pub const NFTA_VERDICT_CHAIN: u16 = 2;
    /// `NFT_DATA_VERDICT`: the data type of verdict maps.
    pub const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

    pub const NFTA_META_DREG: u16 = 1;
    pub const NFTA_META_KEY: u16 = 2;
    pub const NFTA_PAYLOAD_DREG: u16 = 1;
    pub const NFTA_PAYLOAD_BASE: u16 = 2;
    pub const NFTA_PAYLOAD_OFFSET: u16 = 3;
    pub const NFTA_PAYLOAD_LEN: u16 = 4;
    pub const NFTA_PAYLOAD_SREG: u16 = 5;
    pub const NFTA_PAYLOAD_CSUM_TYPE: u16 = 6;
    pub const NFTA_PAYLOAD_CSUM_OFFSET: u16 = 7;
    /// `NFT_PAYLOAD_CSUM_INET`: the Internet checksum at `NFTA_PAYLOAD_CSUM_OFFSET`.
    pub const NFT_PAYLOAD_CSUM_INET: u32 = 1;
    pub const NFTA_CMP_SREG: u16 = 1;
    pub const NFTA_CMP_OP: u16 = 2;
    pub const NFTA_CMP_DATA: u16 = 3;
    pub const NFTA_BITWISE_SREG: u16 = 1;
    pub const NFTA_BITWISE_DREG: u16 = 2;
    pub const NFTA_BITWISE_LEN: u16 = 3;
    pub const NFTA_BITWISE_MASK: u16 = 4;
    pub const NFTA_BITWISE_XOR: u16 = 5;
    pub const NFTA_LOOKUP_SET: u16 = 1;
    pub const NFTA_LOOKUP_SREG: u16 = 2;
    pub const NFTA_LOOKUP_DREG: u16 = 3;
    pub const NFTA_LOOKUP_FLAGS: u16 = 5;
    pub const NFT_LOOKUP_F_INV: u32 = 1;
    pub const NFTA_IMMEDIATE_DREG: u16 = 1;
    pub const NFTA_IMMEDIATE_DATA: u16 = 2;
    pub const NFTA_CT_DREG: u16 = 1;
    pub const NFTA_CT_KEY: u16 = 2;
    pub const NFTA_NAT_TYPE: u16 = 1;
    pub const NFTA_NAT_FAMILY: u16 = 2;
    pub const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
    pub const NFTA_NAT_REG_ADDR_MAX: u16 = 4;
    pub const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
    pub const NFTA_NAT_REG_PROTO_MAX: u16 = 6;
    pub const NFTA_FIB_DREG: u16 = 1;
    pub const NFTA_FIB_RESULT: u16 = 2;
    pub const NFTA_FIB_FLAGS: u16 = 3;
    pub const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
    pub const NFTA_FIB_F_DADDR: u32 = 2;
}
