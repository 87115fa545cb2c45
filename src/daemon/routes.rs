//! The HTTP routes: Docker Engine's network API and lnet's own sandbox API, over one
//! [`Controller`]. Handlers parse and check the request, then run the controller call on a
//! blocking thread (the controller is synchronous and serialises changes); reads come from
//! the controller's published records and never wait for a change in progress.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use lnet_core::{
    Controller, CoreError, EndpointOptions, ErrorKind, IpamPoolConfig, IpamSpec, JoinOptions,
    NetworkOptions, PortSpec, Records, SandboxOptions,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::{self, Lookup};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;
/// How long a client may take to send a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The controller.
    pub ctrl: Controller,
    /// Facts for `/info` and `/version`.
    pub info: Arc<DaemonInfo>,
}

/// Facts about the daemon for `/info` and `/version`.
#[derive(Debug, Clone, Default)]
pub struct DaemonInfo {
    /// The data root.
    pub data_root: String,
    /// The kernel release.
    pub kernel: String,
    /// The host name.
    pub hostname: String,
}

/// An API error: a status and Docker's `{"message": …}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        let status = match e.kind() {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, message = %self.message, "request refused");
        }
        (self.status, axum::Json(json!({ "message": self.message }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A JSON request body: at most [`MAX_BODY`] bytes, read within [`BODY_TIMEOUT`], and an
/// error that names the field when a value has the wrong type.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                )
            })?
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the request body is larger than {MAX_BODY} bytes"),
                    )
                } else {
                    ApiError::bad(format!("reading the request body: {e}"))
                }
            })?;
        parse_body(&bytes).map(Body)
    }
}

/// Parses a JSON body; errors name the field (`IPAM.Config[0].Subnet: invalid type: …`).
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad(
            "the request body is empty: a JSON object is expected",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            ApiError::bad(format!("the request body is not valid JSON: {inner}"))
        } else {
            ApiError::bad(format!("invalid value for {path}: {inner}"))
        }
    })
}

/// Runs a controller call on a blocking thread; a panic there is a 500 for this request
/// only.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request failed inside lnet: {e}"),
        )
    })?
}

/// The router, without the API version prefix (see [`strip_version`]).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/networks", get(networks_list))
        .route("/networks/create", post(network_create))
        .route("/networks/prune", post(networks_prune))
        .route(
            "/networks/{id}",
            get(network_inspect).delete(network_delete),
        )
        .route("/networks/{id}/connect", post(network_connect))
        .route("/networks/{id}/disconnect", post(network_disconnect))
        .route("/lnet/firewall", get(firewall))
        .route("/lnet/doctor", get(doctor))
        .route("/lnet/doctor/repair", post(doctor_repair))
        .route("/lnet/sandboxes", get(sandboxes_list))
        .route("/lnet/sandboxes/create", post(sandbox_create))
        .route("/lnet/sandboxes/{id}", get(sandbox_inspect))
        .route("/lnet/sandboxes/{id}", delete(sandbox_delete))
        .route("/lnet/sandboxes/{id}/rename", post(sandbox_rename))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(headers))
        .with_state(state)
}

async fn headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(api::API_VERSION));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("lnet/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    res
}

/// Strips Docker's `/vX.Y` prefix so one set of routes serves every API version; a version
/// older than [`api::MIN_API_VERSION`] or newer than [`api::API_VERSION`] is left in place
/// and so answered 404 ... unless it is malformed, which is the same.
pub fn strip_version(mut req: Request) -> Request {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/v") else {
        return req;
    };
    let (ver, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let ok = ver
        .split_once('.')
        .is_some_and(|(a, b)| a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok());
    if !ok || tail.is_empty() {
        return req;
    }
    let pq = match req.uri().query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_string(),
    };
    if let Ok(uri) = pq.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
    req
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "page not found: lnet serves Docker's network API and /lnet/sandboxes, not {method} {}",
        uri.path()
    ))
}

async fn ping() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            (header::PRAGMA, "no-cache"),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        ],
        "OK",
    )
}

/// The architecture as Go (and so Docker) names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

