//! The embedded DNS as the controller keeps it: which sandboxes get a resolver (those on a
//! user-defined bridge network, as in Docker — not the default `bridge`), what it knows (the
//! names of every joined endpoint, derived from records), and the plumbing in the sandbox:
//! a UDP and a TCP socket on `127.0.0.11` at a free port, and port 53 redirected to it in
//! the sandbox's own nftables table (`ip lnetdns`, see [`redirect`]) — so a container can
//! still run its own DNS server on port 53 of its other addresses. All of it is derived:
//! nothing is stored, and a restart makes it again.
//!
//! The sockets and the redirect are made on a sandbox's first join to such a network and
//! kept until the sandbox goes: the chain registers a netfilter hook in the sandbox's
//! namespace, and removing hooks waits for RCU grace periods — too slow to redo on every
//! connect and disconnect. Leaving the last DNS network only empties the resolver's view
//! and restores the plain resolv.conf.

use std::net::{IpAddr, SocketAddr};

use lnet_kernel::Netns;
use lnet_kernel::nft::{Batch, Chain, ChainType, Data, Expr, Family, Hook, NftSocket, Rule};
use lnet_store::{Lifecycle, NetworkRecord};

use crate::error::{CoreError, Result};
use crate::files::{self, DnsSettings, EMBEDDED_DNS};
use crate::state::{Cx, State};

/// The sandbox table of the DNS redirect, and its chain.
const TABLE: &str = "lnetdns";
const CHAIN: &str = "rewrite";
/// Receive buffer of a resolver's UDP socket.
const RESOLVER_RCVBUF: usize = 1 << 20;

/// Whether endpoints of `net` get names and their sandboxes a resolver.
fn has_dns(cx: &Cx, net: &NetworkRecord) -> bool {
    net.state == Lifecycle::Ready
        && cx
            .driver(&net.driver)
            .is_ok_and(|d| d.facts(net).resolves_names)
}

impl State {
    /// Stops serving a sandbox that is going away (its namespace takes the redirect).
    pub(crate) fn forget_sandbox_dns(&self, sb_id: &str) {
        if let Some(server) = &self.dns {
            server.stop(sb_id);
        }
    }

    /// Every name the resolvers answer, from the records.
    fn dns_names(&self, cx: &Cx) -> lnet_dns::Names {
        let mut names = lnet_dns::Names::new();
        for net in self.networks.values().filter(|n| has_dns(cx, n)) {
            self.add_dns_names(&mut names, net);
        }
        names
    }

    /// Network `net`'s names (its joined endpoints'), added to `names`.
    fn add_dns_names(&self, names: &mut lnet_dns::Names, net: &NetworkRecord) {
        names.add_network(&net.id, &net.name, net.internal);
        for ep in self.endpoints.in_network(&net.id) {
            let Some(join) = &ep.join else { continue };
            let mut list: Vec<&str> = Vec::new();
            if let Some(sb) = self.sandboxes.get(&join.sandbox_id) {
                list.push(&sb.rec.container_id);
            }
            for n in std::iter::once(&ep.name).chain(ep.aliases.iter()) {
                if !list.contains(&n.as_str()) {
                    list.push(n);
                }
            }
            let addrs: Vec<IpAddr> = ep
                .addr_v4
                .iter()
                .chain(ep.addr_v6.iter())
                .map(|a| a.addr())
                .collect();
            names.add(&net.id, &list, &addrs);
        }
    }

    /// The DNS networks sandbox `sb_id` is joined to.
    pub(crate) fn dns_view(&self, cx: &Cx, sb_id: &str) -> Vec<String> {
        self.joined(sb_id)
            .iter()
            .filter(|e| {
                self.networks
                    .get(&e.network_id)
                    .is_some_and(|n| has_dns(cx, n))
            })
            .map(|e| e.network_id.clone())
            .collect()
    }

    /// A join or leave of sandbox `sb_id` on network `net_id`: nothing to do unless that
    /// network has DNS (the default bridge's joins cost nothing here).
    pub(crate) fn dns_after(&mut self, cx: &Cx, sb_id: &str, net_id: &str) {
        let Some(net) = self.networks.get(net_id).filter(|n| has_dns(cx, n)) else {
            return;
        };
        let Some(server) = &self.dns else {
            return;
        };
        // Only this network's table is rebuilt: a join costs the same with ten thousand
        // names elsewhere.
        let mut part = lnet_dns::Names::new();
        self.add_dns_names(&mut part, net);
        server.update_names(|names| names.replace_network(net_id, &part));
        self.refresh_sandbox_dns_logged(cx, sb_id);
    }

