//! An IPAM driver that is a plugin: Docker's `/IpamDriver.*` calls, made as dockerd makes
//! them (the plugin's default address spaces learnt at activation, the gateway asked for with
//! `RequestAddressType`, the MAC passed when the plugin asks for it), and its answers parsed
//! strictly — a pool or an address that is not one is the plugin's error, never lnet's state.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;
use lnet_core::{AddressAsk, IpamDriver, PoolAsk, PoolGrant, Result};
use lnet_plugin::{
    DefaultAddressSpaces, IpamCapabilities, RequestAddressResponse, RequestPoolResponse,
};
use serde_json::{Value, json};

use crate::client::Bounds;
use crate::discovery::Dirs;
use crate::plugin::Plugin;

/// What activation learns of an IPAM plugin.
#[derive(Debug, Clone)]
struct Learnt {
    spaces: DefaultAddressSpaces,
    wants_mac: bool,
}

/// Activation's calls: `GetCapabilities` (optional, as for dockerd), then
/// `GetDefaultAddressSpaces`.
fn learn(ask: &mut dyn FnMut(&str) -> Result<Value>) -> Result<Learnt> {
    let caps: IpamCapabilities = ask("GetCapabilities")
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let spaces = ask("GetDefaultAddressSpaces")?;
    let spaces: DefaultAddressSpaces =
        serde_json::from_value(spaces).map_err(|e| lnet_core::CoreError::Driver {
            driver: "IPAM plugin".into(),
            message: format!("GetDefaultAddressSpaces: the answer is not one: {e}"),
            unreachable: false,
        })?;
    Ok(Learnt {
        spaces,
        wants_mac: caps.requires_mac_address,
    })
}

/// A plugin as an IPAM driver.
#[derive(Debug)]
pub struct RemoteIpam {
    plugin: Plugin<Learnt>,
}

impl RemoteIpam {
    /// The plugin called `name`, looked for in `dirs` when first used.
    pub fn new(name: &str, dirs: Arc<Dirs>, bounds: Bounds, own: Option<PathBuf>) -> Self {
        RemoteIpam {
            plugin: Plugin::new(
                name,
                ("IpamDriver", "IPAM plugin"),
                dirs,
                bounds,
                own,
                learn,
            ),
        }
    }

    /// `/IpamDriver.<method>`, its answer read as `T`.
    fn ask<T: serde::de::DeserializeOwned>(&self, method: &str, body: Value) -> Result<T> {
        let v = self.plugin.call(method, body, false)?;
        serde_json::from_value(v).map_err(|e| {
            self.plugin
                .err(format!("{method}: the answer is not one: {e}"), false)
        })
    }

    /// An address as the plugin wrote it: with a prefix length, as Docker's protocol says,
    /// or bare, as some plugins write it.
    fn address(&self, call: &str, said: &str) -> Result<IpAddr> {
        said.parse::<IpNet>()
            .map(|n| n.addr())
            .or_else(|_| said.parse::<IpAddr>())
            .map_err(|_| {
                self.plugin.err(
                    format!("{call}: it answered {said:?}, not an address"),
                    false,
                )
            })
    }
}

impl IpamDriver for RemoteIpam {
    fn name(&self) -> &str {
        &self.plugin.name
    }

    fn prepare(&self) -> Result<()> {
        self.plugin.activate().map(drop)
    }

    fn reachable(&self) -> std::result::Result<(), String> {
        self.plugin.reachable()
    }

    fn request_pool(&self, ask: &PoolAsk) -> Result<PoolGrant> {
        let (_, learnt) = self.plugin.activate()?;
        let space = if ask.global {
            learnt.spaces.global_default_address_space
        } else {
            learnt.spaces.local_default_address_space
        };
        let got: RequestPoolResponse = self.ask(
            "RequestPool",
            json!({
                "AddressSpace": space,
                "Pool": ask.pool.map(|p| p.to_string()).unwrap_or_default(),
                "SubPool": ask.sub_pool.map(|p| p.to_string()).unwrap_or_default(),
                "Options": ask.options,
                "V6": ask.v6,
            }),
        )?;
        let grant = (|| {
            let pool: IpNet = got.pool.parse().map_err(|_| {
                self.plugin.err(
                    format!("RequestPool: it answered pool {:?}, not a CIDR", got.pool),
                    false,
                )
            })?;
            if got.pool_id.is_empty() {
                return Err(self.plugin.err("RequestPool: it answered no PoolID", false));
            }
            let gateway = got
                .data
                .get("com.docker.network.gateway")
                .map(|g| self.address("RequestPool", g))
                .transpose()?;
            Ok(PoolGrant {
                id: got.pool_id.clone(),
                pool,
                space: space.clone(),
                gateway,
            })
        })();
        if grant.is_err() && !got.pool_id.is_empty() {
            // Granted something lnet cannot use: given back.
            let _ = self.release_pool(&got.pool_id);
        }
        grant
    }

    fn release_pool(&self, pool_id: &str) -> Result<()> {
        self.plugin
            .call("ReleasePool", json!({ "PoolID": pool_id }), false)
            .map(drop)
    }

    fn request_address(&self, pool_id: &str, ask: &AddressAsk) -> Result<IpAddr> {
        let (_, learnt) = self.plugin.activate()?;
        let mut options = BTreeMap::new();
        if ask.gateway {
            options.insert(
                "RequestAddressType",
                "com.docker.network.gateway".to_string(),
            );
        }
        if learnt.wants_mac
            && let Some(mac) = &ask.mac
        {
            options.insert(lnet_plugin::MAC, mac.clone());
        }
        let got: RequestAddressResponse = self.ask(
            "RequestAddress",
            json!({
                "PoolID": pool_id,
                "Address": ask.preferred.map(|a| a.to_string()).unwrap_or_default(),
                "Options": options,
            }),
        )?;
        self.address("RequestAddress", &got.address)
    }

    fn release_address(&self, pool_id: &str, ip: IpAddr) -> Result<()> {
        self.plugin
            .call(
                "ReleaseAddress",
                json!({ "PoolID": pool_id, "Address": ip.to_string() }),
                false,
            )
            .map(drop)
    }
}
