//! Join: validate → choose interface names → record the join as `joining` → make the veth
//! pair (peer created directly in the sandbox, named, addressed, up) → move the default
//! route if this endpoint became the gateway endpoint → rewrite hosts → record `joined`.
//! An error undoes every step; a crash after the first write is rolled forward at start (the
//! join is finished from the record, or undone if it cannot be). Endpoint records live on the
//! exec root (see `lnet_store`'s runtime directory), so each write is a rename that survives
//! the process, not a disk flush: the kernel objects they describe do not outlive a reboot
//! either.
//!
//! In three phases, so that the kernel's part runs without the state lock (the caller holds
//! the endpoint's network's and the sandbox's keys throughout): [`State::join_begin`]
//! validates and journals, [`Joining::kernel`] makes the interface and routes,
//! [`State::join_end`] records the outcome.

use std::sync::{Arc, Mutex};

use lnet_store::{EndpointRecord, JoinRecord, JoinState, Lifecycle, NetworkRecord};

use crate::driver::{Driver, JoinMode, JoinPlan};
use crate::error::{CoreError, Result};
use crate::kernel::{HandoverSide, HostKernel, SandboxKernel, SandboxOps};
use crate::ops::Gateways;
use crate::ops::sandbox_support::set_gateways;
use crate::options::JoinOptions;
use crate::state::{Cx, State};

/// A join between its phases: what was journaled, and what the kernel's part needs.
#[derive(Debug)]
pub(crate) struct Joining {
    driver: Arc<dyn Driver>,
    net: NetworkRecord,
    ep: EndpointRecord,
    join: JoinRecord,
    label: String,
    /// The sandbox's kernel handles (`None`: a host-mode sandbox, nothing to make there).
    kernel: Option<Arc<Mutex<SandboxKernel>>>,
    before: Gateways,
    after: Gateways,
    /// The `join:unrecorded` failpoint dropped the journal write.
    lose_record: bool,
    /// The kernel's part failed and could not take its interface away again: the
    /// `joining` record must stay, for a start to undo it.
    left_behind: std::cell::Cell<bool>,
}

impl Joining {
    /// The kernel's part: the interface, then the default routes. On failure what it made
    /// is taken away again before the error is returned.
    pub(crate) fn kernel(&self, host: &mut HostKernel) -> Result<()> {
        if self.join.handover.is_some() {
            return self.hand_over(host);
        }
        let Some(cell) = &self.kernel else {
            return Ok(());
        };
        let mut k = cell.lock().unwrap_or_else(|p| p.into_inner());
        let made = self
            .driver
            .join(
                host,
                &mut *k,
                &self.net,
                &self.ep,
                &self.join,
                JoinMode::Fresh,
            )
            .and_then(|()| set_gateways(&mut k, &self.label, Some(self.before), self.after));
        if let Err(e) = &made {
            tracing::warn!(endpoint = %self.ep.name, error = %e, "join failed; undoing");
            if let Err(e) = self.driver.leave(
                host,
                Some(&mut *k as &mut dyn SandboxOps),
                &self.net,
                &self.ep,
                &self.join,
            ) {
                tracing::error!(endpoint = %self.ep.name, error = %e, "undoing join: removing the interface failed; the next start removes it");
                self.left_behind.set(true);
            }
            // What the failed join changed is unknown: set both families back to `before`.
            else if let Err(e) = set_gateways(&mut k, &self.label, None, self.before) {
                tracing::warn!(endpoint = %self.ep.name, error = %e, "undoing join: restoring default routes");
            }
        }
        made
    }
}

impl Joining {
    /// Whether the driver's join calls out of lnet ([`crate::Capabilities::calls_out`]).
    pub(crate) fn calls_out(&self) -> bool {
        self.driver.capabilities().calls_out
    }

    /// A join into an engine's sandbox: the pair is made in the host namespace, its peer
    /// left for the engine to take; nothing else (routes, names) is lnet's to set.
    fn hand_over(&self, host: &mut HostKernel) -> Result<()> {
        let mut side = HandoverSide(host.another()?);
        let made = self.driver.join(
            host,
            &mut side,
            &self.net,
            &self.ep,
            &self.join,
            JoinMode::Fresh,
        );
        if let Err(e) = &made {
            tracing::warn!(endpoint = %self.ep.name, error = %e, "join failed; undoing");
            if let Err(e) =
                self.driver
                    .leave(host, Some(&mut side), &self.net, &self.ep, &self.join)
            {
                tracing::error!(endpoint = %self.ep.name, error = %e, "undoing join: removing the interface failed; the next start removes it");
                self.left_behind.set(true);
            }
        }
        made
    }
}