async fn version(State(st): State<AppState>) -> impl IntoResponse {
    let v = env!("CARGO_PKG_VERSION");
    axum::Json(json!({
        "Platform": { "Name": "lnet" },
        "Components": [{ "Name": "Engine", "Version": v, "Details": {
            "ApiVersion": api::API_VERSION,
            "MinAPIVersion": api::MIN_API_VERSION,
            "Os": "linux",
            "Arch": go_arch(),
            "KernelVersion": st.info.kernel,
            "GitCommit": "",
            "GoVersion": "n/a (Rust)",
            "BuildTime": "",
            "Experimental": "false",
        } }],
        "Version": v,
        "ApiVersion": api::API_VERSION,
        "MinAPIVersion": api::MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "n/a (Rust)",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": st.info.kernel,
        "BuildTime": "",
    }))
}

async fn info(State(st): State<AppState>) -> impl IntoResponse {
    let rec = st.ctrl.records();
    axum::Json(json!({
        "ID": "",
        "Name": st.info.hostname,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Containers": rec.sandboxes.len(),
        "ContainersRunning": rec.sandboxes.len(),
        "ContainersPaused": 0,
        "ContainersStopped": 0,
        "Images": 0,
        "Driver": "",
        "DockerRootDir": st.info.data_root,
        "KernelVersion": st.info.kernel,
        "OperatingSystem": "lnet",
        "OSType": "linux",
        "Architecture": go_arch(),
        "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "Plugins": { "Network": ["bridge", "host", "null"], "Volume": [], "Log": [], "Authorization": null },
        "Networks": rec.networks.len(),
        "Endpoints": rec.endpoints.len(),
    }))
}

/// Docker's `filters` query parameter: `{"name":{"x":true}}` or the older `{"name":["x"]}`.
fn parse_filters(
    q: &BTreeMap<String, String>,
    allowed: &[&str],
) -> ApiResult<BTreeMap<String, Vec<String>>> {
    let Some(raw) = q.get("filters").filter(|s| !s.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad(format!("invalid filters {raw:?}: not JSON: {e}")))?;
    let Value::Object(m) = v else {
        return Err(ApiError::bad(format!(
            "invalid filters {raw:?}: a JSON object of filter names is expected"
        )));
    };
    let mut out = BTreeMap::new();
    for (k, v) in m {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad(format!(
                "invalid filter '{k}': the filters are {}",
                allowed.join(", ")
            )));
        }
        let values: Vec<String> = match v {
            Value::Object(o) => o
                .into_iter()
                .filter(|(_, b)| b == &json!(true))
                .map(|(s, _)| s)
                .collect(),
            Value::Array(a) => a
                .into_iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s),
                    other => Err(ApiError::bad(format!(
                        "invalid filter '{k}': {other} is not a string"
                    ))),
                })
                .collect::<ApiResult<_>>()?,
            other => {
                return Err(ApiError::bad(format!(
                    "invalid filter '{k}': {other} is neither a list nor a map of values"
                )));
            }
        };
        out.insert(k, values);
    }
    Ok(out)
}

fn is_predefined(n: &lnet_core::NetworkRecord) -> bool {
    api::PREDEFINED.contains(&n.name.as_str())
        && matches!(
            (n.name.as_str(), n.driver.as_str()),
            ("bridge", "bridge") | ("host", "host") | ("none", "null")
        )
}

fn has_endpoints(rec: &Records, n: &lnet_core::NetworkRecord) -> bool {
    rec.endpoints.iter().any(|e| e.network_id == n.id)
}

