//! Sysctls under `/proc/sys`.
//!
//! `/proc/sys/net/*` shows the network namespace of the **calling thread**.
//! These functions therefore act on whatever namespace the current thread
//! is in; to change a sysctl of another namespace, run them inside it:
//!
//! ```no_run
//! # fn main() -> lnet_kernel::Result<()> {
//! # let ns = lnet_kernel::Netns::current()?;
//! ns.run(|| lnet_kernel::sysctl::set("net.ipv4.ip_forward", "1"))??;
//! # Ok(()) }
//! ```

use std::fs;
use std::path::PathBuf;

use crate::error::{KernelError, Result};

const ROOT: &str = "/proc/sys";

/// Check a dotted key (`net.ipv4.ip_forward`) and turn it into a path.
fn key_path(key: &str) -> Result<PathBuf> {
    let bad = |reason: &str| KernelError::invalid(format!("sysctl {key:?}"), reason.to_string());
    if key.is_empty() {
        return Err(bad("empty key"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(bad(
            "key may only contain A-Z a-z 0-9 _ . - (use set_path for interface names with other characters)",
        ));
    }
    if key.split('.').any(str::is_empty) {
        return Err(bad(
            "empty path component (leading, trailing or double dot)",
        ));
    }
    Ok(PathBuf::from(format!("{ROOT}/{}", key.replace('.', "/"))))
}

/// Check explicit components (`["net", "ipv6", "conf", "eth0.100", "accept_ra"]`).
fn components_path(parts: &[&str]) -> Result<PathBuf> {
    let shown = parts.join("/");
    let bad = |reason: &str| KernelError::invalid(format!("sysctl {shown:?}"), reason.to_string());
    if parts.is_empty() {
        return Err(bad("no path components"));
    }
    let mut path = PathBuf::from(ROOT);
    for part in parts {
        if part.is_empty() || *part == "." || *part == ".." {
            return Err(bad("component is empty, \".\" or \"..\""));
        }
        if part.bytes().any(|b| b == b'/' || b == 0) {
            return Err(bad("component contains '/' or NUL"));
        }
        path.push(part);
    }
    Ok(path)
}

fn write(path: PathBuf, shown: &str, value: &str) -> Result<()> {
    fs::write(&path, value.as_bytes())
        .map_err(|e| KernelError::io(format!("set sysctl {shown} = {value:?}"), e))
}

fn read(path: PathBuf, shown: &str) -> Result<String> {
    let s =
        fs::read_to_string(&path).map_err(|e| KernelError::io(format!("get sysctl {shown}"), e))?;
    Ok(s.trim_end_matches('\n').to_string())
}

/// Write `value` to the sysctl `key` (dotted form, e.g.
/// `net.ipv6.conf.br0.accept_ra`) in the calling thread's network namespace.
pub fn set(key: &str, value: &str) -> Result<()> {
    write(key_path(key)?, key, value)
}

/// Read the sysctl `key` (trailing newline removed) in the calling thread's
/// network namespace.
pub fn get(key: &str) -> Result<String> {
    read(key_path(key)?, key)
}

/// Like [`set`], with the path given as components, for interface names
/// that contain dots (`&["net", "ipv4", "conf", "eth0.100", "forwarding"]`).
pub fn set_path(parts: &[&str], value: &str) -> Result<()> {
    write(components_path(parts)?, &parts.join("."), value)
}

/// Like [`get`], with the path given as components.
pub fn get_path(parts: &[&str]) -> Result<String> {
    read(components_path(parts)?, &parts.join("."))
}

/// Turns IPv6 off on interface `ifname` of the calling thread's namespace, for an interface
/// that is only a bridge port (the host end of a container's veth): it then gets no
/// link-local address, no routes and no multicast route, sends no router solicitations or
/// MLD reports, and its carrier coming up makes the kernel walk no IPv6 routing table.
/// A kernel without IPv6 has nothing to turn off: `Ok`.
pub fn disable_ipv6(ifname: &str) -> Result<()> {
    let parts = ["net", "ipv6", "conf", ifname, "disable_ipv6"];
    let path = components_path(&parts)?;
    match fs::write(&path, b"1") {
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && !std::path::Path::new("/proc/sys/net/ipv6").exists() =>
        {
            Ok(())
        }
        r => r.map_err(|e| KernelError::io(format!("set sysctl {} = \"1\"", parts.join(".")), e)),
    }
}

/// Sets `sock`'s receive buffer to `bytes` regardless of `net.core.rmem_max` (needs
/// CAP_NET_ADMIN), so that a burst of datagrams waits instead of being dropped — the
/// per-socket counterpart of the sysctl, changing nothing for anyone else.
pub fn force_recv_buffer(sock: &impl std::os::fd::AsFd, bytes: usize) -> std::io::Result<()> {
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::RcvBufForce, &bytes)
        .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            key_path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        key_path("").unwrap_err();
        key_path("/net.ipv4").unwrap_err();
        key_path("net..ipv4").unwrap_err();
        key_path(".net").unwrap_err();
        key_path("net.ipv4.").unwrap_err();
        key_path("net/ipv4").unwrap_err();
        key_path("net.ipv4.conf.a b").unwrap_err();
        let err = key_path("net..x").unwrap_err().to_string();
        assert!(err.contains("net..x"), "{err}");
    }

    #[test]
    fn components() {
        assert_eq!(
            components_path(&["net", "ipv4", "conf", "eth0.100", "forwarding"]).unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
        components_path(&[]).unwrap_err();
        components_path(&["net", ".."]).unwrap_err();
        components_path(&["net", "a/b"]).unwrap_err();
        components_path(&["net", ""]).unwrap_err();
    }
}
