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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Fake, endpoint, join_record, sandbox_record};

    fn network(driver: &str) -> NetworkRecord {
        let mut n: NetworkRecord = serde_json::from_value(serde_json::json!({
            "schema": 1, "state": "ready", "revision": 1, "id": "0".repeat(64),
            "name": driver, "driver": driver, "scope": "local", "created_unix_nanos": 0,
            "ipam": {"driver": "null"}, "pools": [], "enable_ipv6": false, "internal": false,
            "attachable": false, "labels": {}, "options": {}, "driver_state": null
        }))
        .unwrap();
        n.name = driver.into();
        n
    }

    #[test]
    fn host_takes_only_host_mode_sandboxes_and_null_only_the_others() {
        let fake = Fake::new();
        let ep = endpoint(false);
        for (d, host_mode, ok) in [
            (&PassiveDriver::HOST, true, true),
            (&PassiveDriver::HOST, false, false),
            (&PassiveDriver::NULL, false, true),
            (&PassiveDriver::NULL, true, false),
        ] {
            let net = network(d.name);
            let got = d.plan_join(&mut fake.host(), &net, &ep, &sandbox_record(host_mode));
            match (got, ok) {
                (Ok(plan), true) => assert_eq!(plan, JoinPlan::default(), "no interface"),
                (Err(e), false) => assert!(e.to_string().contains("sandbox c"), "{e}"),
                (got, _) => panic!("{} with host_mode {host_mode}: {got:?}", d.name),
            }
        }
    }

    #[test]
    fn they_take_no_options_and_ask_nothing_of_the_kernel() {
        let fake = Fake::new();
        let opts: std::collections::BTreeMap<String, String> = [(
            "com.docker.network.bridge.name".to_string(),
            "x".to_string(),
        )]
        .into();
        for d in [&PassiveDriver::HOST, &PassiveDriver::NULL] {
            let mut host = fake.host();
            let mut plan = crate::drivers::plan_of("i", &opts, vec![], &mut host);
            let e = d.plan_network(&mut plan).unwrap_err().to_string();
            assert!(e.contains("takes no options"), "{e}");
            let net = network(d.name);
            let (ep, j) = (endpoint(false), join_record());
            d.create_network(&mut fake.host(), &net, &Config::default())
                .unwrap();
            d.join(
                &mut fake.host(),
                &mut fake.sandbox(),
                &net,
                &ep,
                &j,
                JoinMode::Fresh,
            )
            .unwrap();
            d.leave(&mut fake.host(), Some(&mut fake.sandbox()), &net, &ep, &j)
                .unwrap();
            d.delete_network(&mut fake.host(), &net).unwrap();
            assert_eq!(fake.take_calls(), Vec::<String>::new(), "{}", d.name);
            let caps = d.capabilities();
            assert!(!caps.uses_ipam && caps.singleton);
        }
    }
}
