//! A real process death, not a simulated one. Dropping a controller closes its store cleanly,
//! so only a process killed right after its calls return shows what a crash keeps: every
//! change the caller saw succeed — the join, and an endpoint created but not yet joined —
//! must be there at the next start, with nothing to repair.
//!
//! The test re-runs its own binary as the child (selected by an environment variable), in
//! the test's network namespace, which a spawned process inherits from the spawning thread.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use lnet_core::{Config, Controller, JoinOptions, JoinState};
use lnet_kernel::IpFamily;

const CHILD_ROOT: &str = "LNET_TEST_KILL_CHILD_ROOT";
const TEST: &str = "an_acknowledged_join_survives_a_kill";

/// The child: opens the store the parent made, joins, creates an endpoint, and dies at once —
/// no destructor runs, so nothing after those calls' own writes reaches the store.
fn child(root: PathBuf) -> ! {
    let mut config = Config::rooted_at(&root);
    config.host_resolv_conf = root.join("host-resolv.conf");
    config.host_hosts = root.join("host-hosts");
    let ctrl = Controller::new(config).expect("child controller");
    let net = ctrl.network("n").expect("network n");
    let ep = net.endpoint_by_name("e").expect("endpoint e");
    ep.join(
        &ctrl.sandbox("s").expect("sandbox s"),
        JoinOptions::default(),
    )
    .expect("join");
    net.create_endpoint("later", Default::default())
        .expect("create endpoint");
    std::process::abort();
}

#[test]
fn an_acknowledged_join_survives_a_kill() {
    if let Some(root) = std::env::var_os(CHILD_ROOT) {
        child(root.into());
    }
    let Some(mut env) = common::env(TEST) else {
        return;
    };
    {
        let n = bridge_on(env.ctrl(), "n", "10.99.0.0/24");
        endpoint(&n, "e");
        sandbox(env.ctrl(), "s");
    }
    env.ctrl = None; // the store is the child's now

    let status = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ROOT, env.root())
        .status()
        .expect("run the child");
    assert!(
        !status.success(),
        "the child must die at its abort, not exit: {status}"
    );

    let ctrl = env.restart();
    let report = ctrl.recovery_report().clone();
    assert!(
        report.is_clean(),
        "nothing was lost, so nothing to finish: {report:?}"
    );
    {
        let later =
            find_endpoint(ctrl, "n", "later").expect("the endpoint created before the kill");
        assert_eq!(ip4(&later), ip("10.99.0.3"));
    }
    {
        let ep = find_endpoint(ctrl, "n", "e").unwrap();
        let join = ep.info().unwrap().join.expect("still joined");
        assert_eq!(join.state, JoinState::Joined);
        let s = ctrl.sandbox("s").unwrap();
        let mut nl = sandbox_nl(&s);
        assert!(addrs(&mut nl, "eth0").contains(&cidr("10.99.0.2/24")));
        assert_eq!(default_gw(&mut nl, IpFamily::V4), Some(ip("10.99.0.1")));
        assert!(must_link(&mut host_nl(), &host_ifname(&ep)).up);
    }
    assert_converged(&mut env);
}
