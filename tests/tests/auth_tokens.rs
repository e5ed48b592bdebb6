//! Auth (issue 12, items 4 and 5): JWT tokens and the client certificate's Common Name as the user, each
//! test against etcd 3.4 and modkv. JWT sessions with RS256 (an openssl key) and ES256 (an rcgen key):
//! etcd's header and claims, an old-revision token refused on range and put but not on admin calls,
//! re-authentication, forged and expired tokens; a JWT made by one member used on another; bad
//! `--auth-token` options stopping the member with etcd's error; CN identity over mTLS.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use modkv_tests::cluster::*;
use modkv_tests::http::post_with_headers;
use modkv_tests::tls::*;
use modkv_tests::*;
use serde_json::{json, Value};

/// etcdctl's stderr without clientv3's own retry warnings: the `Error: …` line(s).
fn errors(out: &CtlOutput) -> String {
    out.stderr.lines().filter(|l| !l.contains("retrying of unary invoker")).collect::<Vec<_>>().join("\n")
}

/// Asserts an etcdctl run's exit code and the error it prints.
#[track_caller]
fn fails(out: CtlOutput, status: i32, error: &str) {
    assert_eq!((out.status, errors(&out).as_str()), (status, error), "{out:#?}");
}

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:apw";

/// Users root and alice (role reader: READ foo, READWRITE prefix /app/), auth enabled, through `ctl`.
fn setup(ctl: impl Fn(&[&str]) -> CtlOutput) {
    for (args, out) in [
        (vec!["user", "add", "root:rootpw"], "User root created\n"),
        (vec!["user", "add", "alice:apw"], "User alice created\n"),
        (vec!["role", "add", "reader"], "Role reader created\n"),
        (vec!["role", "grant-permission", "reader", "read", "foo"], "Role reader updated\n"),
        (vec!["role", "grant-permission", "reader", "readwrite", "--prefix", "/app/"], "Role reader updated\n"),
        (vec!["user", "grant-role", "alice", "reader"], "Role reader is granted to user alice\n"),
        (vec!["auth", "enable"], "Authentication Enabled\n"),
    ] {
        assert_eq!(ctl(&args).ok(), out, "{args:?}");
    }
}

/// POST `path` on the gateway with `token` (if any) in `Authorization`: status and JSON body.
fn gw(m: &Member, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = token.map(|t| ("Authorization", t)).into_iter().collect();
    let r = post_with_headers(&m.endpoint(), path, body, &headers);
    (r.status, r.json())
}

/// Base64url without padding, as JWTs use it.
fn b64url_decode(s: &str) -> Vec<u8> {
    let mut t: String = s
        .chars()
        .map(|c| {
            if c == '-' {
                '+'
            } else if c == '_' {
                '/'
            } else {
                c
            }
        })
        .collect();
    while t.len() % 4 != 0 {
        t.push('=');
    }
    b64decode(&t).unwrap_or_else(|| panic!("not base64url: {s}"))
}

