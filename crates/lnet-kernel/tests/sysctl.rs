//! Sysctls, always inside the test's own network namespace.

use lnet_kernel::testing::{TempNetns, enter_new_netns};
use lnet_kernel::{BridgeOptions, KernelError, Netlink, Netns, skip_unless_root, sysctl};

#[test]
fn set_and_get_inside_netns() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    let mut nl = Netlink::new().unwrap();
    nl.ensure_bridge("br-sys", BridgeOptions::default())
        .unwrap();
    let ns = Netns::current().unwrap();

    let key = "net.ipv6.conf.br-sys.accept_ra";
    ns.run(|| sysctl::set(key, "0")).unwrap().unwrap();
    assert_eq!(ns.run(|| sysctl::get(key)).unwrap().unwrap(), "0");
    let parts = ["net", "ipv6", "conf", "br-sys", "accept_ra"];
    ns.run(|| sysctl::set_path(&parts, "2")).unwrap().unwrap();
    assert_eq!(ns.run(|| sysctl::get_path(&parts)).unwrap().unwrap(), "2");

    // Forwarding in the test namespace only: another namespace keeps its
    // own value.
    let other = TempNetns::new().unwrap();
    let before = other
        .run(|| sysctl::get("net.ipv4.ip_forward"))
        .unwrap()
        .unwrap();
    let flipped = if before == "1" { "0" } else { "1" };
    ns.run(|| sysctl::set("net.ipv4.ip_forward", flipped))
        .unwrap()
        .unwrap();
    assert_eq!(
        ns.run(|| sysctl::get("net.ipv4.ip_forward"))
            .unwrap()
            .unwrap(),
        flipped
    );
    assert_eq!(
        other
            .run(|| sysctl::get("net.ipv4.ip_forward"))
            .unwrap()
            .unwrap(),
        before
    );
    // The test thread itself is in `ns`, so plain calls see the same value.
    assert_eq!(sysctl::get("net.ipv4.ip_forward").unwrap(), flipped);

    // A key for a missing interface: not found, and the error names the key.
    let err = ns
        .run(|| sysctl::set("net.ipv6.conf.nosuchif.accept_ra", "0"))
        .unwrap()
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("nosuchif"), "{err}");

    // Invalid keys never touch the file system.
    for bad in [
        "../etc/passwd",
        "/net.ipv4",
        "net..ipv4",
        "net.ipv4.conf.a b.x",
    ] {
        let err = sysctl::set(bad, "1").unwrap_err();
        assert!(matches!(err, KernelError::InvalidArgument { .. }), "{err}");
        assert!(err.to_string().contains(bad), "{err}");
    }
    sysctl::set_path(&["net", "..", "x"], "1").unwrap_err();
}
