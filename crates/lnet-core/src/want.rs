//! What should exist in the kernel, as drivers state it, and how it differs from what does:
//! the one place that knows what "right" means for a network's or a join's links.
//!
//! A driver states, for each object, the links it wants ([`Wanted`]); [`compare`] reads one
//! link as the kernel reports it against one [`LinkWant`] and yields typed [`Drift`]. `doctor`
//! prints the drift, repair and the self-healer apply it ([`crate::reconcile`]), and a join
//! applies it to the pair it has just made. Plain data: nothing here reads the kernel.

use std::fmt;

use ipnet::IpNet;
use lnet_kernel::Link;

/// Which namespace a link lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The host's (the controller's) namespace.
    Host,
    /// The sandbox's.
    Sandbox,
}

/// One link as a driver wants it. Fields left `None` (or `false`) are not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkWant {
    /// Where it lives.
    pub side: Side,
    /// How reports name it: `bridge`, `veth`, `interface`.
    pub noun: &'static str,
    /// Its name.
    pub name: String,
    /// Its kind (`bridge`, `veth`), when the kernel must report exactly that.
    pub kind: Option<&'static str>,
    /// The name of its master (a bridge port's bridge).
    pub master: Option<String>,
    /// Administratively up.
    pub up: bool,
    /// Its alias (lnet's mark on a bridge).
    pub alias: Option<String>,
    /// Its MTU.
    pub mtu: Option<u32>,
    /// Its MAC.
    pub mac: Option<[u8; 6]>,
    /// Addresses it must carry.
    pub addrs: Vec<IpNet>,
    /// Whether addresses beyond `addrs` are drift (the kernel's own IPv6 link-local ones
    /// never are).
    pub only_addrs: bool,
    /// Must be an isolated bridge port (ICC off).
    pub isolated: bool,
    /// Must have hairpin mode on (it publishes ports).
    pub hairpin: bool,
}

impl LinkWant {
    /// A link called `name` on `side`, with nothing else checked yet.
    pub fn new(side: Side, noun: &'static str, name: impl Into<String>) -> LinkWant {
        LinkWant {
            side,
            noun,
            name: name.into(),
            kind: None,
            master: None,
            up: false,
            alias: None,
            mtu: None,
            mac: None,
            addrs: Vec::new(),
            only_addrs: false,
            isolated: false,
            hairpin: false,
        }
    }
}

/// Everything one object (a network, a join) wants, in the order it is made: a bridge port
/// before the interface in the sandbox, say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// The links.
    pub links: Vec<LinkWant>,
}

/// One way a link differs from what its object wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The link is not there.
    Missing {
        /// How reports name it.
        noun: &'static str,
        /// Its name.
        name: String,
    },
    /// A link of that name is there, of another kind.
    WrongKind {
        /// Its name.
        name: String,
        /// What it is.
        have: String,
        /// What it should be.
        want: &'static str,
    },
    /// Not on its master.
    Master {
        /// The link.
        name: String,
        /// The master it should be on.
        want: String,
    },
    /// Administratively down.
    Down {
        /// How reports name it.
        noun: &'static str,
        /// The link.
        name: String,
    },
    /// Without lnet's alias.
    Alias {
        /// How reports name it.
        noun: &'static str,
        /// The link.
        name: String,
        /// What it carries.
        have: Option<String>,
        /// What it should carry.
        want: String,
    },
    /// Another MTU.
    Mtu {
        /// How reports name it.
        noun: &'static str,
        /// The link.
        name: String,
        /// What it has.
        have: u32,
        /// What it should have.
        want: u32,
    },
    /// Not an isolated bridge port.
    NotIsolated {
        /// The link.
        name: String,
    },
    /// Hairpin mode off.
    NoHairpin {
        /// The link.
        name: String,
    },
    /// Another MAC.
    Mac {
        /// The link.
        name: String,
        /// What it has.
        have: [u8; 6],
        /// What it should have.
        want: [u8; 6],
    },
    /// An address it should carry is missing.
    AddrMissing {
        /// The link.
        name: String,
        /// The address.
        addr: IpNet,
    },
    /// It carries an address nothing calls for.
    AddrExtra {
        /// The link.
        name: String,
        /// The address.
        addr: IpNet,
    },
}