fn b64url_encode(data: &[u8]) -> String {
    b64encode(data).trim_end_matches('=').replace('+', "-").replace('/', "_")
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A token from the gateway's authenticate, asserted to be a JWT with etcd's header and exactly etcd's
/// three claims; the token and its claims.
#[track_caller]
fn jwt(m: &Member, name: &str, password: &str, alg: &str) -> (String, Value) {
    let (st, j) = gw(m, "/v3/auth/authenticate", &format!(r#"{{"name":"{name}","password":"{password}"}}"#), None);
    assert_eq!(st, 200, "{j}");
    let t = j["token"].as_str().unwrap().to_string();
    let parts: Vec<&str> = t.split('.').collect();
    assert_eq!(parts.len(), 3, "{t}");
    let header: Value = serde_json::from_slice(&b64url_decode(parts[0])).unwrap();
    assert_eq!(header, json!({"alg": alg, "typ": "JWT"}), "{t}");
    let claims: Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
    let mut keys: Vec<&String> = claims.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["exp", "revision", "username"], "{claims}");
    assert_eq!(claims["username"], name, "{claims}");
    assert!(claims["revision"].as_u64().is_some_and(|r| r > 0), "{claims}");
    (t, claims)
}

/// Writes a key pair for `alg` into `dir`: RS256 with openssl (PKCS#8, as openssl 3 writes it), ES256
/// with rcgen (PKCS#8 P-256); the private and public key files.
fn key_files(dir: &Path, alg: &str) -> (String, String) {
    let (key, public) = (dir.join(format!("{alg}.key")), dir.join(format!("{alg}.pub")));
    match alg {
        "RS256" => {
            let run = |args: &[&str]| {
                let out = Command::new("openssl").args(args).output().expect("run openssl");
                assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            };
            let (k, p) = (key.display().to_string(), public.display().to_string());
            run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &k]);
            run(&["pkey", "-in", &k, "-pubout", "-out", &p]);
        }
        "ES256" => {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            std::fs::write(&key, pair.serialize_pem()).unwrap();
            std::fs::write(&public, pair.public_key_pem()).unwrap();
        }
        other => panic!("no keys for {other}"),
    }
    (key.display().to_string(), public.display().to_string())
}

/// `jwt,pub-key=…,priv-key=…,sign-method=<alg>` with keys written into `dir`, then `extra`.
fn jwt_opts(dir: &Path, alg: &str, extra: &str) -> String {
    let (key, public) = key_files(dir, alg);
    format!("jwt,pub-key={public},priv-key={key},sign-method={alg}{extra}")
}

/// A JWT session: etcdctl as alice within and outside her grant; the token's claims; an auth change makes
/// her token old on range and put (not root's on an admin call); a new one works; a forged one does not.
fn jwt_session(kind: Kind, alg: &str) {
    let dir = tempfile::tempdir().unwrap();
    // An unknown option is only warned about, as etcd.
    let opts = jwt_opts(dir.path(), alg, ",colour=blue");
    let s = Server::start(kind, ServerOpts::new().args(["--auth-token", &opts]));
    assert!(s.log().contains("unknown JWT options"), "{}", s.log_tail(40));
    setup(|args| s.etcdctl(args));
    assert_eq!(s.etcdctl(&[ROOT, "put", "foo", "bar"]).ok(), "OK\n");
    assert_eq!(s.etcdctl(&[ALICE, "get", "foo"]).ok(), "foo\nbar\n");
    assert_eq!(s.etcdctl(&[ALICE, "put", "/app/x", "1"]).ok(), "OK\n");
    fails(s.etcdctl(&[ALICE, "put", "foo", "x"]), 1, "Error: etcdserver: permission denied");
    fails(s.etcdctl(&["get", "foo"]), 1, "Error: etcdserver: user name is empty");

    let (alice, claims) = jwt(&s, "alice", "apw", alg);
    let exp = claims["exp"].as_i64().unwrap();
    assert!((now() + 290..=now() + 301).contains(&exp), "the default ttl is 5m: {claims}");
    let revision = claims["revision"].as_u64().unwrap();
    let (st, j) = gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&alice));
    assert_eq!((st, j["kvs"][0]["value"].as_str()), (200, Some("YmFy")), "{j}");
    let (root, _) = jwt(&s, "root", "rootpw", alg);

    // An auth change moves the auth revision: alice's token is old for range and put.
    assert_eq!(s.etcdctl(&[ROOT, "role", "grant-permission", "reader", "read", "bar"]).ok(), "Role reader updated\n");
    let old = "etcdserver: revision of auth store is old";
    let (st, j) = gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&alice));
    assert_eq!((st, &j["message"], &j["code"]), (400, &old.into(), &3.into()), "{j}");
    let (st, j) = gw(&s, "/v3/kv/put", r#"{"key":"L2FwcC94","value":"Mg=="}"#, Some(&alice));
    assert_eq!((st, &j["message"], &j["code"]), (400, &old.into(), &3.into()), "{j}");
    // Admin calls do not look at the token's revision (etcd's IsAdminPermitted).
    let (st, j) = gw(&s, "/v3/auth/user/list", "{}", Some(&root));
    assert_eq!((st, &j["users"]), (200, &json!(["alice", "root"])), "{j}");

    // Authenticating again gives a token at the new revision.
    let (alice, claims) = jwt(&s, "alice", "apw", alg);
    assert_eq!(claims["revision"].as_u64(), Some(revision + 1), "{claims}");
    let (st, j) = gw(&s, "/v3/kv/put", r#"{"key":"L2FwcC94","value":"Mg=="}"#, Some(&alice));
    assert_eq!(st, 200, "{j}");
    assert_eq!(s.etcdctl(&[ROOT, "get", "/app/x", "--print-value-only"]).ok(), "2\n");

    // Claims changed under alice's signature, or a signature that is not one: not a token.
    let parts: Vec<&str> = alice.split('.').collect();
    let claims_as_root = json!({"exp": exp, "revision": revision + 1, "username": "root"}).to_string();
    let forged = format!("{}.{}.{}", parts[0], b64url_encode(claims_as_root.as_bytes()), parts[2]);
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], b64url_encode(b"not a signature at all"));
    for t in [forged.as_str(), bad_sig.as_str(), "a.b.c"] {
        let (st, j) = gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(t));
        assert_eq!(
            (st, &j["message"], &j["code"]),
            (401, &"etcdserver: invalid auth token".into(), &16.into()),
            "{t}: {j}"
        );
    }
}

