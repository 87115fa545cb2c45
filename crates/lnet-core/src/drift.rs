//! Drift: what differs between what lnet's records call for and what the kernel holds, as
//! `doctor` reports it and repairs act on it. Plain data; it reads nothing itself.

use serde::Serialize;

/// One difference between the records and the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `missing` (the records call for it, the kernel lacks it), `extra` (the kernel has
    /// it, no record calls for it) or `different`.
    pub kind: &'static str,
    /// What it belongs to: `network web`, `sandbox a`, `firewall`.
    pub object: String,
    /// What differs, in the kernel's terms: `bridge br-12ab`, `address 10.0.0.2/24 on eth0`.
    pub what: String,
}

/// Findings as a check collects them, about one object at a time.
#[derive(Debug, Default)]
pub struct Findings {
    object: String,
    list: Vec<Finding>,
}

impl Findings {
    /// What the following findings are about.
    pub fn about(&mut self, object: impl Into<String>) {
        self.object = object.into();
    }

    pub(crate) fn push(&mut self, kind: &'static str, what: String) {
        self.list.push(Finding {
            kind,
            object: self.object.clone(),
            what,
        });
    }

    /// Each of a driver's [`crate::want::Drift`], as a finding about the current object.
    pub fn drift(&mut self, drift: &[crate::want::Drift]) {
        for d in drift {
            self.push(d.kind(), d.to_string());
        }
    }

    /// The findings, in the order found.
    pub fn into_vec(self) -> Vec<Finding> {
        self.list
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The records call for `what`; the kernel lacks it.
    pub fn missing(&mut self, what: impl Into<String>) {
        self.push("missing", what.into());
    }

    /// The kernel has `what`; no record calls for it.
    pub fn extra(&mut self, what: impl Into<String>) {
        self.push("extra", what.into());
    }

    /// `what` is there, but not as the records say.
    pub fn different(&mut self, what: impl Into<String>) {
        self.push("different", what.into());
    }
}
