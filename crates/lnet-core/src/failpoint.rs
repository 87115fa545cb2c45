//! Failpoints: named places in every journaled operation where a test can make lnet stop
//! dead, to prove that recovery finishes or undoes whatever was interrupted there.
//!
//! Inert unless armed. Armed two ways:
//! - the environment variable `LNET_FAILPOINT=<name>` makes the process abort at that point
//!   (no destructor or cleanup code runs, like `SIGKILL`) — for crash tests of the daemon;
//! - [`arm`] on the current thread makes the point panic instead — for in-process restart tests,
//!   which catch the panic, drop the controller and open a new one on the same store.

use std::cell::RefCell;
use std::sync::OnceLock;

thread_local! {
    static ARMED: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn env_armed() -> Option<&'static str> {
    static ENV: OnceLock<Option<String>> = OnceLock::new();
    ENV.get_or_init(|| {
        std::env::var("LNET_FAILPOINT")
            .ok()
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// Arms `name` on the current thread: the next time it is hit, it panics.
pub fn arm(name: &str) {
    ARMED.with(|a| *a.borrow_mut() = Some(name.to_string()));
}

/// Disarms the current thread's failpoint.
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

/// Marks a failpoint.
#[inline]
pub(crate) fn hit(name: &'static str) {
    if armed(name) {
        crash(name);
    }
}

/// Whether `name` is armed (for points that must change what happens *before* they stop
/// the process, such as skipping a write that a crash would have lost).
pub(crate) fn armed(name: &'static str) -> bool {
    debug_assert!(ALL.contains(&name), "failpoint {name} missing from ALL");
    env_armed() == Some(name) || ARMED.with(|a| a.borrow().as_deref() == Some(name))
}

/// Stops dead at `name`: aborts the process when armed by the environment, panics when
/// armed on this thread.
pub(crate) fn crash(name: &'static str) -> ! {
    if env_armed() == Some(name) {
        eprintln!("lnet: failpoint {name} hit: aborting");
        std::process::abort();
    }
    disarm();
    panic!("failpoint {name}");
}
