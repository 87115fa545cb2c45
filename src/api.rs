//! The JSON of the API: Docker Engine's network objects and requests (shaped as Docker's,
//! field for field, so the `docker` CLI and SDKs read them), and lnet's own sandbox objects.
//! Pure: built from [`lnet_core::Records`], no I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;

use lnet_core::{EndpointRecord, NetworkRecord, Records, SandboxRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The Docker API version lnet speaks (Docker 28.2's), advertised on `/_ping` and
/// `/version`; clients negotiate down to it.
pub const API_VERSION: &str = "1.50";
/// The oldest API version accepted in a `/vX.Y/` prefix (Docker's minimum).
pub const MIN_API_VERSION: &str = "1.24";

/// The networks every daemon has, which cannot be removed.
pub const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

/// `created_unix_nanos` as Docker prints it (RFC 3339 with nanoseconds, UTC).
pub fn rfc3339(unix_nanos: u128) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(unix_nanos as i128)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

fn addr_or_empty(a: Option<ipnet::IpNet>) -> String {
    a.map(|a| a.to_string()).unwrap_or_default()
}

/// A network as `GET /networks/{id}` returns it; `containers` fills `Containers` (the list
/// endpoint leaves it empty, as Docker does).
pub fn network_json(rec: &Records, net: &NetworkRecord, containers: bool) -> Value {
    let config: Vec<Value> = net
        .pools
        .iter()
        .map(|p| {
            let mut c = serde_json::Map::new();
            c.insert("Subnet".into(), p.pool.to_string().into());
            if let Some(g) = p.gateway {
                c.insert("Gateway".into(), g.addr().to_string().into());
            }
            if let Some(r) = p.sub_pool {
                c.insert("IPRange".into(), r.to_string().into());
            }
            if !p.aux_addresses.is_empty() {
                c.insert("AuxiliaryAddresses".into(), json!(p.aux_addresses));
            }
            Value::Object(c)
        })
        .collect();
    let mut members = serde_json::Map::new();
    if containers {
        for ep in rec.endpoints.iter().filter(|e| e.network_id == net.id) {
            let Some(join) = &ep.join else { continue };
            let name = rec
                .sandboxes
                .iter()
                .find(|s| s.id == join.sandbox_id)
                .map_or_else(|| ep.name.clone(), |s| s.container_id.clone());
            members.insert(
                join.sandbox_id.clone(),
                json!({
                    "Name": name,
                    "EndpointID": ep.id,
                    "MacAddress": ep.mac.clone().unwrap_or_default(),
                    "IPv4Address": addr_or_empty(ep.addr_v4),
                    "IPv6Address": addr_or_empty(ep.addr_v6),
                }),
            );
        }
    }
    json!({
        "Name": net.name,
        "Id": net.id,
        "Created": rfc3339(net.created_unix_nanos),
        "Scope": net.scope,
        "Driver": net.driver,
        "EnableIPv4": true,
        "EnableIPv6": net.enable_ipv6,
        "IPAM": {
            "Driver": if net.ipam.driver.is_empty() { "default" } else { net.ipam.driver.as_str() },
            "Options": net.ipam.options,
            "Config": config,
        },
        "Internal": net.internal,
        "Attachable": net.attachable,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": members,
        "Options": net.options,
        "Labels": net.labels,
    })
}

/// Resolves a network as Docker does: full id, then exact name, then unique id prefix.
pub fn find_network<'a>(rec: &'a Records, key: &str) -> Result<&'a NetworkRecord, Lookup> {
    find(&rec.networks, key, |n| (&n.id, &n.name)).map(|n| &**n)
}

/// Resolves a sandbox by full id, container name, or unique id prefix.
pub fn find_sandbox<'a>(rec: &'a Records, key: &str) -> Result<&'a SandboxRecord, Lookup> {
    find(&rec.sandboxes, key, |s| (&s.id, &s.container_id)).map(|s| &**s)
}

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing matches.
    NotFound,
    /// Several objects have ids starting with the key.
    Ambiguous(usize),
}