/// Whether `n` passes every filter (values of one filter are alternatives).
fn network_matches(
    rec: &Records,
    n: &lnet_core::NetworkRecord,
    f: &BTreeMap<String, Vec<String>>,
) -> ApiResult<bool> {
    for (k, values) in f {
        if values.is_empty() {
            continue;
        }
        let any = |pred: &dyn Fn(&str) -> ApiResult<bool>| -> ApiResult<bool> {
            for v in values {
                if pred(v)? {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        let ok = match k.as_str() {
            "name" => any(&|v| Ok(n.name.contains(v)))?,
            "id" => any(&|v| Ok(n.id.starts_with(v)))?,
            "driver" => any(&|v| Ok(n.driver == v))?,
            "scope" => any(&|v| match v {
                "local" | "swarm" | "global" => Ok(n.scope == v),
                _ => Err(ApiError::bad(format!(
                    "invalid filter 'scope={v}': the scope is local, swarm or global"
                ))),
            })?,
            "type" => any(&|v| match v {
                "builtin" => Ok(is_predefined(n)),
                "custom" => Ok(!is_predefined(n)),
                _ => Err(ApiError::bad(format!(
                    "invalid filter 'type={v}': the type is custom or builtin"
                ))),
            })?,
            "dangling" => any(&|v| match v {
                "true" | "1" => Ok(!is_predefined(n) && !has_endpoints(rec, n)),
                "false" | "0" => Ok(is_predefined(n) || has_endpoints(rec, n)),
                _ => Err(ApiError::bad(format!(
                    "invalid filter 'dangling={v}': the value is true or false"
                ))),
            })?,
            "label" => any(&|v| {
                Ok(match v.split_once('=') {
                    Some((key, val)) => n.labels.get(key).is_some_and(|x| x == val),
                    None => n.labels.contains_key(v),
                })
            })?,
            "label!" => !any(&|v| {
                Ok(match v.split_once('=') {
                    Some((key, val)) => n.labels.get(key).is_some_and(|x| x == val),
                    None => n.labels.contains_key(v),
                })
            })?,
            "until" => any(&|v| {
                let t = parse_until(v)?;
                Ok(n.created_unix_nanos <= t)
            })?,
            _ => true,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `until`: a Unix timestamp (seconds, optionally fractional) or an RFC 3339 time.
fn parse_until(v: &str) -> ApiResult<u128> {
    if let Ok(secs) = v.parse::<f64>()
        && secs >= 0.0
    {
        return Ok((secs * 1e9) as u128);
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp_nanos().max(0) as u128)
        .map_err(|_| {
            ApiError::bad(format!(
                "invalid filter 'until={v}': a Unix timestamp or an RFC 3339 time is expected"
            ))
        })
}

const LIST_FILTERS: [&str; 7] = ["name", "id", "driver", "label", "scope", "type", "dangling"];

async fn networks_list(
    State(st): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult<axum::Json<Vec<Value>>> {
    let f = parse_filters(&q, &LIST_FILTERS)?;
    let rec = st.ctrl.records();
    let mut nets: Vec<&lnet_core::NetworkRecord> = rec
        .networks
        .iter()
        .map(|n| &**n)
        .filter(|n| n.state == lnet_core::Lifecycle::Ready)
        .collect();
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for n in nets {
        if network_matches(&rec, n, &f)? {
            out.push(api::network_json(&rec, n, false));
        }
    }
    Ok(axum::Json(out))
}

fn lookup_network<'a>(rec: &'a Records, key: &str) -> ApiResult<&'a lnet_core::NetworkRecord> {
    api::find_network(rec, key).map_err(|e| match e {
        Lookup::NotFound => ApiError::not_found(format!("network {key} not found")),
        Lookup::Ambiguous(n) => ApiError::bad(format!(
            "network {key} is ambiguous ({n} networks have ids starting with it): give more of the id"
        )),
    })
}

fn lookup_sandbox<'a>(rec: &'a Records, key: &str) -> ApiResult<&'a lnet_core::SandboxRecord> {
    api::find_sandbox(rec, key).map_err(|e| match e {
        Lookup::NotFound => ApiError::not_found(format!("No such container: {key}")),
        Lookup::Ambiguous(n) => ApiError::bad(format!(
            "container {key} is ambiguous ({n} sandboxes have ids starting with it): give more of the id"
        )),
    })
}

async fn network_inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult<axum::Json<Value>> {
    if let Some(scope) = q.get("scope").filter(|s| !s.is_empty() && *s != "local") {
        return Err(ApiError::not_found(format!(
            "network {id} not found in scope {scope}: lnet's networks are local"
        )));
    }
    let rec = st.ctrl.records();
    let n = lookup_network(&rec, &id)?;
    Ok(axum::Json(api::network_json(&rec, n, true)))
}

fn ip_of(field: &str, s: &str) -> ApiResult<IpAddr> {
    s.parse()
        .map_err(|_| ApiError::bad(format!("invalid {field} {s:?}: not an IP address")))
}

fn cidr_of(field: &str, s: &str) -> ApiResult<ipnet::IpNet> {
    lnet_core::parse_cidr(field, s).map_err(ApiError::from)
}

/// The core's options from a create request (no I/O: bad values are refused here or by the
/// controller before anything is made).
fn network_options(req: api::NetworkCreate) -> ApiResult<(String, String, NetworkOptions)> {
    let name = req.name.unwrap_or_default();
    if name.trim().is_empty() {
        return Err(ApiError::bad("Name: a network name is required"));
    }
    let driver = req
        .driver
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "bridge".into());
    if let Some(scope) = req.scope.filter(|s| !s.is_empty() && s != "local") {
        return Err(ApiError::bad(format!(
            "invalid Scope {scope:?}: lnet makes local networks only"
        )));
    }
    if req.ingress == Some(true) {
        return Err(ApiError::forbidden(
            "Ingress: swarm ingress networks are not supported by lnet",
        ));
    }
    if req.config_only == Some(true) {
        return Err(ApiError::forbidden(
            "ConfigOnly: configuration-only networks are not supported by lnet",
        ));
    }
    if req.enable_ipv4 == Some(false) && driver == "bridge" {
        return Err(ApiError::bad(
            "EnableIPv4: a bridge network needs IPv4 in lnet; leave it on",
        ));
    }
    let mut ipam = IpamSpec::default();
    if let Some(i) = req.ipam {
        ipam.driver = i.driver.unwrap_or_default();
        ipam.options = i.options.unwrap_or_default();
        for (n, c) in i.config.unwrap_or_default().into_iter().enumerate() {
            let field = |f: &str| format!("IPAM.Config[{n}].{f}");
            let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
            let subnet = nonempty(c.subnet)
                .map(|s| cidr_of(&field("Subnet"), &s))
                .transpose()?;
            let ip_range = nonempty(c.ip_range)
                .map(|s| cidr_of(&field("IPRange"), &s))
                .transpose()?;
            let gateway = nonempty(c.gateway)
                .map(|s| ip_of(&field("Gateway"), &s))
                .transpose()?;
            let mut aux = BTreeMap::new();
            for (k, v) in c.auxiliary_addresses.unwrap_or_default() {
                aux.insert(
                    k.clone(),
                    ip_of(&field(&format!("AuxiliaryAddresses.{k}")), &v)?,
                );
            }
            let v6 = subnet
                .map(|s| s.addr().is_ipv6())
                .or_else(|| ip_range.map(|s| s.addr().is_ipv6()))
                .or_else(|| gateway.map(|g| g.is_ipv6()))
                .unwrap_or(false);
            let pc = IpamPoolConfig {
                subnet,
                ip_range,
                gateway,
                aux_addresses: aux,
            };
            if v6 {
                ipam.v6.push(pc);
            } else {
                ipam.v4.push(pc);
            }
        }
    }
    Ok((
        driver,
        name,
        NetworkOptions {
            ipam,
            enable_ipv6: req.enable_ipv6.unwrap_or(false),
            internal: req.internal.unwrap_or(false),
            attachable: req.attachable.unwrap_or(false),
            labels: req.labels.unwrap_or_default(),
            options: req.options.unwrap_or_default(),
            ..Default::default()
        },
    ))
}

async fn network_create(
    State(st): State<AppState>,
    Body(req): Body<api::NetworkCreate>,
) -> ApiResult<Response> {
    let (driver, name, opts) = network_options(req)?;
    let ctrl = st.ctrl.clone();
    let id = blocking(move || Ok(ctrl.new_network(&driver, &name, opts)?.id().to_string())).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "Id": id, "Warning": "" })),
    )
        .into_response())
}

