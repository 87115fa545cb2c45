//! The `null` and `host` drivers: what they put in the kernel (nothing), who may join them,
//! and that each may exist only once.

mod common;

use common::*;
use lnet_core::{EndpointOptions, ErrorKind, JoinOptions, NetworkOptions, SandboxOptions};
use lnet_kernel::{IpFamily, Netns};

fn host_mode_sandbox(ctrl: &lnet_core::Controller, container: &str) -> lnet_core::Sandbox {
    ctrl.new_sandbox(
        container,
        SandboxOptions {
            host_mode: true,
            extra_hosts: vec![("db".into(), "10.9.9.9".parse().unwrap())],
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn a_null_endpoint_leaves_the_sandbox_with_only_loopback() {
    let Some(mut env) = common::env("a_null_endpoint_leaves_the_sandbox_with_only_loopback") else {
        return;
    };
    let ctrl = env.ctrl();
    let none = ctrl
        .new_network("null", "none", NetworkOptions::default())
        .unwrap();
    assert!(none.info().unwrap().pools.is_empty());
    assert!(ctrl.allocated_pools().is_empty());
    let sb = sandbox(ctrl, "c1");
    let e = attach(&none, "e", &sb);
    let rec = e.info().unwrap();
    assert_eq!((rec.addr_v4, rec.addr_v6, rec.mac), (None, None, None));
    let mut nl = sandbox_nl(&sb);
    let all: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(all, ["lo"]);
    assert!(must_link(&mut nl, "lo").up);
    assert!(!has_default_route(&mut nl, IpFamily::V4));
    assert_eq!(host_links(), env.base_links, "nothing on the host either");
    assert_eq!(sb.endpoints().len(), 1);
    // A null endpoint takes no addresses.
    let err = none
        .create_endpoint(
            "addressed",
            EndpointOptions {
                ipv4: Some("10.0.0.5".parse().unwrap()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("IPv4Address"), "{err}");
    drop((none, sb, e));
    assert_converged(&mut env);
    let (sb, e) = (
        env.ctrl().sandbox("c1").unwrap(),
        env.ctrl()
            .network("none")
            .unwrap()
            .endpoint_by_name("e")
            .unwrap(),
    );
    e.leave(&sb).unwrap();
    e.delete().unwrap();
    env.ctrl().network("none").unwrap().delete().unwrap();
}

#[test]
fn only_one_null_and_one_host_network_may_exist() {
    let Some(env) = common::env("only_one_null_and_one_host_network_may_exist") else {
        return;
    };
    for driver in ["null", "host"] {
        let first = env
            .ctrl()
            .new_network(driver, driver, NetworkOptions::default())
            .unwrap();
        assert_refused(
            &env,
            ErrorKind::Forbidden,
            &[&format!("only one {driver} network"), driver],
            |c| c.new_network(driver, &format!("{driver}2"), NetworkOptions::default()),
        );
        // Once the first is gone, another may be made.
        first.delete().unwrap();
        env.ctrl()
            .new_network(driver, &format!("{driver}2"), NetworkOptions::default())
            .unwrap();
    }
}

#[test]
fn host_mode_sandboxes_join_only_the_host_network() {
    let Some(mut env) = common::env("host_mode_sandboxes_join_only_the_host_network") else {
        return;
    };
    let ctrl = env.ctrl();
    let host = ctrl
        .new_network("host", "host", NetworkOptions::default())
        .unwrap();
    let br = bridge(ctrl, "br");
    let none = ctrl
        .new_network("null", "none", NetworkOptions::default())
        .unwrap();
    let hm = host_mode_sandbox(ctrl, "hm");
    let normal = sandbox(ctrl, "normal");

    // The host-mode sandbox's key is the host's own namespace.
    let key = hm.key().unwrap();
    assert_eq!(
        Netns::open(&key).unwrap().inode().unwrap(),
        Netns::current().unwrap().inode().unwrap()
    );
    // Its files follow the host's.
    assert_eq!(
        read(&hm.hosts_path().unwrap()),
        "127.0.0.1\tlocalhost\n10.9.9.9\tdb\n"
    );
    assert_eq!(
        read(&hm.resolv_conf_path().unwrap()),
        read(&env.root().join("host-resolv.conf"))
    );

    let links_before = host_links();
    let eh = attach(&host, "eh", &hm);
    assert!(eh.info().unwrap().addr_v4.is_none());
    assert_eq!(
        host_links(),
        links_before,
        "joining the host network makes no links"
    );
    assert_eq!(hm.endpoints().len(), 1);

    for (net, sb, needles) in [
        (&host, &normal, ["normal", "cannot join the host network"]),
        (&br, &hm, ["hm", "cannot join a bridge network"]),
        (&none, &hm, ["hm", "cannot join a null network"]),
    ] {
        let e = endpoint(net, &format!("try-{}", sb.container_id()));
        assert_refused(&env, ErrorKind::Forbidden, &needles, |_| {
            e.join(sb, JoinOptions::default())
        });
    }

    drop((host, br, none, hm, normal, eh));
    assert_converged(&mut env);
    let ctrl = env.ctrl();
    let (hm, eh) = (
        ctrl.sandbox("hm").unwrap(),
        ctrl.network("host")
            .unwrap()
            .endpoint_by_name("eh")
            .unwrap(),
    );
    assert_eq!(
        hm.endpoints().len(),
        1,
        "the host-mode join survived a restart"
    );
    eh.leave(&hm).unwrap();
    hm.delete().unwrap();
    // Deleting a host-mode sandbox leaves the host's own namespace and links alone.
    assert_eq!(hm.info().unwrap_err().kind(), ErrorKind::NotFound);
    let br = ctrl.network("br").unwrap();
    assert!(must_link(&mut host_nl(), &bridge_name(&br)).up);
    assert_eq!(
        Netns::open(&key).unwrap().inode().unwrap(),
        Netns::current().unwrap().inode().unwrap()
    );
}

/// A driver of a library user's own: it makes nothing in the kernel and writes down what
/// the controller asks of it, so the test sees the order of calls.
#[derive(Debug, Default)]
struct Recorder {
    calls: std::sync::Mutex<Vec<String>>,
}

impl Recorder {
    fn said(&self, what: &str) {
        self.calls.lock().unwrap().push(what.to_string());
    }
}

impl lnet_core::Driver for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    fn capabilities(&self) -> lnet_core::Capabilities {
        lnet_core::Capabilities::default()
    }

    fn plan_network(
        &self,
        plan: &mut lnet_core::PlanNetwork<'_>,
    ) -> lnet_core::Result<serde_json::Value> {
        self.said(&format!("plan {}", plan.name));
        Ok(serde_json::json!({ "mine": true }))
    }

    fn create_network(
        &self,
        _: &mut dyn lnet_core::HostOps,
        net: &lnet_core::NetworkRecord,
        _: &lnet_core::Config,
    ) -> lnet_core::Result<()> {
        assert_eq!(
            net.driver_state["mine"], true,
            "the planned state is recorded"
        );
        self.said(&format!("create {}", net.name));
        Ok(())
    }

    fn refresh_network(
        &self,
        _: &mut dyn lnet_core::HostOps,
        net: &lnet_core::NetworkRecord,
        _: &lnet_core::Config,
    ) -> lnet_core::Result<()> {
        self.said(&format!("refresh {}", net.name));
        Ok(())
    }

    fn delete_network(
        &self,
        _: &mut dyn lnet_core::HostOps,
        net: &lnet_core::NetworkRecord,
    ) -> lnet_core::Result<()> {
        self.said(&format!("delete {}", net.name));
        Ok(())
    }

    fn create_endpoint(
        &self,
        _: &lnet_core::NetworkRecord,
        ep: &lnet_core::EndpointRecord,
    ) -> lnet_core::Result<()> {
        assert!(ep.addr_v4.is_some(), "IPAM ran first");
        self.said(&format!("create endpoint {}", ep.name));
        Ok(())
    }

    fn delete_endpoint(
        &self,
        _: &lnet_core::NetworkRecord,
        ep: &lnet_core::EndpointRecord,
    ) -> lnet_core::Result<()> {
        self.said(&format!("delete endpoint {}", ep.name));
        Ok(())
    }

    fn plan_join(
        &self,
        _: &mut dyn lnet_core::HostOps,
        _: &lnet_core::NetworkRecord,
        ep: &lnet_core::EndpointRecord,
        sandbox: &lnet_core::SandboxRecord,
    ) -> lnet_core::Result<lnet_core::JoinPlan> {
        self.said(&format!("plan join {} {}", ep.name, sandbox.container_id));
        Ok(lnet_core::JoinPlan::default())
    }

    fn join(
        &self,
        _: &mut dyn lnet_core::HostOps,
        _: &mut dyn lnet_core::SandboxOps,
        _: &lnet_core::NetworkRecord,
        ep: &lnet_core::EndpointRecord,
        _: &lnet_core::JoinRecord,
        mode: lnet_core::JoinMode,
    ) -> lnet_core::Result<()> {
        self.said(&format!("join {} {mode:?}", ep.name));
        Ok(())
    }

    fn leave(
        &self,
        _: &mut dyn lnet_core::HostOps,
        _: Option<&mut dyn lnet_core::SandboxOps>,
        _: &lnet_core::NetworkRecord,
        ep: &lnet_core::EndpointRecord,
        _: &lnet_core::JoinRecord,
    ) -> lnet_core::Result<()> {
        self.said(&format!("leave {}", ep.name));
        Ok(())
    }
}

#[test]
fn a_library_user_registers_a_driver_of_their_own() {
    let Some(mut env) = common::env("a_library_user_registers_a_driver_of_their_own") else {
        return;
    };
    let recorder = std::sync::Arc::new(Recorder::default());
    let mut drivers = lnet_core::drivers::builtin();
    let again = drivers
        .register(std::sync::Arc::new(
            lnet_core::drivers::bridge::BridgeDriver::default(),
        ))
        .unwrap_err();
    assert!(again.to_string().contains("registered already"), "{again}");
    drivers.register(recorder.clone()).unwrap();
    env.ctrl = None;
    env.ctrl = Some(lnet_core::Controller::with_drivers(env.config(), drivers.clone()).unwrap());
    let ctrl = env.ctrl();
    let n = ctrl
        .new_network("recorder", "mine", NetworkOptions::default())
        .unwrap();
    assert!(!n.info().unwrap().pools.is_empty(), "IPAM gave it a pool");
    let sb = sandbox(ctrl, "c1");
    let e = n.create_endpoint("e", EndpointOptions::default()).unwrap();
    e.join(&sb, JoinOptions::default()).unwrap();
    assert_eq!(
        recorder.calls.lock().unwrap().drain(..).collect::<Vec<_>>(),
        [
            "plan mine",
            "create mine",
            "create endpoint e",
            "plan join e c1",
            "join e Fresh"
        ]
    );
    // A start finds the network right (it wants no links) and only refreshes it.
    drop((n, sb, e));
    env.ctrl = None;
    env.ctrl = Some(lnet_core::Controller::with_drivers(env.config(), drivers).unwrap());
    assert!(
        env.ctrl().recovery_report().is_clean(),
        "{:?}",
        env.ctrl().recovery_report()
    );
    let ctrl = env.ctrl();
    let (n, sb) = (ctrl.network("mine").unwrap(), ctrl.sandbox("c1").unwrap());
    let e = n.endpoint_by_name("e").unwrap();
    e.leave(&sb).unwrap();
    e.delete().unwrap();
    n.delete().unwrap();
    assert_eq!(
        recorder.calls.lock().unwrap().drain(..).collect::<Vec<_>>(),
        [
            "refresh mine",
            "leave e",
            "delete endpoint e",
            "delete mine"
        ]
    );
    assert!(ctrl.doctor().is_clean(), "{:?}", ctrl.doctor());
}
