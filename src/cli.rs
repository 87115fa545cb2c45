//! The command line's client side: `lnet network …`, `lnet sandbox …`, `lnet info` and the
//! server half of `lnet version`, each a request to the daemon over [`crate::client`] and
//! output shaped as `docker`'s (aligned tables, 12-character ids, inspect as a JSON array).
//!
//! Every command returns `Ok(true)` when everything it was asked to do was done and
//! `Ok(false)` when it did part of it and reported the rest on stderr (`rm a b` with `a`
//! missing): the binary exits 1 for both that and `Err`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use ipnet::IpNet;
use serde_json::{Map, Value, json};

use crate::client::{Client, ClientError, encode};

/// Output of list commands.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ListFormat {
    /// Aligned columns.
    #[default]
    Table,
    /// The API's JSON, as an array.
    Json,
}

/// Output of inspect commands: a JSON array, as `docker … inspect` prints.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InspectFormat {
    /// The API's JSON, as an array.
    #[default]
    Json,
}

/// `lnet network …`.
#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a network; prints its id.
    Create(NetworkCreateArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(NetworkLsArgs),
    /// Show one or more networks in detail (a JSON array).
    Inspect(InspectArgs),
    /// Remove one or more networks.
    #[command(visible_alias = "remove")]
    Rm(NetworkRmArgs),
    /// Connect a sandbox to a network.
    Connect(ConnectArgs),
    /// Disconnect a sandbox from a network.
    Disconnect(DisconnectArgs),
    /// Remove every custom network no sandbox uses.
    Prune(PruneArgs),
}

/// `lnet network create`.
#[derive(Args, Debug)]
pub struct NetworkCreateArgs {
    /// The network's name.
    pub name: String,
    /// The driver (bridge, macvlan, ipvlan, host, null, or a plugin).
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// A subnet in CIDR form (repeatable: one per pool, IPv4 or IPv6).
    #[arg(long)]
    pub subnet: Vec<String>,
    /// The sub-range endpoints get addresses from, in the --subnet that contains it.
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// The gateway of the --subnet that contains it.
    #[arg(long)]
    pub gateway: Vec<String>,
    /// An address the IPAM driver must not hand out: name=ip (repeatable).
    #[arg(long = "aux-address", value_parser = key_value_required)]
    pub aux_address: Vec<(String, String)>,
    /// Enable IPv6.
    #[arg(long)]
    pub ipv6: bool,
    /// Restrict external access to the network.
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment (recorded, as in Docker).
    #[arg(long)]
    pub attachable: bool,
    /// A label: key=value (repeatable).
    #[arg(long = "label", value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// A driver option: key=value (repeatable).
    #[arg(short = 'o', long = "opt", value_parser = key_value)]
    pub opts: Vec<(String, String)>,
    /// The IPAM driver.
    #[arg(long = "ipam-driver", default_value = "default")]
    pub ipam_driver: String,
    /// An IPAM driver option: key=value (repeatable).
    #[arg(long = "ipam-opt", value_parser = key_value)]
    pub ipam_opts: Vec<(String, String)>,
}

/// `lnet network ls`.
#[derive(Args, Debug)]
pub struct NetworkLsArgs {
    /// A filter: name=…, id=…, driver=…, label=k or label=k=v, scope=…, type=custom|builtin,
    /// dangling=true|false (repeatable; values of one filter are alternatives).
    #[arg(short = 'f', long = "filter", value_parser = key_value_required)]
    pub filters: Vec<(String, String)>,
    /// How to print.
    #[command(flatten)]
    pub out: ListOutput,
}

/// How list commands print.
#[derive(Args, Debug)]
pub struct ListOutput {
    /// Only print ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print full ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
}

/// `lnet network inspect` and `lnet sandbox inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Names, ids or id prefixes.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: InspectFormat,
}

/// `lnet network rm`.
#[derive(Args, Debug)]
pub struct NetworkRmArgs {
    /// Names, ids or id prefixes.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Do not report networks that do not exist.
    #[arg(short, long)]
    pub force: bool,
}

