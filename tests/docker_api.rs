//! The real `lnet daemon` driven as Docker is: by the `docker` CLI on this machine, by the
//! Docker SDK for Python, and by 50 concurrent clients. Each test runs the daemon in its
//! own network namespace with private state, and kills it (SIGKILL) between steps to check
//! that a restart changes nothing.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use support::{Daemon, can_run};

fn lines(s: &str) -> BTreeSet<String> {
    s.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_docker_cli_drives_lnet_networks() {
    if !can_run("the_docker_cli_drives_lnet_networks", true) {
        return;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let names = |d: &Daemon, args: &[&str]| {
        let mut a = vec![
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ];
        a.extend_from_slice(args);
        lines(&d.docker_ok(&a))
    };
    assert_eq!(
        names(&d, &[]),
        set(&["bridge bridge local", "host host local", "none null local"])
    );

    let id = d.docker_ok(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/16",
        "--ip-range",
        "10.77.5.0/24",
        "--gateway",
        "10.77.0.254",
        "--aux-address",
        "reserved=10.77.5.1",
        "--label",
        "team=web",
        "-o",
        "com.docker.network.bridge.name=lnet-web",
        "web",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    assert_eq!(
        d.docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}} {{.IPRange}}{{end}} {{index .Options \"com.docker.network.bridge.name\"}} {{.Labels.team}}",
            "web"
        ])
        .trim(),
        "10.77.0.0/16 10.77.0.254 10.77.5.0/24 lnet-web web"
    );
    d.docker_ok(&[
        "network",
        "create",
        "--internal",
        "--ipv6",
        "--subnet",
        "fd00:77::/64",
        "--subnet",
        "10.78.0.0/24",
        "back",
    ]);
    assert_eq!(
        d.docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{.Internal}} {{.EnableIPv6}}",
            "back"
        ])
        .trim(),
        "true true"
    );

    // Filters, as `docker network ls` sends them.
    assert_eq!(
        d.docker_ok(&[
            "network",
            "ls",
            "-q",
            "--no-trunc",
            "--filter",
            "label=team=web"
        ])
        .trim(),
        id.trim()
    );
    assert_eq!(
        names(&d, &["--filter", "driver=null"]),
        set(&["none null local"])
    );
    assert_eq!(
        names(&d, &["--filter", "type=custom"]),
        set(&["back bridge local", "web bridge local"])
    );
    let bad = d.docker(&["network", "ls", "--filter", "colour=red"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("invalid filter 'colour'"),
        "{}",
        stderr(&bad)
    );

    // Sandboxes (lnet's containers) connected and shown in inspect.
    d.sandbox("c1");
    d.sandbox("c2");
    d.docker_ok(&[
        "network",
        "connect",
        "--ip",
        "10.77.5.10",
        "--alias",
        "www",
        "web",
        "c1",
    ]);
    d.docker_ok(&["network", "connect", "web", "c2"]);
    let members = |d: &Daemon| {
        lines(&d.docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.Name}}={{.IPv4Address}}\n{{end}}",
            "web",
        ]))
    };
    let m = members(&d);
    assert!(m.contains("c1=10.77.5.10/16"), "{m:?}");
    assert!(
        m.iter()
            .any(|l| l.starts_with("c2=10.77.5.") && !l.starts_with("c2=10.77.5.1/")),
        "c2 gets an address of the range, not the reserved one: {m:?}"
    );
    assert_eq!(
        names(&d, &["--filter", "dangling=true"]),
        set(&["back bridge local"])
    );

    // A SIGKILL and a restart change nothing a user can see.
    let before = d.docker_ok(&[
        "network", "inspect", "web", "back", "bridge", "host", "none",
    ]);
    d.restart();
    let after = d.docker_ok(&[
        "network", "inspect", "web", "back", "bridge", "host", "none",
    ]);
    assert_eq!(before, after);

    // Bad requests: refused with Docker's shape of error, nothing changed.
    for (args, needle) in [
        (
            vec!["network", "create", "--subnet", "10.77.0.0/33", "bad"],
            "Subnet",
        ),
        (vec!["network", "create", "web"], "already exists"),
        (vec!["network", "rm", "bridge"], "pre-defined"),
        (
            vec!["network", "connect", "web", "nosuch"],
            "No such container: nosuch",
        ),
        (vec!["network", "inspect", "nosuch"], "not found"),
        (vec!["network", "disconnect", "back", "c1"], "not connected"),
        (vec!["network", "rm", "web"], "web"),
    ] {
        let out = d.docker(&args);
        assert!(!out.status.success(), "docker {args:?} succeeded");
        let said = stderr(&out);
        // Docker 20.10's CLI (Debian 12's docker.io) words the daemon's 404 on inspect itself.
        let cli_404 = args[..2] == ["network", "inspect"] && said.contains("No such network");
        assert!(
            cli_404 || (said.contains("Error response from daemon") && said.contains(needle)),
            "docker {args:?}: {said}"
        );
    }
    assert_eq!(
        after,
        d.docker_ok(&[
            "network", "inspect", "web", "back", "bridge", "host", "none"
        ])
    );

    d.docker_ok(&["network", "disconnect", "web", "c2"]);
    assert_eq!(members(&d), set(&["c1=10.77.5.10/16"]));
    d.docker_ok(&["network", "disconnect", "web", "c1"]);
    assert_eq!(
        lines(&d.docker_ok(&["network", "rm", "web", "back"])),
        set(&["web", "back"])
    );

    d.docker_ok(&["network", "create", "p1"]);
    d.docker_ok(&["network", "create", "--label", "keep=1", "p2"]);
    let pruned = d.docker_ok(&["network", "prune", "-f", "--filter", "label!=keep"]);
    assert!(pruned.contains("p1") && !pruned.contains("p2"), "{pruned}");
    d.restart();
    assert!(d.docker_ok(&["network", "prune", "-f"]).contains("p2"));
    assert_eq!(
        d.docker_ok(&["network", "ls", "-q", "--filter", "type=custom"]),
        ""
    );
    for sb in ["c1", "c2"] {
        assert_eq!(
            d.request("DELETE", &format!("/lnet/sandboxes/{sb}"), None)
                .0,
            204
        );
    }
}

