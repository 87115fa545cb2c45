//! Join: validate → choose interface names → record the join as `joining` → make the veth
//! pair (peer created directly in the sandbox, named, addressed, up) → move the default
//! route if this endpoint became the gateway endpoint → rewrite hosts → record `joined`.
//! An error undoes every step; a crash after the first write is rolled forward at start (the
//! join is finished from the record, or undone if it cannot be). Endpoint records live on the
//! exec root (see `lnet_store`'s runtime directory), so each write is a rename that survives
//! the process, not a disk flush: the kernel objects they describe do not outlive a reboot
//! either.

use lnet_store::{JoinRecord, JoinState, Lifecycle};

use crate::error::{CoreError, Result};
use crate::options::JoinOptions;
use crate::state::{Cx, State};

impl State {
    pub(crate) fn join(
        &mut self,
        cx: &Cx,
        ep_id: &str,
        sb_id: &str,
        opts: JoinOptions,
    ) -> Result<()> {
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
        if sb.rec.state != Lifecycle::Ready || (sb.kernel.is_none() && !sb.rec.host_mode) {
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
        let (net, mut ep, sb_rec) = (net.clone(), ep.clone(), sb.rec.clone());
        let plan = driver.plan_join(&mut self.host, &net, &ep, &sb_rec)?;
        self.hold_before_join(&ep)?;
        let container_ifname = plan.iface_prefix.map(|prefix| {
            let used = self.used_ifnames(sb_id);
            (0..)
                .map(|i| format!("{prefix}{i}"))
                .find(|n| !used.contains(n))
                .expect("unbounded")
        });
        let order = self
            .joined(sb_id)
            .iter()
            .filter_map(|e| e.join.as_ref().map(|j| j.order))
            .max()
            .map_or(0, |m| m + 1);
        let host_ifname = plan.host_ifname;
        let before = self.gateways_of(cx, sb_id, None);

        let join = JoinRecord {
            sandbox_id: sb_id.to_string(),
            state: JoinState::Joining,
            host_ifname,
            container_ifname,
            priority: opts.priority,
            order,
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

        let res = (|| {
            let State {
                host, sandboxes, ..
            } = &mut *self;
            let entry = sandboxes.get_mut(sb_id).expect("checked above");
            if let Some(k) = entry.kernel.as_mut() {
                driver.join(host, k, &net, &ep, &join, crate::driver::JoinMode::Fresh)?;
            }
            let after = self.gateways_of(cx, sb_id, None);
            self.apply_gateways(sb_id, Some(before), after)?;
            self.write_hosts(cx, sb_id)
        })();
        if lose_record {
            crate::failpoint::crash("join:unrecorded");
        }
        if let Err(e) = res {
            tracing::warn!(endpoint = %ep.name, error = %e, "join failed; undoing");
            self.undo_join(cx, &mut ep, before);
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

    /// Undoes a join that failed part way: removes the interface, restores the gateways and
    /// the hosts file, and clears the join record. Best effort; what fails is logged and left
    /// to start-up recovery, which sees the `joining` record.
    pub(crate) fn undo_join(
        &mut self,
        cx: &Cx,
        ep: &mut lnet_store::EndpointRecord,
        before: super::Gateways,
    ) {
        let Some(join) = ep.join.clone() else { return };
        let (net, driver) = match self
            .network_of(ep)
            .cloned()
            .and_then(|n| cx.driver(&n.driver).map(|d| (n, d)))
        {
            Ok(v) => v,
            Err(_) => return,
        };
        let State {
            host, sandboxes, ..
        } = &mut *self;
        let k = sandboxes
            .get_mut(&join.sandbox_id)
            .and_then(|e| e.kernel.as_mut())
            .map(|k| k as &mut dyn crate::kernel::SandboxOps);
        if let Err(e) = driver.leave(host, k, &net, ep, &join) {
            tracing::error!(endpoint = %ep.name, error = %e, "undoing join: removing the interface failed");
            return;
        }
        // What the failed join changed is unknown: set both families back to `before`.
        if let Err(e) = self.apply_gateways(&join.sandbox_id, None, before) {
            tracing::warn!(endpoint = %ep.name, error = %e, "undoing join: restoring default routes");
        }
        ep.join = None;
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
