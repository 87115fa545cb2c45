//! A real dockerd (Debian's docker.io, 20.10) for the plugin tests: started by
//! `tests/support/dockerd.sh` in the calling thread's network namespace (the test's own,
//! which lnet shares: the plugin protocol hands interfaces over in dockerd's namespace) and a
//! mount namespace of its own, with all its state in a temporary directory; ended by PID and
//! unmounted when the guard drops, on a panic too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dockerd.sh");

/// A running dockerd; everything of it removed on drop.
#[derive(Debug)]
pub struct Dockerd {
    lab: PathBuf,
    id: String,
}

impl Dockerd {
    /// Starts dockerd (with extra `flags`) keeping its state under `lab`, and imports the
    /// busybox image `bb:1`.
    pub fn start(lab: &Path, id: &str, flags: &[&str]) -> Dockerd {
        let d = Dockerd {
            lab: lab.to_path_buf(),
            id: id.to_string(),
        };
        d.script("start", flags);
        d.script("import", &[]);
        d
    }

    fn script(&self, cmd: &str, args: &[&str]) {
        let out = Command::new("bash")
            .arg(SCRIPT)
            .arg(cmd)
            .args(args)
            .env("DL_LAB", &self.lab)
            .env("DL_ID", &self.id)
            .output()
            .expect("run tests/support/dockerd.sh");
        assert!(
            out.status.success(),
            "dockerd.sh {cmd}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// dockerd's directory.
    pub fn dir(&self) -> PathBuf {
        self.lab.join(format!("inst-{}", self.id))
    }

    /// Where dockerd looks for plugins (its /run/docker/plugins).
    pub fn plugins(&self) -> PathBuf {
        self.dir().join("plugins")
    }

    /// dockerd's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default()
    }

    /// `docker -H unix://… args…`.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(cli())
            .arg("-H")
            .arg(format!(
                "unix://{}",
                self.dir().join("docker.sock").display()
            ))
            .args(args)
            .output()
            .expect("run docker")
    }

    /// [`Dockerd::docker`], which must succeed; its stdout, trimmed.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// [`Dockerd::docker`], which must fail; its stderr.
    pub fn docker_err(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            !out.status.success(),
            "docker {} should have failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A container's address on `network`.
    pub fn ip_of(&self, container: &str, network: &str) -> String {
        self.docker_ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            container,
        ])
    }

    /// SIGTERM to dockerd alone (its containers stay with `--live-restore`).
    pub fn stop(&self) {
        self.script("stop", &[]);
    }

    /// dockerd again, in the same namespaces, with `flags`.
    pub fn restart(&self, flags: &[&str]) {
        self.script("restart", flags);
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let out = Command::new("bash")
            .arg(SCRIPT)
            .arg("cleanup")
            .env("DL_LAB", &self.lab)
            .env("DL_ID", &self.id)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "dockerd.sh cleanup: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("dockerd.sh cleanup: {e}"),
        }
    }
}

/// The docker CLI of dockerd's own release (docker.io's, in /usr/bin), which speaks its API
/// version; another on the PATH if there is none.
fn cli() -> &'static str {
    if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    }
}

/// Whether a dockerd test can run here: root, and dockerd, the docker CLI and busybox
/// (scripts/deps.sh installs them); else the skip is recorded.
pub fn can_run(test: &str) -> bool {
    use lnet_kernel::testing::{require_root, require_tool};
    require_root(test, "network namespaces, mounts, dockerd")
        && ["dockerd", "docker", "busybox", "nsenter", "unshare"]
            .iter()
            .all(|t| require_tool(test, t))
}
