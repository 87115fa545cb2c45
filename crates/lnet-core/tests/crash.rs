//! Crash at every failpoint: the operation containing it stops dead there (a panic, armed on
//! the test's thread), the controller is dropped without any cleanup and a new one starts on
//! the same store. The start must converge — every object ready, the kernel and the files
//! matching the records, nothing leaked — and the interrupted operation must be finished
//! (deletes, leaves and joins) or leave no trace at all (creates), after which retrying it
//! works. (`kill.rs` adds a real process kill.)

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::*;
use lnet_core::{EndpointOptions, ErrorKind, JoinOptions, Lifecycle, failpoint};
use lnet_kernel::Netns;

/// The world every crash test starts from: network `base` with `e1` joined to `s1`, `e3`
/// joined to `s3` and `e2` not joined, each with published ports; an empty sandbox `s2`; a
/// network `doomed` with no endpoints; `e5`, not joined, publishing a port.
fn build_world(env: &Env) {
    let ctrl = env.ctrl();
    let base = bridge_on(ctrl, "base", "10.98.0.0/24");
    let publishing = |name: &str, ports: &[&str]| {
        base.create_endpoint(
            name,
            EndpointOptions {
                ports: ports
                    .iter()
                    .map(|p| lnet_core::PortSpec::parse(p).unwrap())
                    .collect(),
                ..Default::default()
            },
        )
        .unwrap()
    };
    publishing("e1", &["8080:80/tcp", "5353:53/udp"])
        .join(&sandbox(ctrl, "s1"), JoinOptions::default())
        .unwrap();
    publishing("e3", &["127.0.0.1:7070:70"])
        .join(&sandbox(ctrl, "s3"), JoinOptions::default())
        .unwrap();
    publishing("e2", &["9090-9091:90-91/tcp"]);
    publishing("e5", &["6060:60/udp"]);
    sandbox(ctrl, "s2");
    bridge_on(ctrl, "doomed", "10.97.0.0/24");
}

fn ep(env: &Env, name: &str) -> lnet_core::Result<lnet_core::Endpoint> {
    find_endpoint(env.ctrl(), "base", name)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    NetworkCreate,
    NetworkDelete,
    SandboxCreate,
    SandboxDelete,
    EndpointCreate,
    EndpointDelete,
    Join,
    Leave,
}

impl Op {
    fn of(failpoint: &str) -> Op {
        match failpoint.split(':').next().unwrap() {
            "network-create" => Op::NetworkCreate,
            "network-delete" => Op::NetworkDelete,
            "sandbox-create" => Op::SandboxCreate,
            "sandbox-delete" => Op::SandboxDelete,
            "endpoint-create" => Op::EndpointCreate,
            "endpoint-delete" => Op::EndpointDelete,
            "join" => Op::Join,
            "leave" => Op::Leave,
            other => panic!("no operation known for failpoint group {other}: add one here"),
        }
    }

