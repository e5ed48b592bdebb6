//! etcd's `jwt` tokens (`--auth-token jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`): signed JSON Web
//! Tokens whose claims are exactly etcd's `{"exp","revision","username"}`, with etcd's header
//! `{"alg":…,"typ":"JWT"}`. They carry no server state: a member with the same keys accepts a token
//! whatever member made it, before or after a restart, until `exp`.
//!
//! - Keys are read once, at startup (`from_opts`). RS*/PS* take RSA keys (PKCS#1 or PKCS#8 PEM), ES256 /
//!   ES384 EC keys (PKCS#8 PEM; a SEC1 `EC PRIVATE KEY` is refused with a hint), HS* the private key
//!   file's bytes as the secret. ES512 is not offered (ring has no P-521) and neither is EdDSA (etcd 3.4
//!   refuses it too).
//! - With a private key, tokens are verified with its public half, as etcd does; a public key given as
//!   well must verify what the private key signs (etcd's check only compares some fields). With a public
//!   key alone the member only verifies, and `Authenticate` fails with etcd's
//!   `auth: token signing attempted with verify-only key`.
//! - An expired, forged or badly signed token, or one signed with another algorithm, is unknown
//!   (`etcdserver: invalid auth token`); no leeway on `exp`, as etcd.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde::{Deserialize, Serialize};

use super::token::{Holder, TokenError, TokenProvider};
use crate::error::Error;

/// The lifetime of a token when `ttl` is not given (etcd's `DefaultTTL`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

const KNOWN: [&str; 4] = ["sign-method", "pub-key", "priv-key", "ttl"];

/// etcd's claims, in the order Go writes them (its map keys sorted).
#[derive(Serialize, Deserialize)]
struct Claims {
    exp: i64,
    revision: u64,
    username: String,
}

/// See the module documentation.
pub struct JwtTokens {
    alg: Algorithm,
    /// The token's first part, base64url of etcd's header.
    header: String,
    /// `None`: verify-only (a public key alone).
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The key families, as the signing method needs them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
}

