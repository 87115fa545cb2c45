//! macvlan and ipvlan networks through the docker CLI against `lnet daemon`, with real
//! packets: the test's namespace is the host, a veth pair stands for its LAN port, and the
//! pair's other end sits in an "outside" namespace standing for a machine on the LAN.

mod support;

use std::process::{Command, Output};

use lnet_kernel::testing::{TempNetns, enter_new_netns};
use lnet_kernel::{Netlink, VethSpec};
use serde_json::Value;
use support::Daemon;

const LNET: &str = env!("CARGO_BIN_EXE_lnet");

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A LAN: host port `port` here, its peer in a namespace of its own with `addr`.
struct Lan {
    outside: TempNetns,
}

impl Lan {
    fn new(port: &str, addr: &str) -> Lan {
        let outside = TempNetns::new().unwrap();
        let mut nl = Netlink::new().unwrap();
        nl.create_veth(VethSpec {
            host_name: port,
            host_up: true,
            peer_name: "lan",
            peer_ns: Some(&outside),
            ..Default::default()
        })
        .unwrap();
        let lan = Lan { outside };
        for cmd in [
            vec!["ip", "addr", "add", addr, "dev", "lan"],
            vec!["ip", "link", "set", "lan", "up"],
            vec!["ip", "link", "set", "lo", "up"],
        ] {
            let out = lan.run(&cmd);
            assert!(out.status.success(), "{cmd:?}: {}", text(&out));
        }
        lan
    }

    /// Runs `cmd` on the LAN's machine.
    fn run(&self, cmd: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.outside.path().display()))
            .args(cmd)
            .output()
            .unwrap()
    }
}

fn lnet(d: &Daemon, args: &[&str]) -> Output {
    Command::new(LNET)
        .args(["-H", &format!("unix://{}", d.socket.display())])
        .args(args)
        .output()
        .unwrap()
}

fn exec(d: &Daemon, sandbox: &str, cmd: &[&str]) -> Output {
    lnet(d, &[&["sandbox", "exec", sandbox, "--"][..], cmd].concat())
}

fn pings(d: &Daemon, sandbox: &str, to: &str) -> bool {
    exec(d, sandbox, &["busybox", "ping", "-c", "1", "-W", "1", to])
        .status
        .success()
}

fn no_findings(d: &Daemon) {
    let (_, body) = d.request("GET", "/lnet/doctor", None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["doctor"]["findings"], Value::Array(vec![]), "{v}");
}

fn setup(test: &str) -> Option<(tempfile::TempDir, Daemon)> {
    if !support::can_run(test, true) || !lnet_kernel::testing::require_tool(test, "busybox") {
        return None;
    }
    enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    Some((dir, d))
}

#[test]
fn macvlan_containers_are_on_the_lan_and_bad_input_changes_nothing() {
    let Some((_dir, d)) = setup("macvlan_containers_are_on_the_lan_and_bad_input_changes_nothing")
    else {
        return;
    };
    let lan = Lan::new("lan0", "192.168.77.1/24");
    d.docker_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0",
        "--subnet",
        "192.168.77.0/24",
        "--gateway",
        "192.168.77.1",
        "--ip-range",
        "192.168.77.128/25",
        "lan",
    ]);
    let (a, b) = (d.sandbox("a"), d.sandbox("b"));
    for s in ["a", "b"] {
        d.docker_ok(&["network", "connect", "lan", s]);
    }
    // On the LAN: their own MACs on the parent, addresses from the range, the LAN's router
    // as gateway; the machine outside and each other answer (bridge mode).
    let link = text(&exec(&d, &a, &["ip", "-d", "addr", "show", "eth0"]));
    assert!(
        link.contains("macvlan mode bridge") && link.contains("192.168.77.128/24"),
        "{link}"
    );
    let routes = text(&exec(&d, &a, &["ip", "route"]));
    assert!(routes.contains("default via 192.168.77.1"), "{routes}");
    assert!(pings(&d, &a, "192.168.77.1"), "a does not reach the LAN");
    assert!(pings(&d, &a, "192.168.77.129"), "a does not reach b");
    let out = lan.run(&["busybox", "ping", "-c", "1", "-W", "1", "192.168.77.129"]);
    assert!(
        out.status.success(),
        "the LAN does not reach b: {}",
        text(&out)
    );
    // Nothing of a join is left in the host: no veth, no bridge.
    let host = text(&Command::new("ip").args(["-o", "link"]).output().unwrap());
    assert!(!host.contains("veth") && !host.contains("br-"), "{host}");
    no_findings(&d);
    // A restart keeps them on the LAN, checked and left alone.
    let mut d = d;
    d.restart();
    assert!(pings(&d, &b, "192.168.77.128"));
    no_findings(&d);

    // Bad input: named, and nothing changes.
    let before = d.docker_ok(&["network", "ls", "-q"]);
    for (args, says) in [
        (
            vec!["-o", "parent=lan0"],
            "parent lan0 is taken by macvlan network lan",
        ),
        (vec!["-o", "parent=nosuch0"], "no such interface"),
        (
            vec!["-o", "parent=lan0", "-o", "macvlan_mode=l2"],
            "macvlan_mode",
        ),
        (vec!["-o", "parent=lo"], "loopback"),
    ] {
        let mut cmd = vec![
            "network",
            "create",
            "-d",
            "macvlan",
            "--subnet",
            "192.168.78.0/24",
        ];
        cmd.extend(args.iter());
        cmd.push("bad");
        let out = d.docker(&cmd);
        assert!(!out.status.success(), "{args:?} was taken");
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    assert_eq!(d.docker_ok(&["network", "ls", "-q"]), before);
    d.sandbox("c");
    let out = lnet(
        &d,
        &["network", "connect", "--publish", "8080:80", "lan", "c"],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("publishes no ports"), "{}", text(&out));
    let (_, body) = d.request("GET", "/networks/lan", None);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["Containers"]
            .as_object()
            .unwrap()
            .len(),
        2,
        "{body}"
    );

    // The parent removed behind lnet's back: doctor says so.
    let del = Command::new("ip")
        .args(["link", "del", "lan0"])
        .output()
        .unwrap();
    assert!(del.status.success());
    let (_, body) = d.request("GET", "/lnet/doctor", None);
    assert!(
        body.contains("missing") && body.contains("lan0"),
        "doctor does not see the parent gone: {body}"
    );
    for s in ["a", "b"] {
        d.docker_ok(&["network", "disconnect", "lan", s]);
    }
    d.docker_ok(&["network", "rm", "lan"]);
    let out = exec(&d, &a, &["ip", "-o", "link"]);
    assert!(!text(&out).contains("eth0"), "{}", text(&out));
    no_findings(&d);
}

