//! Links: lookup, bridge and veth creation, deletion, up/down, MTU, MAC,
//! master, rename, bridge-port hairpin mode.

use std::os::fd::AsRawFd;

use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth, LinkAttribute, LinkExtentMask,
    LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth};

use lnet_nla::{Attrs, NLMSG_HDRLEN};

use crate::error::{KernelError, Result};
use crate::netlink::{Netlink, OpContext, check_ifname};
use crate::netns::Netns;

/// `IFLA_BRPORT_MODE` (hairpin) and `IFLA_BRPORT_ISOLATED` (`linux/if_link.h`).
const IFLA_BRPORT_MODE: u16 = 4;
const IFLA_BRPORT_ISOLATED: u16 = 33;

/// The loopback interface index, the same in every network namespace.
pub const LOOPBACK_INDEX: u32 = 1;

/// A network interface as reported by `RTM_GETLINK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index (unique within its namespace).
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// `IFLA_INFO_KIND`: `"bridge"`, `"veth"`, ... (`None` for physical
    /// devices and loopback).
    pub kind: Option<String>,
    /// Hardware address, when it is a 6-byte Ethernet address.
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_LOWER_UP`); a veth has carrier once both ends
    /// are up.
    pub lower_up: bool,
    /// Index of the master device (bridge) this link is enslaved to.
    pub master: Option<u32>,
    /// For a bridge port: whether hairpin mode is on (frames may be sent
    /// back out of the port they came in on; see [`Netlink::set_hairpin`]).
    /// `None` for links that are not bridge ports.
    pub hairpin: Option<bool>,
    /// For a bridge port: whether it is isolated (it exchanges frames only with ports
    /// that are not; see [`Netlink::set_isolated`]). `None` for links that are not
    /// bridge ports.
    pub isolated: Option<bool>,
    /// `IFLA_IFALIAS`, the free-text alias (`ip link set dev X alias …`): lnet marks the
    /// bridges it makes with it, so that it can tell them from anyone else's after its
    /// records are lost. `None` when the link has none.
    pub alias: Option<String>,
}

impl Link {
    pub(crate) fn from_message(msg: LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            mac: None,
            mtu: 0,
            up: msg.header.flags.contains(LinkFlags::Up),
            lower_up: msg.header.flags.contains(LinkFlags::LowerUp),
            master: None,
            hairpin: None,
            isolated: None,
            alias: None,
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::IfAlias(alias) if !alias.is_empty() => link.alias = Some(alias),
                LinkAttribute::Mtu(mtu) => link.mtu = mtu,
                LinkAttribute::Address(addr) => link.mac = <[u8; 6]>::try_from(addr).ok(),
                LinkAttribute::Controller(m) if m != 0 => link.master = Some(m),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(kind) => link.kind = Some(kind.to_string()),
                            LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                                for p in port {
                                    match p {
                                        InfoBridgePort::HairpinMode(on) => link.hairpin = Some(on),
                                        InfoBridgePort::Isolated(on) => link.isolated = Some(on),
                                        _ => {}
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    /// Reads a link from one `RTM_NEWLINK` message as the kernel sent it (netlink header
    /// included): only the attributes [`Link`] holds, each length checked, everything else
    /// skipped unread. A full dump of 10,000 links spent a third of its time decoding
    /// attributes nobody reads (address-family blocks, statistics) into allocations.
    /// `Ok(None)` for any other message type.
    pub(crate) fn from_bytes(m: &[u8]) -> std::result::Result<Option<Link>, String> {
        const RTM_NEWLINK: u16 = 16;
        const AF_BRIDGE: u8 = 7;
        const IFLA_ADDRESS: u16 = 1;
        const IFLA_IFNAME: u16 = 3;
        const IFLA_MTU: u16 = 4;
        const IFLA_MASTER: u16 = 10;
        const IFLA_PROTINFO: u16 = 12;
        const IFLA_LINKINFO: u16 = 18;
        const IFLA_IFALIAS: u16 = 20;
        const IFLA_INFO_KIND: u16 = 1;
        const IFLA_INFO_SLAVE_KIND: u16 = 4;
        const IFLA_INFO_SLAVE_DATA: u16 = 5;
        const IFINFOMSG_LEN: usize = 16;
        let bad = |what: &dyn std::fmt::Display| format!("malformed RTM_NEWLINK: {what}");
        let u32_of = |v: &[u8]| <[u8; 4]>::try_from(v).ok().map(u32::from_ne_bytes);
        if m.get(4..6) != Some(&RTM_NEWLINK.to_ne_bytes()[..]) || m.len() < NLMSG_HDRLEN {
            return Ok(None);
        }
        let len = u32_of(&m[0..4]).unwrap_or(0) as usize;
        let m = m
            .get(..len)
            .ok_or_else(|| bad(&"length beyond the message"))?;
        let ifi = m
            .get(NLMSG_HDRLEN..NLMSG_HDRLEN + IFINFOMSG_LEN)
            .ok_or_else(|| bad(&"no ifinfomsg"))?;
        let flags = u32_of(&ifi[8..12]).unwrap_or(0);
        let mut link = Link {
            index: u32_of(&ifi[4..8]).unwrap_or(0),
            name: String::new(),
            kind: None,
            mac: None,
            mtu: 0,
            up: flags & libc::IFF_UP as u32 != 0,
            lower_up: flags & libc::IFF_LOWER_UP as u32 != 0,
            master: None,
            hairpin: None,
            isolated: None,
            alias: None,
        };
        let port_flags = |link: &mut Link, nested: Attrs<'_>| -> std::result::Result<(), String> {
            for a in nested {
                let a = a.map_err(|e| bad(&e))?;
                match (a.kind(), a.u8()) {
                    (IFLA_BRPORT_MODE, Some(on)) => link.hairpin = Some(on != 0),
                    (IFLA_BRPORT_ISOLATED, Some(on)) => link.isolated = Some(on != 0),
                    _ => {}
                }
            }
            Ok(())
        };
        let attrs = Attrs::of_message(m, IFINFOMSG_LEN).map_err(|e| bad(&e))?;
        for a in attrs {
            let a = a.map_err(|e| bad(&e))?;
            let v = a.value();
            match a.kind() {
                IFLA_IFNAME => {
                    link.name = a.c_str().ok_or_else(|| bad(&"interface name"))?.to_string()
                }
                IFLA_ADDRESS => link.mac = <[u8; 6]>::try_from(v).ok(),
                IFLA_MTU => link.mtu = a.ne32().ok_or_else(|| bad(&"MTU"))?,
                IFLA_MASTER => link.master = a.ne32().filter(|m| *m != 0),
                // Anyone may set an alias; one that is not UTF-8 is nobody's mark, but no
                // reason to refuse the whole link.
                IFLA_IFALIAS => link.alias = Some(a.string()).filter(|a| !a.is_empty()),
                IFLA_PROTINFO if ifi[0] == AF_BRIDGE => port_flags(&mut link, a.nested())?,
                IFLA_LINKINFO => {
                    let mut port_of_bridge = false;
                    let mut port_data = None;
                    for a in a.nested() {
                        let a = a.map_err(|e| bad(&e))?;
                        match a.kind() {
                            IFLA_INFO_KIND => link.kind = a.c_str().map(str::to_string),
                            IFLA_INFO_SLAVE_KIND => port_of_bridge = a.c_str() == Some("bridge"),
                            IFLA_INFO_SLAVE_DATA => port_data = Some(a.nested()),
                            _ => {}
                        }
                    }
                    if let (true, Some(data)) = (port_of_bridge, port_data) {
                        port_flags(&mut link, data)?;
                    }
                }
                _ => {}
            }
        }
        Ok(Some(link))
    }

    /// True when `IFLA_INFO_KIND` is `kind`.
    pub fn is_kind(&self, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind)
    }
}

/// Options applied when [`Netlink::ensure_bridge`] creates a bridge. They
/// are not applied to a bridge that already exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeOptions<'a> {
    /// MTU of the bridge device.
    pub mtu: Option<u32>,
    /// MAC address; without it the kernel picks a random one.
    pub mac: Option<[u8; 6]>,
    /// Alias (`IFLA_IFALIAS`, at most [`MAX_ALIAS_LEN`] bytes); see [`Link::alias`].
    pub alias: Option<&'a str>,
}

/// The longest alias the kernel keeps (`IFALIASZ` - 1).
pub const MAX_ALIAS_LEN: usize = 255;

fn check_alias(op: impl FnOnce() -> String, alias: &str) -> Result<()> {
    if alias.len() > MAX_ALIAS_LEN || alias.contains('\0') {
        return Err(KernelError::invalid(
            op(),
            format!("an alias is at most {MAX_ALIAS_LEN} bytes, without NUL"),
        ));
    }
    Ok(())
}

/// Everything about a veth pair, for [`Netlink::create_veth`]: the pair is
/// created with a single request, the peer directly in its final namespace
/// with its final name, MAC and MTU, and the host end already enslaved.
#[derive(Debug, Clone, Copy, Default)]
pub struct VethSpec<'a> {
    /// Name of the end that stays in the socket's namespace.
    pub host_name: &'a str,
    /// MTU of the host end.
    pub host_mtu: Option<u32>,
    /// Index of the bridge to enslave the host end to (`IFLA_MASTER`).
    pub host_master: Option<u32>,
    /// Create the host end administratively up (saves a `set_up` request).
    pub host_up: bool,
    /// Name of the peer end, in its namespace (e.g. `"eth0"`).
    pub peer_name: &'a str,
    /// Namespace to create the peer in (`IFLA_NET_NS_FD`); `None` keeps it
    /// next to the host end.
    pub peer_ns: Option<&'a Netns>,
    /// MAC address of the peer; without it the kernel picks a random one.
    pub peer_mac: Option<[u8; 6]>,
    /// MTU of the peer.
    pub peer_mtu: Option<u32>,
    // There is deliberately no `peer_up`: the kernel configures the peer
    // before the two ends are linked, so `IFF_UP` on the peer message fails
    // the whole request with ENOTCONN (`veth_open`: no peer yet). Bring the
    // peer up from its namespace afterwards.
}

/// A macvlan link's mode (`IFLA_MACVLAN_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvlanMode {
    /// Links on the same parent talk to each other directly.
    Bridge,
    /// No traffic between links on the same parent.
    Private,
    /// Traffic between links goes out to the switch and back (802.1Qbg).
    Vepa,
    /// One link takes the parent over.
    Passthru,
}

