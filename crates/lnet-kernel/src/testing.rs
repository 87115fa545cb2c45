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

/// Names the file to which every skip appends its line.
pub const SKIP_LOG: &str = "LNET_SKIP_LOG";
/// Set to `1`, a test that would skip for want of root fails instead (CI sets it).
pub const REQUIRE_ROOT: &str = "LNET_REQUIRE_ROOT";
/// Set to `1`, a test that would skip for want of a tool fails instead (CI sets it).
pub const REQUIRE_TOOLS: &str = "LNET_REQUIRE_TOOLS";

/// How a skip shows: `SKIPPED <test>: <reason>`, on stderr and in `$LNET_SKIP_LOG`.
pub const SKIP_MARKER: &str = "SKIPPED";

/// Records that `test` (a test, benchmark or example, by the name a reader would look for)
/// did not run, and why: prints the marker line and appends it to the file named by
/// `LNET_SKIP_LOG`, which `scripts/test.sh` counts, since cargo shows a test that returned
/// early as `ok`. The caller then returns without checking anything.
///
/// This only records; [`require_root`], [`require_tool`] and [`require_installed`] decide
/// first whether the skip is allowed, and are what tests call.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write;
    let line = format!("{SKIP_MARKER} {test}: {reason}\n");
    // Straight to the descriptor: libtest captures `eprintln!` of a passing test and would
    // hide the line.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    let Some(log) = std::env::var_os(SKIP_LOG) else {
        return;
    };
    // One write of one short line to a file opened for appending: parallel tests and
    // processes cannot interleave within it.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        // A skip that cannot be counted would pass for a pass: fail instead.
        panic!(
            "{test} is skipped ({reason}) but {SKIP_LOG}={} cannot record it: {e}",
            std::path::Path::new(&log).display()
        );
    }
}

fn required(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| v == "1")
}

/// Whether `test` may go on: true as root. Otherwise the test is skipped ([`skip`], the
/// reason naming `what` needs root) and the caller returns, or, under `LNET_REQUIRE_ROOT=1`,
/// this panics with the reason.
#[track_caller]
pub fn require_root(test: &str, what: &str) -> bool {
    require(
        test,
        is_root(),
        || format!("needs root ({what})"),
        REQUIRE_ROOT,
    )
}

/// Whether `test` may go on: true when the program `tool` is on the `PATH`. Otherwise the
/// test is skipped, or fails under `LNET_REQUIRE_TOOLS=1`, naming what provides the tool
/// (see [`require_installed`]).
#[track_caller]
pub fn require_tool(test: &str, tool: &str) -> bool {
    require_installed(test, tool, provider(tool), on_path(tool))
}

/// Whether `test` may go on, given whether `what` (a program, a Python module, a kernel
/// module the host must have loaded) is `present`. When it is not, the test is skipped
/// ([`skip`]) and the caller returns, or, under `LNET_REQUIRE_TOOLS=1`, this panics naming
/// `what` and `from`, what provides it (`scripts/deps.sh` installs every program and package
/// the tests use).
#[track_caller]
pub fn require_installed(test: &str, what: &str, from: &str, present: bool) -> bool {
    let reason = || format!("needs {what}, from {from}");
    require(test, present, reason, REQUIRE_TOOLS)
}

/// The decision behind every `require_*`: go on when `present`; otherwise fail the test
/// under `var=1`, or record the skip.
#[track_caller]
fn require(test: &str, present: bool, reason: impl FnOnce() -> String, var: &str) -> bool {
    if present {
        return true;
    }
    let reason = reason();
    if required(var) {
        panic!("{test} {reason}, and {var}=1 forbids skipping it");
    }
    skip(test, &reason);
    false
}

/// Where the tools the tests use come from, as `scripts/deps.sh` installs them.
pub fn provider(tool: &str) -> &'static str {
    match tool {
        "nft" => "the Debian package nftables",
        "dig" => "the Debian package bind9-dnsutils",
        "dnsperf" => "the Debian package dnsperf",
        "ip" => "the Debian package iproute2",
        "nsenter" | "unshare" => "the Debian package util-linux",
        "python3" => "the Debian package python3",
        "docker" | "dockerd" => "the Debian package docker.io",
        "busybox" => "the Debian package busybox-static",
        "aardvark-dns" => "crates.io: cargo install --locked aardvark-dns --version 2.1.0",
        _ => "its package",
    }
}

/// Whether an executable file named `tool` is in a directory of the `PATH`, as a shell
/// would find it (without running it: some tools have no harmless flag).
fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(tool))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
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
/// root, after [`require_root`] has recorded the skip (or failed the test under
/// `LNET_REQUIRE_ROOT=1`). An optional argument is the value to return.
#[macro_export]
macro_rules! skip_unless_root {
    () => {
        $crate::skip_unless_root!(())
    };
    ($ret:expr) => {
        if !$crate::testing::is_root() {
            fn __here() {}
            // Not root: this records the skip, or panics under LNET_REQUIRE_ROOT=1.
            $crate::testing::require_root(
                $crate::testing::__enclosing_fn_name(__here),
                "network namespaces, links, nftables",
            );
            return $ret;
        }
    };
}

/// For benchmark binaries: runs `run` with a fresh state directory inside a private mount
/// namespace and a new network namespace, then unmounts every namespace file left under
/// `<dir>/run/netns` — also when `run` fails. Not root: a skip ([`require_root`]).
/// Exits the process with status 1, after printing the error, when anything fails.
pub fn run_isolated_bench<E: std::fmt::Display>(
    name: &str,
    run: impl FnOnce(&std::path::Path) -> std::result::Result<(), E>,
) {
    if !require_root(&format!("bench {name}"), "network namespaces, mounts") {
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