    /// The object the operation is about, as recovery names it; `None` for operations that
    /// are one record write (nothing for recovery to finish or undo).
    fn object(self, fp: &str) -> Option<&'static str> {
        Some(match self {
            // No record: the sweep finds the interface by its name and names it.
            Op::Join if fp == "join:unrecorded" => "interface veth",
            Op::NetworkCreate => "network fresh",
            Op::NetworkDelete => "network doomed",
            Op::SandboxCreate => "sandbox s4",
            Op::SandboxDelete => "sandbox s3",
            Op::EndpointCreate | Op::EndpointDelete => return None,
            Op::Join => "endpoint e2",
            Op::Leave => "endpoint e1",
        })
    }

    /// Deletes, leaves and joins are finished at start (a join whose record reached the
    /// disk is rolled forward); creates are undone, and so is a join whose record was lost.
    fn finished_at_start(self, fp: &str) -> bool {
        match self {
            Op::Join => fp != "join:unrecorded",
            // Its one write happened or did not.
            Op::EndpointCreate => fp == "endpoint-create:recorded",
            _ => matches!(
                self,
                Op::NetworkDelete | Op::SandboxDelete | Op::EndpointDelete | Op::Leave
            ),
        }
    }

    fn run(self, env: &Env) -> lnet_core::Result<()> {
        let ctrl = env.ctrl();
        match self {
            Op::NetworkCreate => ctrl
                .new_network("bridge", "fresh", subnet_opts("10.96.0.0/24"))
                .map(drop),
            Op::NetworkDelete => ctrl.network("doomed")?.delete(),
            Op::SandboxCreate => ctrl.new_sandbox("s4", Default::default()).map(drop),
            Op::SandboxDelete => ctrl.sandbox("s3")?.delete(),
            Op::EndpointCreate => ctrl
                .network("base")?
                .create_endpoint(
                    "e4",
                    EndpointOptions {
                        ports: vec![lnet_core::PortSpec::parse("6161:61").unwrap()],
                        ..Default::default()
                    },
                )
                .map(drop),
            Op::EndpointDelete => ep(env, "e5")?.delete(),
            Op::Join => ep(env, "e2")?.join(&ctrl.sandbox("s2")?, JoinOptions::default()),
            Op::Leave => ep(env, "e1")?.leave(&ctrl.sandbox("s1")?),
        }
    }

    /// Whether the operation's effect is there.
    fn done(self, env: &Env) -> bool {
        let ctrl = env.ctrl();
        let gone = |r: lnet_core::Result<()>| match r {
            Ok(()) => false,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
                true
            }
        };
        match self {
            Op::NetworkCreate => !gone(ctrl.network("fresh").map(drop)),
            Op::NetworkDelete => gone(ctrl.network("doomed").map(drop)),
            Op::SandboxCreate => !gone(ctrl.sandbox("s4").map(drop)),
            Op::SandboxDelete => gone(ctrl.sandbox("s3").map(drop)),
            Op::EndpointCreate => !gone(ep(env, "e4").map(drop)),
            Op::EndpointDelete => gone(ep(env, "e5").map(drop)),
            Op::Join => ep(env, "e2").unwrap().info().unwrap().join.is_some(),
            Op::Leave => ep(env, "e1").unwrap().info().unwrap().join.is_none(),
        }
    }

    /// What a user checks once the operation took effect.
    fn check_done(self, env: &Env) {
        let ctrl = env.ctrl();
        match self {
            Op::NetworkCreate => {
                let n = ctrl.network("fresh").unwrap();
                assert_eq!(n.info().unwrap().state, Lifecycle::Ready);
                assert!(must_link(&mut host_nl(), &bridge_name(&n)).up);
            }
            Op::NetworkDelete => {
                // The pool is free: the same subnet can be had again.
                bridge_on(ctrl, "doomed-again", "10.97.0.0/24");
            }
            Op::SandboxCreate => {
                let s = ctrl.sandbox("s4").unwrap();
                assert!(Netns::is_mounted_at(s.key().unwrap()));
                assert!(s.resolv_conf_path().unwrap().exists());
            }
            Op::SandboxDelete => {
                // Its endpoint went with it, and e3's address is free again.
                assert_eq!(ep(env, "e3").unwrap_err().kind(), ErrorKind::NotFound);
                let again = ctrl
                    .network("base")
                    .unwrap()
                    .create_endpoint(
                        "e3-again",
                        EndpointOptions {
                            ipv4: Some("10.98.0.3".parse().unwrap()),
                            ..Default::default()
                        },
                    )
                    .unwrap();
                again.delete().unwrap();
            }
            Op::EndpointCreate => {
                let e4 = ep(env, "e4").unwrap().info().unwrap();
                assert_eq!(e4.state, Lifecycle::Ready);
                assert_eq!(e4.ports.len(), 1, "{e4:?}");
            }
            Op::EndpointDelete => {
                // Its address and host port are free again.
                let e5 = ctrl
                    .network("base")
                    .unwrap()
                    .create_endpoint(
                        "e5-again",
                        EndpointOptions {
                            ports: vec![lnet_core::PortSpec::parse("6060:60/udp").unwrap()],
                            ..Default::default()
                        },
                    )
                    .unwrap();
                e5.delete().unwrap();
            }
            Op::Join => {
                let s2 = ctrl.sandbox("s2").unwrap();
                assert_eq!(links_in(&s2.key().unwrap()), ["eth0".to_string()].into());
                assert_eq!(
                    default_gw(&mut sandbox_nl(&s2), lnet_kernel::IpFamily::V4),
                    Some("10.98.0.1".parse().unwrap())
                );
            }
            Op::Leave => {
                let s1 = ctrl.sandbox("s1").unwrap();
                assert!(links_in(&s1.key().unwrap()).is_empty());
                assert!(!read(&s1.hosts_path().unwrap()).contains("10.98.0.2"));
            }
        }
    }
}

