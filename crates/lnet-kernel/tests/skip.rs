//! A skipped test must not pass for a passed one: every skip prints its marker line (past
//! libtest's capture), appends it to `$LNET_SKIP_LOG` for `scripts/test.sh` to count, and
//! under CI's `LNET_REQUIRE_ROOT=1` / `LNET_REQUIRE_TOOLS=1` fails the test instead.
//!
//! Each test re-runs this binary as a child (selected by an environment variable) that runs
//! one skip site as a user who is not root — `nobody`, when the tests themselves run as root
//! — and reads what the child printed, logged and returned.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use lnet_kernel::testing::{SKIP_MARKER, is_root, require_tool};

/// Which skip site the child runs: `root` or `nft`.
const CHILD: &str = "LNET_TEST_SKIP_CHILD";
/// Where the child writes `ran` when it went on past its check.
const RAN: &str = "LNET_TEST_SKIP_RAN";

/// The child's side: the skip site, then a mark that it went on.
fn child(site: &str) {
    match site {
        "root" => needs_root(),
        "nft" => needs_nft(),
        other => panic!("unknown child site {other:?}"),
    }
}

fn needs_root() {
    lnet_kernel::skip_unless_root!();
    went_on();
}

fn needs_nft() {
    if !require_tool("skip::needs_nft", "nft") {
        return;
    }
    went_on();
}

fn went_on() {
    std::fs::write(std::env::var_os(RAN).expect("RAN is set"), "ran").unwrap();
}

/// Runs `test` of this binary as a child running `site`, without root (as `nobody` when
/// this runs as root), with `vars` and none of CI's variables it inherited (under
/// `scripts/test.sh` or CI this run has them). Its output; `dir` holds what it wrote.
fn run_child(test: &str, site: &str, dir: &Path, vars: &[(&str, &str)]) -> Output {
    // `nobody` writes the log and the mark here.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let _ = std::fs::remove_file(dir.join("ran"));
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    // No --nocapture: the marker must show through libtest's capture of a passing test.
    cmd.args([test, "--exact", "--test-threads=1"])
        .env_remove("LNET_SKIP_LOG")
        .env_remove("LNET_REQUIRE_ROOT")
        .env_remove("LNET_REQUIRE_TOOLS")
        .env(CHILD, site)
        .env(RAN, dir.join("ran"))
        .envs(vars.iter().copied())
        .current_dir(dir);
    if is_root() {
        cmd.uid(65534).gid(65534);
    }
    cmd.output().expect("run the child")
}

/// What the child printed, both streams.
fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The child passed without going on past its check, printed `line` (through libtest's
/// capture) and logged it as the one line of `log`.
#[track_caller]
fn assert_skipped(out: &Output, line: &str, log: &Path) {
    let text = said(out);
    assert!(out.status.success(), "a skip is not a failure:\n{text}");
    assert!(text.contains(line), "no {line:?} in the output:\n{text}");
    let logged = std::fs::read_to_string(log).expect("the skip log was written");
    assert_eq!(logged, format!("{line}\n"), "one skip, one line");
    let ran = log.with_file_name("ran");
    assert!(!ran.exists(), "the test went on:\n{text}");
}

/// The child failed without going on, saying each of `says`.
#[track_caller]
fn assert_failed(out: &Output, says: &[&str], dir: &Path) {
    let text = said(out);
    assert!(!out.status.success(), "the skip passed:\n{text}");
    for s in says {
        assert!(text.contains(s), "no {s:?} in the failure:\n{text}");
    }
    assert!(!dir.join("ran").exists(), "the test went on:\n{text}");
}

#[test]
fn a_root_skip_prints_its_marker_logs_one_line_and_goes_no_further() {
    if let Ok(site) = std::env::var(CHILD) {
        return child(&site);
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("skips.log");
    let out = run_child(
        "a_root_skip_prints_its_marker_logs_one_line_and_goes_no_further",
        "root",
        dir.path(),
        &[("LNET_SKIP_LOG", log.to_str().unwrap())],
    );
    let line =
        format!("{SKIP_MARKER} skip::needs_root: needs root (network namespaces, links, nftables)");
    assert_skipped(&out, &line, &log);
}

#[test]
fn lnet_require_root_turns_a_root_skip_into_a_failure() {
    if let Ok(site) = std::env::var(CHILD) {
        return child(&site);
    }
    let test = "lnet_require_root_turns_a_root_skip_into_a_failure";
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("skips.log");
    let log_var = ("LNET_SKIP_LOG", log.to_str().unwrap());
    let out = run_child(
        test,
        "root",
        dir.path(),
        &[("LNET_REQUIRE_ROOT", "1"), log_var],
    );
    assert_failed(
        &out,
        &[
            "skip::needs_root needs root",
            "LNET_REQUIRE_ROOT=1 forbids skipping it",
        ],
        dir.path(),
    );
    assert!(!log.exists(), "a failure is not logged as a skip");
    // Tools are another matter: LNET_REQUIRE_TOOLS alone leaves a root skip a skip.
    let out = run_child(
        test,
        "root",
        dir.path(),
        &[("LNET_REQUIRE_TOOLS", "1"), log_var],
    );
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
}

#[test]
fn a_missing_tool_is_a_logged_skip_and_under_lnet_require_tools_a_failure_naming_its_package() {
    if let Ok(site) = std::env::var(CHILD) {
        return child(&site);
    }
    let test =
        "a_missing_tool_is_a_logged_skip_and_under_lnet_require_tools_a_failure_naming_its_package";
    let dir = tempfile::tempdir().unwrap();
    // A PATH of one empty directory: no nft on it.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let path = ("PATH", bin.to_str().unwrap());
    let log = dir.path().join("skips.log");
    let log_var = ("LNET_SKIP_LOG", log.to_str().unwrap());

    let out = run_child(test, "nft", dir.path(), &[path, log_var]);
    let line =
        format!("{SKIP_MARKER} skip::needs_nft: needs nft, from the Debian package nftables");
    assert_skipped(&out, &line, &log);

    let out = run_child(
        test,
        "nft",
        dir.path(),
        &[path, ("LNET_REQUIRE_TOOLS", "1")],
    );
    assert_failed(
        &out,
        &[
            "skip::needs_nft needs nft, from the Debian package nftables",
            "LNET_REQUIRE_TOOLS=1 forbids skipping it",
        ],
        dir.path(),
    );

    // With an executable nft on the PATH the test goes on, and nothing is logged.
    let nft = bin.join("nft");
    std::fs::write(&nft, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&nft, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_file(&log).unwrap();
    let out = run_child(
        test,
        "nft",
        dir.path(),
        &[path, log_var, ("LNET_REQUIRE_TOOLS", "1")],
    );
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        dir.path().join("ran").exists(),
        "the test did not go on:\n{}",
        said(&out)
    );
    assert!(!log.exists(), "a test that ran logged a skip");
}
