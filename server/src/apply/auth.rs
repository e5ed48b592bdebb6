//! Auth at apply: auth changes from the log, and the permission checks of a write (made by the server
//! before the proposal, and made again here, in log order with the auth changes, for the user named in
//! the entry's header).
//!
//! What a write needs (etcd's `apply_auth.go`, with the later 3.4 fixes): a put WRITE on its key, READ
//! too with `prev_kv`, and WRITE on every key already attached to its lease; a delete WRITE on its range,
//! READ too with `prev_kv`; a txn READ on every compare and every op's own needs, nested txns included
//! (etcd 3.4.23 skips those and a txn put's `prev_kv` and lease checks); a lease revoke WRITE on every
//! attached key.

use crate::auth::{Access, AuthInfo, AuthStore};
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};
use crate::proto::modkvpb::InternalRaftRequest;
use crate::storage::WriteBatch;

/// Applies `req` if it is an auth change (`None` otherwise); `Some(token)` for an `Authenticate`.
pub fn apply(
    auth: &AuthStore,
    req: &InternalRaftRequest,
    index: u64,
    batch: &mut WriteBatch,
) -> Option<Result<Option<String>>> {
    let caller = caller_of(req);
    let admin = || auth.check_admin(caller.as_ref());
    let done = |r: Result<()>| Some(r.map(|_| None));
    if let Some(a) = &req.authenticate {
        return Some(
            auth.can_authenticate(&a.name)
                .and_then(|_| auth.tokens().assign(&a.simple_token, index, &a.name, auth.revision()))
                .map(Some),
        );
    }
    if req.auth_enable.is_some() {
        return done(admin().and_then(|_| auth.enable(batch)));
    }
    if req.auth_disable.is_some() {
        return done(admin().and_then(|_| auth.disable(batch)));
    }
    if let Some(r) = &req.auth_user_add {
        return done(admin().and_then(|_| auth.user_add(&r.name, r.hashed_password.clone(), r.no_password, batch)));
    }
    if let Some(r) = &req.auth_user_delete {
        return done(admin().and_then(|_| auth.user_delete(&r.name, batch)));
    }
    if let Some(r) = &req.auth_user_change_password {
        return done(admin().and_then(|_| auth.user_change_password(&r.name, r.hashed_password.clone(), batch)));
    }
    if let Some(r) = &req.auth_user_grant_role {
        return done(admin().and_then(|_| auth.user_grant_role(&r.user, &r.role, batch)));
    }
    if let Some(r) = &req.auth_user_revoke_role {
        return done(admin().and_then(|_| auth.user_revoke_role(&r.name, &r.role, batch)));
    }
    if let Some(r) = &req.auth_role_add {
        return done(admin().and_then(|_| auth.role_add(&r.name, batch)));
    }
    if let Some(r) = &req.auth_role_delete {
        return done(admin().and_then(|_| auth.role_delete(&r.role, batch)));
    }
    if let Some(r) = &req.auth_role_grant_permission {
        let perm = r.perm.clone().unwrap_or_default();
        return done(admin().and_then(|_| auth.role_grant_permission(&r.name, perm, batch)));
    }
    if let Some(r) = &req.auth_role_revoke_permission {
        return done(admin().and_then(|_| auth.role_revoke_permission(&r.role, &r.key, &r.range_end, batch)));
    }
    None
}

/// The caller named in an entry's header, with the auth revision its token had when it was proposed (a
/// change applied in between makes its write fail with `revision of auth store is old`, as etcd; 0: none
/// to check, e.g. the member's own requests).
fn caller_of(req: &InternalRaftRequest) -> Option<AuthInfo> {
    let h = req.header.as_ref()?;
    (!h.username.is_empty()).then(|| AuthInfo { user: h.username.clone(), revision: h.auth_revision })
}