impl JwtTokens {
    /// Builds the provider from the `k=v` options of `--auth-token jwt,…`, reading the key files.
    pub fn from_opts(opts: &HashMap<String, String>) -> Result<JwtTokens, TokenError> {
        let invalid = |reason: String| TokenError::InvalidOpts { reason };
        let mut unknown: Vec<&str> = opts.keys().map(String::as_str).filter(|k| !KNOWN.contains(k)).collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            tracing::warn!(keys = ?unknown, "unknown JWT options");
        }
        let get = |k: &str| opts.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let ttl = match get("ttl") {
            None => DEFAULT_TTL,
            Some(t) => crate::config::go_duration(t).map_err(|e| invalid(format!("ttl {t:?}: {e}")))?,
        };
        let read = |k: &str| -> Result<Option<(String, Vec<u8>)>, TokenError> {
            let Some(file) = get(k) else { return Ok(None) };
            let data = std::fs::read(file).map_err(|e| invalid(format!("cannot read {k} file {file}: {e}")))?;
            Ok(Some((file.to_string(), data)))
        };
        let public = read("pub-key")?;
        let private = read("priv-key")?;
        let method = get("sign-method").unwrap_or_default();
        let (alg, family) = match method {
            "ES512" => return Err(invalid("sign-method ES512 is not supported (no P-521 in ring)".into())),
            "EdDSA" => return Err(invalid("sign-method EdDSA is not supported (nor is it by etcd 3.4)".into())),
            m => match Algorithm::from_str(m) {
                Ok(a @ (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)) => (a, Family::Hmac),
                Ok(a @ (Algorithm::ES256 | Algorithm::ES384)) => (a, Family::Ec),
                Ok(a @ (Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512)) => (a, Family::Rsa),
                Ok(a @ (Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512)) => (a, Family::Rsa),
                _ => return Err(invalid(format!("invalid auth signature method: sign-method={m:?}"))),
            },
        };
        let (signing, verifying) = match family {
            Family::Hmac => {
                let Some((_, secret)) = &private else {
                    return Err(TokenError::MissingKey { method: method.into(), needs: "priv-key (the secret)" });
                };
                (Some(EncodingKey::from_secret(secret)), DecodingKey::from_secret(secret))
            }
            Family::Rsa | Family::Ec => {
                let signing = private.as_ref().map(|(file, pem)| signing_key(family, alg, file, pem)).transpose()?;
                let given = public.as_ref().map(|(file, pem)| verifying_key(family, file, pem)).transpose()?;
                match (signing, given) {
                    (Some((enc, own)), _) => (Some(enc), own),
                    (None, Some(dec)) => (None, dec),
                    (None, None) => {
                        return Err(TokenError::MissingKey { method: method.into(), needs: "priv-key or pub-key" })
                    }
                }
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        let header = b64(format!(r#"{{"alg":"{method}","typ":"JWT"}}"#).as_bytes());
        let tokens = JwtTokens { alg, header, signing, verifying, validation, ttl };
        // A public key given beside the private one must verify what the private key signs.
        if let (Some((pub_file, pem)), Some((priv_file, _))) = (&public, &private) {
            if family != Family::Hmac {
                let given = verifying_key(family, pub_file, pem)?;
                let probe = tokens.sign("probe", 1).map_err(|e| TokenError::BadKey {
                    file: priv_file.clone(),
                    reason: format!("cannot sign with {method}: {e}"),
                })?;
                if jsonwebtoken::decode::<Claims>(&probe, &given, &tokens.validation).is_err() {
                    return Err(TokenError::KeyMismatch { public: pub_file.clone(), private: priv_file.clone() });
                }
            }
        }
        Ok(tokens)
    }

    /// A token for `user` at auth revision `revision`, expiring `ttl` from now.
    fn sign(&self, user: &str, revision: u64) -> Result<String, String> {
        let Some(key) = &self.signing else { return Err("auth: token signing attempted with verify-only key".into()) };
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(self.ttl)
            .as_secs() as i64;
        let claims = Claims { exp, revision, username: user.to_string() };
        let claims = serde_json::to_vec(&claims).map_err(|e| e.to_string())?;
        let message = format!("{}.{}", self.header, b64(&claims));
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, self.alg).map_err(|e| e.to_string())?;
        Ok(format!("{message}.{sig}"))
    }
}

/// The signing key in `pem` and the key that verifies its signatures (its public half).
fn signing_key(
    family: Family,
    alg: Algorithm,
    file: &str,
    pem: &[u8],
) -> Result<(EncodingKey, DecodingKey), TokenError> {
    let bad = |reason: String| TokenError::BadKey { file: file.to_string(), reason };
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| bad(format!("no PEM private key ({e})")))?;
    if family == Family::Rsa {
        let pair = match &der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => return Err(bad("not an RSA private key (PKCS#1 or PKCS#8 PEM)".into())),
        }
        .map_err(|e| bad(format!("not a usable RSA private key: {e}")))?;
        let enc = EncodingKey::from_rsa_pem(pem).map_err(|e| bad(e.to_string()))?;
        return Ok((enc, DecodingKey::from_rsa_der(pair.public_key().as_ref())));
    }
    let PrivateKeyDer::Pkcs8(k) = &der else {
        return Err(bad("not a PKCS#8 EC private key (convert with `openssl pkcs8 -topk8 -nocrypt`)".into()));
    };
    let curve = if alg == Algorithm::ES256 {
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING
    } else {
        &signature::ECDSA_P384_SHA384_FIXED_SIGNING
    };
    let pair = EcdsaKeyPair::from_pkcs8(curve, k.secret_pkcs8_der(), &ring::rand::SystemRandom::new())
        .map_err(|e| bad(format!("not an EC private key for {alg:?}: {e}")))?;
    let enc = EncodingKey::from_ec_pem(pem).map_err(|e| bad(e.to_string()))?;
    Ok((enc, DecodingKey::from_ec_der(pair.public_key().as_ref())))
}

/// The verifying key in `pem` (a public key or a certificate).
fn verifying_key(family: Family, file: &str, pem: &[u8]) -> Result<DecodingKey, TokenError> {
    let key = if family == Family::Rsa { DecodingKey::from_rsa_pem(pem) } else { DecodingKey::from_ec_pem(pem) };
    key.map_err(|e| TokenError::BadKey { file: file.to_string(), reason: format!("no PEM public key ({e})") })
}

impl TokenProvider for JwtTokens {
    fn assign(&self, _prefix: &str, _index: u64, user: &str, revision: u64) -> Result<String, Error> {
        self.sign(user, revision).map_err(|e| {
            tracing::debug!(user, error = %e, "failed to sign a JWT");
            if e.starts_with("auth: ") {
                Error::AuthUnmapped(e)
            } else {
                Error::Internal(format!("signing a JWT: {e}"))
            }
        })
    }

    fn index_of(&self, _token: &str) -> Option<u64> {
        Some(0)
    }

