//! Endpoint delete: validate → delete the record → release its addresses and host ports.
//! One write; the addresses and ports are derived state, so releasing them after the write
//! cannot leak anything across a crash. A driver that calls out
//! ([`crate::Capabilities::calls_out`]) is told between two writes instead: the record says
//! `deleting` while it is asked (without the state lock), so a crash is finished at the next
//! start, which tells it again.

use std::sync::Arc;

use lnet_store::{EndpointRecord, Lifecycle, NetworkRecord};

use crate::driver::Driver;
use crate::error::{CoreError, Result};
use crate::state::{Cx, State};

/// An endpoint journaled `deleting`, its driver to be told.
pub(crate) type Telling = (Arc<dyn Driver>, NetworkRecord, EndpointRecord);

impl State {
    /// Deletes endpoint `id` at once, telling its driver (recovery, and drivers that do not
    /// call out).
    pub(crate) fn delete_endpoint(&mut self, cx: &Cx, id: &str) -> Result<()> {
        let ep = self.deletable(id)?;
        self.forget_endpoint(cx, ep, true, false)
    }

    /// The first step of a delete: done, or — for a driver that calls out — journaled
    /// `deleting` with the driver to tell.
    pub(crate) fn delete_endpoint_begin(
        &mut self,
        cx: &Cx,
        id: &str,
        hold: bool,
    ) -> Result<Option<Telling>> {
        let mut ep = self.deletable(id)?;
        let driver = self
            .network_of(&ep)
            .ok()
            .cloned()
            .and_then(|n| cx.driver(&n.driver).ok().map(|d| (d, n)));
        let plugin_ipam = |net: &NetworkRecord| matches!(cx.ipam_of(net), Ok(Some(_)));
        match driver {
            Some((d, net)) if d.capabilities().calls_out || plugin_ipam(&net) => {
                ep.state = Lifecycle::Deleting;
                cx.store.put(&mut ep)?;
                crate::failpoint::hit("endpoint-delete:journaled");
                self.endpoints.insert(ep.clone());
                Ok(Some((d, net, ep)))
            }
            _ => self.forget_endpoint(cx, ep, true, hold).map(|()| None),
        }
    }

    /// Records a delete whose driver (and IPAM plugin) was told: the record goes whatever the driver said
    /// (a plugin that refuses to let go must not keep lnet's record and addresses); what it
    /// said is logged.
    pub(crate) fn delete_endpoint_end(
        &mut self,
        cx: &Cx,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        told: Result<()>,
        hold: bool,
    ) -> Result<()> {
        if let Err(e) = told {
            tracing::warn!(endpoint = %ep.name, network = %net.name, error = %e, "the driver could not let the endpoint go");
        }
        self.forget_endpoint(cx, ep.clone(), false, hold)
    }

    fn deletable(&self, id: &str) -> Result<EndpointRecord> {
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
        Ok(ep.clone())
    }

    /// Deletes the record, then lets go of what is derived from it (telling the driver
    /// when `tell`). With `hold`, its addresses stay taken, as holds
    /// ([`crate::Network::release_address`] lets them go).
    fn forget_endpoint(
        &mut self,
        cx: &Cx,
        ep: EndpointRecord,
        tell: bool,
        hold: bool,
    ) -> Result<()> {
        cx.store.delete(&ep)?;
        crate::failpoint::hit("endpoint-delete:recorded");
        if let Ok(net) = self.network_of(&ep) {
            let net = net.clone();
            if !hold {
                self.ipam.release_endpoint(&net, &ep);
            }
            // The record is gone: what the driver keeps of it is let go, logged if it fails.
            if tell
                && let Err(e) = cx
                    .driver(&net.driver)
                    .and_then(|d| tell_endpoint_gone(cx, &d, &net, &ep, !hold))
            {
                tracing::warn!(endpoint = %ep.name, error = %e, "the driver could not let the endpoint go");
            }
        }
        self.release_ports(&ep.ports);
        self.endpoints.remove(&ep.id);
        tracing::debug!(endpoint = %ep.name, "endpoint deleted");
        Ok(())
    }
}

/// Tells whoever outside lnet keeps something of endpoint `ep` that it is gone: its driver
/// ([`Driver::delete_endpoint`]), then — with `release` — its network's IPAM plugin, which
/// takes its addresses back. Both are told whatever the first says; every error is reported.
pub(crate) fn tell_endpoint_gone(
    cx: &Cx,
    driver: &Arc<dyn Driver>,
    net: &NetworkRecord,
    ep: &EndpointRecord,
    release: bool,
) -> Result<()> {
    let told = driver.delete_endpoint(net, ep);
    let released = match cx.ipam_of(net) {
        Ok(Some(ipam)) if release => {
            crate::ipam_driver::release_endpoint_record(ipam.as_ref(), net, ep)
        }
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    match (told, released) {
        (Ok(()), r) | (r, Ok(())) => r,
        (Err(a), Err(b)) => Err(CoreError::Many(vec![a, b])),
    }
}
