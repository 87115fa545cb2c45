//! Start-up recovery: from the records alone, finish or undo every interrupted operation,
//! replay IPAM, and check and repair the kernel objects of what is ready.
//!
//! The rules (DESIGN §3.2): `creating` is rolled back, `deleting` is finished, `ready` is
//! re-derived. A network or endpoint that cannot be re-derived (an unknown driver, an address
//! that another record already holds, an endpoint whose network is gone) is quarantined and
//! reported; a kernel step that fails is reported and retried at the next start. Nothing
//! here can stop the controller from starting, short of the store itself being unusable.
//!
//! Order matters: networks first (pools are replayed before any endpoint asks for an
//! address, and a `deleting` network is removed before its pools could ever be reserved
//! again), then the liveness of sandboxes, then endpoints (which need both), then sandboxes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use lnet_kernel::{IpNet, Link, Netns};
use lnet_store::{
    EndpointRecord, JoinState, Lifecycle, NetworkRecord, Quarantined, RecordKind, SandboxRecord,
};
use serde::Serialize;

use crate::driver::JoinMode;
use crate::error::{CoreError, Result};
use crate::kernel::{
    HostView, KernelView, Orphan, SandboxKernel, SandboxOps, SandboxView, merge_host_links,
    sandbox_view, view_of,
};
use crate::ops::{
    Gateways, ResolverSockets, open_sandbox_kernel, remove_sandbox_artifacts, reopen_resolver,
    write_resolv_conf,
};
use crate::state::{Cx, SandboxEntry, State};

/// What start-up recovery found and did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RecoveryReport {
    /// Notices about the store itself (for example a damaged file moved aside).
    pub notices: Vec<String>,
    /// Records set aside because they could not be used.
    pub quarantined: Vec<Quarantined>,
    /// Interrupted creates that were undone.
    pub rolled_back: Vec<String>,
    /// Interrupted deletes (and leaves) that were finished.
    pub finished: Vec<String>,
    /// Sandboxes whose namespace was gone, removed with their endpoints.
    pub removed_sandboxes: Vec<String>,
    /// Firewall differences from the records that were repaired (elements, rules, lnet's
    /// accept rules in other tables). A first start, which creates the tables, reports none.
    pub firewall: Vec<String>,
    /// Other kernel objects put back (beyond what the drivers' idempotent steps redo).
    pub repaired: Vec<String>,
    /// What lnet made that no record names — its store lost, restored from an older copy or
    /// moved aside — removed: bridges carrying lnet's mark with their ports, namespace
    /// mounts under the exec root, sandbox file directories under the data root.
    pub leftovers: Vec<String>,
    /// Kernel steps that failed; retried at the next start.
    pub errors: Vec<String>,
    /// Ready objects restored.
    pub networks: usize,
    /// Ready endpoints restored.
    pub endpoints: usize,
    /// Live sandboxes restored.
    pub sandboxes: usize,
    /// How long each step of the start took, in order (milliseconds): where a slow start
    /// spent its time.
    pub took: Vec<(&'static str, f64)>,
}

/// Times the steps of a start, one after the other.
struct Clock(std::time::Instant);

impl Clock {
    fn lap(&mut self, report: &mut RecoveryReport, step: &'static str) {
        let now = std::time::Instant::now();
        report.took.push((step, (now - self.0).as_secs_f64() * 1e3));
        self.0 = now;
    }
}

impl RecoveryReport {
    /// Whether recovery found nothing to fix.
    pub fn is_clean(&self) -> bool {
        self.notices.is_empty()
            && self.quarantined.is_empty()
            && self.rolled_back.is_empty()
            && self.finished.is_empty()
            && self.removed_sandboxes.is_empty()
            && self.firewall.is_empty()
            && self.repaired.is_empty()
            && self.leftovers.is_empty()
            && self.errors.is_empty()
    }
}

/// One dump of the host's links, and of each sandbox's links and addresses as recovery
/// first needs them.
struct Views {
    host: HashMap<String, Link>,
    sandboxes: HashMap<String, SandboxView>,
    /// Endpoints with a join, and those found right in the dumps (nothing changed).
    joins: usize,
    fast: usize,
}

impl Views {
    fn sandbox<'a>(
        sandboxes: &'a mut HashMap<String, SandboxView>,
        id: &str,
        k: &mut SandboxKernel,
    ) -> (&'a HashMap<String, Link>, &'a [(u32, IpNet)]) {
        if !sandboxes.contains_key(id) {
            sandboxes.insert(id.to_string(), sandbox_view(k));
        }
        let (links, addrs) = &sandboxes[id];
        (links, addrs)
    }
}

enum Liveness {
    Live(Option<SandboxKernel>),
    Dead,
}

/// The sandboxes as a start finds them: which are alive (with their kernel handles), the
/// resolver sockets it could open again, and each live sandbox's links and addresses.
struct Opened {
    sandboxes: BTreeMap<String, (SandboxRecord, Liveness)>,
    reopened: HashMap<String, ResolverSockets>,
    views: HashMap<String, SandboxView>,
    /// The default gateways each sandbox routes through now.
    gateways: HashMap<String, Gateways>,
    /// Sandboxes kept although their namespace could not be opened.
    errors: Vec<String>,
}

