//! Order keys: a change to a network, or to a sandbox, holds that object's key from its
//! first check to its last record, so changes to one object stay in order while changes
//! to different objects run side by side. A change takes all its keys at once or waits
//! for all of them, so two changes can never each hold a key the other waits for.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};

/// The keys held right now.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    busy: Mutex<BTreeSet<String>>,
    freed: Condvar,
}

/// A network's key.
pub(crate) fn network(id: &str) -> String {
    format!("n:{id}")
}

/// A sandbox's key.
pub(crate) fn sandbox(id: &str) -> String {
    format!("s:{id}")
}

impl Keys {
    /// Waits until none of `keys` is held, then holds them all until the result is dropped.
    pub(crate) fn hold(&self, keys: Vec<String>) -> Held<'_> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while keys.iter().any(|k| busy.contains(k)) {
            busy = self.freed.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        busy.extend(keys.iter().cloned());
        Held {
            keys: self,
            held: keys,
        }
    }
}

/// Keys held; dropping it (a panic too) lets them go.
#[derive(Debug)]
pub(crate) struct Held<'a> {
    keys: &'a Keys,
    held: Vec<String>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut busy = self.keys.busy.lock().unwrap_or_else(|p| p.into_inner());
        for k in &self.held {
            busy.remove(k);
        }
        drop(busy);
        self.keys.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn changes_to_one_key_wait_for_each_other_and_others_do_not() {
        let keys = Arc::new(Keys::default());
        let a = keys.hold(vec![network("a"), sandbox("s")]);
        // Another key is free at once.
        drop(keys.hold(vec![network("b")]));
        let inside = Arc::new(AtomicUsize::new(0));
        let t = {
            let (keys, inside) = (keys.clone(), inside.clone());
            std::thread::spawn(move || {
                let _b = keys.hold(vec![sandbox("s"), network("c")]);
                inside.store(1, Ordering::SeqCst);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            inside.load(Ordering::SeqCst),
            0,
            "s is held: the second change waits"
        );
        // Nothing of the waiting change is held meanwhile: c is free.
        drop(keys.hold(vec![network("c")]));
        drop(a);
        t.join().unwrap();
        assert_eq!(inside.load(Ordering::SeqCst), 1);
        assert!(keys.busy.lock().unwrap().is_empty(), "every key let go");
    }
}
