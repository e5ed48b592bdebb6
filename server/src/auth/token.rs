//! Tokens: what `Authenticate` hands out and every later request carries. [`TokenProvider`] is the
//! seam; [`SimpleTokens`] is etcd's `simple` provider, [`super::jwt::JwtTokens`] its `jwt` one, and
//! [`provider`] builds the one `--auth-token` names (etcd's option syntax, checked at startup).
//!
//! A simple token is `<16 random letters>.<raft index>`: the letters are made by the member that
//! receives `Authenticate`, the index is the one its raft entry is applied at, and every member keeps
//! `token → user` in memory when it applies the entry, so the token works on any member once that member
//! has applied the index. Tokens are never stored: after a restart clients authenticate again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::error::Error;

/// How often expired tokens are swept out (etcd's simple token sweeper runs every second).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Who a token names: the user, and the auth revision it was made at when the token carries one (a JWT);
/// `None` for a simple token, which is served at the current revision (as etcd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub user: String,
    pub revision: Option<u64>,
}

/// Issues and resolves tokens.
pub trait TokenProvider: Send + Sync {
    /// The token of `user` from an `Authenticate` entry applied at `index`, at auth revision `revision`,
    /// whose proposer made `prefix` (a simple token is recorded here).
    fn assign(&self, prefix: &str, index: u64, user: &str, revision: u64) -> Result<String, Error>;
    /// The raft index that must be applied before `token` can be resolved (0: none); `None` when it is
    /// malformed.
    fn index_of(&self, token: &str) -> Option<u64>;
    /// Who `token` belongs to (a simple token's lifetime renewed); `None` when unknown, expired or forged.
    fn user_of(&self, token: &str) -> Option<Holder>;
    /// Drops every token of `user` (deleted, or its password changed).
    fn invalidate_user(&self, user: &str);
    /// Drops every token (auth disabled).
    fn invalidate_all(&self);
    /// Keeps only the tokens of the users `keep` accepts (after a snapshot replaced the auth state).
    fn retain_users(&self, keep: &dyn Fn(&str) -> bool);
}

/// Why the `--auth-token` provider cannot be made; the member does not start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// etcd's `auth: invalid auth options`: an unknown type, a malformed or repeated `k=v` pair, an
    /// unknown `sign-method`, a bad `ttl`, an unreadable key file (`reason` says which).
    #[error("auth: invalid auth options ({reason})")]
    InvalidOpts { reason: String },
    /// etcd's `auth: missing key data`: no key for the signing method.
    #[error("auth: missing key data (sign-method {method} needs {needs})")]
    MissingKey { method: String, needs: &'static str },
    /// A key file that holds no key usable for the signing method.
    #[error("auth: invalid key in {file}: {reason}")]
    BadKey { file: String, reason: String },
    /// etcd's `auth: public and private keys don't match`.
    #[error("auth: public and private keys don't match ({public} does not verify what {private} signs)")]
    KeyMismatch { public: String, private: String },
}

/// The provider `--auth-token` names (etcd's `NewTokenProvider`): `simple` (living `simple_ttl` past its
/// last use), or `jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`. The option string is split on `,`: the
/// type first, then `k=v` pairs; a malformed or repeated pair is invalid, an unknown key only warned
/// about. Key files are read here, once.
pub fn provider(opts: &str, simple_ttl: Duration) -> Result<Arc<dyn TokenProvider>, TokenError> {
    let mut parts = opts.split(',');
    let kind = parts.next().unwrap_or_default();
    let mut pairs = HashMap::new();
    for part in parts {
        let invalid = |reason: String| TokenError::InvalidOpts { reason };
        let mut kv = part.split('=');
        let (Some(k), Some(v), None) = (kv.next(), kv.next(), kv.next()) else {
            return Err(invalid(format!("{part:?} is not key=value")));
        };
        if pairs.insert(k.to_string(), v.to_string()).is_some() {
            return Err(invalid(format!("{k:?} is given twice")));
        }
    }
    match kind {
        "simple" => {
            tracing::warn!("simple token is not cryptographically signed");
            Ok(Arc::new(SimpleTokens::new(simple_ttl)))
        }
        "jwt" => Ok(Arc::new(super::jwt::JwtTokens::from_opts(&pairs)?)),
        other => Err(TokenError::InvalidOpts { reason: format!("unknown token type {other:?}") }),
    }
}

