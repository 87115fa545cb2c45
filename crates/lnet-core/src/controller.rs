//! The controller and the handles callers hold.
//!
//! One owner of mutable state: [`State`] holds every record, the IPAM allocator and the
//! kernel handles, behind one lock; each operation is a method on it in its own file under
//! `ops/` (one file per state transition). Handles ([`Network`], [`Endpoint`], [`Sandbox`]) are
//! ids plus a reference to the controller, so a handle never holds stale data: every call
//! reads the current record.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use lnet_kernel::{Netlink, Netns};
use lnet_store::{EndpointRecord, NetworkRecord, SandboxRecord};

use crate::config::Config;
use crate::driver::Registry;
use crate::error::{CoreError, Result};
use crate::firewall::Firewall;
use crate::forwarding::Forwarding;
use crate::kernel::HostKernel;
use crate::keys;
use crate::options::{EndpointOptions, JoinOptions, NetworkOptions, SandboxOptions};
use crate::recovery::RecoveryReport;
use crate::state::{Cx, Records, SandboxEntry, State, new_ipam, new_ports};

#[derive(Debug)]
pub(crate) struct Inner {
    cx: Cx,
    state: Mutex<State>,
    report: RecoveryReport,
    /// The records as of the last completed change: readers take this and never wait for
    /// the state lock, which a change holds across its kernel calls.
    published: RwLock<Arc<Records>>,
    /// How many times the watcher put something back.
    heals: std::sync::atomic::AtomicU64,
    /// Shared by every change, exclusive for what must see no change in progress (a
    /// repair, which derives memory from the store and the kernel again).
    world: RwLock<()>,
    /// The networks and sandboxes changes are working on.
    keys: crate::keys::Keys,
    /// A change panicked half way: memory is derived again before the next call.
    dirty: std::sync::atomic::AtomicBool,
    /// Taken by the kernel work that makes links ([`Controller::make`]).
    makers: Mutex<()>,
}

