//! `lnet doctor` and `lnet doctor --repair` as a user runs them, against the real daemon:
//! something other than lnet breaks the kernel side of a working setup (a bridge, a veth,
//! the whole ruleset, lnet's table, one published port's element, a sandbox's namespace
//! mount, an lnet-shaped interface nobody recorded), and each time `doctor` must exit 1 and
//! name it (table and JSON), `--repair` must put it right and say so, `doctor` must then exit
//! 0, and real packets must flow again between the sandboxes and through the published port.
//! Then the same with no daemon running: `doctor --data-root … --exec-root …` reads the
//! store itself, `--repair` opens it and reconciles, and the daemon starts on the result.
//! The daemon runs with `--self-heal=false`: its watcher would otherwise put most breaks
//! back before `doctor` could look.

mod support;

mod cli_support;

use std::os::unix::fs::MetadataExt;
use std::process::Output;

use cli_support::*;
use serde_json::Value;
use support::Daemon;

/// One finding as `doctor` prints it.
#[derive(Debug, Clone)]
struct Expect {
    kind: &'static str,
    object: String,
    /// The start of the WHAT column.
    what: String,
}

fn expect(kind: &'static str, object: &str, what: impl Into<String>) -> Expect {
    Expect {
        kind,
        object: object.to_string(),
        what: what.into(),
    }
}

/// Whether `doctor`'s table names every expected finding; what it lacks.
fn table_lacks(text: &str, expected: &[Expect]) -> Vec<Expect> {
    let header_ok = text
        .lines()
        .next()
        .is_some_and(|h| h.starts_with("KIND") && h.contains("OBJECT") && h.ends_with("WHAT"));
    let footer_ok = text
        .lines()
        .last()
        .is_some_and(|l| l.contains("differences") && l.contains("lnet doctor --repair"));
    expected
        .iter()
        .filter(|e| {
            !(header_ok
                && footer_ok
                && text.lines().skip(1).any(|l| {
                    let mut cols = l.splitn(2, "  ");
                    cols.next().map(str::trim) == Some(e.kind)
                        && cols.next().is_some_and(|rest| {
                            let rest = rest.trim_start();
                            rest.starts_with(&e.object)
                                && rest[e.object.len()..].trim_start().starts_with(&e.what)
                        })
                }))
        })
        .cloned()
        .collect()
}

/// What `doctor --format json`'s findings lack of the expected ones (and its errors).
fn json_lacks(o: &Output, expected: &[Expect]) -> Result<Vec<Expect>, String> {
    let v: Value = serde_json::from_slice(&o.stdout)
        .map_err(|e| format!("doctor --format json is not JSON ({e}): {}", show(o)))?;
    if v["doctor"]["errors"] != serde_json::json!([]) {
        return Err(format!("every check could be made: {v:#}"));
    }
    let findings = v["doctor"]["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(expected
        .iter()
        .filter(|e| {
            !findings.iter().any(|f| {
                f["kind"] == e.kind
                    && f["object"] == e.object.as_str()
                    && f["what"].as_str().is_some_and(|w| w.starts_with(&e.what))
            })
        })
        .cloned()
        .collect())
}

/// The `put right:` lines of `doctor --repair` that it lacks of the expected ones.
fn repair_lacks(text: &str, expected: &[Expect]) -> Vec<String> {
    expected
        .iter()
        .map(|e| format!("  {} {}: {}", e.kind, e.object, e.what))
        .filter(|line| {
            !(text.starts_with("put right:\n") && text.lines().any(|l| l.starts_with(line)))
        })
        .collect()
}

/// `doctor` exits 1 and names every expected finding, in its table and in `--format json`.
#[track_caller]
fn assert_doctor_names(d: &Daemon, case: &str, expected: &[Expect]) {
    let table = d.doctor(&[]);
    assert_eq!(
        table.status.code(),
        Some(1),
        "{case}: doctor must exit 1\n{}",
        show(&table)
    );
    let lacks = table_lacks(&out(&table), expected);
    assert!(
        lacks.is_empty(),
        "{case}: doctor's table should have rows {lacks:?}:\n{}",
        out(&table)
    );
    let j = d.doctor(&["--format", "json"]);
    assert_eq!(j.status.code(), Some(1), "{case}: {}", show(&j));
    let lacks = json_lacks(&j, expected).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert!(
        lacks.is_empty(),
        "{case}: doctor --format json should name {lacks:?}: {}",
        out(&j)
    );
}

/// `doctor --repair` exits 0, lists what it put right (every expected finding among them)
/// and ends clean; a second `doctor` exits 0 too.
#[track_caller]
fn assert_repaired(d: &Daemon, case: &str, expected: &[Expect]) {
    let r = d.doctor(&["--repair"]);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{case}: doctor --repair must exit 0\n{}",
        show(&r),
    );
    let text = out(&r);
    let lacks = repair_lacks(&text, expected);
    assert!(
        lacks.is_empty(),
        "{case}: --repair should say it put right {lacks:?}:\n{text}"
    );
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("the kernel matches the records")),
        "{case}: {text}"
    );
    assert_clean(d, &format!("{case}, after the repair"));
}

