//! `lnet doctor`: the records against the kernel, read only. For every ready object it
//! looks at what recovery would make or repair — the bridge and its addresses, each joined
//! endpoint's veth pair, addresses, flags and MAC, each sandbox's namespace, files,
//! default routes and resolver, lnet-shaped interfaces and namespace mounts no record
//! names, and the firewall — and lists what is missing, extra or different.
//!
//! What a network or a join should be is the driver's [`crate::driver::Driver::want_network`]
//! and [`crate::driver::Driver::want_join`], compared by [`crate::want::compare`]: the same
//! description and the same comparison recovery and self-healing repair with. Each check
//! names the repair's object in the same words a user would look for (`network web`,
//! `sandbox a`, `firewall`).
//!
//! In two steps, so that no lock is held while the kernel is read: [`State::doctor_plan`]
//! copies what is to be checked from memory under the state lock (no kernel read), and
//! [`Plan::look`] reads the kernel through sockets of its own. A change in progress
//! meanwhile may show as a difference; `doctor` run again shows whether it stays.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use lnet_kernel::{IpFamily, Netlink, Netns};
use lnet_store::{JoinState, Lifecycle, NetworkRecord};
use serde::Serialize;

use crate::config::Config;
use crate::drift::Findings;
use crate::driver::Registry;
use crate::error::Result;
use crate::firewall::Want;
use crate::kernel::{HostKernel, KernelView};
use crate::ops::{Gateways, PortPlan};
use crate::state::{Cx, State};
use crate::want::Wanted;

pub use crate::drift::Finding;

/// What `doctor` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DoctorReport {
    /// Every difference, in the order checked: networks, sandboxes with their endpoints,
    /// interfaces and mounts no record names, the firewall.
    pub findings: Vec<Finding>,
    /// Checks that could not be made (the kernel refused to answer), each naming its object.
    pub errors: Vec<String>,
    /// Ready networks checked.
    pub networks: usize,
    /// Joined endpoints checked.
    pub endpoints: usize,
    /// Sandboxes checked.
    pub sandboxes: usize,
}

impl DoctorReport {
    /// Whether the records and the kernel agree (and every check could be made).
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.errors.is_empty()
    }
}

/// What `doctor` checks, copied from memory: nothing in it reads the kernel.
#[derive(Debug)]
pub(crate) struct Plan {
    host: Result<crate::kernel::Lent>,
    drivers: Registry,
    config: Config,
    /// Ready networks: name, what they want, and their driver (asked whether it can be
    /// reached).
    networks: Vec<NetworkCheck>,
    /// Findings about interrupted network records.
    interrupted_networks: Vec<Finding>,
    sandboxes: Vec<SandboxPlan>,
    /// Findings about interrupted endpoint records.
    interrupted_endpoints: Vec<Finding>,
    /// Every network record and every host interface a join names: what the orphan search
    /// needs.
    network_records: Vec<NetworkRecord>,
    named: BTreeSet<String>,
    unnamed_paths: Result<Vec<PathBuf>>,
    ports: PortPlan,
    firewall: Want,
    forward_links: Vec<String>,
}

/// A ready network as `doctor` checks it: its name, what it wants, its driver and its IPAM
/// plugin, if it has one (each asked whether it can be reached).
type NetworkCheck = (
    String,
    Wanted,
    Option<std::sync::Arc<dyn crate::driver::Driver>>,
    Option<std::sync::Arc<dyn crate::ipam_driver::IpamDriver>>,
);

/// One sandbox, as `doctor` checks it.
#[derive(Debug)]
struct SandboxPlan {
    id: String,
    label: String,
    state: Lifecycle,
    host_mode: bool,
    /// An engine's namespace: lnet checks only the host ends of its joins.
    handover: bool,
    owns_netns: bool,
    netns_path: PathBuf,
    files_dir: PathBuf,
    /// What its hosts file should say.
    hosts: Option<String>,
    /// It should have a resolver; whether it is served.
    resolver: Option<bool>,
    /// The port its resolver answers on, when it is served.
    redirect_port: Option<u16>,
    ns: Option<Arc<Netns>>,
    joins: Vec<JoinCheck>,
    gateways: Gateways,
}

