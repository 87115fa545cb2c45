//! lnet as Docker's network and IPAM plugin, driven by a real dockerd (Debian's 20.10) and
//! real containers (busybox): dockerd and `lnet daemon` share the test's own network
//! namespace, dockerd finds lnet's plugin socket in its plugin directory, and everything
//! is checked with real packets, then removed.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::Daemon;
use support::dockerd::{self, Dockerd};

/// A dockerd and an lnet daemon in the test's own namespace; dropped in that order (dockerd
/// hands its containers' networks back to lnet as it stops them).
struct Env {
    dockerd: Dockerd,
    lnet: Daemon,
    _dir: tempfile::TempDir,
}

/// Enters a new network namespace and starts both daemons there; `None` when the test
/// cannot run here (the skip is recorded).
fn setup(test: &str, id: &str, dockerd_flags: &[&str]) -> Option<Env> {
    if !dockerd::can_run(test) {
        return None;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lnet_dir = dir.path().join("lnet");
    std::fs::create_dir_all(&lnet_dir).unwrap();
    // dockerd's cgroups are named after the id: unique across test binaries run at once.
    let id = format!("{id}-{}", std::process::id());
    let dockerd = Dockerd::start(&dir.path().join("lab"), &id, dockerd_flags);
    let plugin = dockerd.plugins().join("lnet.sock");
    let lnet = Daemon::start_with_args(
        &lnet_dir,
        &[&format!("--plugin-socket={}", plugin.display())],
    );
    Some(Env {
        dockerd,
        lnet,
        _dir: dir,
    })
}

/// `GET path` over TCP; the whole answer, or the error.
fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// A shell line for busybox that asks `host:80` for `/hostname`.
fn fetch(host: &str) -> String {
    format!("printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} 80")
}

/// `docker network create -d lnet --ipam-driver lnet --subnet SUBNET [extra…] NAME`.
fn lnet_network(d: &Dockerd, name: &str, subnet: &str, extra: &[&str]) {
    let mut args = vec![
        "network",
        "create",
        "-d",
        "lnet",
        "--ipam-driver",
        "lnet",
        "--subnet",
        subnet,
    ];
    args.extend_from_slice(extra);
    args.push(name);
    d.docker_ok(&args);
}

/// lnet's doctor through its API: the report.
fn doctor(lnet: &Daemon) -> Value {
    let (status, body) = lnet.request("GET", "/lnet/doctor", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["doctor"].clone()
}

fn assert_clean(lnet: &Daemon) {
    let d = doctor(lnet);
    assert_eq!(d["findings"], Value::Array(vec![]), "doctor: {d}");
}

/// An "outside" host: a namespace on a veth from the test's namespace (192.0.2.1 here,
/// 192.0.2.2 there), running a TCP server on port 9000 that answers each client with the
/// address it came from. Its process holds the namespace: killing it removes both.
struct Outside(Child);

impl Outside {
    fn start() -> Outside {
        const SERVER: &str = "import socket\n\
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
            s.bind(('0.0.0.0', 9000)); s.listen(8)\n\
            while True:\n    c, a = s.accept(); c.sendall(a[0].encode() + b'\\n'); c.close()\n";
        let child = Command::new("unshare")
            .args(["--net", "python3", "-c", SERVER])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the outside host");
        let o = Outside(child);
        let pid = o.0.id().to_string();
        let ns = format!("/proc/{pid}/ns/net");
        // unshare has made the namespace once the process runs python (its netns differs).
        for _ in 0..100 {
            if std::fs::read_link(&ns).ok() != std::fs::read_link("/proc/self/ns/net").ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let sh = |args: &str| {
            let ok = Command::new("sh").arg("-c").arg(args).status().unwrap();
            assert!(ok.success(), "{args}");
        };
        sh(&format!(
            "ip link add out0 type veth peer name out1 && ip link set out1 netns {pid} && \
             ip addr add 192.0.2.1/24 dev out0 && ip link set out0 up && \
             nsenter --net={ns} sh -c 'ip link set lo up && ip addr add 192.0.2.2/24 dev out1 && ip link set out1 up'"
        ));
        o
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What of lnet's and dockerd's networks remains in the namespace: links, nftables
/// lines naming `needles`.
fn leftovers(needles: &[&str]) -> Vec<String> {
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let mut left: Vec<String> = String::from_utf8_lossy(&links.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with("veth") || n.starts_with("lnc") || n.starts_with("br-"))
        .collect();
    let rules = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    left.extend(
        String::from_utf8_lossy(&rules.stdout)
            .lines()
            .filter(|l| needles.iter().any(|n| l.contains(n)))
            .map(|l| format!("nft: {}", l.trim())),
    );
    left
}

#[test]
fn containers_on_lnet_networks_talk_publish_reach_out_and_leave_nothing() {
    let Some(env) = setup(
        "containers_on_lnet_networks_talk_publish_reach_out_and_leave_nothing",
        "e2e",
        &[],
    ) else {
        return;
    };
    let (d, lnet) = (&env.dockerd, &env.lnet);
    let _outside = Outside::start();
    // The test's namespace is the containers' host: its way out is the outside host.
    let route = Command::new("ip")
        .args(["route", "add", "default", "via", "192.0.2.2"])
        .status()
        .unwrap();
    assert!(route.success());

    lnet_network(
        d,
        "n1",
        "10.77.0.0/24",
        &["-o", "com.docker.network.bridge.name=lnbr77"],
    );
    let n1 = d.docker_ok(&["network", "inspect", "-f", "{{.Id}}", "n1"]);
    // lnet records the network under dockerd's id, with the bridge option applied.
    let (status, body) = lnet.request("GET", &format!("/networks/{n1}"), None);
    assert_eq!(status, 200, "{body}");
    let rec: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rec["Id"], n1.as_str());
    assert_eq!(rec["IPAM"]["Config"][0]["Subnet"], "10.77.0.0/24", "{rec}");
    // (/sys shows the machine's links, not this namespace's: ask ip.)
    let bridge = Command::new("ip")
        .args(["link", "show", "lnbr77"])
        .output()
        .unwrap();
    assert!(bridge.status.success(), "no bridge lnbr77");

    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "n1",
        "-p",
        "8080:80",
        "bb:1",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let web = d.ip_of("web", "n1");
    assert!(web.starts_with("10.77.0."), "{web}");
    let web_id = d.docker_ok(&["inspect", "-f", "{{.Id}}", "web"]);

    // Two containers talk over TCP, by address and by name (dockerd's own DNS); the
    // client has the MAC dockerd asked for.
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "n1",
        "--mac-address",
        "02:42:0a:4d:00:99",
        "bb:1",
        "sh",
        "-c",
        &format!(
            "{}; {}; cat /sys/class/net/eth0/address",
            fetch(&web),
            fetch("web")
        ),
    ]);
    assert_eq!(out.matches("200 OK").count(), 2, "{out}");
    assert_eq!(out.matches(&web_id[..12]).count(), 2, "{out}");
    assert!(out.ends_with("02:42:0a:4d:00:99"), "{out}");

    // The published port answers on the host's address and on 127.0.0.1.
    for addr in ["127.0.0.1:8080", "192.0.2.1:8080"] {
        let got = http_get(addr, "/hostname").unwrap();
        assert!(
            got.contains("200 OK") && got.contains(&web_id[..12]),
            "{addr}: {got}"
        );
    }

    // A container reaches the outside host, masqueraded behind the host's address.
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "n1",
        "bb:1",
        "nc",
        "-w",
        "3",
        "192.0.2.2",
        "9000",
    ]);
    assert_eq!(out, "192.0.2.1");

    // An internal network has no way out; two lnet networks cannot reach each other.
    lnet_network(d, "int", "10.78.0.0/24", &["--internal"]);
    lnet_network(d, "n2", "10.79.0.0/24", &[]);
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "int",
        "bb:1",
        "sh",
        "-c",
        "ip route; nc -w 2 192.0.2.2 9000 && echo REACHED",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("REACHED") && !text.contains("default"),
        "{text}"
    );
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "n2",
        "bb:1",
        "sh",
        "-c",
        &format!("{} && echo REACHED", fetch(&web)),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("REACHED") && !text.contains("200 OK"),
        "{text}"
    );

    // lnet shows the endpoint, and its doctor finds the kernel as recorded.
    let (_, body) = lnet.request("GET", &format!("/networks/{n1}"), None);
    assert!(body.contains(&web), "{body}");
    assert_clean(lnet);

    // Removing the container and the networks leaves nothing: no interface, no rule, no
    // address, no host port, no record.
    remove_all_and_check(
        d,
        lnet,
        &["10.77.0.", "10.78.0.", "10.79.0.", "8080", "lnbr77"],
    );
    std::net::TcpListener::bind("0.0.0.0:8080").expect("host port 8080 is free again");
}