async fn network_delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let rec = st.ctrl.records();
    let n = lookup_network(&rec, &id)?;
    if is_predefined(n) {
        return Err(ApiError::forbidden(format!(
            "{} is a pre-defined network and cannot be removed",
            n.name
        )));
    }
    let id = n.id.clone();
    let ctrl = st.ctrl.clone();
    blocking(move || Ok(ctrl.network(&id)?.delete()?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn networks_prune(
    State(st): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult<axum::Json<Value>> {
    let f = parse_filters(&q, &["until", "label", "label!"])?;
    let rec = st.ctrl.records();
    let mut doomed = Vec::new();
    for n in rec
        .networks
        .iter()
        .filter(|n| n.state == lnet_core::Lifecycle::Ready)
    {
        if !is_predefined(n) && !has_endpoints(&rec, n) && network_matches(&rec, n, &f)? {
            doomed.push((n.id.clone(), n.name.clone()));
        }
    }
    let ctrl = st.ctrl.clone();
    let deleted = blocking(move || {
        let mut deleted = Vec::new();
        for (id, name) in doomed {
            // One that gained an endpoint meanwhile is kept, as Docker does.
            match ctrl.network(&id).and_then(|n| n.delete()) {
                Ok(()) => deleted.push(name),
                Err(e) => tracing::info!(network = %name, error = %e, "not pruned"),
            }
        }
        Ok(deleted)
    })
    .await?;
    Ok(axum::Json(json!({ "NetworksDeleted": deleted })))
}

async fn network_connect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<api::Connect>,
) -> ApiResult<StatusCode> {
    let container = req.container.filter(|c| !c.is_empty()).ok_or_else(|| {
        ApiError::bad("Container: the container (sandbox) to connect is required")
    })?;
    let ec = req.endpoint_config;
    let mut opts = EndpointOptions::default();
    if let Some(ec) = ec {
        if ec.links.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(ApiError::bad(
                "EndpointConfig.Links: legacy links are not supported by lnet; use aliases",
            ));
        }
        if let Some(i) = ec.ipam_config {
            if i.link_local_ips.as_ref().is_some_and(|l| !l.is_empty()) {
                return Err(ApiError::bad(
                    "EndpointConfig.IPAMConfig.LinkLocalIPs: not supported by lnet",
                ));
            }
            let addr = |field: &str, v: Option<String>| {
                v.filter(|s| !s.is_empty())
                    .map(|s| ip_of(field, &s))
                    .transpose()
            };
            opts.ipv4 = addr("EndpointConfig.IPAMConfig.IPv4Address", i.ipv4_address)?;
            opts.ipv6 = addr("EndpointConfig.IPAMConfig.IPv6Address", i.ipv6_address)?;
        }
        opts.aliases = ec.aliases.unwrap_or_default();
        opts.mac = ec.mac_address.filter(|m| !m.is_empty());
        opts.options = ec.driver_opts.unwrap_or_default();
    }
    for (i, p) in req.publish.unwrap_or_default().iter().enumerate() {
        opts.ports.push(PortSpec::parse(p).map_err(|e| match e {
            CoreError::InvalidField { value, reason, .. } => {
                ApiError::bad(format!("invalid Publish[{i}] {value:?}: {reason}"))
            }
            other => other.into(),
        })?);
    }
    // As Docker's: the endpoint exists while the container is connected, and a crash
    // between making it and joining it (or leaving and deleting it) removes it at start.
    opts.ephemeral = true;
    let rec = st.ctrl.records();
    let net = lookup_network(&rec, &id)?.id.clone();
    let sb = lookup_sandbox(&rec, &container)?;
    let (sb_id, ep_name) = (sb.id.clone(), sb.container_id.clone());
    let ctrl = st.ctrl.clone();
    blocking(move || {
        let network = ctrl.network(&net)?;
        let sandbox = ctrl.sandbox(&sb_id)?;
        let ep = network.create_endpoint(&ep_name, opts)?;
        if let Err(e) = ep.join(&sandbox, JoinOptions::default()) {
            if let Err(d) = ep.delete() {
                tracing::error!(endpoint = %ep_name, error = %d, "removing the endpoint of a failed connect");
            }
            return Err(e.into());
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::OK)
}

async fn network_disconnect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<api::Disconnect>,
) -> ApiResult<StatusCode> {
    let container = req.container.filter(|c| !c.is_empty()).ok_or_else(|| {
        ApiError::bad("Container: the container (sandbox) to disconnect is required")
    })?;
    let rec = st.ctrl.records();
    let net = lookup_network(&rec, &id)?;
    let (net_id, net_name) = (net.id.clone(), net.name.clone());
    let (ep_id, sb_id) = match api::find_sandbox(&rec, &container) {
        Ok(sb) => rec
            .endpoints
            .iter()
            .find(|e| {
                e.network_id == net_id && e.join.as_ref().is_some_and(|j| j.sandbox_id == sb.id)
            })
            .map(|e| (e.id.clone(), Some(sb.id.clone())))
            .ok_or_else(|| {
                ApiError::forbidden(format!(
                    "container {container} is not connected to network {net_name}"
                ))
            })?,
        // Force: the sandbox is gone, remove an endpoint of that name if one is left.
        Err(_) if req.force == Some(true) => rec
            .endpoints
            .iter()
            .find(|e| e.network_id == net_id && e.name == container)
            .map(|e| (e.id.clone(), None))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "container {container} has no endpoint on network {net_name}"
                ))
            })?,
        Err(_) => return Err(lookup_sandbox(&rec, &container).unwrap_err()),
    };
    let ctrl = st.ctrl.clone();
    blocking(move || {
        let ep = ctrl.endpoint(&ep_id)?;
        if let Some(sb) = sb_id {
            ep.leave(&ctrl.sandbox(&sb)?)?;
        }
        ep.delete()?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::OK)
}

