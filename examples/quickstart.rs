//! lnet's quickstart: what libnetwork's README does, against the real kernel.
//!
//! Creates a bridge network, an endpoint, a sandbox with hostname `test` and domain
//! `example.com`, and joins them; then a second sandbox on the same network, publishing its
//! port 80 on the host's port 8080, and shows that real TCP and UDP packets from the first
//! reach the second, and that the host reaches the second's port 80 through
//! `127.0.0.1:8080` (DNAT in lnet's nftables table, no proxy process). Everything is removed
//! at the end.
//!
//! Run as root: `cargo run --example quickstart`. It first moves itself into a network
//! namespace of its own, and keeps its state in a temporary directory, so it never touches
//! the machine's interfaces, routes or `/var/lib/lnet`. (To also keep its mounts private, run
//! it under `unshare --net --mount --propagation private`.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lnet_core::{
    Config, Controller, EndpointOptions, JoinOptions, NetworkOptions, PortSpec, SandboxOptions,
};
use lnet_kernel::Netns;

fn main() -> Result<()> {
    if !lnet_kernel::testing::is_root() {
        bail!(
            "the quickstart changes network namespaces, links and addresses: run it as root: cargo run --example quickstart"
        );
    }
    // Our own namespace first, before any socket or thread exists: everything below happens
    // in it, and it vanishes with the process.
    lnet_kernel::testing::enter_new_netns().context("enter a new network namespace")?;
    let dir = tempfile::tempdir()?;
    let result = run(dir.path());
    // Unmount whatever namespace bind mounts are left (only if something above failed).
    for entry in std::fs::read_dir(dir.path().join("run/netns"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = Netns::delete_at(entry.path());
    }
    result
}

fn run(root: &std::path::Path) -> Result<()> {
    let mut config = Config::rooted_at(root);
    // A fixed upstream so the demo's resolv.conf does not depend on this machine's.
    let resolv = root.join("host-resolv.conf");
    std::fs::write(&resolv, "nameserver 192.0.2.53\nsearch example.com\n")?;
    config.host_resolv_conf = resolv;
    let controller = Controller::new(config)?;

    let network = controller.new_network("bridge", "network1", NetworkOptions::default())?;
    let ep = network.create_endpoint("Endpoint1", EndpointOptions::default())?;
    let sandbox = controller.new_sandbox(
        "container1",
        SandboxOptions {
            hostname: "test".into(),
            domainname: "example.com".into(),
            ..Default::default()
        },
    )?;
    ep.join(&sandbox, JoinOptions::default())?;
    let info = ep.driver_info()?;
    let mac = info
        .get("com.docker.network.endpoint.macaddress")
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    println!(
        "Joined endpoint {} ({mac}) to sandbox {} ({})",
        ep.name(),
        sandbox.container_id(),
        sandbox.key()?.display()
    );

    let ep2 = network.create_endpoint(
        "Endpoint2",
        EndpointOptions {
            ports: vec![PortSpec::parse("8080:80/tcp")?],
            ..Default::default()
        },
    )?;
    let sandbox2 = controller.new_sandbox(
        "container2",
        SandboxOptions {
            hostname: "peer".into(),
            ..Default::default()
        },
    )?;
    ep2.join(&sandbox2, JoinOptions::default())?;
    let peer_ip = ep2
        .info()?
        .addr_v4
        .context("Endpoint2 has an IPv4 address")?
        .addr();
    let subnet = network.info()?.pools[0].pool;
    println!(
        "network1 is {subnet}; container2 ({}) is at {peer_ip}",
        ep2.name()
    );

    let ns1 = Netns::open(&sandbox.key()?)?;
    let ns2 = Netns::open(&sandbox2.key()?)?;

    // UDP: a socket opened inside container2's namespace stays there; container1 sends to it.
    let rx = ns2.run(move || UdpSocket::bind(SocketAddr::new(peer_ip, 7000)))??;
    rx.set_read_timeout(Some(Duration::from_secs(5)))?;
    ns1.run(move || -> std::io::Result<()> {
        let tx = UdpSocket::bind("0.0.0.0:0")?;
        tx.send_to(b"hello over udp", SocketAddr::new(peer_ip, 7000))?;
        Ok(())
    })??;
    let mut buf = [0u8; 64];
    let (n, from) = rx.recv_from(&mut buf)?;
    println!(
        "container2 received {:?} over UDP from {from}",
        String::from_utf8_lossy(&buf[..n])
    );

    // TCP: the same, with a connection.
    let listener = ns2.run(move || TcpListener::bind(SocketAddr::new(peer_ip, 7001)))??;
    let client = ns1.run(move || -> std::io::Result<()> {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::new(peer_ip, 7001), Duration::from_secs(5))?;
        s.write_all(b"hello over tcp")
    });
    let (mut conn, from) = listener.accept()?;
    client??;
    let mut got = String::new();
    conn.read_to_string(&mut got)?;
    println!("container2 received {got:?} over TCP from {from}");

    // A published port: the host (this process's namespace) connects to 127.0.0.1:8080 and
    // lands on container2's port 80.
    let web = ns2.run(move || TcpListener::bind(SocketAddr::new(peer_ip, 80)))??;
    let mut s = TcpStream::connect_timeout(
        &"127.0.0.1:8080".parse::<SocketAddr>()?,
        Duration::from_secs(5),
    )
    .context("connect to the published port 127.0.0.1:8080")?;
    s.write_all(b"hello through a published port")?;
    drop(s);
    let (mut conn2, from) = web.accept()?;
    let mut got = String::new();
    conn2.read_to_string(&mut got)?;
    println!(
        "the host reached container2's port 80 through 127.0.0.1:8080: {got:?} arrived from {from}"
    );
    let hosts = std::fs::read_to_string(sandbox.hosts_path()?)?;
    println!(
        "container1's hosts file ends with: {}",
        hosts.lines().last().unwrap_or("")
    );

    drop((ns1, ns2, rx, listener, conn, web, conn2));
    for (e, s) in [(&ep, &sandbox), (&ep2, &sandbox2)] {
        e.leave(s)?;
        e.delete()?;
        s.delete()?;
    }
    network.delete()?;
    println!("removed both sandboxes, both endpoints and network1");
    Ok(())
}