/// One join of a sandbox.
#[derive(Debug)]
struct JoinCheck {
    name: String,
    state: JoinState,
    /// What it wants (`None`: its network or driver is gone).
    want: Option<Wanted>,
}

impl State {
    /// The ready networks' records (a copy: checks need the state mutably meanwhile).
    pub(crate) fn ready_networks(&self) -> Vec<lnet_store::NetworkRecord> {
        self.networks
            .values()
            .filter(|n| n.state == Lifecycle::Ready)
            .cloned()
            .collect()
    }

    /// What `doctor` is to check, copied from memory (a few milliseconds at a thousand
    /// sandboxes; the kernel is read afterwards, with no lock held).
    pub(crate) fn doctor_plan(&self, cx: &Cx) -> Plan {
        let interrupted = |what: String, state: &dyn std::fmt::Display| Finding {
            kind: "different",
            object: what,
            what: format!("record {state} (interrupted; the next start finishes it)"),
        };
        let networks = self
            .ready_networks()
            .iter()
            .map(|n| {
                let driver = cx.driver(&n.driver).ok();
                let want = driver
                    .as_ref()
                    .map(|d| d.want_network(n))
                    .unwrap_or_default();
                (n.name.clone(), want, driver, cx.ipam_of(n).ok().flatten())
            })
            .collect();
        let interrupted_networks = self
            .networks
            .values()
            .filter(|n| n.state != Lifecycle::Ready)
            .map(|n| interrupted(format!("network {}", n.name), &n.state))
            .collect();
        let interrupted_endpoints = self
            .endpoints
            .all()
            .filter(|e| e.state != Lifecycle::Ready)
            .map(|e| interrupted(format!("endpoint {}", e.name), &e.state))
            .collect();
        let sandboxes = self
            .sandboxes
            .iter()
            .map(|(id, s)| {
                let joins = self
                    .joined(id)
                    .into_iter()
                    .filter_map(|ep| {
                        let join = ep.join.as_ref()?;
                        let want = self.networks.get(&ep.network_id).and_then(|net| {
                            cx.driver(&net.driver)
                                .ok()
                                .map(|d| d.want_join(net, ep, join))
                        });
                        Some(JoinCheck {
                            name: ep.name.clone(),
                            state: join.state,
                            want,
                        })
                    })
                    .collect();
                let wants_resolver = self.dns.is_some() && !self.dns_view(cx, id).is_empty();
                SandboxPlan {
                    id: id.clone(),
                    label: s.rec.container_id.clone(),
                    state: s.rec.state,
                    host_mode: s.rec.host_mode,
                    handover: s.rec.handover,
                    owns_netns: s.rec.owns_netns,
                    netns_path: s.rec.netns_path.clone(),
                    files_dir: s.rec.files_dir.clone(),
                    hosts: self.hosts_text(cx, id).ok().filter(|_| !s.rec.handover),
                    resolver: wants_resolver.then(|| self.serves(id)),
                    redirect_port: self.resolver_port(id),
                    ns: s.ns.clone(),
                    joins,
                    gateways: self.gateways_of(cx, id, None),
                }
            })
            .collect();
        Plan {
            host: self.host.another(),
            drivers: cx.drivers.clone(),
            config: cx.config.clone(),
            networks,
            interrupted_networks,
            sandboxes,
            interrupted_endpoints,
            network_records: self.networks.values().cloned().collect(),
            named: self.host_ifnames(),
            unnamed_paths: self.unnamed_sandbox_paths(cx),
            ports: self.port_plan(),
            firewall: self.firewall_want(cx),
            forward_links: self.forward_links(cx),
        }
    }
}