both_kinds! {
    /// A JWT session with RS256 keys made by openssl.
    fn jwt_session_rs256(kind) {
        jwt_session(kind, "RS256");
    }

    /// A JWT session with ES256 keys made by rcgen.
    fn jwt_session_es256(kind) {
        jwt_session(kind, "ES256");
    }

    /// `ttl=2s`: a JWT works until its `exp`, then is refused as invalid; a new one works.
    fn jwt_expires(kind) {
        let dir = tempfile::tempdir().unwrap();
        let opts = jwt_opts(dir.path(), "ES256", ",ttl=2s");
        let s = Server::start(kind, ServerOpts::new().args(["--auth-token", &opts]));
        setup(|args| s.etcdctl(args));
        let (t, claims) = jwt(&s, "alice", "apw", "ES256");
        let exp = claims["exp"].as_i64().unwrap();
        assert!((now() + 1..=now() + 2).contains(&exp), "{claims}");
        assert_eq!(gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&t)).0, 200);
        // Past `exp` (whole seconds) by more than a second.
        while now() <= exp + 1 {
            std::thread::sleep(Duration::from_millis(200));
        }
        let (st, j) = gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&t));
        assert_eq!((st, &j["message"], &j["code"]), (401, &"etcdserver: invalid auth token".into(), &16.into()), "{j}");
        let (t, _) = jwt(&s, "alice", "apw", "ES256");
        assert_eq!(gw(&s, "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&t)).0, 200);
        // etcdctl authenticates for each run, so it gets a fresh token.
        assert_eq!(s.etcdctl(&[ALICE, "put", "/app/k", "v"]).ok(), "OK\n");
    }

    /// Three members with the same keys: a JWT made by one is good on the others.
    fn jwt_from_one_member_used_on_another(kind) {
        let dir = tempfile::tempdir().unwrap();
        let opts = jwt_opts(dir.path(), "RS256", "");
        let mut c = Cluster::start(kind, 3, &["--auth-token", &opts]);
        c.wait_leader(Duration::from_secs(20));
        let m = c.members();
        setup(|args| m[0].etcdctl(args));
        let (t, _) = jwt(&m[1], "alice", "apw", "RS256");
        let (st, j) = gw(&m[2], "/v3/kv/put", r#"{"key":"L2FwcC9r","value":"dg=="}"#, Some(&t));
        assert_eq!(st, 200, "{j}");
        let (st, j) = gw(&m[0], "/v3/kv/range", r#"{"key":"L2FwcC9r"}"#, Some(&t));
        assert_eq!((st, j["kvs"][0]["value"].as_str()), (200, Some("dg==")), "{j}");
        assert_eq!(m[2].etcdctl(&[ALICE, "get", "/app/k", "--print-value-only"]).ok(), "v\n");
    }

    /// Bad `--auth-token` options stop the member at startup with etcd's error (exit code 1).
    fn bad_auth_token_options_stop_the_member(kind) {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = key_files(dir.path(), "ES256");
        let invalid = "auth: invalid auth options";
        let cases = [
            ("jwt,foo".to_string(), invalid),
            ("jwt,sign-method=ES256,sign-method=ES256".to_string(), invalid),
            ("bogus".to_string(), invalid),
            (format!("jwt,sign-method=XX256,priv-key={key}"), invalid),
            (format!("jwt,sign-method=ES256,priv-key={key},ttl=5"), invalid),
            ("jwt,sign-method=ES256,priv-key=/nonexistent/jwt.key".to_string(), "/nonexistent/jwt.key"),
            ("jwt,sign-method=ES256".to_string(), "auth: missing key data"),
        ];
        for (i, (opt, error)) in cases.iter().enumerate() {
            let data = dir.path().join(format!("m{i}.data"));
            let mut args = standard_args("m", &data, free_port(), free_port());
            args.extend(["--auth-token".to_string(), opt.clone()]);
            let out = run_to_exit(kind, &args, Duration::from_secs(20));
            assert_eq!(out.code, Some(1), "{opt}: {out:#?}");
            assert!(out.stderr.contains(error), "{opt}: expected {error:?} in {out:#?}");
        }
    }
}

/// A CA, a server certificate (SAN 127.0.0.1, CN `server`) and one client certificate per Common Name
/// (`<cn>.pem` / `<cn>.key`).
struct CnPki {
    dir: tempfile::TempDir,
}

impl CnPki {
    fn generate(cns: &[&str]) -> CnPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose as Eku, IsCa, Issuer, KeyPair,
            KeyUsagePurpose as Ku,
        };
        let dir = tempfile::Builder::new().prefix("modkv-test-cn-").tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "cn test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign, Ku::DigitalSignature];
        let ca_key = KeyPair::generate().unwrap();
        write("ca.pem", ca.self_signed(&ca_key).unwrap().pem());
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |name: &str, sans: Vec<String>, usages: Vec<Eku>| {
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            p.key_usages = vec![Ku::DigitalSignature, Ku::KeyEncipherment];
            p.extended_key_usages = usages;
            let key = KeyPair::generate().unwrap();
            write(&format!("{name}.pem"), p.signed_by(&key, &issuer).unwrap().pem());
            write(&format!("{name}.key"), key.serialize_pem());
        };
        leaf("server", vec!["127.0.0.1".into(), "localhost".into()], vec![Eku::ServerAuth, Eku::ClientAuth]);
        for cn in cns {
            leaf(cn, Vec::new(), vec![Eku::ClientAuth]);
        }
        CnPki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// etcdctl's TLS flags presenting the certificate of `cn`.
    fn ctl(&self, cn: &str) -> Vec<String> {
        let (ca, cert, key) = (self.path("ca.pem"), self.path(&format!("{cn}.pem")), self.path(&format!("{cn}.key")));
        vec!["--cacert".into(), ca, "--cert".into(), cert, "--key".into(), key]
    }
}

both_kinds! {
    /// `--client-cert-auth` with auth on: a request without a token is served as the user its client
    /// certificate names; a token wins over the certificate; a CN that is no user gets etcd's errors; the
    /// JSON gateway never takes the certificate's CN as the user.
    fn cn_identity_over_mtls(kind) {
        let pki = CnPki::generate(&["root", "carol", "nobody"]);
        let args = [
            "--cert-file", &pki.path("server.pem"), "--key-file", &pki.path("server.key"),
            "--trusted-ca-file", &pki.path("ca.pem"), "--client-cert-auth",
        ];
        let s = start_https(kind, ServerOpts::new().args(args), false, &pki.ctl("root"));
        let as_cn = |cn: &str, args: &[&str]| etcdctl_tls(&s, &pki.ctl(cn), args);
        for (args, out) in [
            (vec!["user", "add", "root:rootpw"], "User root created\n"),
            (vec!["user", "add", "carol:cpw"], "User carol created\n"),
            (vec!["role", "add", "ro"], "Role ro created\n"),
            (vec!["role", "grant-permission", "ro", "read", "foo"], "Role ro updated\n"),
            (vec!["user", "grant-role", "carol", "ro"], "Role ro is granted to user carol\n"),
            (vec!["auth", "enable"], "Authentication Enabled\n"),
        ] {
            assert_eq!(as_cn("nobody", &args).ok(), out, "{args:?}");
        }
        // The root certificate is root: writes and admin calls without a password.
        assert_eq!(as_cn("root", &["put", "foo", "bar"]).ok(), "OK\n");
        assert_eq!(as_cn("root", &["user", "list"]).ok(), "carol\nroot\n");
        // carol (read-only) reads, and may not write.
        assert_eq!(as_cn("carol", &["get", "foo"]).ok(), "foo\nbar\n");
        fails(as_cn("carol", &["put", "foo", "x"]), 1, "Error: etcdserver: permission denied");
        fails(as_cn("carol", &["get", "other"]), 1, "Error: etcdserver: permission denied");
        fails(as_cn("carol", &["user", "list"]), 1, "Error: etcdserver: permission denied");
        // A token wins over the certificate.
        assert_eq!(as_cn("carol", &[ROOT, "put", "foo", "baz"]).ok(), "OK\n");
        fails(as_cn("root", &["--user=carol:cpw", "put", "foo", "x"]), 1, "Error: etcdserver: permission denied");
        // A CN that is no user.
        fails(as_cn("nobody", &["get", "foo"]), 1, "Error: etcdserver: permission denied");
        fails(as_cn("nobody", &["user", "list"]), 1, "Error: etcdserver: user name not found");
        // The gateway does not serve a client whose certificate has a CN while auth is on (etcd's
        // accessController), whatever the path, `/v3beta/` and authenticate included; other paths work.
        let (ca, cert, key) = (pki.path("ca.pem"), pki.path("root.pem"), pki.path("root.key"));
        let tls = ["--http1.1", "--cacert", &ca, "--cert", &cert, "--key", &key, "-w", "\n%{http_code}"];
        let refused = "CommonName of client sending a request against gateway will be ignored and not used as expected\n\n400";
        for path in ["/v3/kv/range", "/v3beta/kv/range", "/v3/auth/authenticate"] {
            let url = format!("{}{path}", https_endpoint(&s));
            let out = curl(&[&tls[..], &["-X", "POST", "-d", r#"{"key":"Zm9v"}"#, &url]].concat());
            assert_eq!(out.ok(), refused, "{path}");
        }
        let health = curl(&[&tls[..], &[&format!("{}/health", https_endpoint(&s))]].concat());
        assert!(health.ok().ends_with("\n200"), "{health:#?}");
        // With auth off the certificate names nobody and everything is allowed, the gateway included.
        assert_eq!(as_cn("root", &["auth", "disable"]).ok(), "Authentication Disabled\n");
        assert_eq!(as_cn("carol", &["put", "foo", "x"]).ok(), "OK\n");
        let url = format!("{}/v3/kv/range", https_endpoint(&s));
        let out = curl(&[&tls[..], &["-X", "POST", "-d", r#"{"key":"Zm9v"}"#, &url]].concat());
        let body = out.ok().strip_suffix("\n200").unwrap_or_else(|| panic!("{out:#?}")).to_string();
        assert_eq!(parse_json(&body)["kvs"][0]["value"], "eA==", "{body}");
    }
}
