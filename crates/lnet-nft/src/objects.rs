//! Tables, chains, sets and maps, and set elements.

use std::net::{Ipv4Addr, Ipv6Addr};

use lnet_nla::flags::{NLM_F_CREATE, NLM_F_EXCL};

use crate::Family;
use crate::batch::Batch;
use crate::expr::{Verdict, put_data_value, put_verdict};
use crate::sys::*;

/// The type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    /// `filter`: accept/drop.
    Filter,
    /// `nat`: sees the first packet of each connection only.
    Nat,
    /// `route`: re-routes after output changes (output hook only).
    Route,
}

impl ChainType {
    fn name(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }
}

/// A netfilter hook of the inet/ip/ip6 families; the bridge family's
/// hooks (`NF_BR_*`) have the same numbers and meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `NF_INET_PRE_ROUTING`.
    Prerouting,
    /// `NF_INET_LOCAL_IN`.
    Input,
    /// `NF_INET_FORWARD`.
    Forward,
    /// `NF_INET_LOCAL_OUT`.
    Output,
    /// `NF_INET_POST_ROUTING`.
    Postrouting,
}

impl Hook {
    fn num(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }
}

/// The verdict of a base chain for packets no rule decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `NF_ACCEPT`.
    Accept,
    /// `NF_DROP`.
    Drop,
}

/// A chain, for [`Batch::add_chain`]: regular ([`Chain::regular`], only
/// reached by jump/goto) or base ([`Chain::base`], attached to a hook).
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a> {
    /// Table family.
    pub family: Family,
    /// Table name.
    pub table: &'a str,
    /// Chain name.
    pub name: &'a str,
    /// For base chains: type, hook and priority (lower runs first; e.g.
    /// `-100` is `dstnat`, `100` is `srcnat`, `0` is `filter`).
    pub hook: Option<(ChainType, Hook, i32)>,
    /// For base chains: the policy (kernel default: accept).
    pub policy: Option<Policy>,
}

impl<'a> Chain<'a> {
    /// A regular chain.
    pub fn regular(family: Family, table: &'a str, name: &'a str) -> Chain<'a> {
        Chain {
            family,
            table,
            name,
            hook: None,
            policy: None,
        }
    }

    /// A base chain on `hook`.
    pub fn base(
        family: Family,
        table: &'a str,
        name: &'a str,
        ty: ChainType,
        hook: Hook,
        priority: i32,
    ) -> Chain<'a> {
        Chain {
            hook: Some((ty, hook, priority)),
            ..Chain::regular(family, table, name)
        }
    }

    /// Set the policy of a base chain.
    pub fn policy(mut self, policy: Policy) -> Chain<'a> {
        self.policy = Some(policy);
        self
    }
}

/// The data type of one field of a set key or map value. It fixes the
/// field's length and the type id `nft` uses to print elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// `ipv4_addr`, 4 bytes, network order.
    Ipv4Addr,
    /// `ipv6_addr`, 16 bytes.
    Ipv6Addr,
    /// `ether_addr`, 6 bytes.
    EtherAddr,
    /// `inet_proto`, 1 byte (6 = TCP, 17 = UDP).
    InetProto,
    /// `inet_service`, 2 bytes, network order (a port).
    InetService,
    /// `mark`, 4 bytes, host order.
    Mark,
    /// `ifname`, 16 bytes, NUL-padded.
    IfName,
    /// `nf_proto`, 1 byte: the family of a packet in an `inet` table (`meta nfproto`,
    /// 2 = IPv4, 10 = IPv6).
    NfProto,
}

impl DataType {
    /// `nft`'s datatype id (`enum datatypes` in nftables' datatype.h).
    pub fn id(self) -> u32 {
        match self {
            DataType::Ipv4Addr => 7,
            DataType::Ipv6Addr => 8,
            DataType::EtherAddr => 9,
            DataType::InetProto => 12,
            DataType::InetService => 13,
            DataType::Mark => 19,
            DataType::IfName => 41,
            DataType::NfProto => 2,
        }
    }

    /// Length in bytes.
    pub fn byte_len(self) -> u32 {
        match self {
            DataType::Ipv4Addr | DataType::Mark => 4,
            DataType::Ipv6Addr | DataType::IfName => 16,
            DataType::EtherAddr => 6,
            DataType::InetProto | DataType::NfProto => 1,
            DataType::InetService => 2,
        }
    }

    /// Whether `nft` keeps the type in host byte order (strings and marks);
    /// it needs to be told for single-field keys and values, or it prints
    /// them byte-swapped.
    fn host_order(self) -> bool {
        matches!(self, DataType::IfName | DataType::Mark)
    }

