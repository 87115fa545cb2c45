//! lnet's side of Docker's network plugin protocol, driven by hand against the real `lnet
//! daemon`: every call dockerd 20.10 makes (see `integration.md` §2), sent over the plugin
//! socket the way dockerd sends it (`POST`, `Accept: application/vnd.docker.plugins.v1.2+json`,
//! no Content-Type), and every answer checked, together with what it did to lnet's records
//! (its own API), to the kernel (`ip`, `nft`) and to real packets.
//!
//! No dockerd runs here (`tests/plugin_dockerd.rs` does that): driving the calls by hand
//! lets these tests send what dockerd sends only in its bad moments — an empty body on a
//! retry, a call repeated, a daemon killed between two calls — and check each answer
//! exactly. dockerd's part that is not a call (moving the interface into the container's
//! namespace) is done here with `ip`, in a namespace of a child process.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Daemon, can_run};

// ---------------------------------------------------------------------------------------
// What the tests send: ids, pools and options as dockerd would pick them.
// ---------------------------------------------------------------------------------------

/// The content type dockerd asks for and lnet answers with.
const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// dockerd's id of the network (64 hex, as dockerd makes them).
const NET_ID: &str = "3f1c9a7be2d04c5d8e6f7a8b9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9";
/// dockerd's id of the container's endpoint.
const EP_ID: &str = "5be0d1c2b3a4958677869504a3b2c1d0e0f1e2d3c4b5a6978877665544332211";
/// The container's namespace as dockerd names it; lnet never opens it, so it need not exist.
const SANDBOX_KEY: &str = "/var/run/docker/netns/0123456789ab";

/// The subnet of `docker network create --subnet`.
const POOL: &str = "10.77.0.0/24";
/// The PoolID lnet's IPAM hands out for [`POOL`].
const POOL_ID: &str = "lnet/10.77.0.0/24";
/// The gateway as `RequestAddress` answers it (with the pool's prefix length).
const GATEWAY: &str = "10.77.0.1/24";
/// The container's address as `RequestAddress` answers it.
const ADDRESS: &str = "10.77.0.2/24";

/// `docker run --mac-address`: as text, and base64 of its six bytes (02 42 0a 4d 00 99),
/// which is how Go marshals the `net.HardwareAddr` dockerd puts in the options.
const MAC: &str = "02:42:0a:4d:00:99";
const MAC_BASE64: &str = "AkIKTQCZ";

/// `docker run -p 8080:80`.
const HOST_PORT: u16 = 8080;

/// The networks every lnet daemon has before any plugin call.
const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

/// The first 12 hex of an id: what names derive from.
fn short(id: &str) -> &str {
    &id[..12]
}

/// The bridge lnet makes for network `id`.
fn bridge_of(id: &str) -> String {
    format!("br-{}", short(id))
}

/// The name lnet gives a network dockerd creates (dockerd sends no name).
fn name_of(id: &str) -> String {
    format!("dockerd-{}", short(id))
}

// ---------------------------------------------------------------------------------------
// The plugin socket: a tiny HTTP/1.1 client that talks as dockerd does.
// ---------------------------------------------------------------------------------------

/// One answer of the plugin socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: String,
}

impl Answer {
    /// The body as JSON; panics showing the answer when it is not.
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the answer is not JSON ({e}): {self:?}"))
    }
}

/// The message of a failed call: `Err` (NetworkDriver) or `Error` (IpamDriver), when it
/// is a non-empty string.
fn error_of(v: &Value) -> Option<&str> {
    ["Err", "Error"]
        .iter()
        .find_map(|k| v.get(*k)?.as_str())
        .filter(|s| !s.is_empty())
}

/// dockerd's end of the plugin socket.
struct Plugin {
    socket: PathBuf,
}

impl Plugin {
    /// The socket of daemon `d`, once it accepts (it may come up just after the API).
    fn of(d: &Daemon) -> Plugin {
        let socket = d.plugin_socket();
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "the plugin socket {} does not accept after 10 s:\n{}",
                socket.display(),
                log_tail(d)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Plugin { socket }
    }

    /// `POST path` with `body` as its bytes (an empty one too, with `Content-Length: 0`),
    /// the headers dockerd sends, and `Connection: close`; the answer, its body dechunked.
    fn post(&self, path: &str, body: &[u8]) -> Answer {
        let mut s = UnixStream::connect(&self.socket)
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.socket.display()));
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: plugin\r\nUser-Agent: Go-http-client/1.1\r\n\
             Accept: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .unwrap_or_else(|e| panic!("POST {path}: reading the answer: {e}"));
        parse_answer(&raw).unwrap_or_else(|| {
            panic!(
                "POST {path}: not an HTTP answer: {:?}",
                String::from_utf8_lossy(&raw)
            )
        })
    }

    /// `path` with the JSON `body`: HTTP 200 with a JSON body, which it returns.
    #[track_caller]
    fn call(&self, path: &str, body: &Value) -> Value {
        let a = self.post(path, body.to_string().as_bytes());
        assert_eq!(a.status, 200, "POST {path} {body}: {a:?}");
        a.json()
    }

    /// `path` with `body`, which must succeed: the answer.
    #[track_caller]
    fn ok(&self, path: &str, body: &Value) -> Value {
        let v = self.call(path, body);
        assert!(
            error_of(&v).is_none(),
            "POST {path} {body} must succeed, answered {v}"
        );
        v
    }

    /// `path` with `body`, which must fail: the message, from the field the call's API
    /// uses (`Error` for `/IpamDriver.*`, `Err` otherwise).
    #[track_caller]
    fn fails(&self, path: &str, body: &Value) -> String {
        let v = self.call(path, body);
        failure(path, &v, &body.to_string())
    }
}

/// The message of the failed answer `v` to `path`, from the field its API uses; panics
/// showing `sent` and the answer when there is none.
#[track_caller]
fn failure(path: &str, v: &Value, sent: &str) -> String {
    let field = if path.starts_with("/IpamDriver.") {
        "Error"
    } else {
        "Err"
    };
    match v.get(field).and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => panic!("POST {path} {sent:?} must fail with {field:?}, answered {v}"),
    }
}

