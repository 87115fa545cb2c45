//! lnet-plugin owns Docker's network plugin protocol as data: every request dockerd (or
//! lnet's own remote driver) sends to `/Plugin.Activate`, `/NetworkDriver.*` and
//! `/IpamDriver.*`, and every answer, as typed values; and the options dockerd packs into
//! those requests (the MAC in base64, published and exposed ports, `-o` driver options),
//! decoded and checked. A request's bytes are untrusted input: [`Request::parse`] never
//! panics, and says which call and which field was wrong. An empty body — dockerd re-sends
//! a drained buffer when it retries — is its own error, so a server can answer it plainly
//! instead of acting on a half-read call. Nothing here does I/O; the server (in the `lnet`
//! binary) and the remote driver (in lnet-core) carry the bytes.

mod ipam;
mod network;
mod options;

pub use ipam::{
    DefaultAddressSpaces, IpamCapabilities, ReleaseAddress, ReleasePool, RequestAddress,
    RequestAddressResponse, RequestPool, RequestPoolResponse,
};
pub use network::{
    Capabilities, CreateEndpoint, CreateEndpointResponse, CreateNetwork, DeleteNetwork,
    EndpointInterface, EndpointRef, InterfaceName, IpamData, Join, JoinResponse,
    ProgramExternalConnectivity, StaticRoute,
};
pub use options::{
    ENABLE_IPV6, EXPOSED, ExposedPort, GENERIC, MAC, NetworkOptions, PORTMAP, PortBinding, Proto,
    endpoint_mac, exposed_ports, mac_option, network_options, port_bindings,
};

use serde::de::DeserializeOwned;

/// The content type of every request and answer.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// What `/Plugin.Activate` answers for a plugin that is both a network and an IPAM driver.
pub const IMPLEMENTS: &[&str] = &["NetworkDriver", "IpamDriver"];

/// A request that cannot be acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The path names no call of the protocol.
    #[error(
        "{path}: not a call of Docker's plugin protocol (POST /Plugin.Activate, /NetworkDriver.<Method> or /IpamDriver.<Method>)"
    )]
    UnknownCall {
        /// The path asked for.
        path: String,
    },
    /// The call came with no body (dockerd re-sends a drained buffer when it retries).
    #[error("{call}: the request has an empty body; send the call again with its JSON body")]
    EmptyBody {
        /// The call.
        call: &'static str,
    },
    /// The body is not the call's JSON, or a field of it is wrong.
    #[error("{call}: {what}")]
    Invalid {
        /// The call.
        call: &'static str,
        /// What was wrong, naming the field.
        what: String,
    },
}

/// Which of the two APIs a call belongs to: they wrap errors differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/Plugin.Activate`.
    Plugin,
    /// `/NetworkDriver.*`: errors are `{"Err": …}`.
    Network,
    /// `/IpamDriver.*`: errors are `{"Error": …}`.
    Ipam,
}

impl Api {
    /// The answer carrying error `message`, as dockerd reads it for this API.
    pub fn error(self, message: &str) -> serde_json::Value {
        match self {
            Api::Ipam => serde_json::json!({ "Error": message }),
            Api::Network | Api::Plugin => serde_json::json!({ "Err": message }),
        }
    }
}

/// One call, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `/Plugin.Activate`.
    Activate,
    /// `/NetworkDriver.GetCapabilities`.
    NetworkCapabilities,
    /// `/NetworkDriver.CreateNetwork`.
    CreateNetwork(CreateNetwork),
    /// `/NetworkDriver.DeleteNetwork`.
    DeleteNetwork(DeleteNetwork),
    /// `/NetworkDriver.CreateEndpoint`.
    CreateEndpoint(CreateEndpoint),
    /// `/NetworkDriver.DeleteEndpoint`.
    DeleteEndpoint(EndpointRef),
    /// `/NetworkDriver.EndpointOperInfo`.
    EndpointOperInfo(EndpointRef),
    /// `/NetworkDriver.Join`.
    Join(Join),
    /// `/NetworkDriver.Leave`.
    Leave(EndpointRef),
    /// `/NetworkDriver.ProgramExternalConnectivity`.
    ProgramExternalConnectivity(ProgramExternalConnectivity),
    /// `/NetworkDriver.RevokeExternalConnectivity`.
    RevokeExternalConnectivity(EndpointRef),
    /// `/NetworkDriver.DiscoverNew` and `DiscoverDelete`: nothing to do on one host.
    Discover,
    /// `/IpamDriver.GetCapabilities`.
    IpamCapabilities,
    /// `/IpamDriver.GetDefaultAddressSpaces`.
    DefaultAddressSpaces,
    /// `/IpamDriver.RequestPool`.
    RequestPool(RequestPool),
    /// `/IpamDriver.ReleasePool`.
    ReleasePool(ReleasePool),
    /// `/IpamDriver.RequestAddress`.
    RequestAddress(RequestAddress),
    /// `/IpamDriver.ReleaseAddress`.
    ReleaseAddress(ReleaseAddress),
}

