//! The error type of the kernel layer.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to the kernel.
///
/// Every variant names the object and the operation (`op`, e.g.
/// `"create veth veth1234 (peer eth0)"` or `"bind-mount netns at /run/lnet/netns/c1"`)
/// and, where the kernel gave one, the errno. Use [`KernelError::errno`],
/// [`KernelError::is_exists`] and [`KernelError::is_not_found`] instead of
/// matching on message text.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The kernel answered a netlink request with an error.
    #[error("{op}: {message} (errno {errno}){}", kernel_detail(.kernel_message))]
    Netlink {
        /// What was attempted, naming the object.
        op: String,
        /// Positive errno (`EEXIST` = 17, `ENODEV` = 19, ...).
        errno: i32,
        /// `strerror(errno)`.
        message: String,
        /// The kernel's extended-ack text, when it sent one
        /// (e.g. `"Master device not found"`).
        kernel_message: Option<String>,
    },

    /// A system call (or a file operation under `/proc`) failed.
    #[error("{op}: {source}")]
    Io {
        /// What was attempted, naming the object.
        op: String,
        /// The underlying OS error; `source.raw_os_error()` is the errno.
        #[source]
        source: io::Error,
    },

    /// The kernel sent something this crate could not decode.
    #[error("{op}: malformed netlink reply: {detail}")]
    Protocol {
        /// What was attempted, naming the object.
        op: String,
        /// What was wrong with the reply.
        detail: String,
    },

    /// A path that was supposed to be a network namespace is something else.
    #[error("{path}: not a network namespace ({detail})")]
    NotANetns {
        /// The offending path.
        path: PathBuf,
        /// What it is instead.
        detail: String,
    },

    /// `Netns::create_at` found a namespace already mounted at the path.
    #[error("create netns at {path}: a namespace is already mounted there")]
    AlreadyMounted {
        /// The path that is already in use.
        path: PathBuf,
    },

    /// A link exists with the wanted name but is of another kind.
    #[error(
        "ensure {expected} {name}: a link with that name exists but is of kind {}",
        .found.as_deref().unwrap_or("<none>")
    )]
    WrongKind {
        /// The link name.
        name: String,
        /// The kind that was asked for (`"bridge"`).
        expected: &'static str,
        /// The kind of the existing link (`IFLA_INFO_KIND`), if it has one.
        found: Option<String>,
    },

    /// A caller-supplied argument was rejected before reaching the kernel
    /// (interface name too long, bad sysctl key, ...).
    #[error("{op}: invalid argument: {reason}")]
    InvalidArgument {
        /// What was attempted.
        op: String,
        /// Why the argument is invalid.
        reason: String,
    },
}

fn kernel_detail(msg: &Option<String>) -> String {
    match msg {
        Some(m) => format!(" [kernel: {m}]"),
        None => String::new(),
    }
}

impl KernelError {
    /// The errno behind this error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Netlink { errno, .. } => Some(*errno),
            KernelError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True when what was asked for is not there at all (`ENOENT`, `ESRCH`, `ENODEV`), or a
    /// path that should hold a network namespace holds something else: unlike an error
    /// of the moment (out of file descriptors or memory), asking again will not help.
    pub fn is_gone(&self) -> bool {
        matches!(self, KernelError::NotANetns { .. })
            || matches!(
                self.errno(),
                Some(libc::ENOENT | libc::ESRCH | libc::ENODEV)
            )
    }

    /// True when the object already exists (`EEXIST`), or a namespace is
    /// already mounted at the path.
    pub fn is_exists(&self) -> bool {
        matches!(self, KernelError::AlreadyMounted { .. }) || self.errno() == Some(libc::EEXIST)
    }

    /// True when the object is held by something else (`EBUSY`: a parent taken whole by a
    /// passthru macvlan, or by links of another kind).
    pub fn is_busy(&self) -> bool {
        self.errno() == Some(libc::EBUSY)
    }

    /// True when the kernel lacks what was asked for (`EOPNOTSUPP`: a link type it was
    /// built without, whose module it could not load).
    pub fn is_unsupported(&self) -> bool {
        self.errno() == Some(libc::EOPNOTSUPP)
    }

    /// True when a bridge has no room for another port (`EXFULL`: the kernel allows
    /// `BR_MAX_PORTS`, 1024, per bridge).
    pub fn is_full(&self) -> bool {
        self.errno() == Some(libc::EXFULL)
    }

    /// True when an address and port are bound by someone else (`EADDRINUSE`).
    pub fn is_in_use(&self) -> bool {
        self.errno() == Some(libc::EADDRINUSE)
    }

    /// True when the object does not exist: `ENODEV` (link), `ENOENT` (file,
    /// route table), `ESRCH` (route), `EADDRNOTAVAIL` (address).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
        )
    }

    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> Self {
        KernelError::Io {
            op: op.into(),
            source,
        }
    }

    pub(crate) fn nix(op: impl Into<String>, errno: nix::errno::Errno) -> Self {
        KernelError::Io {
            op: op.into(),
            source: io::Error::from_raw_os_error(errno as i32),
        }
    }

    pub(crate) fn invalid(op: impl Into<String>, reason: impl Into<String>) -> Self {
        KernelError::InvalidArgument {
            op: op.into(),
            reason: reason.into(),
        }
    }
}
