//! The sockets that hold lnet's published host ports on the host: a port lnet hands out is
//! held by a bound socket from its endpoint's create to its delete (see `ops/published.rs`
//! for when), so that no host program can take it meanwhile.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use lnet_kernel::hostport::{self, Reservation, Transport};
use lnet_kernel::{KernelError, Netns};
use lnet_store::Proto;

pub(crate) fn transport(p: Proto) -> Transport {
    match p {
        Proto::Tcp => Transport::Tcp,
        Proto::Udp => Transport::Udp,
        Proto::Sctp => Transport::Sctp,
    }
}

/// A host port: address, protocol, port.
pub(crate) type Binding = (IpAddr, Proto, u16);

/// The sockets that hold lnet's published host ports on the host, by binding.
#[derive(Debug, Default)]
pub(crate) struct Reserved {
    held: HashMap<Binding, Reservation>,
    /// Whether this controller holds its ports (false for an offline `doctor`, which
    /// holds none and so only reports ports some other program holds).
    pub(crate) live: bool,
    /// Whether the missing SCTP sockets were logged already.
    noted_no_sctp: bool,
}

impl Reserved {
    /// Whether this controller holds `b`.
    pub(crate) fn holds(&self, b: &Binding) -> bool {
        self.held.contains_key(b)
    }

    /// Holds `ip:port/proto` in `ns` (already held: nothing to do).
    pub(crate) fn take(
        &mut self,
        ns: &Netns,
        (ip, proto, port): Binding,
    ) -> std::result::Result<(), KernelError> {
        if self.held.contains_key(&(ip, proto, port)) {
            return Ok(());
        }
        let r = ns.run(|| hostport::reserve(SocketAddr::new(ip, port), transport(proto)))??;
        if !r.is_held() && !self.noted_no_sctp {
            // No SCTP sockets in this kernel (the module is not loaded): there is nothing
            // to hold, and no host program can bind an SCTP port either.
            tracing::info!(
                "this kernel has no SCTP sockets: published SCTP host ports are not reserved"
            );
            self.noted_no_sctp = true;
        }
        self.held.insert((ip, proto, port), r);
        Ok(())
    }

    pub(crate) fn give_back(&mut self, b: Binding) {
        self.held.remove(&b);
    }

    /// Lets go of every socket whose binding `keep` does not name.
    pub(crate) fn retain(&mut self, keep: impl Fn(&Binding) -> bool) {
        self.held.retain(|b, _| keep(b));
    }
}
