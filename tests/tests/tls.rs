//! TLS: `https://` client and peer URLs with certificates from a CA made in the test (rcgen),
//! client certificate authentication, `--auto-tls`, and startup errors for bad TLS settings.
//!
//! Every test also runs against etcd 3.4, which fixes the expectations (including etcdctl's own
//! quirks, e.g. `--insecure-skip-tls-verify` needing `--insecure-transport=false`).

use std::time::Duration;

use modkv_tests::tls::*;
use modkv_tests::*;

/// etcdctl timeouts for calls that are expected to fail (a refused handshake ends in a deadline).
const FAST_FAIL: [&str; 4] = ["--dial-timeout", "1s", "--command-timeout", "2s"];

fn with(flags: &[String], extra: &[&str]) -> Vec<String> {
    flags.iter().cloned().chain(extra.iter().map(|s| s.to_string())).collect()
}

/// A put / get / endpoint health / endpoint status session over https with `ctl` flags.
#[track_caller]
fn etcdctl_session(s: &Server, ctl: &[String]) {
    assert_eq!(etcdctl_tls(s, ctl, &["put", "foo", "bar"]).ok(), "OK\n");
    assert_eq!(etcdctl_tls(s, ctl, &["get", "foo"]).ok(), "foo\nbar\n");

    let out = etcdctl_tls(s, ctl, &["endpoint", "health"]);
    // etcdctl 3.4 prints the health line on stderr.
    assert_eq!(out.ok(), "");
    let prefix = format!("{} is healthy: successfully committed proposal: took = ", https_endpoint(s));
    assert!(out.stderr.starts_with(&prefix) && out.stderr.lines().count() == 1, "{out:#?}");

    let line = etcdctl_tls(s, ctl, &["endpoint", "status"]).ok().to_string();
    let fields: Vec<&str> = line.trim_end_matches('\n').split(", ").collect();
    assert_eq!(fields.len(), 10, "{line:?}");
    assert_eq!((fields[0], fields[4], fields[5], fields[9]), (https_endpoint(s).as_str(), "true", "false", ""));
    assert!(fields[2].starts_with("3.4."), "{line:?}");
    let status = etcdctl_tls(s, ctl, &["-w", "json", "endpoint", "status"]).json();
    assert_eq!(status[0]["Endpoint"], https_endpoint(s));
}

/// etcdctl failing because the TLS handshake is refused: what etcdctl 3.4 prints then.
#[track_caller]
fn assert_refused(out: &CtlOutput) {
    assert_eq!((out.status, out.stdout.as_str()), (1, ""), "{out:#?}");
    assert_eq!(out.error_lines(), ["Error: context deadline exceeded"], "{out:#?}");
}

/// `--cert <file> --key <file>` (etcdctl and curl alike) with the client certificate from another CA.
fn rogue_cert(pki: &Pki) -> [String; 4] {
    ["--cert".into(), pki.path("rogue-client.pem"), "--key".into(), pki.path("rogue-client.key")]
}

/// `curl <args> <url>`, asserting success; returns the body.
#[track_caller]
fn curl_ok(args: &[&str], url: &str) -> String {
    let mut all = args.to_vec();
    all.push(url);
    curl(&all).ok().to_string()
}

/// `curl <args> <url>`, asserting that it fails (TLS refused), without a body.
#[track_caller]
fn curl_refused(args: &[&str], url: &str) {
    let mut all = args.to_vec();
    all.push(url);
    let out = curl(&all);
    assert!(out.status != 0 && out.stdout.is_empty(), "curl should have been refused: {out:#?}");
}