/// 16 random letters `[a-zA-Z]`, the first part of a simple token (etcd's `GenTokenPrefix`).
pub fn gen_prefix() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::thread_rng();
    (0..16).map(|_| LETTERS[rng.gen_range(0..LETTERS.len())] as char).collect()
}

struct Issued {
    user: String,
    expires: Instant,
}

struct Tokens {
    issued: HashMap<String, Issued>,
    last_sweep: Instant,
}

/// etcd's `simple` tokens, each living `ttl` past its last use.
pub struct SimpleTokens {
    ttl: Duration,
    tokens: Mutex<Tokens>,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens { ttl, tokens: Mutex::new(Tokens { issued: HashMap::new(), last_sweep: Instant::now() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl TokenProvider for SimpleTokens {
    fn assign(&self, prefix: &str, index: u64, user: &str, _revision: u64) -> Result<String, Error> {
        let token = format!("{prefix}.{index}");
        let now = Instant::now();
        let mut t = self.lock();
        if now.duration_since(t.last_sweep) >= SWEEP_EVERY {
            t.issued.retain(|_, i| i.expires > now);
            t.last_sweep = now;
        }
        t.issued.insert(token.clone(), Issued { user: user.to_string(), expires: now + self.ttl });
        Ok(token)
    }

    fn index_of(&self, token: &str) -> Option<u64> {
        let (prefix, index) = token.split_once('.')?;
        if prefix.is_empty() || index.contains('.') {
            return None;
        }
        index.parse().ok()
    }

    fn user_of(&self, token: &str) -> Option<Holder> {
        let now = Instant::now();
        let mut t = self.lock();
        let issued = t.issued.get_mut(token)?;
        if issued.expires <= now {
            t.issued.remove(token);
            return None;
        }
        issued.expires = now + self.ttl;
        Some(Holder { user: issued.user.clone(), revision: None })
    }

    fn invalidate_user(&self, user: &str) {
        self.lock().issued.retain(|_, i| i.user != user);
    }

    fn invalidate_all(&self) {
        self.lock().issued.clear();
    }

    fn retain_users(&self, keep: &dyn Fn(&str) -> bool) {
        self.lock().issued.retain(|_, i| keep(&i.user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_tokens_expire_unless_used_and_are_dropped_per_user() {
        let p = SimpleTokens::new(Duration::from_millis(200));
        let prefix = gen_prefix();
        assert_eq!(prefix.len(), 16);
        assert!(prefix.bytes().all(|b| b.is_ascii_alphabetic()));
        let a = p.assign(&prefix, 7, "alice", 3).unwrap();
        assert_eq!(a, format!("{prefix}.7"));
        assert_eq!(p.index_of(&a), Some(7));
        assert_eq!(p.index_of("abc"), None);
        assert_eq!(p.index_of("a.b.3"), None);
        let b = p.assign("bbbbbbbbbbbbbbbb", 8, "bob", 3).unwrap();
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(100));
            let alice = Some(Holder { user: "alice".into(), revision: None });
            assert_eq!(p.user_of(&a), alice, "each use renews the token");
        }
        assert_eq!(p.user_of(&b), None, "unused for longer than the TTL");
        p.invalidate_user("alice");
        assert_eq!(p.user_of(&a), None);
    }
}

#[cfg(test)]
mod option_tests {
    use super::*;

    fn err(opts: &str) -> String {
        provider(opts, Duration::from_secs(1)).err().expect(opts).to_string()
    }

    #[test]
    fn auth_token_options_as_etcd_parses_them() {
        assert!(provider("simple", Duration::from_secs(1)).is_ok());
        assert!(provider("simple,x=y", Duration::from_secs(1)).is_ok(), "options a type does not use are ignored");
        for bad in ["bogus", "", "jwt,foo", "jwt,", "jwt,a=b=c", "jwt,sign-method=RS256,sign-method=RS256"] {
            assert!(err(bad).starts_with("auth: invalid auth options ("), "{bad}: {}", err(bad));
        }
        assert!(err("jwt,sign-method=XX256").contains("sign-method"), "{}", err("jwt,sign-method=XX256"));
        assert!(err("jwt,sign-method=RS256,ttl=5").contains("ttl"));
        let missing = err("jwt,sign-method=RS256,priv-key=/nonexistent/k.pem");
        assert!(
            missing.starts_with("auth: invalid auth options (") && missing.contains("/nonexistent/k.pem"),
            "{missing}"
        );
        assert!(err("jwt,sign-method=ES256").starts_with("auth: missing key data"));
    }
}
