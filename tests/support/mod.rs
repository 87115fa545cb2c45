//! Running the real `lnet daemon` for end-to-end tests: in the test's own network
//! namespace (the caller enters it first), with its state in a temporary directory, killed
//! by PID when the test ends or panics. The sandboxes' namespace bind mounts outlive a
//! daemon (they must: a restart keeps the containers), so the guard unmounts them at the
//! end; under `scripts/test.sh` they live in the test run's private mount namespace anyway.

#![allow(dead_code)]

pub mod dockerd;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A running daemon; killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct Daemon {
    pub dir: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
    /// Extra environment of the daemon's process (see [`Daemon::restart_with_env`]).
    env: Vec<(String, String)>,
    /// Extra flags of `lnet daemon` (see [`Daemon::start_with_args`]).
    args: Vec<String>,
    /// The daemon's `daemon.json` (see [`Daemon::restart_with_config`]).
    config: String,
}

impl Daemon {
    /// Starts a daemon on state in `dir` and waits until it answers `/_ping`.
    pub fn start(dir: &Path) -> Daemon {
        Daemon::start_with_args(dir, &[])
    }

    /// Like [`Daemon::start`], with extra `lnet daemon` flags (e.g. `--self-heal=false`),
    /// which every restart keeps.
    pub fn start_with_args(dir: &Path, args: &[&str]) -> Daemon {
        let mut d = Daemon {
            dir: dir.to_path_buf(),
            socket: dir.join("lnet.sock"),
            child: None,
            env: Vec::new(),
            args: args.iter().map(|a| a.to_string()).collect(),
            config: "{}".into(),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        std::fs::write(self.dir.join("daemon.json"), &self.config).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lnet"))
            .arg("daemon")
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("run"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--config-file")
            .arg(self.dir.join("daemon.json"))
            // Never the machine's /run/docker/plugins: each test's socket is its own.
            .args(
                (!self.args.iter().any(|a| a.starts_with("--plugin-socket")))
                    .then(|| format!("--plugin-socket={}", self.plugin_socket().display())),
            )
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start lnet daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok((200, _)) = self.try_request("GET", "/_ping", None) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("the daemon exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not answer in 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL (no cleanup runs) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL, then a new daemon on the same state.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGKILL, then a new daemon on the same state with `vars` added to its environment
    /// (e.g. `LNET_FAILPOINT`); they stay until the next call (`&[]` clears them).
    pub fn restart_with_env(&mut self, vars: &[(&str, &str)]) {
        self.kill();
        self.env = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.spawn();
    }

    /// SIGKILL, then a new daemon on the same state reading `json` as its `daemon.json`,
    /// which every restart keeps until the next call.
    pub fn restart_with_config(&mut self, json: &str) {
        self.kill();
        self.config = json.into();
        self.spawn();
    }

    /// Waits up to `timeout` for the daemon to exit by itself; its status if it did (the
    /// guard then holds no process).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.child.as_mut()?.try_wait().ok().flatten();
            if let Some(status) = status {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's `--data-root`.
    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Where the daemon serves the plugin protocol (unless a test gave its own
    /// `--plugin-socket`).
    pub fn plugin_socket(&self) -> PathBuf {
        self.dir.join("plugins").join("lnet.sock")
    }

    /// The daemon's `--exec-root`.
    pub fn exec_root(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// One HTTP/1.1 request over the socket; `(status, body)`.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        let mut s = UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: lnet\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        // Chunked bodies (axum streams JSON responses with a length, but be safe).
        Ok((status, dechunk(&out, body)))
    }

    /// Like [`Daemon::try_request`], panicking on I/O errors.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.try_request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `docker -H unix://… args…`.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .output()
            .expect("run docker")
    }

    /// `docker …`, which must succeed; its stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}{}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Creates a sandbox through lnet's API; its id.
    pub fn sandbox(&self, name: &str) -> String {
        let (status, body) = self.request(
            "POST",
            "/lnet/sandboxes/create",
            Some(&format!(r#"{{"Name":"{name}","Hostname":"{name}"}}"#)),
        );
        assert_eq!(status, 201, "create sandbox {name}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["Id"].as_str().unwrap().to_string()
    }
}

fn dechunk(raw: &str, body: &str) -> String {
    let head = raw
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if !head.contains("transfer-encoding: chunked") {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n.min(after.len())]);
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        for entry in std::fs::read_dir(self.dir.join("run/netns"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Err(e) = lnet_kernel::Netns::delete_at(entry.path()) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Whether the test can run: root and, when asked, the `docker` CLI; else the skip is
/// recorded (see `lnet_kernel::testing::require_root`).
pub fn can_run(test: &str, need_docker: bool) -> bool {
    use lnet_kernel::testing::{require_root, require_tool};
    require_root(test, "network namespaces, links, nftables")
        && (!need_docker || require_tool(test, "docker"))
}