    /// Type id and length of a (possibly concatenated) key or value: a
    /// concatenation's fields each start on a 4-byte register boundary, and
    /// its type id packs the field ids 6 bits apart (`concat_subtype_add`
    /// in nftables), which is how `nft` recovers the field types.
    pub(crate) fn compound(fields: &[DataType]) -> (u32, u32) {
        match fields {
            [one] => (one.id(), one.byte_len()),
            _ => fields.iter().fold((0, 0), |(id, len), f| {
                ((id << 6) | f.id(), len + f.byte_len().next_multiple_of(4))
            }),
        }
    }
}

/// What a set maps its keys to, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetData<'a> {
    /// A plain set: membership only.
    None,
    /// A map to values of these (possibly concatenated) types.
    Value(&'a [DataType]),
    /// A verdict map (`vmap`): keys map to accept/drop/jump ....
    Verdict,
}

/// `NFT_SET_*` flags for [`Set::flags`].
pub mod set_flags {
    /// `NFT_SET_CONSTANT`: elements only at creation.
    pub const CONSTANT: u32 = 0x2;
    /// `NFT_SET_INTERVAL`: ranges and prefixes (elements carry a key end).
    pub const INTERVAL: u32 = 0x4;
    /// `NFT_SET_MAP` (set by [`Set::map`](super::Set::map)).
    pub const MAP: u32 = 0x8;
    /// `NFT_SET_TIMEOUT`: elements may expire.
    pub const TIMEOUT: u32 = 0x10;
    /// `NFT_SET_CONCAT`: concatenated key (set automatically).
    pub const CONCAT: u32 = 0x80;
}

/// A named set or map, for [`Batch::add_set`].
#[derive(Debug, Clone, Copy)]
pub struct Set<'a> {
    /// Table family.
    pub family: Family,
    /// Table name.
    pub table: &'a str,
    /// Set name.
    pub name: &'a str,
    /// `NFT_SET_*` flags (see [`set_flags`]); `MAP`, `CONCAT` are derived.
    pub flags: u32,
    /// Key fields; more than one is a concatenation (`a . b . c`).
    pub key: &'a [DataType],
    /// What the keys map to.
    pub data: SetData<'a>,
}

impl<'a> Set<'a> {
    /// A plain set of `key`s.
    pub fn new(family: Family, table: &'a str, name: &'a str, key: &'a [DataType]) -> Set<'a> {
        Set {
            family,
            table,
            name,
            flags: 0,
            key,
            data: SetData::None,
        }
    }

    /// A map from `key` to `data`.
    pub fn map(
        family: Family,
        table: &'a str,
        name: &'a str,
        key: &'a [DataType],
        data: &'a [DataType],
    ) -> Set<'a> {
        Set {
            data: SetData::Value(data),
            ..Set::new(family, table, name, key)
        }
    }

    /// A verdict map from `key`.
    pub fn vmap(family: Family, table: &'a str, name: &'a str, key: &'a [DataType]) -> Set<'a> {
        Set {
            data: SetData::Verdict,
            ..Set::new(family, table, name, key)
        }
    }

    /// Add `NFT_SET_*` flags.
    pub fn flags(mut self, flags: u32) -> Set<'a> {
        self.flags |= flags;
        self
    }
}

/// Builds a concatenated key or value (`a . b . c`): each field starts on a
/// 4-byte boundary, zero-padded, the way expressions leave them in
/// consecutive 32-bit registers. For a single-field key use the field's
/// bytes directly (`port.to_be_bytes()`), unpadded.
#[derive(Debug, Default, Clone)]
pub struct Concat(Vec<u8>);

impl Concat {
    /// An empty concatenation.
    pub fn new() -> Concat {
        Concat::default()
    }

    /// Append raw field bytes, padded to 4.
    pub fn bytes(mut self, b: &[u8]) -> Concat {
        self.0.extend_from_slice(b);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    /// Append an `ipv4_addr`.
    pub fn ipv4(self, a: Ipv4Addr) -> Concat {
        self.bytes(&a.octets())
    }

    /// Append an `ipv6_addr`.
    pub fn ipv6(self, a: Ipv6Addr) -> Concat {
        self.bytes(&a.octets())
    }

    /// Append an `inet_proto` (6 = TCP, 17 = UDP).
    pub fn inet_proto(self, p: u8) -> Concat {
        self.bytes(&[p])
    }

    /// Append an `inet_service` (port).
    pub fn inet_service(self, port: u16) -> Concat {
        self.bytes(&port.to_be_bytes())
    }

    /// Append an `ifname` (NUL-padded to 16 bytes).
    pub fn ifname(self, name: &str) -> Concat {
        self.bytes(&ifname_bytes(name))
    }

    /// The bytes.
    pub fn build(self) -> Vec<u8> {
        self.0
    }
}

/// An interface name as the kernel keeps it in a register: 16 bytes,
/// NUL-padded (longer names are cut, as the kernel's names never are).
pub(crate) fn ifname_bytes(name: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = name.len().min(15);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    b
}

/// What an element maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementData {
    /// Value of a map.
    Value(Vec<u8>),
    /// Verdict of a verdict map.
    Verdict(Verdict),
}

