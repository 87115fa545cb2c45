//! Reading back what the kernel reports: one function per kind of dump
//! message (tables, chains, sets, rules, set elements), each taking the
//! whole message as it arrived (`nlmsghdr` included).
//!
//! The bytes are input: every attribute is walked by `lnet-nla`'s checked
//! walker, and a malformed message is a [`DecodeError`], never a panic.
//! What is well formed but not understood (a hook, chain type or
//! expression this crate does not model) decodes to `None` or
//! [`Expr::Other`], as before.

use lnet_nla::{Attrs, Checked, NlaError};

use crate::Family;
use crate::expr::{Data, Expr, decode_comment, decode_data};
use crate::objects::{ChainType, Element, ElementData, Hook, Policy};
use crate::sys::*;
use crate::wire::{Nests, msg_attrs};

/// A dump message that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// An attribute of the message is malformed.
    #[error("malformed nf_tables {object} message: {source}")]
    Malformed {
        /// What the message describes (`"rule"`, `"set element"`, ...).
        object: &'static str,
        /// Where the attributes went wrong.
        source: NlaError,
    },
}

fn malformed(object: &'static str) -> impl Fn(NlaError) -> DecodeError {
    move |source| DecodeError::Malformed { object, source }
}

/// A rule as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Table family.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub chain: String,
    /// The rule's handle (for [`Batch::delete_rule`](crate::Batch::delete_rule)
    /// and [`Position`](crate::Position)).
    pub handle: u64,
    /// The expressions, decoded like the ones [`Rule`](crate::Rule)
    /// builds; compare with [`Rule::exprs`](crate::Rule::exprs).
    pub exprs: Vec<Expr>,
    /// The rule's comment (`NFTA_RULE_USERDATA` in libnftnl's format, as
    /// [`Rule::comment`](crate::Rule::comment) and `nft ... comment "x"`
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
    /// `NFT_SET_*` flags (see [`set_flags`](crate::set_flags)).
    pub flags: u32,
    /// Key type id (see [`DataType::id`](crate::DataType::id); concatenations
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
pub fn family(msg: &[u8]) -> Option<Family> {
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

/// A string attribute, empty when absent.
fn string(attrs: &Checked<'_>, ty: u16) -> String {
    attrs.get(ty).map(|a| a.string()).unwrap_or_default()
}

/// A table message: its family and name (`None` for a family this crate
/// does not model, or no name).
pub fn table(msg: &[u8]) -> Result<Option<(Family, String)>, DecodeError> {
    let attrs = msg_attrs(msg).map_err(malformed("table"))?;
    Ok(family(msg).zip(attrs.get(NFTA_TABLE_NAME).map(|n| n.string())))
}

/// A chain message (`None` for a family this crate does not model).
pub fn chain(msg: &[u8]) -> Result<Option<ChainInfo>, DecodeError> {
    let err = malformed("chain");
    let attrs = msg_attrs(msg).map_err(&err)?;
    let Some(family) = family(msg) else {
        return Ok(None);
    };
    let s = |t| string(&attrs, t);
    let hook = match attrs.nested(NFTA_CHAIN_HOOK).map_err(&err)? {
        Some(h) => (|| {
            Some((
                chain_type_from(&s(NFTA_CHAIN_TYPE))?,
                hook_from(h.get(NFTA_HOOK_HOOKNUM)?.be32()?)?,
                h.get(NFTA_HOOK_PRIORITY)?.be32()? as i32,
            ))
        })(),
        None => None,
    };
    let policy = attrs
        .get(NFTA_CHAIN_POLICY)
        .and_then(|p| p.be32())
        .map(|p| if p == 0 { Policy::Drop } else { Policy::Accept });
    Ok(Some(ChainInfo {
        family,
        table: s(NFTA_CHAIN_TABLE),
        name: s(NFTA_CHAIN_NAME),
        hook,
        policy,
    }))
}

/// A set or map message (`None` for a family this crate does not model).
pub fn set(msg: &[u8]) -> Result<Option<SetInfo>, DecodeError> {
    let err = malformed("set");
    let attrs = msg_attrs(msg).map_err(&err)?;
    let Some(family) = family(msg) else {
        return Ok(None);
    };
    let s = |t| string(&attrs, t);
    let u = |t| attrs.get(t).and_then(|a| a.be32());
    let mut field_lens = Vec::new();
    if let Some(concat) = attrs
        .nested(NFTA_SET_DESC)
        .map_err(&err)?
        .map(|d| d.nested(NFTA_SET_DESC_CONCAT))
        .transpose()
        .map_err(&err)?
        .flatten()
    {
        for field in concat {
            let field = field.nested().checked().map_err(&err)?;
            field_lens.extend(field.get(NFTA_SET_FIELD_LEN).and_then(|l| l.be32()));
        }
    }
    Ok(Some(SetInfo {
        family,
        table: s(NFTA_SET_TABLE),
        name: s(NFTA_SET_NAME),
        flags: u(NFTA_SET_FLAGS).unwrap_or(0),
        key_type: u(NFTA_SET_KEY_TYPE).unwrap_or(0),
        key_len: u(NFTA_SET_KEY_LEN).unwrap_or(0),
        data_type: u(NFTA_SET_DATA_TYPE),
        data_len: u(NFTA_SET_DATA_LEN),
        field_lens,
    }))
}

/// The expressions of `NFTA_RULE_EXPRESSIONS` (its value: a list of
/// `NFTA_LIST_ELEM`).
pub fn expressions(list: &[u8]) -> Result<Vec<Expr>, DecodeError> {
    let err = malformed("rule expression");
    let mut out = Vec::new();
    for e in Attrs::new(list) {
        let e = e.map_err(&err)?.nested().checked().map_err(&err)?;
        out.push(Expr::decode(&e).map_err(&err)?);
    }
    Ok(out)
}

/// A rule message (`None` for a family this crate does not model).
pub fn rule(msg: &[u8]) -> Result<Option<RuleInfo>, DecodeError> {
    let attrs = msg_attrs(msg).map_err(malformed("rule"))?;
    let Some(family) = family(msg) else {
        return Ok(None);
    };
    let s = |t| string(&attrs, t);
    Ok(Some(RuleInfo {
        family,
        table: s(NFTA_RULE_TABLE),
        chain: s(NFTA_RULE_CHAIN),
        handle: attrs
            .get(NFTA_RULE_HANDLE)
            .and_then(|a| a.be64())
            .unwrap_or(0),
        exprs: match attrs.get(NFTA_RULE_EXPRESSIONS) {
            Some(l) => expressions(l.value())?,
            None => Vec::new(),
        },
        comment: attrs
            .get(NFTA_RULE_USERDATA)
            .and_then(|u| decode_comment(u.value())),
    }))
}

/// The elements of a set-element message. An element without a key (or
/// whose key is a verdict) is skipped.
pub fn elements(msg: &[u8]) -> Result<Vec<Element>, DecodeError> {
    let err = malformed("set element");
    let attrs = msg_attrs(msg).map_err(&err)?;
    let mut out = Vec::new();
    let Some(list) = attrs.nested(NFTA_SET_ELEM_LIST_ELEMENTS).map_err(&err)? else {
        return Ok(out);
    };
    for item in list {
        let e = item.nested().checked().map_err(&err)?;
        let nests = Nests::default();
        let value = |t| match decode_data(&nests, e.get(t)?)? {
            Data::Value(v) => Some(v),
            Data::Verdict(_) => None,
        };
        let key = value(NFTA_SET_ELEM_KEY);
        let key_end = value(NFTA_SET_ELEM_KEY_END);
        let data = e
            .get(NFTA_SET_ELEM_DATA)
            .and_then(|d| decode_data(&nests, d))
            .map(|d| match d {
                Data::Value(v) => ElementData::Value(v),
                Data::Verdict(v) => ElementData::Verdict(v),
            });
        nests.finish(()).map_err(&err)?;
        let Some(key) = key else {
            continue;
        };
        out.push(Element {
            key,
            key_end,
            interval_end: e
                .get(NFTA_SET_ELEM_FLAGS)
                .and_then(|f| f.be32())
                .is_some_and(|f| f & NFT_SET_ELEM_INTERVAL_END != 0),
            data,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, Rule};

    fn rule_msg() -> (Rule, Vec<u8>) {
        let rule = Rule::new(Family::Ip, "lnet", "fwd")
            .iifname("br-x")
            .accept()
            .comment("lnet");
        let mut b = Batch::new();
        b.add_rule(&rule);
        (rule, b.as_bytes().to_vec())
    }

    /// The offset of the `n`-th expression of the rule message `msg`.
    fn expr_offset(msg: &[u8], n: usize) -> usize {
        let list = msg_attrs(msg).unwrap().get(NFTA_RULE_EXPRESSIONS).unwrap();
        let base = list.offset() + 4;
        base + Attrs::new(list.value()).nth(n).unwrap().unwrap().offset()
    }

    #[test]
    fn a_rule_reads_back_as_it_was_built() {
        let (rule, msg) = rule_msg();
        let got = super::rule(&msg).unwrap().unwrap();
        assert_eq!(got.exprs, rule.exprs());
        assert_eq!(got.comment.as_deref(), Some("lnet"));
        assert_eq!((got.table.as_str(), got.chain.as_str()), ("lnet", "fwd"));
    }

    #[test]
    fn a_lying_expression_fails_the_rule_instead_of_shortening_it() {
        let (rule, mut msg) = rule_msg();
        assert!(rule.exprs().len() > 2);
        // The second expression claims more bytes than the list holds: before, the walk
        // stopped there and the rule came back with one expression and no error.
        let at = expr_offset(&msg, 1);
        msg[at..at + 2].copy_from_slice(&0x7ff0u16.to_ne_bytes());
        let e = super::rule(&msg).unwrap_err();
        assert!(
            e.to_string()
                .contains("malformed nf_tables rule expression"),
            "{e}"
        );

        // Damage inside an expression's data nest is caught by the same walk.
        let (_, mut msg) = rule_msg();
        let at = expr_offset(&msg, 0);
        // NFTA_LIST_ELEM header, NFTA_EXPR_NAME "meta\0" (12), NFTA_EXPR_DATA header,
        // then the first inner attribute's length.
        msg[at + 4 + 12 + 4] = 3;
        super::rule(&msg).unwrap_err();
    }

    #[test]
    fn a_lying_element_fails_the_listing() {
        let mut b = Batch::new();
        b.add_elements(
            Family::Ip,
            "lnet",
            "s",
            &[Element::new([10, 0, 0, 1]), Element::new([10, 0, 0, 2])],
        );
        let msg = b.as_bytes().to_vec();
        assert_eq!(super::elements(&msg).unwrap().len(), 2);
        let mut bad = msg.clone();
        // A stub of 2 bytes after the last attribute of the message.
        let len = bad.len() as u32 + 2;
        bad[..4].copy_from_slice(&len.to_ne_bytes());
        bad.extend_from_slice(&[1, 0]);
        super::elements(&bad).unwrap_err();
        super::table(&bad).unwrap_err();
    }
}
