//! The drivers that make nothing in the kernel: `host`, whose sandboxes share the host's
//! network namespace (Docker's `--network host`), and `null`, whose sandboxes keep only their
//! loopback interface (`--network none`). A network of either exists so that a sandbox can be
//! attached to it, as in Docker; at most one of each may exist.

use lnet_store::{EndpointRecord, JoinRecord, NetworkRecord, SandboxRecord};

use crate::config::Config;
use crate::driver::{Capabilities, Driver, JoinMode, JoinPlan, PlanNetwork};
use crate::error::{CoreError, Result};
use crate::kernel::{HostOps, SandboxOps};

/// `host` or `null`.
#[derive(Debug)]
pub struct PassiveDriver {
    name: &'static str,
    /// Whether its sandboxes must share the host's namespace (`host`) or must not (`null`).
    host_mode: bool,
}

impl PassiveDriver {
    /// The `host` driver.
    pub const HOST: PassiveDriver = PassiveDriver {
        name: "host",
        host_mode: true,
    };
    /// The `null` driver.
    pub const NULL: PassiveDriver = PassiveDriver {
        name: "null",
        host_mode: false,
    };
}

impl Driver for PassiveDriver {
    fn name(&self) -> &str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            uses_ipam: false,
            singleton: true,
            host_mode: Some(self.host_mode),
            ..Capabilities::default()
        }
    }

    fn plan_network(&self, plan: &mut PlanNetwork<'_>) -> Result<serde_json::Value> {
        match plan.options.keys().next() {
            None => Ok(serde_json::Value::Null),
            Some(k) => Err(CoreError::invalid(
                "Options",
                k,
                format!("the {} driver takes no options", self.name),
            )),
        }
    }

    fn create_network(&self, _: &mut dyn HostOps, _: &NetworkRecord, _: &Config) -> Result<()> {
        Ok(())
    }

    fn delete_network(&self, _: &mut dyn HostOps, _: &NetworkRecord) -> Result<()> {
        Ok(())
    }

    fn plan_join(
        &self,
        _: &mut dyn HostOps,
        _: &NetworkRecord,
        _: &EndpointRecord,
        sandbox: &SandboxRecord,
    ) -> Result<JoinPlan> {
        match (self.host_mode, sandbox.host_mode) {
            (true, false) => Err(CoreError::Forbidden(format!(
                "sandbox {} has its own network namespace and cannot join the host network; create it with host networking instead",
                sandbox.container_id
            ))),
            (false, true) => Err(CoreError::Forbidden(format!(
                "sandbox {} uses host networking and cannot join a {} network",
                sandbox.container_id, self.name
            ))),
            _ => Ok(JoinPlan::default()),
        }
    }

    fn join(
        &self,
        _: &mut dyn HostOps,
        _: &mut dyn SandboxOps,
        _: &NetworkRecord,
        _: &EndpointRecord,
        _: &JoinRecord,
        _: JoinMode,
    ) -> Result<()> {
        Ok(())
    }

    fn leave(
        &self,
        _: &mut dyn HostOps,
        _: Option<&mut dyn SandboxOps>,
        _: &NetworkRecord,
        _: &EndpointRecord,
        _: &JoinRecord,
    ) -> Result<()> {
        Ok(())
    }
}