/// The network controller: owns the drivers, IPAM, the store and the kernel handles.
#[derive(Debug, Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl Controller {
    /// Opens the store under `config.data_root`, recovers every record (finishing or undoing
    /// interrupted operations, replaying IPAM, repairing kernel objects) and returns the
    /// controller. The network namespace of the calling thread is the controller's host
    /// namespace from then on.
    ///
    /// Fails only when the store cannot be opened (another process holds it, or the disk
    /// refuses) or the host namespace cannot be opened; a damaged record never stops it.
    pub fn new(config: Config) -> Result<Controller> {
        Controller::with_drivers(config, crate::drivers::builtin())
    }

    /// [`Controller::new`] with these drivers instead of the built-in ones: a library user
    /// adds drivers of their own (`drivers::builtin()` plus theirs) as libnetwork allows.
    /// Records of a driver not in `drivers` are set aside at start, as any unknown
    /// driver's are.
    pub fn with_drivers(config: Config, drivers: Registry) -> Result<Controller> {
        for dir in [&config.data_root, &config.exec_root] {
            std::fs::create_dir_all(dir)
                .map_err(CoreError::io(format!("create {}", dir.display())))?;
        }
        let (store, notice) = config.open_store()?;
        let ns = Netns::current().map_err(CoreError::kernel("open the host network namespace"))?;
        let nl = Netlink::new().map_err(CoreError::kernel("open a netlink socket"))?;
        let fw = Firewall::new()?;
        let reaper = if config.background_deletes {
            Some(crate::reaper::Reaper::new(
                Netlink::new().map_err(CoreError::kernel("open a netlink socket"))?,
            ))
        } else {
            None
        };
        let dns = if config.embedded_dns {
            Some(
                lnet_dns::Server::new(2)
                    .map_err(CoreError::io("start the embedded DNS runtime"))?,
            )
        } else {
            None
        };
        let (mut forwarding, mut forwarding_notice) = Forwarding::load(&config.exec_root);
        // Not worth refusing to start over: it is in memory, and only `lnet firewall check`
        // without a daemon reads it back.
        if let Err(e) = forwarding.set_no_drop(config.ip_forward_no_drop) {
            forwarding_notice = Some(e.to_string());
        }
        let host = HostKernel::new(ns, nl, fw, reaper, forwarding);
        let mut state = State::empty(&config, host, dns)?;
        state.reserved.live = true;
        let cx = Cx {
            config,
            store,
            drivers,
        };
        let mut report = state.recover(&cx)?;
        report.notices.extend(forwarding_notice);
        if let Some(n) = notice {
            report.notices.insert(0, n);
        }
        let published = RwLock::new(Arc::new(state.records(&Records::default())));
        let ours = state.host.fw().portid();
        let self_heal = cx.config.self_heal;
        let inner = Arc::new(Inner {
            cx,
            state: Mutex::new(state),
            report,
            published,
            heals: Default::default(),
            world: RwLock::new(()),
            keys: Default::default(),
            dirty: Default::default(),
            makers: Mutex::new(()),
        });
        if self_heal {
            let weak = Arc::downgrade(&inner);
            // The first look at what notifications name is the watcher's own, with a
            // socket of its own: no lock is held across it.
            let mut nl = Netlink::new().map_err(CoreError::kernel("open a netlink socket"))?;
            crate::watcher::spawn(ours, move |suspects| {
                let Some(inner) = weak.upgrade() else {
                    return false;
                };
                if let Some(s) = suspects {
                    Controller { inner }.heal(s, &mut nl);
                }
                true
            })?;
        }
        Ok(Controller { inner })
    }

    /// Puts back what the suspects show was touched, object by object; quiet when nothing
    /// was. The first look holds no lock (see [`crate::heal`]).
    fn heal(&self, s: &crate::watcher::Suspects, nl: &mut Netlink) {
        let started = std::time::Instant::now();
        if s.everything {
            // Notifications were lost: anything may have changed.
            // A driver that cannot be reached is reported, not repaired: a repair cannot
            // bring a plugin back, and would ask it again at every lost notification.
            let report = self.doctor();
            let dirty = !report.errors.is_empty()
                || report.findings.iter().any(|f| f.kind != "unreachable");
            if dirty {
                self.count_heal();
                match self.repair() {
                    Ok(r) => {
                        tracing::warn!(took = ?started.elapsed(), report = ?r, "put back what someone else changed")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "repairing what someone else changed failed")
                    }
                }
            }
            return;
        }
        let targets = crate::heal::find(&self.records(), &self.inner.cx.drivers, nl, s);
        if !targets.is_empty() {
            let mut done = Vec::new();
            for t in &targets {
                // Each object alone, under its own keys: a heal waits for a change to
                // that object, and holds up no other.
                let keys = self.with(|st, _| st.keys_of(t));
                let repaired = self.change(keys, || {
                    let work = self.locked(|st, cx| st.heal_work(cx, t))?;
                    // Read and repaired with no state lock held: a heal holds up only
                    // changes to the object it repairs.
                    match self.make(|h| work.run(h, &self.inner.cx.config)) {
                        Ok(done) => done,
                        Err(e) => {
                            tracing::error!(object = ?t, error = %e, "putting back what someone else changed failed");
                            None
                        }
                    }
                });
                done.extend(repaired);
            }
            if !done.is_empty() {
                self.count_heal();
                tracing::warn!(took = ?started.elapsed(), repaired = ?done, "put back what someone else changed");
            }
        }
        if s.firewall || s.foreign {
            let drifted = self.with(|st, cx| st.firewall_check(cx).map_or(true, |d| !d.is_empty()));
            if drifted {
                self.count_heal();
                match self.heal_firewall() {
                    Ok(drift) => {
                        tracing::warn!(took = ?started.elapsed(), ?drift, "put back lnet's firewall")
                    }
                    Err(e) => tracing::error!(error = %e, "repairing lnet's firewall failed"),
                }
            }
        }
    }

    /// How many times the watcher ([`Config::self_heal`]) found something of lnet's deleted
    /// or changed by someone else and put it back.
    pub fn heals(&self) -> u64 {
        self.inner.heals.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_heal(&self) {
        self.inner
            .heals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Compares lnet's firewall with the records and puts right what differs: the table,
    /// its chains and sets, the elements, lnet's accept rules in other tables. What it
    /// repaired.
    pub(crate) fn heal_firewall(&self) -> Result<Vec<crate::firewall::Drift>> {
        self.change(Vec::new(), || {
            self.locked_mut(|st, cx| {
                let mut drift = st.host.fw().ensure_base()?;
                drift.extend(st.reconcile_firewall(cx)?);
                Ok(drift)
            })
        })
    }

    /// Compares every record with the kernel — bridges, veth pairs, addresses, sandbox
    /// namespaces, files, default routes, resolvers, interfaces no record names, the
    /// firewall — and lists the differences (`lnet doctor`). Changes nothing.
    pub fn doctor(&self) -> crate::DoctorReport {
        // The plan is copied under the state lock; the kernel is read with none held.
        self.with(|st, cx| st.doctor_plan(cx)).look()
    }

    /// `lnet doctor` with no daemon running: opens the store (whose lock must be free),
    /// compares its records with the kernel and changes neither — no recovery runs (a
    /// database file too damaged to open is moved aside, as every open of the store does). There
    /// are no resolvers to check: they live in the daemon. Records the store cannot read
    /// are findings too.
    pub fn doctor_offline(config: Config) -> Result<crate::DoctorReport> {
        let (store, _) = config.open_store()?;
        let loaded = store.load()?;
        let host = HostKernel::new(
            Netns::current().map_err(CoreError::kernel("open the host network namespace"))?,
            Netlink::new().map_err(CoreError::kernel("open a netlink socket"))?,
            Firewall::new()?,
            None,
            // Read-only: what the daemon recorded, with its --ip-forward-no-drop.
            Forwarding::load(&config.exec_root).0,
        );
        let mut state = State::empty(&config, host, None)?;
        for net in loaded.networks {
            state.networks.insert(net.id.clone(), net);
        }
        for ep in loaded.endpoints {
            state.endpoints.insert(ep);
        }
        for rec in loaded.sandboxes {
            let gone = rec.owns_netns && !Netns::is_mounted_at(&rec.netns_path);
            let kernel = if !rec.lnet_inside() || gone {
                None
            } else {
                crate::ops::open_sandbox_kernel(&rec).ok()
            };
            state
                .sandboxes
                .insert(rec.id.clone(), SandboxEntry::new(rec, kernel));
        }
        let cx = Cx {
            config,
            store,
            drivers: crate::drivers::builtin(),
        };
        let mut report = state.doctor_plan(&cx).look();
        for q in loaded.quarantined {
            report.findings.push(crate::Finding {
                kind: "different",
                object: "store".into(),
                what: format!("unreadable {} record {}: {}", q.kind, q.id, q.reason),
            });
        }
        Ok(report)
    }

    /// Runs the start-up reconciliation again, on the running controller (`lnet doctor
    /// --repair`): interrupted operations are finished or undone, every ready object's
    /// kernel side is made again where it differs, sandboxes whose namespace is gone are
    /// removed, the firewall is reconciled. What is already right is left as it is; live
    /// resolvers keep their sockets.
    pub fn repair(&self) -> Result<RecoveryReport> {
        self.exclusive(repair_state)
    }

    /// Compares lnet's firewall — its tables, chains, rules, set elements, and its accept
    /// rules in other tables' forward chains — with what the records call for. Empty when
    /// they agree.
    pub fn firewall_check(&self) -> Result<Vec<crate::firewall::Drift>> {
        self.with(|st, cx| st.firewall_check(cx))
    }

    /// The firewall elements the records call for.
    pub fn firewall_want(&self) -> crate::firewall::Want {
        self.with(|st, cx| st.firewall_want(cx))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in one change must neither wedge every other caller nor let them read
        // what it left half done in memory (a held address, a join with no interface). The
        // store and the kernel are right at every journaled step, so memory is derived from
        // them again — a start in place — before the next call ([`Controller::heal_panic`]).
        // (The daemon aborts on a panic instead and its next start does the same; a library
        // cannot end its host.)
        self.inner.state.lock().unwrap_or_else(|poisoned| {
            self.inner.state.clear_poison();
            self.inner.dirty.store(true, Ordering::SeqCst);
            poisoned.into_inner()
        })
    }

    /// After a panic in a change: derives memory again from the store and the kernel, with
    /// no change in progress. Until it succeeds every call tries again.
    fn heal_panic(&self) {
        if !self.inner.dirty.load(Ordering::SeqCst) {
            return;
        }
        let _world = self.inner.world.write().unwrap_or_else(|p| p.into_inner());
        if !self.inner.dirty.load(Ordering::SeqCst) {
            return;
        }
        tracing::error!(
            "an lnet operation panicked half way: deriving state from the store and the kernel again"
        );
        let mut st = self.lock();
        match repair_state(&mut st, &self.inner.cx) {
            Ok(report) => {
                self.inner.dirty.store(false, Ordering::SeqCst);
                self.publish(&st);
                tracing::info!(repaired = ?report.repaired, "state derived again after a panic");
            }
            Err(e) => tracing::error!(error = %e,
                "cannot derive state again after a panic: tried again at the next call (or drop this controller and open a new one)"),
        }
    }

    /// Reads (or changes only memory) under the state lock, after a panic's repair.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State, &Cx) -> R) -> R {
        self.heal_panic();
        self.locked(f)
    }

    /// Under the state lock, inside a change (no repair here: the change holds the world
    /// shared).
    fn locked<R>(&self, f: impl FnOnce(&mut State, &Cx) -> R) -> R {
        let mut st = self.lock();
        f(&mut st, &self.inner.cx)
    }

    /// [`Controller::locked`], then publishes the records for readers — also when the step
    /// failed part way, so readers never see less than what the store holds.
    fn locked_mut<R>(&self, f: impl FnOnce(&mut State, &Cx) -> R) -> R {
        let mut st = self.lock();
        let r = f(&mut st, &self.inner.cx);
        self.publish(&st);
        r
    }

    /// Runs a change holding `keys` (and the world shared): changes with no key in common
    /// run side by side. A panic inside marks memory for repair before the next call.
    fn change<R>(&self, keys: Vec<String>, f: impl FnOnce() -> R) -> R {
        struct OnPanic<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for OnPanic<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
        }
        self.heal_panic();
        let _world = self.inner.world.read().unwrap_or_else(|p| p.into_inner());
        let _held = self.inner.keys.hold(keys);
        let _mark = OnPanic(&self.inner.dirty);
        f()
    }

    /// Runs a change's kernel work that makes links, without the state lock, on a handle
    /// on the host with a socket of its own. One such at a time: every step of it takes the
    /// kernel's rtnl lock, which serialises it anyway, and on this machine (2 CPUs) four
    /// joins contending for rtnl got 0.50–0.58× the throughput of one, against 0.74–0.79×
    /// in turn (the `concurrency` benchmark as the daemon runs). Removals
    /// ([`Controller::unmake`]) do not wait for it.
    fn make<R>(&self, f: impl FnOnce(&mut HostKernel) -> Result<R>) -> Result<R> {
        let _turn = self.inner.makers.lock().unwrap_or_else(|p| p.into_inner());
        self.unmake(f)
    }

    /// Runs a change's kernel work that removes links, without the state lock, on a handle
    /// on the host with a socket of its own. These run side by side: most of a link's
    /// removal is the kernel waiting out RCU grace periods after it let go of rtnl, and a
    /// connect elsewhere must not queue behind it.
    fn unmake<R>(&self, f: impl FnOnce(&mut HostKernel) -> Result<R>) -> Result<R> {
        self.locked(|st, _| st.host.another())
            .and_then(|mut h| f(&mut h))
    }

    /// Runs `f` with no change in progress and none starting meanwhile.
    fn exclusive<R>(&self, f: impl FnOnce(&mut State, &Cx) -> R) -> R {
        self.heal_panic();
        let _world = self.inner.world.write().unwrap_or_else(|p| p.into_inner());
        self.locked_mut(f)
    }

    /// Publishes `st`'s records for readers ([`Controller::records`]).
    fn publish(&self, st: &State) {
        let snapshot = Arc::new(st.records(&self.records()));
        *self
            .inner
            .published
            .write()
            .unwrap_or_else(|p| p.into_inner()) = snapshot;
    }

    /// Every record as of the last completed change. Never waits for a change in progress
    /// (which may hold the state lock across slow kernel calls): a consistent view for
    /// listings and API reads.
    pub fn records(&self) -> Arc<Records> {
        self.inner
            .published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.cx.config
    }

    /// What the start-up recovery found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// Gets the driver of network `id` ready ([`crate::Driver::prepare`]), before any lock.
    fn prepare_driver_of(&self, id: &str) -> Result<()> {
        let driver = self.with(|st, cx| {
            st.networks
                .get(id)
                .map(|n| n.driver.clone())
                .ok_or_else(|| CoreError::not_found("network", id))
                .and_then(|d| cx.driver(&d))
        })?;
        driver.prepare()
    }

    /// Creates a network.
    pub fn new_network(
        &self,
        driver: &str,
        name: &str,
        mut options: NetworkOptions,
    ) -> Result<Network> {
        self.inner.cx.driver(driver)?.prepare()?;
        let id = match options.id.take() {
            Some(id) => {
                crate::ids::validate_id("NetworkID", &id)?;
                id
            }
            None => crate::ids::new_id(),
        };
        self.change(vec![keys::network(&id)], || {
            // An IPAM plugin is asked for the pools before anything is recorded (there is
            // nothing to record before its answer), holding only this network's key.
            let (options, plugin) = match self.inner.cx.drivers.ipam(&options.ipam.driver)? {
                None => (options, None),
                Some(ipam) => {
                    ipam.prepare()?;
                    let (_, opts) = self.locked(|st, cx| {
                        st.network_create_check(cx, &id, (driver, name), options)
                    })?;
                    if crate::ipam::is_builtin(&opts.ipam.driver) {
                        // The driver takes no IPAM (`null`).
                        (opts, None)
                    } else {
                        let granted = crate::ipam_driver::allocate_network(
                            ipam.as_ref(),
                            false,
                            &opts.ipam,
                            opts.enable_ipv6,
                        )?;
                        (opts, Some((ipam, granted)))
                    }
                }
            };
            let granted = plugin.as_ref().map(|(_, g)| g.clone());
            let c = match self
                .locked(|st, cx| st.network_create_begin(cx, &id, (driver, name), options, granted))
            {
                Ok(c) => c,
                Err(e) => {
                    if let Some((ipam, granted)) = &plugin
                        && let Err(r) = crate::ipam_driver::release_pools(ipam.as_ref(), granted)
                    {
                        tracing::warn!(network = %name, error = %r, "giving back the pools of a network not created");
                    }
                    return Err(e);
                }
            };
            // The bridge, its addresses, sysctls and firewall are made holding only this
            // network's key; a driver that calls out waits on its plugin, not in the
            // queue of link makers.
            let made = if c.calls_out() {
                self.unmake(|h| c.kernel(h, &self.inner.cx.config))
            } else {
                self.make(|h| c.kernel(h, &self.inner.cx.config))
            };
            let res = self.locked_mut(|st, cx| st.network_create_end(cx, c, made));
            if res.is_err() && plugin.is_some() {
                // Undone as far as `deleting`: the pools go back, then the record.
                if let Err(e) = self.delete_network_phases(&id) {
                    tracing::warn!(network = %name, error = %e, "finishing the undo of a network create; the next delete or start finishes it");
                }
            }
            res
        })?;
        Ok(Network {
            ctrl: self.clone(),
            id,
            name: name.to_string(),
        })
    }

    /// A network delete's phases, holding the network's key: journaled `deleting`, the
    /// kernel objects (and an IPAM plugin's pools) let go without the state lock, the
    /// record gone.
    fn delete_network_phases(&self, id: &str) -> Result<()> {
        let d = self.locked(|st, cx| st.network_delete_begin(cx, id))?;
        let done = self.unmake(|h| d.kernel(h));
        self.locked_mut(|st, cx| st.network_delete_end(cx, d, done))
    }

    /// Holds a pool for a network about to be created with
    /// [`NetworkOptions::held_pools`] (an engine asks its IPAM for the pool first): `subnet`
    /// (and `ip_range` in it), or the next free default pool of the family. Held in memory
    /// only, until a network takes it, [`Controller::release_pool`] lets it go, or the
    /// daemon ends.
    pub fn hold_pool(
        &self,
        subnet: Option<ipnet::IpNet>,
        ip_range: Option<ipnet::IpNet>,
        v6: bool,
    ) -> Result<ipnet::IpNet> {
        self.change(Vec::new(), || {
            self.locked_mut(|st, cx| {
                let exclude = st.host_prefixes(cx, None);
                st.ipam.hold_pool(subnet, ip_range, v6, &exclude)
            })
        })
    }

    /// Lets go of a held pool; whether one was held. A network's pool is not touched.
    pub fn release_pool(&self, pool: ipnet::IpNet) -> bool {
        self.change(Vec::new(), || {
            self.locked_mut(|st, _| st.ipam.release_pool_hold(pool.trunc()))
        })
    }

    /// Every network, by name.
    pub fn networks(&self) -> Vec<Network> {
        let mut v: Vec<Network> = self.with(|st, _| {
            st.networks
                .values()
                .filter(|n| n.state == lnet_store::Lifecycle::Ready)
                .map(|n| Network {
                    ctrl: self.clone(),
                    id: n.id.clone(),
                    name: n.name.clone(),
                })
                .collect()
        });
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// A network by exact name, full id or unique id prefix.
    pub fn network(&self, id_or_name: &str) -> Result<Network> {
        self.with(|st, _| {
            st.find_network(id_or_name)
                .map(|n| (n.id.clone(), n.name.clone()))
        })
        .map(|(id, name)| Network {
            ctrl: self.clone(),
            id,
            name,
        })
    }

    /// Creates a sandbox for a container.
    pub fn new_sandbox(&self, container_id: &str, options: SandboxOptions) -> Result<Sandbox> {
        let id = crate::ids::new_id();
        self.change(vec![keys::sandbox(&id)], || {
            let rec =
                self.locked(|st, cx| st.sandbox_create_begin(cx, &id, container_id, options))?;
            // The namespace and files are made holding only this sandbox's key.
            let made = {
                // A new namespace is made under the kernel's rtnl too: one at a time, as
                // links are ([`Controller::make`]).
                let _turn = self.inner.makers.lock().unwrap_or_else(|p| p.into_inner());
                crate::ops::make_sandbox(&self.inner.cx, &rec)
            };
            self.locked_mut(|st, cx| st.sandbox_create_end(cx, rec, made))
        })?;
        Ok(Sandbox {
            ctrl: self.clone(),
            id,
            container_id: container_id.to_string(),
        })
    }

    /// Every sandbox.
    pub fn sandboxes(&self) -> Vec<Sandbox> {
        self.with(|st, _| {
            st.sandboxes
                .values()
                .map(|s| Sandbox {
                    ctrl: self.clone(),
                    id: s.rec.id.clone(),
                    container_id: s.rec.container_id.clone(),
                })
                .collect()
        })
    }

    /// A sandbox by id, unique id prefix or container id.
    pub fn sandbox(&self, id_or_container: &str) -> Result<Sandbox> {
        self.with(|st, _| {
            st.find_sandbox(id_or_container)
                .map(|s| (s.rec.id.clone(), s.rec.container_id.clone()))
        })
        .map(|(id, container_id)| Sandbox {
            ctrl: self.clone(),
            id,
            container_id,
        })
    }

    /// An endpoint by id.
    pub fn endpoint(&self, id: &str) -> Result<Endpoint> {
        self.with(|st, _| {
            st.endpoints
                .get(id)
                .map(|e| Endpoint {
                    ctrl: self.clone(),
                    id: e.id.clone(),
                    name: e.name.clone(),
                })
                .ok_or_else(|| CoreError::not_found("endpoint", id))
        })
    }

    /// The host ports held right now, as `(host address, protocol, port, holder)` (for
    /// diagnostics and tests).
    pub fn port_bindings(&self) -> Vec<(IpAddr, lnet_store::Proto, u16, String)> {
        self.with(|st, _| {
            st.ports
                .bindings()
                .map(|(ip, proto, port, who)| (ip, proto, port, who.to_string()))
                .collect()
        })
    }

    /// Waits until links being deleted in the background are gone (with
    /// [`Config::background_deletes`]; returns at once otherwise).
    pub fn settle(&self) {
        // The reaper is taken out of the lock's reach only by reference: waiting must not
        // hold the state lock, or the reaper could never be fed again meanwhile.
        let pending = self.with(|st, _| st.host.reaper().map(|r| r.pending_handle()));
        if let Some(p) = pending {
            p.wait();
        }
    }

    /// The pools IPAM holds right now (for diagnostics and tests).
    pub fn allocated_pools(&self) -> Vec<ipnet::IpNet> {
        self.with(|st, _| st.ipam.allocated_pools())
    }
}

