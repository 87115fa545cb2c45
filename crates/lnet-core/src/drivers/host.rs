//! The host driver: containers share the host's network namespace. Nothing is made in the
//! kernel; a network of this driver only lets a host-mode sandbox be attached, as in Docker.

use lnet_store::{EndpointRecord, JoinRecord, NetworkRecord, SandboxRecord};

use crate::config::Config;
use crate::driver::{Driver, HostKernel, PlanNetwork, SandboxKernel};
use crate::error::{CoreError, Result};

/// The host driver.
#[derive(Debug, Default)]
pub struct HostDriver;

pub(crate) fn no_options(driver: &str, plan: &PlanNetwork<'_>) -> Result<()> {
    match plan.options.keys().next() {
        None => Ok(()),
        Some(k) => Err(CoreError::invalid(
            "Options",
            k,
            format!("the {driver} driver takes no options"),
        )),
    }
}

impl Driver for HostDriver {
    fn name(&self) -> &'static str {
        "host"
    }

    fn uses_ipam(&self) -> bool {
        false
    }

    fn singleton(&self) -> bool {
        true
    }

    fn plan_network(&self, plan: &mut PlanNetwork<'_>) -> Result<serde_json::Value> {
        no_options("host", plan)?;
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
            Ok(())
        } else {
            Err(CoreError::Forbidden(format!(
                "sandbox {} has its own network namespace and cannot join the host network; create it with host networking instead",
                sandbox.container_id
            )))
        }
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
