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

mod config;
mod controller;
pub mod doctor;
mod driver;
pub mod drivers;
mod error;
pub mod failpoint;
mod files;
pub mod firewall;
pub mod forwarding;
mod ids;
mod index;
mod ipam;
mod ops;
pub mod ports;
pub mod reaper;
mod recovery;
mod watcher;

pub use config::Config;
pub use controller::{
    Controller, Endpoint, EndpointOptions, JoinOptions, Network, NetworkOptions, Records, Sandbox,
    SandboxOptions,
};
pub use doctor::{DoctorReport, Finding};
pub use driver::{Driver, HostKernel, KernelView, PlanNetwork, SandboxKernel};
pub use error::{CoreError, ErrorKind, Result};
pub use files::ResolvConf;
pub use ids::{format_mac, parse_cidr, parse_ip, parse_mac, short_id};
pub use ipam::IPAM_DRIVERS;
pub use lnet_store::{
    EndpointRecord, IpamPoolConfig, IpamSpec, JoinRecord, JoinState, Lifecycle, NetworkRecord,
    PoolAssignment, PortMapping, Proto, SandboxRecord,
};
pub use ops::{firewall_check_records, firewall_expected};
pub use ports::PortSpec;
pub use recovery::RecoveryReport;
