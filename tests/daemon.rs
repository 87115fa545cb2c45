//! `lnet daemon` itself: refusing a second daemon and bad configuration with a clear error,
//! and staying up and correct under bad requests, oversized, malformed and half-sent ones.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use support::{Daemon, can_run};

/// Runs `lnet daemon` with `args` expecting it to refuse to start; its stderr.
fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lnet"))
        .arg("daemon")
        // Not the machine's /run/docker/plugins, should it get that far.
        .arg("--plugin-socket=")
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_second_daemon_and_bad_settings_are_refused_clearly() {
    if !can_run(
        "a_second_daemon_and_bad_settings_are_refused_clearly",
        false,
    ) {
        return;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let root = dir.path().display().to_string();
    let data = format!("{root}/data");
    let run = format!("{root}/run");
    let cfg = format!("{root}/daemon.json");
    let other_sock = format!("unix://{root}/other.sock");
    let sock = format!("unix://{}", d.socket.display());

    // The same exec root, another socket: the exec root's lock is held, by a process
    // named in the answer (after waiting a moment for it to exit).
    let e = refused(&[
        "--data-root",
        &data,
        "--exec-root",
        &run,
        "-H",
        &other_sock,
        "--config-file",
        &cfg,
    ]);
    let pid = d.pid().unwrap();
    assert!(
        e.contains(&format!("another lnet daemon (pid {pid})")) && e.contains(&run),
        "{e}"
    );
    // The same store from another exec root: the store is taken.
    let e = refused(&[
        "--data-root",
        &data,
        "--exec-root",
        &format!("{root}/run3"),
        "-H",
        &format!("unix://{root}/third.sock"),
        "--config-file",
        &cfg,
    ]);
    assert!(
        e.contains("another lnet daemon") && e.contains(&data),
        "{e}"
    );
    // Another store, the same socket: the socket is served.
    let e = refused(&[
        "--data-root",
        &format!("{root}/data2"),
        "--exec-root",
        &format!("{root}/run2"),
        "-H",
        &sock,
        "--config-file",
        &cfg,
    ]);
    assert!(
        e.contains("another daemon (with another exec root) is serving on"),
        "{e}"
    );
    // Bad settings name what is wrong.
    for (args, needle) in [
        (vec!["-H", "tcp://0.0.0.0:2375"], "unix socket only"),
        (vec!["--default-address-pool", "base=10.0.0.0/8"], "size="),
        (vec!["--bip", "nonsense"], "--bip"),
        (vec!["--log-level", "loud"], "--log-level"),
        (
            vec!["--config-file", "/nonexistent/daemon.json"],
            "/nonexistent/daemon.json",
        ),
    ] {
        let e = refused(&args);
        assert!(e.contains(needle), "{args:?}: {e}");
    }
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"data-root": "/tmp/x", "ip-masquerade": true}"#).unwrap();
    let e = refused(&["--config-file", bad.to_str().unwrap()]);
    assert!(e.contains("unknown field `ip-masquerade`"), "{e}");
    // The first daemon is untouched by all that.
    assert_eq!(d.request("GET", "/_ping", None), (200, "OK".into()));
}

