//! The server's side of auth (etcd's `v3_server.go` auth calls): the Auth service's requests, checked
//! and proposed; `Authenticate` checks the password here and proposes only the user and a token prefix;
//! passwords are hashed here, before the proposal, so no raft entry holds one (etcd hashes at apply).
//! bcrypt runs on the blocking pool, never on the async workers.

use async_trait::async_trait;

use super::v3::Auth;
use super::EtcdServer;
use crate::apply::Applied;
use crate::auth::{caller, token, AuthInfo};
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::*;
use crate::proto::modkvpb::{
    InternalAuthenticateRequest, InternalRaftRequest, InternalUserAddRequest, InternalUserChangePasswordRequest,
};

/// A bcrypt hash of `password`, made off the async workers.
async fn hash(password: String, cost: u32) -> Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
        .await
        .map_err(|e| Error::Internal(format!("bcrypt: {e}")))?
        .map(String::into_bytes)
        .map_err(|e| Error::Internal(format!("bcrypt: {e}")))
}

/// Whether `password` matches the bcrypt `hash`, checked off the async workers.
async fn verify(password: String, hash: Vec<u8>) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let hash = String::from_utf8(hash).unwrap_or_default();
        bcrypt::verify(password, &hash).unwrap_or(false)
    })
    .await
    .map_err(|e| Error::Internal(format!("bcrypt: {e}")))
}

impl EtcdServer {
    /// Proposes an auth change and waits until it is applied; the result's token, if any.
    async fn propose_auth(&self, req: InternalRaftRequest) -> Result<Option<String>> {
        self.not_learner()?;
        match self.propose(req).await? {
            Applied::Auth(token) => Ok(token),
            other => Err(super::unexpected(other)),
        }
    }

    /// The caller must be root, for an auth read served here.
    async fn admin_read(&self) -> Result<()> {
        self.linearizable_read().await?;
        self.auth.check_admin(caller().as_ref())
    }
}

macro_rules! change {
    ($self:ident, $field:ident, $value:expr, $resp:ident) => {{
        $self.propose_auth(InternalRaftRequest { $field: Some($value), ..Default::default() }).await?;
        Ok($resp { header: Some($self.headers.current()) })
    }};
}

#[async_trait]
impl Auth for EtcdServer {
    async fn caller_of(&self, token: &str) -> Result<AuthInfo> {
        let tokens = self.auth.tokens();
        let index = tokens.index_of(token).ok_or(Error::InvalidAuthToken)?;
        // A simple token made on another member is known here once this member has applied its entry (a
        // JWT needs no entry: index 0).
        if index > *self.applied.borrow() {
            let mut applied = self.applied.clone();
            tokio::time::timeout(self.cfg.request_timeout, applied.wait_for(|a| *a >= index))
                .await
                .map_err(|_| Error::InvalidAuthToken)?
                .map_err(|_| Error::Stopped)?;
        }
        let holder = tokens.user_of(token).ok_or(Error::InvalidAuthToken)?;
        // A JWT is served at the revision it was made at (older than the store's: `revision of auth store
        // is old`), a simple token at the current one (as etcd).
        Ok(AuthInfo { user: holder.user, revision: holder.revision.unwrap_or_else(|| self.auth.revision()) })
    }

    fn enabled(&self) -> bool {
        self.auth.is_enabled()
    }

    async fn auth_enable(&self, r: AuthEnableRequest) -> Result<AuthEnableResponse> {
        change!(self, auth_enable, r, AuthEnableResponse)
    }

    async fn auth_disable(&self, r: AuthDisableRequest) -> Result<AuthDisableResponse> {
        change!(self, auth_disable, r, AuthDisableResponse)
    }

    async fn authenticate(&self, r: AuthenticateRequest) -> Result<AuthenticateResponse> {
        self.linearizable_read().await?;
        if !self.auth.is_enabled() {
            return Err(Error::AuthNotEnabled);
        }
        let Some(hash) = self.auth.password_hash(&r.name)? else { return Err(Error::NoPasswordUser) };
        if !verify(r.password, hash).await? {
            return Err(Error::AuthFailed);
        }
        let req = InternalAuthenticateRequest { name: r.name, simple_token: token::gen_prefix() };
        let token = self.propose_auth(InternalRaftRequest { authenticate: Some(req), ..Default::default() }).await?;
        let token = token.ok_or_else(|| Error::Internal("authenticate applied without a token".into()))?;
        Ok(AuthenticateResponse { header: Some(self.headers.current()), token })
    }

