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
    /// The database file exists (or would be created) but cannot be opened for a reason
    /// that says nothing about its contents: too few file descriptors, a read-only or full
    /// file system, no permission, a failing disk. The file is left exactly as it was.
    #[error("cannot open the store {path}: {os_error}; the file was left as it is. {fix}")]
    Unopenable {
        /// The database path.
        path: String,
        /// The operating system's error (in the message, so not also a `source`).
        os_error: std::io::Error,
        /// What the user can do about it.
        fix: &'static str,
    },
    /// The database file was written in a file format this build does not read (a newer
    /// lnet, or one so old it must be upgraded). The file is left exactly as it was.
    #[error(
        "cannot open the store {path}: {detail}; the file was left as it is. Run the lnet that wrote it, or move the file away to start with an empty store"
    )]
    Format {
        /// The database path.
        path: String,
        /// What the backend said of the format.
        detail: String,
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