impl Request {
    /// Parses the call at `path` (`/NetworkDriver.Join`) with `body`. Calls that take no
    /// arguments accept any body, an empty one too.
    pub fn parse(path: &str, body: &[u8]) -> Result<Request, ProtocolError> {
        fn args<T: DeserializeOwned>(call: &'static str, body: &[u8]) -> Result<T, ProtocolError> {
            let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
                return Err(ProtocolError::EmptyBody { call });
            };
            // serde would also take a struct from an array of its fields in order: the
            // protocol only ever sends objects.
            if *first != b'{' {
                return Err(ProtocolError::Invalid {
                    call,
                    what: "the body must be a JSON object".into(),
                });
            }
            serde_json::from_slice(body).map_err(|e| ProtocolError::Invalid {
                call,
                what: format!("the body is not this call's JSON: {e}"),
            })
        }
        let path = path.trim_end_matches('/');
        Ok(match path {
            "/Plugin.Activate" => Request::Activate,
            "/NetworkDriver.GetCapabilities" => Request::NetworkCapabilities,
            "/NetworkDriver.CreateNetwork" => Request::CreateNetwork(args("CreateNetwork", body)?),
            "/NetworkDriver.DeleteNetwork" => Request::DeleteNetwork(args("DeleteNetwork", body)?),
            "/NetworkDriver.CreateEndpoint" => {
                Request::CreateEndpoint(args("CreateEndpoint", body)?)
            }
            "/NetworkDriver.DeleteEndpoint" => {
                Request::DeleteEndpoint(args("DeleteEndpoint", body)?)
            }
            "/NetworkDriver.EndpointOperInfo" => {
                Request::EndpointOperInfo(args("EndpointOperInfo", body)?)
            }
            "/NetworkDriver.Join" => Request::Join(args("Join", body)?),
            "/NetworkDriver.Leave" => Request::Leave(args("Leave", body)?),
            "/NetworkDriver.ProgramExternalConnectivity" => {
                Request::ProgramExternalConnectivity(args("ProgramExternalConnectivity", body)?)
            }
            "/NetworkDriver.RevokeExternalConnectivity" => {
                Request::RevokeExternalConnectivity(args("RevokeExternalConnectivity", body)?)
            }
            "/NetworkDriver.DiscoverNew" | "/NetworkDriver.DiscoverDelete" => Request::Discover,
            "/IpamDriver.GetCapabilities" => Request::IpamCapabilities,
            "/IpamDriver.GetDefaultAddressSpaces" => Request::DefaultAddressSpaces,
            "/IpamDriver.RequestPool" => Request::RequestPool(args("RequestPool", body)?),
            "/IpamDriver.ReleasePool" => Request::ReleasePool(args("ReleasePool", body)?),
            "/IpamDriver.RequestAddress" => Request::RequestAddress(args("RequestAddress", body)?),
            "/IpamDriver.ReleaseAddress" => Request::ReleaseAddress(args("ReleaseAddress", body)?),
            _ => {
                return Err(ProtocolError::UnknownCall {
                    path: path.to_string(),
                });
            }
        })
    }

    /// The API the call belongs to.
    pub fn api(&self) -> Api {
        match self {
            Request::Activate => Api::Plugin,
            Request::IpamCapabilities
            | Request::DefaultAddressSpaces
            | Request::RequestPool(_)
            | Request::ReleasePool(_)
            | Request::RequestAddress(_)
            | Request::ReleaseAddress(_) => Api::Ipam,
            _ => Api::Network,
        }
    }
}

/// The API a path belongs to, for answering a request that did not parse.
pub fn api_of(path: &str) -> Api {
    if path.starts_with("/IpamDriver.") {
        Api::Ipam
    } else if path.starts_with("/NetworkDriver.") {
        Api::Network
    } else {
        Api::Plugin
    }
}
