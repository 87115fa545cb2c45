//! Leave: validate → record `leaving` → remove the interface (its addresses and routes go
//! with it) → move the default route to the next gateway endpoint → rewrite hosts → clear the
//! join. A crash after the first write is finished at start; a failed step leaves the record
//! `leaving`, and a retried leave (or the next start) finishes it.

use lnet_store::JoinState;

use crate::error::{CoreError, Result};
use crate::ops::Gateways;
use crate::state::{Cx, State};

impl State {
    pub(crate) fn leave(&mut self, cx: &Cx, ep_id: &str, sb_id: Option<&str>) -> Result<()> {
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
        // A retried leave cannot know what the interrupted one already changed (its
        // endpoint no longer counts in gateways_of, so "before" would already look like
        // "after"): set both families from scratch then.
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
        {
            let State {
                host, sandboxes, ..
            } = &mut *self;
            let k = sandboxes.get_mut(&sb).and_then(|e| e.kernel.as_mut());
            driver.leave(
                host,
                k.map(|k| k as &mut dyn crate::kernel::SandboxOps),
                &net,
                &ep,
                &join,
            )?;
        }
        if self
            .sandboxes
            .get(&sb)
            .is_some_and(|e| e.kernel.is_some() || e.rec.host_mode)
        {
            // A default route that moves away from the leaving endpoint to nothing went with
            // its interface already: only a move to another endpoint needs a request.
            let before = before.map(|b| Gateways {
                v4: b.v4.filter(|_| after.v4.is_some()),
                v6: b.v6.filter(|_| after.v6.is_some()),
            });
            self.apply_gateways(&sb, before, after)?;
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