/// A set or map element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Key bytes (see [`Concat`]).
    pub key: Vec<u8>,
    /// End of the range (inclusive) for interval sets that take ranges as
    /// key/key-end pairs (concatenated interval sets).
    pub key_end: Option<Vec<u8>>,
    /// `NFT_SET_ELEM_INTERVAL_END`: this element closes an interval opened
    /// by the previous one (non-concatenated interval sets).
    pub interval_end: bool,
    /// For maps: the value.
    pub data: Option<ElementData>,
}

impl Element {
    /// An element with this key.
    pub fn new(key: impl Into<Vec<u8>>) -> Element {
        Element {
            key: key.into(),
            key_end: None,
            interval_end: false,
            data: None,
        }
    }

    /// Map the element to a value.
    pub fn data(mut self, value: impl Into<Vec<u8>>) -> Element {
        self.data = Some(ElementData::Value(value.into()));
        self
    }

    /// Map the element to a verdict.
    pub fn verdict(mut self, v: Verdict) -> Element {
        self.data = Some(ElementData::Verdict(v));
        self
    }

    /// Make the element a range `key ..= end`.
    pub fn key_end(mut self, end: impl Into<Vec<u8>>) -> Element {
        self.key_end = Some(end.into());
        self
    }

    /// Mark the element as an interval end.
    pub fn interval_end(mut self) -> Element {
        self.interval_end = true;
        self
    }
}

impl Batch {
    /// Ensure table `name` exists (`NLM_F_CREATE` without `NLM_F_EXCL`:
    /// an existing table is left as it is).
    pub fn add_table(&mut self, family: Family, name: &str) -> &mut Batch {
        self.named(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            family,
            &[(NFTA_TABLE_NAME, name)],
        )
    }

    /// Create table `name`, failing with `EEXIST` if it exists.
    pub fn create_table(&mut self, family: Family, name: &str) -> &mut Batch {
        self.named(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE | NLM_F_EXCL,
            family,
            &[(NFTA_TABLE_NAME, name)],
        )
    }

    /// Delete table `name` and everything in it; fails with `ENOENT` if it
    /// does not exist (see [`Batch::destroy_table`]).
    pub fn delete_table(&mut self, family: Family, name: &str) -> &mut Batch {
        self.named(NFT_MSG_DELTABLE, 0, family, &[(NFTA_TABLE_NAME, name)])
    }

    /// Delete table `name` if it exists (`NFT_MSG_DESTROYTABLE`, Linux 6.3+).
    pub fn destroy_table(&mut self, family: Family, name: &str) -> &mut Batch {
        self.named(NFT_MSG_DESTROYTABLE, 0, family, &[(NFTA_TABLE_NAME, name)])
    }

    /// A message that carries only names (string attributes): what every
    /// delete / destroy / flush is.
    fn named(&mut self, msg: u16, flags: u16, family: Family, names: &[(u16, &str)]) -> &mut Batch {
        let m = self.begin_named(msg, flags, family, names);
        self.end(m);
        self
    }

    /// Begin a message and put its names (table, object) first; the caller
    /// adds the rest and ends it.
    fn begin_named(
        &mut self,
        msg: u16,
        flags: u16,
        family: Family,
        names: &[(u16, &str)],
    ) -> usize {
        let m = self.begin(msg, flags, family);
        for &(attr, name) in names {
            self.w.str(attr, name);
        }
        m
    }

    /// Ensure a chain exists. An existing chain is kept (its rules too);
    /// an existing base chain keeps its hook only if type, hook and
    /// priority are the same (a change fails with `EOPNOTSUPP`: hooks are
    /// not moved in place); its policy is updated.
    pub fn add_chain(&mut self, c: &Chain<'_>) -> &mut Batch {
        let names = chain_names(c.table, c.name);
        let m = self.begin_named(NFT_MSG_NEWCHAIN, NLM_F_CREATE, c.family, &names);
        if let Some((ty, hook, prio)) = c.hook {
            self.w.nest(NFTA_CHAIN_HOOK);
            self.w.be32(NFTA_HOOK_HOOKNUM, hook.num());
            self.w.be32(NFTA_HOOK_PRIORITY, prio as u32);
            self.w.end_nest();
            self.w.str(NFTA_CHAIN_TYPE, ty.name());
        }
        if let Some(p) = c.policy {
            self.w.be32(
                NFTA_CHAIN_POLICY,
                match p {
                    Policy::Accept => 1,
                    Policy::Drop => 0,
                },
            );
        }
        self.end(m);
        self
    }

