//! Network delete: validate → record `deleting` → remove the kernel objects → release IPAM →
//! delete the record. An IPAM plugin's pools are given back before the record goes (its
//! grants are not derived state); one that cannot be reached keeps the network `deleting`. The pools are released only after the kernel work succeeded and
//! exactly once, so a failed or retried delete can never free a pool another network got
//! meanwhile (libnetwork hazard 5.3.5); a crash after the first write is finished at start
//! without ever re-reserving the pools (the bug libnetwork's seed commit fixed).

//!
//! In three phases, holding the network's key: the kernel's part runs without the state
//! lock, so that a bridge delete (tens of milliseconds of the kernel's RCU waits when it
//! is not left to the background) holds up no change to another network.

use std::sync::Arc;

use lnet_store::{Lifecycle, NetworkRecord};

use crate::driver::Driver;
use crate::error::{CoreError, Result};
use crate::ipam_driver::IpamDriver;
use crate::kernel::HostKernel;
use crate::state::{Cx, State};

/// A network delete between its phases.
#[derive(Debug)]
pub(crate) struct Deleting {
    driver: Arc<dyn Driver>,
    ipam: Option<Arc<dyn IpamDriver>>,
    rec: NetworkRecord,
}

impl Deleting {
    /// The part without the state lock: the network's kernel objects go, then an IPAM
    /// plugin's pools go back (lnet's own are released with the record).
    pub(crate) fn kernel(&self, host: &mut HostKernel) -> Result<()> {
        self.driver.delete_network(host, &self.rec)?;
        match &self.ipam {
            Some(ipam) => crate::ipam_driver::release_pools(ipam.as_ref(), &self.rec.pools),
            None => Ok(()),
        }
    }
}

impl State {
    /// Validates and journals the delete as `deleting`.
    pub(crate) fn network_delete_begin(&mut self, cx: &Cx, id: &str) -> Result<Deleting> {
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
        let ipam = cx.ipam_of(rec)?;
        let mut rec = rec.clone();
        if rec.state != Lifecycle::Deleting {
            rec.state = Lifecycle::Deleting;
            cx.store.put(&mut rec)?;
            self.networks.insert(id.to_string(), rec.clone());
        }
        crate::failpoint::hit("network-delete:recorded");
        Ok(Deleting { driver, ipam, rec })
    }

    /// Once the kernel's part is done: the pools go back and the record goes. A failed
    /// delete stays `deleting`, for a retry or the next start to finish.
    pub(crate) fn network_delete_end(
        &mut self,
        cx: &Cx,
        d: Deleting,
        done: Result<()>,
    ) -> Result<()> {
        done?;
        let rec = d.rec;
        crate::failpoint::hit("network-delete:kernel-done");
        cx.store.delete(&rec)?;
        self.ipam.release_network(&rec);
        self.networks.remove(&rec.id);
        tracing::info!(network = %rec.name, "network deleted");
        Ok(())
    }
}
