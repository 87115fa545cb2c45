//! Fuzzing the embedded DNS on stable Rust: bolero's random engine, run as ordinary tests
//! with a time budget (no nightly, no libFuzzer, no network).
//!
//! Targets:
//! - `answer_never_panics_on_arbitrary_bytes`: [`answer`] on random bytes, for every kind
//!   of view and both transports;
//! - `answer_matches_a_model_on_mutated_queries`: structure-aware — well-formed queries
//!   (known and unknown names, `name.network`, PTR, case, EDNS, every query type and class)
//!   checked exactly against a model of the name tables, then mutated (bits, bytes, counts,
//!   lengths, compression pointers and loops, truncation, insertions) and checked against
//!   the invariants and against the answer to the same query re-encoded plainly — which
//!   takes the other parser, so the hand-written fast path and the general one must agree;
//! - `tcp_framing_survives_random_streams`: a real [`Server`] on 127.0.0.1, sent random
//!   TCP byte streams — random splits, length prefixes that lie, zero-length messages,
//!   garbage, half-closed, reset and left-open connections — checking every reply and,
//!   after each batch (with its open connections still open), that a fresh query is
//!   answered promptly over UDP and TCP, locally and forwarded.
//!
//! Every answer must be a well-formed DNS response (read strictly, by hand, here) with the
//! query's id. Plain tests at the end pin a few hand-made malformed queries and try clients
//! no random batch makes (one that never reads, many idle ones).
//!
//! Time: `LNET_FUZZ_SECS=N` gives each fuzz target N seconds (default 6, 8 and 10 s: about
//! 24 s in all, half of that in wall time on two CPUs). A failure prints the input and
//! `BOLERO_RANDOM_SEED=…`, which replays it.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket,
};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bolero::generator::TypeGenerator;
use lnet_dns::{Names, Reply, SandboxDns, Server, answer};

// ---------------------------------------------------------------------------------------
// Budget.

fn budget(default_secs: u64) -> Duration {
    let secs = std::env::var("LNET_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(default_secs);
    Duration::from_secs(secs.max(1))
}

// ---------------------------------------------------------------------------------------
// The model: the name tables, and what they should answer.

/// One endpoint of the model: its names (the first answers PTR) and addresses.
struct Entry {
    names: &'static [&'static str],
    addrs: Vec<IpAddr>,
}

/// A network of the model.
struct Net {
    id: &'static str,
    name: &'static str,
    internal: bool,
    entries: Vec<Entry>,
}

struct Model {
    nets: Vec<Net>,
    names: Names,
}

/// The crowd: 40 endpoints sharing one alias — an answer too big for 512 bytes.
const CROWD: usize = 40;
const CROWD_NAMES: [&str; CROWD] = [
    "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10", "c11", "c12", "c13", "c14",
    "c15", "c16", "c17", "c18", "c19", "c20", "c21", "c22", "c23", "c24", "c25", "c26", "c27",
    "c28", "c29", "c30", "c31", "c32", "c33", "c34", "c35", "c36", "c37", "c38", "c39",
];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl Model {
    fn new() -> Model {
        let mut front = vec![
            Entry {
                names: &["web", "web-ep", "www"],
                addrs: vec![ip("10.0.0.2"), ip("fd00::2")],
            },
            Entry {
                names: &["api", "www"],
                addrs: vec![ip("10.0.0.3")],
            },
            Entry {
                names: &["six"],
                addrs: vec![ip("fd00::6")],
            },
        ];
        for (i, n) in CROWD_NAMES.iter().enumerate() {
            let names: &'static [&'static str] = Box::leak(Box::new([*n, "crowd"]));
            front.push(Entry {
                names,
                addrs: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1))],
            });
        }
        let nets = vec![
            Net {
                id: "n1",
                name: "front",
                internal: false,
                entries: front,
            },
            Net {
                id: "n2",
                name: "back",
                internal: true,
                entries: vec![
                    Entry {
                        names: &["db", "DB-Alias"],
                        addrs: vec![ip("10.1.0.2")],
                    },
                    // Also a name on front: a sandbox on both gets both addresses.
                    Entry {
                        names: &["web"],
                        addrs: vec![ip("10.1.0.9")],
                    },
                ],
            },
            Net {
                // Docker allows dots in network names: x.my.net is `x` on `my.net`.
                id: "n3",
                name: "My.Net",
                internal: false,
                entries: vec![Entry {
                    names: &["x"],
                    addrs: vec![ip("10.2.0.2"), ip("10.2.0.3")],
                }],
            },
        ];
        let mut names = Names::new();
        for net in &nets {
            names.add_network(net.id, net.name, net.internal);
            for e in &net.entries {
                names.add(net.id, e.names, &e.addrs);
            }
        }
        Model { nets, names }
    }

    fn net(&self, id: &str) -> Option<&Net> {
        self.nets.iter().find(|n| n.id == id)
    }

    /// Whether unknown names are forwarded for `view`: unless every network of it is
    /// internal (a network the tables do not know counts as not internal).
    fn forwards(&self, view: &[&str]) -> bool {
        view.iter()
            .any(|id| self.net(id).is_none_or(|n| !n.internal))
    }

    /// The addresses of `qname` (lowercase, no trailing dot) for `view`, in order; `None`
    /// when it is not a name there.
    fn lookup(&self, view: &[&str], qname: &str) -> Option<Vec<IpAddr>> {
        let mut out = Vec::new();
        let mut found = false;
        for id in view {
            let Some(net) = self.net(id) else { continue };
            let netname = net.name.to_ascii_lowercase();
            let short = qname
                .strip_suffix(netname.as_str())
                .and_then(|p| p.strip_suffix('.'));
            // A plain name first; `name.network` only if the whole name is no plain name.
            let plain = net
                .entries
                .iter()
                .any(|e| e.names.iter().any(|n| n.eq_ignore_ascii_case(qname)));
            let key = if plain { Some(qname) } else { short };
            let Some(key) = key else { continue };
            for e in &net.entries {
                if e.names.iter().any(|n| n.eq_ignore_ascii_case(key)) {
                    found = true;
                    for a in &e.addrs {
                        if !out.contains(a) {
                            out.push(*a);
                        }
                    }
                }
            }
        }
        found.then_some(out)
    }

    /// The PTR target of `ip` for `view`.
    fn reverse(&self, view: &[&str], ip: IpAddr) -> Option<String> {
        for id in view {
            let Some(net) = self.net(id) else { continue };
            // The last endpoint added with the address names it (none share one here).
            if let Some(e) = net.entries.iter().rev().find(|e| e.addrs.contains(&ip)) {
                return Some(format!(
                    "{}.{}",
                    e.names[0].to_ascii_lowercase(),
                    net.name.to_ascii_lowercase()
                ));
            }
        }
        None
    }
}

