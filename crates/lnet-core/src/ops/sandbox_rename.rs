//! Sandbox rename (Docker's container rename): one record write, then the name tables, so
//! that the next query on every network the sandbox is on answers the new name and not the
//! old. Nothing in the kernel changes; a crash leaves either name, never half of each.

use lnet_store::Lifecycle;

use crate::error::{CoreError, Result};
use crate::ids;
use crate::state::{Cx, State};

impl State {
    pub(crate) fn rename_sandbox(&mut self, cx: &Cx, id: &str, name: &str) -> Result<()> {
        ids::validate_name("container", name)?;
        if let Some(other) = self
            .sandboxes
            .values()
            .find(|s| s.rec.container_id == name && s.rec.id != id)
        {
            return Err(CoreError::NameInUse {
                kind: "sandbox",
                name: name.into(),
                scope: format!(" (sandbox {})", ids::short_id(&other.rec.id)),
            });
        }
        let entry = self
            .sandboxes
            .get_mut(id)
            .ok_or_else(|| CoreError::not_found("sandbox", id))?;
        if entry.rec.state != Lifecycle::Ready {
            return Err(CoreError::Forbidden(format!(
                "sandbox {} is {}; wait for it to finish, or restart lnet to complete it",
                entry.rec.container_id, entry.rec.state
            )));
        }
        if entry.rec.container_id == name {
            return Ok(());
        }
        let mut rec = entry.rec.clone();
        rec.container_id = name.to_string();
        cx.store.put(&mut rec)?;
        tracing::info!(sandbox = %entry.rec.container_id, to = %name, "sandbox renamed");
        entry.rec = rec;
        self.refresh_dns_names(cx);
        Ok(())
    }
}