/// `lnet network connect`.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The network.
    pub network: String,
    /// The sandbox.
    pub sandbox: String,
    /// The IPv4 address to give the sandbox.
    #[arg(long)]
    pub ip: Option<String>,
    /// The IPv6 address to give the sandbox.
    #[arg(long)]
    pub ip6: Option<String>,
    /// A DNS alias of the sandbox on this network (repeatable).
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// The MAC address of the sandbox's interface.
    #[arg(long)]
    pub mac_address: Option<String>,
    /// A driver option of the endpoint: key=value (repeatable).
    #[arg(long = "driver-opt", value_parser = key_value)]
    pub driver_opts: Vec<(String, String)>,
    /// Publish a port: [host-ip:][host-port:]container-port[/proto] (repeatable).
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
}

/// `lnet network disconnect`.
#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// The network.
    pub network: String,
    /// The sandbox.
    pub sandbox: String,
    /// Remove the endpoint even if the sandbox is gone.
    #[arg(short, long)]
    pub force: bool,
}

/// `lnet network prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// A filter: until=…, label=…, label!=… (repeatable).
    #[arg(long = "filter", value_parser = key_value_required)]
    pub filters: Vec<(String, String)>,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// `lnet sandbox …`.
#[derive(Subcommand, Debug)]
pub enum SandboxCommand {
    /// Create a sandbox (a container's network side); prints its id.
    Create(SandboxCreateArgs),
    /// List sandboxes.
    #[command(visible_alias = "list")]
    Ls(SandboxLsArgs),
    /// Show one or more sandboxes in detail (a JSON array).
    Inspect(InspectArgs),
    /// Remove one or more sandboxes.
    #[command(visible_alias = "remove")]
    Rm(SandboxRmArgs),
    /// Rename a sandbox: its new name resolves, and the old one no longer does.
    Rename(SandboxRenameArgs),
    /// Run a command in a sandbox's network namespace, with its hosts and resolv.conf
    /// (needs root).
    Exec(SandboxExecArgs),
}

/// `lnet sandbox create`.
#[derive(Args, Debug)]
pub struct SandboxCreateArgs {
    /// The sandbox's (container's) name.
    pub name: String,
    /// The host name in its hosts file.
    #[arg(long)]
    pub hostname: Option<String>,
    /// The domain name in its hosts file.
    #[arg(long)]
    pub domainname: Option<String>,
    /// A DNS server (repeatable).
    #[arg(long)]
    pub dns: Vec<String>,
    /// A DNS search domain (repeatable).
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// A DNS option (repeatable).
    #[arg(long = "dns-option")]
    pub dns_options: Vec<String>,
    /// A hosts-file entry: host:ip (repeatable).
    #[arg(long = "add-host")]
    pub add_hosts: Vec<String>,
    /// Adopt this network namespace instead of creating one.
    #[arg(long, conflicts_with = "host_network")]
    pub netns: Option<String>,
    /// Share the host's network namespace.
    #[arg(long)]
    pub host_network: bool,
}

/// `lnet sandbox rename`.
#[derive(Args, Debug)]
pub struct SandboxRenameArgs {
    /// The sandbox (name or id).
    pub sandbox: String,
    /// Its new name.
    pub name: String,
}

/// `lnet sandbox ls`.
#[derive(Args, Debug)]
pub struct SandboxLsArgs {
    /// How to print.
    #[command(flatten)]
    pub out: ListOutput,
}

