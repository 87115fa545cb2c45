//! `lnet daemon`: configuration (flags named as `dockerd`'s, and the same keys in
//! `daemon.json`), start-up (root, one daemon per store and socket, the predefined networks),
//! and serving the API on a unix socket until SIGTERM or SIGINT. Shutdown leaves every
//! network and sandbox in place for the next start.

pub mod plugin;
pub mod routes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lnet_core::drivers::bridge;
use lnet_core::{Config, Controller, IpamPoolConfig, NetworkOptions};
use serde::Deserialize;

pub use routes::{AppState, DaemonInfo};

/// The flags of `lnet daemon`; each has a `daemon.json` key of the same name.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DaemonArgs {
    /// Persistent state (the store) [default: /var/lib/lnet].
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Runtime state (namespaces, the socket) [default: /run/lnet].
    #[arg(long)]
    pub exec_root: Option<PathBuf>,
    /// Where to serve the API [default: unix:///run/lnet/lnet.sock].
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// The daemon configuration file (JSON, dockerd's keys).
    #[arg(long, default_value = "/etc/lnet/daemon.json")]
    pub config_file: PathBuf,
    /// A pool networks get subnets from: `base=CIDR,size=N` (repeatable; replaces the
    /// default pools).
    #[arg(long = "default-address-pool")]
    pub default_address_pools: Vec<String>,
    /// The default bridge's device name [default: lnet0].
    #[arg(short = 'b', long)]
    pub bridge: Option<String>,
    /// The default bridge's address and subnet, e.g. 172.17.0.1/16.
    #[arg(long)]
    pub bip: Option<String>,
    /// The sub-range of the default bridge's subnet that containers get addresses from.
    #[arg(long)]
    pub fixed_cidr: Option<String>,
    /// MTU of the default bridge's interfaces.
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Inter-container traffic on the default bridge [default: true].
    #[arg(long)]
    pub icc: Option<bool>,
    /// Masquerade outbound traffic of the default bridge [default: true].
    #[arg(long)]
    pub ip_masq: Option<bool>,
    /// Turn on IP forwarding [default: true].
    #[arg(long)]
    pub ip_forward: Option<bool>,
    /// Where lnet turns forwarding on itself, let the host go on routing traffic that is not
    /// lnet's instead of dropping it (`--ip-forward-no-drop` alone means true)
    /// [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ip_forward_no_drop: Option<bool>,
    /// Put back what someone else deletes or changes of lnet's while it runs (lnet's own;
    /// `lnet doctor` still reports and `--repair` still repairs when off) [default: true].
    #[arg(long)]
    pub self_heal: Option<bool>,
    /// Where to serve Docker's plugin protocol, as plugin `lnet` for dockerd (`docker
    /// network create -d lnet --ipam-driver lnet`); empty to serve none
    /// [default: /run/docker/plugins/lnet.sock].
    #[arg(long)]
    pub plugin_socket: Option<String>,
    /// Where to look for other plugins, network drivers named by `-d`: each directory for
    /// `<name>.sock`, `<name>/<name>.sock`, `<name>.spec` and `<name>.json` (repeatable;
    /// replaces Docker's /run/docker/plugins, /etc/docker/plugins, /usr/lib/docker/plugins).
    #[arg(long = "plugin-dir")]
    pub plugin_dirs: Vec<PathBuf>,
    /// How long a plugin may take to answer one call, and how long one that cannot be
    /// reached is retried (with dockerd's back-off), in seconds [default: 30].
    #[arg(long)]
    pub plugin_timeout: Option<u64>,
    /// The name of this daemon's nftables table and bridge marks [default: lnet]. Only two
    /// lnet daemons sharing one network namespace need different ones.
    #[arg(long)]
    pub instance: Option<String>,
    /// Log level: error, warn, info, debug, trace [default: info].
    #[arg(short = 'l', long)]
    pub log_level: Option<String>,
}

