//! Self-healing while running ([`crate::Config::self_heal`]): a thread listens to the
//! kernel's link, address and nf_tables notifications in the host namespace and, when
//! something lnet owns was deleted or changed by someone else, puts it back — Docker needs
//! a restart for this, netavark a manual reload.
//!
//! What counts, and how it is told from lnet's own work:
//! - nf_tables changes carry the netlink port that asked for them: lnet's own firewall
//!   socket's are ignored. Any other change to table `inet lnet` (a deleted table — a
//!   `flush ruleset` or an nftables restart —, chain, rule, set or element, or an element
//!   added) makes the firewall be compared and reconciled; a new chain or a deleted rule in
//!   another table (firewalld or nftables reloading theirs) makes lnet's accept rules in
//!   other engines' drop-policy forward chains be synced again.
//! - Link and address notifications do not say who asked, so the watcher looks at the
//!   object as it is *now*, under the controller's lock, a moment after the notification:
//!   a link that a ready network or a joined endpoint names and that is gone, down or off
//!   its bridge, or a bridge missing an address, is drift. lnet's own changes leave nothing
//!   to see: a leave records `leaving` before it deletes, a create brings its link up before
//!   it answers.
//!
//! The repair is the one `lnet doctor --repair` runs ([`Controller::repair`]): the start-up
//! reconciliation, which leaves what is right alone. Notifications lost to a full buffer
//! mean anything may have changed: the whole comparison decides then.

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::{Duration, Instant};

use lnet_kernel::monitor::{Event, Monitor, NftObject};
use lnet_store::JoinState;

use crate::controller::{Controller, Cx, Inner, State};
use crate::doctor::Findings;
use crate::error::Result;

/// How long the watcher waits after the first notification for the rest of a burst (a
/// ruleset flush, a script deleting several links) before it looks.
const SETTLE: Duration = Duration::from_millis(50);
/// How often the watcher checks whether its controller is still there.
const POLL: Duration = Duration::from_millis(200);
/// `NFPROTO_INET`, the family of lnet's table.
const INET: u8 = 1;

/// What the notifications of one burst call for.
#[derive(Debug, Default)]
struct Suspects {
    /// Links that went or changed, by name.
    links: BTreeSet<String>,
    /// Links that lost an address, by index.
    addresses: BTreeSet<u32>,
    /// Someone else changed lnet's table.
    firewall: bool,
    /// Someone else changed another table's chains or rules.
    foreign: bool,
    /// Notifications were lost.
    everything: bool,
}

impl Suspects {
    fn add(&mut self, e: Event, ours: u32) {
        match e {
            Event::LinkGone { name } => {
                self.links.insert(name);
            }
            // A link that is up, and a veth on a bridge, look as lnet makes them: lnet's own
            // joins and the bridges' port changes announce themselves this way, and need no
            // look under the controller's lock after every connect.
            Event::LinkChanged(l) if l.up && (!l.is_kind("veth") || l.master.is_some()) => {}
            Event::LinkChanged(l) => {
                self.links.insert(l.name);
            }
            Event::AddressGone { index } => {
                self.addresses.insert(index);
            }
            Event::Nft { portid, .. } if portid == ours => {}
            Event::Nft { family, table, .. }
                if family == INET && table == crate::firewall::ruleset::TABLE =>
            {
                self.firewall = true
            }
            Event::Nft {
                object, deleted, ..
            } => {
                if matches!(
                    (object, deleted),
                    (NftObject::Chain, false) | (NftObject::Rule, true) | (NftObject::Table, _)
                ) {
                    self.foreign = true;
                }
            }
            Event::Overrun => self.everything = true,
        }
    }

    fn is_empty(&self) -> bool {
        self.links.is_empty()
            && self.addresses.is_empty()
            && !self.firewall
            && !self.foreign
            && !self.everything
    }
}

/// Starts the watcher of `inner`'s controller; it ends by itself soon after the controller
/// is dropped.
pub(crate) fn spawn(inner: Weak<Inner>, ours: u32) -> Result<()> {
    // Opened here, on the controller's thread: the host namespace.
    let monitor = Monitor::new().map_err(crate::error::CoreError::kernel(
        "listen to the kernel's change notifications",
    ))?;
    std::thread::Builder::new()
        .name("lnet-watcher".into())
        .spawn(move || run(monitor, inner, ours))
        .map_err(crate::error::CoreError::io("start the watcher thread"))?;
    Ok(())
}

