//! Self-healing ([`crate::Config::self_heal`]): what the watcher's notifications name,
//! checked against what drivers want, and put right object by object.
//!
//! Link and address notifications do not say who asked, so each suspect is looked at as it
//! is *now*: a host link that a ready network or a joined endpoint wants and that is gone,
//! down, off its bridge or missing an address is drift. That first look reads the records'
//! published snapshot and the kernel through the watcher's own socket, holding no lock, so
//! the notifications of lnet's own work (every connect makes some) cost API callers
//! nothing. Only an object found drifting is looked at again under the lock — its records
//! may have changed meanwhile (a leave records `leaving` before it deletes) — and repaired
//! alone: its network's links re-made, or its join completed, by the same code a start
//! runs ([`crate::driver::Driver::create_network`], [`crate::driver::Driver::join`] in
//! [`JoinMode::Repair`]). Notifications lost to a full buffer mean anything may have
//! changed: the whole comparison decides then ([`crate::Controller::repair`]).

use std::collections::BTreeSet;

use lnet_kernel::Netlink;
use lnet_store::{JoinState, Lifecycle};

use std::sync::{Arc, Mutex};

use lnet_store::{EndpointRecord, JoinRecord, NetworkRecord};

use crate::config::Config;
use crate::driver::{Driver, JoinMode, Registry};
use crate::error::Result;
use crate::kernel::{HostKernel, SandboxKernel};
use crate::ops::{Gateways, set_gateways};
use crate::reconcile;
use crate::state::{Cx, Records, State};
use crate::want::{Side, Wanted};
use crate::watcher::Suspects;

/// An object to put right.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Target {
    /// A network, by id.
    Network(String),
    /// A join, by endpoint id.
    Join(String),
}

/// Only the host side: the watcher sees the host's namespace.
fn host_side(w: Wanted) -> Wanted {
    Wanted {
        links: w
            .links
            .into_iter()
            .filter(|l| l.side == Side::Host)
            .collect(),
    }
}

/// The objects the suspects name whose host links differ from what their driver wants,
/// read from `records` and through `nl` — no lock held. Networks come first: a join's
/// port cannot go back on a bridge that is not there yet.
pub(crate) fn find(
    records: &Records,
    drivers: &Registry,
    nl: &mut Netlink,
    s: &Suspects,
) -> Vec<Target> {
    let mut names = s.links.clone();
    // A lost address names its link by index.
    for index in &s.addresses {
        if let Ok(Some(l)) = nl.link_by_index(*index) {
            names.insert(l.name);
        }
    }
    let drifts = |w: &Wanted, nl: &mut Netlink| {
        // A check that cannot be made is a reason to look again, under the lock.
        reconcile::drift_live(w, nl, None).map_or(true, |d| !d.is_empty())
    };
    let mut out = Vec::new();
    let mut broken = BTreeSet::new();
    for net in records
        .networks
        .iter()
        .filter(|n| n.state == Lifecycle::Ready)
    {
        let Ok(d) = drivers.get(&net.driver) else {
            continue;
        };
        let want = host_side(d.want_network(net));
        if want.links.iter().any(|l| names.contains(&l.name)) && drifts(&want, nl) {
            broken.insert(net.id.as_str());
            out.push(Target::Network(net.id.clone()));
        }
    }
    for ep in &records.endpoints {
        let Some(join) = ep.join.as_ref().filter(|j| j.state == JoinState::Joined) else {
            continue;
        };
        // Its network's links are made again: its ports may need to go back on them.
        if broken.contains(ep.network_id.as_str()) {
            out.push(Target::Join(ep.id.clone()));
            continue;
        }
        // What the watcher sees of a join is its host end: only those named are asked
        // about (ten thousand joins must not each work out what they want per burst).
        if !join.host_ifname.as_ref().is_some_and(|h| names.contains(h)) {
            continue;
        }
        let Some(net) = records.networks.iter().find(|n| n.id == ep.network_id) else {
            continue;
        };
        let Ok(d) = drivers.get(&net.driver) else {
            continue;
        };
        let want = host_side(d.want_join(net, ep, join));
        if want.links.iter().any(|l| names.contains(&l.name)) && drifts(&want, nl) {
            out.push(Target::Join(ep.id.clone()));
        }
    }
    out
}

