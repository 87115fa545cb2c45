//! Endpoint delete: validate → delete the record → release its addresses and host ports.
//! One write; the addresses and ports are derived state, so releasing them after the write cannot leak anything
//! across a crash.

use crate::error::{CoreError, Result};
use crate::state::{Cx, State};

impl State {
    pub(crate) fn delete_endpoint(&mut self, cx: &Cx, id: &str) -> Result<()> {
        let ep = self
            .endpoints
            .get(id)
            .ok_or_else(|| CoreError::not_found("endpoint", id))?;
        if let Some(j) = &ep.join {
            return Err(CoreError::InUse(format!(
                "endpoint {} is joined to sandbox {}: leave it (disconnect) first",
                ep.name,
                self.sandbox_label(&j.sandbox_id)
            )));
        }
        let ep = ep.clone();
        cx.store.delete(&ep)?;
        crate::failpoint::hit("endpoint-delete:recorded");
        if let Ok(net) = self.network_of(&ep) {
            let net = net.clone();
            self.ipam.release_endpoint(&net, &ep);
            // The record is gone: what the driver keeps of it is let go, logged if it fails.
            if let Err(e) = cx
                .driver(&net.driver)
                .and_then(|d| d.delete_endpoint(&net, &ep))
            {
                tracing::warn!(endpoint = %ep.name, error = %e, "the driver could not let the endpoint go");
            }
        }
        self.release_ports(&ep.ports);
        self.endpoints.remove(id);
        tracing::debug!(endpoint = %ep.name, "endpoint deleted");
        Ok(())
    }
}
