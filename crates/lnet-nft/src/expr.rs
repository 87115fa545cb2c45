//! Rule expressions and the [`Rule`] builder.
//!
//! An nf_tables rule is a list of expressions run in order over a small
//! register file: loads (`meta`, `payload`, `ct`, `fib`) fill registers,
//! `cmp`/`lookup` end the rule when they do not match, and verdicts or
//! statements (`nat`, `counter`) act. [`Expr`] mirrors the kernel's
//! expressions one to one (so a dumped rule decodes into the same values a
//! rule was built from); [`Rule`]'s methods combine them into the usual
//! `nft` idioms.

use std::net::IpAddr;

use ipnet::IpNet;
use lnet_nla::flags::{NLM_F_APPEND, NLM_F_CREATE};

use crate::Family;
use crate::batch::Batch;
use crate::objects::ifname_bytes;
use crate::sys::*;
use crate::wire::{Checked, Nests, NlaError, Writer};

/// A register: the verdict register, or one of the sixteen 32-bit data
/// registers. Values wider than 4 bytes occupy consecutive registers
/// (`R32(0)` for an IPv6 address covers `R32(0)..=R32(3)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reg {
    /// `NFT_REG_VERDICT`: a lookup into a verdict map writes here.
    Verdict,
    /// `NFT_REG32_00 + n`, `n` in `0..16`.
    R32(u8),
}

impl Reg {
    fn encode(self) -> u32 {
        match self {
            Reg::Verdict => 0,
            Reg::R32(n) => 8 + u32::from(n),
        }
    }

    /// The kernel dumps registers that start a 16-byte register in the
    /// legacy numbering (`NFT_REG_1..4`), the others as `NFT_REG32_*`.
    fn decode(v: u32) -> Reg {
        match v {
            0 => Reg::Verdict,
            1..=4 => Reg::R32(((v - 1) * 4) as u8),
            _ => Reg::R32(v.saturating_sub(8) as u8),
        }
    }
}

/// A verdict.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `continue`: go on with the next rule.
    Continue,
    /// `return` to the calling chain.
    Return,
    /// `jump` to a chain (and come back).
    Jump(String),
    /// `goto` a chain (no coming back).
    Goto(String),
}

impl Verdict {
    fn code(&self) -> i32 {
        match self {
            Verdict::Accept => 1,
            Verdict::Drop => 0,
            Verdict::Continue => -1,
            Verdict::Jump(_) => -3,
            Verdict::Goto(_) => -4,
            Verdict::Return => -5,
        }
    }

    fn decode(a: &Checked<'_>) -> Option<Verdict> {
        let code = a.get(NFTA_VERDICT_CODE)?.be32()? as i32;
        let chain = || a.get(NFTA_VERDICT_CHAIN).map(|c| c.string());
        Some(match code {
            1 => Verdict::Accept,
            0 => Verdict::Drop,
            -1 => Verdict::Continue,
            -3 => Verdict::Jump(chain()?),
            -4 => Verdict::Goto(chain()?),
            -5 => Verdict::Return,
            _ => return None,
        })
    }
}

/// Data: a value (register contents) or a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Data {
    /// Raw bytes.
    Value(Vec<u8>),
    /// A verdict.
    Verdict(Verdict),
}

/// `meta` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaKey {
    /// `meta mark`, 4 bytes host order.
    Mark,
    /// `meta iif`: input interface index, 4 bytes host order.
    Iif,
    /// `meta oif`: output interface index.
    Oif,
    /// `meta iifname`: 16 bytes NUL-padded.
    IifName,
    /// `meta oifname`.
    OifName,
    /// `meta nfproto`: 1 byte (`NFPROTO_IPV4` = 2, `NFPROTO_IPV6` = 10).
    NfProto,
    /// `meta l4proto`: 1 byte.
    L4Proto,
    /// `meta ibrname`: the name of the bridge a frame came in through
    /// (the port's master), 16 bytes NUL-padded. Bridge family only.
    BriIifName,
    /// `meta obrname`: the name of the bridge a frame goes out through.
    BriOifName,
    /// Any other `NFT_META_*` key.
    Other(u32),
}

impl MetaKey {
    fn encode(self) -> u32 {
        match self {
            MetaKey::Mark => 3,
            MetaKey::Iif => 4,
            MetaKey::Oif => 5,
            MetaKey::IifName => 6,
            MetaKey::OifName => 7,
            MetaKey::NfProto => 15,
            MetaKey::L4Proto => 16,
            MetaKey::BriIifName => 17,
            MetaKey::BriOifName => 18,
            MetaKey::Other(k) => k,
        }
    }

    fn decode(v: u32) -> MetaKey {
        match v {
            3 => MetaKey::Mark,
            4 => MetaKey::Iif,
            5 => MetaKey::Oif,
            6 => MetaKey::IifName,
            7 => MetaKey::OifName,
            15 => MetaKey::NfProto,
            16 => MetaKey::L4Proto,
            17 => MetaKey::BriIifName,
            18 => MetaKey::BriOifName,
            k => MetaKey::Other(k),
        }
    }
}

/// Which header a `payload` offset counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadBase {
    /// Link layer.
    LinkLayer,
    /// Network header (IPv4/IPv6).
    Network,
    /// Transport header (TCP/UDP/...).
    Transport,
}

impl PayloadBase {
    fn encode(self) -> u32 {
        match self {
            PayloadBase::LinkLayer => 0,
            PayloadBase::Network => 1,
            PayloadBase::Transport => 2,
        }
    }

