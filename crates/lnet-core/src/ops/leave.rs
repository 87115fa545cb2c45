//! Leave: validate → record `leaving` → remove the interface (its addresses and routes go
//! with it) → move the default route to the next gateway endpoint → rewrite hosts → clear the
//! join. A crash after the first write is finished at start; a failed step leaves the record
//! `leaving`, and a retried leave (or the next start) finishes it.
//!
//! In three phases, as a join ([`super::join`]): [`State::leave_begin`] journals,
//! [`Leaving::kernel`] removes the interface and moves the routes without the state lock,
//! [`State::leave_end`] records the outcome.

use std::sync::{Arc, Mutex};

use lnet_store::{EndpointRecord, JoinRecord, JoinState, NetworkRecord};

use crate::driver::Driver;
use crate::error::{CoreError, Result};
use crate::kernel::{HostKernel, SandboxKernel, SandboxOps};
use crate::ops::Gateways;
use crate::ops::sandbox_support::set_gateways;
use crate::state::{Cx, State};

/// A leave between its phases.
#[derive(Debug)]
pub(crate) struct Leaving {
    driver: Arc<dyn Driver>,
    net: NetworkRecord,
    ep: EndpointRecord,
    join: JoinRecord,
    label: String,
    kernel: Option<Arc<Mutex<SandboxKernel>>>,
    /// The sandbox is there (live, or sharing the host's namespace): its routes and hosts
    /// file follow the leave.
    present: bool,
    before: Option<Gateways>,
    after: Gateways,
}

impl Leaving {
    /// The kernel's part: the interface goes, the default routes move to what is left.
    pub(crate) fn kernel(&self, host: &mut HostKernel) -> Result<()> {
        let mut k = self
            .kernel
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()));
        self.driver.leave(
            host,
            k.as_deref_mut().map(|k| k as &mut dyn SandboxOps),
            &self.net,
            &self.ep,
            &self.join,
        )?;
        if let Some(k) = k.as_deref_mut() {
            let before = self.before.map(|b| Gateways {
                v4: b.v4.filter(|_| self.after.v4.is_some()),
                v6: b.v6.filter(|_| self.after.v6.is_some()),
            });
            set_gateways(k, &self.label, before, self.after)?;
        }
        Ok(())
    }
}

impl State {
    /// Validates and journals the leave as `leaving`.
    pub(crate) fn leave_begin(
        &mut self,
        cx: &Cx,
        ep_id: &str,
        sb_id: Option<&str>,
    ) -> Result<Leaving> {
        let ep = self
            .endpoints
            .get(ep_id)
            .ok_or_else(|| CoreError::not_found("endpoint", ep_id))?;
        let Some(join) = ep.join.clone() else {
            return Err(CoreError::Forbidden(format!(
                "endpoint {} is not joined to any sandbox",
                ep.name
            )));
        };
        if let Some(sb) = sb_id
            && sb != join.sandbox_id
        {
            return Err(CoreError::Forbidden(format!(
                "endpoint {} is joined to sandbox {}, not to {}",
                ep.name,
                self.sandbox_label(&join.sandbox_id),
                self.sandbox_label(sb)
            )));
        }
        let net = self.network_of(ep)?.clone();
        let driver = cx.driver(&net.driver)?;
        let mut ep = ep.clone();
        let sb = join.sandbox_id.clone();
        let before = (join.state != JoinState::Leaving).then(|| self.gateways_of(cx, &sb, None));
        if join.state != JoinState::Leaving {
            if let Some(j) = ep.join.as_mut() {
                j.state = JoinState::Leaving;
            }
            cx.store.put(&mut ep)?;
            self.endpoints.insert(ep.clone());
        }
        crate::failpoint::hit("leave:recorded");
        let after = self.gateways_of(cx, &sb, Some(ep_id));
        let entry = self.sandboxes.get(&sb);
        Ok(Leaving {
            driver,
            net,
            ep,
            join,
            label: self.sandbox_label(&sb),
            kernel: entry.and_then(|e| e.kernel.clone()),
            present: entry.is_some_and(|e| e.kernel.is_some() || !e.rec.lnet_inside()),
            before,
            after,
        })
    }

    /// Records the leave once the kernel's part is done; a failed one stays `leaving`.
    pub(crate) fn leave_end(&mut self, cx: &Cx, l: Leaving, done: Result<()>) -> Result<()> {
        done?;
        let Leaving {
            mut ep,
            join,
            present,
            ..
        } = l;
        let sb = join.sandbox_id;
        if present {
            self.write_hosts(cx, &sb)?;
        }
        crate::failpoint::hit("leave:kernel-done");
        ep.join = None;
        cx.store.put(&mut ep)?;
        tracing::debug!(endpoint = %ep.name, sandbox = %sb, "left");
        let net_id = ep.network_id.clone();
        self.endpoints.insert(ep);
        self.dns_after(cx, &sb, &net_id);
        Ok(())
    }
}
