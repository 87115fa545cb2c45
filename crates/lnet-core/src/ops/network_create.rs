//! Network create: validate → allocate pools (in memory) → record `creating` (with the
//! driver's kernel object names) → make the kernel objects → record `ready`.
//! A crash after the first write is rolled back at start; an error undoes every step.
//!
//! In three phases, holding the new network's key: [`State::network_create_begin`]
//! validates, plans and journals (the `creating` record is in memory too, so that a
//! concurrent create sees its name and bridge taken), [`Creating::kernel`] makes the
//! kernel objects without the state lock, [`State::network_create_end`] records the outcome.

use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use lnet_store::{Lifecycle, NetworkRecord, SCHEMA_VERSION};

use std::sync::Arc;

use crate::driver::{Driver, PlanNetwork};
use crate::error::{CoreError, Result};
use crate::files::ResolvConf;
use crate::kernel::HostKernel;
use crate::options::NetworkOptions;
use crate::state::{Cx, State};
use crate::{ids, ipam};

/// A network create between its phases.
#[derive(Debug)]
pub(crate) struct Creating {
    driver: Arc<dyn Driver>,
    rec: NetworkRecord,
    /// A driver that calls out was told of a failed create (`Some(true)`) or could not be
    /// (`Some(false)`), without the state lock; `None` for the others.
    told: std::cell::Cell<Option<bool>>,
}

impl Creating {
    /// The kernel's part: the network's kernel objects, as its driver makes them.
    pub(crate) fn kernel(
        &self,
        host: &mut HostKernel,
        config: &crate::config::Config,
    ) -> Result<()> {
        let made = self.driver.create_network(host, &self.rec, config);
        if made.is_err() && self.calls_out() {
            // Told here, without the state lock: the undo then only forgets the network.
            let told = self.driver.delete_network(host, &self.rec);
            if let Err(e) = &told {
                tracing::warn!(network = %self.rec.name, error = %e, "telling the driver a network was not created");
            }
            self.told.set(Some(told.is_ok()));
        }
        made
    }

    /// Whether the driver calls out of lnet: its steps wait on a plugin.
    pub(crate) fn calls_out(&self) -> bool {
        self.driver.capabilities().calls_out
    }
}

impl State {
    /// Checks a network create's input, changing nothing: the driver, and the options as
    /// the create takes them (the IPAM driver named, flags given as options switched on).
    pub(crate) fn network_create_check(
        &self,
        cx: &Cx,
        id: &str,
        (driver_name, name): (&str, &str),
        mut opts: NetworkOptions,
    ) -> Result<(Arc<dyn Driver>, NetworkOptions)> {
        ids::validate_name("name", name)?;
        if let Some(n) = self.networks.get(id) {
            return Err(CoreError::InUse(format!(
                "network id {id} is taken by network {}",
                n.name
            )));
        }
        if self.networks.values().any(|n| n.name == name) {
            return Err(CoreError::NameInUse {
                kind: "network",
                name: name.into(),
                scope: String::new(),
            });
        }
        let driver = cx.driver(driver_name)?;
        let caps = driver.capabilities();
        if caps.singleton
            && let Some(n) = self.networks.values().find(|n| n.driver == driver_name)
        {
            return Err(CoreError::Forbidden(format!(
                "only one {driver_name} network may exist, and {} is one",
                n.name
            )));
        }
        if opts.ipam.driver.is_empty() {
            opts.ipam.driver = "default".into();
        }
        cx.drivers.ipam(&opts.ipam.driver)?;
        for (k, v) in [
            ("com.docker.network.enable_ipv6", &mut opts.enable_ipv6),
            ("com.docker.network.internal", &mut opts.internal),
        ] {
            // Any spelling of "true" the driver accepts must switch the flag on.
            if let Some(s) = opts.options.get(k)
                && crate::ids::parse_bool(k, s)?
            {
                *v = true;
            }
        }
        if !caps.uses_ipam {
            if !opts.ipam.v4.is_empty() || !opts.ipam.v6.is_empty() || opts.enable_ipv6 {
                return Err(CoreError::invalid(
                    "IPAM.Config",
                    driver_name,
                    format!("the {driver_name} driver takes no subnets and no IPv6"),
                ));
            }
            opts.ipam.driver = "null".into();
        } else if caps.requires_ipv4 && opts.ipam.driver == "null" {
            return Err(CoreError::invalid(
                "IPAM.Driver",
                "null",
                format!("the {driver_name} driver needs an IPv4 pool; use the default IPAM driver"),
            ));
        }
        for c in opts.ipam.v4.iter().chain(opts.ipam.v6.iter()) {
            validate_pool_config(c)?;
        }
        Ok((driver, opts))
    }

