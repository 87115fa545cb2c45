//! `lnet doctor`: the records against the kernel, read only. For every ready object it
//! looks at what recovery would make or repair — the bridge and its addresses, each joined
//! endpoint's veth pair, addresses, flags and MAC, each sandbox's namespace, files,
//! default routes and resolver, lnet-shaped interfaces and namespace mounts no record
//! names, and the firewall — and lists what is missing, extra or different.
//!
//! The repair is not here: it is the reconciliation the controller runs at start
//! ([`crate::Controller::repair`] runs it again), so that what `doctor` reports and what a
//! start fixes can never drift apart. Each check names the repair's object in the same
//! words a user would look for (`network web`, `sandbox a`, `firewall`).

use std::collections::HashMap;
use std::net::IpAddr;

use lnet_kernel::{IpFamily, Netns};
use lnet_store::{JoinState, Lifecycle};
use serde::Serialize;

use crate::drift::Findings;
use crate::kernel::KernelView;
use crate::state::{Cx, State};

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

impl State {
    /// The ready networks' records (a copy: checks need the state mutably meanwhile).
    pub(crate) fn ready_networks(&self) -> Vec<lnet_store::NetworkRecord> {
        self.networks
            .values()
            .filter(|n| n.state == Lifecycle::Ready)
            .cloned()
            .collect()
    }