/// A network handle.
#[derive(Debug, Clone)]
pub struct Network {
    ctrl: Controller,
    id: String,
    name: String,
}

impl Network {
    /// The id (64 hex).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current record.
    pub fn info(&self) -> Result<NetworkRecord> {
        self.ctrl.with(|st, _| {
            st.networks
                .get(&self.id)
                .cloned()
                .ok_or_else(|| CoreError::not_found("network", &self.name))
        })
    }

    /// Creates an endpoint on this network.
    pub fn create_endpoint(&self, name: &str, options: EndpointOptions) -> Result<Endpoint> {
        self.ctrl.prepare_driver_of(&self.id)?;
        let id = self.ctrl.change(vec![keys::network(&self.id)], || {
            let c = &self.ctrl;
            // An IPAM plugin is asked for the addresses first, holding only this network's
            // key; they go back if the endpoint is not made.
            let (net, ipam) = c.with(|st, cx| {
                let net = st
                    .networks
                    .get(&self.id)
                    .cloned()
                    .ok_or_else(|| CoreError::not_found("network", &self.name))?;
                cx.ipam_of(&net).map(|ipam| (net, ipam))
            })?;
            let granted = match &ipam {
                Some(ipam) => Some(crate::ipam_driver::allocate_endpoint(
                    ipam.as_ref(),
                    &net,
                    (options.ipv4, options.ipv6),
                    options.mac.as_deref(),
                )?),
                None => None,
            };
            let give_back = |why: &str| {
                if let (Some(ipam), Some((v4, v6))) = (&ipam, &granted)
                    && let Err(e) = crate::ipam_driver::release_endpoint(
                        ipam.as_ref(),
                        &net,
                        v4.iter().chain(v6.iter()),
                    )
                {
                    tracing::warn!(endpoint = %name, error = %e, "{why}");
                }
            };
            let res = match c
                .locked_mut(|st, cx| st.create_endpoint(cx, &self.id, name, options, granted))
            {
                Ok(crate::ops::Created::Done(id)) => Ok(id),
                Err(e) => Err(e),
                Ok(crate::ops::Created::Ask(asking)) => {
                    let (driver, net, rec) = *asking;
                    // Asked holding only this network's key.
                    let made = driver.create_endpoint(&net, &rec);
                    let res =
                        c.locked_mut(|st, cx| st.create_endpoint_end(cx, &net, rec.clone(), made));
                    if res.is_err() {
                        // Refused, unanswered or not recorded: whatever the driver may have
                        // made of it is let go.
                        if let Err(e) = driver.delete_endpoint(&net, &rec) {
                            tracing::warn!(endpoint = %rec.name, error = %e, "telling the driver an endpoint was not created");
                        }
                    }
                    res
                }
            };
            if res.is_err() {
                give_back("giving back the addresses of an endpoint not created");
            }
            res
        })?;
        Ok(Endpoint {
            ctrl: self.ctrl.clone(),
            id,
            name: name.to_string(),
        })
    }

