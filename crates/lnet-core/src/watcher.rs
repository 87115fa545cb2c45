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
//! - Link and address notifications name links: which objects those are, and whether they
//!   drift, is [`crate::heal`]'s to decide.
//!
//! The watcher only listens and gathers a burst of notifications into [`Suspects`]; it
//! knows neither records nor drivers.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use lnet_kernel::monitor::{Event, Monitor, NftObject};

use crate::error::Result;

/// The longest the watcher waits after the first notification for the rest of a burst (a
/// ruleset flush, a script deleting several links) before it looks.
const SETTLE: Duration = Duration::from_millis(50);
/// A pause this long in the notifications ends a burst.
const QUIET: Duration = Duration::from_millis(3);
/// How often the watcher checks whether its controller is still there.
const POLL: Duration = Duration::from_millis(200);
/// `NFPROTO_INET`, the family of lnet's table.
const INET: u8 = 1;

/// What the notifications of one burst call for.
#[derive(Debug, Default)]
pub(crate) struct Suspects {
    /// Links that went or changed, by name.
    pub(crate) links: BTreeSet<String>,
    /// Links that lost an address, by index.
    pub(crate) addresses: BTreeSet<u32>,
    /// Someone else changed lnet's table.
    pub(crate) firewall: bool,
    /// Someone else changed another table's chains or rules.
    pub(crate) foreign: bool,
    /// Notifications were lost.
    pub(crate) everything: bool,
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
                if family == INET && table == *crate::firewall::ruleset::TABLE =>
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

/// Starts the watcher: `handle` gets each burst's suspects, and `None` whenever a while
/// passed with none; the watcher ends when it returns `false` (its controller is gone).
pub(crate) fn spawn(
    ours: u32,
    mut handle: impl FnMut(Option<&Suspects>) -> bool + Send + 'static,
) -> Result<()> {
    // Opened here, on the controller's thread: the host namespace.
    let mut monitor = Monitor::new().map_err(crate::error::CoreError::kernel(
        "listen to the kernel's change notifications",
    ))?;
    std::thread::Builder::new()
        .name("lnet-watcher".into())
        .spawn(move || {
            loop {
                let mut suspects = Suspects::default();
                match monitor.wait(POLL) {
                    Ok(events) => events.into_iter().for_each(|e| suspects.add(e, ours)),
                    Err(e) => {
                        tracing::warn!(error = %e, "watcher: reading notifications failed");
                        std::thread::sleep(POLL);
                    }
                }
                if suspects.is_empty() {
                    if !handle(None) {
                        return;
                    }
                    continue;
                }
                // The rest of a burst arrives within microseconds (a ruleset flush) or a
                // few milliseconds (a script): wait until the notifications pause, not a
                // fixed while, so that one deleted link is put back at once.
                let give_up = Instant::now() + SETTLE;
                while let Some(left) = give_up.checked_duration_since(Instant::now()) {
                    match monitor.wait(left.min(QUIET)) {
                        Ok(events) if !events.is_empty() => {
                            events.into_iter().for_each(|e| suspects.add(e, ours))
                        }
                        _ => break,
                    }
                }
                if !handle(Some(&suspects)) {
                    return;
                }
            }
        })
        .map_err(crate::error::CoreError::io("start the watcher thread"))?;
    Ok(())
}