impl Plan {
    /// Compares the plan with the kernel; changes nothing, holds no lock of the controller.
    pub(crate) fn look(self) -> DoctorReport {
        let dns = self.redirect_wanted();
        let Plan {
            host,
            drivers,
            config,
            networks,
            interrupted_networks,
            sandboxes,
            interrupted_endpoints,
            network_records,
            named,
            unnamed_paths,
            ports,
            firewall,
            forward_links,
        } = self;
        let mut report = DoctorReport::default();
        let mut host = match host {
            Ok(h) => h,
            Err(e) => {
                report.errors.push(format!("host: {e}"));
                return report;
            }
        };
        // Links the background deleter has yet to remove are lnet's work in progress, not
        // drift: let it finish (tens of milliseconds).
        if let Some(r) = host.reaper() {
            r.pending_handle().wait();
        }
        let mut f = Findings::default();
        for (name, want, driver, ipam) in &networks {
            f.about(format!("network {name}"));
            report.networks += 1;
            if let Some(Err(why)) = driver.as_ref().map(|d| d.reachable()) {
                f.push("unreachable", format!("its driver: {why}"));
            }
            if let Some(Err(why)) = ipam.as_ref().map(|d| d.reachable()) {
                f.push("unreachable", format!("its IPAM driver: {why}"));
            }
            match crate::reconcile::drift_live(want, &mut host.nl, None) {
                Ok(drift) => f.drift(&drift),
                Err(e) => report.errors.push(format!("network {name}: {e}")),
            }
        }
        for found in interrupted_networks {
            f.about(found.object.clone());
            f.push(found.kind, found.what);
        }

        // One dump of the host's links for every join and for the orphans (as a start
        // does): a join that the dumps show right needs no requests of its own.
        let host_links = crate::kernel::host_links(&mut host.nl);
        let mut looks = look_into_sandboxes(&sandboxes, dns);
        for sb in &sandboxes {
            let look = looks.remove(&sb.id);
            check_sandbox(sb, &mut host, &host_links, look, &mut f, &mut report);
        }
        for found in interrupted_endpoints {
            f.about(found.object.clone());
            f.push(found.kind, found.what);
        }

        let links: Vec<lnet_kernel::Link> = if host_links.is_empty() {
            match crate::kernel::bridges_and_ports(&mut host.nl) {
                Ok(l) => l,
                Err(e) => {
                    report.errors.push(format!("host interfaces: {e}"));
                    Vec::new()
                }
            }
        } else {
            host_links.into_values().collect()
        };
        let records: Vec<&NetworkRecord> = network_records.iter().collect();
        for o in drivers.leftovers(&mut host.nl, &links, &named, &records, &config) {
            f.about(format!("network {}", o.network));
            f.extra(format!("{} {} (no record names it)", o.noun, o.name));
        }
        f.about("host");
        match &unnamed_paths {
            Ok(paths) => {
                for path in paths {
                    let what = if path.is_dir() {
                        "sandbox file directory"
                    } else if Netns::is_mounted_at(path) {
                        "network namespace mount"
                    } else {
                        "file"
                    };
                    f.extra(format!("{what} {} (no sandbox names it)", path.display()));
                }
            }
            Err(e) => report.errors.push(format!("sandbox mounts and files: {e}")),
        }

        crate::ops::check_ports(host.ns(), &ports, &mut f);
        let checked = host.fw().check(&firewall, &forward_links);
        match checked {
            Ok(drift) => {
                f.about("firewall");
                for d in drift {
                    f.push(d.kind, d.what);
                }
            }
            Err(e) => report.errors.push(format!("firewall: {e}")),
        }
        report.findings = f.into_vec();
        report
    }

    /// Whether any sandbox's redirect is to be compared (embedded DNS serves one).
    fn redirect_wanted(&self) -> bool {
        self.sandboxes.iter().any(|s| s.redirect_port.is_some())
    }
}

