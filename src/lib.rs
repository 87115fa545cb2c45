//! The `lnet` application above the library: the daemon ([`daemon`]) that serves Docker
//! Engine's network API and lnet's own sandbox API on a unix socket, the JSON of that API
//! ([`api`]), and the client the CLI talks to it with ([`client`]), and the client commands of the command line
//! ([`cli`]). The binary (`main.rs`) is the command line over these.

pub mod api;
pub mod cli;
pub mod client;
pub mod daemon;