impl Drift {
    /// `missing`, `extra` or `different`, as `doctor` reports it.
    pub fn kind(&self) -> &'static str {
        match self {
            Drift::Missing { .. } | Drift::AddrMissing { .. } => "missing",
            Drift::AddrExtra { .. } => "extra",
            _ => "different",
        }
    }

    /// Whether the link must be made again (it is gone, or something else has its name),
    /// rather than changed in place.
    pub fn needs_remake(&self) -> bool {
        matches!(self, Drift::Missing { .. } | Drift::WrongKind { .. })
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Missing { noun, name } => write!(f, "{noun} {name}"),
            Drift::WrongKind { name, have, want } => write!(f, "{name} is a {have}, not a {want}"),
            Drift::Master { name, want } => write!(f, "{name} is not on bridge {want}"),
            Drift::Down { noun, name } => write!(f, "{noun} {name} is down"),
            Drift::Alias {
                noun,
                name,
                have,
                want,
            } => write!(
                f,
                "{noun} {name} lacks lnet's mark (alias {want}, not {:?})",
                have.as_deref().unwrap_or("")
            ),
            Drift::Mtu {
                noun,
                name,
                have,
                want,
            } => write!(f, "{noun} {name} has MTU {have}, not {want}"),
            Drift::NotIsolated { name } => {
                write!(f, "{name} is not an isolated bridge port (ICC is off)")
            }
            Drift::NoHairpin { name } => {
                write!(f, "{name} has hairpin mode off (it publishes ports)")
            }
            Drift::Mac { name, have, want } => write!(
                f,
                "{name} has MAC {}, not {}",
                lnet_kernel::format_mac(have),
                lnet_kernel::format_mac(want)
            ),
            Drift::AddrMissing { name, addr } | Drift::AddrExtra { name, addr } => {
                write!(f, "address {addr} on {name}")
            }
        }
    }
}

/// An IPv6 link-local address, which the kernel gives a link itself (never drift).
pub fn is_kernel_link_local(addr: &IpNet) -> bool {
    matches!(addr, IpNet::V6(a) if a.addr().segments()[0] & 0xffc0 == 0xfe80)
}

