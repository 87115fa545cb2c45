//! Published ports and the firewall as the controller sees them: host ports are taken for
//! an endpoint when it is created (and recorded with it), given back when it is deleted,
//! and replayed from the records at start; the firewall's elements are derived from the
//! records and compared with (or made to match) the kernel's.
//!
//! Each host port lnet hands out is also held on the host by a bound socket
//! ([`Reserved`], `lnet_kernel::hostport`) from the endpoint's create to its delete — the
//! same span the allocator holds it, so a host service cannot slip in between a create
//! and a join. A port some other program holds is refused, naming the holder, and a range
//! or ephemeral request skips it. The sockets live in the controller's memory: they close
//! when the controller is dropped or its process dies, and a start takes them again from
//! the records. A recorded port some other program took while lnet was down is kept in the
//! record and its DNAT element stays (the element outlived lnet in the kernel, so that
//! program never had the port's traffic); the start reports it and logs an error, never
//! refuses to start, `lnet doctor` names the holder, and a join of an endpoint whose port
//! is held elsewhere is refused rather than taking the port's traffic.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use lnet_ipam::PortError;
use lnet_kernel::hostport;
use lnet_kernel::{IpFamily, KernelError, Netns};
use lnet_store::{EndpointRecord, Lifecycle, NetworkRecord, PortMapping, Proto};

use crate::driver::Registry;
use crate::error::{CoreError, Result};
use crate::firewall::{Drift, Want};
use crate::hostports::{Binding, transport};
use crate::ports::{FIELD, PortSpec};
use crate::state::{Cx, State};

/// How often an ephemeral port is drawn again when the IPv4 port is free but the same
/// port is taken on IPv6 (libnetwork's `maxAllocatePortAttempts`).
const DUAL_STACK_ATTEMPTS: usize = 10;

fn port_err(source: PortError) -> CoreError {
    CoreError::Port {
        field: FIELD.into(),
        source,
    }
}

/// Who holds a binding, as the allocator's errors name it.
pub(crate) fn port_owner(ep_name: &str, net_name: &str) -> String {
    format!("endpoint {ep_name} on network {net_name}")
}

/// Who holds `ip:port/proto` on the host (in `ns`), for an error: the first colliding
/// socket of the namespace's tables, or a plain word when none is listed (SCTP).
fn host_holder(ns: &Netns, (ip, proto, port): Binding) -> (IpAddr, String) {
    let found = ns
        .run(|| hostport::holders(SocketAddr::new(ip, port), transport(proto)))
        .unwrap_or_default();
    match found.first() {
        Some(h) => (h.local.ip(), h.to_string()),
        None => (ip, "another program on the host".into()),
    }
}

/// What `lnet doctor` and a start say about a recorded host port of `ep` that another
/// program holds: who, and what to do.
fn held_elsewhere(ns: &Netns, ep: &EndpointRecord, b: Binding) -> String {
    let (held_ip, holder) = host_holder(ns, b);
    format!(
        "host port {}/{} is held by {holder} on {}, not by lnet ({}): stop that program, then run `lnet doctor --repair` to hold the port again",
        SocketAddr::new(b.0, b.2),
        b.1,
        SocketAddr::new(held_ip, b.2),
        if ep.join.is_some() {
            "the port's traffic still goes to the container"
        } else {
            "a join of the endpoint is refused until then"
        }
    )
}

/// The error for a host port lnet could not hold: who holds it when someone does, else
/// what the kernel said.
fn refused(ns: &Netns, b: Binding, e: KernelError) -> CoreError {
    if !e.is_in_use() {
        return CoreError::kernel(format!(
            "hold host port {}/{}",
            SocketAddr::new(b.0, b.2),
            b.1
        ))(e);
    }
    let (held_ip, holder) = host_holder(ns, b);
    port_err(PortError::InUse {
        host_ip: b.0,
        port: b.2,
        proto: b.1,
        held_ip,
        holder,
    })
}

impl State {
    /// Whether `ip` is an address of the host (loopback addresses always are).
    fn is_host_address(&mut self, ip: IpAddr) -> Result<bool> {
        if ip.is_loopback() || ip.is_unspecified() {
            return Ok(true);
        }
        let addrs = self
            .host
            .nl
            .addresses(None)
            .map_err(CoreError::kernel("list the host's addresses"))?;
        Ok(addrs.iter().any(|(_, a)| a.addr() == ip))
    }

