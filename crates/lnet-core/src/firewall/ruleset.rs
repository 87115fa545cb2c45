//! The ruleset lnet owns, as data: its sets and maps, its chains and their rules, each rule
//! with the `nft` text it stands for. Pure: building it touches nothing, so it is what
//! `lnet firewall show` prints, what the start-up check compares the kernel with, and what
//! the golden test pins.
//!
//! One table, `inet lnet`: forwarding policy (isolation between networks, internal
//! networks, inbound only to published ports), DNAT of published ports from two maps per
//! family, and masquerade/SNAT keyed by the bridge a packet came from. Every per-network or
//! per-port fact is an element of a set or map, so the rules are fixed: connecting a
//! container or publishing a port never adds a rule, and the cost of a lookup does not grow
//! with the number of elements.
//!
//! Inter-container traffic off (`enable_icc=false`) is not here: it is the bridge's own port
//! isolation (see the bridge driver). libnetwork needs `br_netfilter` for it, which sends
//! every bridged frame of the host through iptables; lnet does not load it — but works where
//! it is on (Docker loads it; some kernels build it in): then traffic within a bridge also
//! crosses `forward` (accepted by `bridge_pairs`), and hairpin NAT cannot rely on the input
//! interface (see `postrouting`).
//!
//! The `user` chain is created once, jumped to first from `forward`, and never flushed or
//! edited: operators put their own rules there (Docker's `DOCKER-USER`).
//!
//! Not a router by accident: when lnet itself turned a family's forwarding sysctl on (see
//! [`crate::forwarding`]), that family is an element of `forward_guard`, and the last rule
//! of `forward` drops that family's forwarded traffic that neither comes from nor goes to
//! an lnet bridge — what Docker gets by setting the `FORWARD` policy to drop, without
//! touching any chain's policy or anyone else's table. The opt-out is the daemon's
//! `--ip-forward-no-drop`, which leaves the set empty; an operator who wants some of that
//! traffic routed accepts it in the `user` chain, which comes first.

use lnet_kernel::nft::{ChainType, DataType, Family, Field, Hook, Rule, ct_state, ct_status};

/// The name of lnet's tables: `lnet`, or this process's instance name
/// ([`crate::config::set_instance`]). Reads as a `&str` (`&TABLE`) and prints as one.
pub static TABLE: Table = Table;

/// See [`TABLE`].
#[derive(Debug, Clone, Copy)]
pub struct Table;

impl std::ops::Deref for Table {
    type Target = str;
    fn deref(&self) -> &str {
        crate::config::instance()
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}
/// The operators' chain in `inet lnet`.
pub const USER_CHAIN: &str = "user";

/// A set or map of lnet's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetName {
    /// Every lnet bridge.
    Bridges,
    /// `bridge . bridge` for every lnet bridge: traffic that stays on its bridge.
    BridgePairs,
    /// Bridges of internal networks.
    Internal,
    /// Bridges whose IPv4 traffic out is masqueraded.
    Masq4,
    /// Bridges whose IPv6 traffic out is masqueraded.
    Masq6,
    /// Bridge → SNAT source address (`com.docker.network.host_ipv4`).
    Snat4,
    /// `host ip . proto . port → container ip . port`, IPv4, a specific host address.
    Ports4,
    /// `proto . port → container ip . port`, IPv4, every local address.
    Ports4Any,
    /// Like [`SetName::Ports4`] for IPv6.
    Ports6,
    /// Like [`SetName::Ports4Any`] for IPv6.
    Ports6Any,
    /// The IPv4 subnets of lnet's networks (ranges): a DNATed packet from one of them going
    /// out of an lnet bridge is a container reaching a published port through the host
    /// (hairpin), masqueraded so the reply comes back the same way.
    Subnets4,
    /// Like [`SetName::Subnets4`] for IPv6.
    Subnets6,
    /// The families (`meta nfproto`) whose forwarding lnet turned on: their forwarded
    /// traffic that is not lnet's is dropped.
    ForwardGuard,
}

use DataType::{IfName, InetProto, InetService, Ipv4Addr as V4, Ipv6Addr as V6, NfProto};

