//! lnet-core owns the Container Network Model: the [`Controller`], its [`Network`]s,
//! [`Endpoint`]s and [`Sandbox`]es, the [`Driver`] interface with the built-in `bridge`,
//! `host` and `null` drivers, the controller's use of IPAM, the `hosts`/`resolv.conf` files
//! a sandbox owns, and the journal that makes every multi-step change recoverable: a record
//! is written with its lifecycle state and the names of the kernel objects it will make
//! before the kernel is touched, and [`Controller::new`] finishes or undoes whatever a crash
//! interrupted. It also owns the firewall ([`firewall`]): lnet's nftables tables, whose
//! elements are derived from the records.
//!
//! The flow mirrors libnetwork's README:
//!
//! ```no_run
//! use lnet_core::{Config, Controller, EndpointOptions, JoinOptions, NetworkOptions, SandboxOptions};
//! # fn main() -> Result<(), lnet_core::CoreError> {
//! let controller = Controller::new(Config::default())?;
//! let network = controller.new_network("bridge", "network1", NetworkOptions::default())?;
//! let ep = network.create_endpoint("Endpoint1", EndpointOptions::default())?;
//! let sandbox = controller.new_sandbox(
//!     "container1",
//!     SandboxOptions { hostname: "test".into(), domainname: "example.com".into(), ..Default::default() },
//! )?;
//! ep.join(&sandbox, JoinOptions::default())?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The layers, each using only those above it in this list (`tests/layers.rs` holds them to
// it): plain types; the kernel; drivers; the state; operations and checks; the controller.
//
// 1. plain types
mod config;
pub mod drift;
mod error;
pub mod failpoint;
mod ids;
mod index;
mod ipam;
mod keys;
mod options;
pub mod ports;
pub mod want;
// 2. the kernel
mod files;
pub mod firewall;
pub mod forwarding;
mod hostports;
pub mod kernel;
pub mod reaper;
pub mod reconcile;
#[cfg(test)]
mod testing;
mod watcher;
// 3. drivers
mod driver;
pub mod drivers;
mod ipam_driver;
// 4. the state
mod state;
// 5. operations and checks
pub mod doctor;
mod heal;
mod ops;
mod recovery;
// 6. the controller
mod controller;

pub use config::{Config, instance, set_instance};
pub use controller::{Controller, Endpoint, Handover, Network, Sandbox};
pub use doctor::{DoctorReport, Finding};
pub use driver::{
    Capabilities, Driver, Finder, JoinMode, JoinPlan, NetworkFacts, PlanNetwork, Registry, Scope,
    sandbox_ifname,
};
pub use error::{CoreError, ErrorKind, Result};
pub use files::ResolvConf;
pub use ids::{format_mac, parse_bool, parse_cidr, parse_ip, parse_mac, short_id};
pub use ipam::{IPAM_DRIVERS, is_builtin as is_builtin_ipam};
pub use ipam_driver::{AddressAsk, IpamDriver, IpamFinder, PoolAsk, PoolGrant};
pub use kernel::{HostKernel, HostOps, KernelView, Links, SandboxKernel, SandboxOps};
pub use lnet_store::{
    EndpointRecord, IpamPoolConfig, IpamSpec, JoinRecord, JoinState, Lifecycle, NetworkRecord,
    PoolAssignment, PortMapping, Proto, SandboxRecord,
};
pub use ops::{firewall_check_records, firewall_expected};
pub use options::{EndpointOptions, JoinOptions, NetworkOptions, SandboxOptions};
pub use ports::PortSpec;
pub use recovery::RecoveryReport;
pub use state::Records;
