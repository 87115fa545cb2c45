//! Serving: the sockets of every sandbox's resolver on one small runtime, local answers from
//! the shared name tables, and forwarding to the sandbox's upstream resolvers.
//!
//! The caller makes each sandbox's sockets inside its network namespace (a socket stays in
//! the namespace it was made in) and hands them over; forwarding sockets are made by the
//! runtime's threads, which live in the namespace the [`Server`] was created in — the
//! host's, so a resolver on the host's loopback (`127.0.0.53`) is reachable.
//!
//! Sturdiness: every client has its own task (a slow or silent TCP client holds only its
//! own connection, and is dropped after [`TCP_IDLE`]); forwards are bounded by a
//! semaphore ([`MAX_FORWARDS`]) and each upstream gets [`UPSTREAM_TIMEOUT`]; a name table
//! update swaps a pointer, so queries in flight are never dropped by it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::answer::{Action, Scratch, answer_into, failure};
use crate::names::Names;

/// At most this many queries are being forwarded at once (Docker's limit).
pub const MAX_FORWARDS: usize = 1024;
/// How long one upstream may take before the next is tried.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client that sends nothing for this long is dropped.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// At most this many upstream resolvers are tried, in order (glibc's limit).
pub const MAX_UPSTREAMS: usize = 3;
/// At most this many TCP connections per sandbox; a new one beyond it closes the oldest,
/// so that idle connections can neither exhaust the daemon's file descriptors nor keep a
/// new client out.
pub const MAX_TCP_PER_SANDBOX: usize = 64;

const SERVFAIL: u8 = 2;
const REFUSED: u8 = 5;

/// What one sandbox's resolver knows about its sandbox.
#[derive(Debug, Clone, Default)]
pub struct SandboxDns {
    /// The networks (ids in the name tables) the sandbox is on.
    pub view: Vec<String>,
    /// Where names that are not local go, tried in order (at most [`MAX_UPSTREAMS`]).
    pub upstreams: Vec<SocketAddr>,
}

#[derive(Debug)]
struct Shared {
    names: RwLock<Arc<Names>>,
    sandboxes: RwLock<HashMap<String, Arc<SandboxDns>>>,
    forwards: Arc<Semaphore>,
    /// Bumped by every change of names or sandboxes: a socket's task re-reads what it
    /// knows only when this moved, so a query costs one atomic load, not two locks.
    generation: AtomicU64,
}

/// What one socket's task knows, as of `generation`.
#[derive(Debug)]
struct Context {
    generation: u64,
    names: Arc<Names>,
    sandbox: Arc<SandboxDns>,
}

/// The longest UDP query read (a longer one is cut, and gets FORMERR): a question and an
/// EDNS record take well under 600 bytes, and every sandbox's socket keeps a buffer.
const MAX_UDP_QUERY: usize = 4096;

/// Datagrams answered in one go before the task lets others run.
const BATCH: usize = 64;

/// The resolvers of every sandbox.
#[derive(Debug)]
pub struct Server {
    /// Always `Some` until dropped (see the `Drop` impl).
    rt: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
    tasks: Mutex<HashMap<String, Served>>,
}

/// One sandbox's serving tasks, and the port its sockets are on.
#[derive(Debug)]
struct Served {
    handles: Vec<JoinHandle<()>>,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(rt) = self.rt.take() else { return };
        // Dropped from async code (the daemon lets its controller go from its own
        // runtime), waiting for the workers would panic: tell them to stop and let them
        // end on their own. Anywhere else wait, so that the sockets are closed on return
        // and a new server can take the same ports at once.
        if tokio::runtime::Handle::try_current().is_ok() {
            rt.shutdown_background();
        }
    }
}

