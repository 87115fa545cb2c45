//! IP addresses on links.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rtnetlink::AddressMessageBuilder;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::netlink::{Netlink, OpContext};

/// `IFA_F_NODAD`.
pub const IFA_F_NODAD: u32 = 0x02;
/// `IFA_F_DADFAILED`.
pub const IFA_F_DADFAILED: u32 = 0x08;
/// `IFA_F_TENTATIVE`.
pub const IFA_F_TENTATIVE: u32 = 0x40;
/// `IFA_F_PERMANENT`.
pub const IFA_F_PERMANENT: u32 = 0x80;

/// Flags for [`Netlink::add_address`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrFlags {
    /// IPv6 only: skip duplicate address detection (`IFA_F_NODAD`), so the
    /// address is usable immediately instead of staying tentative for about
    /// a second. Container addresses are allocated by IPAM and use this.
    pub nodad: bool,
}

/// An address as reported by `RTM_GETADDR`, with its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressInfo {
    /// Interface index.
    pub index: u32,
    /// Address and prefix length.
    pub net: IpNet,
    /// `IFA_F_*` flags (from `IFA_FLAGS`, which carries all 32 bits).
    pub flags: u32,
}

impl AddressInfo {
    /// IPv6 duplicate address detection has not finished yet.
    pub fn is_tentative(&self) -> bool {
        self.flags & IFA_F_TENTATIVE != 0
    }

    /// IPv6 duplicate address detection found a duplicate.
    pub fn is_dad_failed(&self) -> bool {
        self.flags & IFA_F_DADFAILED != 0
    }

    fn from_message(msg: AddressMessage) -> Option<AddressInfo> {
        let mut local = None;
        let mut address = None;
        let mut flags = u32::from(msg.header.flags.bits());
        for attr in msg.attributes {
            match attr {
                AddressAttribute::Local(a) => local = Some(a),
                AddressAttribute::Address(a) => address = Some(a),
                AddressAttribute::Flags(f) => flags = f.bits(),
                _ => {}
            }
        }
        // IFA_LOCAL is the interface's own address (IPv4; differs from
        // IFA_ADDRESS only on point-to-point links); IPv6 has only IFA_ADDRESS.
        let ip = local.or(address)?;
        let net = IpNet::new(ip, msg.header.prefix_len).ok()?;
        Some(AddressInfo {
            index: msg.header.index,
            net,
            flags,
        })
    }
}

fn address_message(index: u32, net: IpNet) -> AddressMessage {
    match net.addr() {
        IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(a, net.prefix_len())
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(a, net.prefix_len())
            .build(),
    }
}

impl Netlink {
    /// Ensure `net` (address + prefix length) is configured on link `index`.
    ///
    /// Returns `true` if it was added, `false` if the kernel said it exists
    /// (`EEXIST`). IPv4 compares address and prefix length; IPv6 compares the
    /// address only, so an IPv6 address present with another prefix length
    /// also yields `false`. The IPv4 broadcast address is derived from the
    /// prefix, like `ip addr add ... brd +`.
    pub fn add_address(&mut self, index: u32, net: IpNet, flags: AddrFlags) -> Result<bool> {
        let mut msg = address_message(index, net);
        if flags.nodad && net.addr().is_ipv6() {
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match self.ack(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e.into_kernel(format!("add address {net} to link index {index}"))),
        }
    }

    /// Ensure `net` is not configured on link `index`. Returns `true` if it
    /// was removed, `false` if it was not there (`EADDRNOTAVAIL`). A missing
    /// link is an error (`ENODEV`, [`crate::KernelError::is_not_found`]).
    pub fn del_address(&mut self, index: u32, net: IpNet) -> Result<bool> {
        let msg = address_message(index, net);
        match self.ack(RouteNetlinkMessage::DelAddress(msg), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(e.into_kernel(format!("delete address {net} from link index {index}"))),
        }
    }

    /// Addresses of link `index` (or of all links), as `(index, net)`.
    pub fn addresses(&mut self, index: Option<u32>) -> Result<Vec<(u32, IpNet)>> {
        Ok(self
            .address_infos(index)?
            .into_iter()
            .map(|a| (a.index, a.net))
            .collect())
    }

    /// Addresses of link `index` (or of all links) with their flags.
    pub fn address_infos(&mut self, index: Option<u32>) -> Result<Vec<AddressInfo>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Unspec;
        // Filtered in the kernel (strict checking is on); filtered here too
        // in case the kernel ignored it.
        msg.header.index = index.unwrap_or(0);
        self.dump(RouteNetlinkMessage::GetAddress(msg), |m| match m {
            RouteNetlinkMessage::NewAddress(a) => {
                AddressInfo::from_message(a).filter(|a| index.is_none_or(|i| i == a.index))
            }
            _ => None,
        })
        .op(|| match index {
            Some(i) => format!("list addresses of link index {i}"),
            None => "list addresses".to_string(),
        })
    }
}