    fn decode(v: u32) -> Option<PayloadBase> {
        Some(match v {
            0 => PayloadBase::LinkLayer,
            1 => PayloadBase::Network,
            2 => PayloadBase::Transport,
            _ => return None,
        })
    }
}

/// `cmp` operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `==`.
    Eq,
    /// `!=`.
    Neq,
}

/// `ct` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtKey {
    /// `ct state`: a bit mask, see [`ct_state`].
    State,
    /// `ct status`: a bit mask, see [`ct_status`].
    Status,
    /// Any other `NFT_CT_*` key.
    Other(u32),
}

/// `ct state` bits (host order, 4 bytes).
pub mod ct_state {
    /// Invalid.
    pub const INVALID: u32 = 1;
    /// Established.
    pub const ESTABLISHED: u32 = 2;
    /// Related.
    pub const RELATED: u32 = 4;
    /// New.
    pub const NEW: u32 = 8;
    /// Untracked.
    pub const UNTRACKED: u32 = 64;
}

/// `ct status` bits (`IPS_*` of `linux/netfilter/nf_conntrack_common.h`,
/// host order, 4 bytes).
pub mod ct_status {
    /// `IPS_EXPECTED`: the connection is an expected one (a helper's).
    pub const EXPECTED: u32 = 1;
    /// `IPS_SEEN_REPLY`: packets went both ways.
    pub const SEEN_REPLY: u32 = 1 << 1;
    /// `IPS_ASSURED`: the connection will not be dropped early.
    pub const ASSURED: u32 = 1 << 2;
    /// `IPS_CONFIRMED`: the entry is in the conntrack table.
    pub const CONFIRMED: u32 = 1 << 3;
    /// `IPS_SRC_NAT`: the source was translated (`ct status snat`).
    pub const SNAT: u32 = 1 << 4;
    /// `IPS_DST_NAT`: the destination was translated (`ct status dnat`).
    pub const DNAT: u32 = 1 << 5;
}

/// `nat` kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// Source NAT.
    Snat,
    /// Destination NAT.
    Dnat,
}