impl SetName {
    /// Every set, in creation order.
    pub const ALL: [SetName; 13] = [
        SetName::Bridges,
        SetName::BridgePairs,
        SetName::Internal,
        SetName::Masq4,
        SetName::Masq6,
        SetName::Snat4,
        SetName::Ports4,
        SetName::Ports4Any,
        SetName::Ports6,
        SetName::Ports6Any,
        SetName::Subnets4,
        SetName::Subnets6,
        SetName::ForwardGuard,
    ];

    /// The set's name in its table.
    pub fn name(self) -> &'static str {
        match self {
            SetName::Bridges => "bridges",
            SetName::BridgePairs => "bridge_pairs",
            SetName::Internal => "internal",
            SetName::Masq4 => "masq4",
            SetName::Masq6 => "masq6",
            SetName::Snat4 => "snat4",
            SetName::Ports4 => "ports4",
            SetName::Ports4Any => "ports4_any",
            SetName::Ports6 => "ports6",
            SetName::Ports6Any => "ports6_any",
            SetName::Subnets4 => "subnets4",
            SetName::Subnets6 => "subnets6",
            SetName::ForwardGuard => "forward_guard",
        }
    }

    /// The family of the table holding it.
    pub fn family(self) -> Family {
        Family::Inet
    }

    /// Key fields.
    pub fn key(self) -> &'static [DataType] {
        match self {
            SetName::Bridges
            | SetName::Internal
            | SetName::Masq4
            | SetName::Masq6
            | SetName::Snat4 => &[IfName],
            SetName::BridgePairs => &[IfName, IfName],
            SetName::Ports4 => &[V4, InetProto, InetService],
            SetName::Ports6 => &[V6, InetProto, InetService],
            SetName::Ports4Any | SetName::Ports6Any => &[InetProto, InetService],
            SetName::Subnets4 => &[V4],
            SetName::Subnets6 => &[V6],
            SetName::ForwardGuard => &[NfProto],
        }
    }

    /// Whether elements are ranges (kept in [`super::Want`] as the first address and the
    /// last). One field, so the kernel keeps them in an rbtree: an update costs O(log n),
    /// where a concatenated range set (pipapo) is rebuilt whole on every change.
    pub fn ranges(self) -> bool {
        matches!(self, SetName::Subnets4 | SetName::Subnets6)
    }

    /// Value fields, for maps.
    pub fn data(self) -> Option<&'static [DataType]> {
        match self {
            SetName::Snat4 => Some(&[V4]),
            SetName::Ports4 | SetName::Ports4Any => Some(&[V4, InetService]),
            SetName::Ports6 | SetName::Ports6Any => Some(&[V6, InetService]),
            _ => None,
        }
    }

    /// The `nft` declaration (for `lnet firewall show`).
    pub fn declaration(self) -> String {
        let types = |t: &[DataType]| {
            t.iter()
                .map(|d| type_name(*d))
                .collect::<Vec<_>>()
                .join(" . ")
        };
        match self.data() {
            _ if self.ranges() => format!(
                "set {} {{ type {}; flags interval }}",
                self.name(),
                types(self.key())
            ),
            Some(d) => format!(
                "map {} {{ type {} : {} }}",
                self.name(),
                types(self.key()),
                types(d)
            ),
            None => format!("set {} {{ type {} }}", self.name(), types(self.key())),
        }
    }
}

fn type_name(d: DataType) -> &'static str {
    match d {
        DataType::Ipv4Addr => "ipv4_addr",
        DataType::Ipv6Addr => "ipv6_addr",
        DataType::EtherAddr => "ether_addr",
        DataType::InetProto => "inet_proto",
        DataType::InetService => "inet_service",
        DataType::Mark => "mark",
        DataType::IfName => "ifname",
        DataType::NfProto => "nf_proto",
    }
}

/// Renders an element's key or value as `nft` prints it (`"br-x" . tcp . 8080`).
pub fn render(types: &[DataType], bytes: &[u8]) -> String {
    render_fields(types, bytes).join(" . ")
}

/// Renders a range element (`key` to `end`) as `nft` prints it: a field that differs as a
/// prefix when the range is one (`10.1.0.0/24 . "br-x"`), else as `a-b`.
pub fn render_range(types: &[DataType], key: &[u8], end: &[u8]) -> String {
    render_fields(types, key)
        .into_iter()
        .zip(render_fields(types, end))
        .map(|(a, b)| {
            if a == b {
                return a;
            }
            match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()) {
                (Ok(x), Ok(y)) => prefix_of(x, y).unwrap_or_else(|| format!("{a}-{b}")),
                _ => format!("{a}-{b}"),
            }
        })
        .collect::<Vec<_>>()
        .join(" . ")
}

