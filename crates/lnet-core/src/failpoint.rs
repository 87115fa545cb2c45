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
    "join:recorded",
    "join:kernel-done",
    "leave:recorded",
    "leave:kernel-done",
];

/// Marks a failpoint.
#[inline]
pub(crate) fn hit(name: &'static str) {
    debug_assert!(ALL.contains(&name), "failpoint {name} missing from ALL");
    if env_armed() == Some(name) {
        eprintln!("lnet: failpoint {name} hit: aborting");
        std::process::abort();
    }
    let armed = ARMED.with(|a| a.borrow().as_deref() == Some(name));
    if armed {
        disarm();
        panic!("failpoint {name}");
    }
}