/// One nf_tables expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// Load packet metadata into `dreg`.
    Meta {
        /// What to load.
        key: MetaKey,
        /// Destination register.
        dreg: Reg,
    },
    /// Load `len` bytes at `offset` of a header into `dreg`.
    Payload {
        /// Header the offset counts from.
        base: PayloadBase,
        /// Byte offset.
        offset: u32,
        /// Byte count.
        len: u32,
        /// Destination register.
        dreg: Reg,
    },
    /// Write `len` bytes of `sreg` at `offset` of a header, updating the Internet checksum
    /// at `csum_offset` (of the same header) when given.
    PayloadSet {
        /// Header the offset counts from.
        base: PayloadBase,
        /// Byte offset.
        offset: u32,
        /// Byte count.
        len: u32,
        /// Source register.
        sreg: Reg,
        /// Offset of the checksum to update, if any.
        csum_offset: Option<u32>,
    },
    /// Compare `data.len()` bytes of `sreg`; the rule stops if false.
    Cmp {
        /// Source register.
        sreg: Reg,
        /// Operator.
        op: CmpOp,
        /// Bytes to compare with.
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor`, over `mask.len()` bytes.
    Bitwise {
        /// Source register.
        sreg: Reg,
        /// Destination register.
        dreg: Reg,
        /// Mask.
        mask: Vec<u8>,
        /// Xor (same length as the mask).
        xor: Vec<u8>,
    },
    /// Look the key in `sreg...` up in a set; for maps write the value to
    /// `dreg` (the verdict register for verdict maps).
    Lookup {
        /// Set name.
        set: String,
        /// First register of the key.
        sreg: Reg,
        /// Where a map's value goes.
        dreg: Option<Reg>,
        /// Match when the key is *not* in the set.
        invert: bool,
    },
    /// Load a constant or set a verdict (`dreg` = [`Reg::Verdict`]).
    Immediate {
        /// Destination register.
        dreg: Reg,
        /// The constant or verdict.
        data: Data,
    },
    /// Load conntrack information into `dreg`.
    Ct {
        /// What to load.
        key: CtKey,
        /// Destination register.
        dreg: Reg,
    },
    /// Source or destination NAT to the address (and port) in registers.
    Nat {
        /// snat or dnat.
        kind: NatKind,
        /// Address family of the addresses (`ip` or `ip6`).
        family: Family,
        /// Register holding the address.
        addr: Option<Reg>,
        /// Register holding the port (2 bytes, network order).
        proto: Option<Reg>,
    },
    /// Masquerade (snat to the address of the output interface).
    Masq,
    /// `fib daddr type`: the routing type of the destination address
    /// (4 bytes host order, `RTN_LOCAL` = 2) into `dreg`.
    FibDaddrType {
        /// Destination register.
        dreg: Reg,
    },
    /// Count packets and bytes.
    Counter,
    /// An expression this crate does not decode (read back only).
    Other {
        /// Expression name.
        name: String,
    },
}

fn put_reg(w: &mut Writer, ty: u16, r: Reg) {
    w.be32(ty, r.encode());
}

pub(crate) fn put_data_value(w: &mut Writer, v: &[u8]) {
    w.bytes(NFTA_DATA_VALUE, v);
}

pub(crate) fn put_verdict(w: &mut Writer, v: &Verdict) {
    w.nest(NFTA_DATA_VERDICT);
    w.be32(NFTA_VERDICT_CODE, v.code() as u32);
    if let Verdict::Jump(c) | Verdict::Goto(c) = v {
        w.str(NFTA_VERDICT_CHAIN, c);
    }
    w.end_nest();
}

/// Decode the `NFTA_DATA_*` nest `a`.
pub(crate) fn decode_data(nests: &Nests, a: lnet_nla::Attr<'_>) -> Option<Data> {
    let a = nests.open(a)?;
    if let Some(v) = a.get(NFTA_DATA_VALUE) {
        return Some(Data::Value(v.value().to_vec()));
    }
    Verdict::decode(&nests.open(a.get(NFTA_DATA_VERDICT)?)?).map(Data::Verdict)
}

impl Expr {
    fn name(&self) -> &str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Payload { .. } | Expr::PayloadSet { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Lookup { .. } => "lookup",
            Expr::Immediate { .. } => "immediate",
            Expr::Ct { .. } => "ct",
            Expr::Nat { .. } => "nat",
            Expr::Masq => "masq",
            Expr::FibDaddrType { .. } => "fib",
            Expr::Counter => "counter",
            Expr::Other { name } => name,
        }
    }

    /// Append as `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA {...} }`.
    fn encode(&self, w: &mut Writer) {
        w.nest(NFTA_LIST_ELEM);
        w.str(NFTA_EXPR_NAME, self.name());
        w.nest(NFTA_EXPR_DATA);
        match self {
            Expr::Meta { key, dreg } => {
                put_reg(w, NFTA_META_DREG, *dreg);
                w.be32(NFTA_META_KEY, key.encode());
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                put_reg(w, NFTA_PAYLOAD_DREG, *dreg);
                w.be32(NFTA_PAYLOAD_BASE, base.encode());
                w.be32(NFTA_PAYLOAD_OFFSET, *offset);
                w.be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::PayloadSet {
                base,
                offset,
                len,
                sreg,
                csum_offset,
            } => {
                put_reg(w, NFTA_PAYLOAD_SREG, *sreg);
                w.be32(NFTA_PAYLOAD_BASE, base.encode());
                w.be32(NFTA_PAYLOAD_OFFSET, *offset);
                w.be32(NFTA_PAYLOAD_LEN, *len);
                if let Some(at) = csum_offset {
                    w.be32(NFTA_PAYLOAD_CSUM_TYPE, NFT_PAYLOAD_CSUM_INET);
                    w.be32(NFTA_PAYLOAD_CSUM_OFFSET, *at);
                }
            }
            Expr::Cmp { sreg, op, data } => {
                put_reg(w, NFTA_CMP_SREG, *sreg);
                w.be32(
                    NFTA_CMP_OP,
                    match op {
                        CmpOp::Eq => 0,
                        CmpOp::Neq => 1,
                    },
                );
                w.nest(NFTA_CMP_DATA);
                put_data_value(w, data);
                w.end_nest();
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                put_reg(w, NFTA_BITWISE_SREG, *sreg);
                put_reg(w, NFTA_BITWISE_DREG, *dreg);
                w.be32(NFTA_BITWISE_LEN, mask.len() as u32);
                w.nest(NFTA_BITWISE_MASK);
                put_data_value(w, mask);
                w.end_nest();
                w.nest(NFTA_BITWISE_XOR);
                put_data_value(w, xor);
                w.end_nest();
            }
            Expr::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                w.str(NFTA_LOOKUP_SET, set);
                put_reg(w, NFTA_LOOKUP_SREG, *sreg);
                if let Some(d) = dreg {
                    put_reg(w, NFTA_LOOKUP_DREG, *d);
                }
                if *invert {
                    w.be32(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
                }
            }
            Expr::Immediate { dreg, data } => {
                put_reg(w, NFTA_IMMEDIATE_DREG, *dreg);
                w.nest(NFTA_IMMEDIATE_DATA);
                match data {
                    Data::Value(v) => put_data_value(w, v),
                    Data::Verdict(v) => put_verdict(w, v),
                }
                w.end_nest();
            }
            Expr::Ct { key, dreg } => {
                put_reg(w, NFTA_CT_DREG, *dreg);
                w.be32(
                    NFTA_CT_KEY,
                    match key {
                        CtKey::State => 0,
                        CtKey::Status => 2,
                        CtKey::Other(k) => *k,
                    },
                );
            }
            Expr::Nat {
                kind,
                family,
                addr,
                proto,
            } => {
                w.be32(
                    NFTA_NAT_TYPE,
                    match kind {
                        NatKind::Snat => 0,
                        NatKind::Dnat => 1,
                    },
                );
                w.be32(NFTA_NAT_FAMILY, u32::from(family.nfproto()));
                // Only the range minimum: the kernel uses it as maximum too.
                if let Some(a) = addr {
                    put_reg(w, NFTA_NAT_REG_ADDR_MIN, *a);
                }
                if let Some(p) = proto {
                    put_reg(w, NFTA_NAT_REG_PROTO_MIN, *p);
                }
            }
            Expr::FibDaddrType { dreg } => {
                put_reg(w, NFTA_FIB_DREG, *dreg);
                w.be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
                w.be32(NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR);
            }
            Expr::Masq | Expr::Counter | Expr::Other { .. } => {}
        }
        w.end_nest();
        w.end_nest();
    }

    /// Decode one `NFTA_LIST_ELEM` of `NFTA_RULE_EXPRESSIONS`: an
    /// expression this crate does not model, or one whose attributes it
    /// does not understand, is [`Expr::Other`]; one whose attributes are
    /// malformed is an error.
    pub(crate) fn decode(elem: &Checked<'_>) -> Result<Expr, NlaError> {
        let name = elem
            .get(NFTA_EXPR_NAME)
            .map(|a| a.string())
            .unwrap_or_default();
        let nests = Nests::default();
        let decoded = elem
            .get(NFTA_EXPR_DATA)
            .and_then(|d| nests.open(d))
            .and_then(|d| Expr::decode_data(&nests, &name, &d));
        nests.finish(decoded.unwrap_or(Expr::Other { name }))
    }

    fn decode_data(nests: &Nests, name: &str, d: &Checked<'_>) -> Option<Expr> {
        let u = |t| d.get(t).and_then(|a| a.be32());
        let reg = |t| u(t).map(Reg::decode);
        let value = |t| match decode_data(nests, d.get(t)?)? {
            Data::Value(v) => Some(v),
            Data::Verdict(_) => None,
        };
        Some(match name {
            "meta" => Expr::Meta {
                key: MetaKey::decode(u(NFTA_META_KEY)?),
                dreg: reg(NFTA_META_DREG)?,
            },
            "payload" if d.get(NFTA_PAYLOAD_SREG).is_some() => Expr::PayloadSet {
                base: PayloadBase::decode(u(NFTA_PAYLOAD_BASE)?)?,
                offset: u(NFTA_PAYLOAD_OFFSET)?,
                len: u(NFTA_PAYLOAD_LEN)?,
                sreg: reg(NFTA_PAYLOAD_SREG)?,
                csum_offset: (u(NFTA_PAYLOAD_CSUM_TYPE) == Some(NFT_PAYLOAD_CSUM_INET))
                    .then(|| u(NFTA_PAYLOAD_CSUM_OFFSET))
                    .flatten(),
            },
            "payload" => Expr::Payload {
                base: PayloadBase::decode(u(NFTA_PAYLOAD_BASE)?)?,
                offset: u(NFTA_PAYLOAD_OFFSET)?,
                len: u(NFTA_PAYLOAD_LEN)?,
                dreg: reg(NFTA_PAYLOAD_DREG)?,
            },
            "cmp" => Expr::Cmp {
                sreg: reg(NFTA_CMP_SREG)?,
                op: match u(NFTA_CMP_OP)? {
                    0 => CmpOp::Eq,
                    1 => CmpOp::Neq,
                    _ => return None,
                },
                data: value(NFTA_CMP_DATA)?,
            },
            "bitwise" => Expr::Bitwise {
                sreg: reg(NFTA_BITWISE_SREG)?,
                dreg: reg(NFTA_BITWISE_DREG)?,
                mask: value(NFTA_BITWISE_MASK)?,
                xor: value(NFTA_BITWISE_XOR)?,
            },
            "lookup" => Expr::Lookup {
                set: d.get(NFTA_LOOKUP_SET)?.string(),
                sreg: reg(NFTA_LOOKUP_SREG)?,
                dreg: reg(NFTA_LOOKUP_DREG),
                invert: u(NFTA_LOOKUP_FLAGS).unwrap_or(0) & NFT_LOOKUP_F_INV != 0,
            },
            "immediate" => Expr::Immediate {
                dreg: reg(NFTA_IMMEDIATE_DREG)?,
                data: decode_data(nests, d.get(NFTA_IMMEDIATE_DATA)?)?,
            },
            "ct" => Expr::Ct {
                key: match u(NFTA_CT_KEY)? {
                    0 => CtKey::State,
                    2 => CtKey::Status,
                    k => CtKey::Other(k),
                },
                dreg: reg(NFTA_CT_DREG)?,
            },
            "nat" => Expr::Nat {
                kind: match u(NFTA_NAT_TYPE)? {
                    0 => NatKind::Snat,
                    1 => NatKind::Dnat,
                    _ => return None,
                },
                family: Family::from_nfproto(u(NFTA_NAT_FAMILY)? as u8)?,
                addr: reg(NFTA_NAT_REG_ADDR_MIN),
                proto: reg(NFTA_NAT_REG_PROTO_MIN),
            },
            "masq" => Expr::Masq,
            "counter" => Expr::Counter,
            "fib"
                if u(NFTA_FIB_RESULT)? == NFT_FIB_RESULT_ADDRTYPE
                    && u(NFTA_FIB_FLAGS)? == NFTA_FIB_F_DADDR =>
            {
                Expr::FibDaddrType {
                    dreg: reg(NFTA_FIB_DREG)?,
                }
            }
            _ => return None,
        })
    }
}

/// A packet field a rule can load, alone or as part of a concatenation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `ip saddr`.
    IpSaddr,
    /// `ip daddr`.
    IpDaddr,
    /// `ip6 saddr`.
    Ip6Saddr,
    /// `ip6 daddr`.
    Ip6Daddr,
    /// `meta l4proto`.
    L4Proto,
    /// `th sport` (transport header source port).
    ThSport,
    /// `th dport`.
    ThDport,
    /// `meta iifname`.
    IifName,
    /// `meta oifname`.
    OifName,
    /// `meta iif`.
    Iif,
    /// `meta oif`.
    Oif,
    /// `meta ibrname` (bridge family): the bridge a frame came in through.
    BriIifName,
    /// `meta obrname` (bridge family): the bridge a frame goes out through.
    BriOifName,
    /// `meta nfproto`: the packet's family in an `inet` table (1 byte).
    NfProto,
}

impl Field {
    /// The expression loading this field into `dreg`.
    pub fn load(self, dreg: Reg) -> Expr {
        let payload = |base, offset, len| Expr::Payload {
            base,
            offset,
            len,
            dreg,
        };
        let meta = |key| Expr::Meta { key, dreg };
        match self {
            Field::IpSaddr => payload(PayloadBase::Network, 12, 4),
            Field::IpDaddr => payload(PayloadBase::Network, 16, 4),
            Field::Ip6Saddr => payload(PayloadBase::Network, 8, 16),
            Field::Ip6Daddr => payload(PayloadBase::Network, 24, 16),
            Field::ThSport => payload(PayloadBase::Transport, 0, 2),
            Field::ThDport => payload(PayloadBase::Transport, 2, 2),
            Field::L4Proto => meta(MetaKey::L4Proto),
            Field::IifName => meta(MetaKey::IifName),
            Field::OifName => meta(MetaKey::OifName),
            Field::Iif => meta(MetaKey::Iif),
            Field::Oif => meta(MetaKey::Oif),
            Field::BriIifName => meta(MetaKey::BriIifName),
            Field::BriOifName => meta(MetaKey::BriOifName),
            Field::NfProto => meta(MetaKey::NfProto),
        }
    }

    /// Number of 32-bit registers the field occupies.
    fn regs(self) -> u8 {
        match self {
            Field::Ip6Saddr
            | Field::Ip6Daddr
            | Field::IifName
            | Field::OifName
            | Field::BriIifName
            | Field::BriOifName => 4,
            _ => 1,
        }
    }
}

/// Where [`Batch::add_rule`] puts a rule in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Position {
    /// At the end (`nft add rule`).
    #[default]
    Append,
    /// At the beginning (`nft insert rule`).
    Prepend,
    /// Right after the rule with this handle.
    After(u64),
    /// Right before the rule with this handle.
    Before(u64),
}

/// A rule under construction, for [`Batch::add_rule`].
///
/// Matches come first, then statements and a verdict:
///
/// ```
/// use lnet_nft::{Family, Field, Rule};
/// let r = Rule::new(Family::Ip, "lnet", "pre")
///     .iifname("br-x")
///     .fib_daddr_local()
///     .dnat_map(&[Field::IpDaddr, Field::L4Proto, Field::ThDport], "ports", Family::Ip);
/// assert!(r.exprs().len() > 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    family: Family,
    table: String,
    chain: String,
    position: Position,
    exprs: Vec<Expr>,
    comment: Option<String>,
}

