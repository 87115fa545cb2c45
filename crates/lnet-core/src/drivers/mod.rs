//! The built-in network drivers.

pub mod bridge;
pub mod passive;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::driver::Driver;

/// The built-in drivers by name.
pub(crate) fn builtin() -> BTreeMap<&'static str, Arc<dyn Driver>> {
    let list: [Arc<dyn Driver>; 3] = [
        Arc::new(bridge::BridgeDriver::default()),
        Arc::new(passive::PassiveDriver::HOST),
        Arc::new(passive::PassiveDriver::NULL),
    ];
    list.into_iter().map(|d| (d.name(), d)).collect()
}
