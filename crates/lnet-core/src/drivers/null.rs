//! The null driver: a sandbox with only its loopback interface (`--network none`).

use lnet_store::{EndpointRecord, JoinRecord, NetworkRecord, SandboxRecord};

use crate::config::Config;
use crate::driver::{Driver, HostKernel, PlanNetwork, SandboxKernel};
use crate::drivers::host::no_options;
use crate::error::{CoreError, Result};

/// The null driver.
#[derive(Debug, Default)]
pub struct NullDriver;

impl Driver for NullDriver {
    fn name(&self) -> &'static str {
        "null"
    }

    fn uses_ipam(&self) -> bool {
        false
    }

    fn singleton(&self) -> bool {
        true
    }

    fn plan_network(&self, plan: &mut PlanNetwork<'_>) -> Result<serde_json::Value> {
        no_options("null", plan)?;
        Ok(serde_json::Value::Null)
    }

    fn create_network(&self, _: &mut HostKernel, _: &NetworkRecord, _: &Config) -> Result<()> {
        Ok(())
    }

    fn delete_network(&self, _: &mut HostKernel, _: &NetworkRecord) -> Result<()> {
        Ok(())
    }

    fn check_sandbox(&self, sandbox: &SandboxRecord) -> Result<()> {
        if sandbox.host_mode {
            return Err(CoreError::Forbidden(format!(
                "sandbox {} uses host networking and cannot join a null network",
                sandbox.container_id
            )));
        }
        Ok(())
    }

    fn join(
        &self,
        _: &mut HostKernel,
        _: &mut SandboxKernel,
        _: &NetworkRecord,
        _: &EndpointRecord,
        _: &JoinRecord,
        _: bool,
    ) -> Result<()> {
        Ok(())
    }

    fn leave(
        &self,
        _: &mut HostKernel,
        _: Option<&mut SandboxKernel>,
        _: &NetworkRecord,
        _: &EndpointRecord,
        _: &JoinRecord,
    ) -> Result<()> {
        Ok(())
    }
}
