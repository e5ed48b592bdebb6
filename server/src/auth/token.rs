//! Tokens: what `Authenticate` hands out and every later request carries. [`TokenProvider`] is the
//! seam for other kinds (JWT); [`SimpleTokens`] is etcd's `simple` provider.
//!
//! A simple token is `<16 random letters>.<raft index>`: the letters are made by the member that
//! receives `Authenticate`, the index is the one its raft entry is applied at, and every member keeps
//! `token → user` in memory when it applies the entry, so the token works on any member once that member
//! has applied the index. Tokens are never stored: after a restart clients authenticate again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

/// How often expired tokens are swept out (etcd's simple token sweeper runs every second).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Issues and resolves tokens.
pub trait TokenProvider: Send + Sync {
    /// Records the token of `user` from an `Authenticate` entry applied at `index` whose proposer made
    /// `prefix`, and returns it.
    fn assign(&self, prefix: &str, index: u64, user: &str) -> String;
    /// The raft index that must be applied before `token` can be resolved; `None` when it is malformed.
    fn index_of(&self, token: &str) -> Option<u64>;
    /// The user `token` belongs to (its lifetime renewed); `None` when unknown or expired.
    fn user_of(&self, token: &str) -> Option<String>;
    /// Drops every token of `user` (deleted, or its password changed).
    fn invalidate_user(&self, user: &str);
    /// Drops every token (auth disabled).
    fn invalidate_all(&self);
    /// Keeps only the tokens of the users `keep` accepts (after a snapshot replaced the auth state).
    fn retain_users(&self, keep: &dyn Fn(&str) -> bool);
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
    fn assign(&self, prefix: &str, index: u64, user: &str) -> String {
        let token = format!("{prefix}.{index}");
        let now = Instant::now();
        let mut t = self.lock();
        if now.duration_since(t.last_sweep) >= SWEEP_EVERY {
            t.issued.retain(|_, i| i.expires > now);
            t.last_sweep = now;
        }
        t.issued.insert(token.clone(), Issued { user: user.to_string(), expires: now + self.ttl });
        token
    }

    fn index_of(&self, token: &str) -> Option<u64> {
        let (prefix, index) = token.split_once('.')?;
        if prefix.is_empty() || index.contains('.') {
            return None;
        }
        index.parse().ok()
    }

    fn user_of(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut t = self.lock();
        let issued = t.issued.get_mut(token)?;
        if issued.expires <= now {
            t.issued.remove(token);
            return None;
        }
        issued.expires = now + self.ttl;
        Some(issued.user.clone())
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
        let a = p.assign(&prefix, 7, "alice");
        assert_eq!(a, format!("{prefix}.7"));
        assert_eq!(p.index_of(&a), Some(7));
        assert_eq!(p.index_of("abc"), None);
        assert_eq!(p.index_of("a.b.3"), None);
        let b = p.assign("bbbbbbbbbbbbbbbb", 8, "bob");
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(p.user_of(&a).as_deref(), Some("alice"), "each use renews the token");
        }
        assert_eq!(p.user_of(&b), None, "unused for longer than the TTL");
        p.invalidate_user("alice");
        assert_eq!(p.user_of(&a), None);
    }
}
