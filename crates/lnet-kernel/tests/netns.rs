//! Netns: create_at / open / delete_at / is_mounted_at / run.
//!
//! Every test moves its own thread into a fresh network namespace first and
//! mounts namespaces only under a tempdir.

use std::io::Write;

use lnet_kernel::testing::enter_new_netns;
use lnet_kernel::{KernelError, LOOPBACK_INDEX, Netlink, Netns, skip_unless_root};

#[test]
fn create_open_delete() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Parent directory does not exist yet: create_at makes it.
    let path = dir.path().join("run/netns/c1");

    let ns = Netns::create_at(&path).unwrap();
    assert!(Netns::is_mounted_at(&path));
    assert_eq!(ns.path(), Some(path.as_path()));

    // Loopback is up in the new namespace.
    let mut inside = Netlink::in_netns(&ns).unwrap();
    let lo = inside.link_by_index(LOOPBACK_INDEX).unwrap().unwrap();
    assert_eq!(lo.name, "lo");
    assert!(lo.up);
    // And it is the only link.
    assert_eq!(inside.links().unwrap().len(), 1);

    // It is a different namespace from ours, and `open` finds the same one.
    let here = Netns::current().unwrap();
    assert_ne!(here.inode().unwrap(), ns.inode().unwrap());
    let reopened = Netns::open(&path).unwrap();
    assert_eq!(reopened.inode().unwrap(), ns.inode().unwrap());
    // run() executes inside it.
    let inode_inside = ns
        .run(|| Netns::current().unwrap().inode().unwrap())
        .unwrap();
    assert_eq!(inode_inside, ns.inode().unwrap());
    // ...without moving the calling thread.
    assert_eq!(
        Netns::current().unwrap().inode().unwrap(),
        here.inode().unwrap()
    );

    // A second create at the same path is refused, and leaves the mount alone.
    let err = Netns::create_at(&path).unwrap_err();
    assert!(matches!(err, KernelError::AlreadyMounted { .. }), "{err}");
    assert!(err.is_exists());
    assert!(err.to_string().contains("c1"), "{err}");
    assert!(Netns::is_mounted_at(&path));

    drop(inside);
    assert!(Netns::delete_at(&path).unwrap());
    assert!(!Netns::is_mounted_at(&path));
    assert!(!path.exists());
    // Idempotent.
    assert!(!Netns::delete_at(&path).unwrap());
    assert!(!Netns::delete_at(dir.path().join("never-existed")).unwrap());

    // The handles keep the namespace alive after the unmount.
    let mut still = Netlink::in_netns(&ns).unwrap();
    assert!(still.link_by_index(LOOPBACK_INDEX).unwrap().is_some());
}

#[test]
fn create_reuses_empty_file_and_rejects_others() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let empty = dir.path().join("empty");
    std::fs::File::create(&empty).unwrap();
    let ns = Netns::create_at(&empty).unwrap();
    assert!(Netns::is_mounted_at(&empty));
    drop(ns);
    assert!(Netns::delete_at(&empty).unwrap());
    assert!(!empty.exists());

    let full = dir.path().join("full");
    std::fs::File::create(&full)
        .unwrap()
        .write_all(b"data")
        .unwrap();
    let err = Netns::create_at(&full).unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    assert!(
        full.exists(),
        "a file we did not create must not be removed"
    );
    assert!(!Netns::is_mounted_at(&full));

    let sub = dir.path().join("adir");
    std::fs::create_dir(&sub).unwrap();
    Netns::create_at(&sub).unwrap_err();
    Netns::delete_at(&sub).unwrap_err();
    assert!(sub.is_dir());
}

#[test]
fn open_rejects_non_netns() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::File::create(&plain).unwrap();

    let err = Netns::open(&plain).unwrap_err();
    assert!(matches!(err, KernelError::NotANetns { .. }), "{err}");
    assert!(err.to_string().contains("plain"), "{err}");
    assert!(!Netns::is_mounted_at(&plain));

    // An nsfs file of another namespace type.
    let err = Netns::open("/proc/thread-self/ns/uts").unwrap_err();
    assert!(matches!(err, KernelError::NotANetns { .. }), "{err}");

    let err = Netns::open(dir.path().join("missing")).unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // Our own thread's namespace through /proc is fine.
    let me = Netns::open("/proc/thread-self/ns/net").unwrap();
    assert_eq!(
        me.inode().unwrap(),
        Netns::current().unwrap().inode().unwrap()
    );
}

#[test]
fn run_propagates_results_and_panics() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    let ns = lnet_kernel::testing::TempNetns::new().unwrap();
    let path = ns.path().to_path_buf();
    assert_eq!(ns.run(|| 40 + 2).unwrap(), 42);

    let borrowed = String::from("borrowed data");
    assert_eq!(ns.run(|| borrowed.len()).unwrap(), 13);

    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ns.run(|| panic!("boom inside netns")).unwrap();
    }));
    caught.unwrap_err();

    drop(ns);
    assert!(!Netns::is_mounted_at(&path));
    assert!(!path.exists());
}

#[test]
fn run_in_each_runs_every_call_inside_its_own_namespace() {
    skip_unless_root!();
    enter_new_netns().unwrap();
    let nss: Vec<_> = (0..5)
        .map(|_| lnet_kernel::testing::TempNetns::new().unwrap())
        .collect();
    let handles: Vec<&Netns> = nss.iter().map(|t| &**t).collect();
    let want: Vec<u64> = handles.iter().map(|n| n.inode().unwrap()).collect();
    let here = Netns::current().unwrap().inode().unwrap();
    for threads in [1, 2, 8] {
        // Each call sees its own namespace and keeps a socket opened there.
        let got = Netns::run_in_each(&handles, threads, |i| {
            let ino = Netns::current().unwrap().inode().unwrap();
            (i, ino, Netlink::new().unwrap())
        });
        assert_eq!(got.len(), handles.len(), "{threads} threads");
        for (i, r) in got.into_iter().enumerate() {
            let (at, ino, mut nl) = r.unwrap();
            assert_eq!((at, ino), (i, want[i]), "{threads} threads");
            // The socket answers for its namespace: only lo there.
            let names: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
            assert_eq!(names, ["lo"]);
        }
    }
    // The calling thread stayed where it was.
    assert_eq!(Netns::current().unwrap().inode().unwrap(), here);
    assert!(Netns::run_in_each(&[], 2, |i| i).is_empty());
}

#[test]
fn opening_what_is_not_a_namespace_says_it_is_gone() {
    skip_unless_root!();
    let dir = tempfile::tempdir().unwrap();
    let missing = Netns::open(dir.path().join("none")).unwrap_err();
    assert!(missing.is_gone(), "{missing}");
    let file = dir.path().join("plain");
    std::fs::write(&file, b"").unwrap();
    let plain = Netns::open(&file).unwrap_err();
    assert!(plain.is_gone(), "{plain}");
    // An error of the moment is not.
    let e = KernelError::Netlink {
        op: "x".into(),
        errno: libc::EMFILE,
        message: String::new(),
        kernel_message: None,
    };
    assert!(!e.is_gone());
}
