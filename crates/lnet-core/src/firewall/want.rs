//! What the firewall should hold, as set elements: derived from records (DESIGN §3.1),
//! never stored. Drivers describe their networks and published ports with [`NetFw`] and
//! [`PortFw`]; [`Want`] turns them into elements of the sets in [`super::ruleset`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use lnet_kernel::IpFamily;
use lnet_kernel::nft::{Concat, Family};
use lnet_store::Proto;
use serde::Serialize;

use super::ruleset::{SetName, render, render_range};

/// The firewall facts of one bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetFw {
    /// Bridge device name.
    pub bridge: String,
    /// No traffic to or from outside the network.
    pub internal: bool,
    /// Masquerade IPv4 traffic out (unless `snat4` is set).
    pub masq4: bool,
    /// SNAT IPv4 traffic out to this address instead of masquerading.
    pub snat4: Option<Ipv4Addr>,
    /// Masquerade IPv6 traffic out.
    pub masq6: bool,
    /// The network's subnets (for hairpin NAT).
    pub subnets: Vec<ipnet::IpNet>,
}

/// One published port with its target: `host_ip:host_port/proto` → `ctr_ip:ctr_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortFw {
    /// Protocol.
    pub proto: Proto,
    /// Host address; unspecified means every local address of its family.
    pub host_ip: IpAddr,
    /// Host port.
    pub host_port: u16,
    /// Container address (same family as `host_ip`).
    pub ctr_ip: IpAddr,
    /// Container port.
    pub ctr_port: u16,
}

/// The IP protocol number.
pub fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
        Proto::Sctp => 132,
    }
}

/// Elements by set: key bytes → value bytes (empty for plain sets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Want {
    /// The elements.
    pub sets: BTreeMap<SetName, BTreeMap<Vec<u8>, Vec<u8>>>,
}

fn ifname(name: &str) -> Vec<u8> {
    Concat::new().ifname(name).build()
}

impl Want {
    /// An empty want.
    pub fn new() -> Want {
        Want::default()
    }

    fn put(&mut self, set: SetName, key: Vec<u8>, data: Vec<u8>) {
        self.sets.entry(set).or_default().insert(key, data);
    }

    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.sets.values().all(BTreeMap::is_empty)
    }

    /// Adds a network's elements.
    pub fn network(&mut self, n: &NetFw) -> &mut Want {
        let br = ifname(&n.bridge);
        self.put(SetName::Bridges, br.clone(), Vec::new());
        self.put(
            SetName::BridgePairs,
            Concat::new().ifname(&n.bridge).ifname(&n.bridge).build(),
            Vec::new(),
        );
        if n.internal {
            self.put(SetName::Internal, br, Vec::new());
            return self;
        }
        for net in &n.subnets {
            let (set, first, last) = match net {
                ipnet::IpNet::V4(v) => (
                    SetName::Subnets4,
                    v.network().octets().to_vec(),
                    v.broadcast().octets().to_vec(),
                ),
                ipnet::IpNet::V6(v) => (
                    SetName::Subnets6,
                    v.network().octets().to_vec(),
                    v.broadcast().octets().to_vec(),
                ),
            };
            self.put(set, first, last);
        }
        match (n.masq4, n.snat4) {
            (true, Some(src)) => self.put(SetName::Snat4, br.clone(), src.octets().to_vec()),
            (true, None) => self.put(SetName::Masq4, br.clone(), Vec::new()),
            (false, _) => {}
        }
        if n.masq6 {
            self.put(SetName::Masq6, br, Vec::new());
        }
        self
    }

    /// Adds published ports.
    pub fn ports(&mut self, ports: &[PortFw]) -> &mut Want {
        for p in ports {
            let proto = proto_number(p.proto);
            let (set, key, data) = match (p.host_ip, p.ctr_ip) {
                (IpAddr::V4(h), IpAddr::V4(c)) => {
                    let data = Concat::new().ipv4(c).inet_service(p.ctr_port).build();
                    if h.is_unspecified() {
                        let key = Concat::new().inet_proto(proto).inet_service(p.host_port);
                        (SetName::Ports4Any, key.build(), data)
                    } else {
                        let key = Concat::new()
                            .ipv4(h)
                            .inet_proto(proto)
                            .inet_service(p.host_port);
                        (SetName::Ports4, key.build(), data)
                    }
                }
                (IpAddr::V6(h), IpAddr::V6(c)) => {
                    let data = Concat::new().ipv6(c).inet_service(p.ctr_port).build();
                    if h.is_unspecified() {
                        let key = Concat::new().inet_proto(proto).inet_service(p.host_port);
                        (SetName::Ports6Any, key.build(), data)
                    } else {
                        let key = Concat::new()
                            .ipv6(h)
                            .inet_proto(proto)
                            .inet_service(p.host_port);
                        (SetName::Ports6, key.build(), data)
                    }
                }
                // Callers pair addresses of one family; a mixed pair cannot be NATed.
                _ => continue,
            };
            self.put(set, key, data);
        }
        self
    }

    /// Adds the families whose forwarded traffic that is not lnet's is dropped (see
    /// [`crate::forwarding`]).
    pub fn forward_guard(&mut self, families: &[IpFamily]) -> &mut Want {
        for f in families {
            let nfproto = match f {
                IpFamily::V4 => Family::Ip,
                IpFamily::V6 => Family::Ip6,
            }
            .nfproto();
            self.put(SetName::ForwardGuard, vec![nfproto], Vec::new());
        }
        self
    }

    /// Every element as `nft` would print it, by set (for `lnet firewall show`).
    pub fn render(&self) -> BTreeMap<&'static str, Vec<String>> {
        self.sets
            .iter()
            .map(|(set, elems)| {
                let lines = elems
                    .iter()
                    .map(|(k, v)| render_element(*set, k, v))
                    .collect();
                (set.name(), lines)
            })
            .collect()
    }
}