/// A restart that overlaps the old daemon's last moments (it gives requests in flight up to
/// 5 s after SIGTERM, its socket still accepting): the new daemon waits for the old one's
/// lock and starts, rather than taking the accepting socket for a live daemon and refusing.
#[test]
fn a_restart_waits_for_the_daemon_before_it_to_finish() {
    if !can_run("a_restart_waits_for_the_daemon_before_it_to_finish", false) {
        return;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut old = Daemon::start(dir.path());
    let pid = nix::unistd::Pid::from_raw(old.pid().unwrap() as i32);
    // A client half way through a request keeps the old daemon in its grace period.
    let mut slow = UnixStream::connect(&old.socket).unwrap();
    slow.write_all(b"GET /_ping HTTP/1.1\r\nHost: lnet\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        UnixStream::connect(&old.socket).is_ok(),
        "the old daemon's socket still accepts during its grace period (the case under test)"
    );
    let new = Daemon::start(dir.path());
    assert!(
        old.wait_exit(Duration::from_secs(1)).is_some(),
        "the new daemon answered only after the old one had exited"
    );
    assert_eq!(new.request("GET", "/_ping", None), (200, "OK".into()));
    let pid_file = std::fs::read_to_string(dir.path().join("run/lnet.pid")).unwrap();
    assert_eq!(pid_file.trim(), new.pid().unwrap().to_string());
    drop(slow);
}

#[test]
fn ip_forward_no_drop_is_a_flag_and_a_daemon_json_key() {
    if !can_run("ip_forward_no_drop_is_a_flag_and_a_daemon_json_key", false) {
        return;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    // A host that does not route (a new namespace copies the host's setting).
    lnet_kernel::sysctl::set("net.ipv4.ip_forward", "0").unwrap();
    let forwarding = || lnet_kernel::sysctl::get("net.ipv4.ip_forward").unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Wrong values are refused, naming the setting and what it takes, before anything is
    // changed.
    // A wrong flag value is a usage error (exit 2), as every flag's.
    let out = Command::new(env!("CARGO_BIN_EXE_lnet"))
        .args(["daemon", "--ip-forward-no-drop=maybe"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("--ip-forward-no-drop") && e.contains("maybe") && e.contains("true"),
        "{e}"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"ip-forward-no-drop": "yes"}"#).unwrap();
    let e = refused(&["--config-file", bad.to_str().unwrap()]);
    assert!(
        e.contains("ip-forward-no-drop") && e.contains("expected a boolean"),
        "{e}"
    );
    assert_eq!(forwarding().trim(), "0");

    // The families whose forwarded traffic that is not lnet's is dropped, as the daemon
    // programs them; its firewall agrees with them.
    let guarded = |d: &Daemon| {
        let (st, body) = d.request("GET", "/lnet/firewall", None);
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["drift"], serde_json::json!([]), "{v}");
        v["elements"]["forward_guard"].clone()
    };
    let ipv4 = serde_json::json!(["ipv4"]);
    // The default bridge made lnet turn forwarding on: guarded by default.
    let mut d = Daemon::start(dir.path());
    assert_eq!(forwarding().trim(), "1");
    assert_eq!(guarded(&d), ipv4);
    d.restart_with_config(r#"{"ip-forward-no-drop": true}"#);
    assert_eq!(guarded(&d), serde_json::Value::Null);
    d.restart_with_config(r#"{"ip-forward-no-drop": false}"#);
    assert_eq!(guarded(&d), ipv4);
    drop(d);
    // The bare flag, which wins over the file.
    let mut d = Daemon::start_with_args(dir.path(), &["--ip-forward-no-drop"]);
    assert_eq!(guarded(&d), serde_json::Value::Null);
    d.restart_with_config(r#"{"ip-forward-no-drop": false}"#);
    assert_eq!(guarded(&d), serde_json::Value::Null);
}

#[test]
fn bad_requests_get_docker_errors_and_disturb_nothing() {
    if !can_run("bad_requests_get_docker_errors_and_disturb_nothing", false) {
        return;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let before = d.request("GET", "/networks", None);

    // A slow client holding a connection with half its headers does not hold anyone else.
    let mut slow = UnixStream::connect(&d.socket).unwrap();
    slow.write_all(b"POST /networks/create HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // One that sends half a body and goes away.
    {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.write_all(
            b"POST /networks/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"Na",
        )
        .unwrap();
    }

    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        ("POST", "/networks/create", Some("{"), 400, "not valid JSON"),
        ("POST", "/networks/create", Some(""), 400, "empty"),
        (
            "POST",
            "/networks/create",
            Some(r#"{"Name":7}"#),
            400,
            "Name",
        ),
        (
            "POST",
            "/networks/create",
            Some(r#"{"Driver":"bridge"}"#),
            400,
            "Name",
        ),
        (
            "POST",
            "/networks/create",
            Some(r#"{"Name":"x","Internal":"yes"}"#),
            400,
            "Internal",
        ),
        (
            "POST",
            "/networks/create",
            Some(r#"{"Name":"x","IPAM":{"Config":[{"Subnet":"10.1.0.0/33"}]}}"#),
            400,
            "IPAM.Config[0].Subnet",
        ),
        (
            "POST",
            "/networks/create",
            Some(r#"{"Name":"bridge"}"#),
            409,
            "already exists",
        ),
        (
            "POST",
            "/networks/create",
            Some(r#"{"Name":"x","Driver":"nosuch"}"#),
            // dockerd: 404, plugin "nosuch" not found.
            404,
            "network driver or plugin \"nosuch\" not found",
        ),
        ("GET", "/networks/nosuch", None, 404, "not found"),
        ("DELETE", "/networks/none", None, 403, "pre-defined"),
        (
            "GET",
            "/networks?filters=%7B%22colour%22%3A%5B%22red%22%5D%7D",
            None,
            400,
            "invalid filter",
        ),
        ("GET", "/networks?filters=nonsense", None, 400, "not JSON"),
        (
            "POST",
            "/networks/bridge/connect",
            Some(r#"{"Container":"nosuch"}"#),
            404,
            "No such container",
        ),
        (
            "POST",
            "/networks/bridge/connect",
            Some("{}"),
            400,
            "Container",
        ),
        (
            "POST",
            "/lnet/sandboxes/create",
            Some(r#"{"Name":"s","Dns":["x"]}"#),
            400,
            "Dns[0]",
        ),
        (
            "POST",
            "/lnet/sandboxes/create",
            Some(r#"{"Name":"s","ExtraHosts":["nocolon"]}"#),
            400,
            "ExtraHosts[0]",
        ),
        ("GET", "/containers/json", None, 404, "page not found"),
    ];
    for (method, path, body, status, needle) in cases {
        let (st, b) = d.request(method, path, *body);
        assert_eq!(st, *status, "{method} {path} {body:?}: {b}");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap_or_else(|e| panic!("{b}: {e}"));
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{method} {path} {body:?}: {msg}");
    }
    // Over 1 MiB: refused, not read into memory.
    let big = format!(
        r#"{{"Name":"big","Labels":{{"x":"{}"}}}}"#,
        "a".repeat(1 << 20)
    );
    let (st, b) = d.request("POST", "/networks/create", Some(&big));
    assert_eq!(st, 413, "{b}");

    // Nothing changed, and the daemon is fine.
    assert_eq!(d.request("GET", "/networks", None), before);
    // The slow client is still waiting for its answer; it gets a timeout, not a crash.
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_eq!(d.request("GET", "/_ping", None), (200, "OK".into()));
}

#[test]
fn firewall_show_and_check_ask_a_running_daemon() {
    if !can_run("firewall_show_and_check_ask_a_running_daemon", false) {
        return;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Self-healing would put the element back before `check` could see it gone.
    let d = Daemon::start_with_args(dir.path(), &["--self-heal=false"]);
    d.sandbox("web");
    let (st, b) = d.request(
        "POST",
        "/networks/bridge/connect",
        Some(r#"{"Container":"web","Publish":["8080:80"]}"#),
    );
    assert_eq!(st, 200, "{b}");
    let lnet = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lnet"))
            .arg("-H")
            .arg(format!("unix://{}", d.socket.display()))
            .args(args)
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("run"))
            .output()
            .unwrap()
    };
    // The store is the daemon's: the answer comes from the daemon.
    let show = lnet(&["firewall", "show"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(show.status.success(), "{show:?}");
    assert!(text.contains("tcp . 8080 : 172.17.0.2 . 80"), "{text}");
    assert!(text.contains("matches the records"), "{text}");
    // Drift is reported, with exit 1.
    let out = Command::new("nft")
        .args([
            "delete",
            "element",
            "inet",
            "lnet",
            "ports4_any",
            "{ tcp . 8080 }",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let check = lnet(&["firewall", "check"]);
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("missing    element ports4_any"),
        "{check:?}"
    );
    assert_eq!(d.request("DELETE", "/lnet/sandboxes/web", None).0, 204);
}