#[test]
fn macvlan_private_mode_keeps_containers_apart_but_on_the_lan() {
    let Some((_dir, d)) = setup("macvlan_private_mode_keeps_containers_apart_but_on_the_lan")
    else {
        return;
    };
    let _lan = Lan::new("lan1", "192.168.79.1/24");
    d.docker_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan1",
        "-o",
        "macvlan_mode=private",
        "--subnet",
        "192.168.79.0/24",
        "--gateway",
        "192.168.79.1",
        "priv",
    ]);
    let (a, _b) = (d.sandbox("a"), d.sandbox("b"));
    for s in ["a", "b"] {
        d.docker_ok(&["network", "connect", "priv", s]);
    }
    let link = text(&exec(&d, &a, &["ip", "-d", "link", "show", "eth0"]));
    assert!(link.contains("macvlan mode private"), "{link}");
    assert!(pings(&d, &a, "192.168.79.1"), "a does not reach the LAN");
    assert!(!pings(&d, &a, "192.168.79.3"), "private mode let a reach b");
    // Internal: the LAN only, no default route.
    let _inner = Lan::new("lan3", "192.168.80.1/24");
    d.docker_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--internal",
        "-o",
        "parent=lan3",
        "--subnet",
        "192.168.80.0/24",
        "inner",
    ]);
    let c = d.sandbox("c");
    d.docker_ok(&["network", "connect", "inner", "c"]);
    let routes = text(&exec(&d, &c, &["ip", "route"]));
    assert!(!routes.contains("default"), "{routes}");
    assert!(pings(&d, &c, "192.168.80.1"), "c does not reach its LAN");
    no_findings(&d);
}