    /// Holds an address for an endpoint about to be created with
    /// [`EndpointOptions::held`]: the one preferred, or the next free one, of the IPv4 or
    /// IPv6 pools. Held in memory only, until the endpoint takes it,
    /// [`Network::release_address`] lets it go, or the daemon ends.
    pub fn hold_address(&self, preferred: Option<IpAddr>, v6: bool) -> Result<ipnet::IpNet> {
        self.ctrl.change(vec![keys::network(&self.id)], || {
            self.ctrl
                .locked_mut(|st, _| st.hold_address(&self.id, preferred, v6))
        })
    }

    /// Lets go of a held address. An address an endpoint has, or the gateway, is kept.
    pub fn release_address(&self, ip: IpAddr) -> Result<()> {
        self.ctrl.change(vec![keys::network(&self.id)], || {
            self.ctrl.locked_mut(|st, _| {
                let net = st
                    .networks
                    .get(&self.id)
                    .cloned()
                    .ok_or_else(|| CoreError::not_found("network", &self.name))?;
                st.release_hold(&net, ip);
                Ok(())
            })
        })
    }

    /// The endpoints of this network.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.ctrl.with(|st, _| {
            st.endpoints
                .in_network(&self.id)
                .map(|e| Endpoint {
                    ctrl: self.ctrl.clone(),
                    id: e.id.clone(),
                    name: e.name.clone(),
                })
                .collect()
        })
    }

    /// An endpoint of this network by name.
    pub fn endpoint_by_name(&self, name: &str) -> Result<Endpoint> {
        self.ctrl.with(|st, _| {
            st.endpoints
                .by_name(&self.id, name)
                .map(|e| Endpoint {
                    ctrl: self.ctrl.clone(),
                    id: e.id.clone(),
                    name: e.name.clone(),
                })
                .ok_or_else(|| CoreError::not_found("endpoint", name))
        })
    }

    /// Deletes the network; it must have no endpoints.
    pub fn delete(&self) -> Result<()> {
        self.ctrl.change(vec![keys::network(&self.id)], || {
            self.ctrl.delete_network_phases(&self.id)
        })
    }
}