    /// Validates, plans and journals network `id` as `creating`. `granted`: the pools an
    /// IPAM plugin granted it (asked without the state lock, after
    /// [`State::network_create_check`]); lnet's own IPAM allocates here.
    pub(crate) fn network_create_begin(
        &mut self,
        cx: &Cx,
        id: &str,
        (driver_name, name): (&str, &str),
        opts: NetworkOptions,
        granted: Option<Vec<lnet_store::PoolAssignment>>,
    ) -> Result<Creating> {
        let (driver, opts) = self.network_create_check(cx, id, (driver_name, name), opts)?;
        let caps = driver.capabilities();
        if granted.is_some() == ipam::is_builtin(&opts.ipam.driver) {
            return Err(CoreError::Forbidden(format!(
                "network {name}: IPAM driver {} is {}, and its pools were {}",
                opts.ipam.driver,
                if granted.is_some() {
                    "lnet's own"
                } else {
                    "a plugin"
                },
                if granted.is_some() {
                    "granted by a plugin"
                } else {
                    "not asked of it"
                },
            )));
        }
        let id = id.to_string();
        let (state, adopted) = {
            let others: Vec<&NetworkRecord> = self
                .networks
                .values()
                .filter(|n| n.driver == driver_name)
                .collect();
            let mut plan = PlanNetwork {
                id: &id,
                name,
                options: &opts.options,
                enable_ipv6: opts.enable_ipv6,
                internal: opts.internal,
                others,
                host: &mut self.host,
                adopted: None,
            };
            (driver.plan_network(&mut plan)?, plan.adopted)
        };
        if opts.held_pools {
            // Let go under the same lock as they are taken again below.
            for s in opts
                .ipam
                .v4
                .iter()
                .chain(opts.ipam.v6.iter())
                .filter_map(|c| c.subnet)
            {
                self.ipam.release_pool_hold(s.trunc());
            }
        }
        let pools = match granted {
            Some(pools) => pools,
            None => {
                let exclude = self.host_prefixes(cx, adopted);
                self.ipam
                    .allocate_network(&id, "local", &opts.ipam, opts.enable_ipv6, &exclude)?
            }
        };
        let mut rec = NetworkRecord {
            schema: SCHEMA_VERSION,
            state: Lifecycle::Creating,
            revision: 0,
            id: id.clone(),
            name: name.to_string(),
            driver: driver_name.to_string(),
            scope: "local".into(),
            created_unix_nanos: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            ipam: opts.ipam,
            pools,
            enable_ipv6: opts.enable_ipv6,
            internal: opts.internal,
            attachable: opts.attachable,
            labels: opts.labels,
            options: opts.options,
            driver_state: state,
        };
        // IPAM lets a pool be taken whole by one network while another holds only a range
        // of it (libnetwork does too: macvlan networks share subnets that way); networks of
        // a driver that does not share subnets must not overlap at all, ranges or not.
        if !caps.shares_subnets
            && let Some((other, theirs, ours)) = self
                .networks
                .values()
                .filter(|n| n.driver == driver_name && n.id != rec.id)
                .flat_map(|n| n.pools.iter().map(move |p| (n, p.pool)))
                .find_map(|(n, theirs)| {
                    rec.pools
                        .iter()
                        .find(|p| {
                            p.pool.contains(&theirs.network()) || theirs.contains(&p.pool.network())
                        })
                        .map(|p| (n.name.clone(), theirs, p.pool))
                })
        {
            self.ipam.release_network(&rec);
            return Err(CoreError::Forbidden(format!(
                "subnet {ours} overlaps subnet {theirs} of network {other}: {} networks cannot share addresses; choose another subnet",
                rec.driver
            )));
        }
        if let Err(e) = cx.store.put(&mut rec) {
            self.ipam.release_network(&rec);
            return Err(e.into());
        }
        crate::failpoint::hit("network-create:recorded");
        self.networks.insert(id, rec.clone());
        Ok(Creating {
            driver,
            rec,
            told: Default::default(),
        })
    }

    /// Records the network `ready` once its kernel objects are made; a failed create is
    /// undone.
    pub(crate) fn network_create_end(
        &mut self,
        cx: &Cx,
        c: Creating,
        made: Result<()>,
    ) -> Result<String> {
        let Creating {
            driver,
            mut rec,
            told,
        } = c;
        // A driver that calls out is never called here, under the state lock: told
        // already, or to be told by the next start (the record then says `deleting`).
        let told = if driver.capabilities().calls_out {
            Some(told.get().unwrap_or(false))
        } else {
            None
        };
        let id = rec.id.clone();
        self.networks.remove(&id);
        let made = made.and_then(|()| {
            crate::failpoint::hit("network-create:kernel-done");
            rec.state = Lifecycle::Ready;
            cx.store.put(&mut rec).map_err(Into::into)
        });
        if let Err(e) = made {
            tracing::warn!(network = %rec.name, error = %e, "network create failed; undoing");
            self.undo_network_create(cx, driver.as_ref(), rec, told);
            return Err(e);
        }
        tracing::info!(network = %rec.name, id = %ids::short_id(&rec.id), driver = %rec.driver,
            subnets = ?rec.pools.iter().map(|p| p.pool.to_string()).collect::<Vec<_>>(), "network created");
        self.networks.insert(id.clone(), rec);
        Ok(id)
    }

