//! The built-in network drivers.

pub mod bridge;
pub mod host;
pub mod null;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::driver::Driver;

/// The built-in drivers by name.
pub(crate) fn builtin() -> BTreeMap<&'static str, Arc<dyn Driver>> {
    let list: [Arc<dyn Driver>; 3] = [
        Arc::new(bridge::BridgeDriver::default()),
        Arc::new(host::HostDriver),
        Arc::new(null::NullDriver),
    ];
    list.into_iter().map(|d| (d.name(), d)).collect()
}
