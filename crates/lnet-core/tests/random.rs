//! A randomised run: a long mixed workload of every operation, with crashes armed at random
//! failpoints now and then. After every crash the controller restarts, and the start must
//! converge (`assert_converged`: records, kernel and files agree; nothing leaked; a second
//! start finds nothing to do). Refusals are fine — the workload does not avoid conflicts on
//! purpose — but an internal error is not. The seed is printed; `LNET_TEST_SEED` replays one.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::*;
use lnet_core::{Controller, EndpointOptions, ErrorKind, JoinOptions, failpoint};

/// A small deterministic generator (xorshift64*): reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        (!v.is_empty()).then(|| &v[self.below(v.len())])
    }
}

fn names<T>(items: Vec<T>, name: impl Fn(&T) -> String) -> Vec<String> {
    items.iter().map(name).collect()
}

/// One random operation. Returns what it did, for the failure message.
fn step(ctrl: &Controller, rng: &mut Rng, serial: &mut u32) -> (String, lnet_core::Result<()>) {
    let nets = names(ctrl.networks(), |n| n.name().to_string());
    let sbs = names(ctrl.sandboxes(), |s| s.container_id().to_string());
    let eps: Vec<(String, String, bool)> = ctrl
        .networks()
        .iter()
        .flat_map(|n| {
            n.endpoints()
                .into_iter()
                .map(|e| {
                    let joined = e.info().is_ok_and(|i| i.join.is_some());
                    (n.name().to_string(), e.name().to_string(), joined)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    *serial += 1;
    let k = *serial;
    match rng.below(8) {
        0 => (
            format!("create network n{k}"),
            ctrl.new_network("bridge", &format!("n{k}"), Default::default())
                .map(drop),
        ),
        1 => match rng.pick(&nets) {
            Some(n) => (
                format!("delete network {n}"),
                ctrl.network(n).and_then(|n| n.delete()),
            ),
            None => ("nothing".into(), Ok(())),
        },
        2 => (
            format!("create sandbox s{k}"),
            ctrl.new_sandbox(&format!("s{k}"), Default::default())
                .map(drop),
        ),
        3 => match rng.pick(&sbs) {
            Some(s) => (
                format!("delete sandbox {s}"),
                ctrl.sandbox(s).and_then(|s| s.delete()),
            ),
            None => ("nothing".into(), Ok(())),
        },
        4 => match rng.pick(&nets) {
            Some(n) => {
                // Half the endpoints publish ports (an ephemeral one, and a fixed one that
                // clashes now and then: a refusal must leave nothing behind either).
                let ports = match rng.below(2) {
                    0 => Vec::new(),
                    _ => ["80", &format!("{}:81/udp", 8000 + rng.below(4))]
                        .iter()
                        .map(|p| lnet_core::PortSpec::parse(p).unwrap())
                        .collect(),
                };
                (
                    format!(
                        "create endpoint e{k} on {n} publishing {} port(s)",
                        ports.len()
                    ),
                    ctrl.network(n)
                        .and_then(|n| {
                            n.create_endpoint(
                                &format!("e{k}"),
                                EndpointOptions {
                                    ports,
                                    ..Default::default()
                                },
                            )
                        })
                        .map(drop),
                )
            }
            None => ("nothing".into(), Ok(())),
        },
        5 => {
            let free: Vec<_> = eps.iter().filter(|e| !e.2).collect();
            match (rng.pick(&free), rng.pick(&sbs)) {
                (Some((n, e, _)), Some(s)) => (
                    format!("join {e} of {n} to {s}"),
                    ctrl.network(n)
                        .and_then(|n| n.endpoint_by_name(e))
                        .and_then(|e| e.join(&ctrl.sandbox(s)?, JoinOptions::default())),
                ),
                _ => ("nothing".into(), Ok(())),
            }
        }
        6 => {
            let joined: Vec<_> = eps.iter().filter(|e| e.2).collect();
            match rng.pick(&joined) {
                Some((n, e, _)) => {
                    let ep = ctrl.network(n).and_then(|n| n.endpoint_by_name(e));
                    let res = ep.and_then(|ep| {
                        let sb = ep.info()?.join.map(|j| j.sandbox_id).unwrap_or_default();
                        ep.leave(&ctrl.sandbox(&sb)?)
                    });
                    (format!("leave {e} of {n}"), res)
                }
                None => ("nothing".into(), Ok(())),
            }
        }
        _ => match rng.pick(&eps) {
            Some((n, e, _)) => (
                format!("delete endpoint {e} of {n}"),
                ctrl.network(n)
                    .and_then(|n| n.endpoint_by_name(e))
                    .and_then(|e| e.delete()),
            ),
            None => ("nothing".into(), Ok(())),
        },
    }
}

#[test]
fn random_operations_with_crashes_always_converge() {
    let Some(mut env) = common::env("random_operations_with_crashes_always_converge") else {
        return;
    };
    let seed = std::env::var("LNET_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("random_operations_with_crashes_always_converge: LNET_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let (mut serial, mut crashes) = (0u32, 0u32);
    for i in 0..120 {
        let armed = (rng.below(2) == 0).then(|| *rng.pick(failpoint::ALL).expect("failpoints"));
        if let Some(fp) = armed {
            failpoint::arm(fp);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| step(env.ctrl(), &mut rng, &mut serial)));
        failpoint::disarm();
        match outcome {
            Ok((what, Ok(()))) => eprintln!("  {i}: {what}"),
            Ok((what, Err(e))) => {
                eprintln!("  {i}: {what}: refused: {e}");
                assert_ne!(
                    e.kind(),
                    ErrorKind::Internal,
                    "step {i} ({what}), seed {seed}: {e}"
                );
            }
            Err(_) => {
                crashes += 1;
                eprintln!("  {i}: crashed at {}", armed.unwrap_or("?"));
                env.restart();
                assert_converged(&mut env);
            }
        }
    }
    eprintln!("random run: {serial} operations, {crashes} crashes, seed {seed}");
    env.restart();
    assert_converged(&mut env);
}