/// `daemon.json`: the same settings under dockerd's keys. Unknown keys are refused, so a
/// typo does not go unnoticed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    data_root: Option<PathBuf>,
    exec_root: Option<PathBuf>,
    hosts: Option<Vec<String>>,
    default_address_pools: Option<Vec<FilePool>>,
    bridge: Option<String>,
    bip: Option<String>,
    fixed_cidr: Option<String>,
    mtu: Option<u32>,
    icc: Option<bool>,
    ip_masq: Option<bool>,
    ip_forward: Option<bool>,
    ip_forward_no_drop: Option<bool>,
    self_heal: Option<bool>,
    plugin_socket: Option<String>,
    plugin_dirs: Option<Vec<PathBuf>>,
    plugin_timeout: Option<u64>,
    instance: Option<String>,
    log_level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePool {
    base: String,
    size: u8,
}

/// The daemon's settings, flags over file over defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The controller's configuration.
    pub config: Config,
    /// The socket path.
    pub socket: PathBuf,
    /// Default bridge device.
    pub bridge: String,
    /// Default bridge address (`--bip`).
    pub bip: Option<ipnet::IpNet>,
    /// `--fixed-cidr`.
    pub fixed_cidr: Option<ipnet::IpNet>,
    /// `--mtu`.
    pub mtu: Option<u32>,
    /// `--icc`.
    pub icc: bool,
    /// `--ip-masq`.
    pub ip_masq: bool,
    /// `--log-level`.
    pub log_level: String,
    /// Where the plugin protocol is served (`None`: not at all).
    pub plugin_socket: Option<PathBuf>,
    /// `--plugin-socket` (or its key) was given: failing to serve there is an error.
    pub plugin_socket_given: bool,
    /// How other plugins are found and called.
    pub remote: lnet_remote::RemoteConfig,
    /// `--instance`.
    pub instance: Option<String>,
}

fn parse_pool(s: &str) -> Result<lnet_ipam::PoolSpec> {
    let mut base = None;
    let mut size = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("base", v)) => {
                base = Some(v.parse::<ipnet::IpNet>().with_context(|| {
                    format!("--default-address-pool {s:?}: base {v:?} is not a CIDR")
                })?)
            }
            Some(("size", v)) => {
                size = Some(v.parse::<u8>().with_context(|| {
                    format!("--default-address-pool {s:?}: size {v:?} is not a prefix length")
                })?)
            }
            _ => bail!(
                "--default-address-pool {s:?}: expected base=CIDR,size=N, e.g. base=10.10.0.0/16,size=24"
            ),
        }
    }
    match (base, size) {
        (Some(b), Some(n)) => Ok(lnet_ipam::PoolSpec::new(b, n)),
        _ => bail!("--default-address-pool {s:?}: both base= and size= are required"),
    }
}

fn unix_path(host: &str) -> Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
        _ => {
            bail!("-H {host:?}: lnet serves on a unix socket only: give unix:///path/to/lnet.sock")
        }
    }
}