/// The views sandboxes may have.
const VIEWS: &[&[&str]] = &[
    &["n1"],
    &["n2"],
    &["n1", "n2"],
    &["n2", "n1"],
    &["n3"],
    &["n2", "n3"],
    &[],
    &["ghost"],
];

/// `4.3.2.1.in-addr.arpa` or 32 nibbles `.ip6.arpa` (lowercase, no trailing dot).
fn reverse_of(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let parts: Vec<u8> = rest
            .split('.')
            .map(|p| p.parse::<u8>().ok())
            .collect::<Option<_>>()?;
        if parts.len() != 4 {
            return None;
        }
        return Some(IpAddr::V4(Ipv4Addr::new(
            parts[3], parts[2], parts[1], parts[0],
        )));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|n| {
            if n.len() == 1 {
                u8::from_str_radix(n, 16).ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let v = nibbles
        .iter()
        .rev()
        .fold(0u128, |v, n| (v << 4) | u128::from(*n));
    Some(IpAddr::V6(Ipv6Addr::from(v)))
}

fn ptr_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v) => {
            let mut s = String::new();
            for b in v.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0x0f, b >> 4));
            }
            s + "ip6.arpa"
        }
    }
}

/// Names worth asking: the model's, `name.network`, PTR names, and names that are not.
fn interesting_names() -> Vec<String> {
    let mut v: Vec<String> = [
        "web",
        "WEB",
        "web-ep",
        "www",
        "api",
        "six",
        "crowd",
        "CROWD.front",
        "Crowd",
        "crowd.front",
        "c7",
        "c39.front",
        "db",
        "db-alias",
        "db.back",
        "web.back",
        "web.front",
        "www.front",
        "x",
        "x.my.net",
        "X.MY.NET",
        "x.my",
        "my.net",
        "front",
        "back",
        "web.front.back",
        "example.org",
        "nosuch",
        "",
        "in-addr.arpa",
        "ip6.arpa",
        "2.0.0.10.in-addr.arpa.extra",
        "02.0.0.10.in-addr.arpa",
        "1.0.0.10.in-addr.arpa",
        "0.0.10.in-addr.arpa",
        "256.0.0.10.in-addr.arpa",
        "2.0.0.10.IN-ADDR.ARPA",
        "1.1.1.1.in-addr.arpa",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for a in [
        "10.0.0.2", "10.0.0.3", "10.0.1.7", "10.1.0.2", "10.1.0.9", "10.2.0.3", "fd00::2",
        "fd00::6", "fd00::7",
    ] {
        v.push(ptr_name(ip(a)));
    }
    v
}

// ---------------------------------------------------------------------------------------
// Queries: a structured description, its wire form, and mutations of it.

#[derive(Debug, Clone, TypeGenerator)]
enum NameSpec {
    /// One of [`interesting_names`].
    Known(u8),
    /// `crowd`, whose 40 addresses do not fit 512 bytes (so truncation is tried often).
    Crowd,
    /// Labels of `[a-z0-9-]` (from these bytes), at most 253 characters in all.
    Labels(Vec<Vec<u8>>),
}

#[derive(Debug, Clone, Copy, TypeGenerator)]
enum QType {
    A,
    Aaaa,
    Any,
    Ptr,
    Mx,
    Txt,
    Https,
    /// Any value (types `simple-dns` does not know among them).
    Raw(u16),
}

impl QType {
    fn code(self) -> u16 {
        match self {
            QType::A => 1,
            QType::Aaaa => 28,
            QType::Any => 255,
            QType::Ptr => 12,
            QType::Mx => 15,
            QType::Txt => 16,
            QType::Https => 65,
            QType::Raw(v) => v,
        }
    }
}

#[derive(Debug, Clone, Copy, TypeGenerator)]
enum QClass {
    In,
    Any,
    Ch,
    Hs,
    Raw(u16),
}

impl QClass {
    fn code(self) -> u16 {
        match self {
            QClass::In => 1,
            QClass::Any => 255,
            QClass::Ch => 3,
            QClass::Hs => 4,
            QClass::Raw(v) => v,
        }
    }
}

#[derive(Debug, Clone, TypeGenerator)]
struct Edns {
    size: u16,
    dnssec_ok: bool,
    /// Options (code, data), encoded properly.
    options: Vec<(u16, Vec<u8>)>,
}

#[derive(Debug, Clone, TypeGenerator)]
enum Mutation {
    FlipBit {
        at: u16,
        bit: u8,
    },
    SetByte {
        at: u16,
        value: u8,
    },
    Truncate {
        at: u16,
    },
    Insert {
        at: u16,
        bytes: Vec<u8>,
    },
    Remove {
        at: u16,
        len: u8,
    },
    /// One of the four section counts (0 questions, 1 answers, 2 authority, 3 additional).
    SetCount {
        which: u8,
        value: u16,
    },
    SetOpcode(u8),
    /// Turns the query into a response.
    SetQr,
    /// Replaces the question name from one of its labels on with a pointer (`to` picks
    /// where to: the name itself — a loop —, its start, the header, anywhere).
    Pointer {
        label: u8,
        to: u16,
    },
    /// A label length that lies.
    LabelLength {
        label: u8,
        value: u8,
    },
    /// EDNS version other than 0 (only when there is an OPT record).
    EdnsVersion(u8),
    /// Appends a copy of the question (a second question, if the count says so).
    DuplicateQuestion,
    Append(Vec<u8>),
}

#[derive(Debug, Clone, TypeGenerator)]
struct Query {
    id: u16,
    recursion_desired: bool,
    /// AD and CD, as a client may set them (Z only by mutation: `simple-dns`, and so the
    /// general path, refuses it).
    other_flags: u8,
    name: NameSpec,
    /// Bit i: upper-case character i of the name.
    case: u64,
    qtype: QType,
    qclass: QClass,
    edns: Option<Edns>,
    view: u8,
    tcp: bool,
    turn: u16,
    /// Whether `mutations` are applied (half the queries stay well-formed).
    mutated: bool,
    mutations: Vec<Mutation>,
}

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";

impl Query {
    /// The mutations applied (at most `max`).
    fn applied(&self, max: usize) -> &[Mutation] {
        if self.mutated {
            &self.mutations[..self.mutations.len().min(max)]
        } else {
            &[]
        }
    }

    /// The question name, lowercase, dotted, no trailing dot.
    fn qname(&self, known: &[String]) -> String {
        match &self.name {
            NameSpec::Known(i) => known[usize::from(*i) % known.len()].to_ascii_lowercase(),
            NameSpec::Crowd => "crowd".into(),
            NameSpec::Labels(labels) => {
                let mut out = String::new();
                for l in labels.iter().take(8) {
                    let l: String = l
                        .iter()
                        .take(63)
                        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
                        .collect();
                    if l.is_empty() {
                        continue;
                    }
                    let sep = usize::from(!out.is_empty());
                    if out.len() + sep + l.len() > 253 {
                        break;
                    }
                    if sep == 1 {
                        out.push('.');
                    }
                    out.push_str(&l);
                }
                out
            }
        }
    }

    /// The name as the client writes it (the case bits applied; known names keep theirs).
    fn written_name(&self, known: &[String]) -> String {
        let base = match &self.name {
            NameSpec::Known(i) => known[usize::from(*i) % known.len()].clone(),
            NameSpec::Labels(_) | NameSpec::Crowd => self.qname(known),
        };
        base.chars()
            .enumerate()
            .map(|(i, c)| {
                if i < 64 && self.case & (1 << i) != 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }

    fn view(&self) -> &'static [&'static str] {
        VIEWS[usize::from(self.view) % VIEWS.len()]
    }

    /// The query's wire form before mutations, and where its question starts and ends.
    fn wire(&self, known: &[String]) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&self.id.to_be_bytes());
        b.push(u8::from(self.recursion_desired));
        b.push(self.other_flags & 0x30);
        b.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(self.edns.is_some())]);
        let name = self.written_name(known);
        for label in name.split('.').filter(|l| !l.is_empty()) {
            b.push(label.len() as u8);
            b.extend_from_slice(label.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&self.qtype.code().to_be_bytes());
        b.extend_from_slice(&self.qclass.code().to_be_bytes());
        if let Some(e) = &self.edns {
            b.extend_from_slice(&[0, 0, 41]);
            b.extend_from_slice(&e.size.to_be_bytes());
            b.extend_from_slice(&[0, 0, if e.dnssec_ok { 0x80 } else { 0 }, 0]);
            let mut rdata = Vec::new();
            for (code, data) in e.options.iter().take(4) {
                let data = &data[..data.len().min(32)];
                rdata.extend_from_slice(&code.to_be_bytes());
                rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
                rdata.extend_from_slice(data);
            }
            b.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            b.extend_from_slice(&rdata);
        }
        b
    }
}

