//! The `lnet` binary: command-line entry point. The daemon and the Docker API come with the
//! daemon work; today it reports its version, reads a store offline, and shows and checks
//! the firewall lnet's records call for.

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
    /// Run the daemon: Docker's network API and lnet's API on a unix socket.
    Daemon(lnet_app::daemon::DaemonArgs),
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
    /// lnet's nftables ruleset: what the records call for, and how the kernel differs.
    Firewall {
        #[command(subcommand)]
        command: FirewallCommand,
    },
}

#[derive(Subcommand, Debug)]
enum FirewallCommand {
    /// Print the ruleset the records call for (table `inet lnet` with its elements, and
    /// lnet's accept rules in other tables), then how the kernel differs, if it does.
    Show(FirewallArgs),
    /// Compare the kernel's ruleset with the records; exit 1 when they differ.
    Check(FirewallArgs),
}

#[derive(clap::Args, Debug)]
struct FirewallArgs {
    /// The data root holding lnet.db.
    #[arg(long, default_value = "/var/lib/lnet", env = "LNET_DATA_ROOT")]
    data_root: PathBuf,
    /// The exec root holding the sandbox and endpoint records (`state/`).
    #[arg(long, default_value = "/run/lnet", env = "LNET_EXEC_ROOT")]
    exec_root: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            // The whole chain on one line, without a backtrace: users read this.
            eprintln!("lnet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the command; `Ok(false)` when it ran but found a difference to report (exit 1).
fn run() -> Result<bool> {
    let cli = Cli::parse();
    // The daemon logs at its --log-level (info by default); commands only warn.
    let level = match &cli.command {
        Command::Daemon(args) => {
            let explicit = std::env::args().any(|a| a.starts_with("--config-file"));
            let settings = lnet_app::daemon::Settings::resolve(args, explicit)?;
            init_logs(&settings.log_level);
            return lnet_app::daemon::run(settings).map(|()| true);
        }
        _ => "warn",
    };
    init_logs(level);
    match cli.command {
        Command::Daemon(_) => unreachable!("handled above"),
        Command::Version => {
            println!("lnet {}", env!("CARGO_PKG_VERSION"));
            println!("store schema {}", lnet_store::SCHEMA_VERSION);
        }
        Command::Store {
            data_root,
            exec_root,
            format,
        } => store_ls(&data_root, &exec_root, format)?,
        Command::Firewall { command } => {
            return match command {
                FirewallCommand::Show(a) => firewall(&a, false),
                FirewallCommand::Check(a) => firewall(&a, true),
            };
        }
    }
    Ok(true)
}

fn init_logs(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LNET_LOG")
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn firewall(args: &FirewallArgs, check: bool) -> Result<bool> {
    let loaded = load_store(&args.data_root, &args.exec_root)?.0;
    let want = lnet_core::firewall_expected(&loaded.networks, &loaded.endpoints);
    let drift = lnet_core::firewall_check_records(&loaded.networks, &loaded.endpoints)
        .context("read the kernel's nftables ruleset (run as root, in lnet's network namespace)")?;
    let elements = want.render();
    if args.format == Format::Json {
        let chains: serde_json::Map<String, serde_json::Value> =
            lnet_core::firewall::ruleset::CHAINS
                .iter()
                .map(|c| {
                    let rules: Vec<&str> = lnet_core::firewall::ruleset::rules(c)
                        .into_iter()
                        .map(|(_, t)| t)
                        .collect();
                    (c.name.to_string(), serde_json::json!(rules))
                })
                .collect();
        let mut v = serde_json::json!({ "drift": drift });
        if !check {
            v["table"] = serde_json::json!("inet lnet");
            v["chains"] = chains.into();
            v["elements"] = serde_json::json!(elements);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(drift.is_empty() || !check);
    }
    if !check {
        print!("{}", lnet_core::firewall::ruleset::describe(&elements));
        println!();
    }
    if drift.is_empty() {
        println!("the kernel's ruleset matches the records");
    } else {
        println!("{:<10} WHAT", "DRIFT");
        for d in &drift {
            println!("{:<10} {}", d.kind, d.what);
        }
    }
    Ok(drift.is_empty() || !check)
}

fn load_store(
    data_root: &std::path::Path,
    exec_root: &std::path::Path,
) -> Result<(lnet_store::Loaded, Vec<lnet_store::Quarantined>)> {
    let path = data_root.join("lnet.db");
    if !path.exists() {
        anyhow::bail!(
            "no store at {}: give the daemon's --data-root",
            path.display()
        );
    }
    let state = exec_root.join("state");
    lnet_store::Store::inspect(&path, Some(&state))
        .with_context(|| format!("read {}", path.display()))
}

fn store_ls(
    data_root: &std::path::Path,
    exec_root: &std::path::Path,
    format: Format,
) -> Result<()> {
    let (loaded, mut quarantined) = load_store(data_root, exec_root)?;
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
