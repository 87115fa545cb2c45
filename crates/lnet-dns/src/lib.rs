//! lnet-dns owns the embedded DNS of lnet's sandboxes: the per-network name tables
//! ([`Names`]: container, endpoint and alias names with their addresses, and the PTR
//! names of those addresses) and the answer to one query ([`answer`]): local names from
//! the networks the asking sandbox is on, `name.network`, A/AAAA/PTR, NOERROR-empty for
//! a name without the asked type, REFUSED for sandboxes only on internal networks, and
//! "forward it" for everything else. [`server`] serves them: sockets handed over per
//! sandbox, forwarding to upstream resolvers. No kernel work beyond sockets.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod answer;
pub mod names;
pub mod server;
mod wire;

pub use answer::{Action, Reply, Scratch, answer, answer_into};
pub use names::Names;
pub use server::{SandboxDns, Server};