/// Builds the world and runs the operation of `fp` with `fp` armed, which must stop it: the
/// operation, the world's snapshot before it, and the panic's payload.
fn stop_at(env: &Env, fp: &str) -> (Op, Snapshot, Box<dyn std::any::Any + Send>) {
    build_world(env);
    let op = Op::of(fp);
    let before = env.snapshot();
    failpoint::arm(fp);
    let outcome = catch_unwind(AssertUnwindSafe(|| op.run(env)));
    failpoint::disarm();
    let payload = outcome.expect_err("the operation must stop at its failpoint");
    (op, before, payload)
}

/// A finished operation is there as a user checks it; an undone one left no trace.
fn finished_or_no_trace(env: &Env, op: Op, fp: &str, done: bool, before: Snapshot) {
    if done {
        op.check_done(env);
    } else {
        assert_eq!(
            env.snapshot().without_revisions(),
            before.without_revisions(),
            "{fp}: an undone operation leaves no trace"
        );
    }
}

/// Runs the operation of `fp` with `fp` armed, restarts, and checks the outcome.
fn crash_at(fp: &str, test: &str) {
    let Some(mut env) = common::env(test) else {
        return;
    };
    let (op, before, payload) = stop_at(&env, fp);
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert_eq!(msg, format!("failpoint {fp}"));

    env.restart();
    let report = env.ctrl().recovery_report().clone();
    let done = op.done(&env);
    assert_eq!(
        done,
        op.finished_at_start(fp),
        "{fp}: recovery should {} the operation: {report:?}",
        if op.finished_at_start(fp) {
            "finish"
        } else {
            "undo"
        }
    );
    let named = if done {
        &report.finished
    } else {
        &report.rolled_back
    };
    match op.object(fp) {
        Some(object) => assert!(
            named.iter().any(|w| w.starts_with(object)),
            "{fp}: the recovery report names {object}: {report:?}"
        ),
        None => assert!(report.is_clean(), "{fp}: nothing to recover: {report:?}"),
    }
    finished_or_no_trace(&env, op, fp, done, before);
    assert_converged(&mut env);

    if !done {
        op.run(&env)
            .unwrap_or_else(|e| panic!("{fp}: retrying after the crash: {e}"));
        op.check_done(&env);
        assert_converged(&mut env);
    }
}

/// Runs the operation of `fp` with `fp` armed to panic, and goes on with the *same*
/// controller, as a library user whose host program caught the panic would: the next call
/// must find memory derived again from the store and the kernel (finished or undone as a
/// start would), never what the panic left half done.
fn panic_at(fp: &str, test: &str) {
    let Some(mut env) = common::env(test) else {
        return;
    };
    let (op, before, _) = stop_at(&env, fp);

    let done = op.done(&env);
    assert_eq!(done, op.finished_at_start(fp), "{fp}: after the panic");
    finished_or_no_trace(&env, op, fp, done, before);
    common::check_live_state(&env);
    if !done {
        op.run(&env)
            .unwrap_or_else(|e| panic!("{fp}: retrying after the panic: {e}"));
        op.check_done(&env);
    }
    assert_converged(&mut env);
}

/// A panic in every kind of operation, at the point that leaves most in memory half done.
#[test]
fn panic_mid_endpoint_create_is_repaired_before_the_next_call() {
    panic_at(
        "endpoint-create:allocated",
        "panic_mid_endpoint_create_is_repaired_before_the_next_call",
    );
}

#[test]
fn panic_mid_join_is_repaired_before_the_next_call() {
    panic_at(
        "join:interface-made",
        "panic_mid_join_is_repaired_before_the_next_call",
    );
}

#[test]
fn panic_mid_leave_is_repaired_before_the_next_call() {
    panic_at(
        "leave:ports-unpublished",
        "panic_mid_leave_is_repaired_before_the_next_call",
    );
}