impl Server {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.rt
            .as_ref()
            .expect("the runtime is there until the server is dropped")
    }

    /// A server with its own runtime (`threads` workers), created in the calling thread's
    /// network namespace.
    pub fn new(threads: usize) -> std::io::Result<Server> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("lnet-dns")
            .enable_all()
            .build()?;
        Ok(Server {
            rt: Some(rt),
            shared: Arc::new(Shared {
                names: RwLock::new(Arc::new(Names::new())),
                sandboxes: RwLock::new(HashMap::new()),
                forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
                generation: AtomicU64::new(0),
            }),
            tasks: Mutex::new(HashMap::new()),
        })
    }

    /// Replaces the name tables; the next query sees the new ones.
    pub fn set_names(&self, names: Names) {
        *self.shared.names.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(names);
        self.shared.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes the name tables in place (`f` gets a cheap copy of the current ones); the
    /// next query sees the result.
    pub fn update_names(&self, f: impl FnOnce(&mut Names)) {
        let mut guard = self.shared.names.write().unwrap_or_else(|e| e.into_inner());
        let mut names = Names::clone(&guard);
        f(&mut names);
        *guard = Arc::new(names);
        drop(guard);
        self.shared.generation.fetch_add(1, Ordering::Release);
    }

    /// Sets what sandbox `id`'s resolver knows (its networks, its upstreams).
    pub fn set_sandbox(&self, id: &str, dns: SandboxDns) {
        self.shared
            .sandboxes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), Arc::new(dns));
        self.shared.generation.fetch_add(1, Ordering::Release);
    }

    /// Whether sandbox `id` is served.
    pub fn serves(&self, id: &str) -> bool {
        self.port(id).is_some()
    }

    /// The port sandbox `id`'s resolver listens on, when it is served.
    pub fn port(&self, id: &str) -> Option<u16> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|s| s.port)
    }

    /// Every sandbox served.
    pub fn served(&self) -> Vec<String> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Starts serving sandbox `id` on `udp` and `tcp` (made by the caller inside the
    /// sandbox's namespace, non-blocking or not).
    pub fn serve(
        &self,
        id: &str,
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
    ) -> std::io::Result<()> {
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let port = udp.local_addr()?.port();
        let rt = self.runtime();
        let _g = rt.enter();
        let udp = Arc::new(UdpSocket::from_std(udp)?);
        let tcp = TcpListener::from_std(tcp)?;
        let (s1, s2) = (self.shared.clone(), self.shared.clone());
        let (id1, id2) = (id.to_string(), id.to_string());
        let handles = vec![
            rt.spawn(serve_udp(s1, id1, udp)),
            rt.spawn(serve_tcp(s2, id2, tcp)),
        ];
        if let Some(old) = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), Served { handles, port })
        {
            old.handles.into_iter().for_each(|h| h.abort());
        }
        Ok(())
    }

    /// Stops serving sandbox `id` (its sockets close).
    pub fn stop(&self, id: &str) {
        if let Some(served) = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
        {
            served.handles.into_iter().for_each(|h| h.abort());
        }
        self.shared
            .sandboxes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.shared.generation.fetch_add(1, Ordering::Release);
    }
}

impl Shared {
    fn context(&self, id: &str) -> Context {
        // Read first: a change made while we read bumps it again, and is seen next time.
        let generation = self.generation.load(Ordering::Acquire);
        let names = self.names.read().unwrap_or_else(|e| e.into_inner()).clone();
        let sandbox = self
            .sandboxes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .unwrap_or_default();
        Context {
            generation,
            names,
            sandbox,
        }
    }

    /// `ctx`, re-read if anything changed since it was.
    fn refresh(&self, id: &str, ctx: &mut Context) {
        if self.generation.load(Ordering::Acquire) != ctx.generation {
            *ctx = self.context(id);
        }
    }
}

/// RCODE of a DNS message (0 when too short to say).
fn rcode(msg: &[u8]) -> u8 {
    msg.get(3).map_or(0, |b| b & 0x0f)
}

/// The upstreams' answer to `query`, or a failure the client can act on at once: REFUSED
/// when too many forwards are waiting (`permit` is none), SERVFAIL when no upstream gave
/// an answer — never silence, which leaves a client waiting out its own timeouts.
async fn forward_or_fail(
    permit: bool,
    upstreams: &[SocketAddr],
    query: &[u8],
    tcp: bool,
) -> Option<Vec<u8>> {
    if !permit {
        return failure(query, REFUSED, tcp);
    }
    match forward(upstreams, query, tcp).await {
        Some(reply) => Some(reply),
        None => failure(query, SERVFAIL, tcp),
    }
}

/// Asks each upstream in turn (over the client's transport) until one answers with
/// something other than SERVFAIL or REFUSED; a last such answer is passed on as it is.
async fn forward(upstreams: &[SocketAddr], query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let mut last = None;
    for up in upstreams.iter().take(MAX_UPSTREAMS) {
        let res = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            if tcp {
                forward_tcp(*up, query).await
            } else {
                forward_udp(*up, query).await
            }
        })
        .await;
        match res {
            Ok(Ok(reply)) if matches!(rcode(&reply), SERVFAIL | REFUSED) => last = Some(reply),
            Ok(Ok(reply)) => return Some(reply),
            Ok(Err(e)) => tracing::debug!(upstream = %up, error = %e, "upstream failed"),
            Err(_) => tracing::debug!(upstream = %up, "upstream timed out"),
        }
    }
    last
}