/// Offsets of the question name's labels in `b` (from 12, until the root or the end).
fn label_offsets(b: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 12;
    while let Some(&len) = b.get(i) {
        if len == 0 || len > 63 {
            break;
        }
        out.push(i);
        i += 1 + usize::from(len);
    }
    out
}

/// End of the question (after type and class), if it is plain.
fn question_end(b: &[u8]) -> Option<usize> {
    let mut i = 12;
    loop {
        let len = usize::from(*b.get(i)?);
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        i += 1 + len;
    }
    let end = i + 5;
    (end <= b.len()).then_some(end)
}

fn mutate(b: &mut Vec<u8>, m: &Mutation) {
    let pos = |at: u16, len: usize| if len == 0 { 0 } else { usize::from(at) % len };
    match m {
        Mutation::FlipBit { at, bit } => {
            if !b.is_empty() {
                let i = pos(*at, b.len());
                b[i] ^= 1 << (bit % 8);
            }
        }
        Mutation::SetByte { at, value } => {
            if !b.is_empty() {
                let i = pos(*at, b.len());
                b[i] = *value;
            }
        }
        Mutation::Truncate { at } => {
            let i = pos(*at, b.len() + 1);
            b.truncate(i);
        }
        Mutation::Insert { at, bytes } => {
            let i = pos(*at, b.len() + 1);
            let bytes = &bytes[..bytes.len().min(16)];
            b.splice(i..i, bytes.iter().copied());
        }
        Mutation::Remove { at, len } => {
            if !b.is_empty() {
                let i = pos(*at, b.len());
                let j = (i + usize::from(*len % 16) + 1).min(b.len());
                b.drain(i..j);
            }
        }
        Mutation::SetCount { which, value } => {
            let i = 4 + 2 * usize::from(which % 4);
            if b.len() >= i + 2 {
                b[i..i + 2].copy_from_slice(&value.to_be_bytes());
            }
        }
        Mutation::SetOpcode(op) => {
            if b.len() > 2 {
                b[2] = (b[2] & !0x78) | ((op & 0x0f) << 3);
            }
        }
        Mutation::SetQr => {
            if b.len() > 2 {
                b[2] |= 0x80;
            }
        }
        Mutation::Pointer { label, to } => {
            let labels = label_offsets(b);
            let Some(end) = question_end(b) else { return };
            let start = if labels.is_empty() {
                12
            } else {
                labels[usize::from(*label) % labels.len()]
            };
            let name_end = end - 4; // just past the root label
            // Pointers to the name itself (a loop), into the header, forward, anywhere.
            let target = match to % 4 {
                0 => start as u16,
                1 => 12,
                2 => u16::from(*label) % 12,
                _ => *to % (b.len() as u16 + 8),
            };
            let ptr = [0xc0 | ((target >> 8) as u8 & 0x3f), target as u8];
            b.splice(start..name_end, ptr);
        }
        Mutation::LabelLength { label, value } => {
            let labels = label_offsets(b);
            if !labels.is_empty() {
                let i = labels[usize::from(*label) % labels.len()];
                b[i] = *value;
            }
        }
        Mutation::EdnsVersion(v) => {
            if let Some(end) = question_end(b)
                && b.len() >= end + 11
                && b[end] == 0
                && b[end + 1..end + 3] == [0, 41]
            {
                b[end + 6] = (*v).max(1);
            }
        }
        Mutation::DuplicateQuestion => {
            if let Some(end) = question_end(b) {
                let q = b[12..end].to_vec();
                b.splice(end..end, q);
            }
        }
        Mutation::Append(bytes) => b.extend_from_slice(&bytes[..bytes.len().min(32)]),
    }
}

// ---------------------------------------------------------------------------------------
// Checking answers.

