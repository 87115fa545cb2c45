//! The options dockerd packs into its calls, decoded and checked: a network's `-o`
//! options and IPv6 flag, an endpoint's MAC (base64, as Go marshals a byte slice), its
//! published ports and its exposed ports.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::ProtocolError;
use crate::network::Options;

/// `com.docker.network.generic`: the `-o` options of `docker network create`.
pub const GENERIC: &str = "com.docker.network.generic";
/// `com.docker.network.enable_ipv6`.
pub const ENABLE_IPV6: &str = "com.docker.network.enable_ipv6";
/// `com.docker.network.endpoint.macaddress`.
pub const MAC: &str = "com.docker.network.endpoint.macaddress";
/// `com.docker.network.portmap`.
pub const PORTMAP: &str = "com.docker.network.portmap";
/// `com.docker.network.endpoint.exposedports`.
pub const EXPOSED: &str = "com.docker.network.endpoint.exposedports";

/// A transport protocol, as dockerd numbers it (IANA protocol numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Proto {
    /// 6.
    Tcp,
    /// 17.
    Udp,
    /// 132.
    Sctp,
}

impl TryFrom<u8> for Proto {
    type Error = String;
    fn try_from(n: u8) -> Result<Proto, String> {
        match n {
            6 => Ok(Proto::Tcp),
            17 => Ok(Proto::Udp),
            132 => Ok(Proto::Sctp),
            other => Err(format!(
                "protocol {other} is not one lnet publishes (6 tcp, 17 udp, 132 sctp)"
            )),
        }
    }
}

impl From<Proto> for u8 {
    fn from(p: Proto) -> u8 {
        match p {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
}

/// One published port (`-p`), as dockerd sends it. An empty `host_ip` means every
/// address; a `host_port` of 0 means any; `host_port_end` above `host_port` is a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    /// The protocol.
    pub proto: Proto,
    /// The container's address (empty: the endpoint's).
    #[serde(rename = "IP", default)]
    pub ip: String,
    /// The container's port.
    pub port: u16,
    /// The host address (empty: every address).
    #[serde(rename = "HostIP", default)]
    pub host_ip: String,
    /// The host port (0: any).
    #[serde(default)]
    pub host_port: u16,
    /// The last host port of a range (0 or `host_port`: one port).
    #[serde(default)]
    pub host_port_end: u16,
}

impl PortBinding {
    /// The host address, `None` for every address.
    pub fn host_addr(&self) -> Result<Option<IpAddr>, String> {
        if self.host_ip.is_empty() {
            return Ok(None);
        }
        self.host_ip
            .parse()
            .map(Some)
            .map_err(|_| format!("{PORTMAP}: HostIP {:?} is not an IP address", self.host_ip))
    }
}

/// One exposed port (`EXPOSE`, `--expose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExposedPort {
    /// The protocol.
    pub proto: Proto,
    /// The port.
    pub port: u16,
}

/// A network's options, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkOptions {
    /// The `-o` options, each a string.
    pub generic: BTreeMap<String, String>,
    /// IPv6 is on.
    pub enable_ipv6: bool,
}

fn invalid(call: &'static str, what: String) -> ProtocolError {
    ProtocolError::Invalid { call, what }
}

/// A network's options in `CreateNetwork`.
pub fn network_options(call: &'static str, o: &Options) -> Result<NetworkOptions, ProtocolError> {
    let generic = match o.get(GENERIC) {
        None | Some(serde_json::Value::Null) => BTreeMap::new(),
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
                // `-o` values are strings; a number or a boolean is taken as written.
                serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
                    Ok((k.clone(), v.to_string()))
                }
                other => Err(invalid(
                    call,
                    format!("{GENERIC}[{k}]: expected a string, got {other}"),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(invalid(
                call,
                format!("{GENERIC}: expected an object of strings, got {other}"),
            ));
        }
    };
    let enable_ipv6 = match o.get(ENABLE_IPV6) {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(other) => {
            return Err(invalid(
                call,
                format!("{ENABLE_IPV6}: expected true or false, got {other}"),
            ));
        }
    };
    Ok(NetworkOptions {
        generic,
        enable_ipv6,
    })
}

/// A MAC as dockerd writes it into an endpoint's options: base64 of its six bytes.
pub fn mac_option(mac: [u8; 6]) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// The MAC dockerd asks an endpoint to have: base64 of its six bytes, as Go marshals a
/// `net.HardwareAddr`. `None` when it asks for none.
pub fn endpoint_mac(call: &'static str, o: &Options) -> Result<Option<[u8; 6]>, ProtocolError> {
    let s = match o.get(MAC) {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => return Ok(None),
        Some(serde_json::Value::String(s)) => s,
        Some(other) => {
            return Err(invalid(
                call,
                format!("{MAC}: expected a base64 string, got {other}"),
            ));
        }
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| invalid(call, format!("{MAC}: {s:?} is not base64 ({e})")))?;
    <[u8; 6]>::try_from(bytes.as_slice())
        .map(Some)
        .map_err(|_| {
            invalid(
                call,
                format!("{MAC}: {s:?} holds {} bytes; a MAC has 6", bytes.len()),
            )
        })
}

fn list<T: serde::de::DeserializeOwned>(
    call: &'static str,
    o: &Options,
    key: &str,
) -> Result<Vec<T>, ProtocolError> {
    match o.get(key) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| invalid(call, format!("{key}: {e}")))
        }
    }
}

/// The ports an endpoint publishes (`com.docker.network.portmap`). A range whose end is
/// below its start is refused.
pub fn port_bindings(call: &'static str, o: &Options) -> Result<Vec<PortBinding>, ProtocolError> {
    let ports: Vec<PortBinding> = list(call, o, PORTMAP)?;
    for p in &ports {
        if p.host_port_end != 0 && p.host_port_end < p.host_port {
            return Err(invalid(
                call,
                format!(
                    "{PORTMAP}: host ports {}-{} run backwards; the end must be at least the start",
                    p.host_port, p.host_port_end
                ),
            ));
        }
        p.host_addr().map_err(|e| invalid(call, e))?;
    }
    Ok(ports)
}

/// The ports an endpoint exposes (`com.docker.network.endpoint.exposedports`).
pub fn exposed_ports(call: &'static str, o: &Options) -> Result<Vec<ExposedPort>, ProtocolError> {
    list(call, o, EXPOSED)
}