async fn forward_udp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if up.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid")
    } else {
        "[::]:0".parse().expect("valid")
    };
    let s = UdpSocket::bind(bind).await?;
    s.connect(up).await?;
    s.send(query).await?;
    let mut buf = Vec::with_capacity(usize::from(u16::MAX));
    loop {
        buf.clear();
        s.recv_buf(&mut buf).await?;
        // Only the answer to this query (same id) counts.
        if buf.len() >= 2 && buf[..2] == query[..2] {
            return Ok(buf);
        }
    }
}

async fn forward_tcp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(up).await?;
    s.set_nodelay(true)?;
    let frame =
        framed(query).ok_or_else(|| std::io::Error::other("query longer than 65535 bytes"))?;
    s.write_all(&frame).await?;
    read_framed(&mut s).await
}

/// A message with its length prefix, to be sent in one write: a prefix sent alone would
/// hold the message back behind Nagle's algorithm until the peer's delayed ACK (40 ms).
fn framed(msg: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(msg.len()).ok()?;
    let mut frame = Vec::with_capacity(msg.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(msg);
    Some(frame)
}

/// One length-prefixed DNS message from a TCP stream.
async fn read_framed(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn serve_udp(shared: Arc<Shared>, id: String, sock: Arc<UdpSocket>) {
    let mut buf = vec![0u8; MAX_UDP_QUERY];
    let mut out = Vec::with_capacity(512);
    let mut scratch = Scratch::default();
    let mut ctx = shared.context(&id);
    let mut turn = 0usize;
    loop {
        if let Err(e) = sock.readable().await {
            tracing::debug!(sandbox = %id, error = %e, "dns socket");
            continue;
        }
        // Everything waiting, then let others run: one readiness wake-up serves a burst.
        for _ in 0..BATCH {
            let (n, from) = match sock.try_recv_from(&mut buf) {
                Ok(v) => v,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(sandbox = %id, error = %e, "dns recv");
                    break;
                }
            };
            shared.refresh(&id, &mut ctx);
            turn = turn.wrapping_add(1);
            // Local answers are made and sent right here (no task, no allocation); only
            // a forward, which waits on the network, gets a task of its own, so a slow
            // upstream holds no one else.
            let view = &ctx.sandbox.view;
            match answer_into(
                &ctx.names,
                view,
                &buf[..n],
                false,
                turn,
                &mut scratch,
                &mut out,
            ) {
                Some(Action::Send) => match sock.try_send_to(&out, from) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let _ = sock.send_to(&out, from).await;
                    }
                    _ => {}
                },
                Some(Action::Forward) => {
                    let permit = shared.forwards.clone().try_acquire_owned().ok();
                    let query = buf[..n].to_vec();
                    let (sock, sandbox) = (sock.clone(), ctx.sandbox.clone());
                    tokio::spawn(async move {
                        let ups = &sandbox.upstreams;
                        let reply = forward_or_fail(permit.is_some(), ups, &query, false).await;
                        drop(permit);
                        if let Some(reply) = reply {
                            let _ = sock.send_to(&reply, from).await;
                        }
                    });
                }
                None => {}
            }
        }
        tokio::task::yield_now().await;
    }
}

async fn serve_tcp(shared: Arc<Shared>, id: String, listener: TcpListener) {
    let mut live: std::collections::VecDeque<tokio::task::AbortHandle> = Default::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin on it.
                tracing::debug!(sandbox = %id, error = %e, "dns accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        live.retain(|h| !h.is_finished());
        if live.len() >= MAX_TCP_PER_SANDBOX
            && let Some(oldest) = live.pop_front()
        {
            oldest.abort();
        }
        let task = tokio::spawn(serve_tcp_client(shared.clone(), id.clone(), stream));
        live.push_back(task.abort_handle());
    }
}