    /// Rebuilds every network's name table from the records (start-up, a rename).
    pub(crate) fn refresh_dns_names(&self, cx: &Cx) {
        if let Some(server) = &self.dns {
            server.set_names(self.dns_names(cx));
        }
    }

    /// Sandbox `sb_id`'s resolver, redirect and resolv.conf (the name tables as they
    /// are). Best effort: a failure is logged and leaves the sandbox with its plain
    /// resolv.conf.
    pub(crate) fn refresh_sandbox_dns_logged(&mut self, cx: &Cx, sb: &str) {
        self.refresh_sandbox_dns_with(cx, sb, None);
    }

    /// [`State::refresh_sandbox_dns_logged`], with the resolver's sockets when a start has
    /// opened them already ([`reopen_resolver`]).
    pub(crate) fn refresh_sandbox_dns_with(
        &mut self,
        cx: &Cx,
        sb: &str,
        reopened: Option<ResolverSockets>,
    ) {
        if self.dns.is_none() {
            return;
        }
        if let Err(e) = self.refresh_sandbox_dns(cx, sb, reopened) {
            tracing::warn!(sandbox = %sb, error = %e, "embedded DNS not set up; the sandbox uses its upstream servers directly");
            let _ = self.stop_sandbox_dns(cx, sb);
        }
    }

    fn refresh_sandbox_dns(
        &mut self,
        cx: &Cx,
        sb_id: &str,
        reopened: Option<ResolverSockets>,
    ) -> Result<()> {
        let view = self.dns_view(cx, sb_id);
        let Some(entry) = self.sandboxes.get_mut(sb_id) else {
            return Ok(());
        };
        if !entry.rec.lnet_inside() {
            return Ok(());
        }
        if view.is_empty() {
            let server = self.dns.as_ref().expect("checked by the caller");
            if !server.serves(sb_id) {
                return Ok(());
            }
            server.set_sandbox(sb_id, lnet_dns::SandboxDns::default());
            return crate::ops::write_resolv_conf(cx, &entry.rec);
        }
        let rec = entry.rec.clone();
        let host_resolv = std::fs::read_to_string(&cx.config.host_resolv_conf).unwrap_or_default();
        let (resolv, upstreams) = files::embedded_resolv_conf(
            &host_resolv,
            &DnsSettings {
                servers: &rec.dns,
                search: &rec.dns_search,
                options: &rec.dns_options,
            },
        );
        let server = self.dns.as_ref().expect("checked by the caller");
        server.set_sandbox(
            sb_id,
            lnet_dns::SandboxDns {
                view,
                upstreams: upstreams
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, 53))
                    .collect(),
            },
        );
        if !server.serves(sb_id) {
            let Some(mut k) = entry.kernel() else {
                return Ok(());
            };
            // Sockets reopened at start were reopened only where lo was up.
            if reopened.is_none() {
                k.nl.set_up(lnet_kernel::LOOPBACK_INDEX)
                    .map_err(CoreError::kernel("bring up lo in the sandbox"))?;
            }
            // One trip into the sandbox: its sockets, and its redirect unless the one there
            // already points at them — a restart takes the port its predecessor had, so
            // nothing in the kernel changes (and queries meanwhile fail over at once).
            let (udp, tcp) = match reopened {
                Some(sockets) => sockets,
                None => {
                    k.ns.run(open_resolver)
                        .map_err(CoreError::kernel("enter the sandbox for its resolver"))??
                }
            };
            server
                .serve(sb_id, udp, tcp)
                .map_err(CoreError::io("serve the sandbox's resolver"))?;
        }
        files::write_in_place(&rec.files_dir.join("resolv.conf"), &resolv)
    }

    /// Stops sandbox `sb_id`'s resolver, removes its redirect and gives it back its plain
    /// resolv.conf (a setup that failed half way).
    pub(crate) fn stop_sandbox_dns(&mut self, cx: &Cx, sb_id: &str) -> Result<()> {
        let Some(server) = &self.dns else {
            return Ok(());
        };
        // Whatever the failed setup got to: the sockets, the redirect (destroying an
        // absent table is fine), the resolv.conf.
        server.stop(sb_id);
        let Some(entry) = self.sandboxes.get(sb_id) else {
            return Ok(());
        };
        if let Some(k) = entry.kernel() {
            let mut b = Batch::new();
            b.destroy_table(Family::Ip, TABLE);
            NftSocket::in_netns(&k.ns)
                .and_then(|mut s| s.commit(&b))
                .map_err(CoreError::kernel("remove the DNS redirect in the sandbox"))?;
        }
        crate::ops::write_resolv_conf(cx, &entry.rec)
    }
}