#[test]
fn what_this_kernel_lacks_is_refused_by_name_or_works() {
    let Some((_dir, d)) = setup("what_this_kernel_lacks_is_refused_by_name_or_works") else {
        return;
    };
    let lan = Lan::new("lan2", "192.168.81.1/24");
    let mut nl = Netlink::new().unwrap();
    let before = d.docker_ok(&["network", "ls", "-q"]);

    // ipvlan.
    let out = d.docker(&[
        "network",
        "create",
        "-d",
        "ipvlan",
        "-o",
        "parent=lan2",
        "--subnet",
        "192.168.81.0/24",
        "--gateway",
        "192.168.81.1",
        "iv",
    ]);
    if nl.kind_supported("ipvlan").unwrap() {
        assert!(out.status.success(), "{}", text(&out));
        let a = d.sandbox("a");
        d.docker_ok(&["network", "connect", "iv", "a"]);
        assert!(
            pings(&d, &a, "192.168.81.1"),
            "ipvlan: a does not reach the LAN"
        );
        d.docker_ok(&["network", "disconnect", "iv", "a"]);
        d.docker_ok(&["network", "rm", "iv"]);
    } else {
        assert!(!out.status.success());
        assert!(text(&out).contains("CONFIG_IPVLAN"), "{}", text(&out));
        println!("this kernel has no ipvlan: its refusal was checked");
    }

    // A VLAN parent lnet makes.
    let out = d.docker(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan2.10",
        "--subnet",
        "192.168.82.0/24",
        "--gateway",
        "192.168.82.1",
        "v10",
    ]);
    if nl.kind_supported("vlan").unwrap() {
        assert!(out.status.success(), "{}", text(&out));
        let vlan = lan.run(&[
            "ip", "link", "add", "link", "lan", "name", "lan.10", "type", "vlan", "id", "10",
        ]);
        assert!(vlan.status.success(), "{}", text(&vlan));
        lan.run(&["ip", "addr", "add", "192.168.82.1/24", "dev", "lan.10"]);
        lan.run(&["ip", "link", "set", "lan.10", "up"]);
        let a = d.sandbox("va");
        d.docker_ok(&["network", "connect", "v10", "va"]);
        assert!(pings(&d, &a, "192.168.82.1"), "tagged frames do not pass");
        d.docker_ok(&["network", "disconnect", "v10", "va"]);
        d.docker_ok(&["network", "rm", "v10"]);
        assert!(
            nl.link_by_name("lan2.10").unwrap().is_none(),
            "lnet's VLAN link stayed"
        );
        assert!(
            nl.link_by_name("lan2").unwrap().is_some(),
            "the parent went"
        );
    } else {
        assert!(!out.status.success());
        assert!(text(&out).contains("8021q"), "{}", text(&out));
        println!("this kernel has no 802.1q: its refusal was checked");
    }

    // No parent: Docker's isolated network on a dummy link.
    let out = d.docker(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "192.168.83.0/24",
        "iso",
    ]);
    if nl.kind_supported("dummy").unwrap() {
        assert!(out.status.success(), "{}", text(&out));
        d.docker_ok(&["network", "rm", "iso"]);
    } else {
        assert!(!out.status.success());
        assert!(text(&out).contains("CONFIG_DUMMY"), "{}", text(&out));
    }
    assert_eq!(
        d.docker_ok(&["network", "ls", "-q"]),
        before,
        "a refusal left a network"
    );
    no_findings(&d);
}

/// Whether sandbox `a` is connected to network `net`, as lnet says.
fn connected(d: &Daemon, net: &str) -> bool {
    let (status, body) = d.request("GET", &format!("/networks/{net}"), None);
    status == 200
        && serde_json::from_str::<Value>(&body).unwrap()["Containers"]
            .as_object()
            .is_some_and(|c| !c.is_empty())
}

#[test]
fn macvlan_changes_killed_at_any_step_are_finished_or_undone() {
    let Some((_dir, mut d)) = setup("macvlan_changes_killed_at_any_step_are_finished_or_undone")
    else {
        return;
    };
    let _lan = Lan::new("lan5", "192.168.85.1/24");
    let a = d.sandbox("a");
    let create = [
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan5",
        "--subnet",
        "192.168.85.0/24",
        "--gateway",
        "192.168.85.1",
        "lan",
    ];
    for fp in [
        "network-create:recorded",
        "network-create:kernel-done",
        "join:recorded",
        "join:interface-made",
        "join:kernel-done",
        "leave:recorded",
        "leave:kernel-done",
        "network-delete:recorded",
        "network-delete:kernel-done",
    ] {
        // The world before the step: the network, and `a` on it for a leave.
        let exists = d.request("GET", "/networks/lan", None).0 == 200;
        let wants_net = !fp.starts_with("network-create");
        if wants_net && !exists {
            d.docker_ok(&create);
        }
        if !wants_net && exists {
            d.docker_ok(&["network", "rm", "lan"]);
        }
        let joined = connected(&d, "lan");
        let wants_join = fp.starts_with("leave");
        if wants_join && !joined {
            d.docker_ok(&["network", "connect", "lan", "a"]);
        }
        if !wants_join && joined {
            d.docker_ok(&["network", "disconnect", "lan", "a"]);
        }
        d.restart_with_env(&[("LNET_FAILPOINT", fp)]);
        let _ = match fp.split(':').next().unwrap() {
            "network-create" => d.docker(&create),
            "network-delete" => d.docker(&["network", "rm", "lan"]),
            "join" => d.docker(&["network", "connect", "lan", "a"]),
            _ => d.docker(&["network", "disconnect", "lan", "a"]),
        };
        assert!(
            d.wait_exit(std::time::Duration::from_secs(10)).is_some(),
            "{fp}: lnet did not stop\n{}",
            d.log()
        );
        d.restart_with_env(&[]);
        no_findings(&d);
        // Finished or undone, and what it says is what the sandbox has.
        let has_eth0 = text(&exec(&d, &a, &["ip", "-o", "link"])).contains("eth0@");
        assert_eq!(connected(&d, "lan"), has_eth0, "{fp}");
        if has_eth0 {
            assert!(pings(&d, &a, "192.168.85.1"), "{fp}: connected but cut off");
        }
    }
}
