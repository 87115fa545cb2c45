//! `/IpamDriver.*`: requests and answers, field names as dockerd writes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::network::null_as_default;

/// `GetCapabilities`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamCapabilities {
    /// dockerd should pass the endpoint's MAC in `RequestAddress`.
    #[serde(rename = "RequiresMACAddress", default)]
    pub requires_mac_address: bool,
    /// dockerd should replay every request at its start.
    #[serde(rename = "RequiresRequestReplay", default)]
    pub requires_request_replay: bool,
}

/// `GetDefaultAddressSpaces`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DefaultAddressSpaces {
    /// The local address space's name.
    pub local_default_address_space: String,
    /// The global address space's name.
    pub global_default_address_space: String,
}

/// `RequestPool`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestPool {
    /// The address space.
    #[serde(default)]
    pub address_space: String,
    /// The subnet asked for (empty: any).
    #[serde(default)]
    pub pool: String,
    /// The range inside it to hand addresses out of (empty: all of it).
    #[serde(default)]
    pub sub_pool: String,
    /// IPAM options.
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
    /// An IPv6 pool.
    #[serde(rename = "V6", default)]
    pub v6: bool,
}

/// `RequestPool`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestPoolResponse {
    /// The pool's id, which later calls name.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The pool (`10.99.0.0/24`).
    pub pool: String,
    /// Extra data.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// `ReleasePool`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasePool {
    /// The pool's id.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

/// `RequestAddress`. `options` holds `RequestAddressType:
/// com.docker.network.gateway` when the address is the network's gateway; a container's
/// request has `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestAddress {
    /// The pool's id.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The address asked for (empty: any).
    #[serde(default)]
    pub address: String,
    /// Request options.
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
}

impl RequestAddress {
    /// Whether this asks for the network's gateway.
    pub fn is_gateway(&self) -> bool {
        self.options.get("RequestAddressType").map(String::as_str)
            == Some("com.docker.network.gateway")
    }
}

/// `RequestAddress`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestAddressResponse {
    /// The address with the pool's prefix length (`10.99.0.5/24`).
    pub address: String,
    /// Extra data.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// `ReleaseAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReleaseAddress {
    /// The pool's id.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The address.
    pub address: String,
}
