//! lnet using other people's network and IPAM plugins, as libnetwork does: a plugin written
//! here (`support/plugin_rec.py`, which records every call) and a second lnet daemon serving
//! the plugin protocol, each found in the daemon's plugin directory and driven end to end
//! with real sandboxes and real packets.

mod support;

use std::collections::BTreeMap;
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

    /// The IPAM requests and releases made since `from` calls (activation left out).
    fn ipam_changes(&self, from: usize) -> Vec<String> {
        self.methods(from)
            .into_iter()
            .filter(|m| m.starts_with("IpamDriver.Re"))
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

    /// What its IPAM holds now: pool id → addresses given out.
    fn ipam(&self) -> BTreeMap<String, Vec<String>> {
        std::fs::read_to_string(self.state.join("ipam.json"))
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or_default()
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

/// A bridge network whose addresses come from IPAM driver `ipam`, of `subnet` if given.
fn create_ipam_network(d: &Daemon, name: &str, ipam: &str, subnet: Option<&str>) -> (u16, String) {
    let config = subnet.map_or_else(String::new, |s| format!(r#"{{"Subnet":"{s}"}}"#));
    d.request(
        "POST",
        "/networks/create",
        Some(&format!(
            r#"{{"Name":"{name}","Driver":"bridge","IPAM":{{"Driver":"{ipam}","Config":[{config}]}}}}"#
        )),
    )
}

/// Connects `sandbox` to `net` asking for address `ip`.
fn connect_at(d: &Daemon, net: &str, sandbox: &str, ip: &str) -> (u16, String) {
    d.request(
        "POST",
        &format!("/networks/{net}/connect"),
        Some(&format!(
            r#"{{"Container":"{sandbox}","EndpointConfig":{{"IPAMConfig":{{"IPv4Address":"{ip}"}}}}}}"#
        )),
    )
}

fn ipam_state(pools: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pools
        .iter()
        .map(|(p, a)| (p.to_string(), a.iter().map(|s| s.to_string()).collect()))
        .collect()
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

/// Connects sandboxes `s1` and `s2` to `net`; `from` (s1's id) then pings `to`.
fn connect_and_ping(d: &Daemon, net: &str, from: &str, to: &str) {
    for s in ["s1", "s2"] {
        let (status, body) = connect(d, net, s);
        assert_eq!(status, 200, "connect {s}: {body}\n{}", d.log());
    }
    let out = in_sandbox(d, from, &["busybox", "ping", "-c", "1", "-W", "2", to]);
    assert!(out.status.success(), "{}", text(&out));
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
    connect_and_ping(&a, "n", &s1, "10.56.0.3");
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

    // B's IPAM too: A asks B for the pool and every address, as dockerd would.
    let (status, body) = a.request(
        "POST",
        "/networks/create",
        Some(
            r#"{"Name":"m","Driver":"lnetb","IPAM":{"Driver":"lnetb","Config":[{"Subnet":"10.59.0.0/24"}]}}"#,
        ),
    );
    assert_eq!(status, 201, "{body}\n{}", a.log());
    let id = serde_json::from_str::<Value>(&body).unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, body) = b.request("GET", &format!("/networks/{id}"), None);
    assert!(
        body.contains("lnet.plugin.ipam"),
        "B's IPAM does not serve it: {body}"
    );
    connect_and_ping(&a, "m", &s1, "10.59.0.3");
    no_findings(&a);
    no_findings(&b);
    for s in ["s1", "s2"] {
        let (status, body) = disconnect(&a, "m", s);
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = a.request("DELETE", "/networks/m", None);
    assert_eq!(status, 204, "{body}");
    // B holds nothing of it: the subnet is B's to give again.
    let (status, body) = create_network(&b, "again", "bridge", "10.59.0.0/24");
    assert_eq!(status, 201, "B still holds the pool: {body}");
    no_findings(&b);
}

#[test]
fn an_ipam_plugin_gives_pools_and_addresses_and_gets_every_one_back() {
    let Some(dir) = setup("an_ipam_plugin_gives_pools_and_addresses_and_gets_every_one_back")
    else {
        return;
    };
    let rec = Rec::start(dir.path(), "rec");
    let mut d = lnet(dir.path(), 5);

    let (status, body) = create_ipam_network(&d, "n", "rec", Some("10.57.0.0/24"));
    assert_eq!(status, 201, "{body}");
    // Asked as dockerd asks: activated, its address spaces learnt, the pool in its local
    // space, then the gateway.
    assert_eq!(
        rec.methods(0),
        [
            "Activate",
            "IpamDriver.GetCapabilities",
            "IpamDriver.GetDefaultAddressSpaces",
            "IpamDriver.RequestPool",
            "IpamDriver.RequestAddress"
        ]
    );
    let calls = rec.calls();
    assert_eq!(calls[3].1["AddressSpace"], "recl", "{}", calls[3].1);
    assert_eq!(calls[3].1["Pool"], "10.57.0.0/24");
    assert_eq!(calls[4].1["PoolID"], "rec:10.57.0.0/24");
    assert_eq!(
        calls[4].1["Options"]["RequestAddressType"], "com.docker.network.gateway",
        "{}",
        calls[4].1
    );
    let pool = "rec:10.57.0.0/24";
    assert_eq!(rec.ipam(), ipam_state(&[(pool, &["10.57.0.1"])]));
    let (_, body) = d.request("GET", "/networks/n", None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["IPAM"]["Driver"], "rec", "{v}");
    assert_eq!(v["IPAM"]["Config"][0]["Gateway"], "10.57.0.1", "{v}");
    let addrs = Command::new("ip").args(["-o", "addr"]).output().unwrap();
    assert!(text(&addrs).contains("10.57.0.1/24"), "{}", text(&addrs));

    // No subnet given: the plugin chooses.
    let (status, body) = create_ipam_network(&d, "m", "rec", None);
    assert_eq!(status, 201, "{body}");
    let (_, body) = d.request("GET", "/networks/m", None);
    assert!(body.contains("10.200.0.0/24"), "{body}");

    let (a, _b) = (d.sandbox("a"), d.sandbox("b"));
    connect_gets(&d, "n", "a", "10.57.0.2/24");
    connect_gets(&d, "n", "b", "10.57.0.3/24");
    assert_eq!(
        rec.ipam()[pool],
        ["10.57.0.1", "10.57.0.2", "10.57.0.3"],
        "the plugin gave the endpoints their addresses"
    );
    let ping = |d: &Daemon| {
        let out = in_sandbox(
            d,
            &a,
            &["busybox", "ping", "-c", "1", "-W", "2", "10.57.0.3"],
        );
        assert!(out.status.success(), "{}", text(&out));
    };
    ping(&d);

    // A restart asks the plugin nothing: what it gave is its to keep, and lnet's records
    // name it.
    let before = rec.calls().len();
    d.restart();
    ping(&d);
    no_findings(&d);
    assert_eq!(rec.ipam_changes(before), Vec::<String>::new());

    // A disconnect gives the address back; a preferred one is asked for by name.
    let before = rec.calls().len();
    let (status, body) = disconnect(&d, "n", "b");
    assert_eq!(status, 200, "{body}");
    assert_eq!(rec.ipam_changes(before), ["IpamDriver.ReleaseAddress"]);
    assert!(
        rec.calls()[before..]
            .iter()
            .any(|(m, b)| m == "IpamDriver.ReleaseAddress" && b["Address"] == "10.57.0.3"),
        "{:?}",
        rec.calls()
    );
    let before = rec.calls().len();
    let (status, body) = connect_at(&d, "n", "b", "10.57.0.9");
    assert_eq!(status, 200, "{body}");
    assert_eq!(rec.calls()[before].1["Address"], "10.57.0.9");
    assert_eq!(rec.ipam()[pool], ["10.57.0.1", "10.57.0.2", "10.57.0.9"]);
    no_findings(&d);

    // Deleting gives everything back: the endpoints' addresses, the gateway, the pools.
    for s in ["a", "b"] {
        let (status, body) = disconnect(&d, "n", s);
        assert_eq!(status, 200, "{body}");
    }
    let before = rec.calls().len();
    for n in ["n", "m"] {
        let (status, body) = d.request("DELETE", &format!("/networks/{n}"), None);
        assert_eq!(status, 204, "{body}");
    }
    assert_eq!(
        rec.ipam_changes(before),
        [
            "IpamDriver.ReleaseAddress",
            "IpamDriver.ReleasePool",
            "IpamDriver.ReleaseAddress",
            "IpamDriver.ReleasePool"
        ]
    );
    assert_eq!(rec.ipam(), BTreeMap::new());
    no_findings(&d);
}

#[test]
fn an_ipam_plugins_refusal_reaches_the_user_and_changes_nothing() {
    let Some(dir) = setup("an_ipam_plugins_refusal_reaches_the_user_and_changes_nothing") else {
        return;
    };
    let mut rec = Rec::start(dir.path(), "rec");
    let d = lnet(dir.path(), 5);
    let nothing = |d: &Daemon, rec: &Rec| {
        let (status, _) = d.request("GET", "/networks/n", None);
        assert_eq!(status, 404, "a network was left behind");
        assert_eq!(
            rec.ipam(),
            BTreeMap::new(),
            "the plugin was not given back all"
        );
    };

    let (status, body) = create_ipam_network(&d, "n", "nosuch", Some("10.57.0.0/24"));
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains(r#"IPAM driver or plugin \"nosuch\" not found"#),
        "{body}"
    );

    for method in ["RequestPool", "RequestAddress"] {
        rec.trouble(method, Some("fail"));
        let (status, body) = create_ipam_network(&d, "n", "rec", Some("10.57.0.0/24"));
        assert_eq!(status, 403, "{method}: {body}");
        assert!(body.contains(&format!("rec refuses {method}")), "{body}");
        rec.trouble(method, None);
        nothing(&d, &rec);
    }
    // The plugin grants a pool lnet then refuses (it overlaps a bridge network of lnet's
    // own IPAM): the grant goes back.
    let (status, body) = create_network(&d, "own", "bridge", "10.58.0.0/24");
    assert_eq!(status, 201, "{body}");
    let (status, body) = create_ipam_network(&d, "n", "rec", Some("10.58.0.0/24"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("overlaps"), "{body}");
    assert!(
        rec.methods(0)
            .contains(&"IpamDriver.ReleasePool".to_string()),
        "{:?}",
        rec.methods(0)
    );
    nothing(&d, &rec);

    let (status, body) = create_ipam_network(&d, "n", "rec", Some("10.57.0.0/24"));
    assert_eq!(status, 201, "{body}");
    d.sandbox("a");
    let pool = ipam_state(&[("rec:10.57.0.0/24", &["10.57.0.1"])]);
    rec.trouble("RequestAddress", Some("fail"));
    let (status, body) = connect(&d, "n", "a");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("rec refuses RequestAddress"), "{body}");
    rec.trouble("RequestAddress", None);
    // An address outside the network is refused before the plugin is asked.
    let before = rec.calls().len();
    let (status, body) = connect_at(&d, "n", "a", "10.99.0.5");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("IPv4Address"), "{body}");
    assert_eq!(rec.methods(before), Vec::<String>::new());
    let (_, body) = d.request("GET", "/networks/n", None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Containers"], serde_json::json!({}), "{v}");
    assert_eq!(rec.ipam(), pool);
    connect_gets(&d, "n", "a", "10.57.0.2/24");

    // The plugin goes away: doctor says so of its network, and the rest is served.
    rec.stop();
    let r = doctor(&d);
    let findings = r["findings"].to_string();
    assert!(
        findings.contains("unreachable") && findings.contains("its IPAM driver"),
        "{r}"
    );
    let (status, body) = connect(&d, "own", "a");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn lnet_killed_mid_change_gives_the_ipam_plugin_back_what_it_undid() {
    let Some(dir) = setup("lnet_killed_mid_change_gives_the_ipam_plugin_back_what_it_undid") else {
        return;
    };
    let rec = Rec::start(dir.path(), "rec");
    let mut d = lnet(dir.path(), 5);
    let crash = |d: &mut Daemon, failpoint: &str, change: &dyn Fn(&Daemon)| {
        d.restart_with_env(&[("LNET_FAILPOINT", failpoint)]);
        change(d);
        assert!(
            d.wait_exit(Duration::from_secs(10)).is_some(),
            "{failpoint}: lnet did not stop\n{}",
            d.log()
        );
        d.restart_with_env(&[]);
    };
    let pool = "rec:10.57.0.0/24";

    // A network recorded `creating`, its pool and gateway granted: undone, given back.
    crash(&mut d, "network-create:kernel-done", &|d| {
        let _ = create_ipam_network(d, "n", "rec", Some("10.57.0.0/24"));
    });
    let (status, _) = d.request("GET", "/networks/n", None);
    assert_eq!(status, 404);
    assert_eq!(rec.ipam(), BTreeMap::new());

    // An endpoint journaled `deleting`: finished, its address given back.
    let (status, body) = create_ipam_network(&d, "n", "rec", Some("10.57.0.0/24"));
    assert_eq!(status, 201, "{body}");
    d.sandbox("a");
    connect_gets(&d, "n", "a", "10.57.0.2/24");
    crash(&mut d, "endpoint-delete:journaled", &|d| {
        let _ = disconnect(d, "n", "a");
    });
    assert_eq!(rec.ipam(), ipam_state(&[(pool, &["10.57.0.1"])]));
    let (_, body) = d.request("GET", "/networks/n", None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Containers"], serde_json::json!({}), "{v}");
    no_findings(&d);

    // A network journaled `deleting`: finished, its pool given back.
    crash(&mut d, "network-delete:recorded", &|d| {
        let _ = d.request("DELETE", "/networks/n", None);
    });
    let (status, _) = d.request("GET", "/networks/n", None);
    assert_eq!(status, 404);
    assert_eq!(rec.ipam(), BTreeMap::new());
    no_findings(&d);
}