/// A DNS message as read by [`read_msg`].
#[derive(Debug)]
struct Msg {
    counts: [u16; 4],
    /// The first question: name (lowercase, dotted, no trailing dot), type, class.
    question: Option<(String, u16, u16)>,
    /// Answer records: name, type, class, TTL, data (a PTR's target as its dotted text).
    answers: Vec<(String, u16, u16, u32, Vec<u8>)>,
    /// Whether an additional record is an OPT.
    edns: bool,
}

/// Reads a DNS message, walking every section: every count matches its section, every
/// name is made of labels of at most 63 bytes and at most 255 bytes in all, every record's
/// data fits. `strict` (what lnet writes): compression pointers point backwards at an
/// earlier name (not into the header), and nothing trails the last record; otherwise (what
/// lnet may pass on) a pointer may point anywhere in the message (the chain is bounded)
/// and bytes may trail.
fn read_msg(m: &[u8], strict: bool) -> Result<Msg, String> {
    if m.len() < 12 {
        return Err(format!("{} bytes: shorter than a header", m.len()));
    }
    let counts = [4, 6, 8, 10].map(|i| u16::from_be_bytes([m[i], m[i + 1]]));
    // A name at `i`: its text and where it ends.
    let name = |mut i: usize| -> Result<(String, usize), String> {
        let mut text = String::new();
        let mut wire_len = 0usize;
        let mut end = None;
        let mut hops = 0;
        let mut limit = i; // a strict pointer points before where its name starts
        loop {
            let len = *m
                .get(i)
                .ok_or_else(|| format!("name runs past the end at {i}"))?;
            match len {
                0 => {
                    wire_len += 1;
                    if wire_len > 255 {
                        return Err(format!("name longer than 255 bytes at {i}"));
                    }
                    return Ok((text, end.unwrap_or(i + 1)));
                }
                1..=63 => {
                    let l = usize::from(len);
                    let label = m
                        .get(i + 1..i + 1 + l)
                        .ok_or_else(|| format!("label runs past the end at {i}"))?;
                    if !text.is_empty() {
                        text.push('.');
                    }
                    text.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
                    wire_len += 1 + l;
                    i += 1 + l;
                }
                0xc0..=0xff => {
                    let lo = *m.get(i + 1).ok_or("pointer cut short")?;
                    let to = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                    if strict && (to >= limit || to < 12) || to >= m.len() {
                        return Err(format!("pointer at {i} to {to}"));
                    }
                    end.get_or_insert(i + 2);
                    hops += 1;
                    if hops > 64 {
                        return Err("pointer chain too long (a loop?)".into());
                    }
                    limit = to;
                    i = to;
                }
                _ => return Err(format!("reserved label type {len:#x} at {i}")),
            }
        }
    };
    let mut i = 12;
    let mut question = None;
    for _ in 0..counts[0] {
        let (qname, at) = name(i)?;
        let tc = m.get(at..at + 4).ok_or("question cut short")?;
        let q = (
            qname,
            u16::from_be_bytes([tc[0], tc[1]]),
            u16::from_be_bytes([tc[2], tc[3]]),
        );
        question.get_or_insert(q);
        i = at + 4;
    }
    let mut answers = Vec::new();
    let mut edns = false;
    let records = u32::from(counts[1]) + u32::from(counts[2]) + u32::from(counts[3]);
    for n in 0..records {
        let (rname, at) = name(i)?;
        let h = m.get(at..at + 10).ok_or("record header cut short")?;
        let rtype = u16::from_be_bytes([h[0], h[1]]);
        let class = u16::from_be_bytes([h[2], h[3]]);
        let ttl = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let rdlen = usize::from(u16::from_be_bytes([h[8], h[9]]));
        let rdata = m
            .get(at + 10..at + 10 + rdlen)
            .ok_or("record data cut short")?;
        // What lnet passes on is not its to check record by record.
        let data = if rtype == 12 && strict {
            let (target, target_end) = name(at + 10)?;
            if target_end != at + 10 + rdlen {
                return Err(format!(
                    "PTR data of {rdlen} bytes holds a name of another length"
                ));
            }
            target.into_bytes()
        } else {
            rdata.to_vec()
        };
        if n < u32::from(counts[1]) {
            answers.push((rname, rtype, class, ttl, data));
        } else if n >= u32::from(counts[1]) + u32::from(counts[2]) && rtype == 41 {
            edns = true;
        }
        i = at + 10 + rdlen;
    }
    if strict && i != m.len() {
        return Err(format!("{} bytes after the last record", m.len() - i));
    }
    Ok(Msg {
        counts,
        question,
        answers,
        edns,
    })
}

/// What an answer says, for comparing two answers to the same question.
#[derive(Debug, PartialEq, Eq)]
enum Said {
    Drop,
    Forward,
    Answer {
        rcode: u8,
        /// AA, TC, RD, RA.
        flags: [bool; 4],
        question: Option<(String, u16, u16)>,
        /// Type and data of each answer record, in order.
        answers: Vec<(u16, Vec<u8>)>,
        edns: bool,
    },
}