both_kinds! {
    /// etcdctl and curl over https, the server certificate checked against the test CA.
    fn etcdctl_over_https(kind) {
        let pki = Pki::generate();
        let s = start_https(kind, ServerOpts::new().args(pki.server_args()), false, &pki.ctl_ca());
        // A client that connects and never starts its handshake holds up nobody else.
        let _silent = std::net::TcpStream::connect(("127.0.0.1", s.client_port)).unwrap();
        etcdctl_session(&s, &pki.ctl_ca());
        // Without --client-cert-auth a client certificate is not needed, and does no harm.
        assert_eq!(etcdctl_tls(&s, &pki.ctl_client(), &["get", "foo", "--print-value-only"]).ok(), "bar\n");

        // The server certificate is not trusted without the CA (system roots only), nor by another CA.
        assert_refused(&etcdctl_tls(&s, &[], &[FAST_FAIL.as_slice(), &["get", "foo"]].concat()));
        let out = etcdctl_tls(
            &s,
            &["--cacert".to_string(), pki.path("rogue-client.pem")],
            &[FAST_FAIL.as_slice(), &["get", "foo"]].concat(),
        );
        assert_refused(&out);

        // HTTP over TLS on the same port: /health and /version, HTTP/1.1 and HTTP/2.
        let ca = pki.path("ca.pem");
        let base = https_endpoint(&s);
        let health = curl_ok(&["--cacert", &ca], &format!("{base}/health"));
        assert_eq!(parse_json(&health), json!({"health": "true"}), "{health}");
        let version = parse_json(&curl_ok(&["--cacert", &ca, "--http1.1"], &format!("{base}/version")));
        assert_eq!(keys_of(&version), ["etcdcluster", "etcdserver"]);
        assert!(version["etcdserver"].as_str().unwrap().starts_with("3.4."), "{version}");
        for (flag, expected) in [("--http1.1", "1.1"), ("--http2", "2")] {
            let args = ["--cacert", &ca, flag, "-o", "/dev/null", "-w", "%{http_code} %{http_version}"];
            assert_eq!(curl_ok(&args, &format!("{base}/version")), format!("200 {expected}"));
        }
        // Without the CA, curl refuses the server.
        curl_refused(&[], &format!("{base}/health"));

        // A client that sends an IP address as SNI (grpc-js does) is served, without a warning each time.
        for _ in 0..3 {
            let out = std::process::Command::new("openssl")
                .args(["s_client", "-connect", &format!("127.0.0.1:{}", s.client_port), "-servername", "127.0.0.1"])
                .args(["-CAfile", &ca])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("openssl s_client");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
        }
        if kind == Kind::Modkv {
            let log = s.log();
            assert!(!log.contains("SNI"), "{log}");
        }
    }

    /// The certificate and key files are read again for new connections (etcd reads them for every
    /// handshake): replaced by a pair from another CA, new clients see the new certificate, without a
    /// restart.
    fn certificates_rotate_without_restart(kind) {
        let (old, new) = (Pki::generate(), Pki::generate());
        let files = tempfile::tempdir().unwrap();
        let (cert, key) = (files.path().join("server.pem"), files.path().join("server.key"));
        let install = |pki: &Pki| {
            // As an operator's tooling does it: each file replaced whole, the key first.
            for (from, to) in [("server.key", &key), ("server.pem", &cert)] {
                let tmp = to.with_extension("tmp");
                std::fs::copy(pki.path(from), &tmp).unwrap();
                std::fs::rename(&tmp, to).unwrap();
            }
        };
        install(&old);
        let args = ["--cert-file".to_string(), cert.display().to_string(), "--key-file".into(), key.display().to_string()];
        let s = start_https(kind, ServerOpts::new().args(args), false, &old.ctl_ca());
        assert_eq!(etcdctl_tls(&s, &old.ctl_ca(), &["put", "k", "v"]).ok(), "OK\n");
        assert_refused(&etcdctl_tls(&s, &new.ctl_ca(), &[FAST_FAIL.as_slice(), &["get", "k"]].concat()));

        // The modification time has a granularity: make sure the new files look changed.
        std::thread::sleep(std::time::Duration::from_millis(20));
        install(&new);
        assert_eq!(etcdctl_tls(&s, &new.ctl_ca(), &["get", "k", "--print-value-only"]).ok(), "v\n");
        assert_refused(&etcdctl_tls(&s, &old.ctl_ca(), &[FAST_FAIL.as_slice(), &["get", "k"]].concat()));
    }

    /// --client-cert-auth with --trusted-ca-file: only clients with a certificate from the CA get in.
    fn client_cert_auth(kind) {
        let pki = Pki::generate();
        let args = with(&pki.server_args(), &["--client-cert-auth", "--trusted-ca-file", &pki.path("ca.pem")]);
        let s = start_https(kind, ServerOpts::new().args(args), false, &pki.ctl_client());
        etcdctl_session(&s, &pki.ctl_client());

        // No client certificate, or one from another CA: the handshake is refused.
        assert_refused(&etcdctl_tls(&s, &pki.ctl_ca(), &[FAST_FAIL.as_slice(), &["get", "foo"]].concat()));
        let rogue: Vec<String> = pki.ctl_ca().into_iter().chain(rogue_cert(&pki)).collect();
        assert_refused(&etcdctl_tls(&s, &rogue, &[FAST_FAIL.as_slice(), &["put", "foo", "evil"]].concat()));
        let out = etcdctl_tls(&s, &pki.ctl_ca(), &[FAST_FAIL.as_slice(), &["endpoint", "health"]].concat());
        assert_eq!(out.status, 1, "{out:#?}");
        let unhealthy = "is unhealthy: failed to commit proposal: context deadline exceeded";
        assert!(out.stderr.contains(&format!("{} {unhealthy}", https_endpoint(&s))), "{out:#?}");
        assert_eq!(etcdctl_tls(&s, &pki.ctl_client(), &["get", "foo", "--print-value-only"]).ok(), "bar\n");

        // curl likewise.
        let (ca, cert, key) = (pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key"));
        let health = format!("{}/health", https_endpoint(&s));
        curl_refused(&["--cacert", &ca], &health);
        let rogue = rogue_cert(&pki);
        let mut args = vec!["--cacert", &ca];
        args.extend(rogue.iter().map(String::as_str));
        curl_refused(&args, &health);
        let body = curl_ok(&["--cacert", &ca, "--cert", &cert, "--key", &key], &health);
        assert_eq!(parse_json(&body), json!({"health": "true"}));
    }

    /// As in etcd, --trusted-ca-file alone already requires client certificates.
    fn trusted_ca_alone_requires_client_certs(kind) {
        let pki = Pki::generate();
        let args = with(&pki.server_args(), &["--trusted-ca-file", &pki.path("ca.pem")]);
        let s = start_https(kind, ServerOpts::new().args(args), false, &pki.ctl_client());
        assert_eq!(etcdctl_tls(&s, &pki.ctl_client(), &["put", "k", "v"]).ok(), "OK\n");
        assert_refused(&etcdctl_tls(&s, &pki.ctl_ca(), &[FAST_FAIL.as_slice(), &["get", "k"]].concat()));
    }

    /// --auto-tls: a self-signed certificate in <data-dir>/fixtures/client; clients skip verification.
    fn auto_tls(kind) {
        let s = start_https(kind, ServerOpts::new().arg("--auto-tls"), false, &ctl_insecure());
        assert_eq!(etcdctl_tls(&s, &ctl_insecure(), &["put", "foo", "bar"]).ok(), "OK\n");
        assert_eq!(etcdctl_tls(&s, &ctl_insecure(), &["get", "foo"]).ok(), "foo\nbar\n");
        let fixtures = s.data_dir().join("fixtures").join("client");
        for file in ["cert.pem", "key.pem"] {
            assert!(fixtures.join(file).is_file(), "{} is missing", fixtures.join(file).display());
        }
        // Verifying it against some CA fails: it is self-signed.
        let pki = Pki::generate();
        assert_refused(&etcdctl_tls(&s, &pki.ctl_ca(), &[FAST_FAIL.as_slice(), &["get", "foo"]].concat()));
        // The generated certificate does verify as itself (its SAN has 127.0.0.1).
        let own = vec!["--cacert".to_string(), fixtures.join("cert.pem").display().to_string()];
        assert_eq!(etcdctl_tls(&s, &own, &["get", "foo", "--print-value-only"]).ok(), "bar\n");
        let body = curl_ok(&["-k"], &format!("{}/health", https_endpoint(&s)));
        assert_eq!(parse_json(&body), json!({"health": "true"}));
    }

    /// https peer URLs: the peer listener speaks TLS with the peer certificate, and with
    /// --peer-client-cert-auth refuses peers without a certificate from --peer-trusted-ca-file.
    fn peer_tls(kind) {
        let pki = Pki::generate();
        let mut args = pki.server_args();
        args.extend(pki.peer_args());
        args.extend(["--peer-client-cert-auth".to_string(), "--peer-trusted-ca-file".into(), pki.path("ca.pem")]);
        let s = start_https(kind, ServerOpts::new().args(args), true, &pki.ctl_ca());
        assert_eq!(etcdctl_tls(&s, &pki.ctl_ca(), &["put", "k", "v"]).ok(), "OK\n");
        let ml = etcdctl_tls(&s, &pki.ctl_ca(), &["-w", "json", "member", "list"]).json();
        assert_eq!(ml["members"][0]["peerURLs"], json!([https_peer_url(&s)]));

        let (ca, cert, key) = (pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key"));
        let root = format!("{}/", https_peer_url(&s));
        let with_cert = ["--http1.1", "--cacert", &ca, "--cert", &cert, "--key", &key];
        assert_eq!(curl_ok(&with_cert, &root), "404 page not found\n");
        curl_refused(&["--http1.1", "--cacert", &ca], &root);
        let rogue = rogue_cert(&pki);
        let mut args = vec!["--http1.1", "--cacert", &ca];
        args.extend(rogue.iter().map(String::as_str));
        curl_refused(&args, &root);
    }

    /// --peer-auto-tls: the peer listener serves a generated certificate from <data-dir>/fixtures/peer.
    fn peer_auto_tls(kind) {
        let s = start_https(kind, ServerOpts::new().args(["--auto-tls", "--peer-auto-tls"]), true, &ctl_insecure());
        assert!(s.data_dir().join("fixtures/peer/cert.pem").is_file());
        let root = format!("{}/", https_peer_url(&s));
        assert_eq!(curl_ok(&["--http1.1", "-k"], &root), "404 page not found\n");
        curl_refused(&["--http1.1"], &root);
    }

    /// Bad TLS settings stop the server at startup with one line naming the problem.
    fn bad_tls_settings(kind) {
        let pki = Pki::generate();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem").display().to_string();
        let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
        let run = |case: usize, peer_https: bool, extra: &[&str], keywords: &[&str]| {
            let (client_port, peer_port) = (free_port(), free_port());
            let data = dir.path().join(format!("data{case}"));
            let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            let args = https_server_args("node1", &data, client_port, peer_port, peer_https, &extra);
            let keywords: Vec<String> = keywords
                .iter()
                .map(|k| k.replace("{client}", &client_port.to_string()).replace("{peer}", &peer_port.to_string()))
                .collect();
            expect_startup_error(kind, &args, &keywords);
        };
        // etcd's own wording for https URLs without certificates.
        let no_client_cert = concat!(
            "TLS key/cert (--cert-file, --key-file) must be provided ",
            "for client url https://127.0.0.1:{client} with HTTPS scheme"
        );
        run(0, false, &[], &[no_client_cert]);
        let no_peer_cert = "cannot listen on TLS for 127.0.0.1:{peer}: KeyFile and CertFile are not presented";
        let (cert_key, stray) = (["--cert-file", &cert, "--key-file", &key], pki.path("stray.key"));
        run(1, true, &cert_key, &[no_peer_cert]);
        run(2, false, &["--cert-file", &missing, "--key-file", &key], &[&missing, "no such file or directory"]);
        run(3, false, &["--cert-file", &cert, "--key-file", &stray], &["private key does not match public key"]);
        let missing_ca = [&cert_key[..], &["--trusted-ca-file", &missing]].concat();
        run(4, false, &missing_ca, &[&missing, "no such file or directory"]);
        run(5, false, &["--cert-file", &cert], &["must both be present", "key: ,"]);
        // A key where the certificate belongs (etcd: "failed to find certificate PEM data").
        run(6, false, &["--cert-file", &key, "--key-file", &key], &["certificate"]);
    }
}

/// Runs the server with `args`, expecting a startup failure: non-zero exit, no panic, and a stderr
/// line containing every keyword (case-insensitively); for modkv that line is short.
#[track_caller]
fn expect_startup_error(kind: Kind, args: &[String], keywords: &[String]) {
    let out = run_to_exit(kind, args, Duration::from_secs(20));
    let show = || format!("{kind} {args:?}\n--- stdout ---\n{}\n--- stderr ---\n{}", out.stdout, out.stderr);
    assert!(!out.timed_out, "still running: {}", show());
    assert!(matches!(out.code, Some(c) if c != 0), "exit code {:?}, expected non-zero: {}", out.code, show());
    assert!(!out.stderr.contains("panicked"), "{}", show());
    let line = out.stderr.lines().find(|l| {
        let l = l.to_lowercase();
        keywords.iter().all(|k| l.contains(&k.to_lowercase()))
    });
    let Some(line) = line else { panic!("no stderr line mentions all of {keywords:?}: {}", show()) };
    if kind == Kind::Modkv {
        assert!(line.len() < 400, "error line too long: {line:?}");
        // Nothing was served: the TLS checks come before storage and listeners are used.
        assert!(!out.stderr.contains("serving client traffic"), "{}", show());
    }
}
