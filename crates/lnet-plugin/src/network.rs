//! `/NetworkDriver.*`: requests and answers, field names as dockerd writes them.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Options as dockerd sends them: any JSON, decoded by [`crate::options`].
pub type Options = serde_json::Map<String, serde_json::Value>;

/// `GetCapabilities`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Capabilities {
    /// `local` or `global`.
    pub scope: String,
    /// `local` or `global`: where the network's connectivity reaches.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub connectivity_scope: String,
}

/// One pool of a network, as IPAM gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamData {
    /// The address space.
    #[serde(default)]
    pub address_space: String,
    /// The pool.
    pub pool: IpNet,
    /// The gateway, with the pool's prefix length.
    #[serde(default)]
    pub gateway: Option<IpNet>,
    /// Addresses set aside, by name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub aux_addresses: BTreeMap<String, IpNet>,
}

/// `CreateNetwork`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateNetwork {
    /// dockerd's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// `com.docker.network.generic` (the `-o` options), `com.docker.network.enable_ipv6`, ….
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: Options,
    /// IPv4 pools.
    #[serde(rename = "IPv4Data", default, deserialize_with = "null_as_default")]
    pub ipv4_data: Vec<IpamData>,
    /// IPv6 pools.
    #[serde(rename = "IPv6Data", default, deserialize_with = "null_as_default")]
    pub ipv6_data: Vec<IpamData>,
}

/// `DeleteNetwork`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteNetwork {
    /// dockerd's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// An endpoint's interface: what dockerd asks for in `CreateEndpoint`, and what the driver
/// answers when dockerd left it to the driver. Empty strings mean "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointInterface {
    /// IPv4 address with its prefix length (`10.99.0.5/24`).
    #[serde(default)]
    pub address: String,
    /// IPv6 address with its prefix length.
    #[serde(rename = "AddressIPv6", default)]
    pub address_ipv6: String,
    /// MAC (`aa:bb:cc:dd:ee:ff`).
    #[serde(default)]
    pub mac_address: String,
}

/// `CreateEndpoint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateEndpoint {
    /// dockerd's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// dockerd's endpoint id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The interface dockerd asks for (`None`: all left to the driver).
    #[serde(rename = "Interface", default)]
    pub interface: Option<EndpointInterface>,
    /// Ports, the MAC in base64, … (see [`crate::options`]).
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: Options,
}

/// `CreateEndpoint`'s answer: the interface when the driver chose what dockerd left open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateEndpointResponse {
    /// `None` when dockerd gave the addresses and the MAC.
    #[serde(rename = "Interface", skip_serializing_if = "Option::is_none", default)]
    pub interface: Option<EndpointInterface>,
}

/// `DeleteEndpoint`, `Leave`, `EndpointOperInfo`, `RevokeExternalConnectivity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRef {
    /// dockerd's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// dockerd's endpoint id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// `Join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Join {
    /// dockerd's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// dockerd's endpoint id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The sandbox's network namespace path.
    #[serde(rename = "SandboxKey")]
    pub sandbox_key: String,
    /// Join options.
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: Options,
}

/// The interface a join hands dockerd: `src_name` exists in dockerd's namespace; dockerd
/// moves it into the sandbox and names it `<dst_prefix><n>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InterfaceName {
    /// Its name now.
    pub src_name: String,
    /// The prefix of its name in the sandbox (`eth`).
    pub dst_prefix: String,
}

/// A route a join asks dockerd to add in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StaticRoute {
    /// The destination prefix.
    pub destination: String,
    /// 0: via `next_hop`; 1: connected.
    #[serde(default)]
    pub route_type: i32,
    /// The next hop.
    #[serde(default)]
    pub next_hop: String,
}

/// `Join`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinResponse {
    /// The interface to move into the sandbox.
    #[serde(default)]
    pub interface_name: Option<InterfaceName>,
    /// The IPv4 gateway (empty: none).
    #[serde(default)]
    pub gateway: String,
    /// The IPv6 gateway (empty: none).
    #[serde(rename = "GatewayIPv6", default)]
    pub gateway_ipv6: String,
    /// Routes to add.
    #[serde(default, deserialize_with = "null_as_default")]
    pub static_routes: Vec<StaticRoute>,
    /// dockerd should not give the sandbox its own gateway service network.
    #[serde(default)]
    pub disable_gateway_service: bool,
}

/// `ProgramExternalConnectivity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramExternalConnectivity {
    /// dockerd's network id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// dockerd's endpoint id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// Ports to publish (see [`crate::options`]).
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: Options,
}

/// `null` read as the empty value: dockerd sends `"Options": null` and `"AuxAddresses":
/// null` where it has nothing.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