/// Checks the invariants every reply to `query` keeps, and says what it said.
fn check(model: &Model, view: &[&str], query: &[u8], tcp: bool, reply: &Reply) -> Said {
    let header_ok = query.len() >= 12
        && query[2] & 0x80 == 0
        && (query[2] >> 3) & 0x0f == 0
        && query[4..6] == [0, 1]
        && query[6..10] == [0, 0, 0, 0]
        && u16::from_be_bytes([query[10], query[11]]) <= 1;
    match reply {
        Reply::Drop => {
            assert!(
                query.len() < 12 || query[2] & 0x80 != 0,
                "dropped a query that is neither short nor a response: {query:02x?}"
            );
            Said::Drop
        }
        Reply::Forward => {
            assert!(
                header_ok,
                "forwarded a query with a bad header: {query:02x?}"
            );
            assert!(
                model.forwards(view),
                "forwarded for a view that does not forward ({view:?}): {query:02x?}"
            );
            // Well-formed as far as its counts go (bytes after that are ignored, as
            // `simple-dns` does, and go upstream with the rest; so are pointers that point
            // at any name in the message, such as a zero byte of the header).
            if let Err(e) = read_msg(query, false) {
                panic!("forwarded a malformed query ({e}): {query:02x?}");
            }
            Said::Forward
        }
        Reply::Answer(b) => {
            assert!(query.len() >= 12, "answered {} bytes", query.len());
            let msg = read_msg(b, true).unwrap_or_else(|e| {
                panic!("a malformed reply ({e}):\n query {query:02x?}\n reply {b:02x?}")
            });
            assert_eq!(b[..2], query[..2], "the query's id: {b:02x?}");
            assert!(b[2] & 0x80 != 0, "QR set: {b:02x?}");
            assert_eq!(b[2] & 0x01, query[2] & 0x01, "RD copied: {b:02x?}");
            let rcode = b[3] & 0x0f;
            assert!(
                [0, 1, 4, 5].contains(&rcode),
                "rcode {rcode} (NOERROR, FORMERR, NOTIMP or REFUSED only): {b:02x?}"
            );
            let tc = b[2] & 0x02 != 0;
            if !tcp {
                let limit = if msg.edns { 1232 } else { 512 };
                assert!(b.len() <= limit, "{} bytes over UDP: {b:02x?}", b.len());
            }
            if tc {
                assert!(!tcp, "TC over TCP: {b:02x?}");
                assert_eq!(
                    msg.counts[1], 0,
                    "a truncated reply has no answers: {b:02x?}"
                );
            }
            assert!(msg.counts[0] <= 1, "at most the question asked: {b:02x?}");
            if !msg.answers.is_empty() || rcode == 0 && msg.counts[0] > 0 {
                assert!(header_ok, "answered a bad header: {b:02x?}");
                assert_eq!(rcode, 0, "records only with NOERROR: {b:02x?}");
            }
            let mut answers = Vec::new();
            for (name, rtype, class, ttl, data) in &msg.answers {
                let (qname, _, _) = msg.question.as_ref().expect("answers with a question");
                assert_eq!(name, qname, "answers are about the question: {b:02x?}");
                assert_eq!((*class, *ttl), (1, 600), "class IN, TTL 600: {b:02x?}");
                let len_ok = match rtype {
                    1 => data.len() == 4,
                    28 => data.len() == 16,
                    12 => true,
                    _ => false,
                };
                assert!(len_ok, "an A, AAAA or PTR record: {b:02x?}");
                answers.push((*rtype, data.clone()));
            }
            let flag = |bit: u8, byte: usize| b[byte] & bit != 0;
            Said::Answer {
                rcode,
                flags: [flag(0x04, 2), tc, flag(0x01, 2), flag(0x80, 3)],
                question: msg.question,
                answers,
                edns: msg.edns,
            }
        }
    }
}

/// What the model says to a well-formed query: exactly.
fn expect(model: &Model, q: &Query, known: &[String], wire: &[u8]) -> Said {
    let view = q.view();
    let qname = q.qname(known);
    let (qtype, qclass) = (q.qtype.code(), q.qclass.code());
    let local = qclass == 1 || qclass == 255;
    let found: Option<Vec<(u16, Vec<u8>)>> = if !local {
        None
    } else if qtype == 12 {
        reverse_of(&qname)
            .and_then(|ip| model.reverse(view, ip))
            .map(|t| vec![(12, t.into_bytes())])
    } else {
        model.lookup(view, &qname).map(|mut addrs| {
            if !addrs.is_empty() {
                let n = usize::from(q.turn) % addrs.len();
                addrs.rotate_left(n);
            }
            addrs
                .iter()
                .filter(|a| match qtype {
                    1 => a.is_ipv4(),
                    28 => a.is_ipv6(),
                    255 => true,
                    _ => false,
                })
                .map(|a| match a {
                    IpAddr::V4(v) => (1, v.octets().to_vec()),
                    IpAddr::V6(v) => (28, v.octets().to_vec()),
                })
                .collect()
        })
    };
    let question = Some((qname.clone(), qtype, qclass));
    let rd = q.recursion_desired;
    let edns = q.edns.is_some();
    let Some(answers) = found else {
        if model.forwards(view) {
            return Said::Forward;
        }
        return Said::Answer {
            rcode: 5,
            flags: [false, false, rd, true],
            question,
            answers: Vec::new(),
            edns,
        };
    };
    // Truncated when it does not fit: header, question, records (name by pointer), OPT.
    let question_len = question_end(wire).expect("a plain question") - 12;
    let size = 12
        + question_len
        + answers
            .iter()
            .map(|(t, d)| 12 + rdata_len(*t, d))
            .sum::<usize>()
        + if edns { 11 } else { 0 };
    let limit = match (&q.edns, q.tcp) {
        (_, true) => 65535,
        (Some(e), false) => usize::from(e.size.clamp(512, 1232)),
        (None, false) => 512,
    };
    let tc = size > limit;
    Said::Answer {
        rcode: 0,
        flags: [true, tc, rd, true],
        question,
        answers: if tc { Vec::new() } else { answers },
        edns,
    }
}

fn rdata_len(t: u16, d: &[u8]) -> usize {
    if t == 12 {
        // A name: its dotted text plus the length byte before the first label and the root.
        d.len() + 2
    } else {
        d.len()
    }
}

/// Whether `query` is one the model predicts exactly: built with no mutation, a type and
/// class `simple-dns` knows (the general parser's FORMERR for others is its own matter),
/// and a name.
fn predictable(q: &Query) -> bool {
    let known_type = matches!(
        q.qtype,
        QType::A | QType::Aaaa | QType::Any | QType::Ptr | QType::Mx | QType::Txt | QType::Https
    );
    let known_class = matches!(q.qclass, QClass::In | QClass::Any | QClass::Ch | QClass::Hs);
    q.applied(usize::MAX).is_empty() && known_type && known_class
}

// ---------------------------------------------------------------------------------------
// Target 1: answer().

#[test]
fn answer_never_panics_on_arbitrary_bytes() {
    let model = Model::new();
    let m = AssertUnwindSafe(&model);
    bolero::check!()
        .with_test_time(budget(6))
        .with_max_len(1024)
        .for_each(move |bytes: &[u8]| {
            let model = *m;
            for (i, view) in VIEWS.iter().enumerate() {
                let tcp = i % 2 == 0;
                let r = answer(&model.names, view, bytes, tcp, i);
                check(model, view, bytes, tcp, &r);
            }
        });
}

/// How often each check of the structured target ran: predicted exactly, compared with
/// the plain re-encoding, and of those, how many took the general parser (the fast path
/// declined the original) — so a generator that stops reaching a check fails the test.
static PREDICTED: AtomicU64 = AtomicU64::new(0);
static COMPARED: AtomicU64 = AtomicU64::new(0);
static ANSWERED_LOCALLY: AtomicU64 = AtomicU64::new(0);
static TRUNCATED: AtomicU64 = AtomicU64::new(0);