impl State {
    /// Validates, chooses the interface names and journals the join as `joining`.
    pub(crate) fn join_begin(
        &mut self,
        cx: &Cx,
        ep_id: &str,
        sb_id: &str,
        opts: JoinOptions,
        plan: JoinPlan,
    ) -> Result<Joining> {
        let (driver, net, mut ep, sb_rec) = self.join_check(cx, ep_id, sb_id)?;
        let kernel = self.sandboxes.get(sb_id).and_then(|s| s.kernel.clone());
        self.hold_before_join(&ep)?;
        let handover = sb_rec
            .handover
            .then(|| plan.iface_prefix.clone().unwrap_or_else(|| "eth".into()));
        if sb_rec.handover && plan.handover_ifname.is_none() {
            return Err(CoreError::Forbidden(format!(
                "network {} ({} driver) cannot hand an interface over to an engine's sandbox",
                net.name, net.driver
            )));
        }
        let container_ifname = if sb_rec.handover {
            plan.handover_ifname
        } else {
            plan.iface_prefix.map(|prefix| {
                let used = self.used_ifnames(sb_id);
                (0..)
                    .map(|i| format!("{prefix}{i}"))
                    .find(|n| !used.contains(n))
                    .expect("unbounded")
            })
        };
        let order = self
            .joined(sb_id)
            .iter()
            .filter_map(|e| e.join.as_ref().map(|j| j.order))
            .max()
            .map_or(0, |m| m + 1);
        let before = self.gateways_of(cx, sb_id, None);

        let join = JoinRecord {
            sandbox_id: sb_id.to_string(),
            state: JoinState::Joining,
            host_ifname: plan.host_ifname,
            container_ifname,
            priority: opts.priority,
            order,
            handover,
        };
        ep.join = Some(join.clone());
        // The failpoint drops this write as a disk that lies about fsync (or a store restored
        // from an older copy) would: the interface then exists with no record naming it,
        // which the start-up sweep must remove.
        let lose_record = crate::failpoint::armed("join:unrecorded");
        if !lose_record {
            cx.store.put(&mut ep)?;
        }
        self.endpoints.insert(ep.clone());
        crate::failpoint::hit("join:recorded");
        let after = self.gateways_of(cx, sb_id, None);
        Ok(Joining {
            driver,
            net,
            ep,
            join,
            kernel: kernel.filter(|_| sb_rec.lnet_inside()),
            label: sb_rec.container_id,
            before,
            after,
            lose_record,
            left_behind: Default::default(),
        })
    }

    /// Whether endpoint `ep_id` may join sandbox `sb_id` now; its driver, network, record
    /// and the sandbox's record, for the driver to plan the join with (outside the state
    /// lock: a plan may ask the kernel whether a name is free).
    pub(crate) fn join_check(
        &self,
        cx: &Cx,
        ep_id: &str,
        sb_id: &str,
    ) -> Result<(
        Arc<dyn Driver>,
        NetworkRecord,
        EndpointRecord,
        lnet_store::SandboxRecord,
    )> {
        let ep = self
            .endpoints
            .get(ep_id)
            .ok_or_else(|| CoreError::not_found("endpoint", ep_id))?;
        let sb = self
            .sandboxes
            .get(sb_id)
            .ok_or_else(|| CoreError::not_found("sandbox", sb_id))?;
        if let Some(j) = &ep.join {
            return Err(CoreError::InUse(format!(
                "endpoint {} is already joined to sandbox {}; leave it first",
                ep.name,
                self.sandbox_label(&j.sandbox_id)
            )));
        }
        if sb.rec.state != Lifecycle::Ready || (sb.kernel.is_none() && sb.rec.lnet_inside()) {
            return Err(CoreError::Forbidden(format!(
                "sandbox {} is not live (state {}); it takes no joins",
                sb.rec.container_id, sb.rec.state
            )));
        }
        let net = self.network_of(ep)?;
        if net.state != Lifecycle::Ready {
            return Err(CoreError::Forbidden(format!(
                "network {} is not ready (state {})",
                net.name, net.state
            )));
        }
        if let Some(other) = self
            .joined(sb_id)
            .into_iter()
            .find(|e| e.network_id == ep.network_id)
        {
            return Err(CoreError::Forbidden(format!(
                "sandbox {} is already connected to network {} through endpoint {}",
                sb.rec.container_id, net.name, other.name
            )));
        }
        let driver = cx.driver(&net.driver)?;
        Ok((driver, net.clone(), ep.clone(), sb.rec.clone()))
    }