/// `docker run -d --name NAME --network NET [extra…] bb:1 httpd`: a web server answering
/// `/hostname` with its container id.
fn web(d: &Dockerd, name: &str, net: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name, "--network", net];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["bb:1", "httpd", "-f", "-p", "80", "-h", "/etc"]);
    d.docker_ok(&args)
}

/// Everything removed through dockerd leaves nothing of lnet's behind.
fn remove_all_and_check(d: &Dockerd, lnet: &Daemon, needles: &[&str]) {
    let ids = d.docker_ok(&["ps", "-aq"]);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids.lines());
        d.docker_ok(&args);
    }
    let nets = d.docker_ok(&["network", "ls", "--filter", "driver=lnet", "-q"]);
    if !nets.is_empty() {
        let mut args = vec!["network", "rm"];
        args.extend(nets.lines());
        d.docker_ok(&args);
    }
    let left = leftovers(needles);
    assert!(left.is_empty(), "left behind: {left:?}");
    let (_, body) = lnet.request("GET", "/networks", None);
    assert!(!body.contains("dockerd-"), "{body}");
    let (_, body) = lnet.request("GET", "/lnet/sandboxes", None);
    assert_eq!(body, "[]");
    assert_clean(lnet);
}

#[test]
fn bad_input_through_the_plugin_reaches_docker_and_changes_nothing() {
    let Some(env) = setup(
        "bad_input_through_the_plugin_reaches_docker_and_changes_nothing",
        "bad",
        &[],
    ) else {
        return;
    };
    let (d, lnet) = (&env.dockerd, &env.lnet);
    // An option the bridge does not take: named, with what it takes.
    let e = d.docker_err(&[
        "network",
        "create",
        "-d",
        "lnet",
        "--ipam-driver",
        "lnet",
        "--subnet",
        "10.77.0.0/24",
        "-o",
        "com.docker.network.bridge.bogus=1",
        "bad",
    ]);
    assert!(
        e.contains("com.docker.network.bridge.bogus") && e.contains("takes"),
        "{e}"
    );
    // Nothing of it is left: not the network, not the pool (the same subnet is free).
    lnet_network(d, "n1", "10.77.0.0/24", &[]);
    // A subnet overlapping another network's.
    let e = d.docker_err(&[
        "network",
        "create",
        "-d",
        "lnet",
        "--ipam-driver",
        "lnet",
        "--subnet",
        "10.77.0.0/16",
        "over",
    ]);
    assert!(e.contains("10.77.0.0"), "{e}");
    // An address outside the subnet dockerd refuses itself; one another container has,
    // lnet refuses.
    let e = d.docker_err(&[
        "run",
        "--rm",
        "--network",
        "n1",
        "--ip",
        "10.99.0.5",
        "bb:1",
        "true",
    ]);
    assert!(e.contains("10.99.0.5"), "{e}");
    web(d, "first", "n1", &[]);
    let taken = d.ip_of("first", "n1");
    let e = d.docker_err(&[
        "run",
        "--rm",
        "--network",
        "n1",
        "--ip",
        &taken,
        "bb:1",
        "true",
    ]);
    assert!(e.contains(&taken) && e.contains("remote"), "{e}");
    // A host port held by another container.
    web(d, "aa", "n1", &["-p", "8080:80"]);
    let e = d.docker_err(&[
        "run",
        "-d",
        "--name",
        "bb",
        "--network",
        "n1",
        "-p",
        "8080:80",
        "bb:1",
        "true",
    ]);
    assert!(e.contains("8080"), "{e}");
    let _ = d.docker(&["rm", "-f", "bb"]);
    // None of it took an address: the next container gets the one after a's.
    let a = d.ip_of("aa", "n1");
    let c = web(d, "cc", "n1", &[]);
    assert_eq!(d.ip_of(&c, "n1"), "10.77.0.4", "first is {taken}, a is {a}");
    let (_, body) = lnet.request("GET", "/networks", None);
    let nets: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(
        nets.iter()
            .filter(|n| n["Name"].as_str().unwrap().starts_with("dockerd-"))
            .count(),
        1,
        "{body}"
    );
    assert_clean(lnet);
    remove_all_and_check(d, lnet, &["10.77.", "8080"]);
}

