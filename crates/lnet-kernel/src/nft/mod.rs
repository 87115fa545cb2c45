//! nftables over netlink (`NETLINK_NETFILTER`, subsystem `nf_tables`),
//! spoken directly: no `nft` process, no libnftnl, nothing but the kernel.
//!
//! * [`NftSocket`] is a synchronous socket bound to one network namespace
//!   (like [`Netlink`](crate::Netlink)).
//! * [`Batch`] collects changes — tables, chains, sets and maps, set
//!   elements, rules — and [`NftSocket::commit`] sends them in **one**
//!   `send` as one transaction: the kernel applies all of it or none of it.
//!   Every message asks for an ACK; a failure names the message that failed
//!   (matched by sequence number) with errno, the kernel's extack text and,
//!   since nf_tables mostly points at the attribute it rejected instead of
//!   explaining, that attribute.
//! * The messages themselves — [`Batch`], [`Rule`], [`Expr`], [`Set`],
//!   [`Element`] and the decoders of what the kernel reports — are the
//!   pure codec of the `lnet-nft` crate, re-exported here unchanged.
//! * [`Rule`] is a typed builder for rule expressions ([`Expr`]);
//!   [`NftSocket::rules`], [`NftSocket::set_elements`], [`NftSocket::tables`],
//!   [`NftSocket::chains`] and [`NftSocket::sets`] read back what is
//!   programmed, rules decoded into the same [`Expr`] values the builder
//!   makes, so "what is there" can be compared with "what should be there".
//! * Tables of the `ip`, `ip6`, `inet` and `bridge` families ([`Family`]).
//!   Rules can carry a comment ([`Rule::comment`], in the format `nft`
//!   prints), which is how a rule lnet adds to a chain it does not own
//!   (say `ip filter FORWARD`, made by iptables-nft or an admin, added with
//!   [`Position::Prepend`]) is found again by [`NftSocket::rules`] and
//!   deleted by handle, leaving the rest of that chain alone.
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
//! ```no_run
//! use std::net::Ipv4Addr;
//! use lnet_kernel::nft::*;
//! # fn main() -> lnet_kernel::Result<()> {
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
//! NftSocket::new()?.commit(&b)?;
//! # Ok(()) }
//! ```

mod list;
mod socket;

pub(crate) use lnet_nft::sys;
pub use lnet_nft::{
    Batch, COMMENT_MAX_LEN, Chain, ChainInfo, ChainType, CmpOp, Concat, CtKey, Data, DataType,
    DecodeError, Element, ElementData, Expr, Family, Field, Hook, MetaKey, NatKind, PayloadBase,
    Policy, Position, Reg, Rule, RuleInfo, Set, SetData, SetInfo, Verdict, ct_state, ct_status,
    decode, set_flags,
};
pub use socket::NftSocket;