impl Settings {
    /// Resolves flags over the config file over defaults. The config file must exist when
    /// it was named explicitly.
    pub fn resolve(args: &DaemonArgs, file_must_exist: bool) -> Result<Settings> {
        let file: FileConfig = match std::fs::read(&args.config_file) {
            Ok(bytes) => {
                let de = &mut serde_json::Deserializer::from_slice(&bytes);
                serde_path_to_error::deserialize(de).map_err(|e| {
                    let path = e.path().to_string();
                    let shown = args.config_file.display();
                    match e.into_inner() {
                        // A wrong value names its key; unknown keys and syntax say theirs.
                        inner if path != "." && !inner.is_syntax() && !inner.is_eof() => {
                            anyhow::anyhow!("config file {shown}: not valid: {path}: {inner}")
                        }
                        inner => anyhow::anyhow!("config file {shown}: not valid: {inner}"),
                    }
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !file_must_exist => {
                FileConfig::default()
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("read config file {}", args.config_file.display()));
            }
        };
        let mut config = Config::default();
        if let Some(p) = args.data_root.clone().or(file.data_root) {
            config.data_root = p;
        }
        if let Some(p) = args.exec_root.clone().or(file.exec_root) {
            config.exec_root = p;
        }
        let pools: Vec<lnet_ipam::PoolSpec> = if !args.default_address_pools.is_empty() {
            args.default_address_pools
                .iter()
                .map(|s| parse_pool(s))
                .collect::<Result<_>>()?
        } else {
            file.default_address_pools
                .unwrap_or_default()
                .iter()
                .map(|p| parse_pool(&format!("base={},size={}", p.base, p.size)))
                .collect::<Result<_>>()?
        };
        if !pools.is_empty() {
            config.default_address_pools = Some(pools);
        }
        config.enable_ip_forward = args.ip_forward.or(file.ip_forward).unwrap_or(true);
        config.ip_forward_no_drop = args
            .ip_forward_no_drop
            .or(file.ip_forward_no_drop)
            .unwrap_or(false);
        // Clients get their answer before the kernel's 20-40 ms of link deletion.
        config.background_deletes = true;
        // Containers on user-defined networks find each other by name, as on Docker.
        config.embedded_dns = true;
        // What someone else deletes or changes of lnet's is put back while it runs.
        config.self_heal = args.self_heal.or(file.self_heal).unwrap_or(true);
        let hosts = if args.hosts.is_empty() {
            file.hosts.unwrap_or_default()
        } else {
            args.hosts.clone()
        };
        let socket = match hosts.as_slice() {
            [] => config.exec_root.join("lnet.sock"),
            [h] => unix_path(h)?,
            _ => bail!("-H: lnet serves one socket; give -H once"),
        };
        let cidr = |flag: &str, v: Option<String>| -> Result<Option<ipnet::IpNet>> {
            v.map(|s| {
                s.parse::<ipnet::IpNet>().with_context(|| {
                    format!("--{flag} {s:?}: expected a CIDR such as 172.17.0.1/16")
                })
            })
            .transpose()
        };
        let log_level = args
            .log_level
            .clone()
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            bail!("--log-level {log_level:?}: expected error, warn, info, debug or trace");
        }
        let bridge = args
            .bridge
            .clone()
            .or(file.bridge)
            .unwrap_or_else(|| "lnet0".into());
        config.predefined_bridge = Some(bridge.clone());
        let plugin_socket_given = args.plugin_socket.is_some() || file.plugin_socket.is_some();
        let plugin_socket = args
            .plugin_socket
            .clone()
            .or(file.plugin_socket)
            .map_or_else(|| PathBuf::from(DEFAULT_PLUGIN_SOCKET), PathBuf::from);
        let plugin_socket = (!plugin_socket.as_os_str().is_empty()).then_some(plugin_socket);
        if let Some(p) = &plugin_socket
            && (!p.is_absolute() || p.extension().is_none_or(|e| e != "sock"))
        {
            bail!(
                "--plugin-socket {}: give an absolute path ending in .sock (dockerd finds plugin <name> at /run/docker/plugins/<name>.sock), or an empty value to serve none",
                p.display()
            );
        }
        let dirs = if args.plugin_dirs.is_empty() {
            file.plugin_dirs.unwrap_or_default()
        } else {
            args.plugin_dirs.clone()
        };
        let timeout = match args.plugin_timeout.or(file.plugin_timeout) {
            Some(0) => bail!("--plugin-timeout 0: give a number of seconds above 0"),
            Some(s) => Duration::from_secs(s),
            None => Duration::from_secs(30),
        };
        let remote = lnet_remote::RemoteConfig {
            dirs: if dirs.is_empty() {
                lnet_remote::Dirs::default()
            } else {
                lnet_remote::Dirs::only(&dirs)
            },
            bounds: lnet_remote::Bounds {
                answer: timeout,
                retry: timeout,
            },
            own_socket: plugin_socket.clone(),
        };
        let instance = args.instance.clone().or(file.instance);
        Ok(Settings {
            plugin_socket_given,
            instance,
            remote,
            plugin_socket,
            socket,
            bridge,
            bip: cidr("bip", args.bip.clone().or(file.bip))?,
            fixed_cidr: cidr("fixed-cidr", args.fixed_cidr.clone().or(file.fixed_cidr))?,
            mtu: args.mtu.or(file.mtu),
            icc: args.icc.or(file.icc).unwrap_or(true),
            ip_masq: args.ip_masq.or(file.ip_masq).unwrap_or(true),
            log_level,
            config,
        })
    }
}

/// Where dockerd looks for plugin `lnet`.
pub const DEFAULT_PLUGIN_SOCKET: &str = "/run/docker/plugins/lnet.sock";

/// Creates `none`, `host` and `bridge` when they are missing (existing ones are kept as
/// they are, with their endpoints).
pub fn predefined_networks(ctrl: &Controller, s: &Settings) -> Result<()> {
    let have: Vec<String> = ctrl
        .records()
        .networks
        .iter()
        .map(|n| n.name.clone())
        .collect();
    if !have.iter().any(|n| n == "none") {
        ctrl.new_network("null", "none", NetworkOptions::default())
            .context("create the predefined network none")?;
    }
    if !have.iter().any(|n| n == "host") {
        ctrl.new_network("host", "host", NetworkOptions::default())
            .context("create the predefined network host")?;
    }
    if !have.iter().any(|n| n == "bridge") {
        let mut options = BTreeMap::new();
        options.insert(bridge::OPT_NAME.to_string(), s.bridge.clone());
        options.insert(bridge::OPT_DEFAULT_BRIDGE.to_string(), "true".into());
        options.insert(bridge::OPT_ICC.to_string(), s.icc.to_string());
        options.insert(bridge::OPT_MASQ.to_string(), s.ip_masq.to_string());
        if let Some(m) = s.mtu {
            options.insert(bridge::OPT_MTU.to_string(), m.to_string());
        }
        let mut o = NetworkOptions {
            options,
            ..Default::default()
        };
        if s.bip.is_some() || s.fixed_cidr.is_some() {
            o.ipam.v4.push(IpamPoolConfig {
                subnet: s.bip.map(|b| b.trunc()).or(s.fixed_cidr),
                ip_range: s.fixed_cidr,
                gateway: s.bip.map(|b| b.addr()),
                aux_addresses: Default::default(),
            });
        }
        ctrl.new_network("bridge", "bridge", o).context(
            "create the predefined network bridge (check --bip, --fixed-cidr, --bridge)",
        )?;
    }
    Ok(())
}

/// Binds the API socket: refuses when another daemon answers there, replaces a stale one,
/// and sets mode 0660. Non-blocking, ready for `tokio::net::UnixListener::from_std`.
/// How long a starting daemon waits for the one before it to finish exiting (a restart
/// overlaps the old daemon's last requests, which it gives up to 5 s).
pub const INSTANCE_WAIT: Duration = Duration::from_secs(10);

/// The file whose lock a daemon holds for its whole life.
pub const PID_FILE: &str = "lnet.pid";

/// Makes this process the one daemon of `exec_root`: an exclusive `flock` on
/// `<exec-root>/lnet.pid`, which then holds this process's id (dockerd keeps a pidfile
/// too). The kernel lets the lock go when the process ends, however it ends, so a held
/// lock proves a live daemon — where a socket that accepts may belong to one that is
/// already on its way out, and a socket that refuses may belong to one still starting.
/// A held lock is waited for up to `wait` (the daemon before this one may be finishing),
/// then refused with the holder's pid.
pub fn lock_exec_root(
    exec_root: &Path,
    wait: Duration,
) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(exec_root)
        .with_context(|| format!("create the exec root {}", exec_root.display()))?;
    let path = exec_root.join(PID_FILE);
    let deadline = Instant::now() + wait;
    let mut said = false;
    let mut lock = loop {
        // Never truncated before the lock is ours: it names the holder until then.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => break lock,
            Err((mut held, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = held.read_to_string(&mut holder);
                let holder = holder.trim();
                if Instant::now() >= deadline {
                    bail!(
                        "another lnet daemon (pid {holder}) is running on the exec root {} (it holds {}): stop it first, or give this one its own --exec-root and --data-root",
                        exec_root.display(),
                        path.display()
                    );
                }
                if !said {
                    tracing::info!(pid = %holder, file = %path.display(),
                        "another lnet daemon holds the exec root; waiting for it to exit");
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, e)) => return Err(e).with_context(|| format!("lock {}", path.display())),
        }
    };
    lock.set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| writeln!(lock, "{}", std::process::id()))
        .with_context(|| format!("write {}", path.display()))?;
    Ok(lock)
}