/// A join handed over to an engine: the interface it takes, and the gateways to give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The interface's name in the host namespace until the engine moves it.
    pub src_name: String,
    /// The prefix of its name in the sandbox (`eth`).
    pub dst_prefix: String,
    /// The IPv4 gateway, if the network gives one.
    pub gateway_v4: Option<IpAddr>,
    /// The IPv6 gateway, if the network gives one.
    pub gateway_v6: Option<IpAddr>,
    /// The sandbox joined.
    pub sandbox_id: String,
}

/// An endpoint handle.
#[derive(Debug, Clone)]
pub struct Endpoint {
    ctrl: Controller,
    id: String,
    name: String,
}

impl Endpoint {
    /// The keys a change to this endpoint holds: its network's, and `sandbox`'s.
    fn keys(&self, sandbox: Option<&str>) -> Vec<String> {
        let net = self.ctrl.with(|st, _| {
            st.endpoints
                .get(&self.id)
                .map(|e| keys::network(&e.network_id))
        });
        net.into_iter().chain(sandbox.map(keys::sandbox)).collect()
    }

    /// The id (64 hex).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current record.
    pub fn info(&self) -> Result<EndpointRecord> {
        self.ctrl.with(|st, _| {
            st.endpoints
                .get(&self.id)
                .cloned()
                .ok_or_else(|| CoreError::not_found("endpoint", &self.name))
        })
    }