#[test]
fn lnet_killed_at_any_step_of_dockerds_calls_finishes_or_undoes_it() {
    let Some(mut env) = setup(
        "lnet_killed_at_any_step_of_dockerds_calls_finishes_or_undoes_it",
        "crash",
        &[],
    ) else {
        return;
    };
    lnet_network(&env.dockerd, "n1", "10.77.0.0/24", &[]);
    let web_id = web(&env.dockerd, "web", "n1", &["-p", "8080:80"]);
    let web_ip = env.dockerd.ip_of("web", "n1");
    let serves =
        || http_get("127.0.0.1:8080", "/hostname").is_ok_and(|a| a.contains(&web_id[..12]));
    assert!(serves());

    // SIGKILL: the containers keep their network while lnet is away and after it is back.
    env.lnet.kill();
    assert!(serves(), "the published port stopped with lnet");
    let out = env
        .dockerd
        .docker_ok(&["exec", "web", "sh", "-c", &fetch(&web_ip)]);
    assert!(out.contains("200 OK"), "{out}");
    env.lnet.restart();
    assert!(serves());
    assert_clean(&env.lnet);

    // Killed inside each journaled step of dockerd's calls: dockerd's call fails or (its
    // retry) succeeds, and either way lnet agrees with dockerd afterwards, the next calls
    // work, and nothing is left.
    for (i, fp) in [
        "endpoint-create:recorded",
        "join:recorded",
        "join:interface-made",
        "join:ports-published",
        "leave:recorded",
        "endpoint-delete:recorded",
        "network-create:recorded",
        "network-delete:recorded",
    ]
    .into_iter()
    .enumerate()
    {
        env.lnet.restart_with_env(&[("LNET_FAILPOINT", fp)]);
        let net = format!("crashnet{i}");
        let subnet = format!("10.88.{i}.0/24");
        let d = &env.dockerd;
        if fp.starts_with("network-delete") {
            lnet_network(d, &net, &subnet, &[]);
        }
        // dockerd retries a call whose connection broke, for up to 30 s: the call is made
        // on another thread while lnet is restarted.
        let sock = d.dir().join("docker.sock");
        let (net2, subnet2, fp2) = (net.clone(), subnet.clone(), fp.to_string());
        let call = std::thread::spawn(move || {
            let docker = |args: &[&str]| {
                Command::new(if Path::new("/usr/bin/docker").exists() {
                    "/usr/bin/docker"
                } else {
                    "docker"
                })
                .arg("-H")
                .arg(format!("unix://{}", sock.display()))
                .args(args)
                .output()
                .unwrap()
            };
            if fp2.starts_with("network-create") {
                docker(&[
                    "network",
                    "create",
                    "-d",
                    "lnet",
                    "--ipam-driver",
                    "lnet",
                    "--subnet",
                    &subnet2,
                    &net2,
                ])
            } else if fp2.starts_with("network-delete") {
                docker(&["network", "rm", &net2])
            } else {
                // A port, so that the join publishes one and the leave takes it away.
                docker(&[
                    "run",
                    "--rm",
                    "--network",
                    "n1",
                    "-p",
                    "8099:80",
                    "bb:1",
                    "true",
                ])
            }
        });
        let died = env.lnet.wait_exit(Duration::from_secs(20));
        assert!(
            died.is_some(),
            "{fp}: lnet did not stop at its failpoint:\n{}",
            env.lnet.log()
        );
        env.lnet.restart_with_env(&[]);
        let out = call.join().unwrap();
        eprintln!(
            "{fp}: docker {}: {}",
            if out.status.success() {
                "succeeded"
            } else {
                "failed"
            },
            String::from_utf8_lossy(&out.stderr).trim()
        );
        // lnet and dockerd agree on the networks…
        let docker_has = d.docker(&["network", "inspect", &net]).status.success();
        let (_, body) = env.lnet.request("GET", "/networks", None);
        let lnet_nets: Vec<Value> = serde_json::from_str(&body).unwrap();
        let docker_nets = d.docker_ok(&[
            "network",
            "ls",
            "--filter",
            "driver=lnet",
            "-q",
            "--no-trunc",
        ]);
        let lnet_has: Vec<&str> = lnet_nets
            .iter()
            .filter(|n| n["Name"].as_str().unwrap().starts_with("dockerd-"))
            .map(|n| n["Id"].as_str().unwrap())
            .collect();
        let mut want: Vec<&str> = docker_nets.lines().collect();
        let mut have = lnet_has.clone();
        want.sort();
        have.sort();
        assert_eq!(have, want, "{fp}: lnet's networks are not dockerd's");
        if docker_has && !fp.starts_with("network-create") {
            d.docker_ok(&["network", "rm", &net]);
        }
        if fp.starts_with("network-create") && docker_has {
            d.docker_ok(&["network", "rm", &net]);
        }
        // …the next call works, the old container still serves, and the kernel is as
        // recorded.
        let out = d.docker_ok(&[
            "run",
            "--rm",
            "--network",
            "n1",
            "bb:1",
            "sh",
            "-c",
            &fetch(&web_ip),
        ]);
        assert!(out.contains("200 OK"), "{fp}: {out}");
        assert!(serves(), "{fp}");
        assert_clean(&env.lnet);
    }
    remove_all_and_check(&env.dockerd, &env.lnet, &["10.77.", "10.88.", "8080"]);
}

