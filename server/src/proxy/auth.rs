//! `etcdserverpb.Auth` forwarded with the caller's token; the proxy holds no credentials of its own.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::upstream::{token_of, Retry, Upstream};
use crate::proto::etcdserverpb::auth_client::AuthClient;
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::*;

#[derive(Clone)]
pub struct AuthProxy {
    pub up: Arc<Upstream>,
    /// Dropped entirely on every auth change made through the proxy.
    pub cache: Arc<super::cache::ReadCache>,
}

macro_rules! rpcs {
    ($($method:ident($req:ty) -> $resp:ty, $retry:expr;)*) => {
        #[tonic::async_trait]
        impl Auth for AuthProxy {
            $(async fn $method(&self, req: Request<$req>) -> Result<Response<$resp>, Status> {
                let token = token_of(&req);
                let r = req.into_inner();
                let answer = forward!(self.up, $retry, AuthClient, $method, r, token);
                if $retry == Retry::IfNotSent {
                    self.cache.clear();
                }
                Ok(Response::new(answer?))
            })*
        }
    };
}

rpcs! {
    auth_enable(AuthEnableRequest) -> AuthEnableResponse, Retry::IfNotSent;
    auth_disable(AuthDisableRequest) -> AuthDisableResponse, Retry::IfNotSent;
    authenticate(AuthenticateRequest) -> AuthenticateResponse, Retry::Always;
    user_add(AuthUserAddRequest) -> AuthUserAddResponse, Retry::IfNotSent;
    user_get(AuthUserGetRequest) -> AuthUserGetResponse, Retry::Always;
    user_list(AuthUserListRequest) -> AuthUserListResponse, Retry::Always;
    user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse, Retry::IfNotSent;
    user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse, Retry::IfNotSent;
    user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse, Retry::IfNotSent;
    user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse, Retry::IfNotSent;
    role_add(AuthRoleAddRequest) -> AuthRoleAddResponse, Retry::IfNotSent;
    role_get(AuthRoleGetRequest) -> AuthRoleGetResponse, Retry::Always;
    role_list(AuthRoleListRequest) -> AuthRoleListResponse, Retry::Always;
    role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse, Retry::IfNotSent;
    role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse, Retry::IfNotSent;
    role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse, Retry::IfNotSent;
}