fn run(mut monitor: Monitor, inner: Weak<Inner>, ours: u32) {
    loop {
        let mut suspects = Suspects::default();
        match monitor.wait(POLL) {
            Ok(events) => events.into_iter().for_each(|e| suspects.add(e, ours)),
            Err(e) => {
                tracing::warn!(error = %e, "watcher: reading notifications failed");
                std::thread::sleep(POLL);
            }
        }
        if inner.strong_count() == 0 {
            return;
        }
        if suspects.is_empty() {
            continue;
        }
        let settle = Instant::now() + SETTLE;
        while let Some(left) = settle.checked_duration_since(Instant::now()) {
            if let Ok(events) = monitor.wait(left) {
                events.into_iter().for_each(|e| suspects.add(e, ours));
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        Controller::from_inner(inner).heal(&suspects_view(&suspects));
    }
}

/// The suspects, as the controller's side sees them.
pub(crate) struct Heal<'a> {
    pub(crate) links: &'a BTreeSet<String>,
    pub(crate) addresses: &'a BTreeSet<u32>,
    pub(crate) firewall: bool,
    pub(crate) foreign: bool,
    pub(crate) everything: bool,
}

fn suspects_view(s: &Suspects) -> Heal<'_> {
    Heal {
        links: &s.links,
        addresses: &s.addresses,
        firewall: s.firewall,
        foreign: s.foreign,
        everything: s.everything,
    }
}

impl State {
    /// Whether anything the suspects name differs from the records (looked at now).
    pub(crate) fn heal_needs_repair(&mut self, cx: &Cx, h: &Heal<'_>) -> bool {
        if h.everything {
            return !self.doctor(cx).is_clean();
        }
        let mut found = Findings::default();
        for net in &self.ready_networks() {
            let Ok(driver) = cx.driver(&net.driver) else {
                continue;
            };
            let bridge = crate::drivers::bridge::BridgeConfig::of(net)
                .ok()
                .map(|c| c.bridge);
            let named = bridge.as_ref().is_some_and(|b| h.links.contains(b));
            let lost_address = !h.addresses.is_empty()
                && bridge.as_ref().is_some_and(|b| {
                    matches!(self.host.nl.link_by_name(b), Ok(Some(l)) if h.addresses.contains(&l.index))
                });
            if (named || lost_address)
                && driver
                    .check_network(&mut self.host, net, &mut found)
                    .is_err()
            {
                return true;
            }
        }
        let joins: Vec<_> = self
            .endpoints
            .all()
            .filter(|e| {
                e.join.as_ref().is_some_and(|j| {
                    j.state == JoinState::Joined
                        && j.host_ifname.as_ref().is_some_and(|n| h.links.contains(n))
                })
            })
            .cloned()
            .collect();
        for ep in joins {
            let Some(join) = ep.join.clone() else {
                continue;
            };
            let Some(net) = self.networks.get(&ep.network_id).cloned() else {
                continue;
            };
            let Ok(driver) = cx.driver(&net.driver) else {
                continue;
            };
            let Some(k) = self
                .sandboxes
                .get_mut(&join.sandbox_id)
                .and_then(|s| s.kernel.as_mut())
            else {
                continue;
            };
            if driver
                .check_join(&mut self.host, k, &net, &ep, &join, &mut found)
                .is_err()
            {
                return true;
            }
        }
        !found.is_empty()
    }
}

impl Controller {
    /// Puts back what the suspects show was touched; quiet when nothing was.
    fn heal(&self, h: &Heal<'_>) {
        let started = Instant::now();
        let (repair, firewall) = self.with(|st, cx| {
            let repair = st.heal_needs_repair(cx, h);
            let firewall =
                (h.firewall || h.foreign) && st.firewall_check(cx).map_or(true, |d| !d.is_empty());
            (repair, firewall)
        });
        if repair || firewall {
            self.count_heal();
        }
        if repair {
            match self.repair() {
                Ok(r) => {
                    tracing::warn!(took = ?started.elapsed(), report = ?r, "put back what someone else changed")
                }
                Err(e) => tracing::error!(error = %e, "repairing what someone else changed failed"),
            }
        } else if firewall {
            match self.heal_firewall() {
                Ok(drift) => {
                    tracing::warn!(took = ?started.elapsed(), ?drift, "put back lnet's firewall")
                }
                Err(e) => tracing::error!(error = %e, "repairing lnet's firewall failed"),
            }
        }
    }
}
