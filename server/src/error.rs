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
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// Not mapped by etcd: clients see the auth store's own words as `Unknown`.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// An auth error as etcd's maintenance service answers it (not mapped: `Unknown`, the auth store's
    /// own words, e.g. `auth: permission denied`).
    #[error("{0}")]
    AuthUnmapped(String),
    /// A plugin's pre-put hook refused the put (or one put of a txn, which fails the whole txn).
    #[error("etcdserver: plugin {plugin} rejected the put: {message}")]
    PluginRejected { plugin: String, message: String },
    /// A fail-closed plugin's pre-put hook failed (trap, time limit, memory cap), so the put is refused.
    #[error("etcdserver: plugin {plugin} failed, the put is refused (fail-closed): {reason}")]
    PluginFailed { plugin: String, reason: String },
    /// What the leader answered a request forwarded to it, passed on as it came.
    #[error("{message}")]
    Peer { code: Code, message: String },
    /// The election and lock services' own errors (etcd's client-side recipes return them; the services
    /// answer them as `Unknown`).
    #[error("election: not leader")]
    ElectionNotLeader,
    #[error("election: no leader")]
    ElectionNoLeader,
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
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
            | MemberBadUrls
            | UserEmpty
            | RoleEmpty
            | AuthFailed
            | InvalidAuthMgmt
            | AuthOldRevision
            | PluginRejected { .. } => Code::InvalidArgument,
            RootUserNotExist | RootRoleNotExist | UserAlreadyExist | UserNotFound | RoleAlreadyExist | RoleNotFound
            | RoleNotGranted | PermissionNotGranted | AuthNotEnabled => Code::FailedPrecondition,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            NoPasswordUser | AuthUnmapped(_) => Code::Unknown,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace | TooManyRequests => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            // A broken plugin is the server's state, not the request's fault; retrying helps once it is fixed.
            NotLeader
            | LeaseExists
            | PluginFailed { .. }
            | PeerUrlExists
            | MemberNotLearner
            | LearnerNotReady
            | TooManyLearners
            | NotEnoughStartedMembers
            | BadLeaderTransferee => Code::FailedPrecondition,
            NoLeader
            | LeaderChanged
            | Stopped
            | Timeout
            | LeaderTransferTimeout
            | NotSupportedForLearner
            | Unhealthy => Code::Unavailable,
            Internal(_) => Code::Internal,
            ElectionNotLeader | ElectionNoLeader | MissingLeaderKey => Code::Unknown,
            Peer { code, .. } => *code,
        }
    }
}

impl Error {
    /// This error as etcd's maintenance service answers an auth failure: the auth store's words
    /// (`auth: permission denied`), code `Unknown`; other errors unchanged.
    pub fn unmapped_auth(self) -> Error {
        match self {
            Error::PermissionDenied | Error::UserEmpty | Error::InvalidAuthToken | Error::UserNotFound => {
                let text = self.to_string().replace("etcdserver: ", "auth: ");
                // etcd's store says `auth: user not found` where the client error says `user name not found`.
                Error::AuthUnmapped(text.replace("user name not found", "user not found"))
            }
            e => e,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        tonic::Status::new(e.code(), e.to_string())
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Error {
        Error::Peer { code: s.code(), message: s.message().to_string() }
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