    /// Undoes a network create that failed after its record was written: removes its
    /// kernel objects, its pools and its record. If the kernel refuses, the network stays,
    /// marked `deleting`, so a delete (or the next start) finishes the job — and its pools
    /// stay reserved until then, so no other network can be given them meanwhile.
    fn undo_network_create(
        &mut self,
        cx: &Cx,
        driver: &dyn crate::driver::Driver,
        mut rec: NetworkRecord,
        told: Option<bool>,
    ) {
        let undone = match told {
            None => driver.delete_network(&mut self.host, &rec),
            Some(true) => Ok(()),
            Some(false) => Err(CoreError::Forbidden(
                "its driver could not be told; the next start tells it".into(),
            )),
        };
        // A plugin's pools go back before the record goes, as in a delete, which the caller
        // finishes without the state lock ([`State::network_delete_begin`] on).
        let remote = !ipam::is_builtin(&rec.ipam.driver);
        if let Err(undo) = &undone {
            tracing::error!(network = %rec.name, error = %undo, "undoing network create failed; delete it to retry");
        }
        if undone.is_err() || remote {
            rec.state = Lifecycle::Deleting;
            if let Err(e) = cx.store.put(&mut rec) {
                tracing::error!(network = %rec.name, error = %e, "recording the network as deleting failed; start-up will roll it back");
            }
            self.networks.insert(rec.id.clone(), rec);
            return;
        }
        self.ipam.release_network(&rec);
        if let Err(undo) = cx.store.delete(&rec) {
            tracing::error!(network = %rec.name, error = %undo, "removing the creating record failed; start-up will roll it back");
        }
    }

    /// Prefixes an automatically chosen pool must not overlap: the host's routes (except
    /// default routes, and those through `adopted`, the link the network takes over) and
    /// its nameservers, as libnetwork checks.
    pub(crate) fn host_prefixes(&mut self, cx: &Cx, adopted: Option<u32>) -> Vec<IpNet> {
        let mut out = Vec::new();
        for fam in [lnet_kernel::IpFamily::V4, lnet_kernel::IpFamily::V6] {
            match self.host.nl.routes(fam) {
                Ok(routes) => out.extend(
                    routes
                        .into_iter()
                        .filter(|r| adopted.is_none() || r.oif != adopted)
                        .map(|r| r.dst)
                        .filter(|d| d.prefix_len() > 0),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "listing host routes for the pool overlap check")
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string(&cx.config.host_resolv_conf) {
            out.extend(
                ResolvConf::parse(&text)
                    .nameservers
                    .into_iter()
                    .map(IpNet::from),
            );
        }
        out
    }
}

fn validate_pool_config(c: &lnet_store::IpamPoolConfig) -> Result<()> {
    let Some(subnet) = c.subnet else {
        if let Some(r) = c.ip_range {
            return Err(CoreError::invalid(
                "IPAM.Config.IPRange",
                r,
                "an ip-range needs a subnet to lie in",
            ));
        }
        if let Some(g) = c.gateway {
            return Err(CoreError::invalid(
                "IPAM.Config.Gateway",
                g,
                "a gateway needs a subnet to lie in",
            ));
        }
        if let Some((k, a)) = c.aux_addresses.iter().next() {
            return Err(CoreError::invalid(
                format!("IPAM.Config.AuxiliaryAddresses[{k}]"),
                a,
                "an auxiliary address needs a subnet to lie in",
            ));
        }
        return Ok(());
    };
    if let Some(r) = c.ip_range
        && !(subnet.contains(&r.network())
            && subnet.contains(&r.broadcast())
            && r.prefix_len() >= subnet.prefix_len())
    {
        return Err(CoreError::invalid(
            "IPAM.Config.IPRange",
            r,
            format!("the range must lie inside subnet {subnet}"),
        ));
    }
    if let Some(g) = c.gateway
        && !subnet.contains(&g)
    {
        return Err(CoreError::invalid(
            "IPAM.Config.Gateway",
            g,
            format!("the gateway must be an address inside subnet {subnet}"),
        ));
    }
    for (k, a) in &c.aux_addresses {
        if !subnet.contains(a) {
            return Err(CoreError::invalid(
                format!("IPAM.Config.AuxiliaryAddresses[{k}]"),
                a,
                format!("the address must lie inside subnet {subnet}"),
            ));
        }
    }
    Ok(())
}