#[test]
fn dockerd_restarted_with_live_restore_keeps_its_containers_networks() {
    let Some(env) = setup(
        "dockerd_restarted_with_live_restore_keeps_its_containers_networks",
        "live",
        &["--live-restore"],
    ) else {
        return;
    };
    let (d, lnet) = (&env.dockerd, &env.lnet);
    lnet_network(d, "n1", "10.77.0.0/24", &[]);
    let id = web(d, "web", "n1", &["-p", "8080:80"]);
    let ip = d.ip_of("web", "n1");
    d.stop();
    d.restart(&["--live-restore"]);
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.Running}}", "web"]),
        "true"
    );
    let got = http_get("127.0.0.1:8080", "/hostname").unwrap();
    assert!(got.contains(&id[..12]), "{got}");
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "n1",
        "bb:1",
        "sh",
        "-c",
        &fetch(&ip),
    ]);
    assert!(out.contains("200 OK"), "{out}");
    assert_clean(lnet);
    remove_all_and_check(d, lnet, &["10.77.", "8080"]);
}

#[test]
fn with_dockerds_own_ipam_lnet_uses_the_addresses_dockerd_gives() {
    let Some(env) = setup(
        "with_dockerds_own_ipam_lnet_uses_the_addresses_dockerd_gives",
        "dipam",
        &[],
    ) else {
        return;
    };
    let (d, lnet) = (&env.dockerd, &env.lnet);
    d.docker_ok(&[
        "network",
        "create",
        "-d",
        "lnet",
        "--subnet",
        "10.66.0.0/24",
        "--gateway",
        "10.66.0.254",
        "n1",
    ]);
    let n1 = d.docker_ok(&["network", "inspect", "-f", "{{.Id}}", "n1"]);
    let (_, body) = lnet.request("GET", &format!("/networks/{n1}"), None);
    let rec: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rec["IPAM"]["Config"][0]["Gateway"], "10.66.0.254", "{rec}");
    web(d, "web", "n1", &["--ip", "10.66.0.77"]);
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "n1",
        "bb:1",
        "sh",
        "-c",
        &format!("ip route; {}", fetch("10.66.0.77")),
    ]);
    assert!(
        out.contains("default via 10.66.0.254") && out.contains("200 OK"),
        "{out}"
    );
    assert_clean(lnet);
    remove_all_and_check(d, lnet, &["10.66."]);
}
