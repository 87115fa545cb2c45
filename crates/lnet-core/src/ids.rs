//! Identifiers, names and MAC addresses.

use std::net::Ipv4Addr;

use rand::Rng;

use crate::error::{CoreError, Result};

/// A new random 64-hex id, as Docker's.
pub(crate) fn new_id() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex(&bytes)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An id given by the caller (an engine's, through the plugin protocol): 64 lowercase hex
/// digits, as Docker's, so that it can never be taken for a name or a prefix of another.
pub(crate) fn validate_id(field: &str, id: &str) -> Result<()> {
    if id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(CoreError::invalid(
            field,
            id,
            "an id is 64 lowercase hexadecimal digits, as Docker's",
        ))
    }
}

/// The first 12 characters, as Docker shows ids.
pub fn short_id(id: &str) -> &str {
    // An id is hex; anything else is shown whole rather than cut inside a character.
    id.get(..id.len().min(12)).unwrap_or(id)
}

/// Docker's MAC for a container address: `02:42` followed by the IPv4 address.
pub(crate) fn mac_from_ipv4(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// A random locally administered unicast MAC with Docker's `02:42` prefix.
pub(crate) fn random_mac() -> [u8; 6] {
    let r: [u8; 4] = rand::rng().random();
    [0x02, 0x42, r[0], r[1], r[2], r[3]]
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (or `-` separated); `field` names the input in errors.
pub fn parse_mac(field: &str, s: &str) -> Result<[u8; 6]> {
    let bad = || {
        CoreError::invalid(
            field,
            s,
            "a MAC address is six hex bytes like 02:42:ac:11:00:02, unicast (lowest bit of the first byte clear)",
        )
    };
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        mac[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(bad());
    }
    Ok(mac)
}

/// Parses a CIDR subnet as users write it (`--subnet`, `--ip-range`, `IPAM.Config.Subnet`),
/// naming `field` in the error. Host bits are allowed and masked, as libnetwork does
/// (`10.1.2.3/16` is `10.1.0.0/16`).
pub fn parse_cidr(field: &str, s: &str) -> Result<ipnet::IpNet> {
    let net: ipnet::IpNet = s.trim().parse().map_err(|_| {
        CoreError::invalid(
            field,
            s,
            "expected a CIDR subnet such as 172.20.0.0/16 or fd00:1::/64 (address, '/', prefix length)",
        )
    })?;
    Ok(net.trunc())
}

/// Parses an IP address (`--ip`, `--gateway`, `--aux-address`), naming `field` in the error.
pub fn parse_ip(field: &str, s: &str) -> Result<std::net::IpAddr> {
    s.trim().parse().map_err(|_| {
        CoreError::invalid(
            field,
            s,
            "expected an IPv4 or IPv6 address such as 172.20.0.5 or fd00:1::5",
        )
    })
}

/// Validates an object name (network, endpoint, container): not empty or blank, no control
/// characters, no `/` (names appear in paths and URLs), at most 255 bytes.
pub(crate) fn validate_name(field: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(CoreError::invalid(
            field,
            name,
            "a name must not be empty or only whitespace",
        ));
    }
    if name.len() > 255 {
        return Err(CoreError::invalid(
            field,
            name,
            "a name is at most 255 bytes",
        ));
    }
    if name.chars().any(|c| c.is_control() || c == '/') {
        return Err(CoreError::invalid(
            field,
            name,
            "a name must not contain '/' or control characters",
        ));
    }
    Ok(())
}

/// Validates a Linux interface name: 1–15 bytes, none of `/`, `:`, whitespace, not `.`/`..`.
pub(crate) fn validate_ifname(field: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 15 {
        return Err(CoreError::invalid(
            field,
            name,
            "an interface name is 1 to 15 characters (the kernel's IFNAMSIZ)",
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(CoreError::invalid(
            field,
            name,
            "an interface name must not be '.' or '..' nor contain '/', ':' or whitespace",
        ));
    }
    Ok(())
}

/// A boolean option value, as the bridge driver and network flags accept it.
pub fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "t" | "yes" => Ok(true),
        "false" | "0" | "f" | "no" => Ok(false),
        _ => Err(CoreError::invalid(
            key,
            v,
            "expected a boolean: true or false",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
        assert_eq!(short_id(&a).len(), 12);
    }

    #[test]
    fn macs() {
        assert_eq!(
            format_mac(&mac_from_ipv4(Ipv4Addr::new(172, 17, 0, 2))),
            "02:42:ac:11:00:02"
        );
        assert_eq!(
            parse_mac("mac", "02:42:AC:11:00:02").unwrap(),
            [2, 0x42, 0xac, 0x11, 0, 2]
        );
        assert!(
            parse_mac("mac", "01:00:5e:00:00:01").is_err(),
            "multicast refused"
        );
        let e = parse_mac("mac", "zz").unwrap_err().to_string();
        assert!(e.contains("mac") && e.contains("six hex bytes"), "{e}");
        assert_eq!(random_mac()[..2], [0x02, 0x42]);
    }

    #[test]
    fn cidrs_and_addresses() {
        assert_eq!(
            parse_cidr("subnet", " 10.1.2.3/16").unwrap().to_string(),
            "10.1.0.0/16"
        );
        assert_eq!(
            parse_cidr("subnet", "fd00:1::5/64").unwrap().to_string(),
            "fd00:1::/64"
        );
        for bad in [
            "10.1.0.0",
            "10.1.0.0/33",
            "10.1.0/16",
            "fd00::/129",
            "",
            "x/8",
        ] {
            let e = parse_cidr("IPAM.Config.Subnet", bad).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("IPAM.Config.Subnet") && msg.contains("CIDR"),
                "{bad}: {msg}"
            );
            assert_eq!(e.kind(), crate::error::ErrorKind::InvalidInput);
        }
        assert_eq!(parse_ip("ip", " 10.0.0.1").unwrap().to_string(), "10.0.0.1");
        let msg = parse_ip("IPv4Address", "10.0.0.256")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("IPv4Address") && msg.contains("10.0.0.256"),
            "{msg}"
        );
    }

    #[test]
    fn names() {
        assert!(validate_name("name", "  ").is_err());
        assert!(validate_name("name", "a/b").is_err());
        validate_name("name", "my-net_1.x").unwrap();
        validate_ifname("bridge", "br-0123456789ab").unwrap();
        assert!(validate_ifname("bridge", "br-0123456789abc").is_err());
        assert!(validate_ifname("bridge", "a b").is_err());
    }
}
