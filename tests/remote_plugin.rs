//! lnet using other people's network plugins, as libnetwork does: a plugin written here
//! (`support/plugin_rec.py`, which records every call) and a second lnet daemon serving
//! the plugin protocol, each found in the daemon's plugin directory and driven end to end
//! with real sandboxes and real packets.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Daemon;

/// Root, and busybox for ping.
fn can_run(test: &str, _docker: bool) -> bool {
    support::can_run(test, false) && lnet_kernel::testing::require_tool(test, "busybox")
}

/// The recording plugin, running on `<dir>/plugins/<name>.sock`; killed on drop.
struct Rec {
    child: Child,
    state: PathBuf,
    socket: PathBuf,
}

impl Rec {
    fn start(dir: &Path, name: &str) -> Rec {
        let state = dir.join(format!("{name}-state"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(dir.join("plugins")).unwrap();
        let socket = dir.join("plugins").join(format!("{name}.sock"));
        let child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/plugin_rec.py"
            ))
            .arg(&socket)
            .arg(&state)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the recording plugin");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the plugin did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Rec {
            child,
            state,
            socket,
        }
    }

    /// The calls so far: (method, body).
    fn calls(&self) -> Vec<(String, Value)> {
        std::fs::read_to_string(self.state.join("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (v["call"].as_str().unwrap().to_string(), v["body"].clone())
            })
            .collect()
    }

    /// The methods called, in order, since `from` calls.
    fn methods(&self, from: usize) -> Vec<String> {
        self.calls()
            .into_iter()
            .skip(from)
            .map(|(m, _)| m)
            .collect()
    }

    /// Makes `method` fail (`fail`) or hang (`hang`) from now on, or neither (`None`).
    fn trouble(&self, method: &str, what: Option<&str>) {
        for kind in ["fail", "hang"] {
            let _ = std::fs::remove_file(self.state.join(format!("{kind}-{method}")));
        }
        if let Some(kind) = what {
            std::fs::write(self.state.join(format!("{kind}-{method}")), "").unwrap();
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Rec {
    fn drop(&mut self) {
        self.stop();
    }
}

/// lnet with its plugin directory in `dir`, a bound of `timeout` seconds per call.
///
/// With `--ip-forward-no-drop`: where the kernel hands bridged traffic to the IP hooks
/// (`bridge-nf-call-iptables`, on here), lnet's guard, like Docker's `FORWARD` drop
/// policy, drops what crosses a bridge that is not lnet's — the recording plugin's too. A
/// real plugin accepts its own traffic in its own rules, as it must beside dockerd; this
/// small one uses the operator's opt-out instead.
fn lnet(dir: &Path, timeout: u64) -> Daemon {
    let home = dir.join("lnet");
    std::fs::create_dir_all(&home).unwrap();
    Daemon::start_with_args(
        &home,
        &[
            &format!("--plugin-dir={}", dir.join("plugins").display()),
            &format!("--plugin-timeout={timeout}"),
            "--ip-forward-no-drop",
        ],
    )
}

fn create_network(d: &Daemon, name: &str, driver: &str, subnet: &str) -> (u16, String) {
    d.request(
        "POST",
        "/networks/create",
        Some(&format!(
            r#"{{"Name":"{name}","Driver":"{driver}","IPAM":{{"Config":[{{"Subnet":"{subnet}"}}]}}}}"#
        )),
    )
}

fn connect(d: &Daemon, net: &str, sandbox: &str) -> (u16, String) {
    d.request(
        "POST",
        &format!("/networks/{net}/connect"),
        Some(&format!(r#"{{"Container":"{sandbox}"}}"#)),
    )
}

fn disconnect(d: &Daemon, net: &str, sandbox: &str) -> (u16, String) {
    d.request(
        "POST",
        &format!("/networks/{net}/disconnect"),
        Some(&format!(r#"{{"Container":"{sandbox}"}}"#)),
    )
}

/// Runs `cmd` in sandbox `id`'s namespace.
fn in_sandbox(d: &Daemon, id: &str, cmd: &[&str]) -> std::process::Output {
    let (_, body) = d.request("GET", &format!("/lnet/sandboxes/{id}"), None);
    let v: Value = serde_json::from_str(&body).unwrap();
    let key = v["Key"].as_str().unwrap().to_string();
    Command::new("nsenter")
        .arg(format!("--net={key}"))
        .args(cmd)
        .output()
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Enters a new network namespace and makes the test's directory; `None` when the test
/// cannot run here (the skip is recorded).
fn setup(test: &str) -> Option<tempfile::TempDir> {
    if !can_run(test, false) {
        return None;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    Some(tempfile::tempdir().unwrap())
}

/// Connects sandbox `sb` to network `net`, which must give it `addr`; `doctor` then finds
/// nothing.
fn connect_gets(d: &Daemon, net: &str, sb: &str, addr: &str) {
    let (status, body) = connect(d, net, sb);
    assert_eq!(status, 200, "{body}");
    let (_, body) = d.request("GET", &format!("/networks/{net}"), None);
    assert!(body.contains(addr), "{body}");
    no_findings(d);
}

fn doctor(d: &Daemon) -> Value {
    let (_, body) = d.request("GET", "/lnet/doctor", None);
    serde_json::from_str::<Value>(&body).unwrap()["doctor"].clone()
}

fn no_findings(d: &Daemon) {
    let r = doctor(d);
    assert_eq!(r["findings"], Value::Array(vec![]), "doctor: {r}");
}

#[test]
fn a_plugin_network_carries_packets_and_the_plugin_sees_dockerds_calls() {
    let Some(dir) = setup("a_plugin_network_carries_packets_and_the_plugin_sees_dockerds_calls")
    else {
        return;
    };
    let rec = Rec::start(dir.path(), "rec");
    let d = lnet(dir.path(), 5);

    let (status, body) = create_network(&d, "n", "rec", "10.55.0.0/24");
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        rec.methods(0),
        ["Activate", "GetCapabilities", "CreateNetwork"],
        "activated on first use, then asked to create"
    );
    let create = &rec.calls()[2].1;
    assert_eq!(create["NetworkID"], id.as_str());
    assert_eq!(create["IPv4Data"][0]["Pool"], "10.55.0.0/24");
    assert_eq!(create["IPv4Data"][0]["Gateway"], "10.55.0.1/24");

    let (a, b) = (d.sandbox("a"), d.sandbox("b"));
    let before = rec.calls().len();
    for s in ["a", "b"] {
        let (status, body) = connect(&d, "n", s);
        assert_eq!(status, 200, "connect {s}: {body}\n{}", d.log());
    }
    assert_eq!(
        rec.methods(before),
        ["CreateEndpoint", "Join", "CreateEndpoint", "Join"]
    );
    let ce = &rec.calls()[before].1;
    assert_eq!(ce["Interface"]["Address"], "10.55.0.2/24", "{ce}");
    // The plugin's interface is in the sandbox as eth0, with lnet's address and MAC and the
    // plugin's static route, and the sandboxes reach each other through its bridge.
    let out = in_sandbox(&d, &a, &["ip", "-o", "addr", "show", "eth0"]);
    assert!(text(&out).contains("10.55.0.2/24"), "{}", text(&out));
    let out = in_sandbox(&d, &a, &["ip", "route"]);
    let routes = text(&out);
    assert!(
        routes.contains("198.51.100.0/24 dev eth0") && routes.contains("default via 10.55.0.1"),
        "{routes}"
    );
    let out = in_sandbox(
        &d,
        &a,
        &["busybox", "ping", "-c", "3", "-W", "2", "10.55.0.3"],
    );
    let links = Command::new("ip")
        .args(["-d", "-o", "link"])
        .output()
        .unwrap();
    let sb_links = in_sandbox(&d, &b, &["ip", "-d", "-o", "addr"]);
    assert!(
        out.status.success(),
        "{}\nhost: {}\nb: {}",
        text(&out),
        text(&links),
        text(&sb_links)
    );
    no_findings(&d);
    // EndpointOperInfo is the plugin's own.
    let (_, body) = d.request("GET", &format!("/networks/{id}"), None);
    assert!(body.contains("10.55.0.3"), "{body}");

    let before = rec.calls().len();
    let (status, body) = disconnect(&d, "n", "b");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rec.methods(before),
        ["RevokeExternalConnectivity", "Leave", "DeleteEndpoint"]
    );
    let out = in_sandbox(&d, &b, &["ip", "-o", "link"]);
    assert!(!text(&out).contains("eth0"), "{}", text(&out));
    let (status, _) = disconnect(&d, "n", "a");
    assert_eq!(status, 200);
    let before = rec.calls().len();
    let (status, body) = d.request("DELETE", &format!("/networks/{id}"), None);
    assert_eq!(status, 204, "{body}");
    assert_eq!(rec.methods(before), ["DeleteNetwork"]);
    no_findings(&d);
}

#[test]
fn a_plugin_error_reaches_the_user_and_undoes_everything() {
    let Some(dir) = setup("a_plugin_error_reaches_the_user_and_undoes_everything") else {
        return;
    };
    let rec = Rec::start(dir.path(), "rec");
    let d = lnet(dir.path(), 5);

    rec.trouble("CreateNetwork", Some("fail"));
    let (status, body) = create_network(&d, "n", "rec", "10.55.0.0/24");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("rec refuses CreateNetwork"), "{body}");
    let (_, body) = d.request("GET", "/networks", None);
    assert!(!body.contains("\"n\""), "{body}");
    rec.trouble("CreateNetwork", None);
    // The pool was let go: the same subnet is free.
    let (status, body) = create_network(&d, "n", "rec", "10.55.0.0/24");
    assert_eq!(status, 201, "{body}");

    d.sandbox("a");
    for method in ["CreateEndpoint", "Join"] {
        rec.trouble(method, Some("fail"));
        let before = rec.calls().len();
        let (status, body) = connect(&d, "n", "a");
        assert_eq!(status, 403, "{method}: {body}");
        assert!(body.contains(&format!("rec refuses {method}")), "{body}");
        let methods = rec.methods(before);
        if method == "Join" {
            // What the plugin made is handed back: it is told to let the endpoint go.
            assert_eq!(
                methods.last().map(String::as_str),
                Some("DeleteEndpoint"),
                "{methods:?}"
            );
        }
        rec.trouble(method, None);
        let (_, body) = d.request("GET", "/networks/n", None);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["Containers"], serde_json::json!({}), "{method}: {v}");
    }
    // No address was kept by the failures.
    connect_gets(&d, "n", "a", "10.55.0.2/24");
}

#[test]
fn a_plugin_that_hangs_or_goes_away_costs_other_networks_nothing() {
    let Some(dir) = setup("a_plugin_that_hangs_or_goes_away_costs_other_networks_nothing") else {
        return;
    };
    let mut rec = Rec::start(dir.path(), "rec");
    let mut d = lnet(dir.path(), 2);
    let (status, body) = create_network(&d, "n", "rec", "10.55.0.0/24");
    assert_eq!(status, 201, "{body}");
    d.sandbox("a");
    d.sandbox("b");

    // A call that hangs is given up after the bound (2 s here), while a bridge network is
    // made and joined meanwhile without waiting.
    rec.trouble("CreateEndpoint", Some("hang"));
    let hung = {
        let socket = d.socket.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
            use std::io::{Read, Write};
            let body = r#"{"Container":"a"}"#;
            write!(
                s,
                "POST /networks/n/connect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            (started.elapsed(), out)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (status, body) = create_network(&d, "br", "bridge", "10.66.0.0/24");
    assert_eq!(status, 201, "{body}");
    let (status, body) = connect(&d, "br", "b");
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the bridge network waited for the plugin: {:?}",
        started.elapsed()
    );
    let (took, out) = hung.join().unwrap();
    assert!(out.contains("no answer within 2 s"), "{out}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    rec.trouble("CreateEndpoint", None);

    // The plugin goes away: its network is reported unreachable, everything else is
    // served, and a restart keeps the network's record.
    rec.stop();
    let r = doctor(&d);
    let findings = r["findings"].to_string();
    assert!(
        findings.contains("unreachable") && findings.contains("network n"),
        "{r}"
    );
    d.restart();
    let (status, body) = d.request("GET", "/networks/n", None);
    assert_eq!(status, 200, "the network went with its plugin: {body}");
    let (status, body) = connect(&d, "n", "a");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains(r#"plugin \"rec\" not found"#), "{body}");
    let (status, body) = disconnect(&d, "br", "b");
    assert_eq!(status, 200, "{body}");
    // Back: the network works again.
    let _rec = Rec::start(dir.path(), "rec");
    let (status, body) = connect(&d, "n", "a");
    assert_eq!(status, 200, "{body}");
    no_findings(&d);
}

#[test]
fn lnet_killed_between_its_record_and_the_plugins_answer_tells_the_plugin_what_it_undid() {
    let Some(dir) = setup(
        "lnet_killed_between_its_record_and_the_plugins_answer_tells_the_plugin_what_it_undid",
    ) else {
        return;
    };
    let rec = Rec::start(dir.path(), "rec");
    let mut d = lnet(dir.path(), 5);

    // The network: created by the plugin, not recorded ready by lnet.
    d.restart_with_env(&[("LNET_FAILPOINT", "network-create:kernel-done")]);
    let _ = create_network(&d, "n", "rec", "10.55.0.0/24");
    assert!(
        d.wait_exit(Duration::from_secs(10)).is_some(),
        "{}",
        d.log()
    );
    d.restart_with_env(&[]);
    let calls = rec.calls();
    let created = calls.iter().find(|(m, _)| m == "CreateNetwork").unwrap().1["NetworkID"].clone();
    assert!(
        calls
            .iter()
            .any(|(m, b)| m == "DeleteNetwork" && b["NetworkID"] == created),
        "the plugin was not told: {calls:?}"
    );
    let (status, _) = d.request("GET", "/networks/n", None);
    assert_eq!(status, 404);

    // The endpoint: created by the plugin, not recorded ready by lnet.
    let (status, body) = create_network(&d, "n", "rec", "10.55.0.0/24");
    assert_eq!(status, 201, "{body}");
    d.sandbox("a");
    d.restart_with_env(&[("LNET_FAILPOINT", "endpoint-create:driver-answered")]);
    let _ = connect(&d, "n", "a");
    assert!(
        d.wait_exit(Duration::from_secs(10)).is_some(),
        "{}",
        d.log()
    );
    d.restart_with_env(&[]);
    let calls = rec.calls();
    let ep = calls
        .iter()
        .rev()
        .find(|(m, _)| m == "CreateEndpoint")
        .unwrap()
        .1["EndpointID"]
        .clone();
    assert!(
        calls
            .iter()
            .any(|(m, b)| m == "DeleteEndpoint" && b["EndpointID"] == ep),
        "the plugin was not told: {:?}",
        rec.methods(0)
    );
    // …and the connect works now, with the address the undone one had.
    connect_gets(&d, "n", "a", "10.55.0.2/24");
}

#[test]
fn lnet_drives_another_lnet_through_the_plugin_protocol() {
    let Some(dir) = setup("lnet_drives_another_lnet_through_the_plugin_protocol") else {
        return;
    };
    // The plugin: a second lnet daemon, its plugin socket in the first one's directory. The
    // two share the namespace, as dockerd and its plugins do: the second goes by another
    // name (its nftables table and bridge marks) and another default bridge.
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    let b = Daemon::start_with_args(
        &served,
        &[
            &format!(
                "--plugin-socket={}",
                dir.path().join("plugins").join("lnetb.sock").display()
            ),
            "--instance=lnetb",
            "--bridge=lnetb0",
        ],
    );
    let a = lnet(dir.path(), 5);

    let (status, body) = create_network(&a, "n", "lnetb", "10.56.0.0/24");
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    // B made it under A's id, with A's pool.
    let (status, body) = b.request("GET", &format!("/networks/{id}"), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("10.56.0.0/24"), "{body}");

    let (s1, s2) = (a.sandbox("s1"), a.sandbox("s2"));
    for s in ["s1", "s2"] {
        let (status, body) = connect(&a, "n", s);
        assert_eq!(status, 200, "connect {s}: {body}\n{}", a.log());
    }
    let out = in_sandbox(
        &a,
        &s1,
        &["busybox", "ping", "-c", "1", "-W", "2", "10.56.0.3"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = in_sandbox(&a, &s2, &["ip", "-o", "addr", "show", "eth0"]);
    assert!(text(&out).contains("10.56.0.3/24"), "{}", text(&out));
    no_findings(&a);
    no_findings(&b);

    for s in ["s1", "s2"] {
        let (status, body) = disconnect(&a, "n", s);
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = a.request("DELETE", &format!("/networks/{id}"), None);
    assert_eq!(status, 204, "{body}");
    let (status, _) = b.request("GET", &format!("/networks/{id}"), None);
    assert_eq!(status, 404, "B kept the network");
    let (_, body) = b.request("GET", "/lnet/sandboxes", None);
    assert_eq!(body, "[]");
    no_findings(&b);
}
