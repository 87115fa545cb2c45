//! What several sandbox transitions share: the default gateway (derived from the joined
//! endpoints, never stored) and the `hosts` file (regenerated from the records).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use lnet_kernel::{Netlink, Netns, Route};
use lnet_store::{JoinState, SandboxRecord};

use crate::error::{CoreError, Result};
use crate::files;
use crate::kernel::SandboxKernel;
use crate::state::{Cx, State};

/// The default gateways a sandbox routes through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Gateways {
    pub(crate) v4: Option<IpAddr>,
    pub(crate) v6: Option<IpAddr>,
}

fn default_route(gw: Option<IpAddr>, v6: bool) -> Route {
    let dst: IpNet = if v6 {
        "::/0".parse().expect("valid")
    } else {
        "0.0.0.0/0".parse().expect("valid")
    };
    Route {
        dst,
        gateway: gw,
        oif: None,
        scope_link: false,
    }
}

/// Opens the kernel handles of a sandbox's namespace.
pub(crate) fn open_sandbox_kernel(rec: &SandboxRecord) -> Result<SandboxKernel> {
    let ctx = || {
        format!(
            "open network namespace {} of sandbox {}",
            rec.netns_path.display(),
            rec.container_id
        )
    };
    let ns = Netns::open(&rec.netns_path).map_err(CoreError::kernel(ctx()))?;
    let nl = Netlink::in_netns(&ns).map_err(CoreError::kernel(ctx()))?;
    Ok(SandboxKernel {
        ns: Arc::new(ns),
        nl,
    })
}

/// Moves sandbox `label`'s default routes from `before` to `after` (see
/// [`State::apply_gateways`]), in `k`: what a change does without the state lock.
pub(crate) fn set_gateways(
    k: &mut SandboxKernel,
    label: &str,
    before: Option<Gateways>,
    after: Gateways,
) -> Result<()> {
    for (v6, b, a) in [
        (false, before.map(|g| g.v4), after.v4),
        (true, before.map(|g| g.v6), after.v6),
    ] {
        if b == Some(a) {
            continue;
        }
        match a {
            Some(gw) => {
                k.nl.replace_route(&default_route(Some(gw), v6))
                    .map_err(CoreError::kernel(format!(
                        "set default route via {gw} in sandbox {label}"
                    )))?
            }
            None => {
                k.nl.del_route(&default_route(b.flatten(), v6))
                    .map(drop)
                    .map_err(CoreError::kernel(format!(
                        "remove default route in sandbox {label}"
                    )))?
            }
        }
    }
    Ok(())
}

impl State {
    /// The gateways the sandbox should use: from the first endpoint in libnetwork's gateway
    /// order (higher join priority, then non-internal, then having a gateway, then network
    /// name) that has one, per address family. `skip` leaves one endpoint out (the one
    /// leaving).
    pub(crate) fn gateways_of(&self, cx: &Cx, sandbox_id: &str, skip: Option<&str>) -> Gateways {
        // (priority, internal, gateway weight, network name, v4 gateway, v6 gateway)
        type Candidate<'a> = (i32, bool, u8, &'a str, Option<IpAddr>, Option<IpAddr>);
        let mut cands: Vec<Candidate<'_>> = Vec::new();
        for ep in self.joined(sandbox_id) {
            let j = ep
                .join
                .as_ref()
                .expect("joined() only returns joined endpoints");
            if Some(ep.id.as_str()) == skip || j.state == JoinState::Leaving {
                continue;
            }
            let Ok(net) = self.network_of(ep) else {
                continue;
            };
            let Ok(driver) = cx.driver(&net.driver) else {
                continue;
            };
            let (g4, g6) = driver.facts(net).gateways;
            let weight = u8::from(g4.is_some()) + 2 * u8::from(g6.is_some());
            cands.push((j.priority, net.internal, weight, net.name.as_str(), g4, g6));
        }
        cands.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then(a.1.cmp(&b.1))
                .then(b.2.cmp(&a.2))
                .then(a.3.cmp(b.3))
        });
        Gateways {
            v4: cands.iter().find_map(|c| c.4),
            v6: cands.iter().find_map(|c| c.5),
        }
    }

    /// Moves the sandbox's default routes from `before` to `after`, touching only what
    /// changed; with `before` unknown (`None`: an undo, or recovery) both families are set.
    pub(crate) fn apply_gateways(
        &mut self,
        sandbox_id: &str,
        before: Option<Gateways>,
        after: Gateways,
    ) -> Result<()> {
        if before == Some(after) {
            return Ok(());
        }
        let entry = self
            .sandboxes
            .get_mut(sandbox_id)
            .ok_or_else(|| CoreError::not_found("sandbox", sandbox_id))?;
        if !entry.rec.lnet_inside() {
            return Ok(());
        }
        let Some(mut k) = entry.kernel() else {
            return Err(CoreError::Forbidden(format!(
                "sandbox {} has no live network namespace",
                entry.rec.container_id
            )));
        };
        set_gateways(&mut k, &entry.rec.container_id, before, after)
    }

    /// Regenerates the sandbox's hosts file from its record and joined endpoints.
    pub(crate) fn write_hosts(&self, cx: &Cx, sandbox_id: &str) -> Result<()> {
        let rec = &self.sandboxes[sandbox_id].rec;
        if rec.handover {
            return Ok(());
        }
        let text = self.hosts_text(cx, sandbox_id)?;
        files::write_in_place(&rec.files_dir.join("hosts"), &text)
    }

    /// What the sandbox's hosts file should say, from its record and joined endpoints.
    pub(crate) fn hosts_text(&self, cx: &Cx, sandbox_id: &str) -> Result<String> {
        let entry = self
            .sandboxes
            .get(sandbox_id)
            .ok_or_else(|| CoreError::not_found("sandbox", sandbox_id))?;
        let rec = &entry.rec;
        Ok(if rec.host_mode {
            let host = std::fs::read_to_string(&cx.config.host_hosts).unwrap_or_default();
            files::host_mode_hosts(&host, &rec.extra_hosts)
        } else {
            let addrs: Vec<IpAddr> = self
                .joined(sandbox_id)
                .into_iter()
                .filter(|e| {
                    e.join
                        .as_ref()
                        .is_some_and(|j| j.state != JoinState::Leaving)
                })
                .flat_map(|e| {
                    e.addr_v4
                        .iter()
                        .chain(e.addr_v6.iter())
                        .map(|a| a.addr())
                        .collect::<Vec<_>>()
                })
                .collect();
            files::sandbox_hosts(&rec.hostname, &rec.domainname, &rec.extra_hosts, &addrs)
        })
    }
}