/// Checks a client's write again at apply, as the user named in the entry: a write proposed without a
/// user (while auth was off) and applied after auth was enabled is refused, as etcd refuses it. The
/// member's own writes (an expired lease's revoke) are proposed as root.
pub fn check_write(auth: &AuthStore, req: &InternalRaftRequest, lessor: &Lessor) -> Result<()> {
    if !auth.is_enabled() {
        return Ok(());
    }
    let client_write = req.put.is_some()
        || req.delete_range.is_some()
        || req.txn.is_some()
        || req.lease_revoke.is_some()
        || req.lease_grant.is_some()
        || req.compaction.is_some();
    if !client_write {
        return Ok(());
    }
    let Some(caller) = caller_of(req) else { return Err(Error::UserEmpty) };
    if let Some(p) = &req.put {
        return check_put(auth, Some(&caller), p, lessor);
    }
    if let Some(d) = &req.delete_range {
        return check_delete(auth, Some(&caller), d);
    }
    if let Some(t) = &req.txn {
        return check_txn(auth, Some(&caller), t, lessor);
    }
    if let Some(r) = &req.lease_revoke {
        return check_lease_keys(auth, Some(&caller), r.id, lessor);
    }
    if req.compaction.is_some() {
        return auth.check_admin(Some(&caller));
    }
    auth.check_user(Some(&caller))
}

pub fn check_range(auth: &AuthStore, caller: Option<&AuthInfo>, r: &RangeRequest) -> Result<()> {
    auth.check(caller, Access::Read, &r.key, &r.range_end)
}

pub fn check_put(auth: &AuthStore, caller: Option<&AuthInfo>, p: &PutRequest, lessor: &Lessor) -> Result<()> {
    if !auth.is_enabled() {
        return Ok(());
    }
    auth.check(caller, Access::Write, &p.key, &[])?;
    if p.prev_kv {
        auth.check(caller, Access::Read, &p.key, &[])?;
    }
    if p.lease != 0 {
        check_lease_keys(auth, caller, p.lease, lessor)?;
    }
    Ok(())
}

pub fn check_delete(auth: &AuthStore, caller: Option<&AuthInfo>, d: &DeleteRangeRequest) -> Result<()> {
    auth.check(caller, Access::Write, &d.key, &d.range_end)?;
    if d.prev_kv {
        auth.check(caller, Access::Read, &d.key, &d.range_end)?;
    }
    Ok(())
}

/// Every compare and every op of `t`, nested txns included (their depth is bounded when decoded).
pub fn check_txn(auth: &AuthStore, caller: Option<&AuthInfo>, t: &TxnRequest, lessor: &Lessor) -> Result<()> {
    if !auth.is_enabled() {
        return Ok(());
    }
    for c in &t.compare {
        auth.check(caller, Access::Read, &c.key, &c.range_end)?;
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(Op::RequestRange(r)) => check_range(auth, caller, r)?,
            Some(Op::RequestPut(p)) => check_put(auth, caller, p, lessor)?,
            Some(Op::RequestDeleteRange(d)) => check_delete(auth, caller, d)?,
            Some(Op::RequestTxn(n)) => check_txn(auth, caller, n, lessor)?,
            None => {}
        }
    }
    Ok(())
}

/// WRITE on every key attached to lease `id` (etcd's `checkLeasePuts`); a lease that does not exist
/// has none.
pub fn check_lease_keys(auth: &AuthStore, caller: Option<&AuthInfo>, id: i64, lessor: &Lessor) -> Result<()> {
    if !auth.is_enabled() {
        return Ok(());
    }
    let perms = auth.perms_of(caller)?;
    for k in lessor.time_to_live(id).map(|t| t.keys).unwrap_or_default() {
        auth.permitted(&perms, Access::Write, &k, &[])?;
    }
    Ok(())
}

/// READ on every key attached to lease `id` (a lease's time-to-live and keep-alive, as 3.4.42+).
pub fn check_lease_read(auth: &AuthStore, caller: Option<&AuthInfo>, id: i64, lessor: &Lessor) -> Result<()> {
    if !auth.is_enabled() {
        return Ok(());
    }
    let perms = auth.perms_of(caller)?;
    if perms.root {
        return Ok(());
    }
    for k in lessor.time_to_live(id).map(|t| t.keys).unwrap_or_default() {
        auth.permitted(&perms, Access::Read, &k, &[])?;
    }
    Ok(())
}