/// lnet's firewall: the elements the records call for and how the kernel differs (what
/// `lnet firewall show` prints; it cannot read the store while the daemon holds it).
async fn firewall(State(st): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let ctrl = st.ctrl.clone();
    blocking(move || {
        let drift = ctrl.firewall_check()?;
        let want = ctrl.firewall_want();
        Ok(axum::Json(json!({
            "table": "inet lnet",
            "elements": want.render(),
            "drift": drift,
        })))
    })
    .await
}

/// `GET /lnet/doctor`: the records against the kernel (`lnet doctor`).
async fn doctor(State(st): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let ctrl = st.ctrl.clone();
    blocking(move || Ok(axum::Json(json!({ "doctor": ctrl.doctor() })))).await
}

/// `POST /lnet/doctor/repair`: the start-up reconciliation again, then the comparison.
async fn doctor_repair(State(st): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let ctrl = st.ctrl.clone();
    blocking(move || {
        let before = ctrl.doctor();
        let repair = ctrl.repair()?;
        Ok(axum::Json(
            json!({ "before": before, "repair": repair, "doctor": ctrl.doctor() }),
        ))
    })
    .await
}

async fn sandboxes_list(State(st): State<AppState>) -> axum::Json<Vec<Value>> {
    let rec = st.ctrl.records();
    let mut v: Vec<&lnet_core::SandboxRecord> = rec.sandboxes.iter().map(|s| &**s).collect();
    v.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    axum::Json(v.into_iter().map(|s| api::sandbox_json(&rec, s)).collect())
}

