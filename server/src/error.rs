//! The errors a client can see, with etcd's exact messages, and the one table that maps them to gRPC
//! status codes ([`Error::code`]).

use tonic::Code;

use crate::storage::StorageError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A plugin's pre-put hook refused the put (or one put of a txn, which fails the whole txn).
    #[error("etcdserver: plugin {plugin} rejected the put: {message}")]
    PluginRejected { plugin: String, message: String },
    /// A fail-closed plugin's pre-put hook failed (trap, time limit, memory cap), so the put is refused.
    #[error("etcdserver: plugin {plugin} failed, the put is refused (fail-closed): {reason}")]
    PluginFailed { plugin: String, reason: String },
    /// A storage failure; the server logs the cause, the client learns only that it failed.
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl Error {
    /// The gRPC code etcd answers each error with.
    pub fn code(&self) -> Code {
        use Error::*;
        match self {
            EmptyKey
            | KeyNotFound
            | ValueProvided
            | LeaseProvided
            | TooManyOps
            | DuplicateKey
            | RequestTooLarge
            | PluginRejected { .. } => Code::InvalidArgument,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace | TooManyRequests => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            // A broken plugin is the server's state, not the request's fault; retrying helps once it is fixed.
            NotLeader | LeaseExists | PluginFailed { .. } => Code::FailedPrecondition,
            NoLeader | LeaderChanged | Stopped | Timeout => Code::Unavailable,
            Internal(_) => Code::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        tonic::Status::new(e.code(), e.to_string())
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Error {
        tracing::error!(error = %e, "storage failure");
        Error::Internal(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_etcds_code_and_message() {
        let s: tonic::Status = Error::Compacted.into();
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(s.message(), "etcdserver: mvcc: required revision has been compacted");
        let s: tonic::Status = Error::EmptyKey.into();
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "etcdserver: key is not provided"));
        let s: tonic::Status = Error::LeaseNotFound.into();
        assert_eq!(s.code(), Code::NotFound);
    }
}
