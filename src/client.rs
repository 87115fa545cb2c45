//! The client the CLI talks to the daemon with: HTTP/1.1 over the daemon's unix socket,
//! synchronous to its caller. Each [`Client`] owns a current-thread tokio runtime, so it
//! starts no threads of its own and is gone, runtime and all, when dropped (`lnet sandbox
//! exec` relies on that: it must be single-threaded again before it enters a namespace).

use std::io;
use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use serde_json::Value;

/// The socket `lnet daemon` serves on when given no `-H`.
pub const DEFAULT_HOST: &str = "unix:///run/lnet/lnet.sock";

/// What can go wrong between the CLI and the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `-H` is not a `unix:///absolute/path`.
    #[error(
        "-H {host:?}: lnet talks to its daemon on a unix socket: give unix:///path/to/lnet.sock"
    )]
    InvalidHost {
        /// The value given.
        host: String,
    },
    /// Nothing answers on the socket (missing, refused, no permission).
    #[error(
        "cannot reach the lnet daemon at {}: {error}; is it running? (start it with: lnet daemon)",
        .socket.display()
    )]
    Unreachable {
        /// The socket path.
        socket: PathBuf,
        /// Why connecting failed (in the message, not a `source`: it would print twice).
        error: io::Error,
    },
    /// The daemon answered with a status other than 2xx; `message` is Docker's
    /// `{"message": …}` (or the body's text when it is not that shape).
    #[error("Error response from daemon: {message}")]
    Daemon {
        /// The HTTP status.
        status: StatusCode,
        /// The daemon's message.
        message: String,
    },
    /// The connection broke, or the answer was not HTTP or not the JSON expected.
    #[error("{method} {path}: {detail}")]
    Protocol {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The runtime could not be started.
    #[error("start the client's async runtime: {0}")]
    Runtime(#[source] io::Error),
}

impl ClientError {
    /// The HTTP status of a daemon error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Daemon { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The result of a client call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A connection-per-call client of one daemon socket.
#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
    http: HttpClient<UnixConnector, Full<Bytes>>,
}

/// The socket path of a `-H` value (`unix:///path`).
pub fn socket_of(host: &str) -> Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
        _ => Err(ClientError::InvalidHost {
            host: host.to_string(),
        }),
    }
}

impl Client {
    /// A client of the daemon at `host` (`unix:///path`). Connects only when a request is
    /// made.
    pub fn new(host: &str) -> Result<Client> {
        let socket = socket_of(host)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?;
        // The legacy client spawns its connection tasks on the executor; entering the
        // runtime while it is built makes that executor this runtime.
        let http = {
            let _guard = rt.enter();
            HttpClient::builder(TokioExecutor::new()).build(UnixConnector)
        };
        Ok(Client { socket, rt, http })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET path`: the answer's JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.request(Method::GET, path, None)?
            .ok_or_else(|| ClientError::Protocol {
                method: Method::GET,
                path: path.to_string(),
                detail: "the daemon's answer is empty; JSON was expected".into(),
            })
    }

    /// `POST path` with a JSON body: the answer's JSON, if it has a body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Option<Value>> {
        self.request(Method::POST, path, Some(body))
    }

    /// `DELETE path`: the answer's JSON, if it has a body.
    pub fn delete(&self, path: &str) -> Result<Option<Value>> {
        self.request(Method::DELETE, path, None)
    }

    /// `GET path` for a plain-text answer (`/_ping`).
    pub fn get_text(&self, path: &str) -> Result<String> {
        let (_, bytes) = self.exchange(Method::GET, path, None)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Option<Value>> {
        let (_, bytes) = self.exchange(method.clone(), path, body)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Protocol {
                method,
                path: path.to_string(),
                detail: format!("the daemon's answer is not JSON: {e}"),
            })
    }

    /// Sends one request; a non-2xx answer becomes [`ClientError::Daemon`].
    fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes)> {
        let protocol = |detail: String| ClientError::Protocol {
            method: method.clone(),
            path: path.to_string(),
            detail,
        };
        let uri: hyper::Uri = hyperlocal::Uri::new(&self.socket, path).into();
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(hyper::header::HOST, "lnet");
        let payload = match body {
            Some(v) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| protocol(format!("build the request: {e}")))?;
        self.rt.block_on(async {
            let res = self
                .http
                .request(req)
                .await
                .map_err(|e| match io_cause(&e) {
                    Some(io) if e.is_connect() => ClientError::Unreachable {
                        socket: self.socket.clone(),
                        error: io.raw_os_error().map_or_else(
                            || io::Error::new(io.kind(), io.to_string()),
                            io::Error::from_raw_os_error,
                        ),
                    },
                    _ => protocol(format!("{e}{}", chain(&e))),
                })?;
            let status = res.status();
            let bytes = res
                .into_body()
                .collect()
                .await
                .map_err(|e| protocol(format!("read the answer: {e}")))?
                .to_bytes();
            if status.is_success() {
                return Ok((status, bytes));
            }
            Err(ClientError::Daemon {
                status,
                message: daemon_message(status, &bytes),
            })
        })
    }
}

/// Docker's `{"message": …}`, or whatever text came, or the status when nothing did.
fn daemon_message(status: StatusCode, bytes: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes)
        && let Some(m) = v.get("message").and_then(Value::as_str)
    {
        return m.to_string();
    }
    let text = String::from_utf8_lossy(bytes).trim().to_string();
    if text.is_empty() {
        status.to_string()
    } else {
        text
    }
}

/// The I/O error under a hyper-util error, if there is one (the connector's).
fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur = e.source();
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = c.source();
    }
    None
}

/// `: cause: cause…` for an error whose own text hides its causes (hyper's do).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved characters pass).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_must_be_unix_sockets() {
        assert_eq!(
            socket_of("unix:///run/lnet/lnet.sock").ok(),
            Some(PathBuf::from("/run/lnet/lnet.sock"))
        );
        assert!(matches!(
            socket_of("tcp://1.2.3.4:2375"),
            Err(ClientError::InvalidHost { .. })
        ));
        socket_of("unix://relative").unwrap_err();
    }

    #[test]
    fn daemon_messages_come_from_the_body() {
        assert_eq!(
            daemon_message(
                StatusCode::NOT_FOUND,
                br#"{"message":"network x not found"}"#
            ),
            "network x not found"
        );
        assert_eq!(daemon_message(StatusCode::BAD_GATEWAY, b"oops\n"), "oops");
        assert_eq!(
            daemon_message(StatusCode::INTERNAL_SERVER_ERROR, b""),
            "500 Internal Server Error"
        );
    }

    #[test]
    fn encoding_keeps_unreserved_characters() {
        assert_eq!(encode("web-1.a_b~"), "web-1.a_b~");
        assert_eq!(
            encode(r#"{"name":{"x":true}}"#),
            "%7B%22name%22%3A%7B%22x%22%3Atrue%7D%7D"
        );
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn an_absent_socket_is_unreachable() {
        let c = Client::new("unix:///nonexistent/lnet.sock").unwrap();
        let e = c.get("/_ping").unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{text}");
        assert!(
            text.starts_with(
                "cannot reach the lnet daemon at /nonexistent/lnet.sock: No such file or directory"
            ),
            "{text}"
        );
    }
}
