//! Wanted links against the kernel: read (from dumps taken once, or live), compare with
//! [`crate::want::compare`], and put right in place. Drivers make what is missing; what is
//! there but different is changed here, the same way for every driver.

use std::collections::HashMap;

use ipnet::IpNet;
use lnet_kernel::{AddrFlags, Link};

use crate::error::{CoreError, Result};
use crate::kernel::{KernelView, Links};
use crate::want::{Drift, LinkWant, Side, Wanted, compare};

/// What a dump shows of one namespace: links by name, and addresses.
#[derive(Debug, Clone, Copy)]
pub struct NsView<'a> {
    /// Links by name.
    pub links: &'a HashMap<String, Link>,
    /// Addresses.
    pub addrs: Addrs<'a>,
}

/// A dump's addresses, as the dump was kept.
#[derive(Debug, Clone, Copy)]
pub enum Addrs<'a> {
    /// (link index, address), as one dump of a small namespace.
    List(&'a [(u32, IpNet)]),
    /// By link index, as the host's many are kept.
    ByLink(&'a HashMap<u32, Vec<IpNet>>),
}

impl NsView<'_> {
    fn addrs_of(&self, index: u32) -> Vec<IpNet> {
        match self.addrs {
            Addrs::List(l) => l
                .iter()
                .filter(|(i, _)| *i == index)
                .map(|(_, a)| *a)
                .collect(),
            Addrs::ByLink(m) => m.get(&index).cloned().unwrap_or_default(),
        }
    }
}

/// The drift of `wanted` as the dumps show it (`sandbox` is `None` for an object with no
/// sandbox side).
pub fn drift_in(wanted: &Wanted, host: NsView<'_>, sandbox: Option<NsView<'_>>) -> Vec<Drift> {
    let master = |m: &str| host.links.get(m).map(|l| l.index);
    let mut out = Vec::new();
    for w in &wanted.links {
        let view = match w.side {
            Side::Host => host,
            Side::Sandbox => match sandbox {
                Some(v) => v,
                None => continue,
            },
        };
        let have = view.links.get(&w.name);
        let addrs = have.map(|l| view.addrs_of(l.index)).unwrap_or_default();
        out.extend(compare(w, have, &addrs, master));
    }
    out
}

/// The drift of a join's `wanted` links in a [`KernelView`] (host links, a sandbox's links
/// and addresses, each from one dump).
pub fn drift_in_view(wanted: &Wanted, view: KernelView<'_>) -> Vec<Drift> {
    drift_in(
        wanted,
        NsView {
            links: view.host_links,
            addrs: Addrs::List(&[]),
        },
        Some(NsView {
            links: view.sandbox_links,
            addrs: Addrs::List(view.sandbox_addrs),
        }),
    )
}

/// One wanted link as the kernel reports it now, and its drift.
pub fn observe(
    links: &mut dyn Links,
    want: &LinkWant,
    master_index: impl Fn(&str) -> Option<u32>,
) -> Result<(Option<Link>, Vec<Drift>)> {
    let have = links
        .link_by_name(&want.name)
        .map_err(CoreError::kernel(format!("look up {}", want.name)))?;
    let addrs = match &have {
        // Read only when something is to be compared.
        Some(l) if !want.addrs.is_empty() || want.only_addrs => links
            .addresses(Some(l.index))
            .map_err(CoreError::kernel(format!(
                "list addresses of {}",
                want.name
            )))?
            .into_iter()
            .map(|(_, a)| a)
            .collect(),
        _ => Vec::new(),
    };
    let drift = compare(want, have.as_ref(), &addrs, master_index);
    Ok((have, drift))
}