/// The longest rule comment, in bytes (without the terminating NUL), that
/// [`Rule::comment`] keeps: `nft`'s limit (`NFTNL_UDATA_COMMENT_MAXLEN`).
pub const COMMENT_MAX_LEN: usize = 128;

const R0: Reg = Reg::R32(0);

impl Rule {
    /// An empty rule (matches everything, does nothing) for `chain`.
    pub fn new(family: Family, table: &str, chain: &str) -> Rule {
        Rule {
            family,
            table: table.to_string(),
            chain: chain.to_string(),
            position: Position::Append,
            exprs: Vec::new(),
            comment: None,
        }
    }

    /// The expressions so far.
    pub fn exprs(&self) -> &[Expr] {
        &self.exprs
    }

    /// The comment set with [`Rule::comment`].
    pub fn comment_text(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// Attach a comment (`nft` prints `comment "text"`; read back as
    /// [`RuleInfo::comment`](crate::RuleInfo::comment)), so a rule in a
    /// chain lnet does not own can be found again. `nft` refuses comments
    /// longer than [`COMMENT_MAX_LEN`] bytes; rather than fail, a longer
    /// text is cut to the longest prefix of at most that many bytes that
    /// ends on a character boundary, and a text with a NUL byte is cut at
    /// the NUL (it would end the string on the wire anyway). Check
    /// [`Rule::comment_text`] when the exact text matters (e.g. to find
    /// the rule again by it).
    pub fn comment(mut self, text: &str) -> Rule {
        let text = text.split('\0').next().unwrap_or_default();
        let mut end = text.len().min(COMMENT_MAX_LEN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.comment = Some(text[..end].to_string());
        self
    }

    /// Where the rule goes (default: appended).
    pub fn position(mut self, p: Position) -> Rule {
        self.position = p;
        self
    }

    /// Append a raw expression.
    pub fn expr(mut self, e: Expr) -> Rule {
        self.exprs.push(e);
        self
    }

    /// Load `fields` into consecutive 32-bit registers from `R32(0)`, the
    /// layout of a concatenated key; returns the number of registers used.
    fn load(&mut self, fields: &[Field]) -> u8 {
        let mut r = 0;
        for f in fields {
            self.exprs.push(f.load(Reg::R32(r)));
            r += f.regs();
        }
        r
    }

    /// Match `field op value` (value bytes as the field holds them).
    pub fn cmp(mut self, field: Field, op: CmpOp, value: &[u8]) -> Rule {
        self.load(&[field]);
        self.expr(Expr::Cmp {
            sreg: R0,
            op,
            data: value.to_vec(),
        })
    }

    /// `meta iifname "name"`.
    pub fn iifname(self, name: &str) -> Rule {
        self.cmp(Field::IifName, CmpOp::Eq, &ifname_bytes(name))
    }

    /// `meta iifname != "name"`.
    pub fn iifname_not(self, name: &str) -> Rule {
        self.cmp(Field::IifName, CmpOp::Neq, &ifname_bytes(name))
    }

    /// `meta oifname "name"`.
    pub fn oifname(self, name: &str) -> Rule {
        self.cmp(Field::OifName, CmpOp::Eq, &ifname_bytes(name))
    }

    /// `meta oifname != "name"`.
    pub fn oifname_not(self, name: &str) -> Rule {
        self.cmp(Field::OifName, CmpOp::Neq, &ifname_bytes(name))
    }

    /// `meta iif index`.
    pub fn iif(self, index: u32) -> Rule {
        self.cmp(Field::Iif, CmpOp::Eq, &index.to_ne_bytes())
    }

    /// `meta oif index`.
    pub fn oif(self, index: u32) -> Rule {
        self.cmp(Field::Oif, CmpOp::Eq, &index.to_ne_bytes())
    }

    /// `meta l4proto proto` (6 = tcp, 17 = udp).
    pub fn l4proto(self, proto: u8) -> Rule {
        self.cmp(Field::L4Proto, CmpOp::Eq, &[proto])
    }

    /// `meta nfproto ipv4|ipv6`: needed before `ip`/`ip6` matches in an
    /// `inet` table.
    pub fn nfproto(self, family: Family) -> Rule {
        self.cmp(Field::NfProto, CmpOp::Eq, &[family.nfproto()])
    }

    /// `th dport port`.
    pub fn dport(self, port: u16) -> Rule {
        self.cmp(Field::ThDport, CmpOp::Eq, &port.to_be_bytes())
    }

    /// `th sport port`.
    pub fn sport(self, port: u16) -> Rule {
        self.cmp(Field::ThSport, CmpOp::Eq, &port.to_be_bytes())
    }

    /// Rewrites the transport source (`dest` false) or destination port of a `proto`
    /// (TCP or UDP) packet to `port`, with its checksum: stateless, no conntrack.
    pub fn set_port(mut self, proto: u8, dest: bool, port: u16) -> Rule {
        self.exprs.push(Expr::Immediate {
            dreg: R0,
            data: Data::Value(port.to_be_bytes().to_vec()),
        });
        self.expr(Expr::PayloadSet {
            base: PayloadBase::Transport,
            offset: if dest { 2 } else { 0 },
            len: 2,
            sreg: R0,
            // Where TCP's and UDP's checksums are.
            csum_offset: Some(if proto == 6 { 16 } else { 6 }),
        })
    }

    fn addr_match(mut self, v4: Field, v6: Field, net: IpNet, op: CmpOp) -> Rule {
        let (field, addr) = match net.network() {
            IpAddr::V4(a) => (v4, a.octets().to_vec()),
            IpAddr::V6(a) => (v6, a.octets().to_vec()),
        };
        self.load(&[field]);
        if net.prefix_len() < net.max_prefix_len() {
            let mask = match net.netmask() {
                IpAddr::V4(m) => m.octets().to_vec(),
                IpAddr::V6(m) => m.octets().to_vec(),
            };
            let xor = vec![0; mask.len()];
            self.exprs.push(Expr::Bitwise {
                sreg: R0,
                dreg: R0,
                mask,
                xor,
            });
        }
        self.expr(Expr::Cmp {
            sreg: R0,
            op,
            data: addr,
        })
    }

    /// `ip[6] saddr net` (prefix or single address).
    pub fn saddr_in(self, net: IpNet) -> Rule {
        self.addr_match(Field::IpSaddr, Field::Ip6Saddr, net, CmpOp::Eq)
    }

    /// `ip[6] saddr != net`.
    pub fn saddr_not_in(self, net: IpNet) -> Rule {
        self.addr_match(Field::IpSaddr, Field::Ip6Saddr, net, CmpOp::Neq)
    }

    /// `ip[6] daddr net`.
    pub fn daddr_in(self, net: IpNet) -> Rule {
        self.addr_match(Field::IpDaddr, Field::Ip6Daddr, net, CmpOp::Eq)
    }

    /// `ip[6] daddr != net`.
    pub fn daddr_not_in(self, net: IpNet) -> Rule {
        self.addr_match(Field::IpDaddr, Field::Ip6Daddr, net, CmpOp::Neq)
    }

    /// `a . b . c @set`: the key is in the set.
    pub fn in_set(mut self, key: &[Field], set: &str) -> Rule {
        self.load(key);
        self.expr(Expr::Lookup {
            set: set.into(),
            sreg: R0,
            dreg: None,
            invert: false,
        })
    }

    /// `a . b . c != @set`: the key is not in the set.
    pub fn not_in_set(mut self, key: &[Field], set: &str) -> Rule {
        self.load(key);
        self.expr(Expr::Lookup {
            set: set.into(),
            sreg: R0,
            dreg: None,
            invert: true,
        })
    }

    /// `a . b . c vmap @map`: the verdict comes from a verdict map (no
    /// match: the rule does nothing).
    pub fn vmap(mut self, key: &[Field], map: &str) -> Rule {
        self.load(key);
        self.expr(Expr::Lookup {
            set: map.into(),
            sreg: R0,
            dreg: Some(Reg::Verdict),
            invert: false,
        })
    }

    /// `dnat ip to a . b . c map @map`: the map's value is an address
    /// followed by a port (`ipv4_addr . inet_service`, or `ipv6_addr .
    /// inet_service` for `family` [`Family::Ip6`]).
    pub fn dnat_map(self, key: &[Field], map: &str, family: Family) -> Rule {
        self.nat_map(NatKind::Dnat, key, map, family, true)
    }

    /// `snat ip to a . b . c map @map`: the map's value is an address only
    /// (`ipv4_addr`, or `ipv6_addr` for `family` [`Family::Ip6`]), e.g. the
    /// source address to use per input interface.
    pub fn snat_map(self, key: &[Field], map: &str, family: Family) -> Rule {
        self.nat_map(NatKind::Snat, key, map, family, false)
    }

    /// Look the key up in `map` (the value lands in the registers from
    /// `R32(0)`, over the key) and NAT to the address there, and to the
    /// port right after it when `with_port`.
    fn nat_map(
        mut self,
        kind: NatKind,
        key: &[Field],
        map: &str,
        family: Family,
        with_port: bool,
    ) -> Rule {
        self.load(key);
        let port_reg = if family == Family::Ip6 { 4 } else { 1 };
        self.exprs.push(Expr::Lookup {
            set: map.into(),
            sreg: R0,
            dreg: Some(R0),
            invert: false,
        });
        self.expr(Expr::Nat {
            kind,
            family,
            addr: Some(R0),
            proto: with_port.then_some(Reg::R32(port_reg)),
        })
    }

    fn nat_to(mut self, kind: NatKind, addr: IpAddr, port: Option<u16>) -> Rule {
        let (family, bytes, port_reg) = match addr {
            IpAddr::V4(a) => (Family::Ip, a.octets().to_vec(), 1),
            IpAddr::V6(a) => (Family::Ip6, a.octets().to_vec(), 4),
        };
        self.exprs.push(Expr::Immediate {
            dreg: R0,
            data: Data::Value(bytes),
        });
        if let Some(p) = port {
            self.exprs.push(Expr::Immediate {
                dreg: Reg::R32(port_reg),
                data: Data::Value(p.to_be_bytes().to_vec()),
            });
        }
        self.expr(Expr::Nat {
            kind,
            family,
            addr: Some(R0),
            proto: port.map(|_| Reg::R32(port_reg)),
        })
    }

    /// `dnat to addr[:port]`.
    pub fn dnat_to(self, addr: IpAddr, port: Option<u16>) -> Rule {
        self.nat_to(NatKind::Dnat, addr, port)
    }

    /// `snat to addr[:port]`.
    pub fn snat_to(self, addr: IpAddr, port: Option<u16>) -> Rule {
        self.nat_to(NatKind::Snat, addr, port)
    }

    /// `masquerade`.
    pub fn masquerade(self) -> Rule {
        self.expr(Expr::Masq)
    }

    /// `ct state` is one of the bits in `mask` (see [`ct_state`]).
    pub fn ct_state(self, mask: u32) -> Rule {
        self.ct_bits(CtKey::State, mask)
    }

    /// `ct status` has one of the bits in `mask` (see [`ct_status`]), e.g.
    /// `ct status dnat` for connections whose destination was translated.
    pub fn ct_status(self, mask: u32) -> Rule {
        self.ct_bits(CtKey::Status, mask)
    }

    /// `ct <key> & mask != 0`.
    fn ct_bits(mut self, key: CtKey, mask: u32) -> Rule {
        self.exprs.push(Expr::Ct { key, dreg: R0 });
        self.exprs.push(Expr::Bitwise {
            sreg: R0,
            dreg: R0,
            mask: mask.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        });
        self.expr(Expr::Cmp {
            sreg: R0,
            op: CmpOp::Neq,
            data: vec![0; 4],
        })
    }

    /// `fib daddr type local`: the destination is an address of this host.
    pub fn fib_daddr_local(mut self) -> Rule {
        self.exprs.push(Expr::FibDaddrType { dreg: R0 });
        self.expr(Expr::Cmp {
            sreg: R0,
            op: CmpOp::Eq,
            // RTN_LOCAL, host order like every fib result.
            data: 2u32.to_ne_bytes().to_vec(),
        })
    }

    /// `counter`.
    pub fn counter(self) -> Rule {
        self.expr(Expr::Counter)
    }

    /// End with a verdict.
    pub fn verdict(self, v: Verdict) -> Rule {
        self.expr(Expr::Immediate {
            dreg: Reg::Verdict,
            data: Data::Verdict(v),
        })
    }

    /// `accept`.
    pub fn accept(self) -> Rule {
        self.verdict(Verdict::Accept)
    }

    /// `drop`.
    pub fn drop(self) -> Rule {
        self.verdict(Verdict::Drop)
    }

    /// `return`.
    pub fn ret(self) -> Rule {
        self.verdict(Verdict::Return)
    }

    /// `jump chain`.
    pub fn jump(self, chain: &str) -> Rule {
        self.verdict(Verdict::Jump(chain.into()))
    }

    /// `goto chain`.
    pub fn goto(self, chain: &str) -> Rule {
        self.verdict(Verdict::Goto(chain.into()))
    }
}

/// A rule comment in libnftnl's udata format, which `nft` reads: one TLV of
/// a type byte ([`NFTNL_UDATA_RULE_COMMENT`]), a length byte and the
/// NUL-terminated text. [`Rule::comment`] keeps the text short enough for
/// the length byte.
fn comment_udata(text: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(text.len() + 3);
    v.push(NFTNL_UDATA_RULE_COMMENT);
    v.push((text.len() + 1) as u8);
    v.extend_from_slice(text.as_bytes());
    v.push(0);
    v
}

/// The comment in a rule's `NFTA_RULE_USERDATA`, if there is one. The bytes
/// come from the kernel but were written by whoever added the rule, so
/// every length is checked.
pub(crate) fn decode_comment(mut udata: &[u8]) -> Option<String> {
    while let [ty, len, rest @ ..] = udata {
        let value = rest.get(..usize::from(*len))?;
        if *ty == NFTNL_UDATA_RULE_COMMENT {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        udata = &rest[value.len()..];
    }
    None
}

impl Batch {
    /// Add a rule at its [`Position`] (with its comment, if it has one).
    pub fn add_rule(&mut self, r: &Rule) -> &mut Batch {
        let (flags, handle) = match r.position {
            Position::Append => (NLM_F_CREATE | NLM_F_APPEND, None),
            Position::Prepend => (NLM_F_CREATE, None),
            Position::After(h) => (NLM_F_CREATE | NLM_F_APPEND, Some(h)),
            Position::Before(h) => (NLM_F_CREATE, Some(h)),
        };
        let m = self.begin(NFT_MSG_NEWRULE, flags, r.family);
        self.w.str(NFTA_RULE_TABLE, &r.table);
        self.w.str(NFTA_RULE_CHAIN, &r.chain);
        if let Some(h) = handle {
            self.w.be64(NFTA_RULE_POSITION, h);
        }
        self.w.nest(NFTA_RULE_EXPRESSIONS);
        for e in &r.exprs {
            e.encode(&mut self.w);
        }
        self.w.end_nest();
        if let Some(c) = &r.comment {
            self.w.bytes(NFTA_RULE_USERDATA, &comment_udata(c));
        }
        self.end(m);
        self
    }

    /// Delete the rule with `handle` (see [`decode::rule`](crate::decode::rule));
    /// a missing rule fails with `ENOENT`.
    pub fn delete_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        handle: u64,
    ) -> &mut Batch {
        let m = self.begin(NFT_MSG_DELRULE, 0, family);
        self.w.str(NFTA_RULE_TABLE, table);
        self.w.str(NFTA_RULE_CHAIN, chain);
        self.w.be64(NFTA_RULE_HANDLE, handle);
        self.end(m);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_encode_and_decode() {
        let udata = comment_udata("lnet");
        assert_eq!(udata, b"\x00\x05lnet\x00");
        assert_eq!(decode_comment(&udata).as_deref(), Some("lnet"));
        // Another TLV first (nft's NFTNL_UDATA_RULE_EBTABLES_POLICY = 1).
        let mut two = vec![1, 2, 9, 9];
        two.extend_from_slice(&udata);
        assert_eq!(decode_comment(&two).as_deref(), Some("lnet"));
        // Malformed: truncated value, lone type byte, nothing.
        assert_eq!(decode_comment(&[0, 9, b'x']), None);
        assert_eq!(decode_comment(&[0]), None);
        assert_eq!(decode_comment(&[]), None);

        let r = Rule::new(Family::Ip, "filter", "FORWARD");
        let max = "x".repeat(COMMENT_MAX_LEN);
        let ok = r.clone().comment(&max);
        assert_eq!(ok.comment_text(), Some(max.as_str()));
        assert_eq!(comment_udata(&max)[1], 129);
        let long = r.clone().comment(&format!("{max}x"));
        assert_eq!(long.comment_text(), Some(max.as_str()));
        // Cut on a character boundary: "é" is two bytes and would straddle
        // the limit.
        let accented = format!("{}é", "x".repeat(COMMENT_MAX_LEN - 1));
        let cut = r.clone().comment(&accented);
        assert_eq!(cut.comment_text().map(str::len), Some(COMMENT_MAX_LEN - 1));
        assert_eq!(r.comment("a\0b").comment_text(), Some("a"));
    }

    #[test]
    fn a_family_set_and_negated_lookups_make_one_rule() {
        // `meta nfproto @fams iifname != @bridges oifname != @bridges drop`
        let r = Rule::new(Family::Inet, "t", "c")
            .in_set(&[Field::NfProto], "fams")
            .not_in_set(&[Field::IifName], "bridges")
            .not_in_set(&[Field::OifName], "bridges")
            .drop();
        let lookup = |set: &str, invert| Expr::Lookup {
            set: set.into(),
            sreg: R0,
            dreg: None,
            invert,
        };
        assert_eq!(
            r.exprs(),
            [
                Expr::Meta {
                    key: MetaKey::NfProto,
                    dreg: R0
                },
                lookup("fams", false),
                Field::IifName.load(R0),
                lookup("bridges", true),
                Field::OifName.load(R0),
                lookup("bridges", true),
                Expr::Immediate {
                    dreg: Reg::Verdict,
                    data: Data::Verdict(Verdict::Drop)
                },
            ]
        );
        // `meta nfproto ipv6` compares the same one-byte load.
        assert_eq!(
            Rule::new(Family::Inet, "t", "c")
                .nfproto(Family::Ip6)
                .exprs(),
            [
                Field::NfProto.load(R0),
                Expr::Cmp {
                    sreg: R0,
                    op: CmpOp::Eq,
                    data: vec![10]
                }
            ]
        );
        assert_eq!(Field::NfProto.regs(), 1);
    }

    #[test]
    fn nat_maps_share_their_shape() {
        let key = [Field::IifName];
        let snat = Rule::new(Family::Ip, "t", "c").snat_map(&key, "m", Family::Ip);
        let dnat = Rule::new(Family::Ip6, "t", "c").dnat_map(&key, "m", Family::Ip6);
        let nat = |r: &Rule| r.exprs().last().cloned().unwrap();
        assert_eq!(
            nat(&snat),
            Expr::Nat {
                kind: NatKind::Snat,
                family: Family::Ip,
                addr: Some(R0),
                proto: None,
            }
        );
        assert_eq!(
            nat(&dnat),
            Expr::Nat {
                kind: NatKind::Dnat,
                family: Family::Ip6,
                addr: Some(R0),
                proto: Some(Reg::R32(4)),
            }
        );
        assert_eq!(Field::BriIifName.regs(), 4);
        assert_eq!(
            MetaKey::decode(MetaKey::BriOifName.encode()),
            MetaKey::BriOifName
        );
    }
}
