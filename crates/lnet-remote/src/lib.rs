//! lnet-remote owns lnet's remote drivers: network plugins that speak Docker's plugin
//! protocol, found where dockerd finds them (`/run/docker/plugins`, `/etc/docker/plugins`,
//! `/usr/lib/docker/plugins`), activated on first use, and called as dockerd calls them —
//! with dockerd's back-off when a plugin cannot be reached, and, unlike dockerd, a bound on
//! every wait, so a plugin that hangs cannot hang lnet. [`finder`] gives the controller's
//! driver registry a way to find them by name ([`lnet_core::Registry::with_finder`]), and
//! [`ipam_finder`] IPAM plugins likewise; the controller journals around each call as
//! around any kernel step.
//!
//! It sits beside lnet-core's built-in drivers, above the protocol's types (lnet-plugin);
//! lnet-core knows nothing of HTTP.

pub mod client;
pub mod discovery;
mod driver;
mod ipam;
mod plugin;

use std::path::PathBuf;
use std::sync::Arc;

pub use client::{Addr, Bounds, CallError};
pub use discovery::Dirs;
pub use driver::RemoteDriver;
pub use ipam::RemoteIpam;

/// How remote drivers are found and called.
#[derive(Debug, Clone, Default)]
pub struct RemoteConfig {
    /// Where plugins are looked for.
    pub dirs: Dirs,
    /// How long calls may take.
    pub bounds: Bounds,
    /// This daemon's own plugin socket, never taken for a remote driver.
    pub own_socket: Option<PathBuf>,
}

/// A finder for [`lnet_core::Registry::with_finder`]: any name a plugin could have may be a
/// plugin's (whether one is there is learnt when it is first used, so that a network whose
/// plugin has gone keeps its records and is reported, not dropped).
pub fn finder(config: RemoteConfig) -> Arc<lnet_core::Finder> {
    let find = finding(config);
    Arc::new(move |name: &str| {
        find(name).map(|(dirs, bounds, own)| {
            Arc::new(RemoteDriver::new(name, dirs, bounds, own)) as Arc<dyn lnet_core::Driver>
        })
    })
}

/// A finder for [`lnet_core::Registry::with_ipam_finder`]: IPAM plugins, as [`finder`] finds
/// network plugins.
pub fn ipam_finder(config: RemoteConfig) -> Arc<lnet_core::IpamFinder> {
    let find = finding(config);
    Arc::new(move |name: &str| {
        find(name).map(|(dirs, bounds, own)| {
            Arc::new(RemoteIpam::new(name, dirs, bounds, own)) as Arc<dyn lnet_core::IpamDriver>
        })
    })
}

/// What a plugin of a name is made with, for any name a plugin could have.
type Making = (Arc<Dirs>, Bounds, Option<PathBuf>);

fn finding(config: RemoteConfig) -> impl Fn(&str) -> Option<Making> {
    let dirs = Arc::new(config.dirs);
    move |name: &str| {
        discovery::valid_name(name)
            .then(|| (dirs.clone(), config.bounds, config.own_socket.clone()))
    }
}
