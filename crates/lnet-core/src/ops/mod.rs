//! Every state transition of the controller, one file each. Each is a method on
//! [`State`](crate::controller::State) that validates first (bad input changes nothing),
//! writes the record with its lifecycle state before touching the kernel, makes the kernel
//! changes with idempotent steps, and writes the final state last.

mod dns;
mod endpoint_create;
mod endpoint_delete;
mod join;
mod leave;
mod network_create;
mod network_delete;
mod published;
mod sandbox_create;
mod sandbox_delete;
mod sandbox_rename;
mod sandbox_support;

pub(crate) use dns::{
    ResolverSockets, redirect_drift, redirect_rules_here, redirect_rules_in, reopen_resolver,
};
pub(crate) use endpoint_create::Created;
pub(crate) use endpoint_delete::tell_endpoint_gone;
pub(crate) use published::{PortPlan, check_ports};
pub use published::{firewall_check_records, firewall_expected};
pub(crate) use sandbox_create::{make_sandbox, remove_sandbox_artifacts, write_resolv_conf};
pub(crate) use sandbox_support::{Gateways, open_sandbox_kernel, set_gateways};