    fn user_of(&self, token: &str) -> Option<Holder> {
        match jsonwebtoken::decode::<Claims>(token, &self.verifying, &self.validation) {
            Ok(t) => Some(Holder { user: t.claims.username, revision: Some(t.claims.revision) }),
            Err(e) => {
                tracing::warn!(error = %e, "invalid JWT");
                None
            }
        }
    }

    fn invalidate_user(&self, _user: &str) {}

    fn invalidate_all(&self) {}

    fn retain_users(&self, _keep: &dyn Fn(&str) -> bool) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn claims(token: &str) -> serde_json::Value {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
        assert!(String::from_utf8(header).unwrap().starts_with(r#"{"alg":"#));
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
    }

    #[test]
    fn tokens_carry_etcds_claims_and_expire_without_leeway() {
        let dir = tempfile::tempdir().unwrap();
        for (alg, key) in [
            ("ES256", rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()),
            ("ES384", rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap()),
        ] {
            let priv_file = dir.path().join(format!("{alg}.key"));
            let pub_file = dir.path().join(format!("{alg}.pub"));
            std::fs::write(&priv_file, key.serialize_pem()).unwrap();
            std::fs::write(&pub_file, key.public_key_pem()).unwrap();
            let (priv_file, pub_file) = (priv_file.display().to_string(), pub_file.display().to_string());
            let both = JwtTokens::from_opts(&opts(&[
                ("sign-method", alg),
                ("priv-key", &priv_file),
                ("pub-key", &pub_file),
                ("ttl", "1s"),
            ]))
            .unwrap();
            let t = both.assign("", 9, "alice", 4).unwrap();
            let c = claims(&t);
            assert_eq!(c["username"], "alice");
            assert_eq!(c["revision"], 4);
            assert_eq!(c.as_object().unwrap().len(), 3, "{c}");
            assert_eq!(both.user_of(&t), Some(Holder { user: "alice".into(), revision: Some(4) }));
            let verify_only = JwtTokens::from_opts(&opts(&[("sign-method", alg), ("pub-key", &pub_file)])).unwrap();
            assert_eq!(verify_only.user_of(&t).map(|h| h.user).as_deref(), Some("alice"), "another member, same keys");
            assert_eq!(
                verify_only.assign("", 1, "alice", 1),
                Err(Error::AuthUnmapped("auth: token signing attempted with verify-only key".into()))
            );
            let only_priv = JwtTokens::from_opts(&opts(&[("sign-method", alg), ("priv-key", &priv_file)])).unwrap();
            assert!(only_priv.user_of(&t).is_some(), "verified with the private key's public half");
            let mut forged = t.clone();
            forged.replace_range(forged.len() - 4.., "AAAA");
            assert_eq!(both.user_of(&forged), None);
            assert_eq!(both.user_of("a.b.c"), None);
            std::thread::sleep(Duration::from_millis(2100));
            assert_eq!(both.user_of(&t), None, "expired");
        }
    }

    #[test]
    fn key_mismatch_wrong_family_and_hmac() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let a = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let b = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let a_priv = write("a.key", a.serialize_pem());
        let b_pub = write("b.pub", b.public_key_pem());
        let e = JwtTokens::from_opts(&opts(&[("sign-method", "ES256"), ("priv-key", &a_priv), ("pub-key", &b_pub)]));
        assert!(matches!(e, Err(TokenError::KeyMismatch { .. })));
        let e = JwtTokens::from_opts(&opts(&[("sign-method", "RS256"), ("priv-key", &a_priv)]));
        assert!(matches!(&e, Err(TokenError::BadKey { file, .. }) if *file == a_priv));
        let e = JwtTokens::from_opts(&opts(&[("sign-method", "ES384"), ("priv-key", &a_priv)]));
        assert!(matches!(&e, Err(TokenError::BadKey { .. })), "a P-256 key for ES384");
        let secret = write("secret", "s3cret".into());
        let h = JwtTokens::from_opts(&opts(&[("sign-method", "HS256"), ("priv-key", &secret)])).unwrap();
        let t = h.assign("", 1, "bob", 2).unwrap();
        assert_eq!(h.user_of(&t).map(|h| h.revision), Some(Some(2)));
        let other = write("other", "other".into());
        let h2 = JwtTokens::from_opts(&opts(&[("sign-method", "HS256"), ("priv-key", &other)])).unwrap();
        assert_eq!(h2.user_of(&t), None, "another secret");
        let e = JwtTokens::from_opts(&opts(&[("sign-method", "HS512"), ("pub-key", &b_pub)]));
        assert!(matches!(e, Err(TokenError::MissingKey { .. })));
    }
}