/// `doctor` exits 0 and says all agree (once the daemon's own background deletes are done:
/// see [`doctor_settled`]).
#[track_caller]
fn assert_clean(d: &Daemon, case: &str) {
    let o = doctor_settled(d);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{case}: doctor must exit 0\n{}",
        show(&o)
    );
    assert!(
        out(&o).starts_with("the kernel matches the records ("),
        "{case}: {}",
        show(&o)
    );
}

/// The element of one of lnet's `ports4*` maps keyed by `tcp . <port>` (with or without a
/// host address in front): the map's name and the key as `nft` writes it.
fn published_element(port: u16) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(&nft(&["-j", "list", "table", "inet", "lnet"])).unwrap();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let map = &item["map"];
        let Some(name) = map["name"].as_str().filter(|n| n.starts_with("ports4")) else {
            continue;
        };
        for elem in map["elem"].as_array().into_iter().flatten() {
            let key = &elem[0]["concat"];
            let parts: Vec<String> = key
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            if parts.len() >= 2
                && parts[parts.len() - 2] == "tcp"
                && parts[parts.len() - 1] == port.to_string()
            {
                return Some((name.to_string(), parts.join(" . ")));
            }
        }
    }
    None
}

/// The host-side veth of a sandbox's endpoint: `veth` and the first 7 characters of the
/// endpoint's id, as lnet names it.
fn host_veth(d: &Daemon, sandbox: &str) -> String {
    let v = json(d.cli(&["sandbox", "inspect", sandbox]));
    let id = v[0]["Endpoints"][0]["EndpointID"].as_str().unwrap();
    format!("veth{}", &id[..7])
}

/// `ip -o link` inside a sandbox: name, MAC and state of each interface, without indexes of
/// peers.
fn sandbox_links(d: &Daemon, sandbox: &str) -> Vec<String> {
    let o = ok(d.cli(&["sandbox", "exec", sandbox, "--", "ip", "-o", "addr", "show"]));
    let mut v: Vec<String> = o
        .lines()
        .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .collect();
    v.sort();
    v
}

/// One way of breaking the kernel side from outside lnet: what `doctor` must then say.
type Break<'a> = Box<dyn Fn(&Daemon) -> Vec<Expect> + 'a>;
/// What must hold once it was put right (beyond `doctor` agreeing and traffic flowing).
type After<'a> = Box<dyn Fn(&Daemon) + 'a>;

struct Case<'a> {
    name: &'static str,
    break_it: Break<'a>,
    after: After<'a>,
    /// Also run with the daemon down (a namespace mount removed then takes the namespace
    /// with it: that is a different story, not a repair).
    offline: bool,
}

