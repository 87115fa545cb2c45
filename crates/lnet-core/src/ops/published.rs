//! Published ports and the firewall as the controller sees them: host ports are taken for
//! an endpoint when it is created (and recorded with it), given back when it is deleted,
//! and replayed from the records at start; the firewall's elements are derived from the
//! records and compared with (or made to match) the kernel's.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;
use lnet_ipam::PortError;
use lnet_kernel::IpFamily;
use lnet_store::{EndpointRecord, Lifecycle, NetworkRecord, PortMapping};

use crate::controller::{Cx, State};
use crate::driver::Driver;
use crate::error::{CoreError, Result};
use crate::firewall::{Drift, Want};
use crate::ports::{FIELD, PortSpec};

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
    /// Docker publishes `0.0.0.0:p` and `[::]:p` together.
    fn take_same_port(
        &mut self,
        spec: &PortSpec,
        i: usize,
        ips: &[IpAddr],
        owner: &str,
    ) -> Result<Vec<u16>> {
        let range = spec.host_request(i);
        let attempts = if spec.exact_host() || ips.len() == 1 {
            1
        } else {
            DUAL_STACK_ATTEMPTS
        };
        let mut last_err = None;
        for _ in 0..attempts {
            let port = self
                .ports
                .request(ips[0], spec.proto, range, owner)
                .map_err(port_err)?;
            let mut got = vec![port];
            for ip in &ips[1..] {
                match self.ports.request(*ip, spec.proto, (port, port), owner) {
                    Ok(p) => got.push(p),
                    Err(e) => {
                        last_err = Some(e);
                        break;
                    }
                }
            }
            if got.len() == ips.len() {
                return Ok(got);
            }
            for (ip, p) in ips.iter().zip(&got) {
                self.ports.release(*ip, spec.proto, *p);
            }
        }
        Err(port_err(last_err.expect("an attempt failed")))
    }

    /// Gives host ports back.
    pub(crate) fn release_ports(&mut self, ports: &[PortMapping]) {
        for p in ports {
            self.ports.release(p.host_ip, p.proto, p.host_port);
        }
    }

    /// Takes an endpoint's recorded host ports again (start-up).
    pub(crate) fn replay_ports(&mut self, net: &NetworkRecord, ep: &EndpointRecord) -> Result<()> {
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
        Ok(())
    }

    /// The firewall elements the records call for, and the forwarding lnet turned on.
    pub(crate) fn firewall_want(&self, cx: &Cx) -> Want {
        let mut want = firewall_expected_with(self.networks.values(), self.endpoints.all(), |d| {
            cx.driver(d).ok()
        });
        want.forward_guard(&self.host.forwarding.guarded());
        want
    }

    /// Compares the firewall with the records. Read-only.
    pub(crate) fn firewall_check(&mut self, cx: &Cx) -> Result<Vec<Drift>> {
        let want = self.firewall_want(cx);
        let bridges = bridges_of(self.networks.values());
        self.host.fw.check(&want, &bridges)
    }

    /// Makes the firewall's elements and lnet's accept rules in other tables match the
    /// records (start-up, after the base ruleset is ensured). Returns what it repaired.
    pub(crate) fn reconcile_firewall(&mut self, cx: &Cx) -> Result<Vec<Drift>> {
        let want = self.firewall_want(cx);
        let mut drift = self.host.fw.reconcile_elements(&want)?;
        let bridges = bridges_of(self.networks.values());
        drift.extend(self.host.fw.sync_foreign(&bridges)?);
        Ok(drift)
    }
}

/// The firewall elements `networks` and `endpoints` call for: every ready network, and the
/// published ports of every endpoint that is joined or being joined.
fn firewall_expected_with<'a>(
    networks: impl Iterator<Item = &'a NetworkRecord>,
    endpoints: impl Iterator<Item = &'a EndpointRecord>,
    driver: impl Fn(&str) -> Option<Arc<dyn Driver>>,
) -> Want {
    let mut joined: BTreeMap<&str, Vec<&EndpointRecord>> = BTreeMap::new();
    for ep in endpoints.filter(|e| e.join.is_some()) {
        joined.entry(ep.network_id.as_str()).or_default().push(ep);
    }
    let mut want = Want::new();
    for net in networks.filter(|n| n.state == Lifecycle::Ready) {
        if let Some(d) = driver(&net.driver) {
            let eps = joined.get(net.id.as_str()).map_or(&[][..], Vec::as_slice);
            d.firewall(net, eps, &mut want);
        }
    }
    want
}

/// The bridges of ready bridge networks, whose traffic other tables' drop-policy forward
/// chains must let through.
fn bridges_of<'a>(networks: impl Iterator<Item = &'a NetworkRecord>) -> Vec<String> {
    networks
        .filter(|n| n.state == Lifecycle::Ready && n.driver == "bridge")
        .filter_map(|n| crate::drivers::bridge::BridgeConfig::of(n).ok())
        .map(|c| c.bridge)
        .collect()
}

/// The firewall elements stored records call for, with the families whose forwarding is
/// `guarded` ([`crate::forwarding::Forwarding::guarded`]): for `lnet firewall show` on a
/// store that no controller has open.
pub fn firewall_expected(
    networks: &[NetworkRecord],
    endpoints: &[EndpointRecord],
    guarded: &[IpFamily],
) -> Want {
    let drivers = crate::drivers::builtin();
    let mut want = firewall_expected_with(networks.iter(), endpoints.iter(), |d| {
        drivers.get(d).cloned()
    });
    want.forward_guard(guarded);
    want
}

/// Compares the firewall of the calling thread's network namespace with stored records and
/// the `guarded` forwarding. Read-only.
pub fn firewall_check_records(
    networks: &[NetworkRecord],
    endpoints: &[EndpointRecord],
    guarded: &[IpFamily],
) -> Result<Vec<Drift>> {
    let want = firewall_expected(networks, endpoints, guarded);
    crate::firewall::Firewall::new()?.check(&want, &bridges_of(networks.iter()))
}