/// Which sandboxes are alive, with their kernel handles. One trip into each live namespace,
/// on a few threads that move from one to the next, opens its netlink socket, reads its
/// links and addresses, and (with embedded DNS) opens its resolver's sockets on the port
/// its redirect already points at. A thread and a trip per sandbox per handle, then a look
/// at each sandbox later, cost a start 0.3 s at 1,000 sandboxes.
fn open_sandboxes(cx: &Cx, dns: bool, records: Vec<SandboxRecord>) -> Opened {
    let found: Vec<(SandboxRecord, Found)> = records
        .into_iter()
        .map(|sb| {
            let f = match sb.state {
                Lifecycle::Ready => namespace_of(cx, &sb),
                _ => Found::Dead,
            };
            (sb, f)
        })
        .collect();
    let results = {
        let nss: Vec<&Netns> = found
            .iter()
            .filter_map(|(_, f)| match f {
                Found::Open(ns) => Some(ns),
                _ => None,
            })
            .collect();
        // One per CPU (the caller's work beside them is the smaller part, and ends
        // first); more than four would mostly wait on the kernel's locks.
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        Netns::run_in_each(&nss, threads, |_| {
            let mut nl = lnet_kernel::Netlink::new()?;
            let view = view_of(&mut nl);
            let gateways = current_gateways(&mut nl);
            // Sockets are reopened only where nothing else needs doing: lo is up.
            let lo_up = view.0.get("lo").is_some_and(|l| l.up);
            let sockets = (dns && lo_up).then(reopen_resolver).flatten();
            Ok::<_, lnet_kernel::KernelError>((nl, view, gateways, sockets))
        })
    };
    let mut results = results.into_iter();
    let mut opened = Opened {
        sandboxes: BTreeMap::new(),
        reopened: HashMap::new(),
        views: HashMap::new(),
        gateways: HashMap::new(),
        errors: Vec::new(),
    };
    for (sb, f) in found {
        let mut unsure = |what: String| {
            opened.errors.push(format!(
                "sandbox {}: {what}; kept as it is, its network is checked at the next start",
                sb.container_id
            ));
            Liveness::Live(None)
        };
        let live = match f {
            Found::Dead => Liveness::Dead,
            Found::Host => Liveness::Live(None),
            Found::Unsure(e) => unsure(format!("its network namespace could not be opened: {e}")),
            Found::Open(ns) => match results.next().map(|r| r.and_then(|r| r)) {
                Some(Ok((nl, view, gateways, sockets))) => {
                    if let Some(s) = sockets {
                        opened.reopened.insert(sb.id.clone(), s);
                    }
                    if let Some(g) = gateways {
                        opened.gateways.insert(sb.id.clone(), g);
                    }
                    opened.views.insert(sb.id.clone(), view);
                    Liveness::Live(Some(SandboxKernel {
                        ns: Arc::new(ns),
                        nl,
                    }))
                }
                // The namespace opened, so the sandbox lives: the shared trip failed
                // entering it or opening its socket. Once more the plain way.
                Some(Err(_)) | None => match open_sandbox_kernel(&sb) {
                    Ok(k) => Liveness::Live(Some(k)),
                    Err(e) => unsure(format!("its namespace could not be entered: {e}")),
                },
            },
        };
        opened.sandboxes.insert(sb.id.clone(), (sb, live));
    }
    opened
}

/// The default gateways of the namespace `nl` is in, as far as they can be told apart from
/// the records' kind of default route (one per family, via a gateway): `None` when a
/// family has a default route without a gateway or more than one, or its IPv4 dump fails
/// (then the routes are set the long way). A kernel without IPv6 has no IPv6 routes.
fn current_gateways(nl: &mut lnet_kernel::Netlink) -> Option<Gateways> {
    let mut gw = |family| -> Option<Option<IpAddr>> {
        let routes = match nl.routes(family) {
            Ok(r) => r,
            Err(_) if family == lnet_kernel::IpFamily::V6 => return Some(None),
            Err(_) => return None,
        };
        let mut defaults = routes.into_iter().filter(|r| r.is_default());
        match (defaults.next(), defaults.next()) {
            (None, _) => Some(None),
            (Some(r), None) => r.gateway.map(Some),
            (Some(_), Some(_)) => None,
        }
    };
    Some(Gateways {
        v4: gw(lnet_kernel::IpFamily::V4)?,
        v6: gw(lnet_kernel::IpFamily::V6)?,
    })
}

/// What a start finds of a ready sandbox's namespace.
enum Found {
    /// Gone: no namespace where the record says (not mounted, no such file or process).
    Dead,
    /// A host-mode sandbox: it has no namespace of its own.
    Host,
    /// Opened.
    Open(Netns),
    /// There, but it could not be opened now (out of file descriptors, say). Removing the
    /// sandbox would take a running container's network away; it is kept.
    Unsure(lnet_kernel::KernelError),
}