/// What `doctor` reads inside each live sandbox, read on one trip into each by a few
/// threads at once (as a start does) rather than sandbox by sandbox with a thread spawned
/// for each: at 1,000 sandboxes that was most of `doctor`.
fn look_into_sandboxes(sandboxes: &[SandboxPlan], dns: bool) -> HashMap<String, Look> {
    let live: Vec<(&String, &Netns)> = sandboxes
        .iter()
        .filter(|s| s.state == Lifecycle::Ready && !s.host_mode && !s.handover)
        .filter_map(|s| s.ns.as_deref().map(|ns| (&s.id, ns)))
        .collect();
    let nss: Vec<&Netns> = live.iter().map(|(_, ns)| *ns).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let looks = Netns::run_in_each(&nss, threads, |_| {
        let mut nl = lnet_kernel::Netlink::new()?;
        Ok::<_, lnet_kernel::KernelError>(Look {
            view: crate::kernel::view_of(&mut nl),
            routes: [IpFamily::V4, IpFamily::V6].map(|f| nl.routes(f)),
            // Without embedded DNS there is no redirect to compare.
            redirect: if dns {
                crate::ops::redirect_rules_here()
            } else {
                Ok(Vec::new())
            },
        })
    });
    live.into_iter()
        .zip(looks)
        .filter_map(|((id, _), look)| Some((id.clone(), look.ok()?.ok()?)))
        .collect()
}

/// Checks each join of `sb` against the dumps in `view`, and reads again with `live` only
/// what they do not show right.
fn check_joins(
    sb: &SandboxPlan,
    view: KernelView<'_>,
    f: &mut Findings,
    report: &mut DoctorReport,
    mut live: impl FnMut(&crate::want::Wanted) -> crate::error::Result<Vec<crate::want::Drift>>,
) {
    for j in &sb.joins {
        report.endpoints += 1;
        f.about(format!("sandbox {} endpoint {}", sb.label, j.name));
        if j.state != JoinState::Joined {
            f.different(format!(
                "join {:?} (interrupted; the next start finishes it)",
                j.state
            ));
            continue;
        }
        let Some(want) = &j.want else { continue };
        if crate::reconcile::drift_in_view(want, view).is_empty() {
            continue;
        }
        match live(want) {
            Ok(drift) => f.drift(&drift),
            Err(e) => report
                .errors
                .push(format!("sandbox {} endpoint {}: {e}", sb.label, j.name)),
        }
    }
}

/// The joins of an engine's sandbox: their host ends (the engine owns what is inside).
fn check_handed_over(
    sb: &SandboxPlan,
    host: &mut HostKernel,
    host_links: &HashMap<String, lnet_kernel::Link>,
    f: &mut Findings,
    report: &mut DoctorReport,
) {
    let none = HashMap::new();
    let view = KernelView {
        host_links,
        sandbox_links: &none,
        sandbox_addrs: &[],
    };
    check_joins(sb, view, f, report, |want| {
        crate::reconcile::drift_live(want, &mut host.nl, None)
    });
}

