//! lnet-kernel is the only part of lnet that changes the kernel. It owns
//! network namespaces ([`Netns`]: create, bind-mount, open, delete, run code
//! inside), links (bridges, veth pairs, up/down, MTU, MAC, master, rename),
//! IP addresses, routes of the main table (all through [`Netlink`], a small
//! synchronous `NETLINK_ROUTE` client), sysctls ([`sysctl`]) and nftables
//! ([`nft`]: tables, chains, sets and maps, rules, committed as atomic
//! `NETLINK_NETFILTER` transactions) and conntrack entries ([`Conntrack`]:
//! list, delete over ctnetlink) and host ports held by bound sockets
//! ([`hostport`]). It knows
//! nothing of networks, endpoints or the API above it. Every operation is
//! idempotent in the "ensure present / ensure absent" sense: adding an
//! existing address or route succeeds (and says it was already there),
//! deleting a missing link, address, route or namespace mount succeeds (and
//! says it was absent). Errors ([`KernelError`]) name the object, the
//! operation and the errno.
//!
//! **Threading rule.** Network namespaces belong to threads, and a netlink
//! socket stays in the namespace it was created in. [`Netlink::new`] binds to
//! the calling thread's namespace; [`Netlink::in_netns`] and [`Netns::run`]
//! do their namespace work on short-lived helper threads they spawn
//! themselves. This crate never changes the namespace of a thread it did not
//! spawn (the one exception, [`testing::enter_new_netns`], is documented for
//! threads the caller owns). A `Netlink` may be moved between threads after
//! creation; the API is blocking and meant to be called from blocking
//! threads (e.g. tokio's `spawn_blocking`), never from async tasks directly.
//! No external process (`ip`, `sysctl`, `nft`, `conntrack`) is ever spawned.
//!
//! **Bytes.** What is pure about netlink lives below this crate: every
//! netlink attribute lnet reads — links, error acks, notifications,
//! conntrack entries, nf_tables dumps — is walked by `lnet-nla`'s one
//! checked walker (a malformed reply is an error, never a panic), and the
//! nf_tables messages themselves are built and decoded by `lnet-nft`,
//! which [`nft`] re-exports; this crate owns the sockets that carry them.
//!
//! **Fast path.** Every [`Netlink`] method is exactly one netlink request
//! (`send`, then `recv` until the ACK) with no hidden lookups or dumps, and
//! the receive buffer is reused; [`Netlink::request_count`] lets tests and
//! benchmarks check that. Wiring a container is five requests: `create_veth`
//! (peer created directly in the container namespace, host end enslaved and
//! optionally up; the kernel echoes the new link so its index needs no
//! lookup), `set_up` of the host end if not created up, and in the
//! container namespace `add_address`, `set_up`, `replace_route`. Keep one
//! `Netlink` per namespace open rather than reopening.
//!
//! ```no_run
//! use lnet_kernel::{BridgeOptions, Netlink, Netns, VethSpec, AddrFlags, Route};
//! # fn main() -> lnet_kernel::Result<()> {
//! let mut host = Netlink::new()?;
//! let br = host.ensure_bridge("br-demo", BridgeOptions::default())?;
//! host.set_up(br.index)?;
//! let ns = Netns::create_at("/run/lnet/netns/demo")?;
//! let veth = host.create_veth(VethSpec {
//!     host_name: "vethdemo0",
//!     host_master: Some(br.index),
//!     host_up: true,
//!     peer_name: "eth0",
//!     peer_ns: Some(&ns),
//!     ..Default::default()
//! })?;
//! let mut inside = Netlink::in_netns(&ns)?;
//! let eth0 = inside.link_by_name("eth0")?.expect("peer created in ns");
//! inside.add_address(eth0.index, "10.0.0.2/24".parse().unwrap(), AddrFlags::default())?;
//! inside.set_up(eth0.index)?;
//! inside.replace_route(&Route::default_via("10.0.0.1".parse().unwrap()))?;
//! # let _ = veth;
//! # Ok(()) }
//! ```

pub mod addr;
pub mod conntrack;
pub mod error;
pub mod hostport;
pub mod link;
pub mod monitor;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod route;
mod socket;
pub mod sysctl;
pub mod testing;

pub use addr::{AddrFlags, AddressInfo};
pub use conntrack::{Conntrack, CtEntry, CtTuple};
pub use error::{KernelError, Result};
pub use ipnet::IpNet;
pub use link::{
    BridgeOptions, IpvlanFlag, IpvlanMode, LOOPBACK_INDEX, Link, MAX_ALIAS_LEN, MacvlanMode,
    SubLinkKind, SubLinkSpec, VethSpec, format_mac,
};
pub use netlink::Netlink;
pub use netns::Netns;
pub use route::{IpFamily, Route};

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_can_move_between_threads() {
        send_sync::<crate::Netlink>();
        send_sync::<crate::nft::NftSocket>();
        send_sync::<crate::nft::Batch>();
        send_sync::<crate::Netns>();
        send_sync::<crate::Conntrack>();
        send_sync::<crate::KernelError>();
        send_sync::<crate::testing::TempNetns>();
    }
}
