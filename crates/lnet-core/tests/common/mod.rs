//! Shared set-up for lnet-core's root tests: each test moves its own thread into a fresh
//! network namespace before anything else (sockets and threads made afterwards stay in it),
//! keeps its store and run directory in a temporary directory, and on drop — also when the
//! test panics — unmounts every namespace bind mount it made. Links and addresses die with
//! the test's namespace when its thread ends.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use lnet_core::{Config, Controller};
use lnet_kernel::{Netlink, Netns};

/// A test's private world.
pub struct Env {
    pub ctrl: Option<Controller>,
    pub dir: tempfile::TempDir,
}

/// Sets up a test, or prints why it is skipped and returns `None`.
pub fn env(test: &str) -> Option<Env> {
    if !lnet_kernel::testing::is_root() {
        eprintln!("skipped {test}: needs root (network namespaces, links, mounts)");
        return None;
    }
    lnet_kernel::testing::enter_new_netns().expect("enter a new network namespace");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("host-resolv.conf"), "nameserver 192.0.2.53\nsearch example.org\n").unwrap();
    std::fs::write(dir.path().join("host-hosts"), "127.0.0.1\tlocalhost\n").unwrap();
    let mut env = Env { ctrl: None, dir };
    env.ctrl = Some(Controller::new(env.config()).expect("controller"));
    Some(env)
}

impl Env {
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> Config {
        let mut c = Config::rooted_at(self.root());
        c.host_resolv_conf = self.root().join("host-resolv.conf");
        c.host_hosts = self.root().join("host-hosts");
        c
    }

    pub fn ctrl(&self) -> &Controller {
        self.ctrl.as_ref().expect("controller running")
    }

    /// Drops the controller (as a crash would: no cleanup runs) and starts a new one on the
    /// same store and run directory.
    pub fn restart(&mut self) -> &Controller {
        self.restart_with(self.config())
    }

    pub fn restart_with(&mut self, config: Config) -> &Controller {
        self.ctrl = None;
        self.ctrl = Some(Controller::new(config).expect("controller restarts"));
        self.ctrl()
    }

    /// The namespace bind mounts under the run directory.
    pub fn netns_mounts(&self) -> BTreeSet<PathBuf> {
        std::fs::read_dir(self.root().join("run/netns"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| Netns::is_mounted_at(p))
            .collect()
    }

    /// Every file left under the run directory's netns folder (mounted or not).
    pub fn netns_files(&self) -> BTreeSet<PathBuf> {
        std::fs::read_dir(self.root().join("run/netns")).into_iter().flatten().flatten().map(|e| e.path()).collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.ctrl = None;
        for p in self.netns_files() {
            let _ = Netns::delete_at(&p);
        }
    }
}

/// The links of the test's (host) namespace, as `name:kind`, without `lo`.
pub fn host_links() -> BTreeSet<String> {
    let mut nl = Netlink::new().expect("netlink");
    nl.links()
        .expect("links")
        .into_iter()
        .filter(|l| l.name != "lo")
        .map(|l| format!("{}:{}", l.name, l.kind.unwrap_or_default()))
        .collect()
}

/// The links inside a namespace, without `lo`.
pub fn links_in(path: &Path) -> BTreeSet<String> {
    let ns = Netns::open(path).expect("open netns");
    let mut nl = Netlink::in_netns(&ns).expect("netlink");
    nl.links().expect("links").into_iter().filter(|l| l.name != "lo").map(|l| l.name).collect()
}