    /// Takes host ports for `specs` on behalf of a new endpoint with addresses `v4`/`v6`.
    /// All or nothing: on an error every port taken so far is given back.
    pub(crate) fn allocate_ports(
        &mut self,
        net: &NetworkRecord,
        default_ip: IpAddr,
        ep_name: &str,
        (v4, v6): (Option<IpNet>, Option<IpNet>),
        specs: &[PortSpec],
    ) -> Result<Vec<PortMapping>> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let owner = port_owner(ep_name, &net.name);
        let mut taken: Vec<PortMapping> = Vec::new();
        let res = (|| -> Result<()> {
            for spec in specs {
                let ips = self.host_ips(net, spec, default_ip, v4.is_some(), v6.is_some())?;
                for i in 0..spec.len() {
                    let container_port = spec.container.0 + i as u16;
                    let ports = self.take_same_port(spec, i, &ips, &owner)?;
                    taken.extend(ips.iter().zip(ports).map(|(ip, port)| PortMapping {
                        proto: spec.proto,
                        host_ip: *ip,
                        host_port: port,
                        container_port,
                    }));
                }
            }
            Ok(())
        })();
        match res {
            Ok(()) => Ok(taken),
            Err(e) => {
                self.release_ports(&taken);
                Err(e)
            }
        }
    }

    /// The host addresses one request binds: the one it names, or the network's default;
    /// the unspecified default binds IPv6 too when the endpoint has an IPv6 address.
    fn host_ips(
        &mut self,
        net: &NetworkRecord,
        spec: &PortSpec,
        default_ip: IpAddr,
        has_v4: bool,
        has_v6: bool,
    ) -> Result<Vec<IpAddr>> {
        let ips = match spec.host_ip {
            Some(ip) => vec![ip],
            None if default_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) && has_v6 => {
                vec![default_ip, IpAddr::V6(Ipv6Addr::UNSPECIFIED)]
            }
            None => vec![default_ip],
        };
        for ip in &ips {
            let has = if ip.is_ipv4() { has_v4 } else { has_v6 };
            if !has {
                return Err(CoreError::invalid(
                    FIELD,
                    spec,
                    format!(
                        "host address {ip} is IPv{} but the endpoint has no IPv{0} address on network {}; publish on an address of the other family{}",
                        if ip.is_ipv4() { 4 } else { 6 },
                        net.name,
                        if ip.is_ipv6() {
                            ", or create the network with IPv6 enabled"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            if !self.is_host_address(*ip)? {
                return Err(CoreError::invalid(
                    FIELD,
                    spec,
                    format!(
                        "host address {ip} is not an address of this host; give one of its addresses, or none to publish on all"
                    ),
                ));
            }
        }
        Ok(ips)
    }

    /// Takes one host port on every address of `ips` — the same port number on each, as
    /// Docker publishes `0.0.0.0:p` and `[::]:p` together — and holds each on the host. A
    /// port the user chose that another program holds is refused, naming the holder; a
    /// range or an ephemeral request passes over such ports.
    fn take_same_port(
        &mut self,
        spec: &PortSpec,
        i: usize,
        ips: &[IpAddr],
        owner: &str,
    ) -> Result<Vec<u16>> {
        let proto = spec.proto;
        let range = spec.host_request(i);
        let exact = range.0 == range.1 && range.0 != 0;
        let attempts = if exact || ips.len() == 1 {
            1
        } else {
            DUAL_STACK_ATTEMPTS
        };
        let mut last_err = None;
        for _ in 0..attempts {
            let port = self.take_first(ips[0], proto, range, owner)?;
            let mut got = vec![port];
            // Whether the kernel failed for a reason other than a holder: no retry helps.
            let mut fatal = false;
            for ip in &ips[1..] {
                let b = (*ip, proto, port);
                match self.ports.request(*ip, proto, (port, port), owner) {
                    Ok(_) => match self.reserved.take(self.host.ns(), b) {
                        Ok(()) => got.push(port),
                        Err(e) => {
                            self.ports.release(*ip, proto, port);
                            fatal = !e.is_in_use();
                            last_err = Some(refused(self.host.ns(), b, e));
                            break;
                        }
                    },
                    Err(e) => {
                        last_err = Some(port_err(e));
                        break;
                    }
                }
            }
            if got.len() == ips.len() {
                return Ok(got);
            }
            for (ip, p) in ips.iter().zip(&got) {
                self.give_back((*ip, proto, *p));
            }
            if fatal {
                break;
            }
        }
        Err(last_err.expect("an attempt failed"))
    }

    /// Takes and holds the port for the first address: exactly the one asked for, or the
    /// next of the range no one holds, here or on the host.
    fn take_first(
        &mut self,
        ip: IpAddr,
        proto: Proto,
        range: (u16, u16),
        owner: &str,
    ) -> Result<u16> {
        if range.0 == range.1 && range.0 != 0 {
            let port = self
                .ports
                .request(ip, proto, range, owner)
                .map_err(port_err)?;
            if let Err(e) = self.reserved.take(self.host.ns(), (ip, proto, port)) {
                self.ports.release(ip, proto, port);
                return Err(refused(self.host.ns(), (ip, proto, port), e));
            }
            return Ok(port);
        }
        let (reserved, ns) = (&mut self.reserved, self.host.ns());
        let mut failed = None;
        let port = self
            .ports
            .request_where(ip, proto, range, owner, |p| {
                match reserved.take(ns, (ip, proto, p)) {
                    Ok(()) => true,
                    Err(e) if e.is_in_use() => false,
                    // Not a port someone holds: stop at this one and report it.
                    Err(e) => {
                        failed = Some(e);
                        true
                    }
                }
            })
            .map_err(port_err)?;
        if let Some(e) = failed {
            self.ports.release(ip, proto, port);
            return Err(refused(self.host.ns(), (ip, proto, port), e));
        }
        Ok(port)
    }

    /// Gives one host port back: to the allocator, and its socket closed.
    fn give_back(&mut self, (ip, proto, port): Binding) {
        self.ports.release(ip, proto, port);
        self.reserved.give_back((ip, proto, port));
    }

    /// Gives host ports back.
    pub(crate) fn release_ports(&mut self, ports: &[PortMapping]) {
        for p in ports {
            self.give_back((p.host_ip, p.proto, p.host_port));
        }
    }

    /// Takes an endpoint's recorded host ports again (start-up). A port another record
    /// holds is an error (the endpoint cannot be re-derived); a port another program took
    /// while lnet was down is not: the record keeps it, and what happened comes back as a
    /// message for the recovery report (see the module's notes).
    pub(crate) fn replay_ports(
        &mut self,
        net: &NetworkRecord,
        ep: &EndpointRecord,
    ) -> Result<Vec<String>> {
        let owner = port_owner(&ep.name, &net.name);
        for (n, p) in ep.ports.iter().enumerate() {
            if let Err(e) =
                self.ports
                    .request(p.host_ip, p.proto, (p.host_port, p.host_port), &owner)
            {
                self.release_ports(&ep.ports[..n]);
                return Err(port_err(e));
            }
        }
        Ok(self.hold_recorded(ep))
    }

    /// Holds every recorded host port of `ep` that no socket of lnet holds yet; what it
    /// could not hold, each as a message naming the endpoint and the holder.
    fn hold_recorded(&mut self, ep: &EndpointRecord) -> Vec<String> {
        let mut lost = Vec::new();
        for p in &ep.ports {
            let b = (p.host_ip, p.proto, p.host_port);
            if let Err(e) = self.reserved.take(self.host.ns(), b) {
                let what = if e.is_in_use() {
                    held_elsewhere(self.host.ns(), ep, b)
                } else {
                    refused(self.host.ns(), b, e).to_string()
                };
                tracing::error!(endpoint = %ep.name, "{what}; the record keeps the port");
                lost.push(format!("endpoint {}: {what}", ep.name));
            }
        }
        lost
    }

    /// Before a join publishes `ep`'s ports: holds those no socket of lnet holds (another
    /// program had one at start). One some other program still holds refuses the join —
    /// publishing it would take that program's traffic.
    pub(crate) fn hold_before_join(&mut self, ep: &EndpointRecord) -> Result<()> {
        for p in &ep.ports {
            let b = (p.host_ip, p.proto, p.host_port);
            if let Err(e) = self.reserved.take(self.host.ns(), b) {
                return Err(refused(self.host.ns(), b, e));
            }
        }
        Ok(())
    }

    /// What `lnet doctor` checks of the recorded host ports: each with its endpoint and
    /// whether this controller holds it (copied under the state lock; [`check_ports`] reads
    /// the kernel without it).
    pub(crate) fn port_plan(&self) -> PortPlan {
        let mut ports = Vec::new();
        for ep in self.endpoints.all().filter(|e| !e.ports.is_empty()) {
            for p in &ep.ports {
                let b = (p.host_ip, p.proto, p.host_port);
                if !self.reserved.holds(&b) {
                    ports.push((ep.clone(), b));
                }
            }
        }
        PortPlan {
            ports,
            live: self.reserved.live,
        }
    }

    /// The host links other engines' drop-policy forward chains must let through.
    pub(crate) fn forward_links(&self, cx: &Cx) -> Vec<String> {
        bridges_of(self.networks.values(), &cx.drivers)
    }

    /// The firewall elements the records call for, and the forwarding lnet turned on.
    pub(crate) fn firewall_want(&self, cx: &Cx) -> Want {
        let mut want =
            firewall_expected_with(self.networks.values(), self.endpoints.all(), &cx.drivers);
        want.forward_guard(&self.host.forwarding().guarded());
        want
    }

    /// Compares the firewall with the records. Read-only.
    pub(crate) fn firewall_check(&mut self, cx: &Cx) -> Result<Vec<Drift>> {
        let want = self.firewall_want(cx);
        let bridges = bridges_of(self.networks.values(), &cx.drivers);
        self.host.fw().check(&want, &bridges)
    }

    /// Makes the firewall's elements and lnet's accept rules in other tables match the
    /// records (start-up, after the base ruleset is ensured). Returns what it repaired.
    pub(crate) fn reconcile_firewall(&mut self, cx: &Cx) -> Result<Vec<Drift>> {
        let want = self.firewall_want(cx);
        let mut drift = self.host.fw().reconcile_elements(&want)?;
        let bridges = bridges_of(self.networks.values(), &cx.drivers);
        drift.extend(self.host.fw().sync_foreign(&bridges)?);
        Ok(drift)
    }
}

/// The recorded host ports this controller does not hold, for `lnet doctor`.
#[derive(Debug)]
pub(crate) struct PortPlan {
    ports: Vec<(EndpointRecord, Binding)>,
    /// The controller holds its ports (not an offline `doctor`).
    live: bool,
}

/// `lnet doctor`: each recorded host port that no socket of this controller holds. Read
/// only: a port is tried with a socket closed at once (in `ns`, the host's), and named only
/// when another program holds it, or — on a running controller, which should hold it —
/// when it is free and not held.
pub(crate) fn check_ports(ns: &Netns, plan: &PortPlan, f: &mut crate::drift::Findings) {
    for (ep, b) in &plan.ports {
        let b = *b;
        let probe = ns
            .run(|| hostport::reserve(SocketAddr::new(b.0, b.2), transport(b.1)))
            .and_then(|r| r);
        f.about(format!("endpoint {}", ep.name));
        match probe {
            Err(e) if e.is_in_use() => f.different(held_elsewhere(ns, ep, b)),
            Ok(_) if plan.live => f.missing(format!(
                "hold on host port {}/{} (free; `lnet doctor --repair` takes it)",
                SocketAddr::new(b.0, b.2),
                b.1
            )),
            _ => {}
        }
    }
}

/// The firewall elements `networks` and `endpoints` call for: every ready network, and the
/// published ports of every endpoint that is joined or being joined.
fn firewall_expected_with<'a>(
    networks: impl Iterator<Item = &'a NetworkRecord>,
    endpoints: impl Iterator<Item = &'a EndpointRecord>,
    drivers: &Registry,
) -> Want {
    let mut joined: BTreeMap<&str, Vec<&EndpointRecord>> = BTreeMap::new();
    for ep in endpoints.filter(|e| e.join.is_some()) {
        joined.entry(ep.network_id.as_str()).or_default().push(ep);
    }
    let mut want = Want::new();
    for net in networks.filter(|n| n.state == Lifecycle::Ready) {
        if let Ok(d) = drivers.get(&net.driver) {
            let eps = joined.get(net.id.as_str()).map_or(&[][..], Vec::as_slice);
            d.firewall(net, eps, &mut want);
        }
    }
    want
}

/// The host links of ready networks whose traffic other tables' drop-policy forward chains
/// must let through.
fn bridges_of<'a>(
    networks: impl Iterator<Item = &'a NetworkRecord>,
    drivers: &Registry,
) -> Vec<String> {
    networks
        .filter(|n| n.state == Lifecycle::Ready)
        .filter_map(|n| drivers.get(&n.driver).ok().map(|d| d.forward_links(n)))
        .flatten()
        .collect()
}

/// The firewall elements stored records call for, with the families whose forwarding is
/// `guarded` ([`crate::forwarding::Forwarding::guarded`]): for `lnet firewall show` on a
/// store that no controller has open.
pub fn firewall_expected(
    networks: &[NetworkRecord],
    endpoints: &[EndpointRecord],
    guarded: &[IpFamily],
    drivers: &Registry,
) -> Want {
    let mut want = firewall_expected_with(networks.iter(), endpoints.iter(), drivers);
    want.forward_guard(guarded);
    want
}

/// Compares the firewall of the calling thread's network namespace with stored records and
/// the `guarded` forwarding. Read-only.
pub fn firewall_check_records(
    networks: &[NetworkRecord],
    endpoints: &[EndpointRecord],
    guarded: &[IpFamily],
    drivers: &Registry,
) -> Result<Vec<Drift>> {
    let want = firewall_expected(networks, endpoints, guarded, drivers);
    crate::firewall::Firewall::new()?.check(&want, &bridges_of(networks.iter(), drivers))
}
