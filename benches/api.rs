//! The API's cost over the library's: network create + remove, and connect + disconnect of
//! a sandbox, through Docker's API on the unix socket and through the library, on the same
//! controller in the same run, with 1 and 1,000 networks present.
//!
//! Run as root with `cargo bench --bench api`; `LNET_BENCH_QUICK=1` uses 1 and 100
//! networks and fewer iterations. Not root: a recorded skip
//! (`lnet_kernel::testing::require_root`), exit 0.
//!
//! The server is lnet's own (`lnet_app::daemon`), in this process, on a socket in a
//! temporary directory; each request opens a new connection, as the `docker` CLI does.
//! Library and API rounds alternate, so slow kernel work (veth deletion) hits both alike.
//! After filling, the bench waits 15 s (`LNET_BENCH_SETTLE_SECS`) for the new bridges'
//! chatter to stop. Percentiles are nearest-rank. Safety: private mount namespace, new network namespace,
//! state in a temporary directory, every namespace mount removed at the end.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lnet_app::daemon::{AppState, DaemonInfo, routes};
use lnet_core::{Config, Controller, EndpointOptions, IpamPoolConfig, JoinOptions, NetworkOptions};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn request(sock: &Path, method: &str, path: &str, body: &str) -> Res<u16> {
    let mut s = UnixStream::connect(sock)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: lnet\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if !(200..300).contains(&status) {
        return Err(format!("{method} {path}: {out}").into());
    }
    Ok(status)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn subnet(i: usize) -> NetworkOptions {
    let mut o = NetworkOptions::default();
    o.ipam.v4.push(IpamPoolConfig {
        subnet: Some(
            format!("10.{}.{}.0/24", 100 + i / 256, i % 256)
                .parse()
                .expect("cidr"),
        ),
        ..Default::default()
    });
    o
}

fn main() {
    lnet_kernel::testing::run_isolated_bench("api", run);
}

struct Row {
    networks: usize,
    api_net: Vec<Duration>,
    lib_net: Vec<Duration>,
    api_conn: Vec<Duration>,
    lib_conn: Vec<Duration>,
}

fn run(root: &Path) -> Res<()> {
    let quick = std::env::var("LNET_BENCH_QUICK").is_ok_and(|v| v == "1");
    let sizes: &[usize] = if quick { &[1, 100] } else { &[1, 1000] };
    let iters = if quick { 10 } else { 60 };
    let settle = Duration::from_secs(
        std::env::var("LNET_BENCH_SETTLE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { 0 } else { 15 }),
    );
    let mut config = Config::rooted_at(root);
    config.enable_ip_forward = false;
    // As the daemon runs: links are deleted after the answer.
    config.background_deletes = true;
    config.embedded_dns = true;
    std::fs::write(root.join("resolv.conf"), "nameserver 192.0.2.53\n")?;
    config.host_resolv_conf = root.join("resolv.conf");
    let ctrl = Controller::new(config)?;
    let sock = root.join("lnet.sock");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = {
        let _g = rt.enter();
        tokio::net::UnixListener::from_std(lnet_app::daemon::bind_socket(&sock)?)?
    };
    let state = AppState {
        ctrl: ctrl.clone(),
        info: Arc::new(DaemonInfo::default()),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(lnet_app::daemon::serve(
        listener,
        routes::router(state),
        async {
            let _ = stop_rx.await;
        },
    ));

    let probe = ctrl.new_network("bridge", "probe", subnet(9999 % 4000))?;
    let sb = ctrl.new_sandbox("bench", Default::default())?;
    let mut rows = Vec::new();
    let mut present = 1; // `probe`
    for &size in sizes {
        let filling = present < size;
        while present < size {
            ctrl.new_network("bridge", &format!("fill{present}"), subnet(present))?;
            present += 1;
        }
        // New bridges keep the kernel busy for a while (IPv6 DAD, router solicitations, MLD):
        // measure a settled host. `LNET_BENCH_SETTLE_SECS` overrides (0 in quick mode).
        if filling {
            std::thread::sleep(settle);
        }
        let mut row = Row {
            networks: present,
            api_net: Vec::new(),
            lib_net: Vec::new(),
            api_conn: Vec::new(),
            lib_conn: Vec::new(),
        };
        for i in 0..iters {
            let s = subnet(3000 + i % 500);
            let cidr = format!("{}", s.ipam.v4[0].subnet.expect("subnet"));
            let api = |row: &mut Row| -> Res<()> {
                let body =
                    format!(r#"{{"Name":"m{i}","IPAM":{{"Config":[{{"Subnet":"{cidr}"}}]}}}}"#);
                let t = Instant::now();
                request(&sock, "POST", "/v1.50/networks/create", &body)?;
                request(&sock, "DELETE", &format!("/v1.50/networks/m{i}"), "")?;
                row.api_net.push(t.elapsed());
                let t = Instant::now();
                request(
                    &sock,
                    "POST",
                    "/v1.50/networks/probe/connect",
                    r#"{"Container":"bench"}"#,
                )?;
                request(
                    &sock,
                    "POST",
                    "/v1.50/networks/probe/disconnect",
                    r#"{"Container":"bench"}"#,
                )?;
                row.api_conn.push(t.elapsed());
                Ok(())
            };
            let lib = |row: &mut Row| -> Res<()> {
                let t = Instant::now();
                ctrl.new_network("bridge", &format!("m{i}"), subnet(3000 + i % 500))?
                    .delete()?;
                row.lib_net.push(t.elapsed());
                let t = Instant::now();
                let ep = probe.create_endpoint("bench", EndpointOptions::default())?;
                ep.join(&sb, JoinOptions::default())?;
                ep.leave(&sb)?;
                ep.delete()?;
                row.lib_conn.push(t.elapsed());
                Ok(())
            };
            if i % 2 == 0 {
                api(&mut row)?;
                lib(&mut row)?;
            } else {
                lib(&mut row)?;
                api(&mut row)?;
            }
        }
        rows.push(row);
    }
    let _ = stop_tx.send(());
    rt.block_on(server)?;

    println!(
        "api: through Docker's API on the unix socket vs the library, same controller (p50 / p99, ms)"
    );
    println!(
        "{:>9} | {:>19} {:>19} | {:>21} {:>19}",
        "networks",
        "API create+remove",
        "lib create+remove",
        "API connect+disconn.",
        "lib connect+disconn."
    );
    let cell = |v: &[Duration]| format!("{:.3} / {:.3}", ms(pct(v, 0.5)), ms(pct(v, 0.99)));
    for r in &rows {
        println!(
            "{:>9} | {:>19} {:>19} | {:>21} {:>19}",
            r.networks,
            cell(&r.api_net),
            cell(&r.lib_net),
            cell(&r.api_conn),
            cell(&r.lib_conn)
        );
    }
    for r in &rows {
        println!(
            "{} networks: the API adds {:.3} ms to create+remove and {:.3} ms to connect+disconnect (p50); vs Docker 20.10 (250 / 80 ms): {:.0}x / {:.0}x faster",
            r.networks,
            ms(pct(&r.api_net, 0.5)) - ms(pct(&r.lib_net, 0.5)),
            ms(pct(&r.api_conn, 0.5)) - ms(pct(&r.lib_conn, 0.5)),
            250.0 / ms(pct(&r.api_net, 0.5)),
            80.0 / ms(pct(&r.api_conn, 0.5)),
        );
    }
    Ok(())
}