/// `first/len` when `first..=last` is exactly one prefix.
fn prefix_of(first: std::net::IpAddr, last: std::net::IpAddr) -> Option<String> {
    let (a, b, bits) = match (first, last) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => {
            (u128::from(u32::from(a)), u128::from(u32::from(b)), 32)
        }
        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return None,
    };
    let host_bits = (a ^ b).count_ones();
    let mask = if host_bits == 0 {
        0
    } else {
        u128::MAX >> (128 - host_bits)
    };
    (a ^ b == mask && a & mask == 0).then(|| format!("{first}/{}", bits - host_bits))
}

fn render_fields(types: &[DataType], bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    for t in types {
        let len = t.byte_len() as usize;
        let Some(b) = bytes.get(at..at + len) else {
            out.push("<short>".to_string());
            break;
        };
        out.push(match t {
            DataType::Ipv4Addr => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
            DataType::Ipv6Addr => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                std::net::Ipv6Addr::from(a).to_string()
            }
            DataType::InetProto => match b[0] {
                6 => "tcp".into(),
                17 => "udp".into(),
                132 => "sctp".into(),
                p => p.to_string(),
            },
            DataType::InetService => u16::from_be_bytes([b[0], b[1]]).to_string(),
            DataType::NfProto => match Family::from_nfproto(b[0]) {
                Some(Family::Ip) => "ipv4".into(),
                Some(Family::Ip6) => "ipv6".into(),
                _ => b[0].to_string(),
            },
            DataType::IfName => {
                let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
                format!("\"{}\"", String::from_utf8_lossy(&b[..end]))
            }
            DataType::Mark => format!("0x{:08x}", u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
            DataType::EtherAddr => b
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        });
        // In a concatenation every field starts on a 4-byte boundary.
        at += if types.len() > 1 {
            len.next_multiple_of(4)
        } else {
            len
        };
    }
    out
}

/// A chain of lnet's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSpec {
    /// Table family.
    pub family: Family,
    /// Chain name.
    pub name: &'static str,
    /// Type, hook and priority for base chains; `None` for regular chains.
    pub hook: Option<(ChainType, Hook, i32)>,
}

/// lnet's chains apart from [`USER_CHAIN`], in creation order (a chain is created before the
/// rules that jump to it).
pub const CHAINS: [ChainSpec; 5] = [
    ChainSpec {
        family: Family::Inet,
        name: "published",
        hook: None,
    },
    ChainSpec {
        family: Family::Inet,
        name: "forward",
        hook: Some((ChainType::Filter, Hook::Forward, 0)),
    },
    ChainSpec {
        family: Family::Inet,
        name: "prerouting",
        hook: Some((ChainType::Nat, Hook::Prerouting, -100)),
    },
    ChainSpec {
        family: Family::Inet,
        name: "output",
        hook: Some((ChainType::Nat, Hook::Output, -100)),
    },
    ChainSpec {
        family: Family::Inet,
        name: "postrouting",
        hook: Some((ChainType::Nat, Hook::Postrouting, 100)),
    },
];

