//! The built-in network drivers.

pub mod bridge;
pub mod passive;

use std::sync::Arc;

use crate::driver::Registry;

/// The built-in drivers: `bridge`, `host` and `null`.
pub fn builtin() -> Registry {
    let mut r = Registry::empty();
    for d in [
        Arc::new(bridge::BridgeDriver::default()) as Arc<dyn crate::driver::Driver>,
        Arc::new(passive::PassiveDriver::HOST),
        Arc::new(passive::PassiveDriver::NULL),
    ] {
        r.register(d)
            .expect("the built-in drivers have names of their own");
    }
    r
}
