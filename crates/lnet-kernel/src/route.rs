//! Routes in the main table.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
    RouteVia,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::netlink::{Netlink, OpContext};

/// IP family selector for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl IpFamily {
    fn af(self) -> AddressFamily {
        match self {
            IpFamily::V4 => AddressFamily::Inet,
            IpFamily::V6 => AddressFamily::Inet6,
        }
    }
}

/// A unicast route in the main routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination; `0.0.0.0/0` or `::/0` for the default route. Host bits
    /// are ignored (the network address is sent).
    pub dst: IpNet,
    /// Next hop, if the destination is not directly connected. An IPv6
    /// gateway for an IPv4 destination is sent as `RTA_VIA`.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// `RT_SCOPE_LINK` (destination directly on the link) instead of
    /// `RT_SCOPE_UNIVERSE`. IPv6 has no route scopes: the kernel ignores the
    /// field and lists every IPv6 route as universe (`false`).
    pub scope_link: bool,
}

impl Route {
    /// The default route of `gateway`'s family via `gateway`.
    pub fn default_via(gateway: IpAddr) -> Route {
        let dst = match gateway {
            IpAddr::V4(_) => IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            IpAddr::V6(_) => IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0),
        }
        .expect("prefix 0 is valid");
        Route {
            dst,
            gateway: Some(gateway),
            oif: None,
            scope_link: false,
        }
    }

    /// A directly connected destination on link `oif` (scope link).
    pub fn on_link(dst: IpNet, oif: u32) -> Route {
        Route {
            dst,
            gateway: None,
            oif: Some(oif),
            scope_link: true,
        }
    }

    /// Whether this is a default route (`/0`).
    pub fn is_default(&self) -> bool {
        self.dst.prefix_len() == 0
    }

    fn to_message(self, for_delete: bool) -> RouteMessage {
        let mut msg = RouteMessage::default();
        let h = &mut msg.header;
        h.address_family = match self.dst {
            IpNet::V4(_) => AddressFamily::Inet,
            IpNet::V6(_) => AddressFamily::Inet6,
        };
        h.destination_prefix_length = self.dst.prefix_len();
        h.table = RouteHeader::RT_TABLE_MAIN;
        if for_delete {
            // Wildcards: match whatever protocol/scope/type the route has.
            h.protocol = RouteProtocol::Unspec;
            h.scope = RouteScope::NoWhere;
            h.kind = RouteType::Unspec;
        } else {
            // What `ip route add` sends.
            h.protocol = RouteProtocol::Boot;
            h.scope = if self.scope_link {
                RouteScope::Link
            } else {
                RouteScope::Universe
            };
            h.kind = RouteType::Unicast;
        }
        if self.dst.prefix_len() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(self.dst.network().into()));
        }
        match (self.dst, self.gateway) {
            (_, None) => {}
            (IpNet::V4(_), Some(IpAddr::V6(gw))) => msg
                .attributes
                .push(RouteAttribute::Via(RouteVia::Inet6(gw))),
            (_, Some(gw)) => msg.attributes.push(RouteAttribute::Gateway(gw.into())),
        }
        if let Some(oif) = self.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        msg
    }

    fn from_message(msg: RouteMessage) -> Option<Route> {
        if msg.header.kind != RouteType::Unicast {
            return None;
        }
        let mut table = u32::from(msg.header.table);
        let mut dst = None;
        let mut gateway = None;
        let mut oif = None;
        for attr in msg.attributes {
            match attr {
                RouteAttribute::Table(t) => table = t,
                RouteAttribute::Destination(a) => dst = route_addr(a),
                RouteAttribute::Gateway(a) => gateway = route_addr(a),
                RouteAttribute::Via(RouteVia::Inet6(a)) => gateway = Some(a.into()),
                RouteAttribute::Via(RouteVia::Inet(a)) => gateway = Some(a.into()),
                RouteAttribute::Oif(i) => oif = Some(i),
                _ => {}
            }
        }
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
            return None;
        }
        let dst = match (msg.header.address_family, dst) {
            (_, Some(d)) => d,
            (AddressFamily::Inet, None) => Ipv4Addr::UNSPECIFIED.into(),
            (AddressFamily::Inet6, None) => Ipv6Addr::UNSPECIFIED.into(),
            _ => return None,
        };
        Some(Route {
            dst: IpNet::new(dst, msg.header.destination_prefix_length).ok()?,
            gateway,
            oif,
            scope_link: msg.header.scope == RouteScope::Link,
        })
    }
}

fn route_addr(a: RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(a.into()),
        RouteAddress::Inet6(a) => Some(a.into()),
        _ => None,
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_default() {
            f.write_str("default")?;
        } else {
            write!(f, "{}", self.dst)?;
        }
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " dev index {oif}")?;
        }
        if self.scope_link {
            f.write_str(" scope link")?;
        }
        Ok(())
    }
}

impl Netlink {
    /// Ensure the route exists. Returns `true` if it was added, `false` if
    /// the kernel said it exists (`EEXIST`).
    ///
    /// Careful: the kernel reports `EEXIST` for any route with the same
    /// destination, table and metric, whatever its gateway or interface, and
    /// keeps the old one. When the next hop may differ (default gateway),
    /// use [`Netlink::replace_route`].
    pub fn add_route(&mut self, route: &Route) -> Result<bool> {
        match self.ack(
            RouteNetlinkMessage::NewRoute(route.to_message(false)),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e.into_kernel(format!("add route {route}"))),
        }
    }

    /// Create the route, or replace the route with the same destination (and
    /// metric) in place (`NLM_F_CREATE | NLM_F_REPLACE`).
    pub fn replace_route(&mut self, route: &Route) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::NewRoute(route.to_message(false)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .op(|| format!("replace route {route}"))
    }

    /// Ensure the route does not exist. Returns `true` if it was deleted,
    /// `false` if there was no match (`ESRCH`/`ENOENT`). Gateway and
    /// interface, when given, must match; protocol, scope and type are
    /// wildcards.
    pub fn del_route(&mut self, route: &Route) -> Result<bool> {
        match self.ack(RouteNetlinkMessage::DelRoute(route.to_message(true)), 0) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.errno(), Some(libc::ESRCH | libc::ENOENT)) => Ok(false),
            Err(e) => Err(e.into_kernel(format!("delete route {route}"))),
        }
    }

    /// Unicast routes of the main table for `family`.
    pub fn routes(&mut self, family: IpFamily) -> Result<Vec<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family.af();
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        self.dump(RouteNetlinkMessage::GetRoute(msg), |m| match m {
            RouteNetlinkMessage::NewRoute(r) => Route::from_message(r),
            _ => None,
        })
        .op(|| format!("list {family:?} routes"))
    }
}
