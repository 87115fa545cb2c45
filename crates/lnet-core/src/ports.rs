//! Published-port requests: Docker's `-p` syntax, its checks, and the expansion of a
//! request into one host port per container port.
//!
//! A request is `[host-ip:][host-port[-end]:]container-port[-end][/proto]` (IPv6 host
//! addresses in brackets: `[::1]:8080:80`). As in Docker: a container range needs a host
//! range of the same length (or none); a single container port with a host range takes one
//! free port of the range; no host port takes an ephemeral one.

use std::net::IpAddr;

use lnet_store::Proto;

use crate::error::{CoreError, Result};

/// The request field named in errors.
pub const FIELD: &str = "PortBindings";

/// One published-port request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// Protocol (default tcp).
    pub proto: Proto,
    /// Container port range, inclusive (one port: start == end).
    pub container: (u16, u16),
    /// Host address; `None`: the network's default (`host_binding_ipv4`, else all).
    pub host_ip: Option<IpAddr>,
    /// Host port range, inclusive; `None`: ephemeral.
    pub host: Option<(u16, u16)>,
}

fn bad(value: &str, reason: impl Into<String>) -> CoreError {
    CoreError::invalid(FIELD, value, reason)
}

fn parse_range(whole: &str, what: &str, s: &str) -> Result<(u16, u16)> {
    let port = |p: &str| -> Result<u16> {
        match p.trim().parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            _ => Err(bad(
                whole,
                format!("{what} {p:?} is not a port: ports are whole numbers from 1 to 65535"),
            )),
        }
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(s)?;
            (p, p)
        }
    };
    if a > b {
        return Err(bad(
            whole,
            format!("{what} range {a}-{b} is inverted: write the lower port first"),
        ));
    }
    Ok((a, b))
}

impl PortSpec {
    /// Checks a request built field by field (Docker's API `PortBindings`).
    pub fn new(
        proto: Proto,
        container: (u16, u16),
        host_ip: Option<IpAddr>,
        host: Option<(u16, u16)>,
    ) -> Result<PortSpec> {
        let spec = PortSpec {
            proto,
            container,
            host_ip,
            host,
        };
        spec.validate()?;
        Ok(spec)
    }

