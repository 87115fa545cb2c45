//! Reading back: the rules of a chain and the elements of a set.

use super::Family;
use super::expr::{Data, Expr, decode_comment, decode_data};
use super::objects::{ChainType, Element, ElementData, Hook, Policy};
use super::socket::NftSocket;
use super::sys::*;
use super::wire::{Attrs, Writer, msg_attrs};
use crate::error::Result;

/// A rule as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Table family.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub chain: String,
    /// The rule's handle (for [`Batch::delete_rule`](super::Batch::delete_rule)
    /// and [`Position`](super::Position)).
    pub handle: u64,
    /// The expressions, decoded like the ones [`Rule`](super::Rule)
    /// builds; compare with [`Rule::exprs`](super::Rule::exprs).
    pub exprs: Vec<Expr>,
    /// The rule's comment (`NFTA_RULE_USERDATA` in libnftnl's format, as
    /// [`Rule::comment`](super::Rule::comment) and `nft ... comment "x"`
    /// write it).
    pub comment: Option<String>,
}

/// A chain as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    /// Table family.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub name: String,
    /// For base chains: type, hook and priority (`None` also for types or
    /// hooks this crate does not model).
    pub hook: Option<(ChainType, Hook, i32)>,
    /// For base chains: the policy.
    pub policy: Option<Policy>,
}

/// A set or map as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetInfo {
    /// Table family.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Set name.
    pub name: String,
    /// `NFT_SET_*` flags (see [`set_flags`](super::set_flags)).
    pub flags: u32,
    /// Key type id (see [`DataType::id`](super::DataType::id); concatenations
    /// pack field ids 6 bits apart).
    pub key_type: u32,
    /// Key length in bytes.
    pub key_len: u32,
    /// For maps: value type id (`0xffffff00` for verdict maps).
    pub data_type: Option<u32>,
    /// For maps: value length in bytes.
    pub data_len: Option<u32>,
    /// For concatenated keys: the length of each field.
    pub field_lens: Vec<u32>,
}

/// The `nfgen_family` of a message (`None` for unknown families or a
/// message too short to have one).
fn msg_family(msg: &[u8]) -> Option<Family> {
    msg.get(16).copied().and_then(Family::from_nfproto)
}

fn hook_from(num: u32) -> Option<Hook> {
    Some(match num {
        0 => Hook::Prerouting,
        1 => Hook::Input,
        2 => Hook::Forward,
        3 => Hook::Output,
        4 => Hook::Postrouting,
        _ => return None,
    })
}

fn chain_type_from(name: &str) -> Option<ChainType> {
    Some(match name {
        "filter" => ChainType::Filter,
        "nat" => ChainType::Nat,
        "route" => ChainType::Route,
        _ => return None,
    })
}

impl NftSocket {
    /// The names of the tables of `family` (one dump request).
    pub fn tables(&mut self, family: Family) -> Result<Vec<String>> {
        self.dump_collect(NFT_MSG_GETTABLE, family, &[], |msg, out| {
            if msg_family(msg) == Some(family)
                && let Some(n) = msg_attrs(msg).get(NFTA_TABLE_NAME)
            {
                out.push(n.string());
            }
        })
    }

    /// The chains of one table (one dump request).
    pub fn chains(&mut self, family: Family, table: &str) -> Result<Vec<ChainInfo>> {
        self.dump_table(
            NFT_MSG_GETCHAIN,
            family,
            (NFTA_CHAIN_TABLE, table),
            |attrs| {
                let s = |t| string(attrs, t);
                let hook = attrs.get(NFTA_CHAIN_HOOK).and_then(|h| {
                    let h = h.nested();
                    Some((
                        chain_type_from(&s(NFTA_CHAIN_TYPE))?,
                        hook_from(h.get(NFTA_HOOK_HOOKNUM)?.be32()?)?,
                        h.get(NFTA_HOOK_PRIORITY)?.be32()? as i32,
                    ))
                });
                let policy = attrs
                    .get(NFTA_CHAIN_POLICY)
                    .and_then(|p| p.be32())
                    .map(|p| if p == 0 { Policy::Drop } else { Policy::Accept });
                ChainInfo {
                    family,
                    table: s(NFTA_CHAIN_TABLE),
                    name: s(NFTA_CHAIN_NAME),
                    hook,
                    policy,
                }
            },
        )
    }

    /// The sets and maps of one table (one dump request; anonymous sets
    /// that `nft` creates for literal `{ ... }` are included).
    pub fn sets(&mut self, family: Family, table: &str) -> Result<Vec<SetInfo>> {
        self.dump_table(NFT_MSG_GETSET, family, (NFTA_SET_TABLE, table), |attrs| {
            let s = |t| string(attrs, t);
            let u = |t| attrs.get(t).and_then(|a| a.be32());
            let field_lens = attrs
                .get(NFTA_SET_DESC)
                .and_then(|d| d.nested().get(NFTA_SET_DESC_CONCAT))
                .map(|c| {
                    c.nested()
                        .filter_map(|f| f.nested().get(NFTA_SET_FIELD_LEN)?.be32())
                        .collect()
                })
                .unwrap_or_default();
            SetInfo {
                family,
                table: s(NFTA_SET_TABLE),
                name: s(NFTA_SET_NAME),
                flags: u(NFTA_SET_FLAGS).unwrap_or(0),
                key_type: u(NFTA_SET_KEY_TYPE).unwrap_or(0),
                key_len: u(NFTA_SET_KEY_LEN).unwrap_or(0),
                data_type: u(NFTA_SET_DATA_TYPE),
                data_len: u(NFTA_SET_DATA_LEN),
                field_lens,
            }
        })
    }