/// `lnet sandbox rm`.
#[derive(Args, Debug)]
pub struct SandboxRmArgs {
    /// Names, ids or id prefixes.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `lnet sandbox exec`.
#[derive(Args, Debug)]
pub struct SandboxExecArgs {
    /// The sandbox.
    pub sandbox: String,
    /// The command and its arguments (after `--` when they start with `-`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `k=v` (or `k`, meaning an empty value), as docker's `--label` and `--opt` take.
fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        return Err(format!("{s:?}: expected key=value"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// `k=v` with the `=` required.
fn key_value_required(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected key=value")),
    }
}

/// Docker's `filters` query value: `{"k":{"v":true}}`, values of one key together.
pub fn filters_json(filters: &[(String, String)]) -> String {
    let mut m: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for (k, v) in filters {
        m.entry(k).or_default().insert(v.clone(), Value::Bool(true));
    }
    json!(m).to_string()
}

fn with_filters(path: &str, filters: &[(String, String)]) -> String {
    if filters.is_empty() {
        path.to_string()
    } else {
        format!("{path}?filters={}", encode(&filters_json(filters)))
    }
}

/// Pairs each `--ip-range`, `--gateway` and `--aux-address` with the `--subnet` that contains
/// it, as `docker network create` does, into `IPAM.Config`.
pub fn ipam_config(
    subnets: &[String],
    ranges: &[String],
    gateways: &[String],
    aux: &[(String, String)],
) -> Result<Vec<Value>> {
    let mut pools: Vec<(IpNet, Map<String, Value>)> = Vec::new();
    for s in subnets {
        let net: IpNet = s
            .parse()
            .map_err(|_| anyhow!("--subnet {s:?}: not a CIDR (e.g. 10.1.0.0/16 or fd00::/64)"))?;
        if let Some((other, _)) = pools
            .iter()
            .find(|(o, _)| o.contains(&net.network()) || net.contains(&o.network()))
        {
            bail!("--subnet {s} overlaps --subnet {other}: give subnets that do not overlap");
        }
        let mut c = Map::new();
        c.insert("Subnet".into(), s.clone().into());
        pools.push((net, c));
    }
    for r in ranges {
        let range: IpNet = r
            .parse()
            .map_err(|_| anyhow!("--ip-range {r:?}: not a CIDR (e.g. 10.1.2.0/24)"))?;
        let i = owner(&pools, "--ip-range", r, range.network())?;
        let (net, c) = &mut pools[i];
        if !net.contains(&range) {
            bail!("--ip-range {r}: not inside --subnet {net}");
        }
        if let Some(old) = c.insert("IPRange".into(), r.clone().into()) {
            bail!("--ip-range {r}: --subnet {net} already has --ip-range {old}; one per subnet");
        }
    }
    for g in gateways {
        let ip: IpAddr = g
            .parse()
            .map_err(|_| anyhow!("--gateway {g:?}: not an IP address"))?;
        let i = owner(&pools, "--gateway", g, ip)?;
        let (net, c) = &mut pools[i];
        if let Some(old) = c.insert("Gateway".into(), g.clone().into()) {
            bail!("--gateway {g}: --subnet {net} already has --gateway {old}; one per subnet");
        }
    }
    for (name, a) in aux {
        let ip: IpAddr = a
            .parse()
            .map_err(|_| anyhow!("--aux-address {name}={a:?}: not an IP address"))?;
        let i = owner(&pools, "--aux-address", &format!("{name}={a}"), ip)?;
        let c = &mut pools[i].1;
        let m = c
            .entry("AuxiliaryAddresses")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = m {
            m.insert(name.clone(), a.clone().into());
        }
    }
    Ok(pools.into_iter().map(|(_, c)| Value::Object(c)).collect())
}

/// The pool whose subnet contains `ip`.
fn owner(
    pools: &[(IpNet, Map<String, Value>)],
    flag: &str,
    value: &str,
    ip: IpAddr,
) -> Result<usize> {
    pools
        .iter()
        .position(|(net, _)| net.contains(&ip))
        .ok_or_else(|| {
            anyhow!(
                "{flag} {value}: no --subnet contains it (each --ip-range, --gateway and \
                 --aux-address belongs to the --subnet that contains it)"
            )
        })
}

fn pairs(v: &[(String, String)]) -> Value {
    Value::Object(
        v.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// The body of `POST /networks/create`.
pub fn network_create_body(a: &NetworkCreateArgs) -> Result<Value> {
    let config = ipam_config(&a.subnet, &a.ip_range, &a.gateway, &a.aux_address)?;
    Ok(json!({
        "Name": a.name,
        "CheckDuplicate": true,
        "Driver": a.driver,
        "EnableIPv6": a.ipv6,
        "Internal": a.internal,
        "Attachable": a.attachable,
        "IPAM": {
            "Driver": a.ipam_driver,
            "Options": pairs(&a.ipam_opts),
            "Config": config,
        },
        "Options": pairs(&a.opts),
        "Labels": pairs(&a.labels),
    }))
}

/// The body of `POST /networks/{id}/connect`.
pub fn connect_body(a: &ConnectArgs) -> Result<Value> {
    let mut ipam = Map::new();
    if let Some(ip) = &a.ip {
        if !ip.parse::<IpAddr>().is_ok_and(|i| i.is_ipv4()) {
            bail!("--ip {ip:?}: not an IPv4 address");
        }
        ipam.insert("IPv4Address".into(), ip.clone().into());
    }
    if let Some(ip) = &a.ip6 {
        if !ip.parse::<IpAddr>().is_ok_and(|i| i.is_ipv6()) {
            bail!("--ip6 {ip:?}: not an IPv6 address");
        }
        ipam.insert("IPv6Address".into(), ip.clone().into());
    }
    let mut ec = Map::new();
    if !ipam.is_empty() {
        ec.insert("IPAMConfig".into(), Value::Object(ipam));
    }
    if !a.aliases.is_empty() {
        ec.insert("Aliases".into(), json!(a.aliases));
    }
    if let Some(m) = &a.mac_address {
        ec.insert("MacAddress".into(), m.clone().into());
    }
    if !a.driver_opts.is_empty() {
        ec.insert("DriverOpts".into(), pairs(&a.driver_opts));
    }
    let mut body = json!({ "Container": a.sandbox, "EndpointConfig": ec });
    if !a.publish.is_empty() {
        body["Publish"] = json!(a.publish);
    }
    Ok(body)
}

/// Runs `lnet network …`.
pub fn network(client: &Client, cmd: NetworkCommand) -> Result<bool> {
    match cmd {
        NetworkCommand::Create(a) => {
            let body = network_create_body(&a)?;
            let v = client
                .post("/networks/create", &body)?
                .unwrap_or(Value::Null);
            if let Some(w) = v["Warning"].as_str().filter(|w| !w.is_empty()) {
                eprintln!("lnet: warning: {w}");
            }
            println!("{}", str_of(&v["Id"]));
            Ok(true)
        }
        NetworkCommand::Ls(a) => {
            let v = client.get(&with_filters("/networks", &a.filters))?;
            let mut nets = array(v)?;
            nets.sort_by(|x, y| str_of(&x["Name"]).cmp(str_of(&y["Name"])));
            let id = |n: &Value| trunc(str_of(&n["Id"]), a.out.no_trunc).to_string();
            if a.out.quiet {
                nets.iter().for_each(|n| println!("{}", id(n)));
            } else if a.out.format == ListFormat::Json {
                print_json(&Value::Array(nets))?;
            } else {
                let rows = nets
                    .iter()
                    .map(|n| {
                        vec![
                            id(n),
                            str_of(&n["Name"]).to_string(),
                            str_of(&n["Driver"]).to_string(),
                            str_of(&n["Scope"]).to_string(),
                        ]
                    })
                    .collect();
                print_table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], rows);
            }
            Ok(true)
        }
        NetworkCommand::Inspect(a) => inspect(client, "/networks", &a.names),
        NetworkCommand::Rm(a) => Ok(remove_each(client, "/networks", &a.names, a.force)),
        NetworkCommand::Connect(a) => {
            client.post(
                &format!("/networks/{}/connect", encode(&a.network)),
                &connect_body(&a)?,
            )?;
            Ok(true)
        }
        NetworkCommand::Disconnect(a) => {
            client.post(
                &format!("/networks/{}/disconnect", encode(&a.network)),
                &json!({ "Container": a.sandbox, "Force": a.force }),
            )?;
            Ok(true)
        }
        NetworkCommand::Prune(a) => {
            if !a.force
                && !confirm(
                    "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ",
                )?
            {
                return Ok(true);
            }
            let v = client
                .post(&with_filters("/networks/prune", &a.filters), &json!({}))?
                .unwrap_or(Value::Null);
            let deleted: Vec<&str> = v["NetworksDeleted"]
                .as_array()
                .map(|a| a.iter().map(str_of).collect())
                .unwrap_or_default();
            if !deleted.is_empty() {
                println!("Deleted Networks:");
                deleted.iter().for_each(|n| println!("{n}"));
            }
            Ok(true)
        }
    }
}

/// Runs `lnet sandbox …` except `exec` (see [`sandbox_exec`]).
pub fn sandbox(client: &Client, cmd: SandboxCommand) -> Result<bool> {
    match cmd {
        SandboxCommand::Create(a) => {
            let mut body = json!({ "Name": a.name });
            let mut set = |k: &str, v: Value| {
                body[k] = v;
            };
            if let Some(h) = a.hostname {
                set("Hostname", h.into());
            }
            if let Some(d) = a.domainname {
                set("Domainname", d.into());
            }
            for (k, v) in [
                ("Dns", a.dns),
                ("DnsSearch", a.dns_search),
                ("DnsOptions", a.dns_options),
                ("ExtraHosts", a.add_hosts),
            ] {
                if !v.is_empty() {
                    set(k, json!(v));
                }
            }
            if let Some(p) = a.netns {
                set("NetnsPath", p.into());
            }
            if a.host_network {
                set("HostNetwork", true.into());
            }
            let v = client
                .post("/lnet/sandboxes/create", &body)?
                .unwrap_or(Value::Null);
            println!("{}", str_of(&v["Id"]));
            Ok(true)
        }
        SandboxCommand::Ls(a) => {
            let sbs = array(client.get("/lnet/sandboxes")?)?;
            let id = |s: &Value| trunc(str_of(&s["Id"]), a.out.no_trunc).to_string();
            if a.out.quiet {
                sbs.iter().for_each(|s| println!("{}", id(s)));
            } else if a.out.format == ListFormat::Json {
                print_json(&Value::Array(sbs))?;
            } else {
                let rows = sbs
                    .iter()
                    .map(|s| {
                        let nets: Vec<&str> = s["Endpoints"]
                            .as_array()
                            .map(|e| e.iter().map(|e| str_of(&e["Network"])).collect())
                            .unwrap_or_default();
                        vec![
                            id(s),
                            str_of(&s["Name"]).to_string(),
                            if nets.is_empty() {
                                "-".to_string()
                            } else {
                                nets.join(",")
                            },
                            str_of(&s["Key"]).to_string(),
                        ]
                    })
                    .collect();
                print_table(&["SANDBOX ID", "NAME", "NETWORKS", "KEY"], rows);
            }
            Ok(true)
        }
        SandboxCommand::Inspect(a) => inspect(client, "/lnet/sandboxes", &a.names),
        SandboxCommand::Rm(a) => Ok(remove_each(client, "/lnet/sandboxes", &a.names, false)),
        SandboxCommand::Rename(a) => {
            client.post(
                &format!(
                    "/lnet/sandboxes/{}/rename?name={}",
                    encode(&a.sandbox),
                    encode(&a.name)
                ),
                &Value::Null,
            )?;
            Ok(true)
        }
        SandboxCommand::Exec(_) => {
            bail!("lnet sandbox exec runs without a client: call cli::sandbox_exec")
        }
    }
}

/// Deletes `base/name` for each name, printing each removed one; an error is printed and
/// the next name tried, as docker does. `ignore_missing`: a name not found is no error.
/// Whether all went well.
fn remove_each(client: &Client, base: &str, names: &[String], ignore_missing: bool) -> bool {
    let mut ok = true;
    for name in names {
        match client.delete(&format!("{base}/{}", encode(name))) {
            Ok(_) => println!("{name}"),
            Err(e) if ignore_missing && e.status() == Some(hyper::StatusCode::NOT_FOUND) => {}
            Err(e) => {
                eprintln!("lnet: {e}");
                ok = false;
            }
        }
    }
    ok
}

/// `lnet sandbox exec`: fetches the sandbox's namespace and files, drops the client (and its
/// runtime, so the process is single-threaded again), enters, and `exec`s the command.
/// Returns only when something failed: an error, or the exit code for a command that could
/// not be run (127 not found, 126 not executable, as shells and `docker exec` use).
pub fn sandbox_exec(host: &str, a: &SandboxExecArgs) -> Result<u8> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "sandbox exec must run as root: it enters the sandbox's network namespace and \
             mounts its hosts and resolv.conf over /etc (try: sudo lnet sandbox exec {} …)",
            a.sandbox
        );
    }
    let Some((program, args)) = a.command.split_first() else {
        bail!("lnet sandbox exec {}: give the command to run", a.sandbox);
    };
    let sb = {
        let client = Client::new(host)?;
        client.get(&format!("/lnet/sandboxes/{}", encode(&a.sandbox)))?
    };
    let name = str_of(&sb["Name"]);
    // A host-network sandbox's key is the daemon's own namespace (bind-mounted by the
    // daemon), which is "the host" even when the daemon runs in a namespace of its own.
    let netns = match str_of(&sb["Key"]) {
        "" if sb["HostNetwork"].as_bool() == Some(true) => "/proc/self/ns/net",
        "" => bail!("sandbox {name} has no network namespace (its Key is empty)"),
        k => k,
    };
    let hosts = str_of(&sb["HostsPath"]);
    let resolv = str_of(&sb["ResolvConfPath"]);
    let mut binds: Vec<(&Path, &Path)> = Vec::new();
    for (src, dst) in [(hosts, "/etc/hosts"), (resolv, "/etc/resolv.conf")] {
        if !src.is_empty() {
            binds.push((Path::new(src), Path::new(dst)));
        }
    }
    lnet_kernel::netns::enter_for_exec(Path::new(netns), &binds)
        .with_context(|| format!("enter sandbox {name}"))?;
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(program).args(args).exec();
    eprintln!("lnet: exec {program}: {err}");
    Ok(match err.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    })
}