#[test]
fn doctor_names_what_broke_and_repair_puts_it_right() {
    lnet_kernel::skip_unless_root!();
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The daemon would put most of these breaks back by itself within milliseconds (its
    // watcher): off, so that what doctor sees and --repair does is what is tested.
    let mut d = Daemon::start_with_args(dir.path(), &["--self-heal=false"]);

    let id = ok(d.cli(&["network", "create", "--subnet", "10.61.0.0/24", "web"]));
    let bridge = format!("br-{}", &id.trim()[..12]);
    assert!(link_exists(&bridge), "the bridge {bridge} is there");
    ok(d.cli(&["sandbox", "create", "a"]));
    ok(d.cli(&["sandbox", "create", "b"]));
    ok(d.cli(&["network", "connect", "web", "a"]));
    ok(d.cli(&["network", "connect", "-p", "8080:80", "web", "b"]));
    let (a_ip, b_ip) = (sandbox_ip(&d, "a", "web"), sandbox_ip(&d, "b", "web"));
    let a_key = json(d.cli(&["sandbox", "inspect", "a"]))[0]["Key"]
        .as_str()
        .unwrap()
        .to_string();
    let a_veth = host_veth(&d, "a");
    assert!(link_exists(&a_veth), "{a_veth} is a's host-side veth");

    let first = ok(d.doctor(&[]));
    assert!(
        first.starts_with("the kernel matches the records (")
            && first.contains("2 sandboxes, 2 endpoints checked"),
        "{first}"
    );
    assert_traffic(&d, "a", &a_ip, "b", &b_ip, 8080, "before anything broke");

    let ns_inode = std::fs::metadata(&a_key).unwrap().ino();
    let links_before = std::cell::RefCell::new(Vec::new());
    let nothing = || -> After { Box::new(|_| {}) };
    let cases: Vec<Case> = vec![
        Case {
            name: "(a) the bridge deleted",
            break_it: Box::new(|_| {
                ip(&["link", "del", &bridge]);
                vec![expect("missing", "network web", format!("bridge {bridge}"))]
            }),
            after: Box::new(|_| assert!(link_exists(&bridge), "{bridge} is back")),
            offline: true,
        },
        Case {
            name: "(b) a container's host-side veth deleted",
            break_it: Box::new(|_| {
                ip(&["link", "del", &a_veth]);
                vec![expect(
                    "missing",
                    "sandbox a endpoint a",
                    format!("veth {a_veth}"),
                )]
            }),
            after: Box::new(|_| {
                let link = ip(&["-o", "link", "show", "dev", &a_veth]);
                assert!(
                    link.contains(&format!("master {bridge}")),
                    "{a_veth} is back on {bridge}: {link}"
                );
            }),
            offline: true,
        },
        Case {
            name: "(c) nft flush ruleset",
            break_it: Box::new(|_| {
                nft(&["flush", "ruleset"]);
                vec![expect("missing", "firewall", "table inet lnet")]
            }),
            after: nothing(),
            offline: true,
        },
        Case {
            name: "(d) lnet's table inet lnet deleted",
            break_it: Box::new(|_| {
                nft(&["delete", "table", "inet", "lnet"]);
                vec![expect("missing", "firewall", "table inet lnet")]
            }),
            after: nothing(),
            offline: true,
        },
        Case {
            name: "(e) the published port's element deleted",
            break_it: Box::new(|_| {
                let (map, key) =
                    published_element(8080).expect("an element for tcp . 8080 in ports4*");
                nft(&[
                    "delete",
                    "element",
                    "inet",
                    "lnet",
                    &map,
                    &format!("{{ {key} }}"),
                ]);
                vec![expect(
                    "missing",
                    "firewall",
                    format!("element {map} {key} : {b_ip} . 80"),
                )]
            }),
            after: Box::new(|_| assert!(published_element(8080).is_some(), "the element is back")),
            offline: true,
        },
        Case {
            name: "(f) a sandbox's namespace mount removed while the daemon runs",
            break_it: Box::new(|d| {
                *links_before.borrow_mut() = sandbox_links(d, "a");
                lnet_kernel::Netns::delete_at(&a_key).unwrap();
                assert!(!std::path::Path::new(&a_key).exists());
                vec![expect(
                    "missing",
                    "sandbox a",
                    format!("network namespace {a_key}"),
                )]
            }),
            after: Box::new(|d| {
                assert!(
                    lnet_kernel::Netns::is_mounted_at(&a_key),
                    "{a_key} is mounted again"
                );
                assert_eq!(
                    std::fs::metadata(&a_key).unwrap().ino(),
                    ns_inode,
                    "the same namespace, not a new one, is mounted at {a_key}"
                );
                assert_eq!(
                    sandbox_links(d, "a"),
                    *links_before.borrow(),
                    "the container keeps its interfaces and addresses"
                );
            }),
            offline: false,
        },
        Case {
            name: "(g) an lnet-shaped veth nobody recorded, on the bridge",
            break_it: Box::new(|_| {
                ip(&[
                    "link",
                    "add",
                    "veth0ddba11",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "veth0ddba11p",
                ]);
                ip(&["link", "set", "veth0ddba11", "master", &bridge]);
                vec![expect("extra", "network web", "interface veth0ddba11")]
            }),
            after: Box::new(|_| {
                assert!(!link_exists("veth0ddba11"), "the extra veth is removed");
            }),
            offline: true,
        },
    ];

    // Through the daemon.
    for c in &cases {
        let expected = (c.break_it)(&d);
        assert_doctor_names(&d, c.name, &expected);
        assert_repaired(&d, c.name, &expected);
        (c.after)(&d);
        assert_traffic(&d, "a", &a_ip, "b", &b_ip, 8080, c.name);
    }

    // With no daemon running, doctor reads the store itself; the daemon then starts on
    // what the offline repair left.
    for c in cases.iter().filter(|c| c.offline) {
        let case = format!("offline: {}", c.name);
        d.kill();
        let expected = (c.break_it)(&d);
        assert_doctor_names(&d, &case, &expected);
        assert_repaired(&d, &case, &expected);
        (c.after)(&d);
        d.restart();
        assert_clean(&d, &format!("{case}: the daemon started again"));
        assert_traffic(&d, "a", &a_ip, "b", &b_ip, 8080, &case);
    }

    // Leave nothing: both sandboxes and the network go, and doctor still agrees.
    assert_eq!(ok(d.cli(&["sandbox", "rm", "a", "b"])), "a\nb\n");
    assert_eq!(ok(d.cli(&["network", "rm", "web"])), "web\n");
    assert_clean(&d, "everything removed");
    assert!(
        !link_exists(&bridge),
        "{bridge} is removed with its network"
    );
}
