//! Deleting links in the background.
//!
//! The kernel takes 20–40 ms to delete a veth or a bridge (the unregister path waits for
//! RCU grace periods), mostly after it has let go of the rtnl lock — so other netlink work
//! goes on meanwhile. A daemon need not make its client wait for that: a leave or a network
//! delete first makes the link harmless and its names free (addresses removed, renamed to
//! `lnetgone…`), records the change, answers, and this thread deletes the link. A crash
//! before it does leaves a link that start-up removes: a veth on an lnet bridge that no
//! record names, or any `lnetgone…` link (a name only lnet gives).
//!
//! [`PendingHandle::wait`] waits until everything queued is gone (tests, benchmarks);
//! dropping the reaper finishes the queue (shutdown).

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use lnet_kernel::Netlink;

/// The interface group of links waiting to be deleted (`lnet` in ASCII): the reaper
/// deletes the whole group in one request, so the kernel waits out its RCU grace periods
/// once per batch rather than once per link.
pub const GONE_GROUP: u32 = 0x6c6e_6574;

/// The prefix of links waiting to be deleted.
pub const GONE_PREFIX: &str = "lnetgone";

/// A name for a link waiting to be deleted: `lnetgone` and 7 hex digits of an id.
pub fn gone_name(id: &str) -> String {
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).take(7).collect();
    format!("{GONE_PREFIX}{hex:0<7}")
}

/// Whether `name` is one lnet gives links waiting to be deleted.
pub fn is_gone_name(name: &str) -> bool {
    name.len() == GONE_PREFIX.len() + 7
        && name.starts_with(GONE_PREFIX)
        && name[GONE_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'0')
}

#[derive(Debug, Default)]
struct Pending {
    count: Mutex<usize>,
    done: Condvar,
}

/// The background deleter of host links.
#[derive(Debug)]
pub struct Reaper {
    tx: Option<mpsc::Sender<String>>,
    pending: Arc<Pending>,
    thread: Option<JoinHandle<()>>,
}

impl Reaper {
    /// A reaper deleting links through `nl` (a socket in the host namespace), on a thread
    /// of its own. Links are queued by name after being put in [`GONE_GROUP`]; the thread
    /// deletes the group whenever the queue has anything, so a burst of leaves costs the
    /// kernel's wait about once.
    pub fn new(mut nl: Netlink) -> Reaper {
        let (tx, rx) = mpsc::channel::<String>();
        let pending = Arc::new(Pending::default());
        let p = pending.clone();
        let thread = std::thread::Builder::new()
            .name("lnet-reaper".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut names = vec![first];
                    names.extend(rx.try_iter());
                    if let Err(e) = nl.delete_group(GONE_GROUP) {
                        tracing::warn!(links = ?names, error = %e, "deleting links in the background failed; the next start removes them");
                    }
                    let mut n = p.count.lock().unwrap_or_else(|e| e.into_inner());
                    *n = n.saturating_sub(names.len());
                    if *n == 0 {
                        p.done.notify_all();
                    }
                }
            })
            .expect("spawn the reaper thread");
        Reaper {
            tx: Some(tx),
            pending,
            thread: Some(thread),
        }
    }

    /// Queues the host link `name` for deletion.
    pub fn delete_link(&self, name: String) {
        *self.pending.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        if let Some(tx) = &self.tx
            && tx.send(name).is_err()
        {
            // The thread is gone (it never panics on its own); nothing will decrement.
            *self.pending.count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        }
    }

    /// A handle to wait on without holding the reaper.
    pub fn pending_handle(&self) -> PendingHandle {
        PendingHandle(self.pending.clone())
    }
}

/// Waits for a [`Reaper`]'s queue to drain.
#[derive(Debug, Clone)]
pub struct PendingHandle(Arc<Pending>);

impl PendingHandle {
    /// Waits until every link queued so far is deleted.
    pub fn wait(&self) {
        let mut n = self.0.count.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            n = self.0.done.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Finish what was queued: a stopping daemon leaves no link half deleted.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_names_are_recognisable_and_fit() {
        let n = gone_name("0a1b2c3d4e5f");
        assert_eq!(n, "lnetgone0a1b2c3");
        assert!(n.len() <= 15 && is_gone_name(&n));
        assert_eq!(gone_name("ab"), "lnetgoneab00000");
        for other in ["lnetgone", "lnetgone0a1b2c3d", "lnet0", "vethgone0a1b2c3"] {
            assert!(!is_gone_name(other), "{other}");
        }
    }
}
