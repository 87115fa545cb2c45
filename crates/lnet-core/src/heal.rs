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

use crate::driver::{JoinMode, Registry};
use crate::error::Result;
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

    /// Puts right each target that still drifts, looked at again now; what it repaired.
    pub(crate) fn heal(&mut self, cx: &Cx, targets: &[Target]) -> Vec<String> {
        let mut done = Vec::new();
        for t in targets {
            let res = match t {
                Target::Network(id) => self.heal_network(cx, id),
                Target::Join(id) => self.heal_join(cx, id),
            };
            match res {
                Ok(Some(what)) => done.push(what),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(object = ?t, error = %e, "putting back what someone else changed failed")
                }
            }
        }
        done
    }

    fn heal_network(&mut self, cx: &Cx, id: &str) -> Result<Option<String>> {
        let Some(net) = self
            .networks
            .get(id)
            .filter(|n| n.state == Lifecycle::Ready)
            .cloned()
        else {
            return Ok(None);
        };
        let driver = cx.driver(&net.driver)?;
        let drift = reconcile::drift_live(&driver.want_network(&net), &mut self.host.nl, None)?;
        if drift.is_empty() {
            return Ok(None);
        }
        driver.create_network(&mut self.host, &net, &cx.config)?;
        Ok(Some(format!("network {}: {}", net.name, list(&drift))))
    }

    fn heal_join(&mut self, cx: &Cx, ep_id: &str) -> Result<Option<String>> {
        let Some(ep) = self.endpoints.get(ep_id).cloned() else {
            return Ok(None);
        };
        let Some(join) = ep.join.clone().filter(|j| j.state == JoinState::Joined) else {
            return Ok(None);
        };
        let Some(net) = self.networks.get(&ep.network_id).cloned() else {
            return Ok(None);
        };
        let driver = cx.driver(&net.driver)?;
        let drift = {
            let State {
                host, sandboxes, ..
            } = &mut *self;
            let Some(mut k) = sandboxes.get(&join.sandbox_id).and_then(|s| s.kernel()) else {
                return Ok(None);
            };
            let k = &mut *k;
            let want = driver.want_join(&net, &ep, &join);
            let drift = reconcile::drift_live(&want, &mut host.nl, Some(&mut k.nl))?;
            if drift.is_empty() {
                return Ok(None);
            }
            driver.join(host, k, &net, &ep, &join, JoinMode::Repair)?;
            drift
        };
        // A link made again lost the routes through it.
        if drift.iter().any(|d| d.needs_remake()) {
            let want = self.gateways_of(cx, &join.sandbox_id, None);
            self.apply_gateways(&join.sandbox_id, None, want)?;
        }
        Ok(Some(format!(
            "endpoint {} in sandbox {}: {}",
            ep.name,
            self.sandbox_label(&join.sandbox_id),
            list(&drift)
        )))
    }
}

fn list(drift: &[crate::want::Drift]) -> String {
    drift
        .iter()
        .map(|d| format!("{} {d}", d.kind()))
        .collect::<Vec<_>>()
        .join(", ")
}