/// `lnet info`.
pub fn info(client: &Client, format: ListFormat) -> Result<bool> {
    let v = client.get("/info")?;
    if format == ListFormat::Json {
        print_json(&v)?;
        return Ok(true);
    }
    let plugins: Vec<&str> = v["Plugins"]["Network"]
        .as_array()
        .map(|a| a.iter().map(str_of).collect())
        .unwrap_or_default();
    println!("Server:");
    for (k, val) in [
        ("Server Version", text_of(&v["ServerVersion"])),
        ("Networks", text_of(&v["Networks"])),
        ("Endpoints", text_of(&v["Endpoints"])),
        ("Sandboxes", text_of(&v["Containers"])),
        ("Network plugins", plugins.join(" ")),
        ("Kernel Version", text_of(&v["KernelVersion"])),
        ("Operating System", text_of(&v["OperatingSystem"])),
        ("OSType", text_of(&v["OSType"])),
        ("Architecture", text_of(&v["Architecture"])),
        ("CPUs", text_of(&v["NCPU"])),
        ("Name", text_of(&v["Name"])),
        ("Data Root", text_of(&v["DockerRootDir"])),
    ] {
        println!(" {k}: {val}");
    }
    Ok(true)
}

/// The server half of `lnet version`: `GET /version`, or why it could not be had.
pub fn server_version(client: &Client) -> Result<Value, ClientError> {
    client.get("/version")
}