    /// Records how the kernel's part went: `joined`, or — when it failed (and undid itself)
    /// — no join at all.
    pub(crate) fn join_end(&mut self, cx: &Cx, j: Joining, made: Result<()>) -> Result<()> {
        let Joining {
            mut ep,
            join,
            lose_record,
            before,
            left_behind,
            ..
        } = j;
        let sb_id = join.sandbox_id.as_str();
        let kernel_done = made.is_ok();
        let res = made.and_then(|()| self.write_hosts(cx, sb_id));
        if lose_record {
            crate::failpoint::crash("join:unrecorded");
        }
        if let Err(e) = res {
            if kernel_done {
                tracing::warn!(endpoint = %ep.name, error = %e, "join failed; undoing");
                self.undo_join(cx, &mut ep, before);
            } else if left_behind.get() {
                // The interface is still there: its `joining` record stays, in memory and
                // in the store, so nothing is left that no record names.
            } else {
                // The kernel's part undid itself.
                self.forget_join(cx, &mut ep);
            }
            return Err(e);
        }
        crate::failpoint::hit("join:kernel-done");
        if let Some(j) = ep.join.as_mut() {
            j.state = JoinState::Joined;
        }
        if let Err(e) = cx.store.put(&mut ep) {
            // Tell the caller "failed" only with nothing left behind.
            self.undo_join(cx, &mut ep, before);
            return Err(e.into());
        }
        tracing::debug!(endpoint = %ep.name, sandbox = %sb_id, iface = ?join.container_ifname, "joined");
        let net_id = ep.network_id.clone();
        self.endpoints.insert(ep);
        self.dns_after(cx, sb_id, &net_id);
        Ok(())
    }

    /// Undoes a join that got as far as its kernel objects: removes the interface, restores
    /// the gateways and the hosts file, and clears the join record. Best effort; what fails
    /// is logged and left to start-up recovery, which sees the `joining` record.
    pub(crate) fn undo_join(&mut self, cx: &Cx, ep: &mut EndpointRecord, before: Gateways) {
        let Some(join) = ep.join.clone() else { return };
        let (net, driver) = match self
            .network_of(ep)
            .cloned()
            .and_then(|n| cx.driver(&n.driver).map(|d| (n, d)))
        {
            Ok(v) => v,
            Err(_) => return,
        };
        {
            let State {
                host, sandboxes, ..
            } = &mut *self;
            let mut k = sandboxes.get(&join.sandbox_id).and_then(|e| e.kernel());
            let k = k.as_deref_mut().map(|k| k as &mut dyn SandboxOps);
            if let Err(e) = driver.leave(host, k, &net, ep, &join) {
                tracing::error!(endpoint = %ep.name, error = %e, "undoing join: removing the interface failed");
                return;
            }
        }
        // What the failed join changed is unknown: set both families back to `before`.
        if let Err(e) = self.apply_gateways(&join.sandbox_id, None, before) {
            tracing::warn!(endpoint = %ep.name, error = %e, "undoing join: restoring default routes");
        }
        self.forget_join(cx, ep);
    }

    /// The bookkeeping half of an undone join (its kernel objects are gone): clears the
    /// join in memory, rewrites the hosts file, and records the endpoint without it.
    fn forget_join(&mut self, cx: &Cx, ep: &mut EndpointRecord) {
        let Some(join) = ep.join.take() else { return };
        // The interface is gone: the in-memory record follows the kernel before the hosts
        // file is regenerated from it (else the file keeps this endpoint's line). Should the
        // store write below fail, the stored `joining` record is rolled back at start.
        self.endpoints.insert(ep.clone());
        if let Err(e) = self.write_hosts(cx, &join.sandbox_id) {
            tracing::warn!(error = %e, "undoing join: rewriting hosts");
        }
        match cx.store.put(ep) {
            Ok(()) => {
                self.endpoints.insert(ep.clone());
            }
            Err(e) => {
                tracing::error!(endpoint = %ep.name, error = %e, "undoing join: clearing the join record failed; start-up will roll it back")
            }
        }
    }
}
