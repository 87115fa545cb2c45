//! The controller's errors. Every message names the object or field, what was wrong, and
//! what is allowed or how to fix it. [`CoreError::kind`] maps an error to the category an
//! API layer turns into a status code.

use lnet_ipam::{IpamError, PortError};
use lnet_kernel::KernelError;
use lnet_store::StoreError;

/// The category of an error, as Docker's API distinguishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or names an invalid value (HTTP 400).
    InvalidInput,
    /// The object does not exist (HTTP 404).
    NotFound,
    /// The request conflicts with an existing object (HTTP 409).
    Conflict,
    /// The request is refused in the object's current state (HTTP 403).
    Forbidden,
    /// Something failed on the host (HTTP 500).
    Internal,
}

/// Errors of the controller.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A field of a request has an invalid value.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidField {
        /// The field, as the user knows it (`name`, `subnet`, `com.docker.network.driver.mtu`, …).
        field: String,
        /// The value given.
        value: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// No object of that kind with that id or name.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// `network`, `endpoint`, `sandbox`, `driver`.
        kind: &'static str,
        /// The id or name looked up.
        name: String,
    },
    /// The name is already used.
    #[error("{kind} with name {name:?} already exists{scope}: choose another name")]
    NameInUse {
        /// `network`, `endpoint`.
        kind: &'static str,
        /// The name.
        name: String,
        /// Where (" in network foo"), or empty.
        scope: String,
    },
    /// The object is in use and cannot be changed that way.
    #[error("{0}")]
    InUse(String),
    /// The operation is not allowed in the current state.
    #[error("{0}")]
    Forbidden(String),
    /// An IPAM error.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// An IPAM refusal of one field of the request.
    #[error("{field}: {source}")]
    IpamField {
        /// The field (`IPAM.Config.Gateway`, `IPv4Address`, …).
        field: String,
        /// The refusal.
        #[source]
        source: IpamError,
    },
    /// A host port could not be had (taken, with who holds it; or every port is taken).
    #[error("{field}: {source}")]
    Port {
        /// The request field (`PortBindings`).
        field: String,
        /// The refusal.
        #[source]
        source: PortError,
    },
    /// A store error.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A kernel error, with what lnet was doing.
    #[error("{context}: {source}")]
    Kernel {
        /// What lnet was doing.
        context: String,
        /// The kernel error.
        #[source]
        source: KernelError,
    },
    /// File I/O (hosts, resolv.conf, run directories).
    #[error("{context}: {source}")]
    Io {
        /// What lnet was doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A driver outside lnet (a plugin) refused a call, or could not be reached.
    #[error("{driver}: {message}")]
    Driver {
        /// The driver, as networks name it.
        driver: String,
        /// What it said, or why it could not be asked.
        message: String,
        /// It could not be reached (rather than refused).
        unreachable: bool,
    },
    /// Several errors from a best-effort cleanup that kept going.
    #[error("{}", join_errors(.0))]
    Many(Vec<CoreError>),
}

fn join_errors(errors: &[CoreError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl CoreError {
    /// The category, for status codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CoreError::InvalidField { .. } => ErrorKind::InvalidInput,
            CoreError::NotFound { .. } => ErrorKind::NotFound,
            // libnetwork answers a taken endpoint name with 403, other names with 409.
            CoreError::NameInUse {
                kind: "endpoint", ..
            } => ErrorKind::Forbidden,
            CoreError::NameInUse { .. } => ErrorKind::Conflict,
            CoreError::InUse(_) | CoreError::Forbidden(_) => ErrorKind::Forbidden,
            CoreError::Port { source, .. } => match source {
                PortError::InUse { .. } | PortError::Exhausted { .. } => ErrorKind::Forbidden,
                PortError::UnknownProtocol { .. } | PortError::BadRange { .. } => {
                    ErrorKind::InvalidInput
                }
            },
            CoreError::Ipam(e) | CoreError::IpamField { source: e, .. } => match e {
                IpamError::PoolOverlap { .. }
                | IpamError::AddressInUse { .. }
                | IpamError::NoAvailablePool { .. }
                | IpamError::NoAvailableAddress { .. } => ErrorKind::Forbidden,
                _ => ErrorKind::InvalidInput,
            },
            CoreError::Store(StoreError::Conflict { .. }) => ErrorKind::Conflict,
            CoreError::Store(_) | CoreError::Kernel { .. } | CoreError::Io { .. } => {
                ErrorKind::Internal
            }
            CoreError::Driver {
                unreachable: true, ..
            } => ErrorKind::Internal,
            CoreError::Driver { .. } => ErrorKind::Forbidden,
            CoreError::Many(v) => v.first().map_or(ErrorKind::Internal, CoreError::kind),
        }
    }

    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        CoreError::InvalidField {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Names the request field an IPAM error is about.
    pub(crate) fn ipam_field(field: impl Into<String>) -> impl FnOnce(IpamError) -> Self {
        let field = field.into();
        move |source| CoreError::IpamField { field, source }
    }

    pub(crate) fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        CoreError::NotFound {
            kind,
            name: name.into(),
        }
    }

    /// A kernel error, with what lnet was doing.
    pub fn kernel(context: impl Into<String>) -> impl FnOnce(KernelError) -> Self {
        let context = context.into();
        move |source| CoreError::Kernel { context, source }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| CoreError::Io { context, source }
    }
}

/// Collects the errors of a teardown that keeps going after a failure (netavark's lesson:
/// stopping at the first error leaks everything after it).
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<CoreError>);

impl Errors {
    pub(crate) fn push<T>(&mut self, r: Result<T, CoreError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "teardown step failed; continuing");
                self.0.push(e);
                None
            }
        }
    }

    pub(crate) fn into_result(mut self) -> Result<(), CoreError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.remove(0)),
            _ => Err(CoreError::Many(self.0)),
        }
    }
}

/// The controller's result type.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