fn inspect(client: &Client, base: &str, names: &[String]) -> Result<bool> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match client.get(&format!("{base}/{}", encode(name))) {
            Ok(v) => found.push(v),
            Err(e) => errors.push(e),
        }
    }
    print_json(&Value::Array(found))?;
    for e in &errors {
        eprintln!("lnet: {e}");
    }
    Ok(errors.is_empty())
}

fn confirm(question: &str) -> Result<bool> {
    let mut out = std::io::stdout().lock();
    out.write_all(question.as_bytes())?;
    out.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

fn array(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        other => bail!("the daemon answered {other} where a list was expected"),
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn trunc(id: &str, no_trunc: bool) -> &str {
    if no_trunc {
        id
    } else {
        lnet_core::short_id(id)
    }
}

/// Pretty JSON with 4-space indents, as docker prints inspect output.
pub fn print_json(v: &Value) -> Result<()> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    buf.push(b'\n');
    std::io::stdout().lock().write_all(&buf)?;
    Ok(())
}

/// Columns as docker's tabwriter lays them out: each at least 10 wide and 3 wider than its
/// widest cell, the last unpadded.
pub fn format_table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                s.push_str(c);
            } else {
                let w = (widths[i] + 3).max(10);
                s.push_str(&format!("{c:<w$}"));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(headers.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    print!("{}", format_table(headers, rows));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ranges_gateways_and_aux_addresses_go_with_their_subnet() {
        let c = ipam_config(
            &s(&["10.1.0.0/16", "fd00::/64"]),
            &s(&["10.1.2.0/24"]),
            &s(&["fd00::1", "10.1.0.254"]),
            &[("db".into(), "10.1.0.5".into())],
        )
        .unwrap();
        assert_eq!(
            Value::Array(c),
            json!([
                {"Subnet": "10.1.0.0/16", "IPRange": "10.1.2.0/24", "Gateway": "10.1.0.254",
                 "AuxiliaryAddresses": {"db": "10.1.0.5"}},
                {"Subnet": "fd00::/64", "Gateway": "fd00::1"},
            ])
        );
    }

    #[test]
    fn a_flag_without_its_subnet_is_named() {
        let e = ipam_config(&[], &[], &s(&["10.1.0.1"]), &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--gateway 10.1.0.1: no --subnet contains it"),
            "{e}"
        );
        let e = ipam_config(&s(&["10.1.0.0/16"]), &s(&["10.2.0.0/24"]), &[], &[]).unwrap_err();
        assert!(e.to_string().starts_with("--ip-range 10.2.0.0/24"), "{e}");
        let e = ipam_config(
            &s(&["10.1.0.0/16"]),
            &[],
            &[],
            &[("x".into(), "10.9.0.1".into())],
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("--aux-address x=10.9.0.1"), "{e}");
        let e = ipam_config(&s(&["nope"]), &[], &[], &[]).unwrap_err();
        assert!(
            e.to_string().starts_with("--subnet \"nope\": not a CIDR"),
            "{e}"
        );
        let e = ipam_config(&s(&["10.1.0.0/16", "10.1.2.0/24"]), &[], &[], &[]).unwrap_err();
        assert!(e.to_string().contains("overlaps"), "{e}");
        let e = ipam_config(
            &s(&["10.1.0.0/16"]),
            &[],
            &s(&["10.1.0.1", "10.1.0.2"]),
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("already has --gateway"), "{e}");
    }

    #[test]
    fn filters_are_dockers_query_json() {
        let f = vec![
            ("name".to_string(), "web".to_string()),
            ("name".to_string(), "db".to_string()),
            ("label".to_string(), "a=b".to_string()),
        ];
        assert_eq!(
            filters_json(&f),
            r#"{"label":{"a=b":true},"name":{"db":true,"web":true}}"#
        );
        assert_eq!(with_filters("/networks", &[]), "/networks");
    }

    #[test]
    fn key_values_parse_as_docker_does() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("flag"), Ok(("flag".into(), String::new())));
        key_value("=x").unwrap_err();
        key_value_required("flag").unwrap_err();
    }

    #[test]
    fn tables_are_aligned_like_dockers() {
        let t = format_table(
            &["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
            vec![s(&["0123456789ab", "bridge", "bridge", "local"])],
        );
        assert_eq!(
            t,
            "NETWORK ID     NAME      DRIVER    SCOPE\n0123456789ab   bridge    bridge    local\n"
        );
    }

    #[test]
    fn connect_bodies_carry_addresses_aliases_and_ports() {
        let a = ConnectArgs {
            network: "n".into(),
            sandbox: "a".into(),
            ip: Some("10.1.0.9".into()),
            ip6: None,
            aliases: s(&["web"]),
            mac_address: None,
            driver_opts: vec![],
            publish: s(&["8080:80"]),
        };
        assert_eq!(
            connect_body(&a).unwrap(),
            json!({"Container": "a", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.1.0.9"},
                   "Aliases": ["web"]}, "Publish": ["8080:80"]})
        );
        let bad = ConnectArgs {
            ip: Some("10.1.0.300".into()),
            ..a
        };
        let e = connect_body(&bad).unwrap_err();
        assert_eq!(e.to_string(), "--ip \"10.1.0.300\": not an IPv4 address");
    }
}
