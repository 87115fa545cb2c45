//! The `lnet` binary: command-line entry point. The daemon and the Docker API come with the
//! daemon work; today it reports its version and reads a store offline.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "lnet",
    version,
    about = "Docker's Container Network Model on Linux"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print version information.
    Version,
    /// List what a store holds (networks, endpoints, sandboxes, quarantined records). Reads
    /// only; the store must not be open in a running lnet (redb locks it).
    Store {
        /// The data root holding lnet.db.
        #[arg(long, default_value = "/var/lib/lnet", env = "LNET_DATA_ROOT")]
        data_root: PathBuf,
        /// The exec root holding the sandbox and endpoint records (`state/`).
        #[arg(long, default_value = "/run/lnet", env = "LNET_EXEC_ROOT")]
        exec_root: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain on one line, without a backtrace: users read this.
            eprintln!("lnet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LNET_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("lnet {}", env!("CARGO_PKG_VERSION"));
            println!("store schema {}", lnet_store::SCHEMA_VERSION);
        }
        Command::Store {
            data_root,
            exec_root,
            format,
        } => store_ls(&data_root, &exec_root, format)?,
    }
    Ok(())
}

fn store_ls(
    data_root: &std::path::Path,
    exec_root: &std::path::Path,
    format: Format,
) -> Result<()> {
    let path = data_root.join("lnet.db");
    if !path.exists() {
        anyhow::bail!(
            "no store at {}: give the daemon's --data-root",
            path.display()
        );
    }
    let state = exec_root.join("state");
    let (loaded, mut quarantined) = lnet_store::Store::inspect(&path, Some(&state))
        .with_context(|| format!("read {}", path.display()))?;
    quarantined.extend(loaded.quarantined.iter().cloned().map(|mut q| {
        q.reason = format!("unreadable (not yet quarantined): {}", q.reason);
        q
    }));
    if format == Format::Json {
        let v = serde_json::json!({
            "networks": loaded.networks,
            "endpoints": loaded.endpoints,
            "sandboxes": loaded.sandboxes,
            "quarantined": quarantined,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<14} {:<20} {:<8} {:<9} SUBNETS",
        "NETWORK ID", "NAME", "DRIVER", "STATE"
    );
    for n in &loaded.networks {
        let subnets: Vec<String> = n.pools.iter().map(|p| p.pool.to_string()).collect();
        println!(
            "{:<14} {:<20} {:<8} {:<9} {}",
            lnet_core::short_id(&n.id),
            n.name,
            n.driver,
            n.state,
            subnets.join(",")
        );
    }
    println!();
    println!(
        "{:<14} {:<20} {:<14} {:<20} JOINED",
        "ENDPOINT ID", "NAME", "NETWORK", "IPV4"
    );
    for e in &loaded.endpoints {
        let joined = e.join.as_ref().map_or_else(
            || "-".to_string(),
            |j| format!("{} ({:?})", lnet_core::short_id(&j.sandbox_id), j.state).to_lowercase(),
        );
        println!(
            "{:<14} {:<20} {:<14} {:<20} {joined}",
            lnet_core::short_id(&e.id),
            e.name,
            lnet_core::short_id(&e.network_id),
            e.addr_v4.map_or_else(|| "-".into(), |a| a.to_string())
        );
    }
    println!();
    println!(
        "{:<14} {:<20} {:<9} KEY",
        "SANDBOX ID", "CONTAINER", "STATE"
    );
    for s in &loaded.sandboxes {
        println!(
            "{:<14} {:<20} {:<9} {}",
            lnet_core::short_id(&s.id),
            s.container_id,
            s.state,
            s.netns_path.display()
        );
    }
    if !quarantined.is_empty() {
        println!();
        println!("QUARANTINED");
        for q in &quarantined {
            println!("{}/{}: {}", q.kind, q.id, q.reason);
        }
    }
    Ok(())
}
