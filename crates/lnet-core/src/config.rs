//! Controller configuration.

use std::collections::BTreeSet;
use std::path::PathBuf;

use lnet_ipam::PoolSpec;

/// How a [`crate::Controller`] is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Persistent state: the store (`lnet.db`) and the sandboxes' `hosts`/`resolv.conf`.
    /// Default `/var/lib/lnet`.
    pub data_root: PathBuf,
    /// Runtime state: namespace bind mounts under `netns/`. Default `/run/lnet`.
    pub exec_root: PathBuf,
    /// Replaces Docker's default local IPv4 pools (`--default-address-pool base=…,size=…`).
    pub default_address_pools: Option<Vec<PoolSpec>>,
    /// IPv6 pools to pick from when an IPv6 network gives no subnet (none by default, as in
    /// Docker).
    pub default_address_pools_v6: Vec<PoolSpec>,
    /// The sandboxes the embedding runtime knows to be alive (libnetwork's
    /// `ActiveSandboxes`). `None`: a sandbox is alive when its namespace still exists.
    pub active_sandboxes: Option<BTreeSet<String>>,
    /// The host resolv.conf that sandboxes derive theirs from.
    pub host_resolv_conf: PathBuf,
    /// The host hosts file that host-mode sandboxes copy.
    pub host_hosts: PathBuf,
    /// Turn on `net.ipv4.ip_forward` (and `net.ipv6.conf.all.forwarding` for IPv6
    /// networks) when a bridge network is created (dockerd `--ip-forward`, default true).
    pub enable_ip_forward: bool,
    /// Where lnet itself turned forwarding on, do not drop the forwarded traffic that is
    /// not lnet's (dockerd `--ip-forward-no-drop`, default false: see [`crate::forwarding`]).
    pub ip_forward_no_drop: bool,
    /// Let the kernel's slow part of deleting a veth or a bridge (20–40 ms of RCU waits)
    /// happen after a leave or a network delete returns: the link is made harmless and its
    /// names free first, then deleted on a background thread (see the `reaper` module).
    /// The daemon turns this on; library callers get synchronous deletes by default.
    pub background_deletes: bool,
    /// Watch the kernel's change notifications and put back what lnet owns when someone
    /// else deletes or changes it (a bridge, a veth, an address, lnet's nftables table or
    /// elements, its accept rules in another engine's forward chain), within a second and
    /// without touching anything else (see the `watcher` module). The daemon turns this on.
    pub self_heal: bool,
    /// Run the embedded DNS: sandboxes on user-defined bridge networks resolve each other's
    /// names at `127.0.0.11`. The daemon turns this on; library callers opt in.
    pub embedded_dns: bool,
    /// The bridge the caller's predefined `bridge` network uses (the daemon's `--bridge`,
    /// `lnet0`). A start keeps it when it carries lnet's mark and no record names it — a
    /// lost store — so that the predefined network, made again after the start, takes over
    /// its own bridge (same index and MAC) instead of a new one; its stale ports still go.
    pub predefined_bridge: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_root: PathBuf::from("/var/lib/lnet"),
            exec_root: PathBuf::from("/run/lnet"),
            default_address_pools: None,
            default_address_pools_v6: Vec::new(),
            active_sandboxes: None,
            host_resolv_conf: PathBuf::from("/etc/resolv.conf"),
            host_hosts: PathBuf::from("/etc/hosts"),
            enable_ip_forward: true,
            ip_forward_no_drop: false,
            background_deletes: false,
            self_heal: false,
            embedded_dns: false,
            predefined_bridge: None,
        }
    }
}

impl Config {
    /// A configuration rooted in one directory (`<root>/data`, `<root>/run`): what tests,
    /// examples and benchmarks use.
    pub fn rooted_at(root: &std::path::Path) -> Self {
        Config {
            data_root: root.join("data"),
            exec_root: root.join("run"),
            ..Config::default()
        }
    }

    /// The store file.
    pub fn store_path(&self) -> PathBuf {
        self.data_root.join("lnet.db")
    }

    /// Where each sandbox's `hosts` and `resolv.conf` live, a directory per sandbox id.
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.data_root.join("sandboxes")
    }

    /// Where sandbox and endpoint records live: on the exec root, because they describe
    /// kernel objects that live until the next reboot and no longer.
    pub fn state_dir(&self) -> PathBuf {
        self.exec_root.join("state")
    }

    /// Opens the store this configuration names (networks on the data root, sandboxes and
    /// endpoints under [`Config::state_dir`]). The controller does this itself; tools and
    /// tests use it to look at a stopped controller's store.
    pub fn open_store(
        &self,
    ) -> Result<(lnet_store::Store, Option<String>), lnet_store::StoreError> {
        lnet_store::Store::open_with_runtime(&self.store_path(), &self.state_dir())
    }
}

/// The name this process's lnet goes by in shared places of its network namespace: its
/// nftables table and the mark on its bridges. `lnet` unless [`set_instance`] said
/// otherwise; only two lnet daemons sharing one namespace (one serving the plugin protocol
/// to the other, say) need different ones.
static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// This process's instance name ([`set_instance`]).
pub fn instance() -> &'static str {
    INSTANCE.get().map_or("lnet", String::as_str)
}

/// Names this process's lnet, once, before its first controller: 1–15 lowercase letters,
/// digits and `-`, starting with a letter (it names an nftables table).
pub fn set_instance(name: &str) -> crate::error::Result<()> {
    let ok = (1..=15).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(crate::error::CoreError::InvalidField {
            field: "instance".into(),
            value: name.into(),
            reason: "1 to 15 lowercase letters, digits and '-', starting with a letter".into(),
        });
    }
    match INSTANCE.set(name.to_string()) {
        Ok(()) => Ok(()),
        Err(_) if instance() == name => Ok(()),
        Err(_) => Err(crate::error::CoreError::Forbidden(format!(
            "this process's lnet is named {} already",
            instance()
        ))),
    }
}
