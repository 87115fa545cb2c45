//! The `hosts` and `resolv.conf` files a sandbox owns (libnetwork's `etchosts` and
//! `resolvconf`, reference §6.3–6.4).
//!
//! Unlike libnetwork, which appends to `hosts` on each join and rewrites files in place, lnet
//! regenerates `hosts` from the records on every change and writes both files atomically
//! (temporary file, fsync, rename): a crash leaves the old file or the new one, never half of
//! one, and the file can never disagree with the records.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;

use crate::error::{CoreError, Result};

/// Writes `contents` to `path` atomically and durably: readers, and the file after a crash,
/// see the old file or the new one, never part of one.
pub(crate) fn write_atomic(path: &Path, contents: &str) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let ctx = || format!("write {}", path.display());
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(CoreError::io(ctx()))
}

/// Rewrites `path` in place (creating it if missing), keeping its inode.
///
/// Runtimes bind-mount a sandbox's `hosts` into the container; a rename would leave the
/// container reading the old inode forever, which is why libnetwork rewrites in place too.
/// The new text is written over the old before the file is cut to length, so a reader never
/// sees an empty file. A crash part way is harmless: recovery regenerates `hosts` from the
/// records at every start.
pub(crate) fn write_in_place(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::FileExt;
    // Already so (a restart, a join that changes nothing here): no write, and the
    // container sees no change of the file's time.
    if std::fs::read(path).is_ok_and(|have| have == contents.as_bytes()) {
        return Ok(());
    }
    let res = (|| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        f.write_all_at(contents.as_bytes(), 0)?;
        f.set_len(contents.len() as u64)
    })();
    res.map_err(CoreError::io(format!("write {}", path.display())))
}

/// What a resolv.conf says, in the parts lnet cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines, in order.
    pub nameservers: Vec<IpAddr>,
    /// The last `search` (or `domain`) line's domains.
    pub search: Vec<String>,
    /// The last `options` line's options.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text; unknown lines and bad addresses are skipped, as the libc
    /// resolver does.
    pub fn parse(text: &str) -> ResolvConf {
        let mut rc = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A zone index (fe80::1%eth0) is not an address std can parse; skip it.
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        rc.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => rc.search = words.map(String::from).collect(),
                Some("options") => rc.options = words.map(String::from).collect(),
                _ => {}
            }
        }
        rc
    }

    /// Renders in libnetwork's order: search, nameservers, options.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.search.is_empty() && self.search != ["."] {
            let _ = writeln!(out, "search {}", self.search.join(" "));
        }
        for ns in &self.nameservers {
            let _ = writeln!(out, "nameserver {ns}");
        }
        if !self.options.is_empty() {
            let _ = writeln!(out, "options {}", self.options.join(" "));
        }
        out
    }
}

/// The user's DNS settings for a sandbox (`--dns`, `--dns-search`, `--dns-option`).
#[derive(Debug, Clone, Default)]
pub(crate) struct DnsSettings<'a> {
    pub(crate) servers: &'a [IpAddr],
    pub(crate) search: &'a [String],
    pub(crate) options: &'a [String],
}

/// A sandbox's resolv.conf from the host's, as libnetwork's `setupDNS` does: user values win
/// per category; without user servers, the host's loopback servers are dropped (they are
/// unreachable from the sandbox) and Google's public servers stand in if none remain.
pub(crate) fn sandbox_resolv_conf(
    host_text: &str,
    user: &DnsSettings<'_>,
    host_mode: bool,
) -> String {
    let no_user = user.servers.is_empty() && user.search.is_empty() && user.options.is_empty();
    if host_mode && no_user {
        return host_text.to_string();
    }
    let host = ResolvConf::parse(host_text);
    let mut rc = ResolvConf {
        nameservers: if user.servers.is_empty() {
            host.nameservers
        } else {
            user.servers.to_vec()
        },
        search: if user.search.is_empty() {
            host.search
        } else {
            user.search.to_vec()
        },
        options: if user.options.is_empty() {
            host.options
        } else {
            user.options.to_vec()
        },
    };
    if user.servers.is_empty() && !host_mode {
        rc.nameservers.retain(|ip| !ip.is_loopback());
        if rc.nameservers.is_empty() {
            rc.nameservers = [
                "8.8.8.8",
                "8.8.4.4",
                "2001:4860:4860::8888",
                "2001:4860:4860::8844",
            ]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        }
    }
    rc.render()
}

/// The resolver a sandbox with embedded DNS reaches, inside its namespace.
pub const EMBEDDED_DNS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 11);

