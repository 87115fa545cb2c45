//! The built-in network drivers, and how to add one.
//!
//! # Adding a driver
//!
//! A driver is a type that implements [`Driver`](crate::Driver), registered with the
//! controller. Nothing else in lnet-core changes: the journal, IPAM, published ports, the
//! order keys, recovery, `doctor`, self-healing and the Docker API are the controller's, and
//! a driver never touches the store.
//!
//! 1. **Say what it is.** [`name`](crate::Driver::name) is what networks are created with
//!    (`docker network create -d NAME`). [`capabilities`](crate::Driver::capabilities) says
//!    whether its endpoints take addresses from IPAM, need an IPv4 pool, may share subnets,
//!    whether it is a singleton, and whether its sandboxes share the host's namespace.
//! 2. **Plan.** [`plan_network`](crate::Driver::plan_network) parses and validates the
//!    options (an unknown or wrong one is an error naming it and what is allowed) and
//!    returns the state to record: every name of every kernel object the network will
//!    make. It changes nothing; `PlanNetwork::host` lets it check that a name is free.
//!    [`plan_join`](crate::Driver::plan_join) checks that a sandbox may join and chooses
//!    the join's names.
//! 3. **Make and remove.** [`create_network`](crate::Driver::create_network) makes (or puts
//!    right) the network's objects and is idempotent; [`join`](crate::Driver::join) makes a
//!    join's, as fast as it can in `JoinMode::Fresh` and keeping what is right in
//!    `JoinMode::Repair`; [`leave`](crate::Driver::leave) and
//!    [`delete_network`](crate::Driver::delete_network) undo them, keep going past a failed
//!    step and report every error. They reach the kernel only through
//!    [`HostOps`](crate::HostOps) and [`SandboxOps`](crate::SandboxOps).
//! 4. **State what should exist.** [`want_network`](crate::Driver::want_network) and
//!    [`want_join`](crate::Driver::want_join) list the links a ready network and a join
//!    want ([`LinkWant`](crate::want::LinkWant): kind, master, up, MTU, MAC, alias,
//!    addresses, port flags). That gives the driver `lnet doctor`, self-healing and a fast
//!    start: the controller compares the wants with the kernel and calls `create_network`
//!    or `join` in `Repair` only for what differs. [`facts`](crate::Driver::facts)
//!    (gateways, where ports publish, embedded DNS), [`firewall`](crate::Driver::firewall)
//!    and [`leftovers`](crate::Driver::leftovers) are stated the same way when the driver
//!    has them.
//! 5. **Register it.** `let mut drivers = lnet_core::drivers::builtin();
//!    drivers.register(Arc::new(MyDriver))?;` then
//!    [`Controller::with_drivers`](crate::Controller::with_drivers)`(config, drivers)`.
//! 6. **Test it without root.** What a driver asks of the kernel, in which order, and what it
//!    undoes is unit-tested against the recording fake of the seam (the bridge's tests in
//!    `bridge_seam_tests.rs`); root tests stay for what only the kernel can prove. A whole
//!    driver a library user wrote, registered and called in order, is in `tests/drivers.rs`.

pub mod bridge;
pub mod lan;
pub mod passive;

use std::sync::Arc;

use crate::driver::Registry;

/// The built-in drivers: `bridge`, `macvlan`, `ipvlan`, `host` and `null`.
pub fn builtin() -> Registry {
    let mut r = Registry::empty();
    for d in [
        Arc::new(bridge::BridgeDriver::default()) as Arc<dyn crate::driver::Driver>,
        Arc::new(lan::LanDriver::macvlan()),
        Arc::new(lan::LanDriver::ipvlan()),
        Arc::new(passive::PassiveDriver::HOST),
        Arc::new(passive::PassiveDriver::NULL),
    ] {
        r.register(d)
            .expect("the built-in drivers have names of their own");
    }
    r
}

/// What a driver sees when it plans network `id` (named `web`) with `options`, next to
/// `others`, on `host` (for driver tests).
#[cfg(test)]
pub(crate) fn plan_of<'a>(
    id: &'a str,
    options: &'a std::collections::BTreeMap<String, String>,
    others: Vec<&'a lnet_store::NetworkRecord>,
    host: &'a mut crate::testing::FakeHost,
) -> crate::driver::PlanNetwork<'a> {
    crate::driver::PlanNetwork {
        id,
        name: "web",
        options,
        enable_ipv6: false,
        internal: false,
        others,
        host,
        adopted: None,
    }
}
