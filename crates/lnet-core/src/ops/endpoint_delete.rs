//! Endpoint delete: validate → delete the record → release its addresses and host ports.
//! One write; the addresses and ports are derived state, so releasing them after the write cannot leak anything
//! across a crash.

use crate::controller::{Cx, State};
use crate::error::{CoreError, Result};

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
        }
        self.release_ports(&ep.ports);
        self.endpoints.remove(id);
        tracing::debug!(endpoint = %ep.name, "endpoint deleted");
        Ok(())
    }
}