/// An ipvlan link's mode (`IFLA_IPVLAN_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpvlanMode {
    /// Switched at layer 2 on the parent's MAC.
    L2,
    /// Routed at layer 3.
    L3,
    /// Routed at layer 3, through the host's netfilter.
    L3s,
}

/// An ipvlan link's flag (`IFLA_IPVLAN_FLAGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpvlanFlag {
    /// Links on the same parent talk to each other directly.
    Bridge,
    /// No traffic between links on the same parent.
    Private,
    /// Traffic between links goes out and back.
    Vepa,
}

/// What kind of link [`SubLinkSpec`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubLinkKind {
    /// A macvlan on the parent.
    Macvlan(MacvlanMode),
    /// An ipvlan on the parent.
    Ipvlan(IpvlanMode, IpvlanFlag),
    /// An 802.1q VLAN sub-interface of the parent, with this VLAN id (1–4094).
    Vlan(u16),
    /// A dummy link, which has no parent (an isolated network's stand-in parent).
    Dummy,
}

impl SubLinkKind {
    /// The kernel's name for the kind (`ip link add … type NAME`).
    pub fn kernel_kind(&self) -> &'static str {
        match self {
            SubLinkKind::Macvlan(_) => "macvlan",
            SubLinkKind::Ipvlan(..) => "ipvlan",
            SubLinkKind::Vlan(_) => "vlan",
            SubLinkKind::Dummy => "dummy",
        }
    }
}