/// Listens on the API socket. Called with the exec root's lock held ([`lock_exec_root`]),
/// so a socket file there is a dead daemon's; one that still accepts belongs to a daemon
/// of another exec root, and is left to it.
pub fn bind_socket(path: &Path) -> Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another daemon (with another exec root) is serving on {}: stop it first, or give this one another -H",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("remove the stale socket {}", path.display()))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("listen on {}", path.display()))?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("make {} non-blocking", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", path.display()))?;
    Ok(listener)
}

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves; connections in flight are given
/// a moment to finish. One task per connection, so a slow client holds only its own.
pub async fn serve(
    listener: tokio::net::UnixListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::{Layer, ServiceExt};
    let app = tower::util::MapRequestLayer::new(routes::strip_version).layer(router);
    tokio::pin!(shutdown);
    let tracker = tokio_util_like::Tracker::default();
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            s = listener.accept() => match s {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let svc = app.clone();
        let guard = tracker.enter();
        tokio::spawn(async move {
            let _guard = guard;
            let hyper_svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    svc.clone().oneshot(req.map(axum::body::Body::new))
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), hyper_svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    tracker.wait(Duration::from_secs(5)).await;
}

/// Counts live connections so shutdown can wait for them (briefly).
mod tokio_util_like {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[derive(Debug, Default, Clone)]
    pub struct Tracker(Arc<AtomicUsize>);

    #[derive(Debug)]
    pub struct Guard(Arc<AtomicUsize>);

    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl Tracker {
        pub fn enter(&self) -> Guard {
            self.0.fetch_add(1, Ordering::SeqCst);
            Guard(self.0.clone())
        }

        pub async fn wait(&self, max: Duration) {
            let start = tokio::time::Instant::now();
            while self.0.load(Ordering::SeqCst) > 0 && start.elapsed() < max {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Opens the store, recovers, and makes the predefined networks.
fn start_controller(settings: &Settings) -> Result<Controller> {
    let config = settings.config.clone();
    let drivers = lnet_core::drivers::builtin()
        .with_finder(lnet_remote::finder(settings.remote.clone()))
        .with_ipam_finder(lnet_remote::ipam_finder(settings.remote.clone()));
    let ctrl = match Controller::with_drivers(config.clone(), drivers) {
        Ok(c) => c,
        Err(lnet_core::CoreError::Store(e @ lnet_store::StoreError::Locked { .. })) => {
            bail!(
                "{e}: another lnet daemon is running on this data root (--data-root {})",
                config.data_root.display()
            )
        }
        Err(e) => return Err(e).context("start the controller"),
    };
    let report = ctrl.recovery_report();
    tracing::info!(
        networks = report.networks,
        endpoints = report.endpoints,
        sandboxes = report.sandboxes,
        clean = report.is_clean(),
        "state restored"
    );
    predefined_networks(&ctrl, settings)?;
    Ok(ctrl)
}

/// A panic anywhere in the daemon ends it at once. A panic half way through an operation
/// leaves memory half done (a held address, a join without its interface) behind locks
/// that other requests would go on reading; the store and the kernel, though, are right at
/// every journaled step, so the next start — by the service manager, as dockerd's unit
/// restarts dockerd — finishes or undoes the operation and derives memory afresh.
fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!(panic = %info,
            "lnet daemon panicked: aborting; the next start finishes or undoes the interrupted operation");
        std::process::abort();
    }));
}

/// The fewest open files a daemon starts with: its sockets, runtimes and store take about
/// 25, and each client and sandbox more. Below it a daemon could bind its socket and then
/// never accept a client, so it refuses to start instead, saying how to fix it.
pub const MIN_OPEN_FILES: u64 = 64;

/// Raises the soft limit of open files to the hard one, as dockerd and Go programs do: the
/// daemon keeps descriptors per sandbox (its namespace, its resolver's sockets and their
/// TCP clients), and a shell's soft 1,024 would run out with a few hundred containers.
/// Refuses a hard limit below [`MIN_OPEN_FILES`].
fn raise_fd_limit() -> Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the open-file limit");
            return Ok(());
        }
    };
    if hard < MIN_OPEN_FILES {
        bail!(
            "the open-file limit is {hard}, and lnet daemon needs at least {MIN_OPEN_FILES}: raise it (`ulimit -n 1048576`, or LimitNOFILE= in the service unit) and start again; nothing was changed"
        );
    }
    if soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit");
    }
    Ok(())
}