/// Inside a sandbox: the rules of its DNS redirect, for [`redirect_drift`].
pub(crate) fn redirect_rules_here() -> lnet_kernel::Result<Vec<lnet_kernel::nft::RuleInfo>> {
    NftSocket::new().and_then(|mut s| s.rules(Family::Ip, TABLE, CHAIN))
}

/// A resolver's UDP and TCP sockets.
pub(crate) type ResolverSockets = (std::net::UdpSocket, std::net::TcpListener);

/// Inside a sandbox at start: the resolver's sockets on the port the redirect already there
/// points at, so that a start makes them in the one trip it takes into each sandbox anyway
/// and changes nothing in the kernel. `None` when there is no such redirect, or the port is
/// taken: the resolver is then made as for a new sandbox.
pub(crate) fn reopen_resolver() -> Option<ResolverSockets> {
    let mut nft = NftSocket::new().ok()?;
    let port = redirected_port(&mut nft)?;
    let (udp, tcp) = bind_resolver(Some(port)).ok()?;
    (udp.local_addr().ok()?.port() == port).then_some((udp, tcp))
}

/// The resolver's sockets and redirect, made inside the sandbox (see the caller).
fn open_resolver() -> Result<ResolverSockets> {
    let mut nft =
        NftSocket::new().map_err(CoreError::kernel("open an nftables socket in the sandbox"))?;
    let there = redirected_port(&mut nft);
    let (udp, tcp) =
        bind_resolver(there).map_err(CoreError::io("open the sandbox's resolver sockets"))?;
    let port = udp
        .local_addr()
        .map_err(CoreError::io("read the resolver's port"))?
        .port();
    if there != Some(port) {
        redirect(&mut nft, port)?;
    }
    Ok((udp, tcp))
}

/// The port the sandbox's redirect points at, when its rules are exactly lnet's.
fn redirected_port(nft: &mut NftSocket) -> Option<u16> {
    let rules = nft.rules(Family::Ip, TABLE, CHAIN).ok()?;
    let port = rules.first()?.exprs.iter().find_map(|e| match e {
        Expr::Immediate {
            data: Data::Value(v),
            ..
        } if v.len() == 2 => Some(u16::from_be_bytes([v[0], v[1]])),
        _ => None,
    })?;
    let want = redirect_rules(port);
    (rules.len() == want.len() && rules.iter().zip(&want).all(|(h, w)| h.exprs == w.exprs()))
        .then_some(port)
}