fn namespace_of(cx: &Cx, sb: &SandboxRecord) -> Found {
    if let Some(active) = &cx.config.active_sandboxes
        && !active.contains(&sb.id)
        && !active.contains(&sb.container_id)
    {
        return Found::Dead;
    }
    if !sb.lnet_inside() {
        return Found::Host;
    }
    if sb.owns_netns && !Netns::is_mounted_at(&sb.netns_path) {
        return Found::Dead;
    }
    match Netns::open(&sb.netns_path) {
        Ok(ns) => Found::Open(ns),
        Err(e) if e.is_gone() => {
            tracing::info!(sandbox = %sb.container_id, error = %e, "sandbox namespace is gone");
            Found::Dead
        }
        Err(e) => Found::Unsure(e),
    }
}

impl State {
    fn quarantine(
        &self,
        cx: &Cx,
        report: &mut RecoveryReport,
        kind: RecordKind,
        id: &str,
        name: &str,
        reason: String,
    ) {
        tracing::error!(%kind, %id, %reason, "quarantining record");
        match cx.store.quarantine(kind, id, &reason) {
            Ok(()) => report.quarantined.push(Quarantined {
                kind: kind.as_str().into(),
                id: id.into(),
                reason: format!("{kind} {name}: {reason}"),
                raw: String::new(),
                at_unix: 0,
            }),
            Err(e) => report.errors.push(format!("quarantine {kind} {name}: {e}")),
        }
    }

    /// Removes the host interfaces lnet made that no record names — a join whose record the
    /// disk lost (one that lies about fsync), or a store restored from an older copy — so that
    /// nothing lnet made outlives its record. One dump of the host's links serves every
    /// network.
    /// `links`: the host's links, when the dump taken before the joins still holds.
    fn sweep_orphans(&mut self, cx: &Cx, report: &mut RecoveryReport, links: Option<Vec<Link>>) {
        let orphans = match links {
            Some(links) => Ok(self.orphans_among(cx, &links)),
            None => self.orphan_links(cx),
        };
        let orphans = match orphans {
            Ok(o) => o,
            Err(e) => {
                report
                    .errors
                    .push(format!("listing host interfaces for the orphan sweep: {e}"));
                return;
            }
        };
        // Whatever else still waits in the deletion group (only lnet puts links there).
        if let Err(e) = self.host.nl.delete_group(crate::reaper::GONE_GROUP) {
            report
                .errors
                .push(format!("removing links left waiting for deletion: {e}"));
        }
        for o in orphans {
            let (name, net) = (&o.name, &o.network);
            if o.unrecorded {
                // In the background when the daemon deletes that way: a lost store with
                // many containers leaves many ports, and a start must not wait on each.
                let removed = match o.driver.as_deref().map(|d| cx.driver(d)) {
                    Some(Ok(d)) => d.remove_leftover(&mut self.host, &o),
                    _ => self.host.delete_link_later(name),
                };
                match removed {
                    Ok(()) => report.leftovers.push(match &o.marked {
                        Some(_) => format!("{} {name} of network {net}", o.noun),
                        None => format!("{} {name} on network {net}", o.noun),
                    }),
                    Err(e) => report
                        .errors
                        .push(format!("removing interface {name} no record names: {e}")),
                }
                continue;
            }
            match self.host.nl.delete_link(name) {
                Ok(false) => {}
                Ok(true) => report.rolled_back.push(format!(
                    "interface {name} on network {net} (no record names it)"
                )),
                Err(e) => report
                    .errors
                    .push(format!("removing orphan interface {name}: {e}")),
            }
        }
    }