/// A sandbox's resolv.conf with the embedded resolver, and the upstreams that resolver
/// forwards to: the user's servers, else the host's — loopback ones included, since the
/// resolver forwards from the host's namespace (at most three, as the libc resolver uses).
/// Search domains and options are kept; `ndots:0` is added unless the user set `ndots`
/// (names of containers have no dots).
pub(crate) fn embedded_resolv_conf(
    host_text: &str,
    user: &DnsSettings<'_>,
) -> (String, Vec<IpAddr>) {
    let host = ResolvConf::parse(host_text);
    let mut upstreams = if user.servers.is_empty() {
        host.nameservers
    } else {
        user.servers.to_vec()
    };
    upstreams.truncate(3);
    let mut options = if user.options.is_empty() {
        host.options
    } else {
        user.options.to_vec()
    };
    if !options.iter().any(|o| o.starts_with("ndots:")) {
        options.push("ndots:0".into());
    }
    let rc = ResolvConf {
        nameservers: vec![IpAddr::V4(EMBEDDED_DNS)],
        search: if user.search.is_empty() {
            host.search
        } else {
            user.search.to_vec()
        },
        options,
    };
    (rc.render(), upstreams)
}

const HOSTS_DEFAULTS: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// A sandbox's hosts file: libnetwork's defaults, the `--add-host` entries, then one line per
/// address of each joined endpoint (`IP<TAB>fqdn short`), in join order.
pub(crate) fn sandbox_hosts(
    hostname: &str,
    domainname: &str,
    extra: &[(String, IpAddr)],
    addresses: &[IpAddr],
) -> String {
    let mut out = String::from(HOSTS_DEFAULTS);
    for (name, ip) in extra {
        let _ = writeln!(out, "{ip}\t{name}");
    }
    if !hostname.is_empty() {
        let names = if domainname.is_empty() {
            hostname.to_string()
        } else {
            format!("{hostname}.{domainname} {hostname}")
        };
        for ip in addresses {
            let _ = writeln!(out, "{ip}\t{names}");
        }
    }
    out
}

/// A host-mode sandbox's hosts file: the host's, plus the `--add-host` entries.
pub(crate) fn host_mode_hosts(host_text: &str, extra: &[(String, IpAddr)]) -> String {
    let mut out = host_text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for (name, ip) in extra {
        let _ = writeln!(out, "{ip}\t{name}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_and_falls_back_like_libnetwork() {
        let host =
            "# generated\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n";
        let out = sandbox_resolv_conf(host, &DnsSettings::default(), false);
        assert_eq!(
            out,
            "search corp.example\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n\
             nameserver 2001:4860:4860::8888\nnameserver 2001:4860:4860::8844\noptions edns0 trust-ad\n"
        );
        let host = "nameserver 10.0.0.2\nnameserver 127.0.0.1\nsearch a b\nsearch c\n";
        let out = sandbox_resolv_conf(host, &DnsSettings::default(), false);
        assert_eq!(out, "search c\nnameserver 10.0.0.2\n");
    }

    #[test]
    fn user_dns_settings_win_per_category() {
        let host = "nameserver 10.0.0.2\nsearch host.example\noptions rotate\n";
        let servers = ["1.1.1.1".parse().unwrap()];
        let search = ["example.com".to_string()];
        let user = DnsSettings {
            servers: &servers,
            search: &search,
            options: &[],
        };
        assert_eq!(
            sandbox_resolv_conf(host, &user, false),
            "search example.com\nnameserver 1.1.1.1\noptions rotate\n"
        );
        assert_eq!(
            sandbox_resolv_conf(host, &DnsSettings::default(), true),
            host
        );
    }

    #[test]
    fn hosts_file_has_defaults_extras_and_endpoint_records() {
        let extra = [("db".to_string(), "10.9.9.9".parse().unwrap())];
        let addrs = ["172.18.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        let out = sandbox_hosts("test", "example.com", &extra, &addrs);
        assert!(
            out.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        );
        assert!(out.ends_with(
            "10.9.9.9\tdb\n172.18.0.2\ttest.example.com test\nfd00::2\ttest.example.com test\n"
        ));
        let bare = sandbox_hosts("web", "", &[], &addrs[..1]);
        assert!(bare.ends_with("ff02::2\tip6-allrouters\n172.18.0.2\tweb\n"));
    }

    #[test]
    fn in_place_write_keeps_the_inode_and_the_exact_text() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        write_in_place(&p, "a long first version\n").unwrap();
        let ino = std::fs::metadata(&p).unwrap().ino();
        write_in_place(&p, "short\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "short\n");
        assert_eq!(
            std::fs::metadata(&p).unwrap().ino(),
            ino,
            "same inode: bind mounts see it"
        );
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        write_atomic(&p, "a\n").unwrap();
        write_atomic(&p, "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
