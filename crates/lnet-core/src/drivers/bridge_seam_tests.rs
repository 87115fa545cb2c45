//! The bridge driver's decisions, against the recording fake of the kernel seam: what it
//! asks the kernel for, in which order, what it leaves alone, and what it undoes. No root.

use std::collections::BTreeSet;
use std::net::IpAddr;

use lnet_store::{
    EndpointRecord, IpamSpec, JoinRecord, Lifecycle, NetworkRecord, PoolAssignment, SCHEMA_VERSION,
};

use super::*;
use crate::driver::{Driver, JoinMode};
use crate::drivers::plan_of;
use crate::kernel::{HostLinks, HostOps, SandboxOps};
use crate::reconcile;
use crate::testing::{Fake, Side as At, endpoint, join_record, sandbox_record};

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const EP: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

fn net_with(options: &[(&str, &str)]) -> NetworkRecord {
    let options: BTreeMap<String, String> = options
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cfg = BridgeConfig::parse(ID, &options).unwrap();
    NetworkRecord {
        schema: SCHEMA_VERSION,
        state: Lifecycle::Ready,
        revision: 1,
        id: ID.into(),
        name: "web".into(),
        driver: "bridge".into(),
        scope: "local".into(),
        created_unix_nanos: 0,
        ipam: IpamSpec::default(),
        pools: vec![PoolAssignment {
            pool: "10.7.0.0/24".parse().unwrap(),
            sub_pool: None,
            gateway: Some("10.7.0.1/24".parse().unwrap()),
            aux_addresses: BTreeMap::new(),
            pool_id: None,
            address_space: None,
        }],
        enable_ipv6: false,
        internal: false,
        attachable: false,
        labels: BTreeMap::new(),
        options,
        driver_state: serde_json::to_value(cfg).unwrap(),
    }
}

fn net() -> NetworkRecord {
    net_with(&[])
}

/// Only the calls that change something (reads are free to come and go).
fn changes(calls: Vec<String>) -> Vec<String> {
    calls
        .into_iter()
        .filter(|c| {
            !c.contains("link_by_name") && !c.contains("addresses") && !c.contains("bridge_ports")
        })
        .collect()
}

fn position(calls: &[String], prefix: &str) -> usize {
    calls
        .iter()
        .position(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no call {prefix:?} in {calls:#?}"))
}

/// A network made, and an endpoint (publishing a port or not) joined fresh to it; the
/// calls so far forgotten.
fn joined(
    fake: &Fake,
    net: &NetworkRecord,
    ports: bool,
) -> (BridgeDriver, EndpointRecord, JoinRecord) {
    let d = made_network(fake, net);
    let (ep, j) = (endpoint(ports), join_record());
    d.join(
        &mut fake.host(),
        &mut fake.sandbox(),
        net,
        &ep,
        &j,
        JoinMode::Fresh,
    )
    .unwrap();
    fake.take_calls();
    (d, ep, j)
}

/// `join` in `JoinMode::Repair`, as a start or a heal asks it.
fn repair(fake: &Fake, d: &BridgeDriver, net: &NetworkRecord, ep: &EndpointRecord, j: &JoinRecord) {
    d.join(
        &mut fake.host(),
        &mut fake.sandbox(),
        net,
        ep,
        j,
        JoinMode::Repair,
    )
    .unwrap();
}

fn made_network(fake: &Fake, net: &NetworkRecord) -> BridgeDriver {
    let d = BridgeDriver::default();
    d.create_network(&mut fake.host(), net, &Config::default())
        .unwrap();
    fake.take_calls();
    d
}

#[test]
fn a_network_is_made_with_its_address_mark_and_firewall_and_brought_up_last() {
    let fake = Fake::new();
    let net = net();
    BridgeDriver::default()
        .create_network(&mut fake.host(), &net, &Config::default())
        .unwrap();
    let calls = changes(fake.take_calls());
    assert_eq!(calls[0], "host: ensure_bridge br-0123456789ab");
    assert!(calls.contains(&"host: add_address br-0123456789ab 10.7.0.1/24".into()));
    assert!(calls.contains(&"host: sysctl net/ipv6/conf/br-0123456789ab/accept_ra=0".into()));
    assert!(calls.contains(&"host: allow_forward br-0123456789ab true".into()));
    assert!(calls.iter().any(|c| c.starts_with("host: forward [V4]")));
    assert_eq!(
        calls.last().unwrap(),
        "host: set_up br-0123456789ab",
        "{calls:#?}"
    );
    assert!(position(&calls, "host: firewall +[") < position(&calls, "host: set_up"));
    let bridge = fake.link(At::Host, "br-0123456789ab").unwrap();
    assert!(bridge.up && bridge.is_kind("bridge"));
    assert_eq!(marked_network(bridge.alias.as_deref()), Some(ID));
    assert_eq!(
        fake.addrs(At::Host, "br-0123456789ab"),
        ["10.7.0.1/24".parse::<IpNet>().unwrap()]
    );
}

#[test]
fn making_a_network_again_changes_nothing_that_is_right() {
    let fake = Fake::new();
    let net = net();
    let d = made_network(&fake, &net);
    d.create_network(&mut fake.host(), &net, &Config::default())
        .unwrap();
    let calls = changes(fake.take_calls());
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("set_") || c.contains("_address")),
        "{calls:#?}"
    );
}

