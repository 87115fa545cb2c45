//! One call to a plugin: `POST /<Subsystem>.<Method>` with a JSON body, over a unix socket
//! or TCP, as dockerd makes it.
//!
//! Written by hand on `httparse` because the call must block (drivers are called from the
//! controller's synchronous operations, some on threads inside the daemon's async runtime,
//! where starting another runtime is refused) and the well-kept blocking clients speak TCP
//! only. What is needed is small: one request per connection, an answer framed by its
//! length or in chunks, and bounds on every wait.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where a plugin listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A unix socket (`/run/docker/plugins/<name>.sock`).
    Unix(PathBuf),
    /// `host:port` (a spec file's `tcp://` address).
    Tcp(String),
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Unix(p) => write!(f, "unix://{}", p.display()),
            Addr::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// How long calls may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The longest wait for one answer once the request is sent.
    pub answer: Duration,
    /// How long connection failures are retried, with dockerd's back-off (1, 2, 4, 8, 16 s,
    /// each wait cut short at this bound).
    pub retry: Duration,
}

impl Default for Bounds {
    /// dockerd's 30 s of retries; an answer within 30 s (dockerd waits for ever, which a
    /// plugin that hangs turns into a daemon that hangs).
    fn default() -> Bounds {
        Bounds {
            answer: Duration::from_secs(30),
            retry: Duration::from_secs(30),
        }
    }
}

/// Why a call got no answer to act on.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing answered at the address, through every retry.
    #[error("cannot reach the plugin at {addr} (tried for {secs} s): {source}")]
    Unreachable {
        /// The address.
        addr: String,
        /// How long it was tried.
        secs: u64,
        /// The last failure.
        #[source]
        source: std::io::Error,
    },
    /// Connected, but no whole answer came in time.
    #[error("{call}: the plugin at {addr} gave no answer within {secs} s")]
    Timeout {
        /// The call.
        call: String,
        /// The address.
        addr: String,
        /// The bound.
        secs: u64,
    },
    /// The answer was not HTTP, or not JSON.
    #[error("{call}: the plugin's answer is not readable: {what}")]
    Garbled {
        /// The call.
        call: String,
        /// What was wrong.
        what: String,
    },
    /// The plugin answered with an error (its `Err` or `Error`, or the HTTP status).
    #[error("{call}: {message}")]
    Refused {
        /// The call.
        call: String,
        /// The plugin's message.
        message: String,
        /// The HTTP status (a 404 means the plugin does not implement the call).
        status: u16,
    },
}

/// The largest answer read (a plugin's answers are small JSON objects).
const MAX_ANSWER: usize = 1 << 20;

/// Makes `call` (`/NetworkDriver.Join`) with `body`, retrying connection failures within
/// `bounds.retry`. A plugin error in the answer is [`CallError::Refused`].
pub fn call(addr: &Addr, call: &str, body: &Value, bounds: Bounds) -> Result<Value, CallError> {
    let payload = serde_json::to_vec(body).expect("a JSON value serializes");
    let started = Instant::now();
    let mut wait = Duration::from_secs(1);
    let stream = loop {
        match connect(addr, bounds.answer) {
            Ok(s) => break s,
            Err(e) => {
                let left = bounds.retry.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(CallError::Unreachable {
                        addr: addr.to_string(),
                        secs: bounds.retry.as_secs(),
                        source: e,
                    });
                }
                tracing::warn!(plugin = %addr, %call, error = %e, retry_in = ?wait.min(left), "cannot reach the plugin; retrying");
                std::thread::sleep(wait.min(left));
                wait = (wait * 2).min(Duration::from_secs(16));
            }
        }
    };
    let timeout = || CallError::Timeout {
        call: call.to_string(),
        addr: addr.to_string(),
        secs: bounds.answer.as_secs(),
    };
    let raw = exchange(stream, call, &payload, bounds.answer).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => timeout(),
        _ => CallError::Garbled {
            call: call.to_string(),
            what: e.to_string(),
        },
    })?;
    let (status, body, _) = parse(&raw).map_err(|what| CallError::Garbled {
        call: call.to_string(),
        what,
    })?;
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(&body).map_err(|e| CallError::Garbled {
            call: call.to_string(),
            what: format!("not JSON: {e}"),
        })?
    };
    // Network drivers say `Err`, IPAM drivers `Error`; either, or a status that is not 200.
    let message = ["Err", "Error"]
        .iter()
        .find_map(|k| {
            value
                .get(*k)
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
        })
        .map(str::to_string);
    match (status, message) {
        (200, None) => Ok(value),
        (status, message) => Err(CallError::Refused {
            call: call.to_string(),
            message: message.unwrap_or_else(|| format!("HTTP status {status}")),
            status,
        }),
    }
}

/// A stream whose reads can be bounded.
trait Timed {
    fn read_timeout(&self, t: Duration) -> std::io::Result<()>;
}