/// Everything `lnet daemon` does: start, serve until a signal, stop.
pub fn run(settings: Settings) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "lnet daemon must run as root: it creates network namespaces, links and nftables rules"
        );
    }
    abort_on_panic();
    raise_fd_limit()?;
    if let Some(name) = &settings.instance {
        lnet_core::set_instance(name).context("--instance")?;
    }
    // The lock first: a second daemon must learn that one is running before it touches
    // anything (its start-up would reconcile the firewall of this network namespace).
    let _instance = lock_exec_root(&settings.config.exec_root, INSTANCE_WAIT)?;
    let std_listener = bind_socket(&settings.socket)?;
    let plugin_listener = match &settings.plugin_socket {
        Some(p) => match bind_socket(p) {
            Ok(l) => Some(l),
            // Docker's default place is one per host: another daemon (of another network
            // namespace) may have it. Said, and gone on without; a place named on purpose
            // must be had.
            Err(e) if !settings.plugin_socket_given => {
                tracing::warn!(socket = %p.display(), error = %e, "not serving the plugin protocol: its default socket is taken (give --plugin-socket to serve it elsewhere)");
                None
            }
            Err(e) => {
                let _ = std::fs::remove_file(&settings.socket);
                return Err(
                    e.context("serve the plugin socket (--plugin-socket; empty to serve none)")
                );
            }
        },
        None => None,
    };
    let sockets: Vec<PathBuf> = std::iter::once(settings.socket.clone())
        .chain(settings.plugin_socket.clone())
        .collect();
    let remove_sockets = move || {
        for s in &sockets {
            let _ = std::fs::remove_file(s);
        }
    };
    let started = start_controller(&settings);
    let ctrl = match started {
        Ok(c) => c,
        Err(e) => {
            remove_sockets();
            return Err(e);
        }
    };
    let config = settings.config.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lnet-api")
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        let listener =
            tokio::net::UnixListener::from_std(std_listener).context("register the API socket")?;
        let (stop_plugin, plugin_stopped) = tokio::sync::watch::channel(false);
        let plugin_task = match plugin_listener {
            Some(l) => {
                let l = tokio::net::UnixListener::from_std(l)
                    .context("register the plugin socket")?;
                let served = plugin::Plugin::new(ctrl.clone());
                let router = plugin::router(served.clone());
                let mut stopped = plugin_stopped.clone();
                let mut sweeps = plugin_stopped.clone();
                tokio::spawn(async move {
                    let mut seen = std::collections::HashSet::new();
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(plugin::SWEEP_EVERY) => {}
                            _ = sweeps.wait_for(|s| *s) => return,
                        }
                        let p = served.clone();
                        seen = tokio::task::spawn_blocking(move || {
                            p.sweep(&mut seen);
                            seen
                        })
                        .await
                        .unwrap_or_default();
                    }
                });
                tracing::info!(socket = ?settings.plugin_socket, "serving Docker's plugin protocol as plugin lnet");
                Some(tokio::spawn(serve(l, router, async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })))
            }
            None => None,
        };
        let state = AppState {
            ctrl,
            info: Arc::new(DaemonInfo {
                data_root: config.data_root.display().to_string(),
                kernel: kernel_release(),
                hostname: hostname(),
            }),
        };
        tracing::info!(socket = %settings.socket.display(), "serving Docker's network API");
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install the SIGTERM handler");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
            }
        };
        serve(listener, routes::router(state), shutdown).await;
        let _ = stop_plugin.send(true);
        if let Some(t) = plugin_task {
            let _ = t.await;
        }
        remove_sockets();
        tracing::info!("stopped; networks and sandboxes stay for the next start");
        Ok(())
    })
}