fn find<'a, T>(
    items: &'a [T],
    key: &str,
    id_name: impl Fn(&T) -> (&String, &String),
) -> Result<&'a T, Lookup> {
    if key.is_empty() {
        return Err(Lookup::NotFound);
    }
    if let Some(x) = items.iter().find(|x| id_name(x).0 == key) {
        return Ok(x);
    }
    if let Some(x) = items.iter().find(|x| id_name(x).1 == key) {
        return Ok(x);
    }
    let mut prefixed = items.iter().filter(|x| id_name(x).0.starts_with(key));
    match (prefixed.next(), prefixed.next()) {
        (Some(x), None) => Ok(x),
        (None, _) => Err(Lookup::NotFound),
        (Some(_), Some(_)) => Err(Lookup::Ambiguous(2 + prefixed.count())),
    }
}

/// `POST /networks/create`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreate {
    /// Required.
    pub name: Option<String>,
    /// Ignored: duplicates are always refused (as in Docker 25+).
    pub check_duplicate: Option<bool>,
    /// Default `bridge`.
    pub driver: Option<String>,
    /// `local` (or empty).
    pub scope: Option<String>,
    /// Internal network.
    pub internal: Option<bool>,
    /// Attachable.
    pub attachable: Option<bool>,
    /// Swarm ingress: refused when true.
    pub ingress: Option<bool>,
    /// Config-only networks: refused when true.
    pub config_only: Option<bool>,
    /// IPv4 (Docker 28): refused when false on a bridge network.
    #[serde(rename = "EnableIPv4")]
    pub enable_ipv4: Option<bool>,
    /// IPv6.
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: Option<bool>,
    /// IPAM.
    #[serde(rename = "IPAM")]
    pub ipam: Option<Ipam>,
    /// Driver options.
    pub options: Option<BTreeMap<String, String>>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Swarm config source: ignored when empty.
    pub config_from: Option<Value>,
}

/// `IPAM` of a create request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    /// IPAM driver (`default`, `null`).
    pub driver: Option<String>,
    /// Per-family pools.
    pub config: Option<Vec<IpamConfig>>,
    /// Driver options.
    pub options: Option<BTreeMap<String, String>>,
}

/// One `IPAM.Config[]` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    /// Subnet (CIDR).
    pub subnet: Option<String>,
    /// Sub-range for endpoint addresses (CIDR).
    #[serde(rename = "IPRange")]
    pub ip_range: Option<String>,
    /// Gateway address.
    pub gateway: Option<String>,
    /// Reserved addresses by name.
    pub auxiliary_addresses: Option<BTreeMap<String, String>>,
}

/// `POST /networks/{id}/connect`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Connect {
    /// The sandbox (lnet's container): id, name or id prefix.
    pub container: Option<String>,
    /// Endpoint settings.
    pub endpoint_config: Option<EndpointSettings>,
    /// lnet's extension: ports to publish, in `docker run -p` syntax.
    pub publish: Option<Vec<String>>,
}

/// `EndpointConfig` of a connect request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    /// Requested addresses.
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpam>,
    /// Legacy links: refused when given.
    pub links: Option<Vec<String>>,
    /// DNS aliases.
    pub aliases: Option<Vec<String>>,
    /// A MAC address.
    pub mac_address: Option<String>,
    /// Driver options of the endpoint.
    pub driver_opts: Option<BTreeMap<String, String>>,
}

/// `EndpointConfig.IPAMConfig`.
#[derive(Debug, Deserialize)]
pub struct EndpointIpam {
    /// IPv4 address.
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: Option<String>,
    /// IPv6 address.
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: Option<String>,
    /// Link-local addresses: refused when given.
    #[serde(rename = "LinkLocalIPs")]
    pub link_local_ips: Option<Vec<String>>,
}

/// `POST /networks/{id}/disconnect`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Disconnect {
    /// The sandbox.
    pub container: Option<String>,
    /// Remove the endpoint even if the sandbox is gone.
    pub force: Option<bool>,
}

/// `POST /lnet/sandboxes/create`: lnet's own API.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SandboxCreate {
    /// The container name (unique).
    pub name: Option<String>,
    /// Hostname.
    pub hostname: Option<String>,
    /// Domain name.
    pub domainname: Option<String>,
    /// DNS servers.
    pub dns: Option<Vec<String>>,
    /// DNS search domains.
    pub dns_search: Option<Vec<String>>,
    /// DNS options.
    pub dns_options: Option<Vec<String>>,
    /// `host:ip` entries for the hosts file.
    pub extra_hosts: Option<Vec<String>>,
    /// Adopt this network namespace instead of creating one.
    pub netns_path: Option<String>,
    /// Share the host's network namespace.
    pub host_network: Option<bool>,
}

