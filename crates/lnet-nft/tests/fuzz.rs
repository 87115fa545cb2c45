//! Fuzzing the nftables codec on stable Rust: bolero's random engine, run as ordinary
//! tests with a time budget (no nightly, no libFuzzer). The kernel's dump messages are
//! input like any other, so every decoder must answer `Ok` or an error — never panic,
//! never read out of bounds — whatever the bytes.
//!
//! Targets:
//! - `decoders_never_panic_on_arbitrary_bytes`: random bytes, as a whole message and as
//!   the attributes behind a valid `nlmsghdr` + `nfgenmsg`, into every entry point: the
//!   attribute walker itself (walked as deep as it goes, checking that every attribute
//!   it yields lies inside the input), the offset lookup the kernel's error reports use,
//!   and the decoders of tables, chains, sets, rules, expression lists and set elements;
//! - `encodings_decode_back_and_survive_mutation`: structure-aware — rules (every
//!   expression kind, comments), chains, sets and maps, and element lists generated,
//!   encoded with the builders, decoded back and compared with what was built (the
//!   round trip); then the same bytes mutated (bytes and attribute lengths overwritten,
//!   cut short) and fed to every decoder again.
//!
//! Time: `LNET_FUZZ_SECS=N` gives each target N seconds (default 3 each). A failure
//! prints the input and `BOLERO_RANDOM_SEED=…`, which replays it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bolero::generator::TypeGenerator;
use lnet_nft::{
    Batch, Chain, ChainInfo, ChainType, CmpOp, CtKey, Data, DataType, Element, Expr, Family, Hook,
    MetaKey, NatKind, PayloadBase, Policy, Reg, Rule, Set, Verdict, decode, describe,
    rejected_attr,
};
use lnet_nla::{Attrs, NFGENMSG_LEN, NLMSG_HDRLEN};

