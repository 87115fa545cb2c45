//! The `lnet` CLI against a test's [`Daemon`], for the doctor and crash tests: commands with
//! their output, `lnet doctor`, and real traffic between two sandboxes and through a
//! published port. A test that uses it declares `mod support;` before `mod cli_support;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::Daemon;

/// The binary under test.
pub const LNET: &str = env!("CARGO_BIN_EXE_lnet");

/// `lnet -H unix://<socket> args…`, not yet run.
pub fn lnet_cmd(socket: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(LNET);
    c.arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args(args)
        .env_remove("LNET_HOST")
        .stdin(Stdio::null());
    c
}

/// Runs `cmd`, killing it (by its PID, it is ours) if it has not finished after `limit`:
/// its output, or `None` when it had to be killed.
pub fn run_with_limit(mut cmd: Command, limit: Duration) -> Option<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lnet");
    // Drain both pipes on their own threads so a chatty child cannot block on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let so = drain(Box::new(child.stdout.take().unwrap()));
    let se = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for lnet") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = so.join().unwrap_or_default();
    let stderr = se.join().unwrap_or_default();
    status.map(|status| Output {
        status,
        stdout,
        stderr,
    })
}

/// The CLI, pointed at a test's daemon.
pub trait LnetCli {
    /// `unix://<socket>`.
    fn host(&self) -> String;
    /// `lnet -H <socket> args…`, run (a minute at most: a hung CLI fails the test).
    fn cli(&self, args: &[&str]) -> Output;
    /// `lnet -H <socket> sandbox exec SANDBOX -- cmd…`, not yet run.
    fn exec_cmd(&self, sandbox: &str, cmd: &[&str]) -> Command;
    /// `lnet doctor` with the daemon's own `--data-root` and `--exec-root` (so that it never
    /// reads a store of the machine's), then `extra` (`--repair`, `--format json`). While
    /// the daemon runs it holds the store's lock, so the CLI asks the daemon.
    fn doctor(&self, extra: &[&str]) -> Output;
}

impl LnetCli for Daemon {
    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn cli(&self, args: &[&str]) -> Output {
        run_with_limit(lnet_cmd(&self.socket, args), Duration::from_secs(60))
            .unwrap_or_else(|| panic!("lnet {args:?} did not finish in 60 s"))
    }

    fn exec_cmd(&self, sandbox: &str, cmd: &[&str]) -> Command {
        let mut c = lnet_cmd(&self.socket, &["sandbox", "exec", sandbox, "--"]);
        c.args(cmd);
        c
    }

    fn doctor(&self, extra: &[&str]) -> Output {
        let (data, exec) = (self.data_root(), self.exec_root());
        let mut args = vec![
            "doctor",
            "--data-root",
            data.to_str().unwrap(),
            "--exec-root",
            exec.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.cli(&args)
    }
}

/// Stdout.
pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr.
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code, stdout and stderr, for messages.
pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        out(o),
        err(o)
    )
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", show(&o));
    out(&o)
}

/// Asserts success and parses stdout as JSON.
#[track_caller]
pub fn json(o: Output) -> Value {
    let text = ok(o);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// `ip args…` in the test's network namespace (the calling thread's), which must succeed.
#[track_caller]
pub fn ip(args: &[&str]) -> String {
    let o = Command::new("ip").args(args).output().expect("run ip");
    assert!(o.status.success(), "ip {args:?}: {}", show(&o));
    out(&o)
}

/// Whether a link of that name exists in the test's network namespace.
pub fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run ip")
        .success()
}

/// `nft args…` in the test's network namespace, which must succeed.
#[track_caller]
pub fn nft(args: &[&str]) -> String {
    let o = Command::new("nft").args(args).output().expect("run nft");
    assert!(o.status.success(), "nft {args:?}: {}", show(&o));
    out(&o)
}