/// One TCP client: several queries may come on one connection; each must arrive within
/// [`TCP_IDLE`], and a length prefix that lies ends the connection (`read_exact` fails).
async fn serve_tcp_client(shared: Arc<Shared>, id: String, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut out = Vec::new();
    let mut scratch = Scratch::default();
    let mut turn = 0usize;
    while let Ok(Ok(query)) = tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await {
        let ctx = shared.context(&id);
        turn = turn.wrapping_add(1);
        let view = &ctx.sandbox.view;
        let reply = match answer_into(&ctx.names, view, &query, true, turn, &mut scratch, &mut out)
        {
            Some(Action::Send) => Some(std::mem::take(&mut out)),
            Some(Action::Forward) => {
                let permit = shared.forwards.try_acquire().ok();
                let ups = &ctx.sandbox.upstreams;
                forward_or_fail(permit.is_some(), ups, &query, true).await
            }
            None => None,
        };
        let Some(frame) = reply.as_deref().and_then(framed) else {
            break;
        };
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
    close_gently(stream).await;
}

/// Closes a connection without losing the replies already written: closing with unread
/// input makes the kernel send a reset, which can destroy them on the way. So: no more
/// writes, then read (and drop) what the client still sends, for a moment, then close.
async fn close_gently(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    let drain = async {
        let mut total = 0usize;
        while let Ok(n) = stream.read(&mut sink).await {
            total += n;
            if n == 0 || total > 64 * 1024 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::rdata::RData;
    use simple_dns::{CLASS, Name, Packet, Question, TYPE};

    /// The daemon lets its controller, and so the server, go from inside its own runtime:
    /// that must shut the server down, not panic (as waiting for its workers there does).
    #[test]
    fn a_server_dropped_from_async_code_shuts_down_without_panicking() {
        let server = Server::new(1).unwrap();
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        outer.block_on(async move { drop(server) });
    }
    use std::net::{IpAddr, Ipv4Addr};

    fn query(name: &str, id: u16) -> Vec<u8> {
        let mut p = Packet::new_query(id);
        p.questions.push(Question::new(
            Name::new_unchecked(name),
            TYPE::A.into(),
            CLASS::IN.into(),
            false,
        ));
        p.build_bytes_vec().unwrap()
    }

    fn first_a(reply: &[u8]) -> Option<Ipv4Addr> {
        let p = Packet::parse(reply).unwrap();
        p.answers.iter().find_map(|rr| match &rr.rdata {
            RData::A(a) => Some(Ipv4Addr::from(a.address)),
            _ => None,
        })
    }

    /// An upstream on loopback that answers every A query with `ip`, or with `rcode`.
    fn upstream(answer: Result<Ipv4Addr, u8>) -> SocketAddr {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let q = Packet::parse(&buf[..n]).unwrap();
                let mut r = q.clone().into_reply();
                match answer {
                    Ok(ip) => r.answers.push(simple_dns::ResourceRecord::new(
                        q.questions[0].qname.clone(),
                        CLASS::IN,
                        5,
                        RData::A(simple_dns::rdata::A {
                            address: u32::from(ip),
                        }),
                    )),
                    Err(code) => *r.rcode_mut() = simple_dns::RCODE::from(u16::from(code)),
                }
                let _ = s.send_to(&r.build_bytes_vec().unwrap(), from);
            }
        });
        addr
    }

    fn ask(server: SocketAddr, name: &str, id: u16) -> Vec<u8> {
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(&query(name, id), server).unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = c.recv_from(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    fn ask_tcp(server: SocketAddr, name: &str, id: u16) -> Vec<u8> {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(server).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let q = query(name, id);
        c.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
        c.write_all(&q).unwrap();
        let mut len = [0u8; 2];
        c.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        c.read_exact(&mut buf).unwrap();
        buf
    }

    fn start(upstreams: Vec<SocketAddr>) -> (Server, SocketAddr) {
        let server = Server::new(1).unwrap();
        let mut names = Names::new();
        names.add_network("n", "net", false);
        names.add("n", &["web"], &[IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))]);
        server.set_names(names);
        server.set_sandbox(
            "s",
            SandboxDns {
                view: vec!["n".into()],
                upstreams,
            },
        );
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        server.serve("s", udp, tcp).unwrap();
        (server, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn local_names_and_forwards_over_udp_and_tcp() {
        let bad = upstream(Err(2));
        let good = upstream(Ok(Ipv4Addr::new(192, 0, 2, 7)));
        let (server, at) = start(vec![bad, good]);
        assert_eq!(
            first_a(&ask(at, "web", 1)),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
        assert_eq!(
            first_a(&ask_tcp(at, "WEB.net", 2)),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
        // SERVFAIL from the first upstream: the second answers.
        let r = ask(at, "example.org", 3);
        assert_eq!(u16::from_be_bytes([r[0], r[1]]), 3);
        assert_eq!(first_a(&r), Some(Ipv4Addr::new(192, 0, 2, 7)));
        // A name table update is seen by the next query.
        let mut names = Names::new();
        names.add_network("n", "net", false);
        names.add("n", &["web"], &[IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9))]);
        server.set_names(names);
        assert_eq!(
            first_a(&ask(at, "web", 4)),
            Some(Ipv4Addr::new(10, 0, 0, 9))
        );
    }

    #[test]
    fn a_silent_tcp_client_does_not_hold_others() {
        let (_server, at) = start(Vec::new());
        let _silent = std::net::TcpStream::connect(at).unwrap();
        let mut half = std::net::TcpStream::connect(at).unwrap();
        std::io::Write::write_all(&mut half, &[0x00]).unwrap();
        assert_eq!(
            first_a(&ask_tcp(at, "web", 5)),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
        assert_eq!(
            first_a(&ask(at, "web", 6)),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
    }

    fn tcp_ask_on(c: &mut std::net::TcpStream, name: &str, id: u16) -> Vec<u8> {
        use std::io::{Read, Write};
        let q = query(name, id);
        let mut frame = (q.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&q);
        c.write_all(&frame).unwrap();
        let mut len = [0u8; 2];
        c.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        c.read_exact(&mut buf).unwrap();
        buf
    }

    /// glibc asks A and AAAA on one connection: the second answer must not wait for the
    /// client's delayed ACK (Nagle's algorithm holding back a length prefix sent alone
    /// costs 40 ms a reply, over a second for these 30; unheld they take milliseconds).
    #[test]
    fn replies_on_one_tcp_connection_are_not_held_back() {
        let (_server, at) = start(Vec::new());
        let mut c = std::net::TcpStream::connect(at).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = std::time::Instant::now();
        for id in 0..30 {
            let r = tcp_ask_on(&mut c, "web", id);
            assert_eq!(u16::from_be_bytes([r[0], r[1]]), id);
        }
        assert!(
            t.elapsed() < Duration::from_millis(600),
            "{:?}",
            t.elapsed()
        );
    }

    /// A bad frame after a good query ends the connection, but the good query's reply
    /// still arrives, followed by an orderly end (no reset that could destroy it).
    #[test]
    fn a_reply_survives_the_bad_frame_after_it() {
        use std::io::{Read, Write};
        let (_server, at) = start(Vec::new());
        let mut c = std::net::TcpStream::connect(at).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp_ask_on(&mut c, "web", 1);
        tcp_ask_on(&mut c, "web", 2);
        let q = query("web", 9);
        let mut bytes = (q.len() as u16).to_be_bytes().to_vec();
        bytes.extend_from_slice(&q);
        bytes.extend_from_slice(&[0, 0, 7, 7, 7, 7]);
        c.write_all(&bytes).unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all)
            .expect("the reply, then an orderly close");
        assert!(all.len() > 4, "{all:?}");
        assert_eq!(u16::from_be_bytes([all[2], all[3]]), 9);
    }

    /// Idle connections beyond the per-sandbox cap close the oldest, not the newcomer: a
    /// sandbox cannot hold an unbounded number of the daemon's file descriptors.
    #[test]
    fn idle_tcp_connections_beyond_the_cap_close_the_oldest() {
        use std::io::Read;
        let (_server, at) = start(Vec::new());
        let mut idle: Vec<_> = (0..MAX_TCP_PER_SANDBOX + 20)
            .map(|_| {
                let c = std::net::TcpStream::connect(at).unwrap();
                // Each accepted before the next, so that "oldest" is well defined.
                std::thread::sleep(Duration::from_millis(2));
                c
            })
            .collect();
        let mut c = std::net::TcpStream::connect(at).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let r = tcp_ask_on(&mut c, "web", 3);
        assert_eq!(first_a(&r), Some(Ipv4Addr::new(10, 0, 0, 2)));
        for (i, old) in idle.iter_mut().take(21).enumerate() {
            old.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 1];
            assert_eq!(
                old.read(&mut b).ok(),
                Some(0),
                "connection {i} is still open"
            );
        }
    }

    /// When no upstream answers, the client hears SERVFAIL at once (Docker's resolver
    /// does the same) rather than waiting out its own timeouts and retries.
    #[test]
    fn no_usable_upstream_is_servfail_not_silence() {
        // A port nothing listens on: the upstream is refused at once.
        let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead_at = dead.local_addr().unwrap();
        drop(dead);
        let (_server, at) = start(vec![dead_at]);
        let r = ask(at, "example.org", 4);
        assert_eq!(u16::from_be_bytes([r[0], r[1]]), 4);
        assert_eq!(r[3] & 0x0f, SERVFAIL);
        let r = ask_tcp(at, "example.org", 5);
        assert_eq!(r[3] & 0x0f, SERVFAIL);
        let p = Packet::parse(&r).unwrap();
        assert_eq!(p.questions[0].qname.to_string(), "example.org");
    }
}
