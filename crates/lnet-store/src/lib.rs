//! lnet-store owns lnet's persistent records — networks, endpoints and sandboxes — and the
//! stores they live in: networks in redb at `<data-root>/lnet.db` (they must outlive
//! reboots), sandboxes and endpoints as files under `<exec-root>/state` (they describe kernel
//! objects that die with a reboot; see `runtime_dir`).
//!
//! Every state change is one atomic write with a compare-and-swap on the record's revision.
//! Loading never fails because of one bad record: a record that does not parse, or that was
//! written by a newer schema, is moved to a quarantine table and reported, and everything
//! else loads. This crate knows nothing of the kernel; lnet-core decides what a record's
//! lifecycle state means at start.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod records;
mod redb_store;
mod runtime_dir;

pub use records::{
    EndpointRecord, IpamPoolConfig, IpamSpec, JoinRecord, JoinState, Lifecycle, NetworkRecord,
    PoolAssignment, PortMapping, Proto, Record, RecordKind, SCHEMA_VERSION, SandboxRecord,
    default_netns_path,
};
pub use redb_store::{Loaded, Quarantined, Store};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is held by another process.
    #[error(
        "the store {path} is in use by another process (another lnet daemon?): stop it, or give this one its own --data-root"
    )]
    Locked {
        /// The database path.
        path: String,
    },
    /// A compare-and-swap failed: somebody else changed the record first.
    #[error(
        "{kind} {id} was changed concurrently (expected revision {expected:?}, found {found:?}): reload it and retry"
    )]
    Conflict {
        /// Record kind.
        kind: RecordKind,
        /// Record id.
        id: String,
        /// Revision the caller expected (`None`: expected absent).
        expected: Option<u64>,
        /// Revision found (`None`: absent).
        found: Option<u64>,
    },
    /// The backend failed.
    #[error("store {op} failed: {message}")]
    Backend {
        /// What was being done.
        op: String,
        /// The backend's message.
        message: String,
    },
    /// A record could not be encoded.
    #[error("cannot encode {kind} {id}: {message}")]
    Encode {
        /// Record kind.
        kind: RecordKind,
        /// Record id.
        id: String,
        /// Serializer message.
        message: String,
    },
    /// I/O around the database file.
    #[error("store file {path}: {source}")]
    Io {
        /// Path concerned.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