/// A link made on a parent link in one request: a container's macvlan or ipvlan interface
/// (made straight in the sandbox's namespace with its final name and MAC), or a VLAN
/// sub-interface.
#[derive(Debug, Clone, Copy)]
pub struct SubLinkSpec<'a> {
    /// Its name, in the namespace it is made in.
    pub name: &'a str,
    /// What it is.
    pub kind: SubLinkKind,
    /// The parent's index, in the socket's namespace (`IFLA_LINK`); unused for a dummy.
    pub parent: u32,
    /// Namespace to make it in (`IFLA_NET_NS_FD`); `None`: the socket's.
    pub ns: Option<&'a Netns>,
    /// Its MAC; without it the kernel picks one.
    pub mac: Option<[u8; 6]>,
    /// Its MTU; without it, the parent's.
    pub mtu: Option<u32>,
    /// Made administratively up.
    pub up: bool,
}

/// The request that makes `spec`.
pub(crate) fn sublink_message(spec: &SubLinkSpec<'_>) -> LinkMessage {
    use rtnetlink::packet_route::link::{
        InfoIpVlan, InfoMacVlan, InfoVlan, IpVlanFlags, IpVlanMode, MacVlanMode,
    };
    let data = match spec.kind {
        SubLinkKind::Macvlan(m) => Some(InfoData::MacVlan(vec![InfoMacVlan::Mode(match m {
            MacvlanMode::Bridge => MacVlanMode::Bridge,
            MacvlanMode::Private => MacVlanMode::Private,
            MacvlanMode::Vepa => MacVlanMode::Vepa,
            MacvlanMode::Passthru => MacVlanMode::Passthrough,
        })])),
        SubLinkKind::Ipvlan(m, f) => Some(InfoData::IpVlan(vec![
            InfoIpVlan::Mode(match m {
                IpvlanMode::L2 => IpVlanMode::L2,
                IpvlanMode::L3 => IpVlanMode::L3,
                IpvlanMode::L3s => IpVlanMode::L3S,
            }),
            InfoIpVlan::Flags(match f {
                IpvlanFlag::Bridge => IpVlanFlags::empty(),
                IpvlanFlag::Private => IpVlanFlags::Private,
                IpvlanFlag::Vepa => IpVlanFlags::Vepa,
            }),
        ])),
        SubLinkKind::Vlan(id) => Some(InfoData::Vlan(vec![InfoVlan::Id(id)])),
        SubLinkKind::Dummy => None,
    };
    let kind = match spec.kind {
        SubLinkKind::Macvlan(_) => InfoKind::MacVlan,
        SubLinkKind::Ipvlan(..) => InfoKind::IpVlan,
        SubLinkKind::Vlan(_) => InfoKind::Vlan,
        SubLinkKind::Dummy => InfoKind::Dummy,
    };
    let mut b = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(kind).name(spec.name);
    if let Some(data) = data {
        b = b.set_info_data(data);
    }
    if spec.kind != SubLinkKind::Dummy {
        b = b.link(spec.parent);
    }
    if let Some(mac) = spec.mac {
        b = b.address(mac.to_vec());
    }
    if let Some(mtu) = spec.mtu {
        b = b.mtu(mtu);
    }
    if let Some(ns) = spec.ns {
        // The fd stays open (borrowed from `ns`) until the request is sent.
        b = b.setns_by_fd(ns.fd().as_raw_fd());
    }
    if spec.up {
        b = b.up();
    }
    b.build()
}

/// The request [`Netlink::kind_supported`] sends: a link of `kind` with a one-byte
/// address, which every link type that knows addresses refuses in its validation
/// (`EINVAL`) before anything is made, while a kind the kernel does not have is refused
/// `EOPNOTSUPP`.
pub(crate) fn probe_message(kind: &str) -> LinkMessage {
    let mut msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::from(kind))
        .name("lnetprobe0")
        .build();
    msg.attributes.push(LinkAttribute::Address(vec![0]));
    msg
}

/// Format a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Index 0 means "no index" to the kernel (it then wants a name).
fn check_index(op: impl FnOnce() -> String, index: u32) -> Result<()> {
    if index == 0 {
        return Err(KernelError::invalid(op(), "interface index 0"));
    }
    Ok(())
}

fn get_by_name(name: &str) -> RouteNetlinkMessage {
    let mut msg = LinkUnspec::new_with_name(name).build();
    msg.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    RouteNetlinkMessage::GetLink(msg)
}

