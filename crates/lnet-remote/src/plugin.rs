//! One plugin as lnet talks to it, whatever it serves: found in the plugin directories,
//! activated on first use (`/Plugin.Activate`, then what the subsystem asks at activation),
//! called with a bound on every wait, and — once found unreachable — not waited for again
//! for [`DOWN_FOR`], then found and activated anew (it may have restarted elsewhere).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lnet_core::{CoreError, Result};
use serde_json::{Value, json};

use crate::client::{self, Addr, Bounds, CallError};
use crate::discovery::Dirs;

/// How long a plugin found unreachable is not retried for: calls fail at once meanwhile, so
/// a plugin that went away costs every other network nothing and its own one connection
/// attempt each.
pub(crate) const DOWN_FOR: Duration = Duration::from_secs(5);

/// What a subsystem learns at activation (a network driver's scope, an IPAM driver's
/// address spaces), from the calls `ask` makes: `/<Subsystem>.<method>` with `{}`.
pub(crate) type Setup<T> = fn(&mut dyn FnMut(&str) -> Result<Value>) -> Result<T>;

/// A plugin serving one subsystem (`NetworkDriver`, `IpamDriver`).
#[derive(Debug)]
pub(crate) struct Plugin<T> {
    pub(crate) name: String,
    subsystem: &'static str,
    /// How its errors name it (`network plugin x`).
    noun: &'static str,
    dirs: Arc<Dirs>,
    bounds: Bounds,
    /// lnet's own plugin socket: a daemon is never its own remote driver (its calls would
    /// wait on the very locks the caller holds).
    own: Option<PathBuf>,
    setup: Setup<T>,
    active: Mutex<Option<(Addr, T)>>,
    down_since: Mutex<Option<Instant>>,
}

impl<T: Clone> Plugin<T> {
    pub(crate) fn new(
        name: &str,
        (subsystem, noun): (&'static str, &'static str),
        dirs: Arc<Dirs>,
        bounds: Bounds,
        own: Option<PathBuf>,
        setup: Setup<T>,
    ) -> Self {
        Plugin {
            name: name.to_string(),
            subsystem,
            noun,
            dirs,
            bounds,
            own,
            setup,
            active: Mutex::new(None),
            down_since: Mutex::new(None),
        }
    }

    /// An error of this plugin's.
    pub(crate) fn err(&self, message: impl Into<String>, unreachable: bool) -> CoreError {
        CoreError::Driver {
            driver: format!("{} {}", self.noun, self.name),
            message: message.into(),
            unreachable,
        }
    }

    /// What activation learnt, if it is active; never a call.
    pub(crate) fn learnt(&self) -> Option<T> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, t)| t.clone())
    }

    /// Found and activated (it must implement the subsystem), then set up. Kept until the
    /// plugin cannot be reached.
    pub(crate) fn activate(&self) -> Result<(Addr, T)> {
        if let Some(a) = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(a);
        }
        let addr = self.dirs.find(&self.name).map_err(|e| {
            tracing::info!(plugin = %self.name, "{e}");
            CoreError::NotFound {
                kind: if self.subsystem == "IpamDriver" {
                    "IPAM driver or plugin"
                } else {
                    "network driver or plugin"
                },
                name: self.name.clone(),
            }
        })?;
        if let (Addr::Unix(p), Some(own)) = (&addr, &self.own)
            && (p == own
                || std::fs::canonicalize(p)
                    .ok()
                    .is_some_and(|c| Some(c) == std::fs::canonicalize(own).ok()))
        {
            return Err(self.err(
                "its socket is this lnet daemon's own: lnet serves its networks directly (-d bridge, --ipam-driver default)",
                false,
            ));
        }
        let bounds = self.bounds_now();
        let v = client::call(&addr, "/Plugin.Activate", &json!({}), bounds)
            .map_err(|e| self.note(e))?;
        let implements: Vec<&str> = v
            .get("Implements")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !implements.contains(&self.subsystem) {
            return Err(self.err(
                format!("it implements {implements:?}, not {}", self.subsystem),
                false,
            ));
        }
        let mut ask = |method: &str| {
            client::call(
                &addr,
                &format!("/{}.{method}", self.subsystem),
                &json!({}),
                bounds,
            )
            .map_err(|e| self.note(e))
        };
        let learnt = (self.setup)(&mut ask)?;
        let a = (addr, learnt);
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = Some(a.clone());
        tracing::info!(plugin = %self.name, addr = %a.0, subsystem = %self.subsystem, "plugin activated");
        Ok(a)
    }

    /// The bounds of the next call: no retries while the plugin is known to be down.
    fn bounds_now(&self) -> Bounds {
        let down = self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        match *down {
            Some(t) if t.elapsed() < DOWN_FOR => Bounds {
                retry: Duration::ZERO,
                ..self.bounds
            },
            _ => self.bounds,
        }
    }

    /// Remembers a call's failure: a plugin that cannot be reached is found and activated
    /// anew next time, and not waited for meanwhile.
    fn note(&self, e: CallError) -> CoreError {
        let unreachable = matches!(e, CallError::Unreachable { .. } | CallError::Timeout { .. });
        // A plugin that hangs is as good as gone: its next calls fail at once too.
        if unreachable {
            *self.down_since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            *self.active.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.err(e.to_string(), unreachable)
    }

    /// `/<Subsystem>.<method>` with `body`. A call the plugin does not implement (404) is
    /// answered `{}` when `optional`, as dockerd treats such calls.
    pub(crate) fn call(&self, method: &str, body: Value, optional: bool) -> Result<Value> {
        let (addr, _) = self.activate()?;
        let started = Instant::now();
        let res = client::call(
            &addr,
            &format!("/{}.{method}", self.subsystem),
            &body,
            self.bounds_now(),
        );
        tracing::debug!(plugin = %self.name, %method, ok = res.is_ok(), ms = started.elapsed().as_secs_f64() * 1e3, "plugin call");
        match res {
            Ok(v) => {
                *self.down_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(v)
            }
            Err(CallError::Refused { status: 404, .. }) if optional => Ok(json!({})),
            Err(e) => Err(self.note(e)),
        }
    }

    /// Whether it answers `/Plugin.Activate` now, waiting at most 5 s and never retrying.
    pub(crate) fn reachable(&self) -> std::result::Result<(), String> {
        let addr = self.dirs.find(&self.name)?;
        let quick = Bounds {
            answer: Duration::from_secs(5),
            retry: Duration::ZERO,
        };
        client::call(&addr, "/Plugin.Activate", &json!({}), quick)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}
