//! Endpoint create: validate → allocate addresses and host ports (in memory) → one record
//! write, `ready`. Nothing is made in the kernel until join, so there is nothing to journal
//! in between; the host ports are recorded with the endpoint and so survive a restart.

use std::net::IpAddr;

use lnet_store::{EndpointRecord, Lifecycle, SCHEMA_VERSION};

use crate::error::{CoreError, Result};
use crate::ids;
use crate::options::EndpointOptions;
use crate::state::{Cx, State};

/// An endpoint journaled `creating`, its driver to be asked.
pub(crate) type Asking = (
    std::sync::Arc<dyn crate::driver::Driver>,
    lnet_store::NetworkRecord,
    EndpointRecord,
);

/// An endpoint create after its first step.
pub(crate) enum Created {
    /// Recorded `ready`: its id.
    Done(String),
    /// Recorded `creating`: the driver is to be asked (without the state lock), then
    /// [`State::create_endpoint_end`].
    Ask(Box<Asking>),
}

impl State {
    /// Holds an address of network `network_id` for an endpoint about to be created (an
    /// engine asks its IPAM first, then creates the endpoint). In memory only: a hold no
    /// record names does not outlive the daemon, so it cannot leak.
    pub(crate) fn hold_address(
        &mut self,
        network_id: &str,
        preferred: Option<IpAddr>,
        v6: bool,
    ) -> Result<ipnet::IpNet> {
        let net = self
            .networks
            .get(network_id)
            .ok_or_else(|| CoreError::not_found("network", network_id))?
            .clone();
        let (a, b) = if v6 {
            self.ipam.allocate_endpoint(&net, None, preferred)?
        } else {
            self.ipam.allocate_endpoint(&net, preferred, None)?
        };
        // `allocate_endpoint` takes both families; keep only the one asked for.
        let (got, other) = if v6 { (b, a) } else { (a, b) };
        if let Some(o) = other {
            self.ipam.release_address(&net, o.addr());
        }
        got.ok_or_else(|| {
            CoreError::Forbidden(format!(
                "network {} has no IPv{} pool",
                net.name,
                if v6 { 6 } else { 4 }
            ))
        })
    }

    /// Lets go of a hold; an address an endpoint has is left alone.
    pub(crate) fn release_hold(&mut self, net: &lnet_store::NetworkRecord, ip: IpAddr) {
        let used = self.endpoints.in_network(&net.id).any(|e| {
            e.addr_v4
                .iter()
                .chain(e.addr_v6.iter())
                .any(|a| a.addr() == ip)
        });
        let gateway = net
            .pools
            .iter()
            .any(|p| p.gateway.is_some_and(|g| g.addr() == ip));
        if !used && !gateway {
            self.ipam.release_address(net, ip);
        }
    }

