//! Helpers for tests and benchmarks that touch the kernel (also used by
//! other crates' tests, so this is not `cfg(test)`).
//!
//! The rule: a test that changes kernel state first moves its own thread
//! into a fresh network namespace with [`enter_new_netns`], so nothing it
//! does can reach the machine's own namespace. Extra namespaces it needs are
//! [`TempNetns`] values, bind-mounted under a temporary directory and removed
//! on drop.
//!
//! ```no_run
//! #[test]
//! fn bridge_is_created() {
//!     lnet_kernel::skip_unless_root!();
//!     lnet_kernel::testing::enter_new_netns().unwrap();
//!     let mut nl = lnet_kernel::Netlink::new().unwrap();
//!     // ...
//! }
//! ```

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sched::{CloneFlags, unshare};

use crate::error::{KernelError, Result};
use crate::link::LOOPBACK_INDEX;
use crate::netlink::Netlink;
use crate::netns::Netns;

/// Whether the process runs with effective uid 0.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Move the **calling thread** into a new, empty network namespace
/// (`unshare(CLONE_NEWNET)`) and bring its loopback up.
///
/// Only call this on a thread you own — a test's thread, an example's main
/// thread, a thread you spawned. Threads spawned afterwards by this thread
/// inherit the namespace. The namespace disappears (with every link in it)
/// when the last thread in it exits and nothing else holds it.
pub fn enter_new_netns() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| KernelError::nix("enter new netns: unshare(CLONE_NEWNET)", e))?;
    Netlink::new()?.set_up(LOOPBACK_INDEX)
}

/// Give the **calling process** a private mount namespace (`unshare(CLONE_NEWNS)`, then
/// every mount made private), so that mounts made afterwards — such as [`mount_tmpfs`] —
/// are seen by no one else and vanish when the process exits.
///
/// Call it first thing in a single-threaded program (a benchmark's `main`): the kernel
/// refuses it in a thread that shares its file-system context with others.
pub fn enter_private_mounts() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| KernelError::nix("private mounts: unshare(CLONE_NEWNS)", e))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| KernelError::nix("private mounts: make / private", e))
}

/// Raises this process's open-file limit to at least `need` (lnet keeps descriptors per
/// live sandbox: its namespace and a netlink socket; a benchmark with 1,000 sandboxes
/// needs more than the common soft limit of 1,024). The hard limit rises too if it must
/// (root may).
pub fn raise_open_files(need: u64) -> Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| KernelError::nix("read the open-file limit", e))?;
    if soft >= need {
        return Ok(());
    }
    setrlimit(Resource::RLIMIT_NOFILE, need, hard.max(need)).map_err(|e| {
        KernelError::nix(
            format!("raise the open-file limit to {need} (try `ulimit -n {need}`)"),
            e,
        )
    })
}

/// Mount a fresh tmpfs at `path` (created if missing): lnet's exec root is `/run/lnet`, a
/// tmpfs on every systemd host, and a benchmark that puts it on a disk file system measures
/// the disk. Only after [`enter_private_mounts`].
pub fn mount_tmpfs(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path)
        .map_err(|e| KernelError::io(format!("create {}", path.display()), e))?;
    nix::mount::mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(|e| KernelError::nix(format!("mount tmpfs at {}", path.display()), e))
}

/// Unmount what [`mount_tmpfs`] mounted (lazily), so that the directory under it can be
/// removed; a path with nothing mounted is fine.
pub fn unmount(path: &Path) -> Result<()> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(KernelError::nix(format!("unmount {}", path.display()), e)),
    }
}

/// A network namespace bind-mounted at a file in a fresh temporary
/// directory; unmounted and removed (file and directory) on drop, also when
/// the test fails.
#[derive(Debug)]
pub struct TempNetns {
    ns: Netns,
    dir: PathBuf,
    path: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempNetns {
    /// Create the namespace (see [`Netns::create_at`]).
    pub fn new() -> Result<TempNetns> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "lnet-netns-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)
            .map_err(|e| KernelError::io(format!("create directory {}", dir.display()), e))?;
        let path = dir.join("ns");
        match Netns::create_at(&path) {
            Ok(ns) => Ok(TempNetns { ns, dir, path }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// Where the namespace is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Deref for TempNetns {
    type Target = Netns;
    fn deref(&self) -> &Netns {
        &self.ns
    }
}

impl Drop for TempNetns {
    fn drop(&mut self) {
        if let Err(e) = Netns::delete_at(&self.path) {
            eprintln!("TempNetns: {e}");
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[doc(hidden)]
pub fn __enclosing_fn_name<T>(_: T) -> &'static str {
    let name = std::any::type_name::<T>();
    name.strip_suffix("::__here").unwrap_or(name)
}

/// Return early from the enclosing function (a test) when not running as
/// root, printing `skipped <test path>: needs root`. An optional argument is
/// the value to return.
#[macro_export]
macro_rules! skip_unless_root {
    () => {
        $crate::skip_unless_root!(())
    };
    ($ret:expr) => {
        if !$crate::testing::is_root() {
            fn __here() {}
            eprintln!(
                "skipped {}: needs root",
                $crate::testing::__enclosing_fn_name(__here)
            );
            return $ret;
        }
    };
}

/// For benchmark binaries: runs `run` with a fresh state directory inside a private mount
/// namespace and a new network namespace, then unmounts every namespace file left under
/// `<dir>/run/netns` — also when `run` fails. Not root: prints `skipped` and returns.
/// Exits the process with status 1, after printing the error, when anything fails.
pub fn run_isolated_bench<E: std::fmt::Display>(
    name: &str,
    run: impl FnOnce(&std::path::Path) -> std::result::Result<(), E>,
) {
    if !is_root() {
        println!("skipped: the {name} benchmark needs root");
        return;
    }
    if let Err(e) = enter_private_mounts().and_then(|()| enter_new_netns()) {
        eprintln!("{name} bench: enter private namespaces: {e}");
        std::process::exit(1);
    }
    let dir = std::env::temp_dir().join(format!("lnet-bench-{name}-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{name} bench: create {}: {e}", dir.display());
        std::process::exit(1);
    }
    let result = run(&dir);
    for entry in std::fs::read_dir(dir.join("run/netns"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = Netns::delete_at(entry.path());
    }
    // A bench may put its exec root on a tmpfs ([`mount_tmpfs`]): its mount point would
    // otherwise stay behind, busy, on the host's file system.
    let _ = unmount(&dir.join("run"));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        eprintln!("{name} bench failed: {e}");
        std::process::exit(1);
    }
}