    /// Delete a chain; fails with `ENOENT` if absent and `EBUSY` if it has
    /// rules or is a jump target.
    pub fn delete_chain(&mut self, family: Family, table: &str, name: &str) -> &mut Batch {
        self.named(NFT_MSG_DELCHAIN, 0, family, &chain_names(table, name))
    }

    /// Delete a chain if it exists (Linux 6.3+).
    pub fn destroy_chain(&mut self, family: Family, table: &str, name: &str) -> &mut Batch {
        self.named(NFT_MSG_DESTROYCHAIN, 0, family, &chain_names(table, name))
    }

    /// Delete every rule of a chain.
    pub fn flush_chain(&mut self, family: Family, table: &str, chain: &str) -> &mut Batch {
        let names = [(NFTA_RULE_TABLE, table), (NFTA_RULE_CHAIN, chain)];
        self.named(NFT_MSG_DELRULE, 0, family, &names)
    }

    /// Ensure a set or map exists (an existing one with the same
    /// definition is kept with its elements).
    pub fn add_set(&mut self, s: &Set<'_>) -> &mut Batch {
        let names = set_names(s.table, s.name);
        let m = self.begin_named(NFT_MSG_NEWSET, NLM_F_CREATE, s.family, &names);
        let mut flags = s.flags;
        if s.data != SetData::None {
            flags |= set_flags::MAP;
        }
        if s.key.len() > 1 {
            flags |= set_flags::CONCAT;
        }
        self.w.be32(NFTA_SET_FLAGS, flags);
        // The kernel insists on a transaction-local set id (rules in the
        // same batch may refer to a new set by it); names work too, so
        // the id only has to be unique within the batch.
        self.sets += 1;
        self.w.be32(NFTA_SET_ID, self.sets);
        let (key_type, key_len) = DataType::compound(s.key);
        self.w.be32(NFTA_SET_KEY_TYPE, key_type);
        self.w.be32(NFTA_SET_KEY_LEN, key_len);
        match s.data {
            SetData::None => {}
            SetData::Value(d) => {
                let (ty, len) = DataType::compound(d);
                self.w.be32(NFTA_SET_DATA_TYPE, ty);
                self.w.be32(NFTA_SET_DATA_LEN, len);
            }
            SetData::Verdict => {
                self.w.be32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT);
            }
        }
        // Userdata is opaque to the kernel; `nft` reads the byte order of
        // single-field keys and values from it (libnftnl's
        // `NFTNL_UDATA_SET_{KEY,DATA}BYTEORDER` TLVs: u8 type, u8 length,
        // u32 value; 1 = host, 2 = big endian).
        let order = |f: &[DataType]| match f {
            [one] if one.host_order() => Some(1u32),
            [_] => Some(2u32),
            _ => None,
        };
        let mut udata = Vec::new();
        let data_order = match s.data {
            SetData::Value(d) => order(d),
            _ => None,
        };
        for (ty, o) in [(0u8, order(s.key)), (1u8, data_order)] {
            if let Some(o) = o {
                udata.extend_from_slice(&[ty, 4]);
                udata.extend_from_slice(&o.to_ne_bytes());
            }
        }
        if !udata.is_empty() {
            self.w.bytes(NFTA_SET_USERDATA, &udata);
        }
        if s.key.len() > 1 {
            // The per-field lengths let the kernel pick a set backend that
            // matches concatenations field by field (pipapo for intervals).
            self.w.nest(NFTA_SET_DESC);
            self.w.nest(NFTA_SET_DESC_CONCAT);
            for f in s.key {
                self.w.nest(NFTA_LIST_ELEM);
                self.w.be32(NFTA_SET_FIELD_LEN, f.byte_len());
                self.w.end_nest();
            }
            self.w.end_nest();
            self.w.end_nest();
        }
        self.end(m);
        self
    }

    /// Delete every element of a set.
    pub fn flush_set(&mut self, family: Family, table: &str, set: &str) -> &mut Batch {
        self.elem_msg(NFT_MSG_DELSETELEM, 0, family, table, set, &[])
    }

    /// Delete a set; fails with `ENOENT` if absent, `EBUSY` if a rule uses it.
    pub fn delete_set(&mut self, family: Family, table: &str, name: &str) -> &mut Batch {
        self.named(NFT_MSG_DELSET, 0, family, &set_names(table, name))
    }

    /// Delete a set if it exists (Linux 6.3+).
    pub fn destroy_set(&mut self, family: Family, table: &str, name: &str) -> &mut Batch {
        self.named(NFT_MSG_DESTROYSET, 0, family, &set_names(table, name))
    }

    fn elem_msg(
        &mut self,
        msg: u16,
        flags: u16,
        family: Family,
        table: &str,
        set: &str,
        elements: &[Element],
    ) -> &mut Batch {
        let names = [
            (NFTA_SET_ELEM_LIST_TABLE, table),
            (NFTA_SET_ELEM_LIST_SET, set),
        ];
        let m = self.begin_named(msg, flags, family, &names);
        if !elements.is_empty() {
            self.w.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
            for e in elements {
                self.w.nest(NFTA_LIST_ELEM);
                self.w.nest(NFTA_SET_ELEM_KEY);
                put_data_value(&mut self.w, &e.key);
                self.w.end_nest();
                if let Some(end) = &e.key_end {
                    self.w.nest(NFTA_SET_ELEM_KEY_END);
                    put_data_value(&mut self.w, end);
                    self.w.end_nest();
                }
                if e.interval_end {
                    self.w.be32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
                }
                // Deletion matches by key; data there would be ignored at
                // best, so it is only sent when adding.
                if let (Some(d), NFT_MSG_NEWSETELEM) = (&e.data, msg) {
                    self.w.nest(NFTA_SET_ELEM_DATA);
                    match d {
                        ElementData::Value(v) => put_data_value(&mut self.w, v),
                        ElementData::Verdict(v) => put_verdict(&mut self.w, v),
                    }
                    self.w.end_nest();
                }
                self.w.end_nest();
            }
            self.w.end_nest();
        }
        self.end(m);
        self
    }
}