impl State {
    /// The keys a repair of `t` holds.
    pub(crate) fn keys_of(&self, t: &Target) -> Vec<String> {
        match t {
            Target::Network(id) => vec![crate::keys::network(id)],
            Target::Join(ep) => self
                .endpoints
                .get(ep)
                .into_iter()
                .flat_map(|e| {
                    let sb = e.join.as_ref().map(|j| crate::keys::sandbox(&j.sandbox_id));
                    std::iter::once(crate::keys::network(&e.network_id)).chain(sb)
                })
                .collect(),
        }
    }

    /// What a repair of `t` needs, copied under the state lock (`None`: nothing to repair
    /// any more — the object went, or its join is no longer `joined`).
    pub(crate) fn heal_work(&self, cx: &Cx, t: &Target) -> Option<Work> {
        match t {
            Target::Network(id) => {
                let net = self
                    .networks
                    .get(id)
                    .filter(|n| n.state == Lifecycle::Ready)?
                    .clone();
                Some(Work::Network {
                    driver: cx.driver(&net.driver).ok()?,
                    net,
                })
            }
            Target::Join(ep_id) => {
                let ep = self.endpoints.get(ep_id)?.clone();
                let join = ep.join.clone().filter(|j| j.state == JoinState::Joined)?;
                let net = self.networks.get(&ep.network_id)?.clone();
                let sandbox = self.sandboxes.get(&join.sandbox_id)?;
                Some(Work::Join {
                    driver: cx.driver(&net.driver).ok()?,
                    kernel: sandbox.kernel.clone()?,
                    label: sandbox.rec.container_id.clone(),
                    gateways: self.gateways_of(cx, &join.sandbox_id, None),
                    net,
                    ep,
                    join,
                })
            }
        }
    }
}

/// A repair of one object, with what it needs; done without the state lock, holding the
/// object's keys.
#[derive(Debug)]
// One is made per repair and used at once, never kept in a collection: the size is moot.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    /// A network's links.
    Network {
        driver: Arc<dyn Driver>,
        net: NetworkRecord,
    },
    /// A join's links, and the sandbox's routes through them.
    Join {
        driver: Arc<dyn Driver>,
        kernel: Arc<Mutex<SandboxKernel>>,
        label: String,
        gateways: Gateways,
        net: NetworkRecord,
        ep: EndpointRecord,
        join: JoinRecord,
    },
}

impl Work {
    /// Looks at the object again and, if it still drifts, puts it right: what it repaired.
    pub(crate) fn run(&self, host: &mut HostKernel, config: &Config) -> Result<Option<String>> {
        match self {
            Work::Network { driver, net } => {
                let drift = reconcile::drift_live(&driver.want_network(net), &mut host.nl, None)?;
                if drift.is_empty() {
                    return Ok(None);
                }
                driver.create_network(host, net, config)?;
                Ok(Some(format!("network {}: {}", net.name, list(&drift))))
            }
            Work::Join {
                driver,
                kernel,
                label,
                gateways,
                net,
                ep,
                join,
            } => {
                let mut k = kernel.lock().unwrap_or_else(|p| p.into_inner());
                let want = driver.want_join(net, ep, join);
                let drift = reconcile::drift_live(&want, &mut host.nl, Some(&mut k.nl))?;
                if drift.is_empty() {
                    return Ok(None);
                }
                driver.join(host, &mut *k, net, ep, join, JoinMode::Repair)?;
                // A link made again lost the routes through it.
                if drift.iter().any(|d| d.needs_remake()) {
                    set_gateways(&mut k, label, None, *gateways)?;
                }
                Ok(Some(format!(
                    "endpoint {} in sandbox {label}: {}",
                    ep.name,
                    list(&drift)
                )))
            }
        }
    }
}

fn list(drift: &[crate::want::Drift]) -> String {
    drift
        .iter()
        .map(|d| format!("{} {d}", d.kind()))
        .collect::<Vec<_>>()
        .join(", ")
}
