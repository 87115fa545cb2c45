//! Sandbox delete: record `deleting` → leave and delete every endpoint joined to it (each its
//! own journaled step) → remove the namespace (if lnet made it) and files → delete the record.
//! Teardown keeps going past a failed step and reports every error; the record stays
//! `deleting` until everything is gone, so a retry (or the next start) finishes the job.
//!
//! The controller runs the steps holding the sandbox's key and its networks': each leave's
//! kernel part and the namespace's removal run without the state lock
//! ([`crate::Controller`]'s `Sandbox::delete`).

use lnet_store::{Lifecycle, SandboxRecord};

use crate::error::{CoreError, Result};
use crate::state::{Cx, State};

impl State {
    /// Journals the delete; the endpoints joined to the sandbox, to leave and delete.
    pub(crate) fn sandbox_delete_begin(&mut self, cx: &Cx, id: &str) -> Result<Vec<String>> {
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
        Ok(self.joined(id).iter().map(|e| e.id.clone()).collect())
    }

    /// With its endpoints gone: lets go of its kernel handles and resolver; the record, for
    /// its namespace and files to be removed.
    pub(crate) fn sandbox_delete_release(&mut self, id: &str) -> Result<SandboxRecord> {
        let entry = self
            .sandboxes
            .get_mut(id)
            .ok_or_else(|| CoreError::not_found("sandbox", id))?;
        entry.kernel = None;
        entry.ns = None;
        let rec = entry.rec.clone();
        self.forget_sandbox_dns(id);
        Ok(rec)
    }

    /// Once its namespace and files are gone: the record goes.
    pub(crate) fn sandbox_delete_end(
        &mut self,
        cx: &Cx,
        rec: SandboxRecord,
        removed: Result<()>,
    ) -> Result<()> {
        removed?;
        crate::failpoint::hit("sandbox-delete:kernel-done");
        cx.store.delete(&rec)?;
        self.sandboxes.remove(&rec.id);
        tracing::info!(sandbox = %rec.container_id, "sandbox deleted");
        Ok(())
    }
}