/// The rules of one of [`CHAINS`], each with the `nft` text it stands for.
pub fn rules(chain: &ChainSpec) -> Vec<(Rule, &'static str)> {
    let r = || Rule::new(chain.family, &TABLE, chain.name);
    let n = SetName::name;
    use SetName::*;
    match (chain.family, chain.name) {
        (Family::Inet, "forward") => vec![
            (r().jump(USER_CHAIN), "jump user"),
            (
                r().in_set(&[Field::IifName, Field::OifName], n(BridgePairs))
                    .accept(),
                "iifname . oifname @bridge_pairs accept",
            ),
            (
                r().in_set(&[Field::IifName], n(Internal)).drop(),
                "iifname @internal drop",
            ),
            (
                r().in_set(&[Field::OifName], n(Internal)).drop(),
                "oifname @internal drop",
            ),
            (
                r().in_set(&[Field::OifName], n(Bridges))
                    .ct_status(ct_status::DNAT)
                    .accept(),
                "oifname @bridges ct status dnat accept",
            ),
            (
                r().in_set(&[Field::IifName], n(Bridges))
                    .in_set(&[Field::OifName], n(Bridges))
                    .drop(),
                "iifname @bridges oifname @bridges drop",
            ),
            (
                r().in_set(&[Field::OifName], n(Bridges))
                    .ct_state(ct_state::ESTABLISHED | ct_state::RELATED)
                    .accept(),
                "oifname @bridges ct state established,related accept",
            ),
            (
                r().in_set(&[Field::OifName], n(Bridges)).drop(),
                "oifname @bridges drop",
            ),
            (
                r().in_set(&[Field::NfProto], n(ForwardGuard))
                    .not_in_set(&[Field::IifName], n(Bridges))
                    .not_in_set(&[Field::OifName], n(Bridges))
                    .drop(),
                "meta nfproto @forward_guard iifname != @bridges oifname != @bridges drop",
            ),
        ],
        (Family::Inet, "prerouting" | "output") => {
            vec![(r().jump("published"), "jump published")]
        }
        (Family::Inet, "published") => vec![
            (
                r().nfproto(Family::Ip).dnat_map(
                    &[Field::IpDaddr, Field::L4Proto, Field::ThDport],
                    n(Ports4),
                    Family::Ip,
                ),
                "meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @ports4",
            ),
            (
                r().nfproto(Family::Ip).fib_daddr_local().dnat_map(
                    &[Field::L4Proto, Field::ThDport],
                    n(Ports4Any),
                    Family::Ip,
                ),
                "meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @ports4_any",
            ),
            (
                r().nfproto(Family::Ip6).dnat_map(
                    &[Field::Ip6Daddr, Field::L4Proto, Field::ThDport],
                    n(Ports6),
                    Family::Ip6,
                ),
                "meta nfproto ipv6 dnat ip6 to ip6 daddr . meta l4proto . th dport map @ports6",
            ),
            (
                r().nfproto(Family::Ip6).fib_daddr_local().dnat_map(
                    &[Field::L4Proto, Field::ThDport],
                    n(Ports6Any),
                    Family::Ip6,
                ),
                "meta nfproto ipv6 fib daddr type local dnat ip6 to meta l4proto . th dport map @ports6_any",
            ),
        ],
        // Hairpin is keyed by the source address (one of lnet's subnets) and the output
        // bridge, not the input interface: where br_netfilter is on (Docker's hosts; built
        // in on some kernels) a container's packet to a published port of its own network
        // is DNATed and *bridged*, and postrouting then sees no input interface. A
        // container reaching another network's published port is masqueraded too, as
        // Docker's userland proxy would have hidden its address.
        (Family::Inet, "postrouting") => vec![
            (
                r().nfproto(Family::Ip)
                    .ct_status(ct_status::DNAT)
                    .in_set(&[Field::IpSaddr], n(Subnets4))
                    .in_set(&[Field::OifName], n(Bridges))
                    .masquerade(),
                "ct status dnat ip saddr @subnets4 oifname @bridges masquerade",
            ),
            (
                r().nfproto(Family::Ip6)
                    .ct_status(ct_status::DNAT)
                    .in_set(&[Field::Ip6Saddr], n(Subnets6))
                    .in_set(&[Field::OifName], n(Bridges))
                    .masquerade(),
                "ct status dnat ip6 saddr @subnets6 oifname @bridges masquerade",
            ),
            (
                r().in_set(&[Field::OifName], n(Bridges))
                    .nfproto(Family::Ip)
                    .saddr_in("127.0.0.0/8".parse().expect("valid"))
                    .masquerade(),
                "oifname @bridges meta nfproto ipv4 ip saddr 127.0.0.0/8 masquerade",
            ),
            (
                r().in_set(&[Field::OifName], n(Bridges)).ret(),
                "oifname @bridges return",
            ),
            (
                r().nfproto(Family::Ip)
                    .in_set(&[Field::IifName], n(Masq4))
                    .masquerade(),
                "meta nfproto ipv4 iifname @masq4 masquerade",
            ),
            (
                r().nfproto(Family::Ip)
                    .snat_map(&[Field::IifName], n(Snat4), Family::Ip),
                "meta nfproto ipv4 snat ip to iifname map @snat4",
            ),
            (
                r().nfproto(Family::Ip6)
                    .in_set(&[Field::IifName], n(Masq6))
                    .masquerade(),
                "meta nfproto ipv6 iifname @masq6 masquerade",
            ),
        ],
        _ => Vec::new(),
    }
}