    async fn user_add(&self, r: AuthUserAddRequest) -> Result<AuthUserAddResponse> {
        if r.name.is_empty() {
            return Err(Error::UserEmpty);
        }
        self.auth.check_admin(caller().as_ref())?;
        let no_password = r.options.is_some_and(|o| o.no_password);
        let hashed_password = if no_password { Vec::new() } else { hash(r.password, self.cfg.bcrypt_cost).await? };
        let req = InternalUserAddRequest { name: r.name, hashed_password, no_password };
        change!(self, auth_user_add, req, AuthUserAddResponse)
    }

    async fn user_get(&self, r: AuthUserGetRequest) -> Result<AuthUserGetResponse> {
        self.linearizable_read().await?;
        // Anyone may read their own user (etcd's `IsAdminPermitted` or the caller's own name).
        let me = caller();
        if me.as_ref().is_none_or(|c| c.user != r.name) {
            self.auth.check_admin(me.as_ref())?;
        }
        let roles = self.auth.user_roles(&r.name)?;
        Ok(AuthUserGetResponse { header: Some(self.headers.current()), roles })
    }

    async fn user_list(&self, _: AuthUserListRequest) -> Result<AuthUserListResponse> {
        self.admin_read().await?;
        Ok(AuthUserListResponse { header: Some(self.headers.current()), users: self.auth.user_names() })
    }

    async fn user_delete(&self, r: AuthUserDeleteRequest) -> Result<AuthUserDeleteResponse> {
        self.auth.check_admin(caller().as_ref())?;
        change!(self, auth_user_delete, r, AuthUserDeleteResponse)
    }

    async fn user_change_password(&self, r: AuthUserChangePasswordRequest) -> Result<AuthUserChangePasswordResponse> {
        self.auth.check_admin(caller().as_ref())?;
        let hashed_password = hash(r.password, self.cfg.bcrypt_cost).await?;
        let req = InternalUserChangePasswordRequest { name: r.name, hashed_password };
        change!(self, auth_user_change_password, req, AuthUserChangePasswordResponse)
    }

    async fn user_grant_role(&self, r: AuthUserGrantRoleRequest) -> Result<AuthUserGrantRoleResponse> {
        self.auth.check_admin(caller().as_ref())?;
        change!(self, auth_user_grant_role, r, AuthUserGrantRoleResponse)
    }

    async fn user_revoke_role(&self, r: AuthUserRevokeRoleRequest) -> Result<AuthUserRevokeRoleResponse> {
        self.auth.check_admin(caller().as_ref())?;
        change!(self, auth_user_revoke_role, r, AuthUserRevokeRoleResponse)
    }

    async fn role_add(&self, r: AuthRoleAddRequest) -> Result<AuthRoleAddResponse> {
        if r.name.is_empty() {
            return Err(Error::RoleEmpty);
        }
        self.auth.check_admin(caller().as_ref())?;
        change!(self, auth_role_add, r, AuthRoleAddResponse)
    }

    async fn role_get(&self, r: AuthRoleGetRequest) -> Result<AuthRoleGetResponse> {
        self.linearizable_read().await?;
        // Anyone may read a role they hold (etcd's `HasRole`).
        let me = caller();
        let holds =
            me.as_ref().is_some_and(|c| self.auth.user_roles(&c.user).is_ok_and(|roles| roles.contains(&r.role)));
        if !holds {
            self.auth.check_admin(me.as_ref())?;
        }
        let perm = self.auth.role_perms(&r.role)?;
        Ok(AuthRoleGetResponse { header: Some(self.headers.current()), perm })
    }

    async fn role_list(&self, _: AuthRoleListRequest) -> Result<AuthRoleListResponse> {
        self.admin_read().await?;
        Ok(AuthRoleListResponse { header: Some(self.headers.current()), roles: self.auth.role_names() })
    }

    async fn role_delete(&self, r: AuthRoleDeleteRequest) -> Result<AuthRoleDeleteResponse> {
        self.auth.check_admin(caller().as_ref())?;
        change!(self, auth_role_delete, r, AuthRoleDeleteResponse)
    }

    async fn role_grant_permission(
        &self,
        r: AuthRoleGrantPermissionRequest,
    ) -> Result<AuthRoleGrantPermissionResponse> {
        self.auth.check_admin(caller().as_ref())?;
        change!(self, auth_role_grant_permission, r, AuthRoleGrantPermissionResponse)
    }

    async fn role_revoke_permission(
        &self,
        r: AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse> {
        self.auth.check_admin(caller().as_ref())?;
        change!(self, auth_role_revoke_permission, r, AuthRoleRevokePermissionResponse)
    }
}