async fn sandbox_inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let rec = st.ctrl.records();
    let sb = lookup_sandbox(&rec, &id)?;
    Ok(axum::Json(api::sandbox_json(&rec, sb)))
}

async fn sandbox_create(
    State(st): State<AppState>,
    Body(req): Body<api::SandboxCreate>,
) -> ApiResult<Response> {
    let name = req.name.unwrap_or_default();
    if name.trim().is_empty() {
        return Err(ApiError::bad(
            "Name: a sandbox (container) name is required",
        ));
    }
    let mut dns = Vec::new();
    for (i, d) in req.dns.unwrap_or_default().iter().enumerate() {
        dns.push(ip_of(&format!("Dns[{i}]"), d)?);
    }
    let mut extra_hosts = Vec::new();
    for (i, h) in req.extra_hosts.unwrap_or_default().iter().enumerate() {
        extra_hosts.push(api::parse_extra_host(h).ok_or_else(|| {
            ApiError::bad(format!(
                "invalid ExtraHosts[{i}] {h:?}: expected host:ip, e.g. db:10.0.0.5"
            ))
        })?);
    }
    let opts = SandboxOptions {
        hostname: req.hostname.unwrap_or_default(),
        domainname: req.domainname.unwrap_or_default(),
        dns,
        dns_search: req.dns_search.unwrap_or_default(),
        dns_options: req.dns_options.unwrap_or_default(),
        extra_hosts,
        netns_path: req.netns_path.filter(|p| !p.is_empty()).map(Into::into),
        host_mode: req.host_network.unwrap_or(false),
        ..Default::default()
    };
    let ctrl = st.ctrl.clone();
    let id = blocking(move || Ok(ctrl.new_sandbox(&name, opts)?.id().to_string())).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "Id": id }))).into_response())
}

