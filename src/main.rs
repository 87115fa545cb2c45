//! The `lnet` binary: command-line entry point. `lnet daemon` serves the API; `network`,
//! `sandbox`, `info` and `version` talk to it over its socket (`-H`, `LNET_HOST`); `store`
//! and `firewall` read a store offline. Exit codes: 0 done, 1 error, 2 usage (clap's).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use lnet_app::cli::{self, ListFormat, NetworkCommand, SandboxCommand};
use lnet_app::client::{Client, DEFAULT_HOST};

#[derive(Parser, Debug)]
#[command(
    name = "lnet",
    version,
    about = "Docker's Container Network Model on Linux"
)]
struct Cli {
    /// The daemon's socket (for network, sandbox, info, version).
    #[arg(short = 'H', long = "host", env = "LNET_HOST", default_value = DEFAULT_HOST)]
    host: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: Docker's network API and lnet's API on a unix socket.
    Daemon(lnet_app::daemon::DaemonArgs),
    /// Print the client's version, and the daemon's when it answers.
    Version {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Manage networks.
    Network {
        #[command(subcommand)]
        command: NetworkCommand,
    },
    /// Manage sandboxes (the network side of containers).
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
    /// Show what the daemon holds and runs on.
    Info {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Print a shell completion script: `source <(lnet completion bash)`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// List what a store holds (networks, endpoints, sandboxes, quarantined records). Reads
    /// only; the store must not be open in a running lnet (redb locks it).
    Store(StoreArgs),
    /// lnet's nftables ruleset: what the records call for, and how the kernel differs.
    Firewall {
        #[command(subcommand)]
        command: FirewallCommand,
    },
    /// Compare the records with the kernel — bridges, veth pairs, addresses, routes,
    /// namespaces, files, resolvers, the firewall — and list what differs; exit 1 when
    /// anything does. Asks the running daemon, or reads the store when none runs.
    Doctor(DoctorArgs),
}

/// `lnet doctor`.
#[derive(clap::Args, Debug)]
struct DoctorArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Put right what differs (the reconciliation lnet runs at start), then compare again.
    #[arg(long)]
    repair: bool,
}

#[derive(Subcommand, Debug)]
enum FirewallCommand {
    /// Print the ruleset the records call for (table `inet lnet` with its elements, and
    /// lnet's accept rules in other tables), then how the kernel differs, if it does.
    Show(StoreArgs),
    /// Compare the kernel's ruleset with the records; exit 1 when they differ.
    Check(StoreArgs),
}

/// Where a store is, and how to print what is read from it.
#[derive(clap::Args, Debug)]
struct StoreArgs {
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
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("lnet: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The whole chain of an error on one line, without a backtrace: users read this. The
/// library errors already show their cause in their own message, so a cause whose text
/// is there already is not said again.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Runs the command; the exit code: 1 when it ran but found a difference or a failure to
/// report, the command's own for `sandbox exec`.
fn run() -> Result<u8> {
    let matches = Cli::command().get_matches();
    let host_given = matches.value_source("host") == Some(clap::parser::ValueSource::CommandLine);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    run_cli(cli, host_given).map(|ok| if ok { 0 } else { 1 })
}

fn run_cli(cli: Cli, host_given: bool) -> Result<bool> {
    // The daemon logs at its --log-level (info by default); commands only warn.
    let level = match &cli.command {
        Command::Daemon(args) => {
            if host_given {
                bail!(
                    "-H before `daemon` names the socket clients use; give it after: lnet daemon -H {}",
                    cli.host
                );
            }
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
        Command::Version { format } => return version(&cli.host, format),
        Command::Network { command } => return cli::network(&Client::new(&cli.host)?, command),
        Command::Sandbox {
            command: SandboxCommand::Exec(a),
        } => {
            // Only returns when the command could not be run.
            let code = cli::sandbox_exec(&cli.host, &a)?;
            std::process::exit(code.into());
        }
        Command::Sandbox { command } => return cli::sandbox(&Client::new(&cli.host)?, command),
        Command::Info { format } => return cli::info(&Client::new(&cli.host)?, format),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "lnet", &mut std::io::stdout());
        }
        Command::Store(a) => store_ls(&a.data_root, &a.exec_root, a.format)?,
        Command::Firewall { command } => {
            return match command {
                FirewallCommand::Show(a) => firewall(&a, &cli.host, false),
                FirewallCommand::Check(a) => firewall(&a, &cli.host, true),
            };
        }
        Command::Doctor(a) => return doctor(&a, &cli.host),
    }
    Ok(true)
}

/// The client's version, then the daemon's; a daemon that does not answer is reported on
/// stderr without failing, so `lnet version` works where no daemon runs.
fn version(host: &str, format: ListFormat) -> Result<bool> {
    // Named as Go names it, as the daemon's /version does.
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let client = serde_json::json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": lnet_app::api::API_VERSION,
        "StoreSchema": lnet_store::SCHEMA_VERSION,
        "Os": "linux",
        "Arch": arch,
    });
    let server = Client::new(host)?;
    let server = cli::server_version(&server);
    if format == ListFormat::Json {
        let v = serde_json::json!({
            "Client": client,
            "Server": server.as_ref().ok(),
        });
        cli::print_json(&v)?;
    } else {
        println!("Client: lnet");
        println!(" Version:       {}", env!("CARGO_PKG_VERSION"));
        println!(" API version:   {}", lnet_app::api::API_VERSION);
        println!(" Store schema:  {}", lnet_store::SCHEMA_VERSION);
        println!(" OS/Arch:       linux/{arch}");
        if let Ok(s) = &server {
            let t = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            println!();
            println!("Server: lnet");
            println!(" Version:       {}", t("Version"));
            println!(
                " API version:   {} (minimum version {})",
                t("ApiVersion"),
                t("MinAPIVersion")
            );
            println!(" OS/Arch:       {}/{}", t("Os"), t("Arch"));
            println!(" Kernel:        {}", t("KernelVersion"));
        }
    }
    if let Err(e) = server {
        eprintln!("lnet: server: {e}");
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

/// Rendered set elements, by set name.
type Elements = BTreeMap<String, Vec<String>>;

/// What the records call for and how the kernel differs: read from the store when no
/// daemon holds it, else asked of the daemon (which holds the store's lock).
fn firewall(args: &StoreArgs, host: &str, check: bool) -> Result<bool> {
    let (elements, drift): (Elements, Vec<(String, String)>) =
        match load_store(&args.data_root, &args.exec_root) {
            Ok((loaded, _)) => {
                // What the daemon turned on, with its --ip-forward-no-drop, as it recorded.
                let guarded = lnet_core::forwarding::Forwarding::load(&args.exec_root)
                    .0
                    .guarded();
                let drivers = lnet_core::drivers::builtin();
                let want = lnet_core::firewall_expected(
                    &loaded.networks,
                    &loaded.endpoints,
                    &guarded,
                    &drivers,
                );
                let drift = lnet_core::firewall_check_records(
                    &loaded.networks,
                    &loaded.endpoints,
                    &guarded,
                    &drivers,
                )
                .context(
                    "read the kernel's nftables ruleset (run as root, in lnet's network namespace)",
                )?;
                (
                    want.render()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    drift
                        .into_iter()
                        .map(|d| (d.kind.to_string(), d.what))
                        .collect(),
                )
            }
            Err(offline) => {
                let daemon = Client::new(host)
                    .and_then(|c| c.get("/lnet/firewall"))
                    .map_err(|e| {
                        offline.context(format!("and the daemon at {host} did not answer: {e}"))
                    })?;
                let elements = serde_json::from_value(daemon["elements"].clone())
                    .context("the daemon's firewall elements")?;
                let drift = daemon["drift"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        (
                            d["kind"].as_str().unwrap_or_default().to_string(),
                            d["what"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                (elements, drift)
            }
        };
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
        let drift_json: Vec<serde_json::Value> = drift
            .iter()
            .map(|(kind, what)| serde_json::json!({ "kind": kind, "what": what }))
            .collect();
        let mut v = serde_json::json!({ "drift": drift_json });
        if !check {
            v["table"] = serde_json::json!("inet lnet");
            v["chains"] = chains.into();
            v["elements"] = serde_json::json!(elements);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(drift.is_empty() || !check);
    }
    if !check {
        let by_name = elements
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        print!("{}", lnet_core::firewall::ruleset::describe(&by_name));
        println!();
    }
    if drift.is_empty() {
        println!("the kernel's ruleset matches the records");
    } else {
        println!("{:<10} WHAT", "DRIFT");
        for (kind, what) in &drift {
            println!("{kind:<10} {what}");
        }
    }
    Ok(drift.is_empty() || !check)
}

/// `lnet doctor [--repair]`: from the store when no daemon holds it, else asked of the
/// daemon. Whether the records and the kernel agree (at the end).
fn doctor(args: &DoctorArgs, host: &str) -> Result<bool> {
    let mut config = lnet_core::Config {
        data_root: args.store.data_root.clone(),
        exec_root: args.store.exec_root.clone(),
        ..Default::default()
    };
    // A daemon holds the exec root's lock for its life, and while it does the kernel's
    // objects are its, whatever the store on disk says: a store deleted under a running
    // daemon must not make an offline doctor report, or `--repair` remove, the daemon's
    // bridges and namespaces. Held here until the offline doctor is done, so that no
    // daemon starts on the exec root meanwhile. (No exec root: no daemon, no lock.)
    let instance = if config.exec_root.is_dir() {
        lnet_app::daemon::lock_exec_root(&config.exec_root, std::time::Duration::ZERO).map(Some)
    } else {
        Ok(None)
    };
    // A data root without its store is one whose store was lost (or moved aside): what
    // lnet left in the kernel is then what doctor must show. Without the directory the
    // path is most likely mistyped, and no store is made there.
    let offline = if let Err(running) = instance.as_ref() {
        Err(anyhow::anyhow!("{running:#}"))
    } else if !config.store_path().exists() && !config.data_root.is_dir() {
        Err(anyhow::anyhow!(
            "no store at {}: give the daemon's --data-root",
            config.store_path().display()
        ))
    } else if args.repair {
        config.background_deletes = false;
        lnet_core::Controller::doctor_offline(config.clone())
            .and_then(|before| Ok((before, lnet_core::Controller::new(config)?)))
            .map(|(before, c)| {
                let repair = serde_json::to_value(c.recovery_report()).unwrap_or_default();
                serde_json::json!({ "before": before, "repair": repair, "doctor": c.doctor() })
            })
            .map_err(anyhow::Error::from)
    } else {
        lnet_core::Controller::doctor_offline(config)
            .map(|d| serde_json::json!({ "doctor": d }))
            .map_err(anyhow::Error::from)
    };
    let v = match offline {
        Ok(v) => v,
        Err(offline) => {
            let c = Client::new(host)?;
            let asked = if args.repair {
                c.post("/lnet/doctor/repair", &serde_json::Value::Null)
                    .map(Option::unwrap_or_default)
            } else {
                c.get("/lnet/doctor")
            };
            asked.map_err(|e| {
                offline.context(format!("and the daemon at {host} did not answer: {e}"))
            })?
        }
    };
    let d = &v["doctor"];
    let findings = d["findings"].as_array().cloned().unwrap_or_default();
    let errors = d["errors"].as_array().cloned().unwrap_or_default();
    let clean = findings.is_empty() && errors.is_empty();
    if args.store.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(clean);
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    if let Some(r) = v.get("repair") {
        let mut done: Vec<String> = v["before"]["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                format!(
                    "{} {}: {}",
                    text(&f["kind"]),
                    text(&f["object"]),
                    text(&f["what"])
                )
            })
            .collect();
        for key in ["rolled_back", "finished", "removed_sandboxes", "leftovers"] {
            done.extend(r[key].as_array().into_iter().flatten().map(text));
        }
        if done.is_empty() {
            println!("repair: nothing to put right");
        } else {
            println!("put right:");
            for line in done {
                println!("  {line}");
            }
        }
        for e in r["errors"].as_array().into_iter().flatten() {
            eprintln!("lnet: repair: {}", text(e));
        }
    }
    let count = |k: &str| d[k].as_u64().unwrap_or(0);
    let checked = format!(
        "{} networks, {} sandboxes, {} endpoints checked",
        count("networks"),
        count("sandboxes"),
        count("endpoints")
    );
    if findings.is_empty() {
        println!("the kernel matches the records ({checked})");
    } else {
        let rows: Vec<[String; 3]> = findings
            .iter()
            .map(|f| [text(&f["kind"]), text(&f["object"]), text(&f["what"])])
            .collect();
        let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max(4);
        let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0).max(6);
        println!("{:<w0$}  {:<w1$}  WHAT", "KIND", "OBJECT");
        for [k, o, w] in &rows {
            println!("{k:<w0$}  {o:<w1$}  {w}");
        }
        println!(
            "{} differences ({checked}); lnet doctor --repair puts them right",
            rows.len()
        );
    }
    for e in &errors {
        eprintln!("lnet: doctor could not check: {}", text(e));
    }
    Ok(clean)
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
    lnet_store::Store::inspect(&path, Some(&state)).with_context(|| {
        format!(
            "read {} (a running lnet daemon holds it: ask the daemon instead, e.g. lnet network ls)",
            path.display()
        )
    })
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

#[cfg(test)]
mod one_line_tests {
    use super::one_line;

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = || std::io::Error::from_raw_os_error(24);
        let repeated = anyhow::Error::new(io())
            .context(format!("open /proc/thread-self/ns/net: {}", io()))
            .context("start the controller");
        assert_eq!(
            one_line(&repeated),
            "start the controller: open /proc/thread-self/ns/net: Too many open files (os error 24)"
        );
        let plain = anyhow::Error::new(io()).context("read config file /etc/lnet/daemon.json");
        assert_eq!(
            one_line(&plain),
            "read config file /etc/lnet/daemon.json: Too many open files (os error 24)"
        );
    }
}