    /// Joins the endpoint to a sandbox: its interface appears there, configured.
    pub fn join(&self, sandbox: &Sandbox, options: JoinOptions) -> Result<()> {
        let network = self.ctrl.with(|st, _| {
            st.endpoints
                .get(&self.id)
                .map(|e| e.network_id.clone())
                .ok_or_else(|| CoreError::not_found("endpoint", &self.name))
        })?;
        self.ctrl.prepare_driver_of(&network)?;
        self.ctrl.change(self.keys(Some(&sandbox.id)), || {
            let c = &self.ctrl;
            // The driver's plan may ask the kernel whether a name is free: without the
            // state lock too (the keys hold the endpoint and the sandbox meanwhile).
            let (driver, net, ep, sb) =
                c.locked(|st, cx| st.join_check(cx, &self.id, &sandbox.id))?;
            let plan = c.unmake(|h| driver.plan_join(h, &net, &ep, &sb))?;
            let j = c.locked(|st, cx| st.join_begin(cx, &self.id, &sandbox.id, options, plan))?;
            // The interface and routes are made holding only this endpoint's network's
            // and the sandbox's keys: changes elsewhere go on meanwhile.
            // A driver that calls out waits on its plugin: not in the queue of link makers.
            let made = if j.calls_out() {
                c.unmake(|h| j.kernel(h))
            } else {
                c.make(|h| j.kernel(h))
            };
            c.locked_mut(|st, cx| st.join_end(cx, j, made))
        })
    }

