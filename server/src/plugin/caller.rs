//! Who is calling a plugin (contract 0.3.0), and the reads a plugin makes for them.
//!
//! ```text
//!   HTTP route   Authorization header ─▶ api::http (api::auth::caller_of; bad token: 401) ─▶ serve_http
//!   pre-put      the request's caller (auth::caller(), set by the api layer; none for a plugin's own put)
//!        └─▶ http-request.caller / put-request.caller (the user's name), State::caller (its AuthInfo)
//!
//!   the plugin's own range / put / delete ─▶ its grants ─▶ as the member (auth::member()), whoever called
//!   range-for-caller ─▶ its grants ─▶ as the caller: whole     ─▶ EtcdServer::range (the server's check)
//!                                                   readable  ─▶ AuthStore::readable: the parts the
//!                                                                caller may read, each an EtcdServer::range
//!
//!   on a proxy (`proxy::edge`): no user is resolved (the proxy holds no auth store, and etcd 3.4 has no
//!   call naming a token's user), the request's token is kept in [`Caller::token`] and passed on with
//!   the plugin's KV calls, so the cluster checks it
//! ```

use std::future::Future;

use crate::auth::{caller, member, with_caller, AuthInfo};
use crate::error::Result;
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse};
use crate::server::EtcdServer;

/// Who a plugin call serves.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The user the member resolved (`None`: anonymous, auth off, a plugin's own put, or on a proxy).
    pub user: Option<AuthInfo>,
    /// The token the request came with, on a proxy (what it passes on to the cluster); `None` on a member.
    pub token: Option<String>,
}

impl Caller {
    /// A caller the member resolved.
    pub fn resolved(user: Option<AuthInfo>) -> Caller {
        Caller { user, token: None }
    }

    /// The user's name as a plugin is told it (none for anonymous).
    pub fn name(&self) -> Option<String> {
        self.user.as_ref().map(|c| c.user.clone()).filter(|u| !u.is_empty())
    }
}

/// Runs a plugin's own KV call with the member's authority (as etcd runs its own internal requests): it
/// is bounded by the plugin's grants, checked before, not by whoever the plugin is serving.
pub(super) async fn as_plugin<F: Future>(f: F) -> F::Output {
    with_caller(member(), f).await
}

/// A Range of only the parts of `r` the task's caller may read (all of it while auth is off): the parts
/// come from the caller's cached permissions, and each is read as a Range of the caller, so the server's
/// own check passes on it. The first part's revision is the revision of them all; `limit` counts over
/// them, `count` and `more` are theirs. Nothing readable: an empty answer at the member's revision.
pub(super) async fn range_readable(server: &EtcdServer, r: RangeRequest) -> Result<RangeResponse> {
    let parts = server.auth_store().readable(caller().as_ref(), &r.key, &r.range_end)?;
    let mut out = RangeResponse::default();
    let mut revision = 0;
    for part in parts {
        let left = r.limit - out.kvs.len() as i64;
        // Past the limit, a part is only counted (for `count`, and `more` if it holds keys).
        let count_only = r.limit > 0 && left <= 0;
        let req = RangeRequest {
            // No key is empty: a part from the start of the key space starts at "\0", as etcdctl's.
            key: if part.key.is_empty() { vec![0] } else { part.key.clone() },
            range_end: part.range_end(),
            limit: if r.limit > 0 { left.max(0) } else { r.limit },
            revision,
            // The first part's read made the member current up to `revision`.
            serializable: r.serializable || revision != 0,
            count_only,
            ..Default::default()
        };
        let resp = server.range(req).await?;
        if out.header.is_none() {
            revision = resp.header.as_ref().map_or(0, |h| h.revision);
            out.header = resp.header;
        }
        out.count += resp.count;
        out.more |= resp.more || (count_only && resp.count > 0);
        out.kvs.extend(resp.kvs);
    }
    if out.header.is_none() {
        out.header = Some(server.headers().current());
    }
    Ok(out)
}