/// The whole ruleset as `nft` text (for `lnet firewall show`), with the elements of
/// `elements` (set name → rendered elements) in its sets.
pub fn describe(elements: &std::collections::BTreeMap<&str, Vec<String>>) -> String {
    let mut out = String::new();
    for family in [Family::Inet] {
        out.push_str(&format!("table {} {} {{\n", family.name(), TABLE));
        for s in SetName::ALL.iter().filter(|s| s.family() == family) {
            let decl = s.declaration();
            match elements.get(s.name()).filter(|e| !e.is_empty()) {
                None => out.push_str(&format!("\t{decl}\n")),
                Some(elems) => {
                    out.push_str(&format!("\t{};\n", decl.trim_end_matches(" }")));
                    out.push_str("\t\telements = {\n");
                    for e in elems {
                        out.push_str(&format!("\t\t\t{e},\n"));
                    }
                    out.push_str("\t\t}\n\t}\n");
                }
            }
        }
        if family == Family::Inet {
            out.push_str(&format!(
                "\tchain {USER_CHAIN} {{ # yours: lnet never changes it\n\t}}\n"
            ));
        }
        for c in CHAINS.iter().filter(|c| c.family == family) {
            out.push_str(&format!("\tchain {} {{\n", c.name));
            if let Some((ty, hook, prio)) = c.hook {
                out.push_str(&format!(
                    "\t\ttype {} hook {} priority {prio}; policy accept;\n",
                    match ty {
                        ChainType::Filter => "filter",
                        ChainType::Nat => "nat",
                        ChainType::Route => "route",
                    },
                    match hook {
                        Hook::Prerouting => "prerouting",
                        Hook::Input => "input",
                        Hook::Forward => "forward",
                        Hook::Output => "output",
                        Hook::Postrouting => "postrouting",
                    }
                ));
            }
            for (_, text) in rules(c) {
                out.push_str(&format!("\t\t{text}\n"));
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lnet_kernel::nft::Concat;

    #[test]
    fn every_chain_has_rules_and_every_set_is_used() {
        let text = describe(&Default::default());
        for c in &CHAINS {
            assert!(!rules(c).is_empty(), "{} has no rules", c.name);
        }
        for s in SetName::ALL {
            assert!(
                text.contains(&format!("@{}", s.name())),
                "set {} is declared but no rule uses it",
                s.name()
            );
        }
    }

    #[test]
    fn elements_render_as_nft_prints_them() {
        let key = Concat::new()
            .ipv4("192.0.2.1".parse().unwrap())
            .inet_proto(6)
            .inet_service(8080)
            .build();
        assert_eq!(
            render(SetName::Ports4.key(), &key),
            "192.0.2.1 . tcp . 8080"
        );
        let pair = Concat::new().ifname("br-a").ifname("br-a").build();
        assert_eq!(
            render(SetName::BridgePairs.key(), &pair),
            "\"br-a\" . \"br-a\""
        );
        assert_eq!(render(&[DataType::InetService], &[0x1f]), "<short>");
        assert_eq!(render(SetName::ForwardGuard.key(), &[2]), "ipv4");
        assert_eq!(render(SetName::ForwardGuard.key(), &[10]), "ipv6");
        assert_eq!(
            SetName::ForwardGuard.declaration(),
            "set forward_guard { type nf_proto }"
        );
        let v4 = |a: &str| a.parse::<std::net::Ipv4Addr>().unwrap();
        let range = |a: &str, b: &str| {
            render_range(&[DataType::Ipv4Addr], &v4(a).octets(), &v4(b).octets())
        };
        assert_eq!(range("10.0.0.0", "10.0.0.255"), "10.0.0.0/24");
        assert_eq!(range("10.0.0.4", "10.0.0.4"), "10.0.0.4");
        assert_eq!(range("10.0.0.1", "10.0.0.255"), "10.0.0.1-10.0.0.255");
        assert_eq!(range("10.0.0.0", "10.0.0.254"), "10.0.0.0-10.0.0.254");
        assert_eq!(range("0.0.0.0", "255.255.255.255"), "0.0.0.0/0");
    }
}