fn budget(default_secs: u64) -> Duration {
    let secs = std::env::var("LNET_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(default_secs);
    Duration::from_secs(secs.max(1))
}

// ---------------------------------------------------------------------------------------
// Every entry point on one input.

/// Walks `walk` and everything nested in it (as deep as `depth`), checking that every
/// attribute lies inside `input`, which `walk` reads.
fn walk_deep(input: &[u8], walk: Attrs<'_>, depth: u8) -> usize {
    let mut seen = 0;
    for a in walk {
        let Ok(a) = a else {
            break;
        };
        seen += 1;
        let v = a.value();
        let inside = input.as_ptr_range();
        assert!(
            v.is_empty() || (inside.contains(&v.as_ptr()) && v.len() <= input.len()),
            "an attribute's value outside the input: {a:?}"
        );
        let _ = (
            a.u8(),
            a.be16(),
            a.be32(),
            a.be64(),
            a.ne32(),
            a.c_str(),
            a.string(),
        );
        if depth > 0 {
            seen += walk_deep(input, a.nested(), depth - 1);
        }
    }
    seen
}

fn decode_all(msg: &[u8]) {
    walk_deep(msg, Attrs::new(msg), 6);
    if let Ok(w) = Attrs::of_message(msg, NFGENMSG_LEN) {
        walk_deep(msg, w.clone(), 6);
        let _ = w.checked();
    }
    for off in [0, 20, 24, 28, msg.len() / 2, msg.len().saturating_sub(4)] {
        if let Some((path, value)) = rejected_attr(msg, off) {
            assert!(!path.is_empty() && value.len() <= msg.len());
        }
    }
    let _ = describe(msg);
    let _ = decode::table(msg);
    let _ = decode::chain(msg);
    let _ = decode::set(msg);
    let _ = decode::rule(msg);
    let _ = decode::elements(msg);
    let _ = decode::expressions(msg);
}

/// `attrs` behind a valid nf_tables header of message type `ty` and `family`.
fn framed(ty: u8, family: u8, attrs: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len());
    m.extend_from_slice(&((NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&((10u16 << 8) | u16::from(ty)).to_ne_bytes());
    m.extend_from_slice(&[0; 10]);
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

#[test]
fn decoders_never_panic_on_arbitrary_bytes() {
    bolero::check!()
        .with_test_time(budget(3))
        .with_max_len(2048)
        .for_each(|bytes: &[u8]| {
            decode_all(bytes);
            let (ty, family) = match bytes {
                [t, f, ..] => (*t, [1, 2, 7, 10][usize::from(*f) % 4]),
                _ => (0, 2),
            };
            decode_all(&framed(ty, family, bytes));
        });
}

// ---------------------------------------------------------------------------------------
// Values to encode.

/// Names without NUL (a NUL ends a name on the wire), 0..=20 bytes.
#[derive(Debug, Clone, TypeGenerator)]
struct Name(Vec<u8>);

impl Name {
    fn get(&self) -> String {
        self.0
            .iter()
            .take(20)
            .map(|b| char::from(b'a' + b % 26))
            .collect()
    }
}

#[derive(Debug, Clone, TypeGenerator)]
struct GReg(Option<u8>);

impl GReg {
    fn get(&self) -> Reg {
        self.0.map_or(Reg::Verdict, |n| Reg::R32(n % 16))
    }
}

#[derive(Debug, Clone, TypeGenerator)]
enum GVerdict {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(Name),
    Goto(Name),
}

impl GVerdict {
    fn get(&self) -> Verdict {
        match self {
            GVerdict::Accept => Verdict::Accept,
            GVerdict::Drop => Verdict::Drop,
            GVerdict::Continue => Verdict::Continue,
            GVerdict::Return => Verdict::Return,
            GVerdict::Jump(c) => Verdict::Jump(c.get()),
            GVerdict::Goto(c) => Verdict::Goto(c.get()),
        }
    }
}

const META_KEYS: [MetaKey; 9] = [
    MetaKey::Mark,
    MetaKey::Iif,
    MetaKey::Oif,
    MetaKey::IifName,
    MetaKey::OifName,
    MetaKey::NfProto,
    MetaKey::L4Proto,
    MetaKey::BriIifName,
    MetaKey::BriOifName,
];
const BASES: [PayloadBase; 3] = [
    PayloadBase::LinkLayer,
    PayloadBase::Network,
    PayloadBase::Transport,
];
const FAMILIES: [Family; 4] = [Family::Inet, Family::Ip, Family::Ip6, Family::Bridge];

fn pick<T: Copy>(all: &[T], i: u8) -> T {
    all[usize::from(i) % all.len()]
}

#[derive(Debug, Clone, TypeGenerator)]
enum GExpr {
    Meta(u8, Option<u8>, GReg),
    Payload(u8, u32, u32, GReg),
    PayloadSet(u8, u32, u32, GReg, Option<u32>),
    Cmp(GReg, bool, Vec<u8>),
    Bitwise(GReg, GReg, Vec<u8>, Vec<u8>),
    Lookup(Name, GReg, Option<GReg>, bool),
    ImmediateValue(GReg, Vec<u8>),
    ImmediateVerdict(GVerdict),
    Ct(Option<u8>, GReg),
    Nat(bool, u8, Option<GReg>, Option<GReg>),
    Masq,
    FibDaddrType(GReg),
    Counter,
    /// An expression the codec does not model: read back by name only.
    Other(u8),
}

impl GExpr {
    fn get(&self) -> Expr {
        match self {
            GExpr::Meta(k, other, dreg) => Expr::Meta {
                // Keys beyond the named ones come back as `Other`.
                key: match other {
                    Some(o) => MetaKey::Other(100 + u32::from(*o)),
                    None => pick(&META_KEYS, *k),
                },
                dreg: dreg.get(),
            },
            GExpr::Payload(b, offset, len, dreg) => Expr::Payload {
                base: pick(&BASES, *b),
                offset: *offset,
                len: *len,
                dreg: dreg.get(),
            },
            GExpr::PayloadSet(b, offset, len, sreg, csum_offset) => Expr::PayloadSet {
                base: pick(&BASES, *b),
                offset: *offset,
                len: *len,
                sreg: sreg.get(),
                csum_offset: *csum_offset,
            },
            GExpr::Cmp(sreg, eq, data) => Expr::Cmp {
                sreg: sreg.get(),
                op: if *eq { CmpOp::Eq } else { CmpOp::Neq },
                data: data.clone(),
            },
            GExpr::Bitwise(sreg, dreg, mask, xor) => Expr::Bitwise {
                sreg: sreg.get(),
                dreg: dreg.get(),
                mask: mask.clone(),
                xor: xor.clone(),
            },
            GExpr::Lookup(set, sreg, dreg, invert) => Expr::Lookup {
                set: set.get(),
                sreg: sreg.get(),
                dreg: dreg.as_ref().map(GReg::get),
                invert: *invert,
            },
            GExpr::ImmediateValue(dreg, v) => Expr::Immediate {
                dreg: dreg.get(),
                data: Data::Value(v.clone()),
            },
            GExpr::ImmediateVerdict(v) => Expr::Immediate {
                dreg: Reg::Verdict,
                data: Data::Verdict(v.get()),
            },
            GExpr::Ct(key, dreg) => Expr::Ct {
                key: match key {
                    None => CtKey::State,
                    Some(0) => CtKey::Status,
                    Some(k) => CtKey::Other(100 + u32::from(*k)),
                },
                dreg: dreg.get(),
            },
            GExpr::Nat(snat, f, addr, proto) => Expr::Nat {
                kind: if *snat { NatKind::Snat } else { NatKind::Dnat },
                family: pick(&FAMILIES, *f),
                addr: addr.as_ref().map(GReg::get),
                proto: proto.as_ref().map(GReg::get),
            },
            GExpr::Masq => Expr::Masq,
            GExpr::FibDaddrType(dreg) => Expr::FibDaddrType { dreg: dreg.get() },
            GExpr::Counter => Expr::Counter,
            GExpr::Other(i) => Expr::Other {
                name: pick(&["log", "limit", "quota", "reject", "notrack"], *i).to_string(),
            },
        }
    }
}

const DATA_TYPES: [DataType; 8] = [
    DataType::Ipv4Addr,
    DataType::Ipv6Addr,
    DataType::EtherAddr,
    DataType::InetProto,
    DataType::InetService,
    DataType::Mark,
    DataType::IfName,
    DataType::NfProto,
];
const HOOKS: [Hook; 5] = [
    Hook::Prerouting,
    Hook::Input,
    Hook::Forward,
    Hook::Output,
    Hook::Postrouting,
];
const CHAIN_TYPES: [ChainType; 3] = [ChainType::Filter, ChainType::Nat, ChainType::Route];

#[derive(Debug, Clone, TypeGenerator)]
struct GElement {
    key: Vec<u8>,
    key_end: Option<Vec<u8>>,
    interval_end: bool,
    value: Option<Vec<u8>>,
    verdict: Option<GVerdict>,
}

impl GElement {
    fn get(&self) -> Element {
        let mut e = Element::new(self.key.clone());
        if let Some(end) = &self.key_end {
            e = e.key_end(end.clone());
        }
        if self.interval_end {
            e = e.interval_end();
        }
        match (&self.value, &self.verdict) {
            (Some(v), _) => e.data(v.clone()),
            (None, Some(v)) => e.verdict(v.get()),
            (None, None) => e,
        }
    }
}

/// One object of each kind, built and encoded together.
#[derive(Debug, Clone, TypeGenerator)]
struct Case {
    family: u8,
    table: Name,
    chain: Name,
    exprs: Vec<GExpr>,
    comment: Option<Name>,
    hook: Option<(u8, u8, i32)>,
    policy: Option<bool>,
    set: Name,
    key: Vec<u8>,
    map: Option<Vec<u8>>,
    elements: Vec<GElement>,
    /// Mutations of the encoded bytes: (where, what).
    mutations: Vec<(u16, u8)>,
    /// Where to cut the mutated bytes short, if anywhere.
    cut: Option<u16>,
}

fn types(idx: &[u8]) -> Vec<DataType> {
    let mut t: Vec<_> = idx.iter().take(4).map(|i| pick(&DATA_TYPES, *i)).collect();
    if t.is_empty() {
        t.push(DataType::Ipv4Addr);
    }
    t
}

/// Round trips checked with at least one expression and one element, so that a
/// generator that stops reaching them fails the test.
static FULL_ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

#[test]
fn encodings_decode_back_and_survive_mutation() {
    bolero::check!()
        .with_test_time(budget(3))
        .with_type::<Case>()
        .for_each(|c: &Case| {
            let family = pick(&FAMILIES, c.family);
            let (table, chain, set_name) = (c.table.get(), c.chain.get(), c.set.get());

            let mut rule = Rule::new(family, &table, &chain);
            for e in c.exprs.iter().take(24) {
                rule = rule.expr(e.get());
            }
            if let Some(text) = &c.comment {
                rule = rule.comment(&text.get());
            }
            let mut ch = Chain::regular(family, &table, &chain);
            if let Some((ty, hook, prio)) = c.hook {
                let (ty, hook) = (pick(&CHAIN_TYPES, ty), pick(&HOOKS, hook));
                ch = Chain::base(family, &table, &chain, ty, hook, prio);
                if let Some(accept) = c.policy {
                    ch = ch.policy(if accept { Policy::Accept } else { Policy::Drop });
                }
            }
            let key = types(&c.key);
            let data = c.map.as_deref().map(types);
            let set = match &data {
                Some(d) => Set::map(family, &table, &set_name, &key, d),
                None => Set::new(family, &table, &set_name, &key),
            };
            let elements: Vec<Element> = c.elements.iter().take(16).map(GElement::get).collect();

            let mut b = Batch::new();
            b.add_table(family, &table)
                .add_chain(&ch)
                .add_set(&set)
                .add_rule(&rule)
                .add_elements(family, &table, &set_name, &elements);
            let msgs: Vec<&[u8]> = b.messages().collect();
            assert_eq!(msgs.len(), 5);

            // The round trip.
            assert_eq!(
                decode::table(msgs[0]).unwrap(),
                Some((family, table.clone()))
            );
            let got = decode::chain(msgs[1]).unwrap().unwrap();
            let want = ChainInfo {
                family,
                table: table.clone(),
                name: chain.clone(),
                hook: ch.hook,
                policy: ch.policy,
            };
            assert_eq!(got, want);
            let got = decode::set(msgs[2]).unwrap().unwrap();
            assert_eq!(
                (got.family, got.table.as_str(), got.name.as_str()),
                (family, table.as_str(), set_name.as_str())
            );
            let field_len = |t: &DataType| t.byte_len();
            let total = |ts: &[DataType]| -> u32 {
                match ts {
                    [one] => one.byte_len(),
                    _ => ts.iter().map(|t| field_len(t).next_multiple_of(4)).sum(),
                }
            };
            assert_eq!(got.key_len, total(&key));
            assert_eq!(got.data_len, data.as_deref().map(total));
            let want_fields: Vec<u32> = if key.len() > 1 {
                key.iter().map(field_len).collect()
            } else {
                Vec::new()
            };
            assert_eq!(got.field_lens, want_fields);
            let got = decode::rule(msgs[3]).unwrap().unwrap();
            assert_eq!(got.exprs, rule.exprs());
            assert_eq!(got.comment.as_deref(), rule.comment_text());
            assert_eq!((got.table, got.chain), (table.clone(), chain.clone()));
            assert_eq!(decode::elements(msgs[4]).unwrap(), elements);
            if !rule.exprs().is_empty() && !elements.is_empty() {
                FULL_ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
            }

            // Damaged copies.
            for m in &msgs {
                let mut bad = m.to_vec();
                for &(at, v) in c.mutations.iter().take(8) {
                    let at = usize::from(at) % bad.len();
                    bad[at] = v;
                }
                if let Some(cut) = c.cut {
                    bad.truncate(usize::from(cut) % (bad.len() + 1));
                }
                decode_all(&bad);
            }
        });
    let full = FULL_ROUND_TRIPS.load(Ordering::Relaxed);
    eprintln!("{full} round trips with expressions and elements");
    assert!(
        full >= 100,
        "only {full} round trips reached expressions and elements"
    );
}