/// `POST /lnet/sandboxes/{id}/rename?name=NEW`, as Docker's container rename.
async fn sandbox_rename(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult<StatusCode> {
    let name = q
        .get("name")
        .filter(|n| !n.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::bad("rename needs the new name: ?name=NEW".to_string()))?;
    let rec = st.ctrl.records();
    let sb = lookup_sandbox(&rec, &id)?.id.clone();
    let ctrl = st.ctrl.clone();
    blocking(move || Ok(ctrl.sandbox(&sb)?.rename(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn sandbox_delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let rec = st.ctrl.records();
    let sb = lookup_sandbox(&rec, &id)?.id.clone();
    let ctrl = st.ctrl.clone();
    blocking(move || Ok(ctrl.sandbox(&sb)?.delete()?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(f: &str) -> BTreeMap<String, String> {
        [("filters".to_string(), f.to_string())].into()
    }

    #[test]
    fn filters_take_both_shapes_and_refuse_unknown_names() {
        let f = parse_filters(&q(r#"{"name":{"web":true,"db":false}}"#), &LIST_FILTERS).unwrap();
        assert_eq!(f["name"], ["web"]);
        let f = parse_filters(&q(r#"{"driver":["bridge"]}"#), &LIST_FILTERS).unwrap();
        assert_eq!(f["driver"], ["bridge"]);
        let e = parse_filters(&q(r#"{"colour":["red"]}"#), &LIST_FILTERS).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(
            e.message.contains("invalid filter 'colour'"),
            "{}",
            e.message
        );
        let e = parse_filters(&q("not json"), &LIST_FILTERS).unwrap_err();
        assert!(e.message.contains("not JSON"), "{}", e.message);
        assert!(
            parse_filters(&BTreeMap::new(), &LIST_FILTERS)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn version_prefixes_are_stripped() {
        let strip = |p: &str| {
            let req = Request::builder()
                .uri(p)
                .body(axum::body::Body::empty())
                .unwrap();
            strip_version(req).uri().to_string()
        };
        assert_eq!(strip("/v1.50/networks?filters=x"), "/networks?filters=x");
        assert_eq!(strip("/v1.24/_ping"), "/_ping");
        assert_eq!(strip("/networks"), "/networks");
        assert_eq!(strip("/vx.y/networks"), "/vx.y/networks");
        assert_eq!(strip("/v1.50"), "/v1.50");
    }

    #[test]
    fn bodies_name_the_field_that_is_wrong() {
        let e = parse_body::<api::NetworkCreate>(br#"{"Name":"n","Internal":"yes"}"#).unwrap_err();
        assert!(
            e.message.contains("Internal") && e.message.contains("boolean"),
            "{}",
            e.message
        );
        let e =
            parse_body::<api::NetworkCreate>(br#"{"Name":"n","IPAM":{"Config":[{"Subnet":5}]}}"#)
                .unwrap_err();
        assert!(e.message.contains("IPAM.Config[0].Subnet"), "{}", e.message);
        let e = parse_body::<api::NetworkCreate>(b"{").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = parse_body::<api::NetworkCreate>(b"  ").unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        let ok = parse_body::<api::NetworkCreate>(br#"{"Name":"n","Options":null,"Unknown":1}"#)
            .unwrap();
        assert_eq!(ok.name.as_deref(), Some("n"));
    }

    #[test]
    fn create_requests_map_to_the_core_options() {
        let req = parse_body::<api::NetworkCreate>(
            br#"{"Name":"n","IPAM":{"Config":[{"Subnet":"10.1.0.0/16","IPRange":"10.1.2.0/24","Gateway":"10.1.0.254"},{"Subnet":"fd00::/64"}]},"EnableIPv6":true,"Labels":{"a":"b"}}"#,
        )
        .unwrap();
        let (driver, name, o) = network_options(req).unwrap();
        assert_eq!((driver.as_str(), name.as_str()), ("bridge", "n"));
        assert_eq!(o.ipam.v4.len(), 1);
        assert_eq!(o.ipam.v6.len(), 1);
        assert_eq!(o.ipam.v4[0].gateway, Some("10.1.0.254".parse().unwrap()));
        assert!(o.enable_ipv6);
        let bad = parse_body::<api::NetworkCreate>(
            br#"{"Name":"n","IPAM":{"Config":[{"Gateway":"nope"}]}}"#,
        )
        .unwrap();
        let e = network_options(bad).unwrap_err();
        assert!(
            e.message.contains("IPAM.Config[0].Gateway"),
            "{}",
            e.message
        );
        let e = network_options(parse_body(br#"{"Driver":"bridge"}"#).unwrap()).unwrap_err();
        assert!(e.message.starts_with("Name:"), "{}", e.message);
    }
}