#[test]
fn panic_mid_network_delete_is_repaired_before_the_next_call() {
    panic_at(
        "network-delete:recorded",
        "panic_mid_network_delete_is_repaired_before_the_next_call",
    );
}

#[test]
fn panic_mid_sandbox_create_is_repaired_before_the_next_call() {
    panic_at(
        "sandbox-create:recorded",
        "panic_mid_sandbox_create_is_repaired_before_the_next_call",
    );
}

/// A repair after a panic that cannot read the store (here its sandbox records, a moment
/// unreadable) leaves memory as the panic left it; the next call must try again rather than
/// go on for good with what the panic half did (a host port held for no endpoint).
#[test]
fn a_repair_after_a_panic_that_failed_is_tried_again_at_the_next_call() {
    let Some(mut env) =
        common::env("a_repair_after_a_panic_that_failed_is_tried_again_at_the_next_call")
    else {
        return;
    };
    let ctrl = env.ctrl();
    let net = bridge_on(ctrl, "n", "10.61.0.0/24");
    let publish = || EndpointOptions {
        ports: vec![lnet_core::PortSpec::parse("8080:80").unwrap()],
        ..Default::default()
    };
    failpoint::arm("endpoint-create:allocated");
    let outcome = catch_unwind(AssertUnwindSafe(|| net.create_endpoint("e1", publish())));
    failpoint::disarm();
    outcome.expect_err("the create stops at its failpoint");

    let records = env.config().state_dir().join("sandbox");
    let away = records.with_extension("away");
    std::fs::rename(&records, &away).unwrap();
    std::fs::write(&records, b"").unwrap();
    // The first call after the panic: its repair cannot read the store.
    ctrl.port_bindings();
    std::fs::remove_file(&records).unwrap();
    std::fs::rename(&away, &records).unwrap();

    assert_eq!(
        ctrl.port_bindings(),
        [],
        "no record holds host port 8080: the next call repaired memory"
    );
    let e2 = net
        .create_endpoint("e2", publish())
        .expect("host port 8080 is free for a new endpoint");
    drop((e2, net));
    common::check_live_state(&env);
    assert_converged(&mut env);
}

macro_rules! crash_tests {
    ($($name:ident => $fp:literal,)*) => {
        $(
            #[test]
            fn $name() {
                crash_at($fp, stringify!($name));
            }
        )*
        const COVERED: &[&str] = &[$($fp),*];
    };
}

crash_tests! {
    crash_network_create_recorded => "network-create:recorded",
    crash_network_create_kernel_done => "network-create:kernel-done",
    crash_network_delete_recorded => "network-delete:recorded",
    crash_network_delete_kernel_done => "network-delete:kernel-done",
    crash_sandbox_create_recorded => "sandbox-create:recorded",
    crash_sandbox_create_kernel_done => "sandbox-create:kernel-done",
    crash_sandbox_delete_recorded => "sandbox-delete:recorded",
    crash_sandbox_delete_endpoints_done => "sandbox-delete:endpoints-done",
    crash_sandbox_delete_kernel_done => "sandbox-delete:kernel-done",
    crash_endpoint_create_allocated => "endpoint-create:allocated",
    crash_endpoint_create_recorded => "endpoint-create:recorded",
    crash_endpoint_delete_recorded => "endpoint-delete:recorded",
    crash_join_unrecorded => "join:unrecorded",
    crash_join_recorded => "join:recorded",
    crash_join_interface_made => "join:interface-made",
    crash_join_ports_published => "join:ports-published",
    crash_join_kernel_done => "join:kernel-done",
    crash_leave_recorded => "leave:recorded",
    crash_leave_ports_unpublished => "leave:ports-unpublished",
    crash_leave_kernel_done => "leave:kernel-done",
}

#[test]
fn every_failpoint_has_a_crash_test() {
    let mut covered = COVERED.to_vec();
    let mut all = failpoint::ALL.to_vec();
    covered.sort_unstable();
    all.sort_unstable();
    assert_eq!(covered, all);
}

