//! Network delete: validate → record `deleting` → remove the kernel objects → release IPAM →
//! delete the record. The pools are released only after the kernel work succeeded and
//! exactly once, so a failed or retried delete can never free a pool another network got
//! meanwhile (libnetwork hazard 5.3.5); a crash after the first write is finished at start
//! without ever re-reserving the pools (the bug libnetwork's seed commit fixed).

use lnet_store::Lifecycle;

use crate::error::{CoreError, Result};
use crate::state::{Cx, State};

impl State {
    pub(crate) fn delete_network(&mut self, cx: &Cx, id: &str) -> Result<()> {
        let rec = self
            .networks
            .get(id)
            .ok_or_else(|| CoreError::not_found("network", id))?;
        let eps: Vec<&str> = self
            .endpoints
            .in_network(id)
            .map(|e| e.name.as_str())
            .collect();
        if !eps.is_empty() {
            return Err(CoreError::InUse(format!(
                "network {} has active endpoints ({}): disconnect and delete them first",
                rec.name,
                eps.join(", ")
            )));
        }
        let driver = cx.driver(&rec.driver)?;
        let mut rec = rec.clone();
        if rec.state != Lifecycle::Deleting {
            rec.state = Lifecycle::Deleting;
            cx.store.put(&mut rec)?;
            self.networks.insert(id.to_string(), rec.clone());
        }
        crate::failpoint::hit("network-delete:recorded");
        driver.delete_network(&mut self.host, &rec)?;
        crate::failpoint::hit("network-delete:kernel-done");
        cx.store.delete(&rec)?;
        self.ipam.release_network(&rec);
        self.networks.remove(id);
        tracing::info!(network = %rec.name, "network deleted");
        Ok(())
    }
}
