//! Create a bridge, a network namespace and a veth pair into it, print what
//! was made, then remove it all.
//!
//! Everything happens inside a network namespace this example creates for
//! itself first, so the machine's own network is never touched. Needs root:
//!
//! ```sh
//! cargo run -p lnet-kernel --example veth_pair   # as root
//! ```

use lnet_kernel::{
    AddrFlags, BridgeOptions, IpFamily, Netlink, Netns, Route, VethSpec, format_mac, testing,
};

fn main() -> Result<(), String> {
    if !testing::require_root("example veth_pair", "creates network namespaces and links") {
        return Ok(());
    }
    // Our own sandbox: the main thread is ours, so it may change namespace.
    testing::enter_new_netns().map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ns_path = dir.path().join("netns/demo");

    let result = run(&ns_path);

    // Clean up even if something failed half-way. Links die with the
    // namespaces: the sandbox when this process exits, the container
    // namespace when it is unmounted and its last handle is closed.
    match Netns::delete_at(&ns_path) {
        Ok(true) => println!("removed netns mount {}", ns_path.display()),
        Ok(false) => {}
        Err(e) => eprintln!("cleanup: {e}"),
    }
    result.map_err(|e| e.to_string())
}

fn run(ns_path: &std::path::Path) -> lnet_kernel::Result<()> {
    let mut host = Netlink::new()?;

    let br = host.ensure_bridge(
        "br-demo",
        BridgeOptions {
            mtu: Some(1500),
            mac: None,
            alias: None,
        },
    )?;
    host.add_address(
        br.index,
        "10.42.0.1/24".parse().unwrap(),
        AddrFlags::default(),
    )?;
    host.set_up(br.index)?;
    println!(
        "bridge   {} (index {}, kind {:?})",
        br.name, br.index, br.kind
    );

    let ns = Netns::create_at(ns_path)?;
    println!("netns    {} (inode {})", ns_path.display(), ns.inode()?);

    let mac = [0x02, 0x42, 0x0a, 0x2a, 0x00, 0x02];
    let host_index = host.create_veth(VethSpec {
        host_name: "veth-demo",
        host_master: Some(br.index),
        host_up: true,
        peer_name: "eth0",
        peer_ns: Some(&ns),
        peer_mac: Some(mac),
        peer_mtu: Some(1500),
        ..Default::default()
    })?;
    let veth = host.link_by_index(host_index)?.expect("host end exists");
    println!(
        "veth     {} (index {}, master index {:?}, up {})",
        veth.name, veth.index, veth.master, veth.up
    );

    let mut inside = Netlink::in_netns(&ns)?;
    let eth0 = inside
        .link_by_name("eth0")?
        .expect("peer created in the netns");
    inside.add_address(
        eth0.index,
        "10.42.0.2/24".parse().unwrap(),
        AddrFlags { nodad: true },
    )?;
    inside.set_up(eth0.index)?;
    inside.replace_route(&Route::default_via("10.42.0.1".parse().unwrap()))?;

    println!("in netns:");
    for link in inside.links()? {
        println!(
            "  link   {} index {} kind {:?} mac {} mtu {} up {}",
            link.name,
            link.index,
            link.kind,
            link.mac.as_ref().map(format_mac).unwrap_or_default(),
            link.mtu,
            link.up
        );
    }
    for (index, net) in inside.addresses(None)? {
        println!("  addr   {net} on index {index}");
    }
    for route in inside.routes(IpFamily::V4)? {
        println!("  route  {route}");
    }

    // Tear down: deleting the host end removes the peer as well.
    println!("deleted veth-demo: {}", host.delete_link("veth-demo")?);
    println!("deleted br-demo:   {}", host.delete_link("br-demo")?);
    println!("deleted again:     {}", host.delete_link("br-demo")?);
    Ok(())
}