impl Timed for std::os::unix::net::UnixStream {
    fn read_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

impl Timed for std::net::TcpStream {
    fn read_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

fn set_timeout<S: Timed>(s: &S, t: Duration) -> std::io::Result<()> {
    s.read_timeout(t)
}

enum Stream {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

fn connect(addr: &Addr, answer: Duration) -> std::io::Result<Stream> {
    let s = match addr {
        Addr::Unix(p) => {
            let s = connect_unix(p, answer)?;
            s.set_read_timeout(Some(answer))?;
            s.set_write_timeout(Some(answer))?;
            Stream::Unix(s)
        }
        Addr::Tcp(a) => {
            use std::net::ToSocketAddrs;
            let sa = a.to_socket_addrs()?.next().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{a}: no address"))
            })?;
            let s = std::net::TcpStream::connect_timeout(&sa, answer)?;
            s.set_read_timeout(Some(answer))?;
            s.set_write_timeout(Some(answer))?;
            Stream::Tcp(s)
        }
    };
    Ok(s)
}

/// Connects to a unix socket within `bound`: a plain connect waits for ever when the
/// plugin's listen queue is full (a plugin stopped, or stuck before `accept`).
fn connect_unix(
    path: &std::path::Path,
    bound: Duration,
) -> std::io::Result<std::os::unix::net::UnixStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
        Ok(()) => {}
        Err(nix::errno::Errno::EINPROGRESS | nix::errno::Errno::EAGAIN) => {
            let mut fds = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&fd),
                nix::poll::PollFlags::POLLOUT,
            )];
            let ms = u16::try_from(bound.as_millis()).unwrap_or(u16::MAX);
            if nix::poll::poll(&mut fds, ms)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect {}: no room in its queue", path.display()),
                ));
            }
            let err = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SocketError)?;
            if err != 0 {
                return Err(std::io::Error::from_raw_os_error(err));
            }
        }
        Err(e) => return Err(e.into()),
    }
    let s = std::os::unix::net::UnixStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(s)
}

/// Sends the request and reads the whole answer (the connection is closed after it), within
/// `answer` in all.
fn exchange(
    stream: Stream,
    call: &str,
    payload: &[u8],
    answer: Duration,
) -> std::io::Result<Vec<u8>> {
    fn go<S: Read + Write + Timed>(
        mut s: S,
        call: &str,
        payload: &[u8],
        deadline: Instant,
    ) -> std::io::Result<Vec<u8>> {
        let head = format!(
            "POST {call} HTTP/1.1\r\nHost: plugin\r\nUser-Agent: lnet\r\nAccept: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            lnet_plugin::CONTENT_TYPE,
            payload.len()
        );
        s.write_all(head.as_bytes())?;
        s.write_all(payload)?;
        s.flush()?;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            // Each read waits only for what is left of the bound: a plugin that trickles
            // its answer gets no more than the bound in all.
            set_timeout(&s, left)?;
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
            if out.len() > MAX_ANSWER {
                return Err(std::io::Error::other("the answer is larger than 1 MiB"));
            }
            // A plugin may keep the connection open after an answer framed by its length
            // or its chunks; one framed by the end of the connection is read to the end.
            if matches!(parse(&out), Ok((_, _, true))) {
                return Ok(out);
            }
        }
    }
    let deadline = Instant::now() + answer;
    match stream {
        Stream::Unix(s) => go(s, call, payload, deadline),
        Stream::Tcp(s) => go(s, call, payload, deadline),
    }
}

/// The status and body of a complete answer, and whether the answer said where it ends
/// (rather than ending with the connection); an error while it is incomplete or malformed.
fn parse(raw: &[u8]) -> Result<(u16, Vec<u8>, bool), String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let at = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the answer ended early".into()),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = &raw[at..];
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return dechunk(rest).map(|b| (status, b, true));
    }
    match header("content-length") {
        Some(n) => {
            let n: usize = n.parse().map_err(|_| format!("bad Content-Length {n:?}"))?;
            if rest.len() < n {
                return Err("the answer ended early".into());
            }
            Ok((status, rest[..n].to_vec(), true))
        }
        // Framed by the end of the connection (`Connection: close`).
        None => Ok((status, rest.to_vec(), false)),
    }
}

/// A chunked body, whole; an error while incomplete.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("the answer ended early")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .ok()
            .filter(|s| *s <= MAX_ANSWER)
            .ok_or_else(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err("the answer ended early".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_length_in_chunks_or_to_the_end() {
        let by_len = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse(by_len).unwrap(), (200, b"{}".to_vec(), true));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse(chunked).unwrap(), (200, b"{\"a\":1}".to_vec(), true));
        let to_end = b"HTTP/1.0 500 Oops\r\n\r\n{\"Err\":\"x\"}";
        assert_eq!(
            parse(to_end).unwrap(),
            (500, b"{\"Err\":\"x\"}".to_vec(), false)
        );
    }

    #[test]
    fn incomplete_and_garbled_answers_are_errors_not_panics() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 200",
            b"",
        ] {
            assert!(parse(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }
}
