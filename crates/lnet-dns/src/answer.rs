//! Answering one query: from the names of the asking sandbox's networks, or "forward it".
//!
//! Untrusted bytes are checked before any parsing that allocates: the header's section
//! counts are read by hand first (one question, no answers, no authority, at most one
//! additional record — EDNS), because a parser sizes its vectors from them; anything else
//! is FORMERR. Parsing proper is `simple-dns`'s (checked, no panics on bad input).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::{A, AAAA, OPT, PTR, RData};
use simple_dns::{
    CLASS, Name, OPCODE, Packet, PacketFlag, QCLASS, QTYPE, RCODE, ResourceRecord, TYPE,
};

use crate::names::{Names, normalize};
use crate::wire;
pub use crate::wire::{Action, failure};

/// TTL of answers about containers (Docker's).
pub const TTL: u32 = 600;
/// The UDP payload size lnet advertises with EDNS (the DNS flag day's safe size).
pub const EDNS_SIZE: u16 = 1232;

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes back.
    Answer(Vec<u8>),
    /// Not a local name: forward the query upstream as it is.
    Forward,
    /// Not worth an answer (too short to carry an id, or itself a response).
    Drop,
}

/// A reply with only a header and, if given, the question, built from the query's raw
/// header: for queries that cannot (or need not) be parsed further.
fn bare(query: &[u8], rcode: RCODE) -> Reply {
    let id = u16::from_be_bytes([query[0], query[1]]);
    let mut p = Packet::new_reply(id);
    if query[2] & 0x01 != 0 {
        p.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    *p.rcode_mut() = rcode;
    p.build_bytes_vec().map_or(Reply::Drop, Reply::Answer)
}

/// The address a reverse-lookup name stands for (`4.3.2.1.in-addr.arpa`, or 32 nibbles
/// then `ip6.arpa`).
pub fn reverse_name(qname: &str) -> Option<IpAddr> {
    let q = normalize(qname);
    if let Some(rest) = q.strip_suffix(".in-addr.arpa") {
        let mut parts: Vec<u8> = rest
            .split('.')
            .map(|p| p.parse::<u8>().ok())
            .collect::<Option<_>>()?;
        if parts.len() != 4 {
            return None;
        }
        parts.reverse();
        return Some(IpAddr::V4(Ipv4Addr::new(
            parts[0], parts[1], parts[2], parts[3],
        )));
    }
    let rest = q.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|n| match n.len() {
            1 => u8::from_str_radix(n, 16).ok(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut v: u128 = 0;
    for n in nibbles.iter().rev() {
        v = (v << 4) | u128::from(*n);
    }
    Some(IpAddr::V6(Ipv6Addr::from(v)))
}

/// Answers `query` (the bytes of one DNS message) for a sandbox on networks `view`.
/// `tcp`: the answer goes over TCP (no size limit but the protocol's). `turn` rotates
/// the order of several addresses (round-robin).
pub fn answer<V: AsRef<str>>(
    names: &Names,
    view: &[V],
    query: &[u8],
    tcp: bool,
    turn: usize,
) -> Reply {
    let mut out = Vec::new();
    match answer_into(
        names,
        view,
        query,
        tcp,
        turn,
        &mut Scratch::default(),
        &mut out,
    ) {
        Some(Action::Send) => Reply::Answer(out),
        Some(Action::Forward) => Reply::Forward,
        None => Reply::Drop,
    }
}

/// Reused space for answering: the queries on one socket need no allocation each.
#[derive(Debug, Default)]
pub struct Scratch {
    addrs: Vec<IpAddr>,
}

/// [`answer`] into `out` (replaced), for a server that reuses its buffers: `Send` when
/// `out` holds the reply, `Forward`, or `None` for a query not worth an answer.
pub fn answer_into<V: AsRef<str>>(
    names: &Names,
    view: &[V],
    query: &[u8],
    tcp: bool,
    turn: usize,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Option<Action> {
    let reply = match header(query) {
        Err(r) => r,
        Ok(()) => {
            if let Some(a) = wire::answer(names, view, query, tcp, turn, &mut scratch.addrs, out) {
                return Some(a);
            }
            general(names, view, query, tcp, turn)
        }
    };
    match reply {
        Reply::Answer(b) => {
            *out = b;
            Some(Action::Send)
        }
        Reply::Forward => Some(Action::Forward),
        Reply::Drop => None,
    }
}

/// The header's checks, before anything is parsed: `Err` holds the reply to a query
/// that goes no further.
fn header(query: &[u8]) -> Result<(), Reply> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return Err(Reply::Drop);
    }
    let count = |i: usize| u16::from_be_bytes([query[i], query[i + 1]]);
    let opcode = (query[2] >> 3) & 0x0f;
    if opcode != 0 {
        return Err(bare(query, RCODE::NotImplemented));
    }
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return Err(bare(query, RCODE::FormatError));
    }
    Ok(())
}

/// Any query the header allows, through the general parser.
fn general<V: AsRef<str>>(
    names: &Names,
    view: &[V],
    query: &[u8],
    tcp: bool,
    turn: usize,
) -> Reply {
    let Ok(q) = Packet::parse(query) else {
        return bare(query, RCODE::FormatError);
    };
    if q.opcode() != OPCODE::StandardQuery {
        return bare(query, RCODE::NotImplemented);
    }
    let Some(question) = q.questions.first() else {
        return bare(query, RCODE::FormatError);
    };
    let qname = question.qname.to_string();
    let local = matches!(question.qclass, QCLASS::CLASS(CLASS::IN) | QCLASS::ANY);
    // What the name is locally: addresses, a PTR target, or nothing.
    let (records, exists): (Vec<RData<'static>>, bool) = if !local {
        (Vec::new(), false)
    } else if let QTYPE::TYPE(TYPE::PTR) = question.qtype {
        match reverse_name(&qname).and_then(|ip| names.reverse(view, ip)) {
            Some(target) => match Name::new(target) {
                Ok(n) => (vec![RData::PTR(PTR(n.into_owned()))], true),
                Err(_) => (Vec::new(), false),
            },
            None => (Vec::new(), false),
        }
    } else {
        match names.lookup(view, &qname) {
            None => (Vec::new(), false),
            Some(mut addrs) => {
                if !addrs.is_empty() {
                    let n = turn % addrs.len();
                    addrs.rotate_left(n);
                }
                let want = |v6: bool| match question.qtype {
                    QTYPE::TYPE(TYPE::A) => !v6,
                    QTYPE::TYPE(TYPE::AAAA) => v6,
                    QTYPE::ANY => true,
                    _ => false,
                };
                let rr = addrs
                    .iter()
                    .filter(|a| want(a.is_ipv6()))
                    .map(|a| match a {
                        IpAddr::V4(v) => RData::A(A {
                            address: u32::from(*v),
                        }),
                        IpAddr::V6(v) => RData::AAAA(AAAA {
                            address: u128::from(*v),
                        }),
                    })
                    .collect();
                (rr, true)
            }
        }
    };
    if !exists {
        if names.forwards(view) {
            return Reply::Forward;
        }
        // Internal networks reach nothing outside, not even its DNS.
        return reply(&q, RCODE::Refused, Vec::new(), tcp, false);
    }
    // A name that exists with nothing of the asked type is NOERROR with no answer, not a
    // forward (which could make a container's name resolve elsewhere).
    let answers = records
        .into_iter()
        .map(|r| ResourceRecord::new(question.qname.clone(), CLASS::IN, TTL, r))
        .collect();
    reply(&q, RCODE::NoError, answers, tcp, true)
}

/// Builds the reply to `q`, truncated (TC, no answers) when it does not fit UDP.
fn reply<'a>(
    q: &Packet<'a>,
    rcode: RCODE,
    answers: Vec<ResourceRecord<'a>>,
    tcp: bool,
    authoritative: bool,
) -> Reply {
    let mut p = Packet::new_reply(q.id());
    let mut flags = PacketFlag::RECURSION_AVAILABLE;
    if q.has_flags(PacketFlag::RECURSION_DESIRED) {
        flags |= PacketFlag::RECURSION_DESIRED;
    }
    if authoritative {
        flags |= PacketFlag::AUTHORITATIVE_ANSWER;
    }
    p.set_flags(flags);
    *p.rcode_mut() = rcode;
    p.questions = q.questions.clone();
    let limit = match (tcp, q.opt()) {
        (true, _) => usize::from(u16::MAX),
        (false, Some(opt)) => usize::from(opt.udp_packet_size.clamp(512, EDNS_SIZE)),
        (false, None) => 512,
    };
    if q.opt().is_some() {
        *p.opt_mut() = Some(OPT {
            opt_codes: Vec::new(),
            udp_packet_size: EDNS_SIZE,
            version: 0,
        });
    }
    p.answers = answers;
    match p.build_bytes_vec_compressed() {
        Ok(b) if b.len() <= limit => Reply::Answer(b),
        Ok(_) => {
            p.answers.clear();
            p.set_flags(PacketFlag::TRUNCATION);
            p.build_bytes_vec_compressed()
                .map_or(Reply::Drop, Reply::Answer)
        }
        Err(_) => Reply::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::Question;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn names() -> Names {
        let mut n = Names::new();
        n.add_network("a", "front", false);
        n.add_network("i", "inside", true);
        n.add("a", &["web", "www"], &[ip("10.0.0.2")]);
        n.add("a", &["api", "www"], &[ip("10.0.0.3"), ip("fd00::3")]);
        n.add("i", &["db"], &[ip("10.9.0.2")]);
        n
    }

    fn query(name: &str, qtype: TYPE, edns: Option<u16>) -> Vec<u8> {
        let mut p = Packet::new_query(0x1234);
        p.set_flags(PacketFlag::RECURSION_DESIRED);
        p.questions.push(Question::new(
            Name::new_unchecked(name),
            qtype.into(),
            CLASS::IN.into(),
            false,
        ));
        if let Some(size) = edns {
            *p.opt_mut() = Some(OPT {
                opt_codes: Vec::new(),
                udp_packet_size: size,
                version: 0,
            });
        }
        p.build_bytes_vec().unwrap()
    }

    fn parsed(r: &Reply) -> Packet<'_> {
        match r {
            Reply::Answer(b) => Packet::parse(b).unwrap(),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    fn addrs(p: &Packet<'_>) -> Vec<IpAddr> {
        p.answers
            .iter()
            .filter_map(|rr| match &rr.rdata {
                RData::A(a) => Some(IpAddr::V4(Ipv4Addr::from(a.address))),
                RData::AAAA(a) => Some(IpAddr::V6(Ipv6Addr::from(a.address))),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn local_names_are_answered_by_family() {
        let n = names();
        let r = answer(&n, &["a"], &query("WWW", TYPE::A, None), false, 0);
        let p = parsed(&r);
        assert_eq!(p.id(), 0x1234);
        assert!(p.has_flags(
            PacketFlag::RESPONSE | PacketFlag::AUTHORITATIVE_ANSWER | PacketFlag::RECURSION_DESIRED
        ));
        assert_eq!(p.rcode(), RCODE::NoError);
        assert_eq!(addrs(&p), [ip("10.0.0.2"), ip("10.0.0.3")]);
        assert_eq!(p.answers[0].ttl, TTL);
        // Round-robin: the next turn starts elsewhere.
        let p2 = answer(&n, &["a"], &query("www", TYPE::A, None), false, 1);
        assert_eq!(addrs(&parsed(&p2)), [ip("10.0.0.3"), ip("10.0.0.2")]);
        let six = answer(&n, &["a"], &query("api.front", TYPE::AAAA, None), false, 0);
        assert_eq!(addrs(&parsed(&six)), [ip("fd00::3")]);
    }

    #[test]
    fn a_name_without_that_family_is_noerror_empty_not_forwarded() {
        let n = names();
        let r = answer(&n, &["a"], &query("web", TYPE::AAAA, None), false, 0);
        let p = parsed(&r);
        assert_eq!(p.rcode(), RCODE::NoError);
        assert!(p.answers.is_empty());
        let mx = answer(&n, &["a"], &query("web", TYPE::MX, None), false, 0);
        assert!(parsed(&mx).answers.is_empty());
    }

    #[test]
    fn other_names_are_forwarded_except_from_internal_networks() {
        let n = names();
        assert_eq!(
            answer(&n, &["a"], &query("example.org", TYPE::A, None), false, 0),
            Reply::Forward
        );
        assert_eq!(
            answer(&n, &["a"], &query("db", TYPE::A, None), false, 0),
            Reply::Forward,
            "db is not on the asker's network"
        );
        let r = answer(&n, &["i"], &query("example.org", TYPE::A, None), false, 0);
        assert_eq!(parsed(&r).rcode(), RCODE::Refused);
        let r = answer(&n, &["i"], &query("db", TYPE::A, None), false, 0);
        assert_eq!(addrs(&parsed(&r)), [ip("10.9.0.2")]);
    }

    #[test]
    fn ptr_answers_container_addresses() {
        let n = names();
        let r = answer(
            &n,
            &["a"],
            &query("3.0.0.10.in-addr.arpa", TYPE::PTR, None),
            false,
            0,
        );
        let p = parsed(&r);
        match &p.answers[0].rdata {
            RData::PTR(PTR(name)) => assert_eq!(name.to_string(), "api.front"),
            other => panic!("{other:?}"),
        }
        let v6 = "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
        assert_eq!(reverse_name(v6), Some(ip("fd00::3")));
        let p = parsed(&answer(&n, &["a"], &query(v6, TYPE::PTR, None), false, 0))
            .answers
            .len();
        assert_eq!(p, 1);
        assert_eq!(
            answer(
                &n,
                &["a"],
                &query("9.9.9.9.in-addr.arpa", TYPE::PTR, None),
                false,
                0
            ),
            Reply::Forward
        );
        assert_eq!(reverse_name("1.2.3.in-addr.arpa"), None);
        assert_eq!(reverse_name("x.2.3.4.in-addr.arpa"), None);
    }

    #[test]
    fn malformed_queries_get_formerr_or_nothing() {
        let n = names();
        assert_eq!(answer(&n, &["a"], &[0u8; 5], false, 0), Reply::Drop);
        // Two questions, and a header whose counts lie: FORMERR, no allocation by count.
        let mut q = query("web", TYPE::A, None);
        q[4..6].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(
            parsed(&answer(&n, &["a"], &q, false, 0)).rcode(),
            RCODE::FormatError
        );
        q[4..6].copy_from_slice(&0xffffu16.to_be_bytes());
        assert_eq!(
            parsed(&answer(&n, &["a"], &q, false, 0)).rcode(),
            RCODE::FormatError
        );
        // A truncated question.
        let q = query("web", TYPE::A, None);
        let r = answer(&n, &["a"], &q[..q.len() - 3], false, 0);
        assert_eq!(parsed(&r).rcode(), RCODE::FormatError);
        // A compression pointer to itself.
        let mut looped = q[..12].to_vec();
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(
            parsed(&answer(&n, &["a"], &looped, false, 0)).rcode(),
            RCODE::FormatError
        );
        // A response is not answered.
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert_eq!(answer(&n, &["a"], &resp, false, 0), Reply::Drop);
        // Another opcode.
        let mut notify = q.clone();
        notify[2] |= 4 << 3;
        assert_eq!(
            parsed(&answer(&n, &["a"], &notify, false, 0)).rcode(),
            RCODE::NotImplemented
        );
    }

    #[test]
    fn big_answers_are_truncated_over_udp_and_whole_over_tcp() {
        let mut n = Names::new();
        n.add_network("a", "front", false);
        for i in 0..60u8 {
            n.add("a", &["many"], &[IpAddr::V4(Ipv4Addr::new(10, 0, 1, i))]);
        }
        let r = answer(&n, &["a"], &query("many", TYPE::A, None), false, 0);
        let udp = parsed(&r);
        assert!(udp.has_flags(PacketFlag::TRUNCATION) && udp.answers.is_empty());
        let edns = answer(&n, &["a"], &query("many", TYPE::A, Some(4096)), false, 0);
        let p = parsed(&edns);
        assert_eq!(p.answers.len(), 60, "fits the EDNS size");
        assert_eq!(p.opt().map(|o| o.udp_packet_size), Some(EDNS_SIZE));
        let tcp = answer(&n, &["a"], &query("many", TYPE::A, None), true, 0);
        assert_eq!(parsed(&tcp).answers.len(), 60);
    }

    /// The hand-written path and the general parser give the same reply (as parsed).
    fn same_as_general(n: &Names, view: &[&str], q: &[u8], tcp: bool, turn: usize) {
        let mut out = Vec::new();
        let mut scratch = Scratch::default();
        if header(q).is_err() {
            return;
        }
        let Some(fast) = wire::answer(n, view, q, tcp, turn, &mut scratch.addrs, &mut out) else {
            return;
        };
        if Packet::parse(q).is_err() {
            // A type the general parser does not know (it says FORMERR): the hand-written
            // path answers or forwards it, as a resolver should.
            assert!(fast == Action::Forward || (out[..2] == q[..2] && out[2] & 0x80 != 0));
            return;
        }
        let slow = general(n, view, q, tcp, turn);
        match (fast, &slow) {
            (Action::Forward, Reply::Forward) => {}
            (Action::Send, Reply::Answer(b)) => assert_eq!(
                format!("{:?}", Packet::parse(&out).unwrap()),
                format!("{:?}", Packet::parse(b).unwrap()),
                "query {q:02x?}"
            ),
            (f, s) => panic!("query {q:02x?}: hand-written {f:?}, general {s:?}"),
        }
    }

    #[test]
    fn the_hand_written_path_agrees_with_the_general_one() {
        let mut n = names();
        for i in 0..60u8 {
            n.add("a", &["many"], &[IpAddr::V4(Ipv4Addr::new(10, 0, 1, i))]);
        }
        let ptr4 = "2.0.0.10.in-addr.arpa";
        let ptr6 = "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
        let mut hits = 0;
        for name in [
            "web",
            "WwW.Front.",
            "api.front",
            "db",
            "many",
            "x.example",
            ptr4,
            ptr6,
        ] {
            for qtype in [TYPE::A, TYPE::AAAA, TYPE::MX, TYPE::PTR, TYPE::TXT] {
                for edns in [None, Some(100), Some(512), Some(1232), Some(4096)] {
                    for view in [&["a"][..], &["i"][..], &["a", "i"][..]] {
                        for tcp in [false, true] {
                            for turn in 0..2 {
                                let q = query(name, qtype, edns);
                                same_as_general(&n, view, &q, tcp, turn);
                                hits += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(hits > 1000);
        // The ANY type and class, read by hand too.
        let mut q = query("www", TYPE::A, None);
        let end = q.len();
        q[end - 4..end - 2].copy_from_slice(&255u16.to_be_bytes());
        same_as_general(&n, &["a"], &q, false, 0);
        q[end - 2..].copy_from_slice(&255u16.to_be_bytes());
        same_as_general(&n, &["a"], &q, false, 0);
    }

    #[test]
    fn mutated_queries_get_the_same_reply_from_both_paths() {
        let n = names();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for base in [
            query("web", TYPE::A, Some(1232)),
            query("api", TYPE::AAAA, None),
        ] {
            for _ in 0..20_000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let mut b = base.clone();
                // Keep the header's counts, so that most mutations reach the question.
                let at = 12 + ((seed as usize) % (b.len() - 12));
                b[at] = (seed >> 20) as u8;
                if seed & 0x100 != 0 {
                    b.truncate(b.len() - ((seed >> 32) as usize % 3));
                }
                same_as_general(&n, &["a"], &b, seed & 1 == 0, 0);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let n = names();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let base = query("web", TYPE::A, Some(1232));
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut b = base.clone();
            let flips = (seed % 6) as usize;
            for k in 0..=flips {
                let at = ((seed >> (8 * k)) as usize) % b.len();
                b[at] = (seed >> (3 * k)) as u8;
            }
            b.truncate(((seed >> 40) as usize) % (b.len() + 1));
            let _ = answer(&n, &["a"], &b, seed & 1 == 0, 0);
        }
    }
}
