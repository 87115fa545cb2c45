//! Allocator throughput on a full /16, against the simplest possible
//! allocator as a yardstick.
//!
//! Run with `cargo bench -p lnet-ipam`; `LNET_BENCH_QUICK=1` cuts the
//! repetitions from 31 to 3. "ns/op" is per address: one allocation plus
//! one release.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use lnet_ipam::{AddressRequest, AddressSpace, Ipam, IpamConfig, PoolRequest};

/// Host addresses of a /16: 2^16 minus network and broadcast.
const ADDRESSES: usize = 65_534;

/// Marsaglia's xorshift64: enough randomness for a shuffle, no dependency,
/// and a fixed seed keeps runs comparable.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Allocates every address of a fresh /16, then releases them in `order`
/// (indices into the allocation sequence). Only the loops are timed.
fn ipam_round(order: Option<&[usize]>) -> Duration {
    let mut ipam = Ipam::new(IpamConfig::default()).expect("default config is valid");
    let req = PoolRequest {
        space: AddressSpace::Local,
        pool: Some("10.0.0.0/16".parse::<IpNet>().expect("literal prefix")),
        ..PoolRequest::default()
    };
    let lease = ipam.request_pool(&req).expect("empty allocator has room");
    let mut addrs: Vec<IpAddr> = Vec::with_capacity(ADDRESSES);
    let any = AddressRequest::default();
    let t = Instant::now();
    for _ in 0..ADDRESSES {
        let a = ipam
            .request_address(&lease.id, &any)
            .expect("pool not full yet");
        addrs.push(a.addr());
    }
    match order {
        None => {
            for a in &addrs {
                ipam.release_address(&lease.id, *a)
                    .expect("allocated above");
            }
        }
        Some(order) => {
            for &i in order {
                ipam.release_address(&lease.id, addrs[i])
                    .expect("allocated above");
            }
        }
    }
    let elapsed = t.elapsed();
    assert_eq!(ipam.free_count(&lease.id), Some(ADDRESSES as u128));
    black_box(&ipam);
    elapsed
}

/// The yardstick: a `Vec<bool>` with a lowest-free hint, the simplest
/// allocator that still hands out the lowest free slot.
fn baseline_round(order: Option<&[usize]>) -> Duration {
    let mut bits = vec![false; ADDRESSES + 2];
    bits[0] = true;
    bits[ADDRESSES + 1] = true;
    let mut hint = 1;
    let mut got = Vec::with_capacity(ADDRESSES);
    let t = Instant::now();
    for _ in 0..ADDRESSES {
        while bits[hint] {
            hint += 1;
        }
        bits[hint] = true;
        got.push(hint);
    }
    let mut release = |i: usize| {
        bits[i] = false;
        hint = hint.min(i);
    };
    match order {
        None => got.iter().for_each(|&i| release(i)),
        Some(order) => order.iter().for_each(|&k| release(got[k])),
    }
    let elapsed = t.elapsed();
    black_box(&bits);
    elapsed
}

struct Stats {
    median: Duration,
    p99: Duration,
}

fn measure(reps: usize, mut round: impl FnMut() -> Duration) -> Stats {
    round(); // warm-up: page faults and allocator growth are not the point
    let mut samples: Vec<Duration> = (0..reps).map(|_| round()).collect();
    samples.sort();
    // Nearest-rank percentiles.
    let rank = |p: f64| samples[((p * reps as f64).ceil() as usize).clamp(1, reps) - 1];
    Stats {
        median: rank(0.5),
        p99: rank(0.99),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(name: &str, s: &Stats, baseline: Option<&Stats>) {
    let per_op = s.median.as_nanos() as f64 / ADDRESSES as f64;
    let ratio = baseline
        .map(|b| {
            format!(
                " — {:.1}x plain Vec<bool> baseline",
                s.median.as_secs_f64() / b.median.as_secs_f64()
            )
        })
        .unwrap_or_default();
    println!(
        "{name}: median {:.2} ms p99 {:.2} ms ({ADDRESSES} addresses, {per_op:.0} ns/op){ratio}",
        ms(s.median),
        ms(s.p99)
    );
}

fn main() {
    let quick = std::env::var("LNET_BENCH_QUICK").is_ok_and(|v| v == "1");
    let reps = if quick { 3 } else { 31 };
    let mut shuffled: Vec<usize> = (0..ADDRESSES).collect();
    XorShift(0x9E37_79B9_7F4A_7C15).shuffle(&mut shuffled);

    let base_ordered = measure(reps, || baseline_round(None));
    let base_shuffled = measure(reps, || baseline_round(Some(&shuffled)));
    let ordered = measure(reps, || ipam_round(None));
    let random = measure(reps, || ipam_round(Some(&shuffled)));

    println!("{reps} repetitions each");
    report(
        "ipam/16 alloc+release all (ordered)",
        &ordered,
        Some(&base_ordered),
    );
    report(
        "ipam/16 alloc+release all (shuffled release)",
        &random,
        Some(&base_shuffled),
    );
    report("baseline Vec<bool> (ordered)", &base_ordered, None);
    report(
        "baseline Vec<bool> (shuffled release)",
        &base_shuffled,
        None,
    );
}