/// A sandbox as `GET /lnet/sandboxes/{id}` returns it, with its endpoints.
pub fn sandbox_json(rec: &Records, sb: &SandboxRecord) -> Value {
    let endpoints: Vec<Value> = rec
        .endpoints
        .iter()
        .filter(|e| e.join.as_ref().is_some_and(|j| j.sandbox_id == sb.id))
        .map(|e| endpoint_json(rec, e))
        .collect();
    json!({
        "Id": sb.id,
        "Name": sb.container_id,
        "Key": sb.netns_path,
        "OwnsNetns": sb.owns_netns,
        "HostNetwork": sb.host_mode,
        "State": sb.state.to_string(),
        "Hostname": sb.hostname,
        "Domainname": sb.domainname,
        "Dns": sb.dns,
        "DnsSearch": sb.dns_search,
        "DnsOptions": sb.dns_options,
        "ExtraHosts": sb.extra_hosts.iter().map(|(h, ip)| format!("{h}:{ip}")).collect::<Vec<_>>(),
        "HostsPath": sb.files_dir.join("hosts"),
        "ResolvConfPath": sb.files_dir.join("resolv.conf"),
        "Endpoints": endpoints,
    })
}

fn endpoint_json(rec: &Records, e: &EndpointRecord) -> Value {
    let net = rec.networks.iter().find(|n| n.id == e.network_id);
    let ports: Vec<Value> = e
        .ports
        .iter()
        .map(|p| {
            json!({
                "Proto": p.proto.as_str(),
                "HostIp": p.host_ip.to_string(),
                "HostPort": p.host_port,
                "ContainerPort": p.container_port,
            })
        })
        .collect();
    json!({
        "Name": e.name,
        "EndpointID": e.id,
        "NetworkID": e.network_id,
        "Network": net.map(|n| n.name.clone()).unwrap_or_default(),
        "Interface": e.join.as_ref().and_then(|j| j.container_ifname.clone()).unwrap_or_default(),
        "MacAddress": e.mac.clone().unwrap_or_default(),
        "IPv4Address": addr_or_empty(e.addr_v4),
        "IPv6Address": addr_or_empty(e.addr_v6),
        "Aliases": e.aliases,
        "Ports": ports,
    })
}

/// Parses an `extra_hosts` entry `name:ip` (the IP may be IPv6, so split at the first `:`).
pub fn parse_extra_host(s: &str) -> Option<(String, IpAddr)> {
    let (h, ip) = s.split_once(':')?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    Some((h.to_string(), ip.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_docker_prints_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }

    #[test]
    fn lookups_go_id_then_name_then_prefix() {
        let items = vec![
            ("abc123".to_string(), "web".to_string()),
            ("abd456".to_string(), "abc123x".to_string()),
            ("ffff".to_string(), "abc".to_string()),
        ];
        let f = |k| find(&items, k, |x| (&x.0, &x.1)).map(|x| x.0.as_str());
        assert_eq!(f("abc123"), Ok("abc123"));
        assert_eq!(f("abc"), Ok("ffff"), "an exact name beats an id prefix");
        assert_eq!(f("abd"), Ok("abd456"));
        assert_eq!(f("ab"), Err(Lookup::Ambiguous(2)));
        assert_eq!(f("zz"), Err(Lookup::NotFound));
        assert_eq!(f(""), Err(Lookup::NotFound));
    }

    #[test]
    fn extra_hosts_split_at_the_first_colon() {
        assert_eq!(
            parse_extra_host("db:10.0.0.5"),
            Some(("db".into(), "10.0.0.5".parse().unwrap()))
        );
        assert_eq!(
            parse_extra_host("v6:[fd00::1]"),
            Some(("v6".into(), "fd00::1".parse().unwrap()))
        );
        assert_eq!(parse_extra_host("nocolon"), None);
    }
}