    fn validate(&self) -> Result<()> {
        let text = self.to_string();
        let check = |what: &str, (a, b): (u16, u16)| -> Result<()> {
            if a == 0 || b == 0 {
                return Err(bad(
                    &text,
                    format!("{what} 0 is not a port: ports are 1 to 65535"),
                ));
            }
            if a > b {
                return Err(bad(
                    &text,
                    format!("{what} range {a}-{b} is inverted: write the lower port first"),
                ));
            }
            Ok(())
        };
        check("container port", self.container)?;
        if let Some(h) = self.host {
            check("host port", h)?;
            let clen = self.container.1 - self.container.0;
            let hlen = h.1 - h.0;
            if clen > 0 && clen != hlen {
                return Err(bad(
                    &text,
                    format!(
                        "the container range has {} ports but the host range has {}: give a host range of the same length, or one host port for one container port",
                        clen as u32 + 1,
                        hlen as u32 + 1
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Parses `[host-ip:][host-port[-end]:]container-port[-end][/proto]`.
    pub fn parse(s: &str) -> Result<PortSpec> {
        let (rest, proto) = match s.rsplit_once('/') {
            Some((r, p)) => (
                r,
                Proto::parse(FIELD, p).map_err(|_| {
                    bad(
                        s,
                        format!("unknown protocol {p:?}: the protocol is tcp, udp or sctp"),
                    )
                })?,
            ),
            None => (s, Proto::Tcp),
        };
        // An IPv6 host address is bracketed; split it off first so its colons do not count.
        let (host_ip, rest) = if let Some(r) = rest.strip_prefix('[') {
            let (ip, after) = r.split_once(']').ok_or_else(|| {
                bad(
                    s,
                    "an IPv6 host address is written in brackets: [::1]:8080:80",
                )
            })?;
            let after = after
                .strip_prefix(':')
                .ok_or_else(|| bad(s, "a host address is followed by ':' and the ports"))?;
            (Some(ip), after)
        } else {
            (None, rest)
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, ctr) = match (host_ip, parts.as_slice()) {
            (None, [c]) => (None, None, *c),
            (None, [h, c]) => (None, Some(*h), *c),
            (None, [ip, h, c]) => (Some(*ip), Some(*h), *c),
            (Some(ip), [h, c]) => (Some(ip), Some(*h), *c),
            (Some(ip), [c]) => (Some(ip), None, *c),
            _ => {
                return Err(bad(
                    s,
                    "expected [host-ip:][host-port:]container-port[/protocol], e.g. 127.0.0.1:8080:80/tcp",
                ));
            }
        };
        let host_ip = match ip {
            None | Some("") => None,
            Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| {
                bad(
                    s,
                    format!("host address {ip:?} is not an IPv4 or IPv6 address"),
                )
            })?),
        };
        let host = match host {
            None | Some("") => None,
            Some(h) => Some(parse_range(s, "host port", h)?),
        };
        let container = parse_range(s, "container port", ctr)?;
        PortSpec::new(proto, container, host_ip, host)
    }

    /// Number of container ports.
    pub fn len(&self) -> usize {
        (self.container.1 - self.container.0) as usize + 1
    }

    /// Never true: a request has at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The host port request for the `i`th container port: an exact port, a range to pick
    /// from, or `(0, 0)` for an ephemeral one.
    pub fn host_request(&self, i: usize) -> (u16, u16) {
        match self.host {
            None => (0, 0),
            Some((a, b)) if self.container.0 == self.container.1 => (a, b),
            Some((a, _)) => {
                let p = a + i as u16;
                (p, p)
            }
        }
    }

    /// Whether the host port was chosen by the user (not ephemeral, not from a range).
    pub fn exact_host(&self) -> bool {
        matches!(self.host, Some((a, b)) if a == b || self.container.0 != self.container.1)
    }
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let range = |(a, b): (u16, u16)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        };
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        match self.host {
            Some(h) => write!(f, "{}:", range(h))?,
            None if self.host_ip.is_some() => write!(f, ":")?,
            None => {}
        }
        write!(f, "{}/{}", range(self.container), self.proto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_forms_parse() {
        let p = PortSpec::parse("80").unwrap();
        assert_eq!(
            (p.proto, p.container, p.host_ip, p.host),
            (Proto::Tcp, (80, 80), None, None)
        );
        let p = PortSpec::parse("8080:80/udp").unwrap();
        assert_eq!(
            (p.proto, p.host, p.container),
            (Proto::Udp, Some((8080, 8080)), (80, 80))
        );
        let p = PortSpec::parse("127.0.0.1:8080-8081:80-81/sctp").unwrap();
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(
            (p.host, p.container, p.proto),
            (Some((8080, 8081)), (80, 81), Proto::Sctp)
        );
        assert_eq!(p.host_request(1), (8081, 8081));
        let p = PortSpec::parse("[::1]:9000:90").unwrap();
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        let p = PortSpec::parse("127.0.0.1::80").unwrap();
        assert_eq!((p.host, p.host_request(0)), (None, (0, 0)));
        let p = PortSpec::parse("8000-8010:80").unwrap();
        assert_eq!(p.host_request(0), (8000, 8010));
        assert!(!p.exact_host());
        for s in [
            "80",
            "8080:80/udp",
            "127.0.0.1:8080-8081:80-81/sctp",
            "[::1]:9000:90/tcp",
            "127.0.0.1::80/tcp",
        ] {
            let p = PortSpec::parse(s).unwrap();
            assert_eq!(PortSpec::parse(&p.to_string()).unwrap(), p, "{s}");
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases = [
            ("0", "1 to 65535"),
            ("65536", "1 to 65535"),
            ("80/icmp", "tcp, udp or sctp"),
            ("90-80", "inverted"),
            ("9000-8000:80", "inverted"),
            ("8000-8001:80-82", "same length"),
            ("8000:80-82", "same length"),
            ("nope:80:80", "not an IPv4 or IPv6"),
            ("[::1:80", "brackets"),
            ("1:2:3:4", "expected"),
            ("http", "not a port"),
        ];
        for (s, want) in cases {
            let e = PortSpec::parse(s).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains(FIELD), "{s}: {e}");
        }
        let e = PortSpec::new(Proto::Tcp, (0, 0), None, None).unwrap_err();
        assert!(e.to_string().contains("1 to 65535"), "{e}");
    }
}
