//! Sandbox delete: record `deleting` → leave and delete every endpoint joined to it (each its
//! own journaled step) → remove the namespace (if lnet made it) and files → delete the record.
//! Teardown keeps going past a failed step and reports every error; the record stays
//! `deleting` until everything is gone, so a retry (or the next start) finishes the job.

use lnet_store::Lifecycle;

use crate::error::{CoreError, Errors, Result};
use crate::state::{Cx, State};

use super::sandbox_create::remove_sandbox_artifacts;

impl State {
    pub(crate) fn delete_sandbox(&mut self, cx: &Cx, id: &str) -> Result<()> {
        let entry = self
            .sandboxes
            .get_mut(id)
            .ok_or_else(|| CoreError::not_found("sandbox", id))?;
        if entry.rec.state != Lifecycle::Deleting {
            let mut rec = entry.rec.clone();
            rec.state = Lifecycle::Deleting;
            cx.store.put(&mut rec)?;
            entry.rec = rec;
        }
        crate::failpoint::hit("sandbox-delete:recorded");
        let mut errors = Errors::default();
        let eps: Vec<String> = self.joined(id).iter().map(|e| e.id.clone()).collect();
        for ep in eps {
            if errors.push(self.leave(cx, &ep, Some(id))).is_some() {
                errors.push(self.delete_endpoint(cx, &ep));
            }
        }
        crate::failpoint::hit("sandbox-delete:endpoints-done");
        errors.into_result()?;
        let entry = self.sandboxes.get_mut(id).expect("checked above");
        // Close our handles into the namespace first, or it would outlive its mount.
        entry.kernel = None;
        let rec = entry.rec.clone();
        self.forget_sandbox_dns(id);
        remove_sandbox_artifacts(&rec)?;
        crate::failpoint::hit("sandbox-delete:kernel-done");
        cx.store.delete(&rec)?;
        self.sandboxes.remove(id);
        tracing::info!(sandbox = %rec.container_id, "sandbox deleted");
        Ok(())
    }
}
