//! `lnet firewall show` and `lnet firewall check`, run as a user would: the binary, on the
//! store a controller left behind, in the namespace where lnet runs (the test's own).

use std::path::Path;
use std::process::{Command, Output};

use lnet_core::{Config, Controller, EndpointOptions, JoinOptions, NetworkOptions, PortSpec};
use lnet_kernel::nft::{Batch, Concat, Element, Family, NftSocket};

fn lnet(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lnet"))
        .args(args)
        .arg("--data-root")
        .arg(root.join("data"))
        .arg("--exec-root")
        .arg(root.join("run"))
        .output()
        .expect("run lnet")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Deletes `key` from lnet's set `set` by hand; `lnet firewall check` must then exit 1.
/// What it printed.
fn check_without(root: &Path, set: &str, key: Vec<u8>) -> String {
    let mut b = Batch::new();
    b.delete_elements(Family::Inet, "lnet", set, &[Element::new(key)]);
    NftSocket::new().unwrap().commit(&b).unwrap();
    let check = lnet(root, &["firewall", "check"]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    text(&check)
}

#[test]
fn firewall_show_and_check_compare_the_kernel_with_the_records() {
    lnet_kernel::skip_unless_root!();
    lnet_kernel::testing::enter_new_netns().unwrap();
    // A host that does not route (a new namespace copies the host's setting): lnet turns
    // forwarding on and guards it.
    lnet_kernel::sysctl::set("net.ipv4.ip_forward", "0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let ctrl = Controller::new(Config::rooted_at(root)).unwrap();
        let mut o = NetworkOptions::default();
        o.ipam.v4.push(lnet_core::IpamPoolConfig {
            subnet: Some("10.44.0.0/24".parse().unwrap()),
            ..Default::default()
        });
        let n = ctrl.new_network("bridge", "web", o).unwrap();
        let sb = ctrl.new_sandbox("c1", Default::default()).unwrap();
        let ep = n
            .create_endpoint(
                "c1",
                EndpointOptions {
                    ports: vec![PortSpec::parse("8080:80").unwrap()],
                    ..Default::default()
                },
            )
            .unwrap();
        ep.join(&sb, JoinOptions::default()).unwrap();
    }

    let show = lnet(root, &["firewall", "show"]);
    assert!(show.status.success(), "{}", text(&show));
    let out = text(&show);
    assert!(out.contains("tcp . 8080 : 10.44.0.2 . 80"), "{out}");
    assert!(out.contains("chain forward {"), "{out}");
    assert!(
        out.contains("set forward_guard { type nf_proto;\n\t\telements = {\n\t\t\tipv4,"),
        "{out}"
    );
    assert!(
        out.contains("meta nfproto @forward_guard iifname != @bridges oifname != @bridges drop"),
        "{out}"
    );
    assert!(out.contains("matches the records"), "{out}");
    let check = lnet(root, &["firewall", "check"]);
    assert!(check.status.success(), "{}", text(&check));

    // The published port's element removed by hand: check says what and exits 1.
    let key = Concat::new().inet_proto(6).inet_service(8080).build();
    let check = check_without(root, "ports4_any", key);
    assert!(
        check.contains("missing    element ports4_any tcp . 8080 : 10.44.0.2 . 80"),
        "{check}"
    );
    let json = lnet(root, &["firewall", "check", "--format", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["drift"][0]["kind"], "missing", "{v}");

    // So is the guard of the forwarding lnet turned on, which the exec root remembers.
    let check = check_without(root, "forward_guard", vec![2]);
    assert!(
        check.contains("missing    element forward_guard ipv4"),
        "{check}"
    );

    // No store there: a clear error, exit 1.
    let none = lnet(&root.join("nowhere"), &["firewall", "show"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(text(&none).contains("no store at"), "{}", text(&none));

    // Leave nothing behind: the sandbox's namespace mount, the bridge, the table.
    let ctrl = Controller::new(Config::rooted_at(root)).unwrap();
    ctrl.sandbox("c1").unwrap().delete().unwrap();
    ctrl.network("web").unwrap().delete().unwrap();
    // Forwarding stays on, and so does its guard.
    let want = ctrl.firewall_want().render();
    assert_eq!(
        want.into_iter().collect::<Vec<_>>(),
        [("forward_guard", vec!["ipv4".to_string()])]
    );
}