#[test]
fn the_docker_python_sdk_drives_lnet_networks() {
    if !can_run("the_docker_python_sdk_drives_lnet_networks", false) {
        return;
    }
    let sdk = Command::new("python3")
        .args(["-c", "import docker"])
        .output();
    if !lnet_kernel::testing::require_installed(
        "the_docker_python_sdk_drives_lnet_networks",
        "the Docker SDK for Python (python3 -c 'import docker')",
        "PyPI: pip install docker, or the Debian package python3-docker",
        sdk.is_ok_and(|o| o.status.success()),
    ) {
        return;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    d.sandbox("py1");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/networks.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&d.socket)
        .arg("py1")
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{}{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert_eq!(d.request("DELETE", "/lnet/sandboxes/py1", None).0, 204);
}

#[test]
fn fifty_concurrent_connects_and_disconnects_leave_nothing_behind() {
    if !can_run(
        "fifty_concurrent_connects_and_disconnects_leave_nothing_behind",
        false,
    ) {
        return;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let (status, body) = d.request(
        "POST",
        "/networks/create",
        Some(r#"{"Name":"busy","IPAM":{"Config":[{"Subnet":"10.66.0.0/24"}]}}"#),
    );
    assert_eq!(status, 201, "{body}");
    for i in 0..50 {
        d.sandbox(&format!("s{i}"));
    }
    let links_before = host_links();
    std::thread::scope(|s| {
        for i in 0..50 {
            let d = &d;
            s.spawn(move || {
                let body = format!(
                    r#"{{"Container":"s{i}","Publish":["80","{}:81/udp"]}}"#,
                    20000 + i
                );
                for _ in 0..2 {
                    let (st, b) = d.request("POST", "/networks/busy/connect", Some(&body));
                    assert_eq!(st, 200, "connect s{i}: {b}\n{}", d.log());
                    let (st, b) = d.request(
                        "POST",
                        "/networks/busy/disconnect",
                        Some(&format!(r#"{{"Container":"s{i}"}}"#)),
                    );
                    assert_eq!(st, 200, "disconnect s{i}: {b}");
                }
            });
        }
    });
    let check = |d: &Daemon| {
        let (_, body) = d.request("GET", "/networks/busy", None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["Containers"],
            serde_json::json!({}),
            "no endpoint is left"
        );
        // The daemon deletes links in the background, after it answers: they go soon.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while host_links() != links_before && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(host_links(), links_before, "no interface is left");
        let maps = Command::new("nft")
            .args(["list", "map", "inet", "lnet", "ports4_any"])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&maps.stdout).contains("elements"),
            "no published port is left: {}",
            String::from_utf8_lossy(&maps.stdout)
        );
    };
    check(&d);
    d.restart();
    check(&d);
    // Every address and port is free again: all 50 connect at once once more.
    std::thread::scope(|s| {
        for i in 0..50 {
            let d = &d;
            s.spawn(move || {
                let body = format!(
                    r#"{{"Container":"s{i}","Publish":["{}:81/udp"]}}"#,
                    20000 + i
                );
                let (st, b) = d.request("POST", "/networks/busy/connect", Some(&body));
                assert_eq!(st, 200, "connect s{i}: {b}");
            });
        }
    });
    let (_, body) = d.request("GET", "/networks/busy", None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Containers"].as_object().unwrap().len(), 50);
    for i in 0..50 {
        assert_eq!(
            d.request("DELETE", &format!("/lnet/sandboxes/s{i}"), None)
                .0,
            204
        );
    }
    assert_eq!(d.request("DELETE", "/networks/busy", None).0, 204);
}

/// The links of the test's namespace.
fn host_links() -> BTreeSet<String> {
    lnet_kernel::Netlink::new()
        .unwrap()
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect()
}
