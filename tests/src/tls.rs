//! TLS helpers: a throwaway PKI made with rcgen, servers on `https://` URLs, and etcdctl / curl
//! over TLS.
//!
//! * [`Pki::generate`] — a CA, a server certificate (SAN 127.0.0.1 and localhost, usable as a
//!   peer certificate too), a client certificate signed by the CA, a client certificate signed
//!   by another CA, and a key that belongs to nothing.
//! * [`start_https`] — like [`Server::start`], but the client URLs (and optionally the peer
//!   URLs) are `https://`; readiness is checked (also after a restart) with etcdctl and the given
//!   TLS flags.
//! * [`https_endpoint`], [`etcdctl_tls`], [`curl`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{etcdctl_at, free_port, run_command, standard_args, CtlOutput, Kind, Server, ServerOpts};

/// How long a curl call may take.
pub const CURL_TIMEOUT: Duration = Duration::from_secs(20);

/// Certificates and keys in a temporary directory (PEM files).
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// Generates the files:
    ///
    /// * `ca.pem` — the trusted CA;
    /// * `server.pem` / `server.key` — signed by it, SAN `127.0.0.1` and `localhost`, usable for
    ///   server and client authentication (a member's peer certificate);
    /// * `client.pem` / `client.key` — a client certificate signed by the CA (no SAN);
    /// * `rogue-client.pem` / `rogue-client.key` — a client certificate from another CA;
    /// * `stray.key` — a key that matches no certificate.
    pub fn generate() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        let dir = tempfile::Builder::new().prefix("modkv-test-pki-").tempdir().expect("create tempdir");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).expect("write PEM");

        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages =
                vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            (cert, Issuer::new(params, key))
        };
        let leaf = |issuer: &Issuer<'_, KeyPair>, cn: &str, sans: &[&str], usages: Vec<ExtendedKeyUsagePurpose>| {
            let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            params.extended_key_usages = usages;
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };

        let (ca_cert, ca_issuer) = ca("modkv test CA");
        write("ca.pem", ca_cert.pem());
        let (cert, key) = leaf(
            &ca_issuer,
            "modkv test server",
            &["127.0.0.1", "localhost"],
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        );
        write("server.pem", cert);
        write("server.key", key);
        let (cert, key) = leaf(&ca_issuer, "modkv test client", &[], vec![ExtendedKeyUsagePurpose::ClientAuth]);
        write("client.pem", cert);
        write("client.key", key);

        let (_, rogue_issuer) = ca("some other CA");
        let (cert, key) = leaf(&rogue_issuer, "rogue client", &[], vec![ExtendedKeyUsagePurpose::ClientAuth]);
        write("rogue-client.pem", cert);
        write("rogue-client.key", key);
        write("stray.key", KeyPair::generate().unwrap().serialize_pem());
        Pki { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of one of the generated files, as a string for command lines.
    pub fn path(&self, name: &str) -> String {
        let p: PathBuf = self.dir.path().join(name);
        p.display().to_string()
    }

    /// `--cert-file server.pem --key-file server.key`.
    pub fn server_args(&self) -> Vec<String> {
        vec!["--cert-file".into(), self.path("server.pem"), "--key-file".into(), self.path("server.key")]
    }

    /// `--peer-cert-file server.pem --peer-key-file server.key`.
    pub fn peer_args(&self) -> Vec<String> {
        vec!["--peer-cert-file".into(), self.path("server.pem"), "--peer-key-file".into(), self.path("server.key")]
    }

    /// etcdctl flags trusting the CA, without a client certificate: `--cacert ca.pem`.
    pub fn ctl_ca(&self) -> Vec<String> {
        vec!["--cacert".into(), self.path("ca.pem")]
    }

    /// etcdctl flags trusting the CA and presenting the client certificate.
    pub fn ctl_client(&self) -> Vec<String> {
        vec![
            "--cacert".into(),
            self.path("ca.pem"),
            "--cert".into(),
            self.path("client.pem"),
            "--key".into(),
            self.path("client.key"),
        ]
    }
}

/// etcdctl flags for a server whose certificate is not to be verified (`--auto-tls`). etcdctl 3.4
/// only honours `--insecure-skip-tls-verify` together with `--insecure-transport=false`.
pub fn ctl_insecure() -> Vec<String> {
    vec!["--insecure-transport=false".into(), "--insecure-skip-tls-verify".into()]
}

/// `https://127.0.0.1:<client_port>`.
pub fn https_endpoint(server: &Server) -> String {
    format!("https://127.0.0.1:{}", server.client_port)
}

/// `https://127.0.0.1:<peer_port>`.
pub fn https_peer_url(server: &Server) -> String {
    format!("https://127.0.0.1:{}", server.peer_port)
}

/// The arguments that switch the standard single-member arguments to https client URLs (and https
/// peer URLs with `peer_https`); later arguments win, for etcd and modkv alike.
pub fn https_args(name: &str, client_port: u16, peer_port: u16, peer_https: bool) -> Vec<String> {
    let client = format!("https://127.0.0.1:{client_port}");
    let mut args = vec!["--listen-client-urls".to_string(), client.clone(), "--advertise-client-urls".into(), client];
    if peer_https {
        let peer = format!("https://127.0.0.1:{peer_port}");
        args.extend([
            "--listen-peer-urls".to_string(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer.clone(),
            "--initial-cluster".into(),
            format!("{name}={peer}"),
        ]);
    }
    args
}

/// Every argument of a server on https URLs with `extra` at the end (for [`crate::run_to_exit`]).
pub fn https_server_args(
    name: &str,
    data_dir: &Path,
    client_port: u16,
    peer_port: u16,
    peer_https: bool,
    extra: &[String],
) -> Vec<String> {
    let mut args = standard_args(name, data_dir, client_port, peer_port);
    args.extend(https_args(name, client_port, peer_port, peer_https));
    args.extend(extra.iter().cloned());
    args
}

/// Starts a single-member server whose client URLs are `https://` (peer URLs too with
/// `peer_https`), with `opts.args` (the TLS flags) after them, and waits until
/// `etcdctl <ready_ctl> endpoint health` succeeds. Panics with the log if it does not.
#[track_caller]
pub fn start_https(kind: Kind, opts: ServerOpts, peer_https: bool, ready_ctl: &[String]) -> Server {
    Server::start_retrying(kind, " over https", || {
        let (client_port, peer_port) = (free_port(), free_port());
        let https = https_args(&opts.name, client_port, peer_port, peer_https);
        let mut server = Server::unstarted(kind, opts.clone(), client_port, peer_port, https);
        server.probe = Some((https_endpoint(&server), ready_ctl.to_vec()));
        server.launch_or_panic();
        let ready = server.wait_ready();
        (server, ready)
    })
}

/// `etcdctl --endpoints https://127.0.0.1:<port> <tls...> <args...>`.
pub fn etcdctl_tls(server: &Server, tls: &[String], args: &[&str]) -> CtlOutput {
    let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    etcdctl_at(&https_endpoint(server), &all, None)
}

/// Runs `curl -sS <args>` (silent, errors on stderr) with a hard timeout.
pub fn curl(args: &[&str]) -> CtlOutput {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10"]).args(args);
    run_command(cmd, None, CURL_TIMEOUT)
}
