//! The common query by hand: one question with a plain name (no compression), class IN or
//! ANY, perhaps an EDNS version-0 OPT record — read with bounds checks on every byte and
//! answered by writing the reply straight into a reused buffer, with no allocation.
//!
//! Why by hand: a general parser builds a packet of vectors and owned names, and a general
//! writer compresses through a map; for a lookup in a table of names that costs more than
//! the lookup and the socket work together. Anything this reader does not recognise is
//! left to the general path in [`crate::answer`] (`None`), which decides what it is.

use std::net::IpAddr;

use crate::answer::{EDNS_SIZE, TTL};
use crate::names::Names;

/// Longest name in presentation form without the trailing dot (RFC 1035: 255 octets on
/// the wire).
const MAX_NAME: usize = 253;

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const QTYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const QCLASS_ANY: u16 = 255;

/// What was done with the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The reply is in the buffer: send it.
    Send,
    /// Not a local name: forward the query upstream as it is.
    Forward,
}

/// The question of a simple query, read from its bytes.
struct Question {
    /// Lowercase, dotted, no trailing dot.
    name: [u8; MAX_NAME],
    name_len: usize,
    qtype: u16,
    /// Offset just past the question (its bytes are copied into the reply).
    end: usize,
    /// The client's EDNS UDP size, when it sent an OPT record.
    edns: Option<u16>,
}

impl Question {
    fn name(&self) -> Option<&str> {
        std::str::from_utf8(&self.name[..self.name_len]).ok()
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// Reads a query the caller has already checked the header of (not a response, opcode 0,
/// one question, no answer or authority records, at most one additional record).
fn read(query: &[u8]) -> Option<Question> {
    let mut q = Question {
        name: [0; MAX_NAME],
        name_len: 0,
        qtype: 0,
        end: 0,
        edns: None,
    };
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        // A pointer (or a reserved label type) in a question: the general path.
        if len > 63 {
            return None;
        }
        let label = query.get(i..i + len)?;
        // A dot inside a label cannot be told apart from a separator in dotted form.
        if label.contains(&b'.') {
            return None;
        }
        let sep = usize::from(q.name_len > 0);
        if q.name_len + sep + len > MAX_NAME {
            return None;
        }
        if sep == 1 {
            q.name[q.name_len] = b'.';
        }
        let at = q.name_len + sep;
        for (d, s) in q.name[at..at + len].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        q.name_len = at + len;
        i += len;
    }
    q.qtype = u16_at(query, i)?;
    let class = u16_at(query, i + 2)?;
    if class != CLASS_IN && class != QCLASS_ANY {
        return None;
    }
    q.end = i + 4;
    let additional = u16_at(query, 10)?;
    let mut at = q.end;
    if additional == 1 {
        // OPT: root name, type 41, class = UDP size, extended rcode, version, flags, rdata.
        if *query.get(at)? != 0 || u16_at(query, at + 1)? != TYPE_OPT {
            return None;
        }
        if *query.get(at + 6)? != 0 {
            return None; // EDNS version other than 0: BADVERS is the general path's.
        }
        let size = u16_at(query, at + 3)?;
        let rdlen = usize::from(u16_at(query, at + 9)?);
        at += 11 + rdlen;
        q.edns = Some(size);
    }
    // Trailing bytes (or an OPT whose length lies): the general path.
    (at == query.len()).then_some(q)
}

/// Writes the header and the question of the reply.
fn start(out: &mut Vec<u8>, query: &[u8], q: &Question, authoritative: bool, rcode: u8) {
    out.clear();
    out.extend_from_slice(&query[..2]);
    // QR, opcode 0, AA, RD copied; RA, rcode.
    out.push(0x80 | if authoritative { 0x04 } else { 0 } | (query[2] & 0x01));
    out.push(0x80 | rcode);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(q.edns.is_some())]);
    out.extend_from_slice(&query[12..q.end]);
}

