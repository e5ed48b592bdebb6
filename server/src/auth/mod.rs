//! Auth: users, roles and key-range permissions as etcd 3.4 has them (etcd's `auth` package), kept as
//! replicated state.
//!
//! ```text
//!   apply ──auth entries──▶ AuthStore::{user_add, role_grant_permission, …} ──▶ WriteBatch (Cf::Auth)
//!                                  │  (same batch as the applied index)
//!                                  └─ in memory: users, roles, enabled, revision; per-user UserPerms
//!   server ──check(caller, READ/WRITE, range) / check_admin(caller)──▶ cached UserPerms (O(log n))
//!   api    ──token──▶ TokenProvider (token.rs) ──▶ AuthInfo { user, revision } ──▶ the request's task
//! ```
//!
//! `perms`: a user's permissions as interval sets. `token`: the token providers. The caller of a
//! request travels from the api layer to the server as a task-local ([`with_caller`], [`caller`]), as
//! etcd carries it in the request's context.
//!
//! Storage (`Cf::Auth`): `enabled` → 1 byte; `revision` → u64 BE; `user/<name>` → `authpb.User`;
//! `role/<name>` → `authpb.Role`. Names are kept in byte order, which is the order lists are answered in.

pub mod jwt;
pub mod perms;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use prost::Message;

use crate::error::{Error, Result};
use crate::mvcc::KeyRange;
use crate::proto::authpb::{Permission, Role, User, UserAddOptions};
use crate::storage::{Backend, Cf, WriteBatch};
use perms::UserPerms;
use token::TokenProvider;

/// The root user and role (full access; needed to enable auth).
pub const ROOT: &str = "root";

const ENABLED: &[u8] = b"enabled";
const REVISION: &[u8] = b"revision";
const USER: &[u8] = b"user/";
const ROLE: &[u8] = b"role/";

/// Who is calling, as the token said: the user and the auth revision the token was resolved at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    pub user: String,
    pub revision: u64,
}

tokio::task_local! {
    static CALLER: Option<AuthInfo>;
}

/// Runs `f` as `caller` (etcd's request context carrying the auth info).
pub async fn with_caller<F: Future>(caller: Option<AuthInfo>, f: F) -> F::Output {
    CALLER.scope(caller, f).await
}

/// The caller of the request this task serves (`None`: anonymous, or no caller was resolved).
pub fn caller() -> Option<AuthInfo> {
    CALLER.try_with(|c| c.clone()).ok().flatten()
}

/// The caller of a stream (watch, lease keep-alive), for checks made later on it: the auth revision is
/// left out, as etcd resolves a simple token again for each check and so sees the current revision.
pub fn stream_caller() -> Option<AuthInfo> {
    caller().map(|c| AuthInfo { revision: 0, ..c })
}

/// The caller of the member's own requests (an expired lease's revoke, auto compaction): root, as etcd
/// mints a root token for them.
pub fn member() -> Option<AuthInfo> {
    Some(AuthInfo { user: ROOT.to_string(), revision: 0 })
}

/// Read or write access to keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[derive(Default)]
struct State {
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// Built on first use, dropped at every change (the auth revision moves).
    perms: HashMap<String, Arc<UserPerms>>,
}

/// The auth state of a member and its checks.
pub struct AuthStore {
    enabled: AtomicBool,
    revision: AtomicU64,
    state: RwLock<State>,
    tokens: Arc<dyn TokenProvider>,
}

fn user_key(name: &str) -> Vec<u8> {
    [USER, name.as_bytes()].concat()
}

fn role_key(name: &str) -> Vec<u8> {
    [ROLE, name.as_bytes()].concat()
}

impl AuthStore {
    pub fn open(backend: &dyn Backend, tokens: Arc<dyn TokenProvider>) -> Result<AuthStore> {
        let store = AuthStore {
            enabled: AtomicBool::new(false),
            revision: AtomicU64::new(1),
            state: RwLock::new(State::default()),
            tokens,
        };
        store.reload(backend)?;
        Ok(store)
    }