fn check_sandbox(
    sb: &SandboxPlan,
    host: &mut HostKernel,
    host_links: &HashMap<String, lnet_kernel::Link>,
    look: Option<Look>,
    f: &mut Findings,
    report: &mut DoctorReport,
) {
    f.about(format!("sandbox {}", sb.label));
    report.sandboxes += 1;
    if sb.state != Lifecycle::Ready {
        f.different(format!(
            "record {} (interrupted; the next start finishes it)",
            sb.state
        ));
        return;
    }
    if sb.handover {
        check_handed_over(sb, host, host_links, f, report);
        return;
    }
    for file in ["hosts", "resolv.conf"] {
        if !sb.files_dir.join(file).exists() {
            f.missing(format!("file {}", sb.files_dir.join(file).display()));
        }
    }
    if let Some(want) = &sb.hosts
        && let Ok(have) = std::fs::read_to_string(sb.files_dir.join("hosts"))
        && *want != have
    {
        f.different(format!("file {}", sb.files_dir.join("hosts").display()));
    }
    if sb.host_mode {
        return;
    }
    if sb.owns_netns && !Netns::is_mounted_at(&sb.netns_path) {
        f.missing(format!("network namespace {}", sb.netns_path.display()));
        return;
    }
    if sb.resolver == Some(false) {
        f.missing("resolver on 127.0.0.11");
    }
    let Some(ns) = &sb.ns else {
        f.missing(format!("network namespace {}", sb.netns_path.display()));
        return;
    };
    // Without a look from the shared trip (it failed), each is read the long way.
    let (view, routes, redirect) = match look {
        Some(l) => (Some(l.view), Some(l.routes), Some(l.redirect)),
        None => (None, None, None),
    };
    if let Some(port) = sb.redirect_port {
        let rules = redirect.unwrap_or_else(|| crate::ops::redirect_rules_in(ns));
        if let Some(drift) = crate::ops::redirect_drift(port, rules) {
            f.missing(drift);
        }
    }
    // A socket of doctor's own in the sandbox (the sandbox's own is its changes'), opened
    // only when the shared trip's look does not answer: at a thousand sandboxes a socket
    // each was a third of `doctor`.
    let mut own: Option<Netlink> = None;
    let (sandbox_links, sandbox_addrs) = match view {
        Some(v) => v,
        None => match sandbox_nl(&mut own, ns) {
            Ok(nl) => crate::kernel::view_of(nl),
            Err(e) => {
                report.errors.push(format!("sandbox {}: {e}", sb.label));
                return;
            }
        },
    };
    let view = KernelView {
        host_links,
        sandbox_links: &sandbox_links,
        sandbox_addrs: &sandbox_addrs,
    };
    check_joins(sb, view, f, report, |want| {
        // Not right in the dumps: read again, each link alone.
        sandbox_nl(&mut own, ns)
            .and_then(|nl| crate::reconcile::drift_live(want, &mut host.nl, Some(nl)))
    });
    f.about(format!("sandbox {}", sb.label));
    let mut routes = routes
        .map(|[v4, v6]| [Some(v4), Some(v6)])
        .unwrap_or_default();
    for (i, family, want) in [
        (0, IpFamily::V4, sb.gateways.v4),
        (1, IpFamily::V6, sb.gateways.v6),
    ] {
        // The default route, and its gateway if it has one.
        let fetched = match routes[i].take() {
            Some(r) => r,
            None => match sandbox_nl(&mut own, ns) {
                Ok(nl) => nl.routes(family),
                Err(e) => {
                    report
                        .errors
                        .push(format!("sandbox {}: routes: {e}", sb.label));
                    continue;
                }
            },
        };
        let have: Option<Option<IpAddr>> = match fetched {
            Ok(routes) => routes
                .into_iter()
                .find(|r| r.is_default())
                .map(|r| r.gateway),
            Err(e) => {
                report
                    .errors
                    .push(format!("sandbox {}: routes: {e}", sb.label));
                continue;
            }
        };
        let route = |gw: Option<IpAddr>| match gw {
            Some(h) => format!("default route via {h}"),
            None => "default route without a gateway".to_string(),
        };
        match (want, have) {
            (Some(w), None) => f.missing(format!("default route via {w}")),
            (None, Some(h)) => f.extra(route(h)),
            (Some(w), Some(h)) if h != Some(w) => f.different(format!("{}, not via {w}", route(h))),
            _ => {}
        }
    }
}

/// Doctor's own socket in a sandbox, opened the first time it is needed.
fn sandbox_nl<'a>(own: &'a mut Option<Netlink>, ns: &Netns) -> Result<&'a mut Netlink> {
    if own.is_none() {
        *own = Some(
            Netlink::in_netns(ns).map_err(crate::error::CoreError::kernel(
                "enter the sandbox's namespace",
            ))?,
        );
    }
    Ok(own.as_mut().expect("opened above"))
}

/// What `doctor` reads inside one sandbox.
#[derive(Debug)]
struct Look {
    view: crate::kernel::SandboxView,
    routes: [lnet_kernel::Result<Vec<lnet_kernel::Route>>; 2],
    redirect: lnet_kernel::Result<Vec<lnet_kernel::nft::RuleInfo>>,
}