#[test]
fn answer_matches_a_model_on_mutated_queries() {
    let model = Model::new();
    let known = interesting_names();
    let m = AssertUnwindSafe((&model, &known));
    bolero::check!()
        .with_test_time(budget(8))
        .with_type::<Query>()
        .for_each(move |q: &Query| {
            let (model, known) = *m;
            let view = q.view();
            let clean = q.wire(known);
            let mut bytes = clean.clone();
            for mu in q.applied(6) {
                mutate(&mut bytes, mu);
            }
            let turn = usize::from(q.turn);
            let reply = answer(&model.names, view, &bytes, q.tcp, turn);
            let said = check(model, view, &bytes, q.tcp, &reply);
            if predictable(q) {
                assert_eq!(
                    said,
                    expect(model, q, known, &clean),
                    "the model's answer to {q:?}\n query {bytes:02x?}\n reply {reply:02x?}"
                );
                PREDICTED.fetch_add(1, Ordering::Relaxed);
                // A byte after the question: the fast path leaves the query to the general
                // parser (which ignores what trails), and the answer must be the same.
                let mut trailing = clean.clone();
                trailing.push(0);
                let general = answer(&model.names, view, &trailing, q.tcp, turn);
                assert_eq!(
                    check(model, view, &trailing, q.tcp, &general),
                    said,
                    "the general parser's answer to {q:?}\n query {trailing:02x?}\n reply {general:02x?}"
                );
                if let Said::Answer {
                    rcode: 0,
                    flags,
                    answers,
                    ..
                } = &said
                {
                    if !answers.is_empty() {
                        ANSWERED_LOCALLY.fetch_add(1, Ordering::Relaxed);
                    }
                    if flags[1] {
                        TRUNCATED.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // The same query, re-encoded plainly (another parser path), says the same.
            if let Ok(p) = simple_dns::Packet::parse(&bytes)
                && let Ok(plain) = p.build_bytes_vec()
                && plain != bytes
            {
                let again = answer(&model.names, view, &plain, q.tcp, turn);
                let said_again = check(model, view, &plain, q.tcp, &again);
                assert_eq!(
                    said, said_again,
                    "two encodings of one query, two answers:\n query {bytes:02x?}\n plain {plain:02x?}"
                );
                COMPARED.fetch_add(1, Ordering::Relaxed);
            }
        });
    let counts =
        [&PREDICTED, &ANSWERED_LOCALLY, &TRUNCATED, &COMPARED].map(|c| c.load(Ordering::Relaxed));
    eprintln!(
        "predicted {} (answered locally {}, truncated {}), compared with a re-encoding {}",
        counts[0], counts[1], counts[2], counts[3]
    );
    assert!(counts.iter().all(|c| *c > 0), "every check ran: {counts:?}");
}

// ---------------------------------------------------------------------------------------
// Target 2: the server's TCP framing.

/// An upstream on 127.0.0.1 (one port, UDP and TCP) that answers every query with
/// 192.0.2.1.
fn upstream() -> SocketAddr {
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    fn reply(q: &[u8]) -> Option<Vec<u8>> {
        let q = simple_dns::Packet::parse(q).ok()?;
        let mut r = q.clone().into_reply();
        let qname = q.questions.first()?.qname.clone();
        r.answers.push(simple_dns::ResourceRecord::new(
            qname,
            simple_dns::CLASS::IN,
            60,
            simple_dns::rdata::RData::A(simple_dns::rdata::A {
                address: u32::from(Ipv4Addr::new(192, 0, 2, 1)),
            }),
        ));
        r.build_bytes_vec().ok()
    }
    // The threads live as long as the test process (one upstream per test).
    std::thread::spawn(move || {
        let mut buf = [0u8; 65535];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            if let Some(r) = reply(&buf[..n]) {
                let _ = udp.send_to(&r, from);
            }
        }
    });
    std::thread::spawn(move || {
        for mut s in tcp.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut len = [0u8; 2];
                while s.read_exact(&mut len).is_ok() {
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if s.read_exact(&mut q).is_err() {
                        break;
                    }
                    let Some(r) = reply(&q) else { break };
                    let framed = [&(r.len() as u16).to_be_bytes()[..], &r].concat();
                    if s.write_all(&framed).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A server for the model's names, serving sandbox "s" (view n1) on 127.0.0.1.
fn start_server(model: &Model) -> (Server, SocketAddr) {
    let server = Server::new(1).unwrap();
    server.set_names(model.names.clone());
    server.set_sandbox(
        "s",
        SandboxDns {
            view: vec!["n1".into()],
            upstreams: vec![upstream()],
        },
    );
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
            break (udp, tcp);
        }
    };
    let at = udp.local_addr().unwrap();
    server.serve("s", udp, tcp).unwrap();
    (server, at)
}

fn query_bytes(name: &str, qtype: u16, id: u16) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        b.push(l.len() as u8);
        b.extend_from_slice(l.as_bytes());
    }
    b.extend_from_slice(&[0]);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&[0, 1]);
    b
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut f = (msg.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(msg);
    f
}

/// The first A record of a reply.
fn first_a(reply: &[u8]) -> Option<Ipv4Addr> {
    let p = simple_dns::Packet::parse(reply).ok()?;
    p.answers.iter().find_map(|rr| match &rr.rdata {
        simple_dns::rdata::RData::A(a) => Some(Ipv4Addr::from(a.address)),
        _ => None,
    })
}

static IDS: AtomicU16 = AtomicU16::new(1);

/// How long a health query may take: generous for a debug build on a busy CI machine,
/// far below any hang (a TCP client is dropped only after 10 s of silence).
const PROMPT: Duration = Duration::from_secs(3);

fn ask_udp(at: SocketAddr, name: &str) -> Result<Vec<u8>, String> {
    let id = IDS.fetch_add(1, Ordering::Relaxed);
    let c = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(PROMPT)).unwrap();
    c.send_to(&query_bytes(name, 1, id), at)
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2048];
    loop {
        let (n, _) = c
            .recv_from(&mut buf)
            .map_err(|e| format!("UDP {name}: {e}"))?;
        if buf[..2] == id.to_be_bytes() {
            return Ok(buf[..n].to_vec());
        }
    }
}

