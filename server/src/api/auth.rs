//! The Auth service (`etcdserverpb.Auth`), and the caller of every gRPC request: its token (metadata
//! `token`, or `authorization` as the gateway sends it) resolved to a user, under which the request is
//! served (`crate::auth::with_caller`); without a token, with `--client-cert-auth`, the Common Name of
//! the connection's verified client certificate ([`PeerCn`], put there by `api::mux`), as etcd 3.4
//! (`AuthInfoFromTLS`: a token wins over the CN, and a request carrying `grpcgateway-accept` metadata,
//! which a grpc-gateway in front of the member sends, is never served as the gateway's certificate).

use std::sync::Arc;

use std::convert::Infallible;

use axum::extract::Request as HttpRequest;
use axum::response::Response as HttpResponse;
use futures::future::{BoxFuture, Either};
use tonic::{Request, Response, Status};

use crate::auth::AuthInfo;
use crate::error::Error;
use crate::proto::etcdserverpb::auth_server::Auth as AuthRpc;
use crate::proto::etcdserverpb::*;
use crate::server::v3::Auth;

/// The Common Name of the verified client certificate a gRPC request came with (see the module doc).
#[derive(Clone, Debug)]
pub struct PeerCn(pub Arc<str>);

#[derive(Clone)]
pub struct AuthService {
    pub server: Arc<dyn Auth>,
}

/// The caller a token names; no token is an anonymous caller. Nothing is looked at while auth is off
/// (as etcd).
pub async fn caller_of(auth: &dyn Auth, token: Option<&[u8]>) -> Result<Option<AuthInfo>, Error> {
    if !auth.enabled() {
        return Ok(None);
    }
    match token {
        None => Ok(None),
        Some(t) => {
            let t = std::str::from_utf8(t).map_err(|_| Error::InvalidAuthToken)?;
            auth.caller_of(t).await.map(Some)
        }
    }
}

/// The tower layer that serves each gRPC request as the caller its token names; an unknown or expired
/// token is refused with `etcdserver: invalid auth token`, and `Authenticate` is served whatever token
/// comes with it. While auth is off a request goes straight through: no allocation, no lookup.
#[derive(Clone)]
pub struct CallerLayer {
    pub auth: Arc<dyn Auth>,
}

impl<S> tower::Layer<S> for CallerLayer {
    type Service = Caller<S>;

    fn layer(&self, inner: S) -> Caller<S> {
        Caller { inner, auth: self.auth.clone() }
    }
}

/// See [`CallerLayer`].
#[derive(Clone)]
pub struct Caller<S> {
    inner: S,
    auth: Arc<dyn Auth>,
}

impl<S> tower::Service<HttpRequest> for Caller<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<HttpResponse, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        if !self.auth.enabled() || req.uri().path() == "/etcdserverpb.Auth/Authenticate" {
            return Either::Left(self.inner.call(req));
        }
        // The ready service goes into the future; a clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Either::Right(Box::pin(async move {
            let h = req.headers();
            let token = h.get("token").or_else(|| h.get("authorization")).map(|v| v.as_bytes().to_vec());
            let cn = match &token {
                None if !h.contains_key("grpcgateway-accept") => req.extensions().get::<PeerCn>(),
                _ => None,
            };
            // Served at the current auth revision (revision 0: nothing to be old against), as etcd.
            let by_cn = cn.map(|cn| AuthInfo { user: cn.0.to_string(), revision: 0 });
            let caller = match by_cn {
                Some(c) => Ok(Some(c)),
                None => caller_of(&*auth, token.as_deref()).await,
            };
            match caller {
                Ok(caller) => crate::auth::with_caller(caller, inner.call(req)).await,
                Err(e) => Ok(Status::from(e).into_http()),
            }
        }))
    }
}

macro_rules! rpcs {
    ($($method:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl AuthRpc for AuthService {
            $(async fn $method(&self, req: Request<$req>) -> Result<Response<$resp>, Status> {
                Ok(Response::new(self.server.$method(req.into_inner()).await?))
            })*
        }
    };
}

rpcs! {
    auth_enable(AuthEnableRequest) -> AuthEnableResponse;
    auth_disable(AuthDisableRequest) -> AuthDisableResponse;
    authenticate(AuthenticateRequest) -> AuthenticateResponse;
    user_add(AuthUserAddRequest) -> AuthUserAddResponse;
    user_get(AuthUserGetRequest) -> AuthUserGetResponse;
    user_list(AuthUserListRequest) -> AuthUserListResponse;
    user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse;
    user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse;
    user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse;
    user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse;
    role_add(AuthRoleAddRequest) -> AuthRoleAddResponse;
    role_get(AuthRoleGetRequest) -> AuthRoleGetResponse;
    role_list(AuthRoleListRequest) -> AuthRoleListResponse;
    role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse;
    role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse;
    role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse;
}