fn finish(out: &mut Vec<u8>, q: &Question, answers: u16, tcp: bool) {
    let limit = match (tcp, q.edns) {
        (true, _) => usize::from(u16::MAX),
        (false, Some(size)) => usize::from(size.clamp(512, EDNS_SIZE)),
        (false, None) => 512,
    };
    let opt_len = if q.edns.is_some() { 11 } else { 0 };
    if out.len() + opt_len > limit {
        // Does not fit: TC and no answers, the client asks again over TCP.
        out.truncate(q.end);
        out[2] |= 0x02;
        out[6..8].copy_from_slice(&[0, 0]);
    } else {
        out[6..8].copy_from_slice(&answers.to_be_bytes());
    }
    if q.edns.is_some() {
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&EDNS_SIZE.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
}

/// One answer record about the question's name (a pointer to offset 12).
fn record(out: &mut Vec<u8>, rtype: u16, rdata: &[u8]) {
    out.extend_from_slice(&[0xc0, 12]);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&TTL.to_be_bytes());
    out.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// A PTR record whose target is `target` (dotted); false when it is no valid name.
fn ptr_record(out: &mut Vec<u8>, target: &str) -> bool {
    let mut wire = [0u8; MAX_NAME + 2];
    let mut n = 0;
    for label in target.split('.') {
        if label.is_empty() || label.len() > 63 || n + 1 + label.len() + 1 > wire.len() {
            return false;
        }
        wire[n] = label.len() as u8;
        wire[n + 1..n + 1 + label.len()].copy_from_slice(label.as_bytes());
        n += 1 + label.len();
    }
    wire[n] = 0;
    record(out, TYPE_PTR, &wire[..=n]);
    true
}

/// Answers a simple query into `out`, or `None` to leave it to the general path. `addrs`
/// is scratch space for the lookup.
#[allow(clippy::too_many_arguments)]
pub(crate) fn answer<V: AsRef<str>>(
    names: &Names,
    view: &[V],
    query: &[u8],
    tcp: bool,
    turn: usize,
    addrs: &mut Vec<IpAddr>,
    out: &mut Vec<u8>,
) -> Option<Action> {
    let q = read(query)?;
    let name = q.name()?;
    addrs.clear();
    if q.qtype == TYPE_PTR {
        let target = crate::answer::reverse_name(name).and_then(|ip| names.reverse(view, ip));
        if let Some(target) = target {
            start(out, query, &q, true, 0);
            if ptr_record(out, target) {
                finish(out, &q, 1, tcp);
                return Some(Action::Send);
            }
        }
    } else if names.lookup_into(view, name, addrs) {
        start(out, query, &q, true, 0);
        if !addrs.is_empty() {
            let n = turn % addrs.len();
            addrs.rotate_left(n);
        }
        let mut count = 0u16;
        for a in addrs.iter() {
            match (a, q.qtype) {
                (IpAddr::V4(v), TYPE_A | QTYPE_ANY) => record(out, TYPE_A, &v.octets()),
                (IpAddr::V6(v), TYPE_AAAA | QTYPE_ANY) => record(out, TYPE_AAAA, &v.octets()),
                _ => continue,
            }
            count += 1;
        }
        finish(out, &q, count, tcp);
        return Some(Action::Send);
    }
    if names.forwards(view) {
        return Some(Action::Forward);
    }
    // Internal networks reach nothing outside, not even its DNS.
    start(out, query, &q, false, 5);
    finish(out, &q, 0, tcp);
    Some(Action::Send)
}

/// A reply with `rcode` and no answers to `query` (its question echoed when it has a simple
/// one): SERVFAIL when no upstream answered, REFUSED when too many forwards are waiting.
/// `None` for bytes not worth a reply.
pub fn failure(query: &[u8], rcode: u8, tcp: bool) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(query.len() + 16);
    match read(query) {
        Some(q) => {
            start(&mut out, query, &q, false, rcode);
            finish(&mut out, &q, 0, tcp);
        }
        None => {
            // The header alone, counts zeroed.
            out.extend_from_slice(&query[..2]);
            out.push(0x80 | (query[2] & 0x01));
            out.push(0x80 | rcode);
            out.extend_from_slice(&[0; 8]);
        }
    }
    Some(out)
}