fn ask_tcp(at: SocketAddr, name: &str) -> Result<Vec<u8>, String> {
    let id = IDS.fetch_add(1, Ordering::Relaxed);
    let mut c = TcpStream::connect_timeout(&at, PROMPT).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(PROMPT)).unwrap();
    c.write_all(&framed(&query_bytes(name, 1, id)))
        .map_err(|e| e.to_string())?;
    let reply = read_frame(&mut c).map_err(|e| format!("TCP {name}: {e}"))?;
    if reply[..2] != id.to_be_bytes() {
        return Err(format!("TCP {name}: another id: {reply:02x?}"));
    }
    Ok(reply)
}

fn read_frame(c: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    c.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    c.read_exact(&mut buf)?;
    Ok(buf)
}

/// The server answers a fresh query promptly over UDP and TCP, local and forwarded.
#[track_caller]
fn assert_healthy(at: SocketAddr, context: &dyn std::fmt::Debug) {
    let web = Some(Ipv4Addr::new(10, 0, 0, 2));
    let outside = Some(Ipv4Addr::new(192, 0, 2, 1));
    for (name, want) in [("web", web), ("example.org", outside)] {
        let t = Instant::now();
        let udp = ask_udp(at, name);
        assert_eq!(
            udp.as_deref().map(first_a),
            Ok(want),
            "UDP {name} after {context:?} ({:?})",
            t.elapsed()
        );
        let t = Instant::now();
        let tcp = ask_tcp(at, name);
        assert_eq!(
            tcp.as_deref().map(first_a),
            Ok(want),
            "TCP {name} after {context:?} ({:?})",
            t.elapsed()
        );
    }
}

#[derive(Debug, Clone, TypeGenerator)]
enum Piece {
    /// A framed query for one of a few names (local and forwarded).
    Query { name: u8, id: u16 },
    /// A framed message made from a mutated query.
    Mutated(Box<Query>),
    /// Raw bytes.
    Garbage(Vec<u8>),
    /// A length prefix, then `body` — longer or shorter than it says.
    Lying { claim: u16, body: Vec<u8> },
    /// `00 00`.
    Empty,
    /// Half a length prefix.
    HalfLength(u8),
}

const STREAM_NAMES: &[&str] = &[
    "web",
    "www",
    "crowd",
    "c3.front",
    "example.org",
    "nosuch.test",
];

#[derive(Debug, Clone, Copy, TypeGenerator)]
enum End {
    /// Shut down writing, then read every reply until the server closes.
    HalfClose,
    /// Close without reading (an RST when replies are unread).
    Close,
    /// Keep it open, silent, until after the health check.
    LeaveOpen,
}

#[derive(Debug, Clone, TypeGenerator)]
struct Conn {
    /// Only the valid queries among `pieces` are sent.
    only_queries: bool,
    pieces: Vec<Piece>,
    /// Sizes of the writes the stream is cut into (cycled).
    chunks: Vec<u8>,
    end: End,
}

#[derive(Debug, Clone, TypeGenerator)]
struct Batch {
    conns: Vec<Conn>,
}

impl Piece {
    /// The bytes, and the id of a query that must be answered (valid and framed).
    fn bytes(&self, known: &[String]) -> (Vec<u8>, Option<u16>) {
        match self {
            Piece::Query { name, id } => {
                let name = STREAM_NAMES[usize::from(*name) % STREAM_NAMES.len()];
                (framed(&query_bytes(name, 1, *id)), Some(*id))
            }
            Piece::Mutated(q) => {
                let mut b = q.wire(known);
                for m in q.applied(4) {
                    mutate(&mut b, m);
                }
                b.truncate(600);
                (framed(&b), None)
            }
            Piece::Garbage(g) => (g[..g.len().min(64)].to_vec(), None),
            Piece::Lying { claim, body } => {
                let mut b = claim.to_be_bytes().to_vec();
                b.extend_from_slice(&body[..body.len().min(64)]);
                (b, None)
            }
            Piece::Empty => (vec![0, 0], None),
            Piece::HalfLength(b) => (vec![*b], None),
        }
    }
}

/// Runs one connection's stream; returns it when it is to stay open.
fn run_conn(at: SocketAddr, conn: &Conn, known: &[String]) -> Option<TcpStream> {
    let mut stream = Vec::new();
    // A stream of nothing but valid queries, however it is cut: every one is answered, in
    // order. (After a message the server will not answer it drops the connection, and
    // today replies to the queries before it can be lost with it — the reset of a close
    // with unread input discards a reply still held back by Nagle's algorithm; so that is
    // not asserted for mixed streams.)
    let mut must = Vec::new();
    let mut clean = true;
    let pieces = conn
        .pieces
        .iter()
        .filter(|p| !conn.only_queries || matches!(p, Piece::Query { .. }))
        .take(8);
    for p in pieces {
        let (b, id) = p.bytes(known);
        match id {
            Some(id) => must.push(id),
            None => clean = false,
        }
        stream.extend_from_slice(&b);
    }
    if !clean {
        must.clear();
    }
    let mut c = TcpStream::connect_timeout(&at, PROMPT).expect("connect to the server");
    c.set_nodelay(true).unwrap();
    c.set_write_timeout(Some(PROMPT)).unwrap();
    let mut i = 0;
    let mut k = 0;
    while i < stream.len() {
        let size = conn
            .chunks
            .get(k % conn.chunks.len().max(1))
            .map_or(stream.len(), |s| usize::from(*s).max(1));
        let j = (i + size).min(stream.len());
        // The server may close first (a message it will not answer): that is its right.
        if c.write_all(&stream[i..j]).is_err() {
            break;
        }
        i = j;
        k += 1;
    }
    match conn.end {
        End::LeaveOpen => Some(c),
        End::Close => None,
        End::HalfClose => {
            let _ = c.shutdown(Shutdown::Write);
            // Every reply until the server closes: well-formed, in order for the queries
            // that came first; and the close must come (no connection hangs the server's
            // side of it). Forwarded queries take a loopback round trip each.
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let started = Instant::now();
            let mut replies = Vec::new();
            loop {
                match read_frame(&mut c) {
                    Ok(r) => replies.push(r),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                    Err(e) => panic!(
                        "the server did not close a half-closed connection within 5 s \
                         ({e}, {:?})",
                        started.elapsed()
                    ),
                }
            }
            for (n, r) in replies.iter().enumerate() {
                let msg = read_msg(r, true)
                    .unwrap_or_else(|e| panic!("a malformed reply ({e}): {r:02x?}"));
                assert!(r[2] & 0x80 != 0, "a response: {r:02x?}");
                assert!(msg.counts[0] <= 1, "{r:02x?}");
                if let Some(id) = must.get(n) {
                    assert_eq!(r[..2], id.to_be_bytes(), "reply {n} answers query {n}");
                }
            }
            assert!(
                replies.len() >= must.len(),
                "{} replies to {} queries",
                replies.len(),
                must.len()
            );
            None
        }
    }
}