    /// Reads the auth state from `backend` again (after a snapshot from the leader was installed).
    pub fn reload(&self, backend: &dyn Backend) -> Result<()> {
        let mut s = State { revision: 1, ..State::default() };
        let mut enabled = false;
        let mut bad = None;
        backend.scan(Cf::Auth, &[], None, &mut |k, v| {
            if k == ENABLED {
                enabled = v == [1];
            } else if k == REVISION {
                s.revision = crate::storage::meta::decode_u64(v).unwrap_or(1).max(1);
            } else if let Some(name) = k.strip_prefix(USER) {
                match User::decode(v) {
                    Ok(u) => drop(s.users.insert(String::from_utf8_lossy(name).into_owned(), u)),
                    Err(e) => bad = Some(e.to_string()),
                }
            } else if let Some(name) = k.strip_prefix(ROLE) {
                match Role::decode(v) {
                    Ok(r) => drop(s.roles.insert(String::from_utf8_lossy(name).into_owned(), r)),
                    Err(e) => bad = Some(e.to_string()),
                }
            }
            true
        })?;
        if let Some(e) = bad {
            return Err(Error::Internal(format!("auth state cannot be decoded: {e}")));
        }
        self.revision.store(s.revision, Ordering::SeqCst);
        self.enabled.store(enabled, Ordering::SeqCst);
        // Tokens stay valid across a snapshot from the leader unless their user is gone or auth is off.
        if enabled {
            let users: std::collections::HashSet<String> = s.users.keys().cloned().collect();
            self.tokens.retain_users(&|u| users.contains(u));
        } else {
            self.tokens.invalidate_all();
        }
        *self.write() = s;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::SeqCst)
    }

    pub fn tokens(&self) -> &Arc<dyn TokenProvider> {
        &self.tokens
    }

    // ------------------------------------------------------------------ checks

    /// The caller must hold the root role (etcd's `IsAdminPermitted`); anyone may while auth is off.
    pub fn check_admin(&self, caller: Option<&AuthInfo>) -> Result<()> {
        if !self.is_enabled() {
            return Ok(());
        }
        let Some(c) = caller.filter(|c| !c.user.is_empty()) else { return Err(Error::UserEmpty) };
        let s = self.read();
        let u = s.users.get(&c.user).ok_or(Error::UserNotFound)?;
        if u.roles.iter().any(|r| r == ROOT) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// The caller must be a known user (any permissions); anyone may while auth is off.
    pub fn check_user(&self, caller: Option<&AuthInfo>) -> Result<()> {
        if !self.is_enabled() {
            return Ok(());
        }
        let Some(c) = caller.filter(|c| !c.user.is_empty()) else { return Err(Error::UserEmpty) };
        if self.read().users.contains_key(&c.user) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// The caller may read (or write) every key of `key`/`range_end` (etcd's `isOpPermitted`).
    pub fn check(&self, caller: Option<&AuthInfo>, access: Access, key: &[u8], range_end: &[u8]) -> Result<()> {
        if !self.is_enabled() {
            return Ok(());
        }
        let perms = self.perms_of(caller)?;
        self.permitted(&perms, access, key, range_end)
    }

    /// The caller's permissions, for several checks in a row ([`AuthStore::permitted`]); `None` when auth
    /// is off.
    pub fn perms_of(&self, caller: Option<&AuthInfo>) -> Result<Arc<UserPerms>> {
        let Some(c) = caller.filter(|c| !c.user.is_empty()) else { return Err(Error::UserEmpty) };
        if c.revision != 0 && c.revision < self.revision() {
            return Err(Error::AuthOldRevision);
        }
        if let Some(p) = self.read().perms.get(&c.user) {
            return Ok(p.clone());
        }
        let mut s = self.write();
        let u = s.users.get(&c.user).ok_or(Error::PermissionDenied)?;
        let mut p = UserPerms::default();
        for r in &u.roles {
            if r == ROOT {
                p.root = true;
            } else if let Some(role) = s.roles.get(r) {
                role.key_permission.iter().for_each(|perm| p.add(perm));
            }
        }
        let p = Arc::new(p);
        s.perms.insert(c.user.clone(), p.clone());
        Ok(p)
    }

    /// The parts of `key`/`range_end` the caller may read, in key order, from its cached permissions (what
    /// [`AuthStore::check`] allows): all of it while auth is off or for root, none of it for a user
    /// without a read grant there; anonymous: `UserEmpty`. For a plugin reading for its caller
    /// (`range-for-caller`); each part is still checked as a Range when it is read.
    pub fn readable(&self, caller: Option<&AuthInfo>, key: &[u8], range_end: &[u8]) -> Result<Vec<KeyRange>> {
        let whole = KeyRange::new(key, range_end);
        if !self.is_enabled() {
            return Ok(vec![whole]);
        }
        let perms = self.perms_of(caller)?;
        if perms.root {
            return Ok(vec![whole]);
        }
        Ok(perms.read.clip(&whole))
    }

    /// Whether `perms` allow `access` to every key of `key`/`range_end`.
    pub fn permitted(&self, perms: &UserPerms, access: Access, key: &[u8], range_end: &[u8]) -> Result<()> {
        if perms.root {
            return Ok(());
        }
        let spans = if access == Access::Read { &perms.read } else { &perms.write };
        if spans.covers(&crate::mvcc::KeyRange::new(key, range_end)) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    // ------------------------------------------------------------------ reads

    pub fn user_names(&self) -> Vec<String> {
        self.read().users.keys().cloned().collect()
    }

    pub fn role_names(&self) -> Vec<String> {
        self.read().roles.keys().cloned().collect()
    }

    pub fn user_roles(&self, name: &str) -> Result<Vec<String>> {
        self.read().users.get(name).map(|u| u.roles.clone()).ok_or(Error::UserNotFound)
    }

    pub fn role_perms(&self, role: &str) -> Result<Vec<Permission>> {
        self.read().roles.get(role).map(|r| r.key_permission.clone()).ok_or(Error::RoleNotFound)
    }

    /// The stored bcrypt hash of `name` (`None`: a no-password user); `AuthFailed` for an unknown user.
    pub fn password_hash(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let s = self.read();
        let u = s.users.get(name).ok_or(Error::AuthFailed)?;
        if u.options.as_ref().is_some_and(|o| o.no_password) {
            return Ok(None);
        }
        Ok(Some(u.password.clone()))
    }

    // ------------------------------------------------------------------ changes (apply only)

    /// Bumps the revision, drops the permission cache and writes the revision into `batch`.
    fn commit(&self, s: &mut State, batch: &mut WriteBatch) {
        s.revision += 1;
        s.perms.clear();
        self.revision.store(s.revision, Ordering::SeqCst);
        batch.put(Cf::Auth, REVISION, crate::storage::meta::encode_u64(s.revision));
    }

    fn save_user(batch: &mut WriteBatch, name: &str, u: &User) {
        batch.put(Cf::Auth, user_key(name), u.encode_to_vec());
    }

    fn save_role(batch: &mut WriteBatch, name: &str, r: &Role) {
        batch.put(Cf::Auth, role_key(name), r.encode_to_vec());
    }

    pub fn enable(&self, batch: &mut WriteBatch) -> Result<()> {
        if self.is_enabled() {
            return Ok(());
        }
        let s = self.read();
        let root = s.users.get(ROOT).ok_or(Error::RootUserNotExist)?;
        if !root.roles.iter().any(|r| r == ROOT) {
            return Err(Error::RootRoleNotExist);
        }
        drop(s);
        self.write().perms.clear();
        self.enabled.store(true, Ordering::SeqCst);
        batch.put(Cf::Auth, ENABLED, vec![1]);
        Ok(())
    }

    pub fn disable(&self, batch: &mut WriteBatch) -> Result<()> {
        if !self.is_enabled() {
            return Ok(());
        }
        let mut s = self.write();
        self.enabled.store(false, Ordering::SeqCst);
        batch.put(Cf::Auth, ENABLED, vec![0]);
        self.commit(&mut s, batch);
        self.tokens.invalidate_all();
        Ok(())
    }

    /// Whether `name` may authenticate now (the check repeated when the entry is applied).
    pub fn can_authenticate(&self, name: &str) -> Result<()> {
        if !self.is_enabled() {
            return Err(Error::AuthNotEnabled);
        }
        self.password_hash(name).map(|_| ())
    }

    pub fn user_add(&self, name: &str, hash: Vec<u8>, no_password: bool, batch: &mut WriteBatch) -> Result<()> {
        if name.is_empty() {
            return Err(Error::UserEmpty);
        }
        let mut s = self.write();
        if s.users.contains_key(name) {
            return Err(Error::UserAlreadyExist);
        }
        let options = no_password.then_some(UserAddOptions { no_password: true });
        let u = User { name: name.as_bytes().to_vec(), password: hash, roles: Vec::new(), options };
        Self::save_user(batch, name, &u);
        s.users.insert(name.to_string(), u);
        self.commit(&mut s, batch);
        Ok(())
    }

    pub fn user_delete(&self, name: &str, batch: &mut WriteBatch) -> Result<()> {
        if self.is_enabled() && name == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        let mut s = self.write();
        s.users.remove(name).ok_or(Error::UserNotFound)?;
        batch.delete(Cf::Auth, user_key(name));
        self.commit(&mut s, batch);
        self.tokens.invalidate_user(name);
        Ok(())
    }

    pub fn user_change_password(&self, name: &str, hash: Vec<u8>, batch: &mut WriteBatch) -> Result<()> {
        let mut s = self.write();
        let u = s.users.get_mut(name).ok_or(Error::UserNotFound)?;
        u.password = hash;
        u.options = None;
        let u = u.clone();
        Self::save_user(batch, name, &u);
        self.commit(&mut s, batch);
        self.tokens.invalidate_user(name);
        Ok(())
    }

    pub fn user_grant_role(&self, name: &str, role: &str, batch: &mut WriteBatch) -> Result<()> {
        let mut s = self.write();
        if !s.users.contains_key(name) {
            return Err(Error::UserNotFound);
        }
        // As etcd: the root role may be granted before a role object named root exists.
        if role != ROOT && !s.roles.contains_key(role) {
            return Err(Error::RoleNotFound);
        }
        let u = s.users.get_mut(name).expect("checked above");
        if u.roles.iter().any(|r| r == role) {
            return Ok(());
        }
        u.roles.push(role.to_string());
        u.roles.sort();
        let u = u.clone();
        Self::save_user(batch, name, &u);
        self.commit(&mut s, batch);
        Ok(())
    }

    pub fn user_revoke_role(&self, name: &str, role: &str, batch: &mut WriteBatch) -> Result<()> {
        if self.is_enabled() && name == ROOT && role == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        let mut s = self.write();
        let u = s.users.get_mut(name).ok_or(Error::UserNotFound)?;
        let before = u.roles.len();
        u.roles.retain(|r| r != role);
        if u.roles.len() == before {
            return Err(Error::RoleNotGranted);
        }
        let u = u.clone();
        Self::save_user(batch, name, &u);
        self.commit(&mut s, batch);
        Ok(())
    }

    pub fn role_add(&self, name: &str, batch: &mut WriteBatch) -> Result<()> {
        if name.is_empty() {
            return Err(Error::RoleEmpty);
        }
        let mut s = self.write();
        if s.roles.contains_key(name) {
            return Err(Error::RoleAlreadyExist);
        }
        let r = Role { name: name.as_bytes().to_vec(), key_permission: Vec::new() };
        Self::save_role(batch, name, &r);
        s.roles.insert(name.to_string(), r);
        self.commit(&mut s, batch);
        Ok(())
    }

    pub fn role_delete(&self, name: &str, batch: &mut WriteBatch) -> Result<()> {
        if self.is_enabled() && name == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        let mut s = self.write();
        s.roles.remove(name).ok_or(Error::RoleNotFound)?;
        batch.delete(Cf::Auth, role_key(name));
        let mut changed = Vec::new();
        for (uname, u) in s.users.iter_mut() {
            let before = u.roles.len();
            u.roles.retain(|r| r != name);
            if u.roles.len() != before {
                changed.push((uname.clone(), u.clone()));
            }
        }
        for (uname, u) in changed {
            Self::save_user(batch, &uname, &u);
        }
        self.commit(&mut s, batch);
        Ok(())
    }

    pub fn role_grant_permission(&self, name: &str, perm: Permission, batch: &mut WriteBatch) -> Result<()> {
        let mut s = self.write();
        let r = s.roles.get_mut(name).ok_or(Error::RoleNotFound)?;
        match r.key_permission.iter_mut().find(|p| p.key == perm.key && p.range_end == perm.range_end) {
            Some(p) => p.perm_type = perm.perm_type,
            None => {
                r.key_permission.push(perm);
                r.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        let r = r.clone();
        Self::save_role(batch, name, &r);
        self.commit(&mut s, batch);
        Ok(())
    }

    pub fn role_revoke_permission(
        &self,
        name: &str,
        key: &[u8],
        range_end: &[u8],
        batch: &mut WriteBatch,
    ) -> Result<()> {
        let mut s = self.write();
        let r = s.roles.get_mut(name).ok_or(Error::RoleNotFound)?;
        let before = r.key_permission.len();
        r.key_permission.retain(|p| !(p.key == key && p.range_end == range_end));
        if r.key_permission.len() == before {
            return Err(Error::PermissionNotGranted);
        }
        let r = r.clone();
        Self::save_role(batch, name, &r);
        self.commit(&mut s, batch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::authpb::permission::Type;
    use crate::storage::RocksDb;

    fn caller(user: &str) -> Option<AuthInfo> {
        Some(AuthInfo { user: user.into(), revision: 0 })
    }

    #[test]
    fn root_rules_permissions_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = RocksDb::open(dir.path()).unwrap();
        let tokens = Arc::new(token::SimpleTokens::new(std::time::Duration::from_secs(60)));
        let a = AuthStore::open(&db, tokens.clone()).unwrap();
        let mut b = WriteBatch::default();
        assert_eq!(a.enable(&mut b), Err(Error::RootUserNotExist));
        a.user_add("root", b"h".to_vec(), false, &mut b).unwrap();
        assert_eq!(a.user_add("root", b"h".to_vec(), false, &mut b), Err(Error::UserAlreadyExist));
        assert_eq!(a.enable(&mut b), Err(Error::RootRoleNotExist));
        assert_eq!(a.user_grant_role("root", "nope", &mut b), Err(Error::RoleNotFound));
        a.user_grant_role("root", ROOT, &mut b).unwrap();
        a.role_add("r", &mut b).unwrap();
        let perm = |t: Type, k: &str, e: &str| Permission { perm_type: t as i32, key: k.into(), range_end: e.into() };
        a.role_grant_permission("r", perm(Type::Read, "k", "l"), &mut b).unwrap();
        a.role_grant_permission("r", perm(Type::Readwrite, "a", ""), &mut b).unwrap();
        a.user_add("u", b"h".to_vec(), false, &mut b).unwrap();
        a.user_grant_role("u", "r", &mut b).unwrap();
        let rev = a.revision();
        a.user_grant_role("u", "r", &mut b).unwrap();
        assert_eq!(a.revision(), rev, "granting a held role changes nothing");
        a.enable(&mut b).unwrap();
        assert_eq!(a.revision(), rev, "enable does not bump the revision");
        assert_eq!(a.user_delete("root", &mut b), Err(Error::InvalidAuthMgmt));
        assert_eq!(a.user_revoke_role("root", "root", &mut b), Err(Error::InvalidAuthMgmt));
        assert_eq!(a.check(None, Access::Read, b"k", b""), Err(Error::UserEmpty));
        assert_eq!(a.check(caller("u").as_ref(), Access::Read, b"k1", b""), Ok(()));
        assert_eq!(a.check(caller("u").as_ref(), Access::Write, b"k1", b""), Err(Error::PermissionDenied));
        assert_eq!(a.check(caller("u").as_ref(), Access::Write, b"a", b""), Ok(()));
        assert_eq!(a.check(caller("u").as_ref(), Access::Read, b"k", b"m"), Err(Error::PermissionDenied));
        assert_eq!(a.check(caller("root").as_ref(), Access::Write, b"x", b"\0"), Ok(()));
        // What u may read of every key: key a and [k, l); root all of it; anonymous nothing.
        let every = a.readable(caller("u").as_ref(), b"\0", b"\0");
        assert_eq!(every, Ok(vec![KeyRange::new(b"a", b"a\0"), KeyRange::new(b"k", b"l")]));
        assert_eq!(a.readable(caller("u").as_ref(), b"b", b"c"), Ok(vec![]));
        assert_eq!(a.readable(caller("root").as_ref(), b"a", b"b"), Ok(vec![KeyRange::new(b"a", b"b")]));
        assert_eq!(a.readable(None, b"a", b"b"), Err(Error::UserEmpty));
        assert_eq!(a.check_admin(caller("u").as_ref()), Err(Error::PermissionDenied));
        assert_eq!(a.check_admin(caller("ghost").as_ref()), Err(Error::UserNotFound));
        assert_eq!(a.role_revoke_permission("r", b"k", b"", &mut b), Err(Error::PermissionNotGranted));
        a.role_revoke_permission("r", b"k", b"l", &mut b).unwrap();
        assert_eq!(a.check(caller("u").as_ref(), Access::Read, b"k1", b""), Err(Error::PermissionDenied));
        a.role_delete("r", &mut b).unwrap();
        assert_eq!(a.user_roles("u").unwrap(), Vec::<String>::new());
        let rev = a.revision();
        db.write(b, true).unwrap();
        let again = AuthStore::open(&db, tokens).unwrap();
        assert!(again.is_enabled());
        assert_eq!(again.revision(), rev);
        assert_eq!(again.user_names(), vec!["root", "u"]);
        assert_eq!(again.user_roles("root").unwrap(), vec!["root"]);
    }
}