    pub(crate) fn create_endpoint(
        &mut self,
        cx: &Cx,
        network_id: &str,
        name: &str,
        opts: EndpointOptions,
        granted: Option<(Option<ipnet::IpNet>, Option<ipnet::IpNet>)>,
    ) -> Result<Created> {
        ids::validate_name("name", name)?;
        let net = self
            .networks
            .get(network_id)
            .ok_or_else(|| CoreError::not_found("network", network_id))?;
        if net.state != Lifecycle::Ready {
            return Err(CoreError::Forbidden(format!(
                "network {} is being {}; it takes no new endpoints",
                net.name,
                if net.state == Lifecycle::Deleting {
                    "deleted"
                } else {
                    "created"
                }
            )));
        }
        if self.endpoints.by_name(network_id, name).is_some() {
            return Err(CoreError::NameInUse {
                kind: "endpoint",
                name: name.into(),
                scope: format!(" in network {}", net.name),
            });
        }
        for a in &opts.aliases {
            ids::validate_name("Aliases", a)?;
        }
        let driver = cx.driver(&net.driver)?;
        let mac = opts
            .mac
            .as_deref()
            .map(|m| ids::parse_mac("MacAddress", m))
            .transpose()?;
        let uses_ipam = driver.capabilities().uses_ipam;
        if !uses_ipam && let Some(ip) = opts.ipv4.or(opts.ipv6) {
            return Err(CoreError::invalid(
                if ip.is_ipv4() {
                    "IPv4Address"
                } else {
                    "IPv6Address"
                },
                ip,
                format!(
                    "network {} ({} driver) gives endpoints no addresses",
                    net.name, net.driver
                ),
            ));
        }
        let default_host_ip = if opts.ports.is_empty() {
            None
        } else {
            Some(
                driver
                    .facts(net)
                    .publish_on
                    .map_err(|why| CoreError::invalid(crate::ports::FIELD, "", why))?,
            )
        };
        if let Some(id) = &opts.id {
            ids::validate_id("EndpointID", id)?;
            if let Some(e) = self.endpoints.get(id) {
                return Err(CoreError::InUse(format!(
                    "endpoint id {id} is taken by endpoint {}",
                    e.name
                )));
            }
        }
        let net = net.clone();
        if opts.held {
            // Held for this endpoint by `hold_address`: let go, then taken again below
            // under the same lock, so no one else can get them in between.
            for ip in opts.ipv4.iter().chain(opts.ipv6.iter()) {
                self.release_hold(&net, *ip);
            }
        }
        // An IPAM plugin's grants were asked for without the lock; what goes wrong from
        // here on gives them back (the caller does). lnet's own IPAM allocates here.
        let (v4, v6) = match granted {
            Some(g) => g,
            None if uses_ipam => self.ipam.allocate_endpoint(&net, opts.ipv4, opts.ipv6)?,
            None => (None, None),
        };
        let ports = match default_host_ip {
            None => Vec::new(),
            Some(ip) => match self.allocate_ports(&net, ip, name, (v4, v6), &opts.ports) {
                Ok(p) => p,
                Err(e) => {
                    for a in v4.iter().chain(v6.iter()) {
                        self.ipam.release_address(&net, a.addr());
                    }
                    return Err(e);
                }
            },
        };
        let mac = match (uses_ipam, mac, v4) {
            (false, _, _) => None,
            (true, Some(m), _) => Some(m),
            (true, None, Some(a)) => match a.addr() {
                IpAddr::V4(ip) => Some(ids::mac_from_ipv4(ip)),
                IpAddr::V6(_) => Some(ids::random_mac()),
            },
            (true, None, None) => Some(ids::random_mac()),
        };
        crate::failpoint::hit("endpoint-create:allocated");
        let mut rec = EndpointRecord {
            schema: SCHEMA_VERSION,
            state: Lifecycle::Ready,
            revision: 0,
            id: opts.id.unwrap_or_else(ids::new_id),
            name: name.to_string(),
            network_id: network_id.to_string(),
            mac: mac.map(|m| ids::format_mac(&m)),
            addr_v4: v4,
            addr_v6: v6,
            aliases: opts.aliases,
            options: opts.options,
            ports,
            join: None,
            ephemeral: opts.ephemeral,
        };
        if driver.capabilities().calls_out {
            // Journaled before the driver is asked: a crash after its answer is undone at
            // the next start, which tells the driver (`delete_endpoint`).
            rec.state = Lifecycle::Creating;
            if let Err(e) = cx.store.put(&mut rec) {
                self.ipam.release_endpoint(&net, &rec);
                self.release_ports(&rec.ports);
                return Err(e.into());
            }
            crate::failpoint::hit("endpoint-create:recorded");
            self.endpoints.insert(rec.clone());
            return Ok(Created::Ask(Box::new((driver, net, rec))));
        }
        let made = driver.create_endpoint(&net, &rec);
        if let Err(e) = made.and_then(|()| cx.store.put(&mut rec).map_err(Into::into)) {
            self.ipam.release_endpoint(&net, &rec);
            self.release_ports(&rec.ports);
            return Err(e);
        }
        crate::failpoint::hit("endpoint-create:recorded");
        tracing::debug!(endpoint = %rec.name, network = %net.name, v4 = ?rec.addr_v4, "endpoint created");
        let id = rec.id.clone();
        self.endpoints.insert(rec);
        Ok(Created::Done(id))
    }

    /// Records how the driver's answer to an endpoint journaled `creating` went: `ready`,
    /// or — refused — no endpoint at all.
    pub(crate) fn create_endpoint_end(
        &mut self,
        cx: &Cx,
        net: &lnet_store::NetworkRecord,
        mut rec: EndpointRecord,
        made: Result<()>,
    ) -> Result<String> {
        let res = made.and_then(|()| {
            crate::failpoint::hit("endpoint-create:driver-answered");
            rec.state = Lifecycle::Ready;
            cx.store.put(&mut rec).map_err(Into::into)
        });
        if let Err(e) = res {
            // The driver refused (or the record could not be written): nothing of it stays.
            // A `creating` record the store still holds is undone at the next start.
            if let Err(d) = cx.store.delete(&rec) {
                tracing::error!(endpoint = %rec.name, error = %d, "removing a refused endpoint's record; the next start does");
            }
            self.ipam.release_endpoint(net, &rec);
            self.release_ports(&rec.ports);
            self.endpoints.remove(&rec.id);
            return Err(e);
        }
        tracing::debug!(endpoint = %rec.name, network = %net.name, v4 = ?rec.addr_v4, "endpoint created");
        let id = rec.id.clone();
        self.endpoints.insert(rec);
        Ok(id)
    }
}