/// The drift of `wanted`, read live: one lookup per link (and its addresses where they are
/// compared). `sandbox` is `None` when the object has no sandbox side, or it is gone.
pub fn drift_live(
    wanted: &Wanted,
    host: &mut dyn Links,
    sandbox: Option<&mut dyn Links>,
) -> Result<Vec<Drift>> {
    let mut sandbox = sandbox;
    let mut masters: HashMap<String, Option<u32>> = HashMap::new();
    for m in wanted.links.iter().filter_map(|w| w.master.as_ref()) {
        let index = host
            .link_by_name(m)
            .map_err(CoreError::kernel(format!("look up {m}")))?
            .map(|l| l.index);
        masters.insert(m.clone(), index);
    }
    let master = |m: &str| masters.get(m).copied().flatten();
    let mut out = Vec::new();
    for w in &wanted.links {
        let links: &mut dyn Links = match w.side {
            Side::Host => &mut *host,
            Side::Sandbox => match sandbox.as_deref_mut() {
                Some(s) => s,
                None => continue,
            },
        };
        out.extend(observe(links, w, master)?.1);
    }
    Ok(out)
}

/// Puts right, in place, the drift of one link that exists (index `index`): everything but
/// [`Drift::needs_remake`], which is the driver's to make. The order is the one a fresh link
/// needs: settings and master, addresses, port flags, then up — so a port is isolated
/// before it passes a frame, and an interface comes up with its addresses.
pub fn apply(
    links: &mut dyn Links,
    index: u32,
    want: &LinkWant,
    drift: &[Drift],
    master_index: impl Fn(&str) -> Option<u32>,
) -> Result<()> {
    let name = &want.name;
    let k = |what: String| CoreError::kernel(what);
    let mut up = false;
    for d in drift {
        match d {
            Drift::Missing { .. } | Drift::WrongKind { .. } | Drift::NotIsolated { .. } => {}
            Drift::NoHairpin { .. } | Drift::AddrMissing { .. } | Drift::AddrExtra { .. } => {}
            Drift::Down { .. } => up = true,
            Drift::Master { want: m, .. } => {
                let master = master_index(m).ok_or_else(|| {
                    CoreError::Forbidden(format!("bridge {m} of {name} is missing"))
                })?;
                links
                    .set_master(index, Some(master))
                    .map_err(k(format!("attach {name} to {m}")))?;
            }
            Drift::Alias { want: a, .. } => links
                .set_alias(index, a)
                .map_err(k(format!("mark {name} as lnet's")))?,
            Drift::Mtu { want: m, .. } => links
                .set_mtu(index, *m)
                .map_err(k(format!("set the MTU of {name} to {m}")))?,
            Drift::Mac { want: m, .. } => links
                .set_mac(index, *m)
                .map_err(k(format!("set the MAC of {name}")))?,
        }
    }
    // Stray addresses go before wanted ones come: a new network may want one of them.
    for d in drift {
        if let Drift::AddrExtra { addr, .. } = d {
            links
                .del_address(index, *addr)
                .map_err(k(format!("remove stray address {addr} from {name}")))?;
        }
    }
    for d in drift {
        if let Drift::AddrMissing { addr, .. } = d {
            let flags = AddrFlags {
                nodad: addr.addr().is_ipv6(),
            };
            links
                .add_address(index, *addr, flags)
                .map_err(k(format!("add address {addr} to {name}")))?;
        }
    }
    for d in drift {
        match d {
            // Inter-container traffic off: isolated ports exchange no frames with each
            // other, only with the bridge (the gateway).
            Drift::NotIsolated { .. } => links
                .set_isolated(index, true)
                .map_err(k(format!("isolate bridge port {name}")))?,
            // Where br_netfilter is loaded (Docker loads it), a container's packet to its
            // own published port is DNATed at the bridge and sent back out of the port it
            // came in on, which needs hairpin mode.
            Drift::NoHairpin { .. } => links
                .set_hairpin(index, true)
                .map_err(k(format!("turn on hairpin mode of {name}")))?,
            _ => {}
        }
    }
    if up {
        links.set_up(index).map_err(k(format!("bring up {name}")))?;
    }
    Ok(())
}