    /// Leaves the sandbox: undoes exactly what join did.
    pub fn leave(&self, sandbox: &Sandbox) -> Result<()> {
        self.ctrl.change(self.keys(Some(&sandbox.id)), || {
            let c = &self.ctrl;
            let l = c.locked(|st, cx| st.leave_begin(cx, &self.id, Some(&sandbox.id)))?;
            let done = c.unmake(|h| l.kernel(h));
            c.locked_mut(|st, cx| st.leave_end(cx, l, done))
        })
    }

    /// Deletes the endpoint; it must not be joined.
    pub fn delete(&self) -> Result<()> {
        self.delete_with(false)
    }

    /// Deletes the endpoint, keeping its addresses as holds until
    /// [`Network::release_address`] lets each go: an engine gives an address back after it
    /// deleted the endpoint (dockerd's IPAM calls come after its driver calls), and none
    /// may have it meanwhile.
    pub fn delete_holding_addresses(&self) -> Result<()> {
        self.delete_with(true)
    }

    fn delete_with(&self, hold: bool) -> Result<()> {
        self.ctrl.change(self.keys(None), || {
            let c = &self.ctrl;
            match c.locked_mut(|st, cx| st.delete_endpoint_begin(cx, &self.id, hold))? {
                None => Ok(()),
                Some((driver, net, rec)) => {
                    // Asked holding only this endpoint's keys; the record says `deleting`
                    // meanwhile, so a crash is finished at the next start.
                    let told = crate::ops::tell_endpoint_gone(
                        &self.ctrl.inner.cx,
                        &driver,
                        &net,
                        &rec,
                        !hold,
                    );
                    c.locked_mut(|st, cx| st.delete_endpoint_end(cx, &net, &rec, told, hold))
                }
            }
        })
    }

    /// What an engine needs to take over this endpoint's interface after a join into its
    /// sandbox ([`crate::SandboxOptions::handover`]); `None` when the join is not handed over.
    pub fn handover(&self) -> Result<Option<Handover>> {
        self.ctrl.with(|st, cx| {
            let ep = st
                .endpoints
                .get(&self.id)
                .ok_or_else(|| CoreError::not_found("endpoint", &self.name))?;
            let Some(join) = &ep.join else {
                return Ok(None);
            };
            let (Some(prefix), Some(src)) = (&join.handover, &join.container_ifname) else {
                return Ok(None);
            };
            let net = st.network_of(ep)?;
            // An internal network leads nowhere: it gives the sandbox no default route.
            let (v4, v6) = if net.internal {
                (None, None)
            } else {
                cx.driver(&net.driver)?.facts(net).gateways
            };
            Ok(Some(Handover {
                src_name: src.clone(),
                dst_prefix: prefix.clone(),
                gateway_v4: v4,
                gateway_v6: v6,
                sandbox_id: join.sandbox_id.clone(),
            }))
        })
    }

    /// Driver facts about the endpoint (MAC, interface names, addresses), as libnetwork's
    /// `DriverInfo`.
    pub fn driver_info(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        let (driver, net, ep) = self.ctrl.with(|st, cx| {
            let ep = st
                .endpoints
                .get(&self.id)
                .ok_or_else(|| CoreError::not_found("endpoint", &self.name))?;
            let net = st.network_of(ep)?;
            Ok::<_, CoreError>((cx.driver(&net.driver)?, net.clone(), ep.clone()))
        })?;
        // Asked without the state lock: a plugin's answer may take its time.
        let mut m = driver.endpoint_info(&net, &ep);
        {
            let ep = &ep;
            if let Some(a) = ep.addr_v4 {
                m.insert("ipv4_address".into(), a.to_string().into());
            }
            if let Some(a) = ep.addr_v6 {
                m.insert("ipv6_address".into(), a.to_string().into());
            }
            if let Some(j) = &ep.join {
                if let Some(c) = &j.container_ifname {
                    m.insert("container_interface".into(), c.clone().into());
                }
                m.insert("sandbox_id".into(), j.sandbox_id.clone().into());
            }
        }
        Ok(m)
    }
}

/// A sandbox handle.
#[derive(Debug, Clone)]
pub struct Sandbox {
    ctrl: Controller,
    id: String,
    container_id: String,
}

impl Sandbox {
    /// The keys a change to this sandbox holds: its own and its endpoints' networks'.
    fn keys(&self) -> Vec<String> {
        // No repair here: it is asked again inside the change.
        let mut keys: Vec<String> = self.ctrl.locked(|st, _| {
            st.joined(&self.id)
                .iter()
                .map(|e| keys::network(&e.network_id))
                .collect()
        });
        keys.sort();
        keys.dedup();
        keys.push(keys::sandbox(&self.id));
        keys
    }

