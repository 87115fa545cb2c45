//! The `lnet` command line against a real daemon: the daemon binary runs in the test's own
//! network namespace, the CLI binary talks to it over its socket, as a user would.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;

use support::Daemon;

const LNET: &str = env!("CARGO_BIN_EXE_lnet");

/// The CLI, pointed at a test's daemon.
trait Cli {
    /// `unix://<socket>`.
    fn host(&self) -> String;
    /// `lnet -H <socket> args…`.
    fn lnet(&self, args: &[&str]) -> Output;
    /// `lnet -H <socket> sandbox exec SANDBOX -- cmd…`, not yet run.
    fn exec_cmd(&self, sandbox: &str, cmd: &[&str]) -> Command;
    /// The same, run.
    fn exec(&self, sandbox: &str, cmd: &[&str]) -> Output;
}

impl Cli for Daemon {
    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn lnet(&self, args: &[&str]) -> Output {
        Command::new(LNET)
            .args(["-H", &self.host()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run lnet")
    }

    fn exec_cmd(&self, sandbox: &str, cmd: &[&str]) -> Command {
        let mut c = Command::new(LNET);
        c.args(["-H", &self.host(), "sandbox", "exec", sandbox, "--"])
            .args(cmd);
        c
    }

    fn exec(&self, sandbox: &str, cmd: &[&str]) -> Output {
        self.exec_cmd(sandbox, cmd)
            .stdin(Stdio::null())
            .output()
            .expect("run lnet sandbox exec")
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        out(&o),
        err(&o)
    );
    out(&o)
}

#[track_caller]
fn json(o: Output) -> Value {
    let text = ok(o);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[test]
fn the_cli_drives_networks_and_sandboxes_through_the_daemon() {
    lnet_kernel::skip_unless_root!();
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());

    // 1. Create a network with an explicit subnet, gateway, label and driver option.
    let id = ok(d.lnet(&[
        "network",
        "create",
        "--subnet",
        "10.55.0.0/24",
        "--gateway",
        "10.55.0.1",
        "--label",
        "env=test",
        "-o",
        "com.docker.network.bridge.name=br-cli",
        "web",
    ]));
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "an id: {id:?}");
    let short = &id[..12];

    // 2. List it: table, JSON, ids only, filtered.
    let table = ok(d.lnet(&["network", "ls"]));
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("NETWORK ID") && header.contains("NAME") && header.ends_with("SCOPE"),
        "{table}"
    );
    let row = table.lines().find(|l| l.starts_with(short)).expect(&table);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols, [short, "web", "bridge", "local"], "{table}");
    assert!(table.contains("host") && table.contains("none"), "{table}");
    let all = json(d.lnet(&["network", "ls", "--format", "json"]));
    let web = all
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["Name"] == "web")
        .expect("web in ls --format json");
    assert_eq!(web["Labels"]["env"], "test", "{web}");
    let ids = ok(d.lnet(&["network", "ls", "-q"]));
    assert_eq!(ids.lines().count(), 4, "bridge, host, none, web: {ids}");
    assert!(ids.lines().any(|l| l == short), "{ids}");
    let filtered = ok(d.lnet(&["network", "ls", "-q", "--filter", "name=web"]));
    assert_eq!(filtered, format!("{short}\n"));
    let filtered = ok(d.lnet(&[
        "network",
        "ls",
        "-q",
        "--no-trunc",
        "-f",
        "label=env=test",
        "-f",
        "driver=bridge",
    ]));
    assert_eq!(filtered, format!("{id}\n"));

    // 3. Inspect: a JSON array, as docker network inspect prints.
    let v = json(d.lnet(&["network", "inspect", "web"]));
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["Id"], id.as_str());
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.55.0.0/24", "{v}");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Gateway"], "10.55.0.1", "{v}");
    assert_eq!(
        v[0]["Options"]["com.docker.network.bridge.name"], "br-cli",
        "{v}"
    );

    // 4. Two sandboxes, connected: one with a fixed address and an alias, one publishing
    //    a port.
    let a_id = ok(d.lnet(&[
        "sandbox",
        "create",
        "a",
        "--hostname",
        "alpha",
        "--domainname",
        "example.com",
        "--add-host",
        "db:10.9.9.9",
    ]));
    assert_eq!(a_id.trim().len(), 64, "{a_id}");
    ok(d.lnet(&["sandbox", "create", "b"]));
    let silent = ok(d.lnet(&[
        "network",
        "connect",
        "--ip",
        "10.55.0.10",
        "--alias",
        "web-a",
        "web",
        "a",
    ]));
    assert_eq!(silent, "", "connect prints nothing");
    ok(d.lnet(&["network", "connect", "--publish", "8080:80", "web", "b"]));

    // 5. The sandboxes show their endpoints and ports.
    let table = ok(d.lnet(&["sandbox", "ls"]));
    assert!(
        table.starts_with("SANDBOX ID") && table.lines().next().unwrap().ends_with("KEY"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with(&a_id.trim()[..12]))
        .expect(&table);
    assert_eq!(row.split_whitespace().nth(1), Some("a"), "{table}");
    assert_eq!(row.split_whitespace().nth(2), Some("web"), "{table}");
    let sbs = json(d.lnet(&["sandbox", "inspect", "a", "b"]));
    let (a, b) = (&sbs[0], &sbs[1]);
    assert_eq!(a["Endpoints"][0]["IPv4Address"], "10.55.0.10/24", "{a}");
    assert_eq!(a["Endpoints"][0]["Network"], "web", "{a}");
    assert_eq!(a["Endpoints"][0]["Aliases"][0], "web-a", "{a}");
    assert_eq!(b["Endpoints"][0]["Ports"][0]["HostPort"], 8080, "{b}");
    assert_eq!(b["Endpoints"][0]["Ports"][0]["ContainerPort"], 80, "{b}");
    let b_ip = b["Endpoints"][0]["IPv4Address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let ifname = a["Endpoints"][0]["Interface"].as_str().unwrap().to_string();
    let json_ls = json(d.lnet(&["sandbox", "ls", "--format", "json"]));
    assert_eq!(json_ls.as_array().map(Vec::len), Some(2), "{json_ls}");

    // 6. exec: the sandbox's hosts file over /etc/hosts, its namespace, its exit status.
    let hosts = ok(d.exec("a", &["cat", "/etc/hosts"]));
    let want = std::fs::read_to_string(a["HostsPath"].as_str().unwrap()).unwrap();
    assert_eq!(hosts, want);
    assert!(
        hosts.contains("10.55.0.10") && hosts.contains("alpha.example.com"),
        "{hosts}"
    );
    assert!(
        hosts.contains("10.9.9.9\tdb") || hosts.contains("10.9.9.9 db"),
        "{hosts}"
    );
    let addr = ok(d.exec("a", &["ip", "-o", "addr", "show", &ifname]));
    assert!(addr.contains("inet 10.55.0.10/24"), "{addr}");
    let status = d.exec("a", &["sh", "-c", "exit 3"]);
    assert_eq!(status.status.code(), Some(3), "{}", err(&status));
    let missing = d.exec("a", &["/nonexistent-command"]);
    assert_eq!(missing.status.code(), Some(127), "{}", err(&missing));

    // 7. Real packets over TCP: from a to b (each in its own sandbox), then from the host
    //    to b through the port b publishes.
    let server = format!(
        "import socket\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{b_ip}', 80)); s.listen(1); s.settimeout(20)\n\
         for _ in range(2):\n    \
             c, peer = s.accept(); c.settimeout(5)\n    \
             print(c.recv(100).decode(), 'from', peer[0], flush=True)\n"
    );
    let mut listener = d
        .exec_cmd("b", &["python3", "-c", &server])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = format!(
        "import socket, time\n\
         for i in range(100):\n    \
             try:\n        \
                 c = socket.create_connection(('{b_ip}', 80), timeout=2); break\n    \
             except OSError:\n        \
                 time.sleep(0.1)\n\
         c.sendall(b'hello from a')\n"
    );
    ok(d.exec("a", &["python3", "-c", &client]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut published = loop {
        match std::net::TcpStream::connect("127.0.0.1:8080") {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => panic!("connect 127.0.0.1:8080: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    std::io::Write::write_all(&mut published, b"hello through 8080").unwrap();
    drop(published);
    let status = listener.wait().unwrap();
    let mut heard = String::new();
    listener
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut heard)
        .unwrap();
    let mut why = String::new();
    listener
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut why)
        .unwrap();
    assert!(status.success(), "{heard}{why}");
    let mut heard = heard.lines();
    assert_eq!(heard.next(), Some("hello from a from 10.55.0.10"), "{why}");
    let host = heard.next().unwrap_or_default();
    assert!(
        host.starts_with("hello through 8080 from "),
        "{host:?} {why}"
    );

    // 8. Disconnect both; remove (one name that does not exist: reported, the next one
    //    still removed, exit 1).
    assert_eq!(ok(d.lnet(&["network", "disconnect", "web", "b"])), "");
    ok(d.lnet(&["network", "disconnect", "-f", "web", "a"]));
    let b = json(d.lnet(&["sandbox", "inspect", "b"]));
    assert_eq!(b[0]["Endpoints"], serde_json::json!([]), "{b}");
    let rm = d.lnet(&["network", "rm", "nosuch", "web"]);
    assert_eq!(rm.status.code(), Some(1), "{}", err(&rm));
    assert_eq!(out(&rm), "web\n");
    assert!(
        err(&rm).contains("lnet: Error response from daemon: network nosuch not found"),
        "{}",
        err(&rm)
    );

    // 9. Prune: without --force it asks, and "n" keeps everything; with it, it removes.
    ok(d.lnet(&["network", "create", "old"]));
    let mut asked = Command::new(LNET)
        .args(["-H", &d.host(), "network", "prune"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut asked.stdin.take().unwrap(), b"n\n").unwrap();
    let asked = asked.wait_with_output().unwrap();
    assert!(
        out(&asked).starts_with("WARNING! This will remove all custom networks"),
        "{}",
        out(&asked)
    );
    assert!(!out(&asked).contains("Deleted Networks"), "{}", out(&asked));
    let pruned = ok(d.lnet(&["network", "prune", "--force"]));
    assert_eq!(pruned, "Deleted Networks:\nold\n");
    assert_eq!(ok(d.lnet(&["network", "ls", "-q"])).lines().count(), 3);

    // 10. Bad input: the daemon's message and exit 1; usage errors exit 2; a bad --subnet
    //     is named.
    let e = d.lnet(&["network", "inspect", "nosuch"]);
    assert_eq!(e.status.code(), Some(1));
    assert!(
        err(&e).contains("lnet: Error response from daemon: network nosuch not found"),
        "{}",
        err(&e)
    );
    let e = d.lnet(&["network", "connect", "nosuch", "a"]);
    assert_eq!(e.status.code(), Some(1));
    assert!(err(&e).contains("network nosuch not found"), "{}", err(&e));
    let e = d.lnet(&["network", "create"]);
    assert_eq!(e.status.code(), Some(2), "{}", err(&e));
    let e = d.lnet(&["network", "create", "--subnet", "nope", "x"]);
    assert_eq!(e.status.code(), Some(1));
    assert!(err(&e).contains("--subnet \"nope\""), "{}", err(&e));
    let e = Command::new(LNET)
        .args(["-H", "unix:///nonexistent/lnet.sock", "network", "ls"])
        .output()
        .unwrap();
    assert_eq!(e.status.code(), Some(1));
    assert!(
        err(&e).starts_with("lnet: cannot reach the lnet daemon at /nonexistent/lnet.sock: "),
        "{}",
        err(&e)
    );

    // 11. LNET_HOST picks the socket like -H; version (both sides), completion, sandbox rm.
    let by_env = Command::new(LNET)
        .env("LNET_HOST", d.host())
        .args(["network", "ls", "-q"])
        .output()
        .unwrap();
    assert_eq!(ok(by_env).lines().count(), 3);
    let v = ok(d.lnet(&["version"]));
    assert!(v.starts_with("Client: lnet\n"), "{v}");
    assert!(
        v.contains("\nServer: lnet\n") && v.contains("API version:   1.50"),
        "{v}"
    );
    let script = ok(d.lnet(&["completion", "bash"]));
    assert!(
        script.contains("_lnet()") && script.contains("complete "),
        "{script}"
    );
    // sandbox rename: listed under the new name; a name in use is refused.
    ok(d.lnet(&["sandbox", "rename", "b", "b2"]));
    let table = ok(d.lnet(&["sandbox", "ls"]));
    assert!(table.contains(" b2 ") && !table.contains(" b "), "{table}");
    let taken = d.lnet(&["sandbox", "rename", "b2", "a"]);
    assert_eq!(taken.status.code(), Some(1), "{}", err(&taken));
    assert!(err(&taken).contains("\"a\""), "{}", err(&taken));
    assert_eq!(ok(d.lnet(&["sandbox", "rm", "a", "b2"])), "a\nb2\n");
    assert_eq!(ok(d.lnet(&["sandbox", "ls", "-q"])), "");
}