/// A UDP and a TCP socket on 127.0.0.11 at one port: `prefer` if it is free, else any.
fn bind_resolver(
    prefer: Option<u16>,
) -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let mut last = None;
    let ports = prefer.into_iter().chain(std::iter::repeat_n(0, 16));
    for want in ports {
        let udp = match std::net::UdpSocket::bind((EMBEDDED_DNS, want)) {
            Ok(u) => u,
            Err(e) if want != 0 => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        // A burst of queries (a client's parallel lookups, a benchmark) queues rather than
        // drops: the default buffer holds about 160 small datagrams. Only a ceiling, not
        // memory taken; without CAP_NET_ADMIN the default stays.
        if let Err(e) = lnet_kernel::sysctl::force_recv_buffer(&udp, RESOLVER_RCVBUF) {
            tracing::debug!(error = %e, "resolver receive buffer left at the default");
        }
        let port = udp.local_addr()?.port();
        match std::net::TcpListener::bind((EMBEDDED_DNS, port)) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port on 127.0.0.11")))
}

/// Port 53 of 127.0.0.11 (UDP and TCP) to the resolver's `port` and back, in the
/// sandbox's own table: a stateless rewrite of the destination port of queries and of the
/// source port of replies, in one chain on the output hook (every client of 127.0.0.11 is
/// inside the sandbox). An older redirect's rules are replaced in the same transaction
/// (its chain, and so its hook, stay).
///
/// Why not a DNAT, as Docker does: a nat chain switches conntrack on for the whole
/// sandbox, so every packet of the container — its own traffic too — pays a connection
/// lookup, and each DNS packet also pays NAT; registering nat hooks also waits for RCU
/// grace periods. The rewrite keeps the sandbox free of conntrack and costs two
/// comparisons per packet.
fn redirect(nft: &mut NftSocket, port: u16) -> Result<()> {
    let mut b = Batch::new();
    b.add_table(Family::Ip, TABLE);
    // A redirect made by an lnet before the rewrite: a DNAT in chain `output`.
    b.destroy_chain(Family::Ip, TABLE, "output");
    b.add_chain(&Chain::base(
        Family::Ip,
        TABLE,
        CHAIN,
        ChainType::Filter,
        Hook::Output,
        // raw: before conntrack, should the container switch it on.
        -300,
    ));
    b.flush_chain(Family::Ip, TABLE, CHAIN);
    for rule in redirect_rules(port) {
        b.add_rule(&rule);
    }
    nft.commit(&b)
        .map_err(CoreError::kernel("add the DNS redirect in the sandbox"))
}

/// The rules of the redirect to the resolver on `port`: queries' destination port 53 to
/// `port`, replies' source port back to 53, for UDP and TCP.
fn redirect_rules(port: u16) -> Vec<Rule> {
    let dns = ipnet::IpNet::from(IpAddr::V4(EMBEDDED_DNS));
    let mut rules = Vec::new();
    for proto in [17u8, 6] {
        rules.push(
            Rule::new(Family::Ip, TABLE, CHAIN)
                .daddr_in(dns)
                .l4proto(proto)
                .dport(53)
                .set_port(proto, true, port),
        );
        rules.push(
            Rule::new(Family::Ip, TABLE, CHAIN)
                .saddr_in(dns)
                .l4proto(proto)
                .sport(port)
                .set_port(proto, false, 53),
        );
    }
    rules
}

/// Whether the redirect `rules` (read in a sandbox) send 127.0.0.11:53 to `port`: `None`
/// when they do, else what is wrong.
pub(crate) fn redirect_drift(
    port: u16,
    rules: lnet_kernel::Result<Vec<lnet_kernel::nft::RuleInfo>>,
) -> Option<String> {
    let want: Vec<_> = redirect_rules(port)
        .iter()
        .map(|r| r.exprs().to_vec())
        .collect();
    match rules {
        Ok(have) if have.iter().map(|r| &r.exprs).eq(want.iter()) => None,
        Ok(_) => Some(format!(
            "redirect of 127.0.0.11:53 to port {port} (its rules differ)"
        )),
        Err(_) => Some(format!(
            "redirect of 127.0.0.11:53 to port {port} (table ip {TABLE})"
        )),
    }
}

/// The redirect's rules in the sandbox whose namespace is `ns`.
pub(crate) fn redirect_rules_in(
    ns: &Netns,
) -> lnet_kernel::Result<Vec<lnet_kernel::nft::RuleInfo>> {
    NftSocket::in_netns(ns).and_then(|mut s| s.rules(Family::Ip, TABLE, CHAIN))
}

impl State {
    /// Whether sandbox `sb_id`'s redirect to its resolver is in place, when it is served:
    /// `None` when it is (or there is none to check), else what is wrong. The sandbox's
    /// rules are read only when there is a resolver to compare them with.
    pub(crate) fn dns_redirect_drift(&self, sb_id: &str) -> Option<String> {
        let port = self.resolver_port(sb_id)?;
        let ns = self.sandboxes.get(sb_id)?.ns.clone()?;
        redirect_drift(port, redirect_rules_in(&ns))
    }

    /// The port sandbox `sb_id`'s resolver answers on, when it is served.
    pub(crate) fn resolver_port(&self, sb_id: &str) -> Option<u16> {
        self.dns.as_ref()?.port(sb_id)
    }

    /// Whether sandbox `sb_id` is served a resolver.
    pub(crate) fn serves(&self, sb_id: &str) -> bool {
        self.dns.as_ref().is_some_and(|d| d.serves(sb_id))
    }

    /// Puts sandbox `sb_id`'s redirect back when it is served and the redirect is not as
    /// it should be (someone flushed the sandbox's ruleset).
    pub(crate) fn repair_dns_redirect(&self, sb_id: &str) -> Result<bool> {
        if self.dns_redirect_drift(sb_id).is_none() {
            return Ok(false);
        }
        let (Some(port), Some(k)) = (
            self.dns.as_ref().and_then(|d| d.port(sb_id)),
            self.sandboxes.get(sb_id).and_then(|s| s.kernel()),
        ) else {
            return Ok(false);
        };
        let mut nft = NftSocket::in_netns(&k.ns)
            .map_err(CoreError::kernel("open an nftables socket in the sandbox"))?;
        redirect(&mut nft, port).map(|()| true)
    }

    /// Stops the resolvers of sandboxes that are gone (a repair found their namespace gone).
    pub(crate) fn forget_gone_sandbox_dns(&self) {
        if let Some(server) = &self.dns {
            for id in server.served() {
                if !self.sandboxes.contains_key(&id) {
                    server.stop(&id);
                }
            }
        }
    }
}
