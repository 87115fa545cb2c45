//! Failpoints: named places in every journaled operation where a test can make lnet stop
//! dead, to prove that recovery finishes or undoes whatever was interrupted there.
//!
//! Compiled in only with the cargo feature `failpoints`, which the test suites turn on (as
//! dev-dependencies) and a release build never has: in a shipped daemon `LNET_FAILPOINT` in
//! the environment does nothing, and every point is an empty inline function.
//!
//! Inert unless armed. Armed two ways:
//! - the environment variable `LNET_FAILPOINT=<name>` makes the process abort at that point
//!   (no destructor or cleanup code runs, like `SIGKILL`) — for crash tests of the daemon;
//!   `LNET_FAILPOINT=<name>=panic` makes it panic there instead — for the daemon's panic
//!   test;
//! - [`arm`] on the current thread makes the point panic instead — for in-process restart tests,
//!   which catch the panic, drop the controller and open a new one on the same store.

#[cfg(feature = "failpoints")]
use std::cell::RefCell;
#[cfg(feature = "failpoints")]
use std::sync::OnceLock;

#[cfg(feature = "failpoints")]
thread_local! {
    static ARMED: RefCell<Option<String>> = const { RefCell::new(None) };
}

#[cfg(feature = "failpoints")]
/// `LNET_FAILPOINT`: the armed point's name, and whether it panics (`<name>=panic`)
/// rather than aborts.
fn env_armed() -> Option<(&'static str, bool)> {
    static ENV: OnceLock<Option<(String, bool)>> = OnceLock::new();
    ENV.get_or_init(|| {
        let v = std::env::var("LNET_FAILPOINT")
            .ok()
            .filter(|s| !s.is_empty())?;
        Some(match v.strip_suffix("=panic") {
            Some(name) => (name.to_string(), true),
            None => (v, false),
        })
    })
    .as_ref()
    .map(|(n, p)| (n.as_str(), *p))
}

/// Arms `name` on the current thread: the next time it is hit, it panics.
#[cfg(feature = "failpoints")]
pub fn arm(name: &str) {
    ARMED.with(|a| *a.borrow_mut() = Some(name.to_string()));
}

/// Disarms the current thread's failpoint.
#[cfg(feature = "failpoints")]
pub fn disarm() {
    ARMED.with(|a| *a.borrow_mut() = None);
}

/// Every failpoint, for harnesses that iterate over them.
pub const ALL: &[&str] = &[
    "network-create:recorded",
    "network-create:kernel-done",
    "network-delete:recorded",
    "network-delete:kernel-done",
    "sandbox-create:recorded",
    "sandbox-create:kernel-done",
    "sandbox-delete:recorded",
    "sandbox-delete:endpoints-done",
    "sandbox-delete:kernel-done",
    "endpoint-create:allocated",
    "endpoint-create:recorded",
    "endpoint-delete:recorded",
    "join:unrecorded",
    "join:recorded",
    "join:interface-made",
    "join:ports-published",
    "join:kernel-done",
    "leave:recorded",
    "leave:ports-unpublished",
    "leave:kernel-done",
];

/// Failpoints only a driver that calls out ([`crate::Capabilities::calls_out`]) or an IPAM
/// plugin reaches: the built-in drivers never do, so the crash suites over [`ALL`] leave them
/// to the remote plugins' tests (`tests/remote_plugin.rs`).
pub const CALLS_OUT: &[&str] = &[
    "endpoint-create:driver-answered",
    "endpoint-delete:journaled",
];

/// Marks a failpoint.
#[inline]
pub(crate) fn hit(name: &'static str) {
    if armed(name) {
        crash(name);
    }
}

/// Whether `name` is armed (for points that must change what happens *before* they stop
/// the process, such as skipping a write that a crash would have lost).
#[cfg(feature = "failpoints")]
pub(crate) fn armed(name: &'static str) -> bool {
    debug_assert!(
        ALL.contains(&name) || CALLS_OUT.contains(&name),
        "failpoint {name} missing from ALL"
    );
    env_armed().is_some_and(|(n, _)| n == name)
        || ARMED.with(|a| a.borrow().as_deref() == Some(name))
}

/// Stops dead at `name`: aborts the process when armed by the environment (or panics, for
/// `LNET_FAILPOINT=<name>=panic`: how a daemon meets a bug half way through an operation),
/// panics when armed on this thread.
#[cfg(feature = "failpoints")]
pub(crate) fn crash(name: &'static str) -> ! {
    match env_armed() {
        Some((n, false)) if n == name => {
            eprintln!("lnet: failpoint {name} hit: aborting");
            std::process::abort();
        }
        Some((n, true)) if n == name => panic!("failpoint {name} hit: panicking"),
        _ => {}
    }
    disarm();
    panic!("failpoint {name}");
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn armed(_: &'static str) -> bool {
    false
}

#[cfg(not(feature = "failpoints"))]
#[cold]
pub(crate) fn crash(name: &'static str) -> ! {
    unreachable!("failpoint {name} cannot be armed in a build without the `failpoints` feature")
}