    /// Compares every record with the kernel; changes nothing.
    pub(crate) fn doctor(&mut self, cx: &Cx) -> DoctorReport {
        // Links the background deleter has yet to remove are lnet's work in progress, not
        // drift: let it finish (tens of milliseconds; it needs no lock of ours).
        if let Some(r) = self.host.reaper() {
            r.pending_handle().wait();
        }
        let mut f = Findings::default();
        let mut report = DoctorReport::default();
        for net in &self.ready_networks() {
            f.about(format!("network {}", net.name));
            report.networks += 1;
            let checked = cx.driver(&net.driver).and_then(|d| {
                crate::reconcile::drift_live(&d.want_network(net), &mut self.host.nl, None)
            });
            match checked {
                Ok(drift) => f.drift(&drift),
                Err(e) => report.errors.push(format!("network {}: {e}", net.name)),
            }
        }
        for net in self
            .networks
            .values()
            .filter(|n| n.state != Lifecycle::Ready)
        {
            f.about(format!("network {}", net.name));
            f.different(format!(
                "record {} (interrupted; the next start finishes it)",
                net.state
            ));
        }

        // One dump of the host's links for every join and for the orphans (as a start
        // does): a join that the dumps show right needs no requests of its own.
        let host_links = crate::kernel::host_links(&mut self.host.nl);
        let mut looks = self.look_into_sandboxes();
        let ids: Vec<String> = self.sandboxes.keys().cloned().collect();
        for id in &ids {
            let look = looks.remove(id);
            self.doctor_sandbox(cx, id, &host_links, look, &mut f, &mut report);
        }
        for ep in self.endpoints.all() {
            if ep.state != Lifecycle::Ready {
                f.about(format!("endpoint {}", ep.name));
                f.different(format!(
                    "record {} (interrupted; the next start finishes it)",
                    ep.state
                ));
            }
        }

        let orphans = if host_links.is_empty() {
            self.orphan_links(cx)
        } else {
            let links: Vec<_> = host_links.into_values().collect();
            Ok(self.orphans_among(cx, &links))
        };
        match orphans {
            Ok(orphans) => {
                for o in orphans {
                    f.about(format!("network {}", o.network));
                    f.extra(format!("{} {} (no record names it)", o.noun, o.name));
                }
            }
            Err(e) => report.errors.push(format!("host interfaces: {e}")),
        }
        f.about("host");
        match self.unnamed_sandbox_paths(cx) {
            Ok(paths) => {
                for path in paths {
                    let what = if path.is_dir() {
                        "sandbox file directory"
                    } else if Netns::is_mounted_at(&path) {
                        "network namespace mount"
                    } else {
                        "file"
                    };
                    f.extra(format!("{what} {} (no sandbox names it)", path.display()));
                }
            }
            Err(e) => report.errors.push(format!("sandbox mounts and files: {e}")),
        }

        self.doctor_ports(&mut f);
        match self.firewall_check(cx) {
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

    /// What `doctor` reads inside each live sandbox, read on one trip into each by a few
    /// threads at once (as a start does) rather than sandbox by sandbox with a thread
    /// spawned for each: at 1,000 sandboxes that was most of `doctor`.
    fn look_into_sandboxes(&self) -> HashMap<String, Look> {
        let live: Vec<(&String, _)> = self
            .sandboxes
            .iter()
            .filter(|(_, s)| s.rec.state == Lifecycle::Ready && !s.rec.host_mode)
            .filter_map(|(id, s)| s.kernel().map(|k| (id, k)))
            .collect();
        let nss: Vec<&Netns> = live.iter().map(|(_, k)| &k.ns).collect();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let dns = self.dns.is_some();
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

    fn doctor_sandbox(
        &mut self,
        cx: &Cx,
        id: &str,
        host_links: &HashMap<String, lnet_kernel::Link>,
        look: Option<Look>,
        f: &mut Findings,
        report: &mut DoctorReport,
    ) {
        let Some(rec) = self.sandboxes.get(id).map(|s| s.rec.clone()) else {
            return;
        };
        f.about(format!("sandbox {}", rec.container_id));
        report.sandboxes += 1;
        if rec.state != Lifecycle::Ready {
            f.different(format!(
                "record {} (interrupted; the next start finishes it)",
                rec.state
            ));
            return;
        }
        for file in ["hosts", "resolv.conf"] {
            if !rec.files_dir.join(file).exists() {
                f.missing(format!("file {}", rec.files_dir.join(file).display()));
            }
        }
        if let Ok(want) = self.hosts_text(cx, id)
            && let Ok(have) = std::fs::read_to_string(rec.files_dir.join("hosts"))
            && want != have
        {
            f.different(format!("file {}", rec.files_dir.join("hosts").display()));
        }
        if rec.host_mode {
            return;
        }
        if rec.owns_netns && !Netns::is_mounted_at(&rec.netns_path) {
            f.missing(format!("network namespace {}", rec.netns_path.display()));
            return;
        }
        let joined: Vec<_> = self.joined(id).into_iter().cloned().collect();
        let gateways = self.gateways_of(cx, id, None);
        let wants_resolver = self.dns.is_some() && !self.dns_view(cx, id).is_empty();
        if wants_resolver && !self.dns.as_ref().is_some_and(|d| d.serves(id)) {
            f.missing("resolver on 127.0.0.11");
        }
        // Without a look from the shared trip (it failed), each is read the long way.
        let (view, routes, redirect) = match look {
            Some(l) => (Some(l.view), Some(l.routes), Some(l.redirect)),
            None => (None, None, None),
        };
        let drift = match redirect {
            Some(rules) => self.dns_redirect_drift_in(id, rules),
            None => self.dns_redirect_drift(id),
        };
        if let Some(drift) = drift {
            f.missing(drift);
        }
        let nets: Vec<_> = joined
            .iter()
            .map(|ep| self.networks.get(&ep.network_id).cloned())
            .collect();
        let State {
            host, sandboxes, ..
        } = self;
        let Some(mut k) = sandboxes.get(id).and_then(|s| s.kernel()) else {
            f.missing(format!("network namespace {}", rec.netns_path.display()));
            return;
        };
        let k = &mut *k;
        let (sandbox_links, sandbox_addrs) = view.unwrap_or_else(|| crate::kernel::sandbox_view(k));
        let view = KernelView {
            host_links,
            sandbox_links: &sandbox_links,
            sandbox_addrs: &sandbox_addrs,
        };
        for (ep, net) in joined.iter().zip(nets) {
            let Some(join) = &ep.join else { continue };
            report.endpoints += 1;
            f.about(format!("sandbox {} endpoint {}", rec.container_id, ep.name));
            if join.state != JoinState::Joined {
                f.different(format!(
                    "join {:?} (interrupted; the next start finishes it)",
                    join.state
                ));
                continue;
            }
            let Some(net) = net else { continue };
            let checked = cx.driver(&net.driver).and_then(|d| {
                let want = d.want_join(&net, ep, join);
                if crate::reconcile::drift_in_view(&want, view).is_empty() {
                    return Ok(Vec::new());
                }
                // Not right in the dumps: read again, each link alone.
                crate::reconcile::drift_live(&want, &mut host.nl, Some(&mut k.nl))
            });
            match checked {
                Ok(drift) => f.drift(&drift),
                Err(e) => report.errors.push(format!(
                    "sandbox {} endpoint {}: {e}",
                    rec.container_id, ep.name
                )),
            }
        }
        f.about(format!("sandbox {}", rec.container_id));
        let mut routes = routes
            .map(|[v4, v6]| [Some(v4), Some(v6)])
            .unwrap_or_default();
        for (i, family, want) in [
            (0, IpFamily::V4, gateways.v4),
            (1, IpFamily::V6, gateways.v6),
        ] {
            // The default route, and its gateway if it has one.
            let have: Option<Option<IpAddr>> =
                match routes[i].take().unwrap_or_else(|| k.nl.routes(family)) {
                    Ok(routes) => routes
                        .into_iter()
                        .find(|r| r.is_default())
                        .map(|r| r.gateway),
                    Err(e) => {
                        report
                            .errors
                            .push(format!("sandbox {}: routes: {e}", rec.container_id));
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
                (Some(w), Some(h)) if h != Some(w) => {
                    f.different(format!("{}, not via {w}", route(h)))
                }
                _ => {}
            }
        }
    }
}

/// What `doctor` reads inside one sandbox.
struct Look {
    view: crate::kernel::SandboxView,
    routes: [lnet_kernel::Result<Vec<lnet_kernel::Route>>; 2],
    redirect: lnet_kernel::Result<Vec<lnet_kernel::nft::RuleInfo>>,
}