    /// One dump of the objects of one table, in `family`. The table is
    /// sent as a filter (`(attribute, name)`) and checked again here, as are
    /// the family and the table of every answer: older kernels ignore the
    /// table filter of chain dumps. `build` turns the attributes of each
    /// matching message into an item.
    fn dump_table<T>(
        &mut self,
        msg: u16,
        family: Family,
        (table_attr, table): (u16, &str),
        mut build: impl FnMut(Attrs<'_>) -> T,
    ) -> Result<Vec<T>> {
        self.dump_collect(msg, family, &[(table_attr, table)], |msg, out| {
            let attrs = msg_attrs(msg);
            if msg_family(msg) == Some(family) && string(attrs, table_attr) == table {
                out.push(build(attrs));
            }
        })
    }

    /// One dump request of `msg` in `family`, filtered in the kernel by the
    /// string attributes `filter`; `each` adds what one answer message
    /// holds to the result.
    fn dump_collect<T>(
        &mut self,
        msg: u16,
        family: Family,
        filter: &[(u16, &str)],
        mut each: impl FnMut(&[u8], &mut Vec<T>),
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let attrs = |w: &mut Writer| {
            for &(attr, value) in filter {
                w.str(attr, value);
            }
        };
        self.dump(msg, family, attrs, |msg| each(msg, &mut out))?;
        Ok(out)
    }

    /// The rules of one chain, in order (one dump request).
    pub fn rules(&mut self, family: Family, table: &str, chain: &str) -> Result<Vec<RuleInfo>> {
        let filter = [(NFTA_RULE_TABLE, table), (NFTA_RULE_CHAIN, chain)];
        self.dump_collect(NFT_MSG_GETRULE, family, &filter, |msg, out| {
            let attrs = msg_attrs(msg);
            let s = |t| string(attrs, t);
            // The kernel filters by the names we sent; the family
            // byte of a dump request is a filter too.
            out.push(RuleInfo {
                family: msg_family(msg).unwrap_or(family),
                table: s(NFTA_RULE_TABLE),
                chain: s(NFTA_RULE_CHAIN),
                handle: attrs
                    .get(NFTA_RULE_HANDLE)
                    .and_then(|a| a.be64())
                    .unwrap_or(0),
                exprs: attrs
                    .get(NFTA_RULE_EXPRESSIONS)
                    .map(|l| l.nested().map(|e| Expr::decode(e.nested())).collect())
                    .unwrap_or_default(),
                comment: attrs
                    .get(NFTA_RULE_USERDATA)
                    .and_then(|u| decode_comment(u.value)),
            });
        })
    }

    /// The elements of a set or map (one dump request). Fails with
    /// `ENOENT` when the set does not exist.
    pub fn set_elements(&mut self, family: Family, table: &str, set: &str) -> Result<Vec<Element>> {
        let filter = [
            (NFTA_SET_ELEM_LIST_TABLE, table),
            (NFTA_SET_ELEM_LIST_SET, set),
        ];
        self.dump_collect(NFT_MSG_GETSETELEM, family, &filter, |msg, out| {
            let Some(list) = msg_attrs(msg).get(NFTA_SET_ELEM_LIST_ELEMENTS) else {
                return;
            };
            for item in list.nested() {
                let e = item.nested();
                let value = |t| match decode_data(e.get(t)?.nested())? {
                    Data::Value(v) => Some(v),
                    Data::Verdict(_) => None,
                };
                let Some(key) = value(NFTA_SET_ELEM_KEY) else {
                    continue;
                };
                let data = e
                    .get(NFTA_SET_ELEM_DATA)
                    .and_then(|d| decode_data(d.nested()))
                    .map(|d| match d {
                        Data::Value(v) => ElementData::Value(v),
                        Data::Verdict(v) => ElementData::Verdict(v),
                    });
                out.push(Element {
                    key,
                    key_end: value(NFTA_SET_ELEM_KEY_END),
                    interval_end: e
                        .get(NFTA_SET_ELEM_FLAGS)
                        .and_then(|f| f.be32())
                        .is_some_and(|f| f & NFT_SET_ELEM_INTERVAL_END != 0),
                    data,
                });
            }
        })
    }
}

/// A string attribute, empty when absent.
fn string(attrs: Attrs<'_>, ty: u16) -> String {
    attrs.get(ty).map(|a| a.string()).unwrap_or_default()
}