/// Writes the element operations of [`Batch`]. They differ only in message
/// type and flags, all going through `elem_msg`; the macro keeps their
/// long, identical signature in one place.
macro_rules! element_ops {
    ($($(#[$doc:meta])* $name:ident => ($msg:expr, $flags:expr);)*) => {
        impl Batch {
            $(
                $(#[$doc])*
                pub fn $name(
                    &mut self,
                    family: Family,
                    table: &str,
                    set: &str,
                    elements: &[Element],
                ) -> &mut Batch {
                    self.elem_msg($msg, $flags, family, table, set, elements)
                }
            )*
        }
    };
}

element_ops! {
    /// Add elements; an element that exists with the same data is fine,
    /// with other data it fails with `EEXIST`.
    add_elements => (NFT_MSG_NEWSETELEM, NLM_F_CREATE);
    /// Delete elements (by key); a missing one fails with `ENOENT`.
    delete_elements => (NFT_MSG_DELSETELEM, 0);
    /// Delete elements that exist, ignore the others (Linux 6.3+).
    destroy_elements => (NFT_MSG_DESTROYSETELEM, 0);
}

/// The table and name attributes of a chain message.
fn chain_names<'a>(table: &'a str, name: &'a str) -> [(u16, &'a str); 2] {
    [(NFTA_CHAIN_TABLE, table), (NFTA_CHAIN_NAME, name)]
}

/// The table and name attributes of a set message.
fn set_names<'a>(table: &'a str, name: &'a str) -> [(u16, &'a str); 2] {
    [(NFTA_SET_TABLE, table), (NFTA_SET_NAME, name)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compound_types() {
        use DataType::*;
        // `nft` reads these ids back as "ipv4_addr . inet_proto . inet_service".
        assert_eq!(
            DataType::compound(&[Ipv4Addr, InetProto, InetService]),
            ((7 << 12) | (12 << 6) | 13, 12)
        );
        assert_eq!(DataType::compound(&[InetService]), (13, 2));
        // A set of families (`type nf_proto`): one byte, nft's type 2.
        assert_eq!(DataType::compound(&[NfProto]), (2, 1));
        assert_eq!(
            DataType::compound(&[Ipv6Addr, InetService]),
            ((8 << 6) | 13, 20)
        );
        let c = Concat::new()
            .ipv4(std::net::Ipv4Addr::new(192, 0, 2, 1))
            .inet_proto(17)
            .inet_service(0x1f90)
            .build();
        assert_eq!(c, [192, 0, 2, 1, 17, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(&Concat::new().ifname("eth0").build()[..5], b"eth0\0");
        assert_eq!(ifname_bytes("a-name-longer-than-15").len(), 16);
    }
}