/// Status, content type and body of a raw HTTP/1.1 answer.
fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut content_type = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value.trim().to_string()),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some(Answer {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A chunked body's bytes (`<hex size>\r\n<bytes>\r\n`… `0\r\n\r\n`).
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        let data = rest.get(eol + 2..eol + 2 + size)?;
        out.extend_from_slice(data);
        rest = rest.get(eol + 2 + size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------
// The bodies of dockerd's calls.
// ---------------------------------------------------------------------------------------

/// `RequestPool` for `pool` in lnet's address space.
fn request_pool(pool: &str) -> Value {
    json!({"AddressSpace": "lnet-local", "Pool": pool, "SubPool": "", "Options": {}, "V6": false})
}

/// `RequestPool` for the IPv6 `pool` (`docker network create --ipv6 --subnet`).
fn request_pool_v6(pool: &str) -> Value {
    json!({"AddressSpace": "lnet-local", "Pool": pool, "SubPool": "", "Options": {}, "V6": true})
}

/// `RequestAddress` for the gateway of `pool_id`, which dockerd asks before the network.
fn request_gateway(pool_id: &str) -> Value {
    json!({
        "PoolID": pool_id,
        "Address": "",
        "Options": {"RequestAddressType": "com.docker.network.gateway"},
    })
}

/// `RequestAddress` for a container (`address` empty: any); dockerd's Options are null.
fn request_address(pool_id: &str, address: &str) -> Value {
    json!({"PoolID": pool_id, "Address": address, "Options": null})
}

/// `ReleaseAddress` (dockerd sends the bare address).
fn release_address(pool_id: &str, address: &str) -> Value {
    json!({"PoolID": pool_id, "Address": address})
}

/// `CreateNetwork` for `id` on `pool` with gateway `gateway` and `-o` options `generic`,
/// as dockerd sends it for `docker network create -d lnet --ipam-driver lnet`.
fn create_network(id: &str, pool: &str, gateway: &str, generic: Value) -> Value {
    json!({
        "NetworkID": id,
        "Options": {
            "com.docker.network.enable_ipv6": false,
            "com.docker.network.generic": generic,
        },
        "IPv4Data": [{
            "AddressSpace": "lnet-local",
            "Pool": pool,
            "Gateway": gateway,
            "AuxAddresses": null,
        }],
        "IPv6Data": [],
    })
}

/// `CreateNetwork` for `docker network create --ipv6 --subnet 10.77.0.0/24 --subnet
/// fd00:77::/64`, with the gateways IPAM answered.
fn create_dual_stack_network(id: &str, gw4: &Value, gw6: &Value) -> Value {
    json!({
        "NetworkID": id,
        "Options": {
            "com.docker.network.enable_ipv6": true,
            "com.docker.network.generic": {},
        },
        "IPv4Data": [{
            "AddressSpace": "lnet-local", "Pool": POOL, "Gateway": gw4, "AuxAddresses": null,
        }],
        "IPv6Data": [{
            "AddressSpace": "lnet-local", "Pool": "fd00:77::/64", "Gateway": gw6,
            "AuxAddresses": null,
        }],
    })
}

/// `CreateEndpoint` as for `docker run --network … -p 8080:80 --mac-address 02:42:0a:4d:00:99`:
/// the address dockerd got from the IPAM, the MAC only in the options.
fn create_endpoint(net: &str, ep: &str, address: &str) -> Value {
    json!({
        "NetworkID": net,
        "EndpointID": ep,
        "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": ""},
        "Options": {
            "com.docker.network.endpoint.macaddress": MAC_BASE64,
            "com.docker.network.portmap": [{
                "Proto": 6, "IP": "", "Port": 80, "HostIP": "",
                "HostPort": HOST_PORT, "HostPortEnd": HOST_PORT,
            }],
            "com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}],
        },
    })
}

/// `Join` of `ep` to dockerd's sandbox [`SANDBOX_KEY`].
fn join(net: &str, ep: &str) -> Value {
    json!({"NetworkID": net, "EndpointID": ep, "SandboxKey": SANDBOX_KEY, "Options": {}})
}

/// The body of `Leave`, `DeleteEndpoint`, `EndpointOperInfo` and
/// `RevokeExternalConnectivity`.
fn endpoint_ref(net: &str, ep: &str) -> Value {
    json!({"NetworkID": net, "EndpointID": ep})
}

/// `ProgramExternalConnectivity`, which carries the published ports again.
fn program_external(net: &str, ep: &str) -> Value {
    let create = create_endpoint(net, ep, ADDRESS);
    json!({"NetworkID": net, "EndpointID": ep, "Options": create["Options"]})
}

// ---------------------------------------------------------------------------------------
// What lnet's own API shows.
// ---------------------------------------------------------------------------------------

/// The last lines of the daemon's log, for failure messages.
fn log_tail(d: &Daemon) -> String {
    let log = d.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `GET path` on lnet's API, which must answer 200 with JSON.
#[track_caller]
fn api_get(d: &Daemon, path: &str) -> Value {
    let (status, body) = d.request("GET", path, None);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// The names of lnet's networks, sorted.
fn network_names(d: &Daemon) -> Vec<String> {
    let mut names: Vec<String> = api_get(d, "/networks")
        .as_array()
        .expect("GET /networks is an array")
        .iter()
        .map(|n| n["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

/// lnet has no network but the predefined ones.
#[track_caller]
fn assert_only_predefined_networks(d: &Daemon, when: &str) {
    assert_eq!(
        network_names(d),
        PREDEFINED,
        "{when}: lnet must have only its predefined networks"
    );
}

/// lnet's sandboxes (an engine's join makes one).
fn sandboxes(d: &Daemon) -> Vec<Value> {
    api_get(d, "/lnet/sandboxes")
        .as_array()
        .expect("GET /lnet/sandboxes is an array")
        .clone()
}

/// `GET /lnet/doctor` finds nothing: the kernel matches lnet's records (the daemon lets
/// its background deletes finish before it compares, so no waiting is needed).
#[track_caller]
fn assert_doctor_clean(d: &Daemon, when: &str) {
    let report = api_get(d, "/lnet/doctor")["doctor"].clone();
    assert_eq!(
        report["findings"],
        json!([]),
        "{when}: doctor must find nothing: {report}\ndaemon log:\n{}",
        log_tail(d)
    );
}

// ---------------------------------------------------------------------------------------
// What the kernel shows, in the test's namespace.
// ---------------------------------------------------------------------------------------

/// Runs `cmd` through `sh -c`; its output, whatever the status.
fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"))
}

/// Runs `cmd`, which must succeed; its stdout.
#[track_caller]
fn sh_ok(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The name of the link an `ip -o link` line shows (`5: veth1a@if4: <…>` → `veth1a`).
fn link_name(line: &str) -> &str {
    let name = line.split(": ").nth(1).unwrap_or_default();
    name.split('@').next().unwrap_or_default()
}

/// The names of the links `ip -o link show [args]` lists.
fn link_names(args: &str) -> Vec<String> {
    sh_ok(&format!("ip -o link show {args}"))
        .lines()
        .map(|l| link_name(l).to_string())
        .collect()
}

/// `ip -o link show name`'s line, `None` when there is no such link.
fn link(name: &str) -> Option<String> {
    let out = sh(&format!("ip -o link show dev {name}"));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The veths enslaved to bridge `br`.
fn veths_on(br: &str) -> Vec<String> {
    link_names(&format!("master {br}"))
        .into_iter()
        .filter(|n| n.starts_with("veth"))
        .collect()
}

/// The lines of `nft list ruleset` that mention `needle`.
fn nft_lines_with(needle: &str) -> Vec<String> {
    sh_ok("nft list ruleset")
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// What a call could change, to compare before and after: lnet's networks and sandboxes,
/// the links, and the firewall (`nft -s`: without counters, which traffic moves).
#[derive(Debug, PartialEq)]
struct Snapshot {
    networks: Vec<String>,
    sandboxes: Vec<Value>,
    links: Vec<String>,
    ruleset: String,
}

fn snapshot(d: &Daemon) -> Snapshot {
    Snapshot {
        networks: network_names(d),
        sandboxes: sandboxes(d),
        links: link_names(""),
        ruleset: sh_ok("nft -s list ruleset"),
    }
}

/// `ping -c1 -W2 addr`, with busybox's ping when the machine has none of its own; a few
/// tries, since the first ARP of a new port may be lost. The output of the last try when
/// none succeeds.
fn ping(addr: &str) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..3 {
        let out = Command::new("ping")
            .args(["-c1", "-W2", addr])
            .output()
            .or_else(|_| {
                Command::new("busybox")
                    .args(["ping", "-c1", "-W2", addr])
                    .output()
            })
            .map_err(|e| format!("neither ping nor busybox ping runs: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Err(last)
}

// ---------------------------------------------------------------------------------------
// A container's namespace, as dockerd would hold it.
// ---------------------------------------------------------------------------------------

/// A fresh network namespace held by a child process (`unshare --net sleep`): where the
/// test moves the interface a join hands over, as dockerd moves it into the container.
/// The process is killed by its PID on drop, which removes the namespace.
struct ContainerNetns {
    child: Child,
}

impl ContainerNetns {
    fn start() -> ContainerNetns {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "300"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start unshare --net sleep");
        let ns = ContainerNetns { child };
        // The child is in the test's namespace until unshare has made its own.
        let mine = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let theirs = format!("/proc/{}/ns/net", ns.pid());
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(&theirs).ok().is_none_or(|l| l == mine) {
            assert!(
                Instant::now() < deadline,
                "unshare made no namespace in 5 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        ns
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `cmd` through `sh -c` inside the namespace.
    fn sh(&self, cmd: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-n", "sh", "-c", cmd])
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }

    /// What dockerd does with a join's answer: moves `src` in, names it `eth0`, gives it
    /// `address` and brings it up.
    #[track_caller]
    fn take_interface(&self, src: &str, address: &str) {
        sh_ok(&format!("ip link set {src} netns {}", self.pid()));
        let out = self.sh(&format!(
            "ip link set lo up && ip link set {src} name eth0 && \
             ip addr add {address} dev eth0 && ip link set eth0 up"
        ));
        assert!(
            out.status.success(),
            "configuring {src} in the container's namespace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The names of the links in the namespace.
    fn link_names(&self) -> Vec<String> {
        let out = self.sh("ip -o link show");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| link_name(l).to_string())
            .collect()
    }
}

impl Drop for ContainerNetns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Setting up, and dockerd's sequences of calls.
// ---------------------------------------------------------------------------------------

/// A daemon in the test's own namespace and dockerd's end of its plugin socket. Fields drop
/// in order: the daemon is killed before its directory goes.
struct Env {
    d: Daemon,
    p: Plugin,
    _dir: tempfile::TempDir,
}

/// Enters a new network namespace and starts the daemon there; `None` when the test cannot
/// run here (the skip is recorded).
fn setup(test: &str) -> Option<Env> {
    if !can_run(test, false) {
        return None;
    }
    lnet_kernel::testing::enter_new_netns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let p = Plugin::of(&d);
    Some(Env { d, p, _dir: dir })
}

/// What `create_and_join` got: the answers later calls are compared with.
struct Joined {
    create_endpoint: Value,
    join: Value,
    /// The interface the join handed over (`InterfaceName.SrcName`).
    src_name: String,
}

/// `docker network create -d lnet --ipam-driver lnet --subnet 10.77.0.0/24` as dockerd
/// makes it: the pool, its gateway and the network, each answer checked, and the network
/// in lnet's records under dockerd's id.
fn create_network_as_dockerd(d: &Daemon, p: &Plugin) {
    let pool = p.ok("/IpamDriver.RequestPool", &request_pool(POOL));
    assert_eq!(pool["PoolID"], POOL_ID, "RequestPool: {pool}");
    assert_eq!(pool["Pool"], POOL, "RequestPool: {pool}");
    let gw = p.ok("/IpamDriver.RequestAddress", &request_gateway(POOL_ID));
    assert_eq!(gw["Address"], GATEWAY, "RequestAddress (gateway): {gw}");
    let created = p.ok(
        "/NetworkDriver.CreateNetwork",
        &create_network(NET_ID, POOL, GATEWAY, json!({})),
    );
    assert_eq!(created, json!({}), "CreateNetwork");
    let net = api_get(d, &format!("/networks/{NET_ID}"));
    assert_eq!(net["Id"], NET_ID, "GET /networks/{NET_ID}: {net}");
    assert_eq!(
        net["Name"],
        name_of(NET_ID),
        "GET /networks/{NET_ID}: {net}"
    );
}

/// `docker run --network … -p 8080:80 --mac-address …` as dockerd makes it, after
/// [`create_network_as_dockerd`]: the address, the endpoint and the join, with the kernel
/// checked (the handed-over interface with its MAC, a veth on the network's bridge), one
/// sandbox recorded, and doctor clean.
fn create_and_join(d: &Daemon, p: &Plugin) -> Joined {
    create_network_as_dockerd(d, p);
    let addr = p.ok("/IpamDriver.RequestAddress", &request_address(POOL_ID, ""));
    assert_eq!(
        addr["Address"], ADDRESS,
        "RequestAddress (container): {addr}"
    );

    let ce = p.ok(
        "/NetworkDriver.CreateEndpoint",
        &create_endpoint(NET_ID, EP_ID, ADDRESS),
    );
    // dockerd refuses an answer that sets what it gave: the address must not come back.
    let iface = &ce["Interface"];
    assert!(
        iface.is_null() || iface["Address"].as_str().unwrap_or_default().is_empty(),
        "CreateEndpoint must not answer the address dockerd gave: {ce}"
    );
    let mac = iface["MacAddress"].as_str().unwrap_or_default();
    assert!(
        mac.is_empty() || mac == MAC,
        "CreateEndpoint may answer only the MAC asked for: {ce}"
    );

    let j = p.ok("/NetworkDriver.Join", &join(NET_ID, EP_ID));
    let src_name = j["InterfaceName"]["SrcName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(src_name.starts_with("lnc"), "Join: SrcName: {j}");
    assert_eq!(j["InterfaceName"]["DstPrefix"], "eth", "Join: {j}");
    assert_eq!(j["Gateway"], "10.77.0.1", "Join: {j}");
    assert_eq!(j["DisableGatewayService"], true, "Join: {j}");

    // dockerd's calls after the join.
    assert_eq!(
        p.ok(
            "/NetworkDriver.ProgramExternalConnectivity",
            &program_external(NET_ID, EP_ID)
        ),
        json!({})
    );
    for _ in 0..2 {
        let info = p.ok(
            "/NetworkDriver.EndpointOperInfo",
            &endpoint_ref(NET_ID, EP_ID),
        );
        assert!(info["Value"].is_object(), "EndpointOperInfo: {info}");
    }

    // The kernel: the interface to hand over, in dockerd's (here: the test's) namespace
    // with the MAC asked for, and its peer on the network's bridge.
    let line = link(&src_name).unwrap_or_else(|| {
        panic!(
            "Join handed over {src_name}, which does not exist; links: {:?}",
            link_names("")
        )
    });
    assert!(
        line.contains(&format!("link/ether {MAC}")),
        "{src_name} must have the MAC asked for ({MAC}): {line}"
    );
    let br = bridge_of(NET_ID);
    let veths = veths_on(&br);
    assert_eq!(
        veths.len(),
        1,
        "one veth must be on {br}: {veths:?}; links: {:?}",
        link_names("")
    );
    let sbs = sandboxes(d);
    assert_eq!(sbs.len(), 1, "one sandbox after the join: {sbs:?}");
    assert_doctor_clean(d, "after the join");
    Joined {
        create_endpoint: ce,
        join: j,
        src_name,
    }
}

/// `docker stop` and `docker network rm` as dockerd makes them, checking that the leave
/// takes the interfaces (in `container` too, when the test moved one there) and the
/// sandbox away, and that the network goes from lnet's records.
fn teardown(d: &Daemon, p: &Plugin, joined: &Joined, container: Option<&ContainerNetns>) {
    let ep = endpoint_ref(NET_ID, EP_ID);
    assert_eq!(
        p.ok("/NetworkDriver.RevokeExternalConnectivity", &ep),
        json!({})
    );
    assert_eq!(p.ok("/NetworkDriver.Leave", &ep), json!({}));
    let br = bridge_of(NET_ID);
    assert_eq!(
        veths_on(&br),
        Vec::<String>::new(),
        "the leave must remove the veth"
    );
    assert_eq!(
        link(&joined.src_name),
        None,
        "the leave must remove {}",
        joined.src_name
    );
    if let Some(c) = container {
        assert_eq!(
            c.link_names(),
            ["lo"],
            "the leave must remove the interface from the container's namespace"
        );
    }
    let sbs = sandboxes(d);
    assert!(sbs.is_empty(), "the leave must remove the sandbox: {sbs:?}");

    assert_eq!(p.ok("/NetworkDriver.DeleteEndpoint", &ep), json!({}));
    assert_eq!(
        p.ok(
            "/IpamDriver.ReleaseAddress",
            &release_address(POOL_ID, "10.77.0.2")
        ),
        json!({})
    );
    assert_eq!(
        p.ok(
            "/IpamDriver.ReleaseAddress",
            &release_address(POOL_ID, "10.77.0.1")
        ),
        json!({})
    );
    assert_eq!(
        p.ok("/IpamDriver.ReleasePool", &json!({"PoolID": POOL_ID})),
        json!({})
    );
    assert_eq!(
        p.ok(
            "/NetworkDriver.DeleteNetwork",
            &json!({"NetworkID": NET_ID})
        ),
        json!({})
    );
    let (status, body) = d.request("GET", &format!("/networks/{NET_ID}"), None);
    assert_eq!(status, 404, "the network must be gone: {body}");
    assert_only_predefined_networks(d, "after DeleteNetwork");
}

/// Nothing of the network is left: no interface, no firewall rule, the host port free, the
/// pool to be had again, doctor clean; and the teardown's calls, repeated, answer `{}`.
fn assert_nothing_left(d: &Daemon, p: &Plugin) {
    let br = bridge_of(NET_ID);
    let left: Vec<String> = link_names("")
        .into_iter()
        .filter(|n| n.starts_with("veth") || n.starts_with("lnc") || *n == br)
        .collect();
    assert!(left.is_empty(), "links left behind: {left:?}");
    for needle in [HOST_PORT.to_string(), "10.77.0.".to_string()] {
        let rules = nft_lines_with(&needle);
        assert!(
            rules.is_empty(),
            "nft rules mentioning {needle} left behind: {rules:#?}"
        );
    }
    if let Err(e) = std::net::TcpListener::bind(("0.0.0.0", HOST_PORT)) {
        panic!("host port {HOST_PORT} must be free again: {e}");
    }
    assert_doctor_clean(d, "after the teardown");

    // dockerd retries: each answers as done.
    let ep = endpoint_ref(NET_ID, EP_ID);
    assert_eq!(p.ok("/NetworkDriver.Leave", &ep), json!({}));
    assert_eq!(p.ok("/NetworkDriver.DeleteEndpoint", &ep), json!({}));
    assert_eq!(
        p.ok(
            "/NetworkDriver.DeleteNetwork",
            &json!({"NetworkID": NET_ID})
        ),
        json!({})
    );
    assert_only_predefined_networks(d, "after the teardown's retries");

    // The pool was given back.
    let again = p.ok("/IpamDriver.RequestPool", &request_pool(POOL));
    assert_eq!(
        again["PoolID"], POOL_ID,
        "RequestPool after the teardown: {again}"
    );
    p.ok("/IpamDriver.ReleasePool", &json!({"PoolID": POOL_ID}));
}

// ---------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------

/// dockerd's first calls, before any network: activation names both APIs, with the
/// protocol's content type; the capabilities and the address spaces are lnet's.
#[test]
fn activation_and_capabilities_answer_as_dockerd_expects() {
    let Some(env) = setup("activation_and_capabilities_answer_as_dockerd_expects") else {
        return;
    };
    let p = &env.p;
    // dockerd sends `{}` or nothing to the calls that take no arguments: both work.
    for body in [&b""[..], b"{}"] {
        let a = p.post("/Plugin.Activate", body);
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.content_type.as_deref(), Some(CONTENT_TYPE), "{a:?}");
        assert_eq!(
            a.json(),
            json!({"Implements": ["NetworkDriver", "IpamDriver"]}),
            "{a:?}"
        );

        let a = p.post("/NetworkDriver.GetCapabilities", body);
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.content_type.as_deref(), Some(CONTENT_TYPE), "{a:?}");
        let caps = a.json();
        assert_eq!(caps["Scope"], "local", "{caps}");
        assert_eq!(caps["ConnectivityScope"], "local", "{caps}");

        let a = p.post("/IpamDriver.GetCapabilities", body);
        assert_eq!(a.status, 200, "{a:?}");
        let caps = a.json();
        assert!(
            error_of(&caps).is_none() && caps.is_object(),
            "IpamDriver.GetCapabilities: {caps}"
        );
        assert_eq!(caps["RequiresMACAddress"], false, "{caps}");

        let a = p.post("/IpamDriver.GetDefaultAddressSpaces", body);
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.content_type.as_deref(), Some(CONTENT_TYPE), "{a:?}");
        let spaces = a.json();
        assert_eq!(spaces["LocalDefaultAddressSpace"], "lnet-local", "{spaces}");
        assert!(
            spaces["GlobalDefaultAddressSpace"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{spaces}"
        );
    }
}

/// dockerd re-sends a drained buffer when it retries: every call that takes arguments,
/// sent with an empty body, is answered 200 with an error saying so, in the field its API
/// uses, and does nothing — on a daemon with nothing of dockerd's yet, and on one with a
/// network, an endpoint and a join (where an empty Leave or DeleteNetwork acted on would
/// break a container).
#[test]
fn an_empty_body_is_refused_plainly_and_changes_nothing() {
    let Some(env) = setup("an_empty_body_is_refused_plainly_and_changes_nothing") else {
        return;
    };
    let (d, p) = (&env.d, &env.p);
    send_empty_bodies(p);
    assert_only_predefined_networks(d, "after the empty bodies");
    let sbs = sandboxes(d);
    assert!(sbs.is_empty(), "no sandbox after the empty bodies: {sbs:?}");
    assert_doctor_clean(d, "after the empty bodies");

    // The empty RequestPool held nothing (the pool dockerd asks for is free); then, with a
    // network, an endpoint and a join in place, the empty bodies touch none of them.
    create_and_join(d, p);
    let before = snapshot(d);
    send_empty_bodies(p);
    assert_eq!(
        snapshot(d),
        before,
        "the empty bodies changed lnet or the kernel"
    );
    assert_doctor_clean(d, "after the empty bodies, joined");
}

/// Sends every call that takes arguments with an empty body (`Content-Length: 0`), checking
/// each answer: 200, the protocol's content type, and an error that names the call and
/// says the body is empty.
fn send_empty_bodies(p: &Plugin) {
    const CALLS: [&str; 13] = [
        "/NetworkDriver.CreateNetwork",
        "/NetworkDriver.DeleteNetwork",
        "/NetworkDriver.CreateEndpoint",
        "/NetworkDriver.Join",
        "/NetworkDriver.Leave",
        "/NetworkDriver.DeleteEndpoint",
        "/NetworkDriver.ProgramExternalConnectivity",
        "/NetworkDriver.RevokeExternalConnectivity",
        "/NetworkDriver.EndpointOperInfo",
        "/IpamDriver.RequestPool",
        "/IpamDriver.RequestAddress",
        "/IpamDriver.ReleaseAddress",
        "/IpamDriver.ReleasePool",
    ];
    for path in CALLS {
        let a = p.post(path, b"");
        assert_eq!(a.status, 200, "POST {path} with an empty body: {a:?}");
        assert_eq!(a.content_type.as_deref(), Some(CONTENT_TYPE), "{a:?}");
        let msg = failure(path, &a.json(), "");
        let call = path.split('.').nth(1).unwrap();
        assert!(
            msg.contains("empty body") && msg.contains(call),
            "POST {path} with an empty body: the error must say the body is empty and name {call}: {msg}"
        );
    }
}

/// A body that is not the call's JSON object — not JSON, an array, a field of the wrong
/// type — is refused naming the call; an unknown path is refused naming the path; and the
/// daemon keeps answering.
#[test]
fn malformed_bodies_and_unknown_calls_are_refused_by_name_and_the_daemon_keeps_serving() {
    let Some(env) = setup(
        "malformed_bodies_and_unknown_calls_are_refused_by_name_and_the_daemon_keeps_serving",
    ) else {
        return;
    };
    let (d, p) = (&env.d, &env.p);
    let bad: [(&str, &str); 9] = [
        ("/NetworkDriver.CreateNetwork", "this is not json"),
        ("/NetworkDriver.CreateNetwork", r#"["NetworkID", "x"]"#),
        ("/NetworkDriver.CreateNetwork", r#"{"NetworkID": 5}"#),
        (
            "/NetworkDriver.Join",
            r#"{"NetworkID": "n", "EndpointID": "e""#,
        ),
        (
            "/NetworkDriver.CreateEndpoint",
            r#"{"NetworkID": "n", "EndpointID": ["e"]}"#,
        ),
        ("/IpamDriver.RequestPool", "{not json}"),
        ("/IpamDriver.RequestPool", r#"[{"Pool": "10.77.0.0/24"}]"#),
        ("/IpamDriver.RequestPool", r#"{"Pool": 7}"#),
        (
            "/IpamDriver.RequestAddress",
            r#"{"PoolID": "lnet/10.77.0.0/24", "Options": 3}"#,
        ),
    ];
    for (path, body) in bad {
        let a = p.post(path, body.as_bytes());
        assert_eq!(a.status, 200, "POST {path} {body}: {a:?}");
        let msg = failure(path, &a.json(), body);
        let call = path.split('.').nth(1).unwrap();
        assert!(
            msg.contains(call),
            "POST {path} {body}: the error must name {call}: {msg}"
        );
    }
    for path in [
        "/NetworkDriver.Bogus",
        "/IpamDriver.Bogus",
        "/Plugin.Bogus",
        "/nothing",
    ] {
        let a = p.post(path, b"{}");
        let v = a.json();
        let msg = error_of(&v).unwrap_or_else(|| panic!("POST {path} must fail: {a:?}"));
        assert!(
            msg.contains(path),
            "POST {path}: the error must name the path: {msg}"
        );
    }
    // Still serving, both sockets, and nothing was made.
    let a = p.post("/Plugin.Activate", b"");
    assert_eq!(
        a.json(),
        json!({"Implements": ["NetworkDriver", "IpamDriver"]}),
        "{a:?}"
    );
    assert_eq!(d.request("GET", "/_ping", None), (200, "OK".into()));
    assert_only_predefined_networks(d, "after the bad calls");
    assert!(sandboxes(d).is_empty());
}

/// dockerd's calls for `docker network create` and `docker run -p 8080:80 --mac-address`,
/// by hand: each answer is what dockerd needs, lnet records the network under dockerd's id,
/// and the kernel has the interface to hand over; then every call, repeated as a retry
/// would, answers the same and changes nothing.
#[test]
fn dockerds_create_and_join_calls_work_and_each_repeats_harmlessly() {
    let Some(env) = setup("dockerds_create_and_join_calls_work_and_each_repeats_harmlessly") else {
        return;
    };
    let (d, p) = (&env.d, &env.p);
    // Retries before the network exists: the same pool, the same gateway.
    let first = p.ok("/IpamDriver.RequestPool", &request_pool(POOL));
    let again = p.ok("/IpamDriver.RequestPool", &request_pool(POOL));
    assert_eq!(first, again, "RequestPool repeated");
    assert_eq!(again["PoolID"], POOL_ID, "{again}");
    let first = p.ok("/IpamDriver.RequestAddress", &request_gateway(POOL_ID));
    let again = p.ok("/IpamDriver.RequestAddress", &request_gateway(POOL_ID));
    assert_eq!(first, again, "RequestAddress (gateway) repeated");

    let joined = create_and_join(d, p);
    let published = nft_lines_with(&HOST_PORT.to_string());
    assert!(
        !published.is_empty(),
        "the join must publish host port {HOST_PORT} (nft has no rule with it)"
    );

    // Every call again, as dockerd's retry: the same answer, nothing new.
    let before = snapshot(d);
    let created = p.ok(
        "/NetworkDriver.CreateNetwork",
        &create_network(NET_ID, POOL, GATEWAY, json!({})),
    );
    assert_eq!(created, json!({}), "CreateNetwork repeated");
    let ce = p.ok(
        "/NetworkDriver.CreateEndpoint",
        &create_endpoint(NET_ID, EP_ID, ADDRESS),
    );
    assert_eq!(ce, joined.create_endpoint, "CreateEndpoint repeated");
    let j = p.ok("/NetworkDriver.Join", &join(NET_ID, EP_ID));
    assert_eq!(j, joined.join, "Join repeated");
    assert_eq!(
        p.ok(
            "/NetworkDriver.ProgramExternalConnectivity",
            &program_external(NET_ID, EP_ID)
        ),
        json!({}),
        "ProgramExternalConnectivity repeated"
    );
    let gw = p.ok("/IpamDriver.RequestAddress", &request_gateway(POOL_ID));
    assert_eq!(
        gw["Address"], GATEWAY,
        "RequestAddress (gateway) repeated: {gw}"
    );
    assert_eq!(
        snapshot(d),
        before,
        "the repeated calls changed lnet or the kernel"
    );
    assert_doctor_clean(d, "after the repeats");
}

/// The interface a join hands over, moved into a container's namespace as dockerd moves
/// it, carries real packets from the host to the container's address, and doctor does not
/// take the moved interface for drift; dockerd's teardown then leaves nothing: no link, no
/// firewall rule, the host port free, the pool free, and its calls repeated answer `{}`.
#[test]
fn a_handed_over_interface_carries_packets_and_the_teardown_leaves_nothing() {
    let Some(env) =
        setup("a_handed_over_interface_carries_packets_and_the_teardown_leaves_nothing")
    else {
        return;
    };
    let (d, p) = (&env.d, &env.p);
    let joined = create_and_join(d, p);
    let container = ContainerNetns::start();
    container.take_interface(&joined.src_name, ADDRESS);
    assert_eq!(
        link(&joined.src_name),
        None,
        "{} must have left the test's namespace",
        joined.src_name
    );
    if let Err(out) = ping("10.77.0.2") {
        panic!(
            "ping 10.77.0.2 from the host must reach the container:\n{out}\nbridge: {:?}\n\
             container links: {:?}\ndaemon log:\n{}",
            link(&bridge_of(NET_ID)),
            container.link_names(),
            log_tail(d)
        );
    }
    assert_doctor_clean(d, "with the interface in the container's namespace");

    teardown(d, p, &joined, Some(&container));
    assert_nothing_left(d, p);
}

/// Bad input is refused with an error that says what is wrong, and leaves nothing: a pool
/// that is not a CIDR, one overlapping a network's, an address outside its pool, an
/// endpoint of a network lnet does not have, a `-o` option lnet does not know.
#[test]
fn bad_pools_addresses_networks_and_options_are_refused_and_leave_nothing() {
    let Some(env) = setup("bad_pools_addresses_networks_and_options_are_refused_and_leave_nothing")
    else {
        return;
    };
    let (d, p) = (&env.d, &env.p);
    let e = p.fails("/IpamDriver.RequestPool", &request_pool("not-a-cidr"));
    assert!(
        e.contains("Pool") && e.contains("not-a-cidr"),
        "RequestPool not-a-cidr: {e}"
    );

    create_network_as_dockerd(d, p);
    for overlapping in ["10.77.0.0/24", "10.77.0.128/25", "10.77.0.0/16"] {
        p.fails("/IpamDriver.RequestPool", &request_pool(overlapping));
    }
    // The default bridge's pool is taken too, though no plugin call made it.
    let bridge = api_get(d, "/networks/bridge");
    if let Some(subnet) = bridge["IPAM"]["Config"][0]["Subnet"].as_str() {
        p.fails("/IpamDriver.RequestPool", &request_pool(subnet));
    }

    let e = p.fails(
        "/IpamDriver.RequestAddress",
        &request_address(POOL_ID, "10.78.0.5"),
    );
    assert!(
        e.contains("outside"),
        "RequestAddress 10.78.0.5 in {POOL}: {e}"
    );

    let unknown = "0".repeat(64);
    let e = p.fails(
        "/NetworkDriver.CreateEndpoint",
        &create_endpoint(&unknown, EP_ID, "10.77.0.2/24"),
    );
    assert!(
        e.contains(&unknown),
        "CreateEndpoint on an unknown network: {e}"
    );
    assert!(sandboxes(d).is_empty());

    // A `-o` option lnet does not know: refused by name, and dockerd's rollback (release
    // the gateway, release the pool) leaves the pool to be had again.
    let other_id = "9".repeat(64);
    let other_pool = "10.88.0.0/24";
    let pool = p.ok("/IpamDriver.RequestPool", &request_pool(other_pool));
    let other_pool_id = pool["PoolID"].as_str().unwrap().to_string();
    let gw = p.ok(
        "/IpamDriver.RequestAddress",
        &request_gateway(&other_pool_id),
    );
    let gw = gw["Address"].as_str().unwrap().to_string();
    let e = p.fails(
        "/NetworkDriver.CreateNetwork",
        &create_network(
            &other_id,
            other_pool,
            &gw,
            json!({"com.docker.network.bridge.bogus": "1"}),
        ),
    );
    assert!(
        e.contains("com.docker.network.bridge.bogus"),
        "CreateNetwork with an unknown option: {e}"
    );
    let (status, body) = d.request("GET", &format!("/networks/{other_id}"), None);
    assert_eq!(status, 404, "the refused network must not exist: {body}");
    let mut want: Vec<String> = PREDEFINED.iter().map(|n| n.to_string()).collect();
    want.push(name_of(NET_ID));
    want.sort();
    assert_eq!(network_names(d), want, "only the first network may exist");
    assert_eq!(
        link(&bridge_of(&other_id)),
        None,
        "no bridge for the refused network"
    );
    p.ok(
        "/IpamDriver.ReleaseAddress",
        &release_address(&other_pool_id, gw.split('/').next().unwrap()),
    );
    p.ok("/IpamDriver.ReleasePool", &json!({"PoolID": other_pool_id}));
    let again = p.ok("/IpamDriver.RequestPool", &request_pool(other_pool));
    assert_eq!(
        again["PoolID"], other_pool_id,
        "the pool after the rollback: {again}"
    );
    // And it makes a network, with the option left out.
    let gw = p.ok(
        "/IpamDriver.RequestAddress",
        &request_gateway(&other_pool_id),
    );
    p.ok(
        "/NetworkDriver.CreateNetwork",
        &create_network(
            &other_id,
            other_pool,
            gw["Address"].as_str().unwrap(),
            json!({}),
        ),
    );
    assert_eq!(api_get(d, &format!("/networks/{other_id}"))["Id"], other_id);
    assert_doctor_clean(d, "after the bad calls");
}

/// lnet killed (SIGKILL) between dockerd's calls, after the join, and started again on
/// the same state: the join repeated answers the same interface, the network and the
/// sandbox are still recorded, doctor is clean, and the teardown leaves nothing.
#[test]
fn a_sigkill_between_calls_keeps_the_join_and_the_teardown_still_leaves_nothing() {
    let Some(mut env) =
        setup("a_sigkill_between_calls_keeps_the_join_and_the_teardown_still_leaves_nothing")
    else {
        return;
    };
    let joined = create_and_join(&env.d, &env.p);
    env.d.restart();
    env.p = Plugin::of(&env.d);
    let (d, p) = (&env.d, &env.p);

    let j = p.ok("/NetworkDriver.Join", &join(NET_ID, EP_ID));
    assert_eq!(
        j["InterfaceName"]["SrcName"], joined.src_name,
        "Join after the restart must hand over the same interface: {j}"
    );
    assert_eq!(j, joined.join, "Join after the restart");
    let names = network_names(d);
    assert!(
        names.contains(&name_of(NET_ID)),
        "the network after the restart: {names:?}"
    );
    let sbs = sandboxes(d);
    assert_eq!(sbs.len(), 1, "the sandbox after the restart: {sbs:?}");
    assert!(
        link(&joined.src_name).is_some(),
        "{} after the restart; links: {:?}",
        joined.src_name,
        link_names("")
    );
    assert_doctor_clean(d, "after the restart");

    teardown(d, p, &joined, None);
    assert_nothing_left(d, p);
}

/// lnet killed (SIGKILL) in the moment between dockerd's CreateEndpoint, which it
/// answered, and dockerd's Join, which dockerd retries on the connection error until the
/// new daemon answers: dockerd took the endpoint for made, so the Join must find it (or the
/// container's start fails), and the teardown still leaves nothing.
#[test]
fn a_sigkill_between_create_endpoint_and_join_keeps_the_endpoint_for_the_join() {
    let Some(mut env) =
        setup("a_sigkill_between_create_endpoint_and_join_keeps_the_endpoint_for_the_join")
    else {
        return;
    };
    create_network_as_dockerd(&env.d, &env.p);
    let addr = env
        .p
        .ok("/IpamDriver.RequestAddress", &request_address(POOL_ID, ""));
    assert_eq!(
        addr["Address"], ADDRESS,
        "RequestAddress (container): {addr}"
    );
    let ce = env.p.ok(
        "/NetworkDriver.CreateEndpoint",
        &create_endpoint(NET_ID, EP_ID, ADDRESS),
    );
    env.d.restart();
    env.p = Plugin::of(&env.d);
    let (d, p) = (&env.d, &env.p);

    let j = p.call("/NetworkDriver.Join", &join(NET_ID, EP_ID));
    let dockerd_sees = error_of(&j).map(str::to_string);
    // Whatever the answer, dockerd's rollback of a failed start must leave nothing.
    let rollback = || {
        let ep = endpoint_ref(NET_ID, EP_ID);
        p.ok("/NetworkDriver.Leave", &ep);
        p.ok("/NetworkDriver.DeleteEndpoint", &ep);
        p.ok(
            "/IpamDriver.ReleaseAddress",
            &release_address(POOL_ID, "10.77.0.2"),
        );
    };
    if let Some(e) = dockerd_sees {
        rollback();
        assert_doctor_clean(d, "after dockerd's rollback");
        panic!(
            "Join after a SIGKILL that followed CreateEndpoint (answered {ce}) must find the \
             endpoint; it answered {j} (dockerd fails the container's start with: {e})"
        );
    }
    let src = j["InterfaceName"]["SrcName"].as_str().unwrap_or_default();
    assert!(src.starts_with("lnc") && link(src).is_some(), "Join: {j}");
    let joined = Joined {
        create_endpoint: ce,
        src_name: src.to_string(),
        join: j,
    };
    assert_doctor_clean(d, "after the join that followed the restart");
    teardown(d, p, &joined, None);
    assert_nothing_left(d, p);
}

/// `docker network create --ipv6 --subnet fd00:77::/64` without `--gateway`: dockerd asks
/// lnet's IPAM for the IPv6 pool's gateway with no address, and must get a host address
/// (`fd00:77::1/64`, as dockerd's own IPAM gives), which CreateNetwork then accepts.
#[test]
fn an_ipv6_pool_gets_a_gateway_that_is_a_host_address() {
    let Some(env) = setup("an_ipv6_pool_gets_a_gateway_that_is_a_host_address") else {
        return;
    };
    let (d, p) = (&env.d, &env.p);
    let pool = p.ok("/IpamDriver.RequestPool", &request_pool_v6("fd00:77::/64"));
    assert_eq!(
        pool["PoolID"], "lnet/fd00:77::/64",
        "RequestPool (IPv6): {pool}"
    );
    let v4 = p.ok("/IpamDriver.RequestPool", &request_pool(POOL));
    assert_eq!(v4["PoolID"], POOL_ID, "{v4}");
    let gw4 = p.ok("/IpamDriver.RequestAddress", &request_gateway(POOL_ID));
    let gw6 = p.ok(
        "/IpamDriver.RequestAddress",
        &request_gateway("lnet/fd00:77::/64"),
    );
    let id = "8".repeat(64);
    let created = p.call(
        "/NetworkDriver.CreateNetwork",
        &create_dual_stack_network(&id, &gw4["Address"], &gw6["Address"]),
    );
    assert_eq!(
        gw6["Address"], "fd00:77::1/64",
        "RequestAddress (IPv6 gateway, none asked) must answer the pool's first host, as \
         dockerd's own IPAM does; then CreateNetwork answered {created}"
    );
    assert_eq!(created, json!({}), "CreateNetwork (dual stack)");
    assert_eq!(api_get(d, &format!("/networks/{id}"))["EnableIPv6"], true);
}

/// A dual-stack network with the IPv6 gateway given (`--gateway fd00:77::1`): the join
/// answers both gateways, the endpoint has both addresses, and the teardown leaves nothing.
#[test]
fn a_dual_stack_network_joins_with_both_gateways_and_tears_down() {
    let Some(env) = setup("a_dual_stack_network_joins_with_both_gateways_and_tears_down") else {
        return;
    };
    let (d, p) = (&env.d, &env.p);
    let pool6 = "lnet/fd00:77::/64";
    p.ok("/IpamDriver.RequestPool", &request_pool_v6("fd00:77::/64"));
    p.ok("/IpamDriver.RequestPool", &request_pool(POOL));
    let gw4 = p.ok("/IpamDriver.RequestAddress", &request_gateway(POOL_ID));
    let mut ask = request_gateway(pool6);
    ask["Address"] = json!("fd00:77::1");
    let gw6 = p.ok("/IpamDriver.RequestAddress", &ask);
    assert_eq!(gw6["Address"], "fd00:77::1/64", "{gw6}");
    let id = "8".repeat(64);
    let ep = "7".repeat(64);
    p.ok(
        "/NetworkDriver.CreateNetwork",
        &create_dual_stack_network(&id, &gw4["Address"], &gw6["Address"]),
    );
    let a4 = p.ok("/IpamDriver.RequestAddress", &request_address(POOL_ID, ""));
    let a6 = p.ok("/IpamDriver.RequestAddress", &request_address(pool6, ""));
    assert_eq!(
        (&a4["Address"], &a6["Address"]),
        (&json!(ADDRESS), &json!("fd00:77::2/64"))
    );
    let ce = p.ok(
        "/NetworkDriver.CreateEndpoint",
        &json!({
            "NetworkID": id,
            "EndpointID": ep,
            "Interface": {"Address": a4["Address"], "AddressIPv6": a6["Address"], "MacAddress": ""},
            "Options": {},
        }),
    );
    let iface = &ce["Interface"];
    assert!(
        iface["Address"].as_str().unwrap_or_default().is_empty()
            && iface["AddressIPv6"].as_str().unwrap_or_default().is_empty(),
        "CreateEndpoint must not answer the addresses dockerd gave: {ce}"
    );
    let j = p.ok("/NetworkDriver.Join", &join(&id, &ep));
    assert_eq!(j["Gateway"], "10.77.0.1", "Join: {j}");
    assert_eq!(j["GatewayIPv6"], "fd00:77::1", "Join: {j}");
    assert_doctor_clean(d, "after the dual-stack join");

    let r = endpoint_ref(&id, &ep);
    p.ok("/NetworkDriver.RevokeExternalConnectivity", &r);
    p.ok("/NetworkDriver.Leave", &r);
    p.ok("/NetworkDriver.DeleteEndpoint", &r);
    for (pool, ip) in [
        (POOL_ID, "10.77.0.2"),
        (pool6, "fd00:77::2"),
        (POOL_ID, "10.77.0.1"),
        (pool6, "fd00:77::1"),
    ] {
        p.ok("/IpamDriver.ReleaseAddress", &release_address(pool, ip));
    }
    p.ok("/IpamDriver.ReleasePool", &json!({"PoolID": POOL_ID}));
    p.ok("/IpamDriver.ReleasePool", &json!({"PoolID": pool6}));
    p.ok("/NetworkDriver.DeleteNetwork", &json!({"NetworkID": id}));
    assert_only_predefined_networks(d, "after the dual-stack teardown");
    let left: Vec<String> = link_names("")
        .into_iter()
        .filter(|n| n.starts_with("veth") || n.starts_with("lnc") || n.starts_with("br-"))
        .collect();
    assert!(left.is_empty(), "links left behind: {left:?}");
    let rules = nft_lines_with("fd00:77:");
    assert!(rules.is_empty(), "nft rules left behind: {rules:#?}");
    assert_doctor_clean(d, "after the dual-stack teardown");
}

/// The client these tests talk through reads an answer whether it comes with a length or
/// chunked (hyper may stream a body), so a change of framing in lnet cannot pass for a
/// wrong answer. Needs no daemon.
#[test]
fn the_tests_plugin_client_reads_chunked_and_plain_answers() {
    let chunked = b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.docker.plugins.v1.2+json\r\n\
        Transfer-Encoding: chunked\r\n\r\n5\r\n{\"Err\r\nb;x=1\r\n\":\"broken\"}\r\n0\r\n\r\n";
    let a = parse_answer(chunked).expect("a chunked answer");
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type.as_deref(), Some(CONTENT_TYPE));
    assert_eq!(a.json(), json!({"Err": "broken"}));
    let plain = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}";
    let a = parse_answer(plain).expect("a plain answer");
    assert_eq!(
        (a.status, a.content_type, a.body),
        (500, None, "{}".to_string())
    );
    assert!(parse_answer(b"garbage").is_none());
}

/// dockerd moves the interface right after the join, so a restart of lnet almost always
/// finds the peer gone from its namespace: lnet killed (SIGKILL) then, and started again,
/// keeps the container's connectivity (the veth is not remade, nor taken away), doctor sees
/// no drift, the join repeated answers the same, and the teardown still leaves nothing.
#[test]
fn a_sigkill_after_the_interface_moved_keeps_the_container_reachable() {
    let Some(mut env) = setup("a_sigkill_after_the_interface_moved_keeps_the_container_reachable")
    else {
        return;
    };
    let joined = create_and_join(&env.d, &env.p);
    let container = ContainerNetns::start();
    container.take_interface(&joined.src_name, ADDRESS);
    ping("10.77.0.2").unwrap_or_else(|out| panic!("ping before the restart:\n{out}"));
    let veths = veths_on(&bridge_of(NET_ID));

    env.d.restart();
    env.p = Plugin::of(&env.d);
    let (d, p) = (&env.d, &env.p);
    assert_doctor_clean(
        d,
        "after the restart, the interface in the container's namespace",
    );
    assert_eq!(
        veths_on(&bridge_of(NET_ID)),
        veths,
        "the restart must keep the container's veth"
    );
    assert_eq!(
        container.link_names(),
        ["lo", "eth0"],
        "the container's interface after the restart"
    );
    assert_eq!(
        link(&joined.src_name),
        None,
        "the restart must not make {} again in the host's namespace",
        joined.src_name
    );
    if let Err(out) = ping("10.77.0.2") {
        panic!(
            "ping 10.77.0.2 after the restart:\n{out}\ndaemon log:\n{}",
            log_tail(d)
        );
    }
    let j = p.ok("/NetworkDriver.Join", &join(NET_ID, EP_ID));
    assert_eq!(j, joined.join, "Join after the restart");
    let sbs = sandboxes(d);
    assert_eq!(sbs.len(), 1, "the sandbox after the restart: {sbs:?}");

    teardown(d, p, &joined, Some(&container));
    assert_nothing_left(d, p);
}

/// dockerd stops one container while it starts another: the stopped one's address, freed
/// by its DeleteEndpoint, must not go to the new one before dockerd's ReleaseAddress for it
/// arrives (that call would otherwise take the new container's address away).
#[test]
fn an_address_is_given_again_only_after_dockerd_gives_it_back() {
    let Some(env) = setup("an_address_is_given_again_only_after_dockerd_gives_it_back") else {
        return;
    };
    let (d, p) = (&env.d, &env.p);
    create_network_as_dockerd(d, p);
    let first = p.ok("/IpamDriver.RequestAddress", &request_address(POOL_ID, ""));
    assert_eq!(first["Address"], ADDRESS, "{first}");
    p.ok(
        "/NetworkDriver.CreateEndpoint",
        &create_endpoint(NET_ID, EP_ID, ADDRESS),
    );
    // Stop: DeleteEndpoint, and — not yet — ReleaseAddress.
    p.ok(
        "/NetworkDriver.DeleteEndpoint",
        &endpoint_ref(NET_ID, EP_ID),
    );
    let second = p.ok("/IpamDriver.RequestAddress", &request_address(POOL_ID, ""));
    assert_eq!(
        second["Address"], "10.77.0.3/24",
        "the address was given out again too soon"
    );
    let other = "7".repeat(64);
    p.ok(
        "/NetworkDriver.CreateEndpoint",
        &create_endpoint(NET_ID, &other, "10.77.0.3/24"),
    );
    // The stopped container's ReleaseAddress: its address is free, the new one's stays.
    p.ok(
        "/IpamDriver.ReleaseAddress",
        &release_address(POOL_ID, ADDRESS),
    );
    let third = p.ok("/IpamDriver.RequestAddress", &request_address(POOL_ID, ""));
    assert_eq!(third["Address"], ADDRESS, "{third}");
    // The new container's endpoint is still there: it joins, with its address.
    let joined = p.ok("/NetworkDriver.Join", &join(NET_ID, &other));
    assert!(joined["InterfaceName"]["SrcName"].is_string(), "{joined}");
    let (_, body) = d.request("GET", &format!("/networks/{NET_ID}"), None);
    assert!(body.contains("10.77.0.3/24"), "{body}");
}

/// Ids that are not dockerd's shape are refused by name before anything is looked up; one
/// that is not even ASCII must not bring the daemon down.
#[test]
fn ids_that_are_not_dockerds_are_refused_by_name() {
    let Some(env) = setup("ids_that_are_not_dockerds_are_refused_by_name") else {
        return;
    };
    let (d, p) = (&env.d, &env.p);
    for id in [
        "aaaaaaaaaaa\u{e9}",
        "short",
        &"A".repeat(64),
        &"g".repeat(64),
    ] {
        let e = p.fails(
            "/NetworkDriver.CreateNetwork",
            &create_network(id, POOL, GATEWAY, json!({})),
        );
        assert!(e.contains("NetworkID") && e.contains("64"), "{id}: {e}");
        let e = p.fails("/NetworkDriver.Join", &join(NET_ID, id));
        assert!(e.contains("EndpointID"), "{id}: {e}");
    }
    let (status, _) = d.request("GET", "/_ping", None);
    assert_eq!(status, 200, "the daemon went down");
    assert_only_predefined_networks(d, "after ids that are not dockerd's");
}

/// A container that dies while lnet is away (its namespace, and the veth pair with it, go;
/// dockerd's Leave and DeleteEndpoint found no plugin) is reclaimed at the next start: its
/// endpoint, its host port and its sandbox record go, and the address is free again.
#[test]
fn a_container_that_died_while_lnet_was_away_is_reclaimed_at_start() {
    let Some(mut env) = setup("a_container_that_died_while_lnet_was_away_is_reclaimed_at_start")
    else {
        return;
    };
    let joined = create_and_join(&env.d, &env.p);
    let container = ContainerNetns::start();
    container.take_interface(&joined.src_name, ADDRESS);
    env.d.kill();
    drop(container);
    // The kernel tears a namespace down in the background: the start must find the pair
    // gone, as it would after a container that died long before.
    let host_end = format!("veth{}", &EP_ID[..7]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while link(&host_end).is_some() {
        assert!(
            Instant::now() < deadline,
            "{host_end} outlived its peer's namespace by 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    env.d.restart();
    let p = Plugin::of(&env.d);
    assert!(sandboxes(&env.d).is_empty(), "{:?}", sandboxes(&env.d));
    assert!(
        nft_lines_with(&HOST_PORT.to_string()).is_empty(),
        "{:?}",
        nft_lines_with(&HOST_PORT.to_string())
    );
    std::net::TcpListener::bind(("0.0.0.0", HOST_PORT)).expect("the host port is free again");
    assert_doctor_clean(&env.d, "after the start that reclaimed the endpoint");
    // dockerd's late calls find nothing to do; the address is lnet's to give again.
    p.ok("/NetworkDriver.Leave", &endpoint_ref(NET_ID, EP_ID));
    p.ok(
        "/NetworkDriver.DeleteEndpoint",
        &endpoint_ref(NET_ID, EP_ID),
    );
    p.ok(
        "/IpamDriver.ReleaseAddress",
        &release_address(POOL_ID, ADDRESS),
    );
    let again = p.ok("/IpamDriver.RequestAddress", &request_address(POOL_ID, ""));
    assert_eq!(again["Address"], ADDRESS, "{again}");
}