#[test]
fn tcp_framing_survives_random_streams() {
    let model = Model::new();
    let known = interesting_names();
    let (server, at) = start_server(&model);
    assert_healthy(at, &"the start");
    let s = AssertUnwindSafe((&server, &known));
    bolero::check!()
        .with_test_time(budget(10))
        .with_type::<Batch>()
        .for_each(move |batch: &Batch| {
            let (_server, known) = *s;
            let open: Vec<TcpStream> = batch
                .conns
                .iter()
                .take(4)
                .filter_map(|c| run_conn(at, c, known))
                .collect();
            // With the left-open connections (some mid-message) still open.
            assert_healthy(at, batch);
            drop(open);
        });
    assert_healthy(at, &"the end");
}

// ---------------------------------------------------------------------------------------
// Clients no random batch makes.

/// A client that pipelines queries and never reads its replies: the server's writes to it
/// block, and everyone else is still answered.
#[test]
fn a_client_that_never_reads_holds_only_its_own_connection() {
    let model = Model::new();
    let (_server, at) = start_server(&model);
    let mut c = TcpStream::connect(at).unwrap();
    c.set_nonblocking(true).unwrap();
    let q = framed(&query_bytes("crowd", 1, 7));
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(5);
    // Until the server stops reading (its replies fill both sockets' buffers).
    let mut blocked_since = None;
    while Instant::now() < deadline {
        match c.write(&q) {
            Ok(n) => {
                sent += n;
                blocked_since = None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(300) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(sent > 100_000, "the buffers filled after {sent} bytes");
    assert_healthy(at, &"a client that never reads");
    drop(c);
    assert_healthy(at, &"that client gone");
}

/// Many silent connections at once (each held until the client goes or 10 s pass) do not
/// stop the server answering.
#[test]
fn many_idle_connections_do_not_stop_the_server() {
    let model = Model::new();
    let (_server, at) = start_server(&model);
    let idle: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(at).unwrap()).collect();
    let mut partial: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(at).unwrap()).collect();
    for (i, c) in partial.iter_mut().enumerate() {
        // Half a prefix, a prefix with part of its message, a prefix that lies.
        let bytes: &[u8] = match i % 3 {
            0 => &[0],
            1 => &[0, 40, 1, 2, 3],
            _ => &[0xff, 0xff],
        };
        c.write_all(bytes).unwrap();
    }
    assert_healthy(at, &"400 idle connections");
    drop((idle, partial));
    assert_healthy(at, &"the idle connections gone");
}

/// Hand-made malformed queries and what they get; and the model checked by hand.
#[test]
fn fixed_inputs() {
    let model = Model::new();
    let cases: Vec<Vec<u8>> = vec![
        // A name that points at itself.
        vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
        // A pointer into the header.
        vec![0, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 2, 0, 1, 0, 1],
        // A label longer than the message.
        vec![0, 3, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 40, b'w', b'e', b'b'],
        // An OPT record whose length lies.
        {
            let mut q = query_bytes("web", 1, 4);
            q[11] = 1;
            q.extend_from_slice(&[0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 200]);
            q
        },
        // A second question after the counted one.
        {
            let mut q = query_bytes("web", 1, 5);
            let again = q[12..].to_vec();
            q.extend_from_slice(&again);
            q
        },
    ];
    for (n, q) in cases.iter().enumerate() {
        for view in VIEWS {
            for tcp in [false, true] {
                let r = answer(&model.names, view, q, tcp, n);
                check(&model, view, q, tcp, &r);
            }
        }
    }
    let formerr = Said::Answer {
        rcode: 1,
        flags: [false, false, true, false],
        question: None,
        answers: Vec::new(),
        edns: false,
    };
    let on_front = |q: &[u8]| {
        let r = answer(&model.names, &["n1"], q, false, 0);
        check(&model, &["n1"], q, false, &r)
    };
    assert_eq!(on_front(&cases[0]), formerr, "a pointer loop");
    // The header's bytes from offset 2 read as a name (one label holding a zero byte):
    // what `simple-dns` makes of it, not a local name, so it goes upstream as it is.
    assert_eq!(
        on_front(&cases[1]),
        Said::Forward,
        "a pointer into the header"
    );
    assert_eq!(on_front(&cases[2]), formerr, "a label past the end");
    assert_eq!(on_front(&cases[3]), formerr, "an OPT whose length lies");
    assert_eq!(
        on_front(&cases[4]),
        Said::Answer {
            rcode: 0,
            flags: [true, false, true, true],
            question: Some(("web".into(), 1, 1)),
            answers: vec![(1, vec![10, 0, 0, 2])],
            edns: false,
        },
        "an uncounted second question is ignored"
    );
    // The model itself: aliases, scoping, `name.network` with a dotted network name.
    assert_eq!(
        model.lookup(&["n1", "n2"], "web"),
        Some(vec![ip("10.0.0.2"), ip("fd00::2"), ip("10.1.0.9")])
    );
    assert_eq!(model.lookup(&["n1"], "db"), None);
    assert_eq!(
        model.lookup(&["n3"], "x.my.net"),
        Some(vec![ip("10.2.0.2"), ip("10.2.0.3")])
    );
    assert_eq!(model.lookup(&["n1"], "crowd").map(|a| a.len()), Some(CROWD));
    assert_eq!(
        model.reverse(&["n2", "n1"], ip("10.0.0.3")).as_deref(),
        Some("api.front")
    );
    // The set of names the fuzzers ask is what the model holds (no typo in either).
    let ptrs: BTreeSet<String> = interesting_names()
        .into_iter()
        .filter(|n| n.ends_with(".arpa"))
        .collect();
    assert!(ptrs.contains(&ptr_name(ip("fd00::2"))));
    assert_eq!(reverse_of(&ptr_name(ip("fd00::2"))), Some(ip("fd00::2")));
    assert_eq!(reverse_of(&ptr_name(ip("10.0.1.7"))), Some(ip("10.0.1.7")));
}