impl Netlink {
    /// Look a link up by name; `Ok(None)` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        check_ifname(|| format!("get link {name}"), name)?;
        let mut found = None;
        match self.transact(get_by_name(name), 0, |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                found = Some(Link::from_message(l));
            }
        }) {
            Ok(_) => Ok(found),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e.into_kernel(format!("get link {name}"))),
        }
    }

    /// Look a link up by index; `Ok(None)` if there is none.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        check_index(|| "get link".to_string(), index)?;
        let mut msg = LinkUnspec::new_with_index(index).build();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let mut found = None;
        match self.transact(RouteNetlinkMessage::GetLink(msg), 0, |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                found = Some(Link::from_message(l));
            }
        }) {
            Ok(_) => Ok(found),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e.into_kernel(format!("get link index {index}"))),
        }
    }

    /// All links of the socket's namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        self.dump_raw(RouteNetlinkMessage::GetLink(msg), Link::from_bytes)
            .op(|| "list links".to_string())
    }

    /// The links of one kind (`"bridge"`, `"veth"`, …). The kind is a dump filter, so the
    /// kernel describes only those: on a host with thousands of interfaces of other kinds
    /// this costs a fraction of [`Netlink::links`].
    pub fn links_of_kind(&mut self, kind: &str) -> Result<Vec<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::from(kind),
            )]));
        let links = self
            .dump_raw(RouteNetlinkMessage::GetLink(msg), Link::from_bytes)
            .op(|| format!("list links of kind {kind}"))?;
        // A kernel that ignores the filter sends them all.
        Ok(links.into_iter().filter(|l| l.is_kind(kind)).collect())
    }

    /// Every bridge port of the namespace as its bridge describes it (`bridge link show`):
    /// index, name, master, flags, MAC, MTU, hairpin mode and isolation; `kind` is `None`.
    /// A full link dump describes each veth's peer namespace (a search through every
    /// namespace id the host has given out), its address families and its link info: at
    /// 10,000 veths in 1,000 namespaces that made [`Netlink::links`] take 0.3 s, most of
    /// it for what a bridge port's check does not need.
    pub fn bridge_ports(&mut self) -> Result<Vec<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        self.dump_raw(RouteNetlinkMessage::GetLink(msg), Link::from_bytes)
            .op(|| "list bridge ports".to_string())
    }

    /// Send a `RTM_NEWLINK` create request with `NLM_F_ECHO`, returning the
    /// link the kernel echoes back. Kernels that do not echo link creation
    /// (older than 6.x) cost one extra request: a lookup by name.
    fn create_link(
        &mut self,
        msg: LinkMessage,
        name: &str,
        op: impl FnOnce() -> String,
    ) -> Result<Link> {
        let mut created = None;
        self.transact(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
            |m| {
                if let RouteNetlinkMessage::NewLink(l) = m
                    && created.is_none()
                {
                    let link = Link::from_message(l);
                    if link.name == name {
                        created = Some(link);
                    }
                }
            },
        )
        .op(op)?;
        match created {
            Some(link) => Ok(link),
            None => self
                .link_by_name(name)?
                .ok_or_else(|| KernelError::Netlink {
                    op: format!("get link {name} after creating it"),
                    errno: libc::ENODEV,
                    message: "No such device (deleted concurrently?)".into(),
                    kernel_message: None,
                }),
        }
    }

    /// Ensure a bridge named `name` exists and return it.
    ///
    /// Creates it (administratively down, with `opts`) when missing. When a
    /// link with that name already exists — including when another process
    /// creates it concurrently — it is returned unchanged if it is a bridge,
    /// and [`KernelError::WrongKind`] is returned otherwise.
    ///
    /// The MTU is set after creation, not in the create request: a bridge's MTU given at
    /// creation follows its ports (back to 1500 when the last one leaves), while one set
    /// afterwards stays as set.
    ///
    /// The alias goes in the create request too, but the kernel (6.18 at least) ignores
    /// `IFLA_IFALIAS` there: when the echoed link lacks it, it is set with a second request.
    pub fn ensure_bridge(&mut self, name: &str, opts: BridgeOptions<'_>) -> Result<Link> {
        check_ifname(|| format!("create bridge {name}"), name)?;
        if let Some(alias) = opts.alias {
            check_alias(|| format!("create bridge {name}"), alias)?;
        }
        let mut builder = LinkMessageBuilder::<LinkBridge>::new(name);
        if let Some(mac) = opts.mac {
            builder = builder.address(mac.to_vec());
        }
        let mut msg = builder.build();
        if let Some(alias) = opts.alias {
            msg.attributes
                .push(LinkAttribute::IfAlias(alias.to_string()));
        }
        match self.create_link(msg, name, || format!("create bridge {name}")) {
            Ok(mut link) => {
                if let Some(alias) = opts.alias.filter(|a| link.alias.as_deref() != Some(*a)) {
                    self.set_alias(link.index, alias)?;
                    link.alias = Some(alias.to_string());
                }
                if let Some(mtu) = opts.mtu.filter(|m| *m != link.mtu) {
                    self.set_mtu(link.index, mtu)?;
                    link.mtu = mtu;
                }
                Ok(link)
            }
            Err(e) if e.is_exists() => match self.link_by_name(name)? {
                Some(link) if link.is_kind("bridge") => Ok(link),
                Some(link) => Err(KernelError::WrongKind {
                    name: name.to_string(),
                    expected: "bridge",
                    found: link.kind,
                }),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Create a veth pair with one request and return the host end's index.
    ///
    /// The peer is created directly in `spec.peer_ns` (`IFLA_NET_NS_FD` in
    /// the `VETH_INFO_PEER` message) with its final name, MAC and MTU, and
    /// the host end is enslaved to `spec.host_master` by the same request, so
    /// no later move or rename is needed. If either name is taken (the host
    /// name here, the peer name in the peer namespace) the error has
    /// [`KernelError::is_exists`] true; nothing is created in that case.
    pub fn create_veth(&mut self, spec: VethSpec<'_>) -> Result<u32> {
        let op = || {
            let mut s = format!("create veth {} (peer {}", spec.host_name, spec.peer_name);
            if let Some(ns) = spec.peer_ns {
                s.push_str(&format!(" in netns {}", ns.describe()));
            }
            if let Some(m) = spec.host_master {
                s.push_str(&format!(", master index {m}"));
            }
            s.push(')');
            s
        };
        check_ifname(op, spec.host_name)?;
        check_ifname(op, spec.peer_name)?;

        let mut peer = LinkUnspec::new_with_name(spec.peer_name);
        if let Some(mac) = spec.peer_mac {
            peer = peer.address(mac.to_vec());
        }
        if let Some(mtu) = spec.peer_mtu {
            peer = peer.mtu(mtu);
        }
        if let Some(ns) = spec.peer_ns {
            // The fd stays open (borrowed from `ns`) until the request is sent.
            peer = peer.setns_by_fd(ns.fd().as_raw_fd());
        }

        let mut host = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(spec.host_name)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
        if let Some(mtu) = spec.host_mtu {
            host = host.mtu(mtu);
        }
        if let Some(master) = spec.host_master {
            host = host.controller(master);
        }
        if spec.host_up {
            host = host.up();
        }
        Ok(self.create_link(host.build(), spec.host_name, op)?.index)
    }

    /// Make a link on a parent ([`SubLinkSpec`]). Its index when it is made in the socket's
    /// namespace; made in another, `None` (the kernel echoes it there, not here). If the
    /// name is taken where it is made, the error has [`KernelError::is_exists`] true; a kind
    /// the kernel lacks, [`KernelError::is_unsupported`].
    pub fn create_sublink(&mut self, spec: SubLinkSpec<'_>) -> Result<Option<u32>> {
        let op = || {
            let mut s = format!(
                "create {} {} on parent index {}",
                spec.kind.kernel_kind(),
                spec.name,
                spec.parent
            );
            if let Some(ns) = spec.ns {
                s.push_str(&format!(" in netns {}", ns.describe()));
            }
            s
        };
        check_ifname(op, spec.name)?;
        if let SubLinkKind::Vlan(id) = spec.kind
            && !(1..=4094).contains(&id)
        {
            return Err(KernelError::invalid(op(), "a VLAN id is 1 to 4094"));
        }
        let mut index = 0;
        self.transact(
            RouteNetlinkMessage::NewLink(sublink_message(&spec)),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
            |m| {
                if let RouteNetlinkMessage::NewLink(l) = m {
                    index = l.header.index;
                }
            },
        )
        .op(op)?;
        if spec.ns.is_some() {
            return Ok(None);
        }
        if index == 0 {
            // A kernel that does not echo: look it up.
            index = self.link_by_name(spec.name)?.map_or(0, |l| l.index);
        }
        Ok(Some(index))
    }

    /// Whether the kernel has link type `kind` (`macvlan`, `ipvlan`, `vlan`, `dummy`),
    /// loading its module if it can. Nothing is made: see [`probe_message`].
    pub fn kind_supported(&mut self, kind: &str) -> Result<bool> {
        let op = || format!("probe link type {kind}");
        match self.ack(
            RouteNetlinkMessage::NewLink(probe_message(kind)),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => Ok(false),
            Err(e) if e.errno() == Some(libc::EINVAL) => Ok(true),
            // Made after all (a type that checks no address): it is there, and goes again.
            Ok(()) => {
                self.delete_link("lnetprobe0")?;
                Ok(true)
            }
            Err(e) => Err(e.into_kernel(op())),
        }
    }

    /// Ensure no link named `name` exists. Returns `true` if one was deleted,
    /// `false` if there was none. Deleting one end of a veth pair deletes
    /// both.
    pub fn delete_link(&mut self, name: &str) -> Result<bool> {
        check_ifname(|| format!("delete link {name}"), name)?;
        let msg = LinkUnspec::new_with_name(name).build();
        match self.ack(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e.into_kernel(format!("delete link {name}"))),
        }
    }

    /// Put link `name` in interface group `group` (`ip link set dev NAME group N`).
    pub fn set_group(&mut self, name: &str, group: u32) -> Result<()> {
        let op = || format!("set the group of link {name} to {group}");
        check_ifname(op, name)?;
        let mut msg = LinkUnspec::new_with_name(name).build();
        msg.attributes.push(LinkAttribute::Group(group));
        self.set_link(msg, op)
    }

    /// Delete every link of interface group `group` in one request (`ip link delete group
    /// N`). The kernel unregisters them together and so waits out its RCU grace periods
    /// once for all of them, where one request per link waits once per link (20–40 ms
    /// each). A group with no links is fine. Group 0, every link's default, is refused.
    pub fn delete_group(&mut self, group: u32) -> Result<()> {
        let op = || format!("delete the links of group {group}");
        if group == 0 {
            return Err(KernelError::invalid(
                op(),
                "group 0 holds every link by default",
            ));
        }
        let mut msg = LinkUnspec::new_with_index(0).build();
        msg.attributes.push(LinkAttribute::Group(group));
        match self.ack(RouteNetlinkMessage::DelLink(msg), 0) {
            Err(e) if matches!(e.errno(), Some(libc::ENODEV) | Some(libc::ENOENT)) => Ok(()),
            r => r.op(op),
        }
    }

    /// Ensure no link with index `index` exists; see [`Netlink::delete_link`].
    pub fn delete_link_index(&mut self, index: u32) -> Result<bool> {
        check_index(|| "delete link".to_string(), index)?;
        let msg = LinkUnspec::new_with_index(index).build();
        match self.ack(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e.into_kernel(format!("delete link index {index}"))),
        }
    }

    fn set_link(&mut self, msg: LinkMessage, op: impl FnOnce() -> String) -> Result<()> {
        self.ack(RouteNetlinkMessage::SetLink(msg), 0).op(op)
    }

    /// Set the link administratively up (idempotent).
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        self.set_link(LinkUnspec::new_with_index(index).up().build(), || {
            format!("set link index {index} up")
        })
    }

    /// Set the link administratively down (idempotent).
    pub fn set_down(&mut self, index: u32) -> Result<()> {
        self.set_link(LinkUnspec::new_with_index(index).down().build(), || {
            format!("set link index {index} down")
        })
    }

    /// Enslave the link to `master` (a bridge index), or release it with
    /// `None` (idempotent).
    pub fn set_master(&mut self, index: u32, master: Option<u32>) -> Result<()> {
        let builder = LinkUnspec::new_with_index(index);
        let msg = match master {
            Some(m) => builder.controller(m).build(),
            None => builder.nocontroller().build(),
        };
        self.set_link(msg, || match master {
            Some(m) => format!("set master of link index {index} to index {m}"),
            None => format!("release link index {index} from its master"),
        })
    }

    /// Turn the bridge-port hairpin mode of `index`, a link enslaved to a
    /// bridge, on or off (`ip link set dev X type bridge_slave hairpin
    /// on|off`): with it on, the bridge may send a frame back out of the
    /// port it arrived on, which a container needs to reach itself through
    /// a published port with the userland proxy off. Idempotent; a link
    /// that is not a bridge port fails (`EOPNOTSUPP`). Read back as
    /// [`Link::hairpin`].
    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        self.set_port_flag(index, "hairpin", on, |p| p.hairpin(on))
    }

    /// Isolate the bridge port `index`, or stop isolating it (`ip link set dev X type
    /// bridge_slave isolated on|off`): isolated ports exchange no frames with each other,
    /// only with ports that are not isolated and with the bridge itself. With every
    /// container port of a bridge isolated, containers reach the host and the world through
    /// the bridge but not each other — inter-container traffic off, at layer 2, with no
    /// firewall rule and no `br_netfilter`. Idempotent; read back as [`Link::isolated`].
    pub fn set_isolated(&mut self, index: u32, on: bool) -> Result<()> {
        self.set_port_flag(index, "isolated", on, |p| p.isolated(on))
    }

    fn set_port_flag(
        &mut self,
        index: u32,
        flag: &str,
        on: bool,
        set: impl FnOnce(LinkMessageBuilder<LinkBridgePort>) -> LinkMessageBuilder<LinkBridgePort>,
    ) -> Result<()> {
        let op = || {
            let state = if on { "on" } else { "off" };
            format!("set {flag} {state} for bridge port index {index}")
        };
        check_index(op, index)?;
        let msg = set(LinkBridgePort::new(index)).build();
        // Port options travel as IFLA_INFO_SLAVE_DATA, which only
        // RTM_NEWLINK (without NLM_F_CREATE) applies to an existing link;
        // RTM_SETLINK ignores IFLA_LINKINFO.
        self.ack(RouteNetlinkMessage::NewLink(msg), 0).op(op)
    }

    /// Set the MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.set_link(LinkUnspec::new_with_index(index).mtu(mtu).build(), || {
            format!("set mtu of link index {index} to {mtu}")
        })
    }

    /// Set the alias (`ip link set dev X alias A`; see [`Link::alias`]); an empty `alias`
    /// removes it. Idempotent.
    pub fn set_alias(&mut self, index: u32, alias: &str) -> Result<()> {
        let op = || format!("set the alias of link index {index} to {alias:?}");
        check_index(op, index)?;
        check_alias(op, alias)?;
        let mut msg = LinkUnspec::new_with_index(index).build();
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.set_link(msg, op)
    }

    /// Set the hardware address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        self.set_link(
            LinkUnspec::new_with_index(index)
                .address(mac.to_vec())
                .build(),
            || format!("set mac of link index {index} to {}", format_mac(&mac)),
        )
    }

    /// Rename the link. The new name must be free (`EEXIST` otherwise).
    /// Recent kernels (tested on 6.18) rename links that are up; older ones
    /// answer `EBUSY` unless the link is down first.
    pub fn rename(&mut self, index: u32, new_name: &str) -> Result<()> {
        let op = || format!("rename link index {index} to {new_name}");
        check_ifname(op, new_name)?;
        self.set_link(LinkUnspec::new_with_index(index).name(new_name).build(), op)
    }

    /// Move the link into another network namespace. It keeps its name
    /// (`EEXIST` if the name is taken there) and gets a new index.
    pub fn move_to_netns(&mut self, index: u32, ns: &Netns) -> Result<()> {
        self.set_link(
            LinkUnspec::new_with_index(index)
                .setns_by_fd(ns.fd().as_raw_fd())
                .build(),
            || format!("move link index {index} to netns {}", ns.describe()),
        )
    }
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_core::{DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use rtnetlink::packet_route::link::{InfoPortKind, LinkProtoInfoBridge};

    use super::*;

    fn bytes(msg: LinkMessage) -> Vec<u8> {
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(RouteNetlinkMessage::NewLink(msg)),
        );
        m.finalize();
        let mut buf = vec![0; m.buffer_len()];
        m.serialize(&mut buf);
        buf
    }

    fn port() -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = 42;
        msg.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        msg.attributes = vec![
            LinkAttribute::IfName("veth0123abc".into()),
            LinkAttribute::Mtu(1450),
            LinkAttribute::Address(vec![2, 0x42, 0xac, 0x11, 0, 2]),
            LinkAttribute::Controller(7),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![
                    InfoBridgePort::HairpinMode(true),
                    InfoBridgePort::Isolated(false),
                ])),
            ]),
            // What the reader must step over.
            LinkAttribute::TxQueueLen(1000),
            LinkAttribute::Other(DefaultNla::new(999, vec![1, 2, 3])),
        ];
        msg
    }

    #[test]
    fn reading_the_bytes_gives_what_decoding_the_message_gives() {
        let msg = port();
        let want = Link::from_message(msg.clone());
        assert_eq!(want.hairpin, Some(true));
        assert_eq!(Link::from_bytes(&bytes(msg)).unwrap(), Some(want));

        // A bridge's own description of its port: the flags in IFLA_PROTINFO, no kind.
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.header.index = 9;
        msg.attributes = vec![
            LinkAttribute::IfName("veth0123abd".into()),
            LinkAttribute::Controller(7),
            LinkAttribute::ProtoInfoBridge(vec![
                LinkProtoInfoBridge::Other(DefaultNla::new(IFLA_BRPORT_MODE, vec![0])),
                LinkProtoInfoBridge::Other(DefaultNla::new(IFLA_BRPORT_ISOLATED, vec![1])),
            ]),
        ];
        let l = Link::from_bytes(&bytes(msg)).unwrap().unwrap();
        assert_eq!(
            (
                l.index,
                l.name.as_str(),
                l.master,
                l.hairpin,
                l.isolated,
                l.kind
            ),
            (9, "veth0123abd", Some(7), Some(false), Some(true), None)
        );
    }

    fn bridge_with_alias(alias: &str) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.header.flags = LinkFlags::Up;
        msg.attributes = vec![
            LinkAttribute::IfName("br-0123456789ab".into()),
            LinkAttribute::IfAlias(alias.into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        msg
    }

    #[test]
    fn the_alias_is_read_on_both_paths() {
        let mark = format!("lnet:network:{}", "0123456789abcdef".repeat(4));
        let msg = bridge_with_alias(&mark);
        let want = Link::from_message(msg.clone());
        assert_eq!(want.alias.as_deref(), Some(mark.as_str()));
        assert!(want.is_kind("bridge"));
        assert_eq!(Link::from_bytes(&bytes(msg)).unwrap(), Some(want));

        // The longest the kernel keeps.
        let long = "x".repeat(MAX_ALIAS_LEN);
        let l = Link::from_bytes(&bytes(bridge_with_alias(&long)))
            .unwrap()
            .unwrap();
        assert_eq!(l.alias.as_deref(), Some(long.as_str()));

        // No alias, and an empty one (what clearing it leaves), read as none.
        assert_eq!(
            Link::from_bytes(&bytes(port())).unwrap().unwrap().alias,
            None
        );
        let empty = bridge_with_alias("");
        assert_eq!(Link::from_message(empty.clone()).alias, None);
        assert_eq!(
            Link::from_bytes(&bytes(empty)).unwrap().unwrap().alias,
            None
        );
    }

    #[test]
    fn an_alias_that_is_not_utf8_is_nobodys_mark_and_no_error() {
        let mut raw = bytes(bridge_with_alias("lnet:network:abc"));
        let at = raw
            .windows(4)
            .position(|w| w == b"lnet")
            .expect("the alias in the bytes");
        raw[at] = 0xff;
        let l = Link::from_bytes(&raw).unwrap().unwrap();
        assert_eq!(l.name, "br-0123456789ab");
        let alias = l.alias.expect("an alias");
        assert!(!alias.starts_with("lnet:"), "{alias}");
    }

    #[test]
    fn aliases_too_long_or_with_nul_are_refused_before_any_request() {
        check_alias(String::new, &"a".repeat(MAX_ALIAS_LEN)).unwrap();
        for bad in ["a".repeat(MAX_ALIAS_LEN + 1), "a\0b".to_string()] {
            let e = check_alias(|| "set alias".into(), &bad).unwrap_err();
            assert!(e.to_string().contains("at most 255 bytes"), "{e}");
        }
    }

    #[test]
    fn damaged_bytes_are_an_error_never_a_panic() {
        for msg in [bridge_with_alias("lnet:network:0a1b")] {
            let good = bytes(msg);
            for cut in 0..good.len() {
                let _ = Link::from_bytes(&good[..cut]);
            }
            for at in 0..good.len() {
                let mut bad = good.clone();
                bad[at] = 0xff;
                let _ = Link::from_bytes(&bad);
            }
        }
        let good = bytes(port());
        for cut in 0..good.len() {
            // The header's length still claims the whole message.
            let _ = Link::from_bytes(&good[..cut]);
        }
        for at in 0..good.len() {
            for v in [0u8, 3, 0xff] {
                let mut bad = good.clone();
                bad[at] = v;
                let _ = Link::from_bytes(&bad);
            }
        }
        let mut short = good.clone();
        short[32] = 2; // the first attribute's length below its header
        Link::from_bytes(&short).unwrap_err();
        Link::from_bytes(&good[..20]).unwrap_err();
        // Not a link message.
        let mut other = good;
        other[4] = 20;
        assert_eq!(Link::from_bytes(&other).unwrap(), None);
    }

    #[test]
    fn a_stub_after_the_last_attribute_is_an_error() {
        // Two bytes after the last attribute, counted in the message's length: too short
        // to be an attribute, so the message was cut or lies. Before, they were skipped.
        let mut raw = bytes(port());
        raw.extend_from_slice(&[8, 0]);
        let len = raw.len() as u32;
        raw[..4].copy_from_slice(&len.to_ne_bytes());
        let e = Link::from_bytes(&raw).unwrap_err();
        assert!(
            e.contains("malformed RTM_NEWLINK") && e.contains("2 byte(s) left"),
            "{e}"
        );
    }

    /// One netlink attribute as the kernel reads it: length, type, payload, padding.
    fn nla(ty: u16, payload: &[u8]) -> Vec<u8> {
        let len = 4 + payload.len();
        let mut v = (len as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(payload);
        v.resize(len.div_ceil(4) * 4, 0);
        v
    }

    fn has(raw: &[u8], part: &[u8]) -> bool {
        raw.windows(part.len()).any(|w| w == part)
    }

    /// `IFLA_LINKINFO` (18) > `IFLA_INFO_KIND` (1) and `IFLA_INFO_DATA` (2) holding
    /// `data`, as `linux/if_link.h` numbers them.
    fn info(kind: &str, data: &[u8]) -> Vec<u8> {
        let mut k = kind.as_bytes().to_vec();
        k.push(0);
        let mut inner = nla(1, &k);
        inner.extend(nla(2, data));
        nla(18, &inner)
    }

    fn spec(kind: SubLinkKind) -> SubLinkSpec<'static> {
        SubLinkSpec {
            name: "eth1",
            kind,
            parent: 7,
            ns: None,
            mac: Some([2, 0x42, 10, 0, 0, 5]),
            mtu: None,
            up: false,
        }
    }

    #[test]
    fn sublinks_are_asked_for_in_the_kernels_words() {
        // macvlan: IFLA_MACVLAN_MODE (1), u32; bridge 4, private 1, vepa 2, passthru 8.
        for (mode, value) in [
            (MacvlanMode::Bridge, 4u32),
            (MacvlanMode::Private, 1),
            (MacvlanMode::Vepa, 2),
            (MacvlanMode::Passthru, 8),
        ] {
            let raw = bytes(sublink_message(&spec(SubLinkKind::Macvlan(mode))));
            assert!(
                has(&raw, &info("macvlan", &nla(1, &value.to_ne_bytes()))),
                "{mode:?}"
            );
            // IFLA_IFNAME (3), IFLA_LINK (5), IFLA_ADDRESS (1).
            assert!(has(&raw, &nla(3, b"eth1\0")));
            assert!(has(&raw, &nla(5, &7u32.to_ne_bytes())));
            assert!(has(&raw, &nla(1, &[2, 0x42, 10, 0, 0, 5])));
        }
        // ipvlan: IFLA_IPVLAN_MODE (1), u16: l2 0, l3 1, l3s 2; IFLA_IPVLAN_FLAGS (2), u16:
        // bridge 0, private 1, vepa 2.
        for (mode, flag, m, f) in [
            (IpvlanMode::L2, IpvlanFlag::Bridge, 0u16, 0u16),
            (IpvlanMode::L3, IpvlanFlag::Private, 1, 1),
            (IpvlanMode::L3s, IpvlanFlag::Vepa, 2, 2),
        ] {
            let raw = bytes(sublink_message(&spec(SubLinkKind::Ipvlan(mode, flag))));
            let mut data = nla(1, &m.to_ne_bytes());
            data.extend(nla(2, &f.to_ne_bytes()));
            assert!(has(&raw, &info("ipvlan", &data)), "{mode:?} {flag:?}");
        }
        // vlan: IFLA_VLAN_ID (1), u16.
        let raw = bytes(sublink_message(&spec(SubLinkKind::Vlan(10))));
        assert!(has(&raw, &info("vlan", &nla(1, &10u16.to_ne_bytes()))));
    }

    #[test]
    fn the_kind_probe_asks_for_nothing_a_kernel_could_make() {
        // A one-byte IFLA_ADDRESS: refused by every link type's validation before it
        // could be made, so a kernel that has the type answers EINVAL and makes nothing.
        let raw = bytes(probe_message("dummy"));
        assert!(has(&raw, &nla(1, &[0])));
        let mut kind = b"dummy".to_vec();
        kind.push(0);
        assert!(has(&raw, &nla(18, &nla(1, &kind))));
        // No parent: macvlan, ipvlan and vlan cannot be made without one either.
        assert!(
            !probe_message("macvlan")
                .attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Link(_)))
        );
    }
}