/// The first IPv4 address (without its prefix length) of a sandbox's endpoint on `network`.
pub fn sandbox_ip(d: &Daemon, sandbox: &str, network: &str) -> String {
    let v = json(d.cli(&["sandbox", "inspect", sandbox]));
    let ep = v[0]["Endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["Network"] == network)
        .unwrap_or_else(|| panic!("sandbox {sandbox} has no endpoint on {network}: {v}"));
    ep["IPv4Address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// Kills a child we started (by its PID) and reaps it.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Real packets: a TCP server in sandbox `to` (on `to_ip`, port 80) hears one connection
/// from sandbox `from` (whose address is `from_ip`) and one from the test's namespace (the
/// daemon's host) through `127.0.0.1:<host_port>`, which the daemon publishes to `to`'s port
/// 80. `what` names the check in failure messages.
#[track_caller]
pub fn assert_traffic(
    d: &Daemon,
    from: &str,
    from_ip: &str,
    to: &str,
    to_ip: &str,
    host_port: u16,
    what: &str,
) {
    let server = format!(
        "import socket\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{to_ip}', 80)); s.listen(4); s.settimeout(30)\n\
         print('ready', flush=True)\n\
         for _ in range(2):\n    \
             c, peer = s.accept(); c.settimeout(10)\n    \
             print(c.recv(100).decode(), 'from', peer[0], flush=True)\n    \
             c.close()\n"
    );
    let mut listener = d
        .exec_cmd(to, &["python3", "-c", &server])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server");
    let mut lines = BufReader::new(listener.stdout.take().unwrap());
    let mut first = String::new();
    let _ = lines.read_line(&mut first);
    if first.trim() != "ready" {
        stop(&mut listener);
        let mut why = String::new();
        let _ = listener.stderr.take().unwrap().read_to_string(&mut why);
        panic!("{what}: the server in {to} did not start: {first}{why}");
    }
    let client = format!(
        "import socket, sys, time\n\
         for i in range(50):\n    \
             try:\n        \
                 c = socket.create_connection(('{to_ip}', 80), timeout=2); break\n    \
             except OSError as e:\n        \
                 err = e; time.sleep(0.1)\n\
         else:\n    \
             sys.exit(f'connect {to_ip}:80: {{err}}')\n\
         c.sendall(b'hello from {from}')\n"
    );
    let sent = run_with_limit(
        d.exec_cmd(from, &["python3", "-c", &client]),
        Duration::from_secs(60),
    );
    match sent {
        Some(o) if o.status.success() => {}
        other => {
            stop(&mut listener);
            panic!(
                "{what}: no TCP from {from} to {to} ({to_ip}:80): {}",
                other.as_ref().map_or_else(|| "timed out".into(), show)
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let host = format!("127.0.0.1:{host_port}").parse().unwrap();
    let mut published = loop {
        match std::net::TcpStream::connect_timeout(&host, Duration::from_secs(2)) {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => {
                stop(&mut listener);
                panic!("{what}: connect 127.0.0.1:{host_port} (published to {to}): {e}");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    std::io::Write::write_all(&mut published, b"hello from the host").unwrap();
    drop(published);
    let mut heard = String::new();
    let _ = lines.read_to_string(&mut heard);
    let status = listener.wait().unwrap();
    let mut why = String::new();
    let _ = listener.stderr.take().unwrap().read_to_string(&mut why);
    assert!(status.success(), "{what}: server in {to}: {heard}{why}");
    let heard: Vec<&str> = heard.lines().collect();
    assert_eq!(
        heard.first().copied(),
        Some(format!("hello from {from} from {from_ip}").as_str()),
        "{what}: {heard:?} {why}"
    );
    assert!(
        heard
            .get(1)
            .is_some_and(|l| l.starts_with("hello from the host from ")),
        "{what}: {heard:?} {why}"
    );
}

/// The last `n` lines of the daemon's log, for failure messages.
pub fn log_tail(d: &Daemon, n: usize) -> String {
    let log = d.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `lnet doctor` (see [`LnetCli::doctor`]): the daemon lets its own background deletes
/// finish before it compares, so its answer is final.
pub fn doctor_settled(d: &Daemon) -> Output {
    d.doctor(&[])
}