/// How `want` differs from `have` (the link of that name as the kernel reports it, `None`
/// when there is none, with `addrs` the addresses it carries). `master_index` resolves the
/// wanted master's name; a master that is itself missing is its own object's drift, not
/// this link's. In a fixed order: what makes the link be made again first, then its master,
/// state, settings, port flags and addresses.
pub fn compare(
    want: &LinkWant,
    have: Option<&Link>,
    addrs: &[IpNet],
    master_index: impl Fn(&str) -> Option<u32>,
) -> Vec<Drift> {
    let name = || want.name.clone();
    let Some(have) = have else {
        return vec![Drift::Missing {
            noun: want.noun,
            name: name(),
        }];
    };
    let mut out = Vec::new();
    if let Some(kind) = want.kind
        && !have.is_kind(kind)
    {
        out.push(Drift::WrongKind {
            name: name(),
            have: have.kind.clone().unwrap_or_else(|| "device".into()),
            want: kind,
        });
        return out;
    }
    if let Some(m) = &want.master
        && let Some(index) = master_index(m)
        && have.master != Some(index)
    {
        out.push(Drift::Master {
            name: name(),
            want: m.clone(),
        });
    }
    if want.up && !have.up {
        out.push(Drift::Down {
            noun: want.noun,
            name: name(),
        });
    }
    if let Some(alias) = &want.alias
        && have.alias.as_deref() != Some(alias.as_str())
    {
        out.push(Drift::Alias {
            noun: want.noun,
            name: name(),
            have: have.alias.clone(),
            want: alias.clone(),
        });
    }
    if let Some(mtu) = want.mtu.filter(|m| *m != have.mtu) {
        out.push(Drift::Mtu {
            noun: want.noun,
            name: name(),
            have: have.mtu,
            want: mtu,
        });
    }
    if want.isolated && have.isolated != Some(true) {
        out.push(Drift::NotIsolated { name: name() });
    }
    if want.hairpin && have.hairpin != Some(true) {
        out.push(Drift::NoHairpin { name: name() });
    }
    if let (Some(w), Some(h)) = (want.mac, have.mac)
        && w != h
    {
        out.push(Drift::Mac {
            name: name(),
            have: h,
            want: w,
        });
    }
    for a in want.addrs.iter().filter(|a| !addrs.contains(a)) {
        out.push(Drift::AddrMissing {
            name: name(),
            addr: *a,
        });
    }
    if want.only_addrs {
        for a in addrs
            .iter()
            .filter(|a| !want.addrs.contains(a) && !is_kernel_link_local(a))
        {
            out.push(Drift::AddrExtra {
                name: name(),
                addr: *a,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, kind: &str) -> Link {
        Link {
            index: 7,
            name: name.into(),
            kind: Some(kind.into()),
            mac: Some([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
            up: true,
            lower_up: true,
            master: Some(3),
            hairpin: Some(false),
            isolated: Some(false),
            alias: None,
        }
    }

    fn port() -> LinkWant {
        LinkWant {
            kind: Some("veth"),
            master: Some("br0".into()),
            up: true,
            ..LinkWant::new(Side::Host, "veth", "veth1234567")
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn a_link_as_wanted_has_no_drift() {
        let want = LinkWant {
            mac: Some([2, 0, 0, 0, 0, 1]),
            addrs: vec![net("10.0.0.2/24")],
            ..port()
        };
        let have = link("veth1234567", "veth");
        assert_eq!(
            compare(&want, Some(&have), &[net("10.0.0.2/24")], |_| Some(3)),
            []
        );
    }

    #[test]
    fn a_missing_link_is_only_missing() {
        let d = compare(&port(), None, &[], |_| Some(3));
        assert_eq!(d.len(), 1);
        assert!(d[0].needs_remake());
        assert_eq!(
            (d[0].kind(), d[0].to_string().as_str()),
            ("missing", "veth veth1234567")
        );
    }

    #[test]
    fn another_kind_under_the_name_must_be_remade_and_nothing_else_is_checked() {
        let mut have = link("veth1234567", "dummy");
        have.up = false;
        let d = compare(&port(), Some(&have), &[], |_| Some(3));
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].needs_remake());
        assert_eq!(d[0].to_string(), "veth1234567 is a dummy, not a veth");
    }

    #[test]
    fn each_setting_is_its_own_drift_in_a_fixed_order() {
        let want = LinkWant {
            mtu: Some(1400),
            mac: Some([2, 0, 0, 0, 0, 9]),
            isolated: true,
            hairpin: true,
            alias: Some("lnet:network:x".into()),
            addrs: vec![net("10.0.0.1/24")],
            only_addrs: true,
            ..port()
        };
        let mut have = link("veth1234567", "veth");
        have.up = false;
        let d = compare(
            &want,
            Some(&have),
            &[net("10.9.9.9/8"), net("fe80::1/64")],
            |_| Some(4),
        );
        let said: Vec<String> = d.iter().map(|d| format!("{} {d}", d.kind())).collect();
        assert_eq!(
            said,
            [
                "different veth1234567 is not on bridge br0",
                "different veth veth1234567 is down",
                "different veth veth1234567 lacks lnet's mark (alias lnet:network:x, not \"\")",
                "different veth veth1234567 has MTU 1500, not 1400",
                "different veth1234567 is not an isolated bridge port (ICC is off)",
                "different veth1234567 has hairpin mode off (it publishes ports)",
                "different veth1234567 has MAC 02:00:00:00:00:01, not 02:00:00:00:00:09",
                "missing address 10.0.0.1/24 on veth1234567",
                "extra address 10.9.9.9/8 on veth1234567",
            ]
        );
        assert!(d.iter().all(|d| !d.needs_remake()));
    }

    #[test]
    fn a_missing_master_is_not_the_ports_drift() {
        let have = link("veth1234567", "veth");
        assert_eq!(compare(&port(), Some(&have), &[], |_| None), []);
    }

    #[test]
    fn extra_addresses_count_only_when_the_object_owns_the_link() {
        let have = link("eth0", "veth");
        let want = LinkWant {
            addrs: vec![net("10.0.0.2/24")],
            ..LinkWant::new(Side::Sandbox, "interface", "eth0")
        };
        assert_eq!(
            compare(
                &want,
                Some(&have),
                &[net("10.0.0.2/24"), net("10.1.0.2/24")],
                |_| None
            ),
            []
        );
    }
}