    /// [`Sandbox::delete`], holding its keys: each step journaled under the state lock,
    /// the kernel's parts without it.
    fn delete_held(&self) -> Result<()> {
        let c = &self.ctrl;
        let eps = c.locked(|st, cx| st.sandbox_delete_begin(cx, &self.id))?;
        let mut errors = crate::error::Errors::default();
        for ep in eps {
            let left = c
                .locked(|st, cx| st.leave_begin(cx, &ep, Some(&self.id)))
                .and_then(|l| {
                    let done = c.unmake(|h| l.kernel(h));
                    c.locked_mut(|st, cx| st.leave_end(cx, l, done))
                });
            if errors.push(left).is_some() {
                // In two steps when its driver calls out: the driver is told without the
                // state lock, the record saying `deleting` meanwhile.
                let deleted = c
                    .locked_mut(|st, cx| st.delete_endpoint_begin(cx, &ep, false))
                    .and_then(|telling| match telling {
                        None => Ok(()),
                        Some((driver, net, rec)) => {
                            let told = driver.delete_endpoint(&net, &rec);
                            c.locked_mut(|st, cx| {
                                st.delete_endpoint_end(cx, &net, &rec, told, false)
                            })
                        }
                    });
                errors.push(deleted);
            }
        }
        crate::failpoint::hit("sandbox-delete:endpoints-done");
        errors.into_result()?;
        let rec = c.locked_mut(|st, _| st.sandbox_delete_release(&self.id))?;
        let removed = crate::ops::remove_sandbox_artifacts(&rec);
        c.locked_mut(|st, cx| st.sandbox_delete_end(cx, rec, removed))
    }

    /// The id (64 hex).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container it serves.
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// The network namespace path (libnetwork's sandbox key).
    pub fn key(&self) -> Result<PathBuf> {
        self.info().map(|r| r.netns_path)
    }

    /// The current record.
    pub fn info(&self) -> Result<SandboxRecord> {
        self.ctrl.with(|st, _| {
            st.sandboxes
                .get(&self.id)
                .map(|s| s.rec.clone())
                .ok_or_else(|| CoreError::not_found("sandbox", &self.container_id))
        })
    }

    /// The `hosts` file this sandbox owns.
    pub fn hosts_path(&self) -> Result<PathBuf> {
        self.info().map(|r| r.files_dir.join("hosts"))
    }

    /// The `resolv.conf` this sandbox owns.
    pub fn resolv_conf_path(&self) -> Result<PathBuf> {
        self.info().map(|r| r.files_dir.join("resolv.conf"))
    }

    /// The endpoints joined to this sandbox, in join order.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.ctrl.with(|st, _| {
            st.joined(&self.id)
                .into_iter()
                .map(|e| Endpoint {
                    ctrl: self.ctrl.clone(),
                    id: e.id.clone(),
                    name: e.name.clone(),
                })
                .collect()
        })
    }

    /// Renames the sandbox (Docker's container rename): its name resolves, and its old
    /// name no longer does, on every network it is on.
    pub fn rename(&mut self, name: &str) -> Result<()> {
        self.ctrl.change(vec![keys::sandbox(&self.id)], || {
            self.ctrl
                .locked_mut(|st, cx| st.rename_sandbox(cx, &self.id, name))
        })?;
        self.container_id = name.to_string();
        Ok(())
    }

    /// Deletes the sandbox: leaves and deletes its endpoints, removes its namespace (if lnet
    /// made it) and its files.
    pub fn delete(&self) -> Result<()> {
        loop {
            // Its networks' keys too (its endpoints leave them): read, held, then checked
            // again — a join may have come in between.
            let keys = self.keys();
            let done = self.ctrl.change(keys.clone(), || {
                (self.keys() == keys).then(|| self.delete_held())
            });
            if let Some(done) = done {
                return done;
            }
        }
    }
}

/// Lets memory go and derives it again from the store and the kernel, as a start does
/// ([`Controller::repair`]; also what the first caller after a panic runs).
fn repair_state(st: &mut State, cx: &Cx) -> Result<RecoveryReport> {
    // The store must be readable before memory is let go: recovery refills it from
    // there, and a failure half way must not leave a running daemon knowing nothing.
    cx.store.load()?;
    // A namespace whose mount someone removed still lives while lnet holds it open:
    // mount it again before those handles are let go (a start, holding none, can
    // only find it gone).
    let mut remounted = Vec::new();
    for entry in st.sandboxes.values() {
        let (rec, Some(k)) = (&entry.rec, entry.kernel()) else {
            continue;
        };
        if rec.owns_netns && !Netns::is_mounted_at(&rec.netns_path) {
            match k.ns.bind_at(&rec.netns_path) {
                Ok(()) => remounted.push(format!(
                    "sandbox {}: namespace mount {}",
                    rec.container_id,
                    rec.netns_path.display()
                )),
                Err(e) => {
                    tracing::warn!(sandbox = %rec.container_id, error = %e, "cannot mount the namespace again")
                }
            }
        }
    }
    st.networks.clear();
    st.endpoints = Default::default();
    st.sandboxes.clear();
    st.ipam = new_ipam(&cx.config)?;
    st.ports = new_ports()?;
    // The sockets are kept across the replay (a port let go even for a moment could be
    // taken); those no record names any more are let go after it.
    let mut report = st.recover(cx)?;
    let recorded: std::collections::HashSet<_> = st
        .endpoints
        .all()
        .flat_map(|e| e.ports.iter().map(|p| (p.host_ip, p.proto, p.host_port)))
        .collect();
    st.reserved.retain(|b| recorded.contains(b));
    report.repaired.splice(0..0, remounted);
    st.forget_gone_sandbox_dns();
    Ok(report)
}