/// libnetwork's seed commit: a network delete interrupted right after the delete was
/// recorded must leave a self-consistent record (state `deleting`, pools intact), the next
/// start must finish the delete without ever handing the pool out twice, and the same subnet
/// must then be available to a new network.
#[test]
fn network_delete_interrupted_after_recording_is_finished_and_its_subnet_reusable() {
    let Some(mut env) = common::env(
        "network_delete_interrupted_after_recording_is_finished_and_its_subnet_reusable",
    ) else {
        return;
    };
    build_world(&env);
    let (id, bridge) = {
        let n = env.ctrl().network("doomed").unwrap();
        (n.id().to_string(), bridge_name(&n))
    };
    failpoint::arm("network-delete:recorded");
    let outcome = catch_unwind(AssertUnwindSafe(|| Op::NetworkDelete.run(&env)));
    failpoint::disarm();
    outcome.expect_err("the delete stops at network-delete:recorded");

    // What the crash left in the store: the intent, with the pools still recorded.
    env.ctrl = None;
    {
        let (store, _) = env.config().open_store().unwrap();
        let rec: lnet_core::NetworkRecord = store.get(&id).unwrap().expect("record kept");
        assert_eq!(rec.state, Lifecycle::Deleting);
        assert_eq!(rec.pools.len(), 1);
        assert_eq!(rec.pools[0].pool, "10.97.0.0/24".parse().unwrap());
        assert_eq!(rec.pools[0].gateway, Some("10.97.0.1/24".parse().unwrap()));
    }
    // The bridge is still there: the kernel work had not started.
    assert!(link(&mut host_nl(), &bridge).is_some());

    env.restart();
    let report = env.ctrl().recovery_report().clone();
    assert_eq!(report.finished, ["network doomed (deleting)"], "{report:?}");
    assert!(report.errors.is_empty() && report.quarantined.is_empty());
    assert!(link(&mut host_nl(), &bridge).is_none());
    assert_eq!(
        env.ctrl().network("doomed").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(
        !env.ctrl()
            .allocated_pools()
            .contains(&"10.97.0.0/24".parse().unwrap())
    );
    let again = bridge_on(env.ctrl(), "doomed", "10.97.0.0/24");
    assert_eq!(
        pool_and_gateway(&again),
        (
            "10.97.0.0/24".parse().unwrap(),
            "10.97.0.1/24".parse().unwrap()
        )
    );
    let s = sandbox(env.ctrl(), "user");
    let e = attach(&again, "e", &s);
    assert_eq!(ip4(&e), "10.97.0.2".parse::<std::net::IpAddr>().unwrap());
    drop((again, s, e));
    assert_converged(&mut env);
}

/// A leave interrupted after it was recorded, in a process that goes on (the controller
/// survives a panic in an operation): the next call finds it finished, as a start would
/// finish it — memory is derived again after a panic — and it must have moved the default
/// route to the next endpoint, as an uninterrupted leave does. A retry has nothing to do.
#[test]
fn a_retried_leave_moves_the_default_route() {
    let Some(mut env) = common::env("a_retried_leave_moves_the_default_route") else {
        return;
    };
    let ctrl = env.ctrl();
    let (a, b) = (
        bridge_on(ctrl, "a", "10.95.0.0/24"),
        bridge_on(ctrl, "b", "10.94.0.0/24"),
    );
    let s = sandbox(ctrl, "s");
    let ea = attach_with(&a, "ea", &s, JoinOptions { priority: 10 });
    attach(&b, "eb", &s);
    let mut nl = sandbox_nl(&s);
    let gw = |n: &lnet_core::Network| Some(pool_and_gateway(n).1.addr());
    assert_eq!(default_gw(&mut nl, lnet_kernel::IpFamily::V4), gw(&a));

    failpoint::arm("leave:recorded");
    let outcome = catch_unwind(AssertUnwindSafe(|| ea.leave(&s)));
    failpoint::disarm();
    outcome.expect_err("the leave stops at leave:recorded");
    assert!(ea.info().unwrap().join.is_none(), "the leave was finished");
    let retry = ea.leave(&s).expect_err("nothing left to leave");
    assert_eq!(retry.kind(), ErrorKind::Forbidden, "{retry}");
    assert_eq!(links_in(&s.key().unwrap()), ["eth1".to_string()].into());
    assert_eq!(
        default_gw(&mut nl, lnet_kernel::IpFamily::V4),
        gw(&b),
        "the default route moved to the remaining endpoint"
    );
    drop((a, b, s, ea));
    assert_converged(&mut env);
}