    /// Namespace mounts (and stray files) under `<exec-root>/netns`, and sandbox file
    /// directories under `<data-root>/sandboxes`, that no sandbox record names. Both
    /// folders are lnet's alone, so what is in them is lnet's; a quarantined sandbox still
    /// names its own (it may be a running container whose record an operator can mend).
    /// Fails only when the quarantine cannot be read: nothing may be taken then.
    pub(crate) fn unnamed_sandbox_paths(&self, cx: &Cx) -> Result<Vec<std::path::PathBuf>> {
        let quarantined: Vec<String> = cx
            .store
            .quarantined()?
            .into_iter()
            .filter(|q| q.kind == RecordKind::Sandbox.as_str())
            .map(|q| q.id)
            .collect();
        let netns_dir = cx.config.exec_root.join("netns");
        let files_dir = cx.config.sandboxes_dir();
        let mut named: BTreeSet<std::path::PathBuf> = BTreeSet::new();
        for rec in self.sandboxes.values().map(|s| &s.rec) {
            named.insert(rec.netns_path.clone());
            named.insert(rec.files_dir.clone());
        }
        for id in &quarantined {
            named.insert(netns_dir.join(id));
            named.insert(files_dir.join(id));
        }
        Ok([netns_dir, files_dir]
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|entries| entries.flatten().map(|e| e.path()))
            .filter(|p| !named.contains(p))
            .collect())
    }

    /// Removes what [`State::unnamed_sandbox_paths`] finds: namespaces are unmounted (their
    /// interfaces go with them unless a process still holds them), directories removed.
    fn sweep_sandbox_paths(&self, cx: &Cx, report: &mut RecoveryReport) {
        let paths = match self.unnamed_sandbox_paths(cx) {
            Ok(p) => p,
            Err(e) => {
                report.errors.push(format!(
                    "looking for namespace mounts and sandbox files no record names: {e}"
                ));
                return;
            }
        };
        for path in paths {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
                    .map_err(CoreError::io(format!("remove {}", path.display())))
            } else {
                Netns::delete_at(&path)
                    .map(drop)
                    .map_err(CoreError::kernel(format!("remove {}", path.display())))
            };
            match removed {
                Ok(()) => report
                    .leftovers
                    .push(format!("{} (no sandbox names it)", path.display())),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }

    /// Host interfaces lnet made that no record names, with the network each hangs on: a
    /// crash between making an interface and recording it, or links a crash caught waiting
    /// for the background deleter (`(deleted)`).
    pub(crate) fn orphan_links(&mut self, cx: &Cx) -> Result<Vec<Orphan>> {
        let links = crate::kernel::bridges_and_ports(&mut self.host.nl)
            .map_err(CoreError::kernel("list the host's bridges and their ports"))?;
        Ok(self.orphans_among(cx, &links))
    }

    /// [`State::orphan_links`] among `links` (see [`crate::kernel::host_links`]).
    pub(crate) fn orphans_among(&mut self, cx: &Cx, links: &[Link]) -> Vec<Orphan> {
        let named = self.host_ifnames();
        let networks: Vec<&NetworkRecord> = self.networks.values().collect();
        cx.drivers
            .leftovers(&mut self.host.nl, links, &named, &networks, &cx.config)
    }

    /// Every host interface a join record names.
    pub(crate) fn host_ifnames(&self) -> BTreeSet<String> {
        self.endpoints
            .all()
            .filter_map(|e| e.join.as_ref().and_then(|j| j.host_ifname.clone()))
            .collect()
    }

    /// Quarantines an endpoint after removing the host end of its interface, if it has one,
    /// so that setting a record aside never leaves a kernel object behind.
    fn quarantine_endpoint(
        &mut self,
        cx: &Cx,
        report: &mut RecoveryReport,
        ep: &EndpointRecord,
        reason: String,
    ) {
        if let Some(name) = ep.join.as_ref().and_then(|j| j.host_ifname.as_deref())
            && let Err(e) = self.host.nl.delete_link(name)
        {
            report.errors.push(format!(
                "endpoint {}: removing interface {name}: {e}",
                ep.name
            ));
        }
        self.quarantine(cx, report, RecordKind::Endpoint, &ep.id, &ep.name, reason);
    }

    pub(crate) fn recover(&mut self, cx: &Cx) -> Result<RecoveryReport> {
        let mut clock = Clock(std::time::Instant::now());
        // Before the networks, which turn forwarding on again (and record it) where it is
        // off and they want it.
        let mut guard = self.host.forwarding();
        let forwarding: &mut crate::forwarding::Forwarding = &mut guard;
        let forgot = self.host.ns().run(|| forwarding.forget_off());
        drop(guard);
        match forgot {
            Ok(Ok(gone)) if !gone.is_empty() => {
                tracing::info!(families = ?gone, "IP forwarding lnet turned on is off now: no longer guarded");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot update lnet's IP forwarding record"),
            Err(e) => tracing::warn!(error = %e, "cannot read the forwarding sysctls"),
        }
        // The host's bridge ports, dumped while the records are read: the longest single
        // look a start takes (0.15 s at 10,000 ports), and it needs no record. A port the
        // networks below change (a bridge put back) then looks wrong to its join's check,
        // which goes the long way, and the orphan sweep dumps again: a dump taken early can
        // make a check slower, never wrong.
        // The socket is opened in the host namespace, whatever thread runs this (a
        // `repair` may be asked from anywhere).
        let host_nl = self
            .host
            .ns()
            .run(lnet_kernel::Netlink::new)
            .and_then(|r| r);
        let ports = std::thread::spawn(move || host_nl.and_then(|mut nl| nl.bridge_ports()));
        // The sandboxes first, so that one trip into each (its handles, its links and
        // addresses) starts while the rest is read. Side by side with it: the records, the
        // networks (pools replayed, bridges checked), then one look at the host's bridges
        // (after the networks, which may have put one back). On 1,000 sandboxes and 10,000
        // joins these were most of a start done one after the other.
        let first = cx.store.load_only(&[RecordKind::Sandbox])?;
        let mut report = RecoveryReport {
            quarantined: first.quarantined,
            ..Default::default()
        };
        let dns = self.dns.is_some();
        let (endpoints, opened, host, networks_changed) = std::thread::scope(|s| -> Result<_> {
            let opener = s.spawn(move || open_sandboxes(cx, dns, first.sandboxes));
            let loaded = cx
                .store
                .load_only(&[RecordKind::Network, RecordKind::Endpoint])
                .map_err(CoreError::from);
            let loaded = match loaded {
                Ok(l) => l,
                Err(e) => {
                    // Nothing was changed: the sockets opened meanwhile just close.
                    drop(opener.join());
                    return Err(e);
                }
            };
            report.quarantined.extend(loaded.quarantined);
            clock.lap(&mut report, "read the store");
            // The sets must exist before networks add their elements. A table that is
            // missing altogether is a first start (or a reboot), not drift worth reporting.
            match self.host.fw().ensure_base() {
                Ok(drift) => report.firewall.extend(
                    drift
                        .into_iter()
                        .filter(|d| !d.what.starts_with("table"))
                        .map(|d| format!("{} {}", d.kind, d.what)),
                ),
                Err(e) => report.errors.push(format!("firewall: {e}")),
            }
            self.host.fw().set_deferred(true);
            clock.lap(&mut report, "firewall tables");
            // The host's bridges and their addresses, once for every network.
            let bridges = self.host.nl.links_of_kind("bridge");
            let mut view = HostView::default();
            if let (Ok(bridges), Ok(addrs)) = (&bridges, self.host.nl.addresses(None)) {
                view.bridges = bridges
                    .iter()
                    .map(|l| (l.name.clone(), l.clone()))
                    .collect();
                for (index, a) in addrs {
                    view.addrs.entry(index).or_default().push(a);
                }
            }
            let mut changed = false;
            for net in loaded.networks {
                changed |= self.recover_network(cx, &mut report, net, &view);
            }
            clock.lap(&mut report, "networks");
            let ports = ports
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            let bridges = match bridges {
                Ok(b) if !changed => Ok(b),
                _ => self.host.nl.links_of_kind("bridge"),
            };
            let host = merge_host_links(ports, bridges);
            clock.lap(&mut report, "host links");
            let opened = opener
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            clock.lap(&mut report, "sandboxes (beside the above)");
            Ok((loaded.endpoints, opened, host, changed))
        })?;
        let Opened {
            mut sandboxes,
            mut reopened,
            views: sandbox_views,
            mut gateways,
            errors,
        } = opened;
        report.errors.extend(errors);

        // One dump of the host's links (and one per sandbox) to tell which joins are
        // already right, rather than several requests per join: at 10,000 joins that was
        // most of a start. Without the dump every join is checked the long way.
        let mut views = Views {
            host,
            sandboxes: sandbox_views,
            joins: 0,
            fast: 0,
        };
        // Network by network, so that each network's record is copied once, not once per
        // endpoint.
        let mut by_network: BTreeMap<String, Vec<EndpointRecord>> = BTreeMap::new();
        for ep in endpoints {
            by_network
                .entry(ep.network_id.clone())
                .or_default()
                .push(ep);
        }
        // Sandboxes with a join that was not found right: what the trip read of them
        // (their routes) may no longer hold.
        let mut touched = std::collections::HashSet::new();
        for (net_id, eps) in by_network {
            let net = self
                .networks
                .get(&net_id)
                .filter(|n| n.state == Lifecycle::Ready)
                .cloned();
            for ep in eps {
                let sandbox = ep.join.as_ref().map(|j| j.sandbox_id.clone());
                let fast = views.fast;
                self.recover_endpoint(
                    cx,
                    &mut report,
                    ep,
                    net.as_ref(),
                    &mut sandboxes,
                    &mut views,
                );
                if let Some(id) = sandbox
                    && views.fast == fast
                {
                    touched.insert(id);
                }
            }
        }
        clock.lap(&mut report, "endpoints");
        // An endpoint that lives only while joined and is not: its connect died between
        // create and join, or its disconnect between leave and delete. Finish the story.
        let unjoined: Vec<(String, String)> = self
            .endpoints
            .all()
            .filter(|e| e.ephemeral && e.join.is_none() && e.state == Lifecycle::Ready)
            .map(|e| (e.id.clone(), e.name.clone()))
            .collect();
        for (id, name) in unjoined {
            match self.delete_endpoint(cx, &id) {
                Ok(()) => report.finished.push(format!(
                    "endpoint {name} (connected or disconnected half way)"
                )),
                Err(e) => report.errors.push(format!("endpoint {name}: {e}")),
            }
        }

        // No network or join was repaired the long way: the dumps still describe the host.
        let links = (views.fast == views.joins && !networks_changed && !views.host.is_empty())
            .then(|| views.host.into_values().collect());
        self.sweep_orphans(cx, &mut report, links);
        clock.lap(&mut report, "orphan sweep");
        // Elements no record calls for (a join whose record was lost, a port of an
        // endpoint whose join was undone) go; missing ones come back: one transaction
        // for everything the repairs above deferred.
        self.host.fw().set_deferred(false);
        match self.reconcile_firewall(cx) {
            Ok(drift) => report
                .firewall
                .extend(drift.into_iter().map(|d| format!("{} {}", d.kind, d.what))),
            Err(e) => report.errors.push(format!("firewall: {e}")),
        }
        clock.lap(&mut report, "firewall elements");

        let mut live_ids = BTreeSet::new();
        for (id, (sb, live)) in sandboxes {
            match (sb.state, live) {
                (Lifecycle::Ready, Liveness::Live(kernel)) => {
                    self.sandboxes
                        .insert(id.clone(), SandboxEntry::new(sb, kernel));
                    live_ids.insert(id);
                }
                (state, _) => {
                    let what = format!("sandbox {} ({state})", sb.container_id);
                    let res = remove_sandbox_artifacts(&sb)
                        .and_then(|()| cx.store.delete(&sb).map_err(Into::into));
                    match (res, state) {
                        (Err(e), _) => {
                            report.errors.push(format!("{what}: {e}"));
                            // Keep it visible so a delete can be retried.
                            self.sandboxes.insert(id, SandboxEntry::new(sb, None));
                        }
                        (Ok(()), Lifecycle::Creating) => report.rolled_back.push(what),
                        (Ok(()), Lifecycle::Deleting) => report.finished.push(what),
                        (Ok(()), Lifecycle::Ready) => report.removed_sandboxes.push(what),
                    }
                }
            }
        }
        self.sweep_sandbox_paths(cx, &mut report);
        // The name tables once, for every resolver made below.
        self.refresh_dns_names(cx);
        clock.lap(&mut report, "dead sandboxes, names");
        for id in live_ids {
            // A host-mode sandbox's key is the host namespace's bind mount, gone after a
            // reboot: make it again.
            if self.sandboxes.get(&id).is_some_and(|s| s.rec.host_mode)
                && let Err(e) = self.host_netns_path(cx)
            {
                report
                    .errors
                    .push(format!("sandbox {id}: host namespace key: {e}"));
            }
            // Default routes and hosts are derived: re-derive them rather than trust them,
            // against the routes read on the trip into the sandbox while its joins were all
            // found right (nothing asked of the kernel when they agree).
            let want = self.gateways_of(cx, &id, None);
            let have = gateways.remove(&id).filter(|_| !touched.contains(&id));
            if let Err(e) = self.apply_gateways(&id, have, want) {
                report
                    .errors
                    .push(format!("sandbox {id}: default routes: {e}"));
            }
            // resolv.conf is the container's to edit, so it is rewritten only when it is gone
            // (with the directory that holds both files).
            if let Some(rec) = self.sandboxes.get(&id).map(|s| &s.rec)
                && !rec.files_dir.join("resolv.conf").exists()
                && let Err(e) = write_resolv_conf(cx, rec)
            {
                report
                    .errors
                    .push(format!("sandbox {id}: resolv.conf: {e}"));
            }
            if let Err(e) = self.write_hosts(cx, &id) {
                report.errors.push(format!("sandbox {id}: hosts: {e}"));
            }
            // The resolver is derived too: its sockets, redirect and resolv.conf are made
            // again (the old sockets died with the old process). A repair of a running
            // controller keeps the sockets and puts back only a redirect someone removed.
            let served = self.dns.as_ref().is_some_and(|d| d.serves(&id));
            let sockets = reopened.remove(&id);
            self.refresh_sandbox_dns_with(cx, &id, sockets);
            // A new resolver checked its redirect as it was made.
            match served.then(|| self.repair_dns_redirect(&id)) {
                Some(Ok(true)) => report
                    .repaired
                    .push(format!("sandbox {id}: redirect of 127.0.0.11:53")),
                Some(Err(e)) => report
                    .errors
                    .push(format!("sandbox {id}: DNS redirect: {e}")),
                _ => {}
            }
        }
        clock.lap(&mut report, "routes, files, resolvers");
        report.networks = self
            .networks
            .values()
            .filter(|n| n.state == Lifecycle::Ready)
            .count();
        report.endpoints = self.endpoints.len();
        report.sandboxes = self
            .sandboxes
            .values()
            .filter(|s| s.rec.state == Lifecycle::Ready)
            .count();
        if report.is_clean() {
            tracing::info!(
                networks = report.networks,
                endpoints = report.endpoints,
                sandboxes = report.sandboxes,
                took = ?report.took,
                "state restored"
            );
        } else {
            tracing::warn!(?report, "state restored with repairs");
        }
        Ok(report)
    }

    /// Returns whether it may have changed the host's links (`view` no longer holds).
    fn recover_network(
        &mut self,
        cx: &Cx,
        report: &mut RecoveryReport,
        net: NetworkRecord,
        view: &HostView,
    ) -> bool {
        let driver = match cx.driver(&net.driver) {
            Ok(d) => d,
            Err(_) => {
                self.quarantine(
                    cx,
                    report,
                    RecordKind::Network,
                    &net.id,
                    &net.name,
                    format!("unknown driver {:?}", net.driver),
                );
                return false;
            }
        };
        let what = format!("network {} ({})", net.name, net.state);
        match net.state {
            Lifecycle::Creating | Lifecycle::Deleting => {
                // An IPAM plugin's pools go back after the kernel objects, before the record.
                let res = driver
                    .delete_network(&mut self.host, &net)
                    .and_then(|()| match cx.ipam_of(&net)? {
                        Some(ipam) => crate::ipam_driver::release_pools(ipam.as_ref(), &net.pools),
                        None => Ok(()),
                    })
                    .and_then(|()| cx.store.delete(&net).map_err(Into::into));
                match res {
                    Ok(()) if net.state == Lifecycle::Creating => report.rolled_back.push(what),
                    Ok(()) => report.finished.push(what),
                    Err(e) => {
                        report.errors.push(format!("{what}: {e}"));
                        let mut net = net;
                        net.state = Lifecycle::Deleting;
                        self.networks.insert(net.id.clone(), net);
                    }
                }
                true
            }
            Lifecycle::Ready => {
                if let Err(e) = self.ipam.replay_network(&net) {
                    // Set aside with nothing left behind: its kernel objects go too.
                    if let Err(k) = driver.delete_network(&mut self.host, &net) {
                        report.errors.push(format!(
                            "network {}: removing its kernel objects: {k}",
                            net.name
                        ));
                    }
                    self.quarantine(
                        cx,
                        report,
                        RecordKind::Network,
                        &net.id,
                        &net.name,
                        format!("its pools cannot be reserved again: {e}"),
                    );
                    return true;
                }
                // What is right in the dumps is left alone but for what the driver refreshes
                // every start; anything else is made again the way a create makes it.
                let drift = crate::reconcile::drift_in(
                    &driver.want_network(&net),
                    crate::reconcile::NsView {
                        links: &view.bridges,
                        addrs: crate::reconcile::Addrs::ByLink(&view.addrs),
                    },
                    None,
                );
                let made = if drift.is_empty() {
                    driver
                        .refresh_network(&mut self.host, &net, &cx.config)
                        .map(|()| false)
                } else {
                    driver
                        .create_network(&mut self.host, &net, &cx.config)
                        .map(|()| true)
                };
                let long_way = match made {
                    Ok(long_way) => long_way,
                    Err(e) => {
                        report.errors.push(format!(
                            "network {}: repairing kernel objects: {e}",
                            net.name
                        ));
                        true
                    }
                };
                self.networks.insert(net.id.clone(), net);
                long_way
            }
        }
    }

    fn recover_endpoint(
        &mut self,
        cx: &Cx,
        report: &mut RecoveryReport,
        mut ep: EndpointRecord,
        net: Option<&NetworkRecord>,
        sandboxes: &mut BTreeMap<String, (SandboxRecord, Liveness)>,
        views: &mut Views,
    ) {
        // Counted first: every way out below but the fast one may change links.
        if ep.join.is_some() {
            views.joins += 1;
        }
        let Some(net) = net else {
            self.quarantine_endpoint(
                cx,
                report,
                &ep,
                format!("its network {} does not exist", ep.network_id),
            );
            return;
        };
        let driver = match cx.driver(&net.driver) {
            Ok(d) => d,
            Err(e) => {
                report.errors.push(format!("endpoint {}: {e}", ep.name));
                return;
            }
        };
        if matches!(ep.state, Lifecycle::Creating | Lifecycle::Deleting) {
            // Its driver was being told of it (a plugin): created or not, it goes, and the
            // driver is told so. Kept `deleting` while the driver cannot be told, so that a
            // later start tells it.
            let what = format!("endpoint {} ({})", ep.name, ep.state);
            match crate::ops::tell_endpoint_gone(cx, &driver, net, &ep, true)
                .and_then(|()| cx.store.delete(&ep).map_err(Into::into))
            {
                Ok(()) if ep.state == Lifecycle::Creating => report.rolled_back.push(what),
                Ok(()) => report.finished.push(what),
                Err(e) => {
                    report.errors.push(format!("{what}: {e}"));
                    if self.replay_or_quarantine(cx, report, net, &ep) {
                        ep.state = Lifecycle::Deleting;
                        self.endpoints.insert(ep);
                    }
                }
            }
            return;
        }
        if let Some(join) = ep.join.clone() {
            let sb = sandboxes.get_mut(&join.sandbox_id);
            // An engine's sandbox is never opened; its container is gone when the host end
            // of its join is (the pair dies with the container's namespace).
            let host_end_gone = join.handover.is_some()
                && !views.host.is_empty()
                && join
                    .host_ifname
                    .as_ref()
                    .is_some_and(|h| !views.host.contains_key(h));
            let live = !host_end_gone
                && matches!(&sb, Some((rec, Liveness::Live(_))) if rec.state == Lifecycle::Ready);
            let kernel = match sb {
                Some((_, Liveness::Live(k))) => k.as_mut(),
                _ => None,
            };
            // A join handed over to an engine and not recorded done: the engine never had
            // the answer (its retry, if any, fails), so it is undone, not finished.
            let state = match (&join.handover, join.state) {
                (Some(_), JoinState::Joining) => JoinState::Leaving,
                (_, state) => state,
            };
            match (live, state) {
                (true, JoinState::Joined | JoinState::Joining) => {
                    if !self.replay_or_quarantine(cx, report, net, &ep) {
                        return;
                    }
                    // A `joined` record is checked and repaired. A `joining` one is rolled
                    // forward: its names were recorded before anything was made, so the join
                    // can be finished from the record, which is better than undoing work
                    // the caller may be about to be told succeeded.
                    // Said only when something is to be reported.
                    let what = |name: &str| format!("endpoint {name} (joining)");
                    let repaired = match kernel {
                        Some(k) if join.state == JoinState::Joined => {
                            let (links, addrs) =
                                Views::sandbox(&mut views.sandboxes, &join.sandbox_id, k);
                            let view = KernelView {
                                host_links: &views.host,
                                sandbox_links: links,
                                sandbox_addrs: addrs,
                            };
                            let want = driver.want_join(net, &ep, &join);
                            if crate::reconcile::drift_in_view(&want, view).is_empty() {
                                views.fast += 1;
                                Ok(())
                            } else {
                                driver.join(&mut self.host, k, net, &ep, &join, JoinMode::Repair)
                            }
                        }
                        Some(k) => {
                            driver.join(&mut self.host, k, net, &ep, &join, JoinMode::Repair)
                        }
                        // Handed over: only the host end is lnet's to check.
                        None if join.handover.is_some() => {
                            let none = std::collections::HashMap::new();
                            let view = KernelView {
                                host_links: &views.host,
                                sandbox_links: &none,
                                sandbox_addrs: &[],
                            };
                            let want = driver.want_join(net, &ep, &join);
                            if crate::reconcile::drift_in_view(&want, view).is_empty() {
                                Ok(())
                            } else {
                                self.host.another().and_then(|lent| {
                                    let mut side = crate::kernel::HandoverSide(lent);
                                    driver.join(
                                        &mut self.host,
                                        &mut side,
                                        net,
                                        &ep,
                                        &join,
                                        JoinMode::Repair,
                                    )
                                })
                            }
                        }
                        None => Ok(()),
                    };
                    match (repaired, join.state) {
                        (Ok(()), JoinState::Joining) => {
                            if let Some(j) = ep.join.as_mut() {
                                j.state = JoinState::Joined;
                            }
                            match cx.store.put(&mut ep) {
                                Ok(()) => report.finished.push(what(&ep.name)),
                                Err(e) => report.errors.push(format!("{}: {e}", what(&ep.name))),
                            }
                        }
                        (Ok(()), _) => {}
                        (Err(e), JoinState::Joining) => {
                            // Could not be finished: undo it instead.
                            report
                                .errors
                                .push(format!("{}: finishing the join: {e}", what(&ep.name)));
                            let k = sandboxes
                                .get_mut(&join.sandbox_id)
                                .and_then(|(_, l)| match l {
                                    Liveness::Live(k) => k.as_mut(),
                                    Liveness::Dead => None,
                                })
                                .map(|k| k as &mut dyn SandboxOps);
                            if let Err(e) = driver.leave(&mut self.host, k, net, &ep, &join) {
                                report
                                    .errors
                                    .push(format!("{}: undoing the join: {e}", what(&ep.name)));
                            }
                            ep.join = None;
                            if let Err(e) = cx.store.put(&mut ep) {
                                report.errors.push(format!("{}: {e}", what(&ep.name)));
                            }
                        }
                        (Err(e), _) => report.errors.push(format!(
                            "endpoint {}: repairing its interface: {e}",
                            ep.name
                        )),
                    }
                    self.endpoints.insert(ep);
                    return;
                }
                (true, JoinState::Leaving) => {
                    let what = format!("endpoint {} (leaving)", ep.name);
                    match driver.leave(
                        &mut self.host,
                        kernel.map(|k| k as &mut dyn SandboxOps),
                        net,
                        &ep,
                        &join,
                    ) {
                        Ok(()) => report.finished.push(what),
                        Err(e) => report.errors.push(format!("{what}: {e}")),
                    }
                    ep.join = None;
                }
                (false, _) => {
                    // The sandbox is gone or going: its interface went with its namespace,
                    // except the host end, which is removed here.
                    if let Err(e) = driver.leave(&mut self.host, None, net, &ep, &join) {
                        report
                            .errors
                            .push(format!("endpoint {}: removing its interface: {e}", ep.name));
                    }
                    if sandboxes.contains_key(&join.sandbox_id) {
                        // Removed with its sandbox, as libnetwork does.
                        if let Err(e) = cx.store.delete(&ep) {
                            report.errors.push(format!("endpoint {}: {e}", ep.name));
                        }
                        return;
                    }
                    ep.join = None;
                }
            }
            if let Err(e) = cx.store.put(&mut ep) {
                report
                    .errors
                    .push(format!("endpoint {}: clearing its join: {e}", ep.name));
            }
        }
        if self.replay_or_quarantine(cx, report, net, &ep) {
            self.endpoints.insert(ep);
        }
    }

    /// Re-reserves an endpoint's addresses and host ports; one that another record already
    /// holds cannot be re-derived, so the endpoint is quarantined (with its interface). Returns whether
    /// the endpoint stays.
    fn replay_or_quarantine(
        &mut self,
        cx: &Cx,
        report: &mut RecoveryReport,
        net: &NetworkRecord,
        ep: &EndpointRecord,
    ) -> bool {
        let reason = match self.ipam.replay_endpoint(net, ep) {
            Ok(()) => match self.replay_ports(net, ep) {
                Ok(lost) => {
                    // Held by another program since lnet was down: reported, not fatal.
                    report.errors.extend(lost);
                    return true;
                }
                Err(e) => {
                    self.ipam.release_endpoint(net, ep);
                    format!("its host ports cannot be reserved again: {e}")
                }
            },
            Err(e) => format!("its address cannot be reserved again: {e}"),
        };
        self.quarantine_endpoint(cx, report, ep, reason);
        false
    }
}