/// One element as `nft` prints it: `key` or `key : value`.
pub fn render_element(set: SetName, key: &[u8], value: &[u8]) -> String {
    if set.ranges() {
        return render_range(set.key(), key, value);
    }
    let k = render(set.key(), key);
    match set.data() {
        Some(d) => format!("{k} : {}", render(d, value)),
        None => k,
    }
}

/// A difference between the firewall lnet wants and the kernel's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// `missing`, `extra` or `different`.
    pub kind: &'static str,
    /// What: `table inet lnet`, `chain inet lnet forward`, `element ports4 …`, ….
    pub what: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(internal: bool, masq4: bool, snat4: Option<Ipv4Addr>) -> NetFw {
        NetFw {
            bridge: "br-a".into(),
            internal,
            masq4,
            snat4,
            masq6: true,
            subnets: vec![
                "10.1.0.0/24".parse().unwrap(),
                "fd00:1::/64".parse().unwrap(),
            ],
        }
    }

    fn sets_of(w: &Want) -> Vec<&'static str> {
        w.sets
            .iter()
            .filter(|(_, e)| !e.is_empty())
            .map(|(s, _)| s.name())
            .collect()
    }

    #[test]
    fn network_options_choose_the_sets() {
        let mut w = Want::new();
        w.network(&net(false, true, None));
        assert_eq!(
            sets_of(&w),
            [
                "bridges",
                "bridge_pairs",
                "masq4",
                "masq6",
                "subnets4",
                "subnets6"
            ]
        );
        assert_eq!(w.render()["subnets4"], ["10.1.0.0/24"]);
        assert_eq!(w.render()["subnets6"], ["fd00:1::/64"]);

        let mut w = Want::new();
        w.network(&net(false, true, Some(Ipv4Addr::new(192, 0, 2, 9))));
        assert_eq!(
            sets_of(&w),
            [
                "bridges",
                "bridge_pairs",
                "masq6",
                "snat4",
                "subnets4",
                "subnets6"
            ]
        );
        assert_eq!(w.render()["snat4"], ["\"br-a\" : 192.0.2.9"]);

        // Internal: no NAT of any kind, whatever the masquerade option says.
        let mut w = Want::new();
        w.network(&net(true, true, None));
        assert_eq!(sets_of(&w), ["bridges", "bridge_pairs", "internal"]);
    }

    #[test]
    fn guarded_families_are_elements_of_forward_guard() {
        let mut w = Want::new();
        w.forward_guard(&[]);
        assert!(w.is_empty());
        w.forward_guard(&[IpFamily::V6, IpFamily::V4]);
        assert_eq!(w.render()["forward_guard"], ["ipv4", "ipv6"]);
    }

    #[test]
    fn ports_go_to_the_map_of_their_family_and_host_address() {
        let p = |host: &str, ctr: &str| PortFw {
            proto: Proto::Udp,
            host_ip: host.parse().unwrap(),
            host_port: 5353,
            ctr_ip: ctr.parse().unwrap(),
            ctr_port: 53,
        };
        let mut w = Want::new();
        w.ports(&[
            p("0.0.0.0", "172.18.0.2"),
            p("192.0.2.1", "172.18.0.2"),
            p("::", "fd00::2"),
            p("2001:db8::1", "fd00::2"),
            p("0.0.0.0", "fd00::2"), // mixed families: skipped
        ]);
        let r = w.render();
        assert_eq!(r["ports4_any"], ["udp . 5353 : 172.18.0.2 . 53"]);
        assert_eq!(r["ports4"], ["192.0.2.1 . udp . 5353 : 172.18.0.2 . 53"]);
        assert_eq!(r["ports6_any"], ["udp . 5353 : fd00::2 . 53"]);
        assert_eq!(r["ports6"], ["2001:db8::1 . udp . 5353 : fd00::2 . 53"]);
    }
}