#[test]
fn a_bridge_found_down_with_a_stray_address_is_put_right_in_place() {
    let fake = Fake::new();
    let net = net();
    let d = made_network(&fake, &net);
    {
        let mut w = fake.world();
        let l = w.host.links.get_mut("br-0123456789ab").unwrap();
        l.up = false;
        let i = l.index;
        w.host.addrs.push((i, "192.0.2.9/24".parse().unwrap()));
    }
    let want = d.want_network(&net);
    let drift = reconcile::drift_live(&want, fake.host().links(), None).unwrap();
    let said: Vec<String> = drift.iter().map(|d| format!("{} {d}", d.kind())).collect();
    assert_eq!(
        said,
        [
            "different bridge br-0123456789ab is down",
            "extra address 192.0.2.9/24 on br-0123456789ab"
        ]
    );
    d.create_network(&mut fake.host(), &net, &Config::default())
        .unwrap();
    let calls = changes(fake.take_calls());
    assert!(calls.contains(&"host: del_address br-0123456789ab 192.0.2.9/24".into()));
    assert!(
        !calls.iter().any(|c| c.contains("add_address")),
        "{calls:#?}"
    );
    assert!(
        reconcile::drift_live(&want, fake.host().links(), None)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_plan_refuses_a_name_taken_by_another_network_or_by_someone_else() {
    let fake = Fake::new();
    let d = BridgeDriver::default();
    let mut other = net_with(&[(OPT_NAME, "br-x")]);
    other.id = "1".repeat(64);
    other.name = "other".into();
    let opts: BTreeMap<String, String> = [(OPT_NAME.to_string(), "br-x".to_string())].into();
    let mut host = fake.host();
    let mut plan = plan_of(ID, &opts, vec![&other], &mut host);
    let e = d.plan_network(&mut plan).unwrap_err().to_string();
    assert!(e.contains("taken by network other"), "{e}");

    fake.add_link(At::Host, "br-x", "bridge");
    let mut host = fake.host();
    let mut plan = plan_of(ID, &opts, vec![], &mut host);
    let e = d.plan_network(&mut plan).unwrap_err().to_string();
    assert!(e.contains("lnet did not make it"), "{e}");
    assert!(
        changes(fake.take_calls()).is_empty(),
        "a plan changes nothing"
    );
}

#[test]
fn a_plan_takes_over_lnets_own_leftover_bridge_keeping_its_mac() {
    let fake = Fake::new();
    let index = fake.add_link(At::Host, "br-x", "bridge");
    fake.world().host.links.get_mut("br-x").unwrap().alias = Some(mark(&"2".repeat(64)));
    let opts: BTreeMap<String, String> = [(OPT_NAME.to_string(), "br-x".to_string())].into();
    let mut host = fake.host();
    let mut plan = plan_of(ID, &opts, vec![], &mut host);
    let state = BridgeDriver::default().plan_network(&mut plan).unwrap();
    assert_eq!(plan.adopted, Some(index));
    let cfg: BridgeConfig = serde_json::from_value(state).unwrap();
    let mac = fake.link(At::Host, "br-x").unwrap().mac.unwrap();
    assert_eq!(cfg.mac, format_mac(&mac));
}

#[test]
fn a_fresh_join_makes_the_pair_in_one_request_and_isolates_before_the_peer_comes_up() {
    let fake = Fake::new();
    let net = net_with(&[(OPT_ICC, "false")]);
    let d = made_network(&fake, &net);
    let ep = endpoint(true);
    d.join(
        &mut fake.host(),
        &mut fake.sandbox(),
        &net,
        &ep,
        &join_record(),
        JoinMode::Fresh,
    )
    .unwrap();
    let calls = changes(fake.take_calls());
    assert!(
        calls[0].starts_with("host: create_veth vethfedcba9 peer eth0 master Some("),
        "{calls:#?}"
    );
    assert_eq!(
        calls.iter().filter(|c| c.contains("create_veth")).count(),
        1
    );
    let isolate = position(&calls, "host: set_isolated vethfedcba9");
    let hairpin = position(&calls, "host: set_hairpin vethfedcba9");
    let address = position(&calls, "sandbox: add_address eth0 10.7.0.2/24");
    let up = position(&calls, "sandbox: set_up eth0");
    let ports = position(&calls, "host: firewall +[");
    assert!(position(&calls, "host: disable_ipv6 vethfedcba9") < up);
    assert!(
        isolate < up && hairpin < up && address < up && up < ports,
        "{calls:#?}"
    );
    // What it made is what it wants.
    let want = d.want_join(&net, &ep, &join_record());
    let drift = reconcile::drift_live(&want, fake.host().links(), Some(fake.sandbox().links()));
    assert_eq!(drift.unwrap(), []);
}

#[test]
fn a_join_that_fails_half_way_is_undone_by_leave_and_leaves_nothing() {
    let fake = Fake::new();
    let net = net();
    let d = made_network(&fake, &net);
    let ep = endpoint(false);
    fake.fail("sandbox: add_address eth0", libc::EADDRNOTAVAIL);
    let err = d
        .join(
            &mut fake.host(),
            &mut fake.sandbox(),
            &net,
            &ep,
            &join_record(),
            JoinMode::Fresh,
        )
        .unwrap_err();
    assert!(err.to_string().contains("10.7.0.2/24"), "{err}");
    assert!(fake.link(At::Host, "vethfedcba9").is_some());
    d.leave(
        &mut fake.host(),
        Some(&mut fake.sandbox()),
        &net,
        &ep,
        &join_record(),
    )
    .unwrap();
    assert!(fake.link(At::Host, "vethfedcba9").is_none());
    assert!(fake.link(At::Sandbox, "eth0").is_none());
}

#[test]
fn a_repair_of_a_join_that_is_right_only_reads() {
    let fake = Fake::new();
    let net = net();
    let (d, ep, j) = joined(&fake, &net, false);
    repair(&fake, &d, &net, &ep, &j);
    assert_eq!(changes(fake.take_calls()), Vec::<String>::new());
}

#[test]
fn a_repair_puts_a_port_back_on_its_bridge_in_place_and_remakes_a_deleted_pair() {
    let fake = Fake::new();
    let net = net();
    let (d, ep, j) = joined(&fake, &net, false);
    fake.world()
        .host
        .links
        .get_mut("vethfedcba9")
        .unwrap()
        .master = None;
    fake.take_calls();
    repair(&fake, &d, &net, &ep, &j);
    let calls = changes(fake.take_calls());
    assert_eq!(calls, ["host: set_master vethfedcba9"]);

    fake.host().links().delete_link("vethfedcba9").unwrap();
    assert!(
        fake.link(At::Sandbox, "eth0").is_none(),
        "the peer went with it"
    );
    fake.take_calls();
    repair(&fake, &d, &net, &ep, &j);
    let calls = changes(fake.take_calls());
    assert!(
        calls[0].starts_with("host: create_veth vethfedcba9"),
        "{calls:#?}"
    );
    assert!(calls.contains(&"sandbox: add_address eth0 10.7.0.2/24".into()));
    let want = d.want_join(&net, &ep, &j);
    let drift = reconcile::drift_live(&want, fake.host().links(), Some(fake.sandbox().links()));
    assert_eq!(drift.unwrap(), []);
}

#[test]
fn a_leave_unpublishes_ports_before_the_interface_goes() {
    let fake = Fake::new();
    let net = net();
    let (d, ep, j) = joined(&fake, &net, true);
    d.leave(&mut fake.host(), Some(&mut fake.sandbox()), &net, &ep, &j)
        .unwrap();
    let calls = changes(fake.take_calls());
    let unpublish = position(&calls, "host: firewall +[] -[");
    assert!(unpublish < position(&calls, "host: flush_udp"));
    assert!(unpublish < position(&calls, "host: delete_link vethfedcba9"));
}

#[test]
fn a_leave_that_deletes_later_first_frees_the_address_and_the_name() {
    let fake = Fake::new();
    let net = net();
    let (d, ep, j) = joined(&fake, &net, false);
    let mut host = fake.host();
    host.deletes_later = true;
    d.leave(&mut host, Some(&mut fake.sandbox()), &net, &ep, &j)
        .unwrap();
    let calls = changes(fake.take_calls());
    assert_eq!(
        calls,
        [
            "sandbox: del_address eth0 10.7.0.2/24".to_string(),
            format!("sandbox: rename eth0 {}", reaper::gone_name(EP)),
            "host: delete_later vethfedcba9".to_string(),
        ]
    );
}

#[test]
fn a_network_delete_keeps_going_past_a_failure_and_reports_it() {
    let fake = Fake::new();
    let net = net();
    let d = made_network(&fake, &net);
    fake.fail("host: firewall", libc::EBUSY);
    let err = d.delete_network(&mut fake.host(), &net).unwrap_err();
    assert!(err.to_string().contains("firewall"), "{err}");
    assert!(
        fake.link(At::Host, "br-0123456789ab").is_none(),
        "the bridge went although the firewall step failed"
    );
}

#[test]
fn a_host_mode_sandbox_may_not_join_and_names_come_from_the_endpoint_id() {
    let fake = Fake::new();
    let net = net();
    let d = BridgeDriver::default();
    let ep = endpoint(false);
    let e = d
        .plan_join(&mut fake.host(), &net, &ep, &sandbox_record(true))
        .unwrap_err();
    assert!(e.to_string().contains("host networking"), "{e}");
    let plan = d
        .plan_join(&mut fake.host(), &net, &ep, &sandbox_record(false))
        .unwrap();
    assert_eq!(plan.host_ifname.as_deref(), Some("vethfedcba9"));
    assert_eq!(plan.iface_prefix.as_deref(), Some("eth"));
    // The name is taken: the next slice of the id.
    fake.add_link(At::Host, "vethfedcba9", "dummy");
    let plan = d
        .plan_join(&mut fake.host(), &net, &ep, &sandbox_record(false))
        .unwrap();
    assert_eq!(plan.host_ifname.as_deref(), Some("veth8765432"));
}

#[test]
fn leftovers_are_unrecorded_ports_and_marked_bridges_no_network_names() {
    let fake = Fake::new();
    let net = net();
    made_network(&fake, &net);
    let bridge = fake.link(At::Host, "br-0123456789ab").unwrap().index;
    // A port no join names, on a ready network's bridge; one a join names.
    for name in ["veth1111111", "veth2222222"] {
        fake.add_link(At::Host, name, "veth");
        fake.world().host.links.get_mut(name).unwrap().master = Some(bridge);
    }
    // A marked bridge of a lost network with a port, and the predefined one.
    let lost = "3".repeat(64);
    for name in ["br-lost", "lnet0"] {
        fake.add_link(At::Host, name, "bridge");
        fake.world().host.links.get_mut(name).unwrap().alias = Some(mark(&lost));
    }
    let lost_index = fake.link(At::Host, "br-lost").unwrap().index;
    fake.add_link(At::Host, "veth4444444", "veth");
    fake.world()
        .host
        .links
        .get_mut("veth4444444")
        .unwrap()
        .master = Some(lost_index);
    // Someone else's bridge, unmarked.
    fake.add_link(At::Host, "br-theirs", "bridge");

    let links: Vec<lnet_kernel::Link> = fake.world().host.links.values().cloned().collect();
    let named: BTreeSet<String> = ["veth2222222".to_string()].into();
    let config = Config {
        predefined_bridge: Some("lnet0".into()),
        ..Config::default()
    };
    let found =
        BridgeDriver::default().leftovers(&HostLinks::new(&links), &named, &[&net], &config);
    let said: Vec<(String, &str, bool, bool)> = found
        .iter()
        .map(|o| (o.name.clone(), o.noun, o.marked.is_some(), o.unrecorded))
        .collect();
    assert_eq!(
        said,
        [
            ("veth1111111".to_string(), "interface", false, false),
            ("veth4444444".to_string(), "interface", false, true),
            ("br-lost".to_string(), "bridge", true, true),
        ]
    );
}

#[test]
fn facts_say_where_ports_publish_and_whether_names_resolve() {
    let d = BridgeDriver::default();
    let f = d.facts(&net());
    assert_eq!(
        f.gateways,
        (Some("10.7.0.1".parse::<IpAddr>().unwrap()), None)
    );
    assert_eq!(f.publish_on, Ok("0.0.0.0".parse::<IpAddr>().unwrap()));
    assert!(f.resolves_names);
    let mut internal = net();
    internal.internal = true;
    let f = d.facts(&internal);
    assert_eq!(f.gateways, (None, None));
    assert!(f.publish_on.unwrap_err().contains("internal"));
    let f = d.facts(&net_with(&[(OPT_DEFAULT_BRIDGE, "true")]));
    assert!(
        !f.resolves_names,
        "Docker's default bridge has no embedded DNS"
    );
}

#[test]
fn a_join_handed_over_to_an_engine_makes_the_pair_and_configures_nothing_inside() {
    let fake = Fake::new();
    let net = net();
    let d = made_network(&fake, &net);
    let ep = endpoint(true);
    let mut engine = sandbox_record(false);
    engine.handover = true;
    let plan = d.plan_join(&mut fake.host(), &net, &ep, &engine).unwrap();
    assert_eq!(plan.host_ifname.as_deref(), Some("vethfedcba9"));
    assert_eq!(plan.handover_ifname.as_deref(), Some("lncfedcba9"));
    assert_eq!(plan.iface_prefix.as_deref(), Some("eth"));
    let j = JoinRecord {
        container_ifname: plan.handover_ifname.clone(),
        handover: Some("eth".into()),
        ..join_record()
    };
    fake.take_calls();
    d.join(
        &mut fake.host(),
        &mut fake.sandbox(),
        &net,
        &ep,
        &j,
        JoinMode::Fresh,
    )
    .unwrap();
    let calls = changes(fake.take_calls());
    assert!(
        calls[0].starts_with("host: create_veth vethfedcba9"),
        "{calls:#?}"
    );
    // The engine addresses the peer and brings it up in its own namespace.
    assert!(
        !calls.iter().any(|c| c.starts_with("sandbox:")),
        "lnet configured the handed-over peer: {calls:#?}"
    );
    assert!(calls.iter().any(|c| c.contains("firewall")), "{calls:#?}");
    // lnet wants, and so checks and heals, only the host end.
    let want = d.want_join(&net, &ep, &j);
    assert_eq!(want.links.len(), 1);
    assert_eq!(want.links[0].name, "vethfedcba9");
    // Gone with the container's interface, the pair cannot be remade: said, not done.
    fake.host().links().delete_link("vethfedcba9").unwrap();
    fake.take_calls();
    let e = d
        .join(
            &mut fake.host(),
            &mut fake.sandbox(),
            &net,
            &ep,
            &j,
            JoinMode::Repair,
        )
        .unwrap_err();
    assert!(e.to_string().contains("disconnect and connect"), "{e}");
    assert!(
        !changes(fake.take_calls())
            .iter()
            .any(|c| c.contains("create_veth")),
        "a repair remade a handed-over pair"
    );
}
