//! TLS for the client and peer listeners, with rustls (ring provider), following etcd 3.4.
//!
//! ```text
//!   --cert-file / --key-file           the listener's certificate chain and key (PEM)
//!   --trusted-ca-file                  CA for client certificates; setting it alone already
//!                                      requires one, as in etcd
//!   --client-cert-auth                 require a client certificate signed by the CA
//!   --auto-tls                         no cert/key given: a self-signed certificate is generated
//!                                      into <data-dir>/fixtures/client (reused if present)
//!   --peer-*                           the same for the peer side (<data-dir>/fixtures/peer)
//! ```
//!
//! The certificate and key files are read again when they change (`reload`), as etcd reads them for
//! every handshake, so certificates rotate without a restart; the CA file is read once.
//!
//! Only `https://` listen URLs use TLS; for `http://` URLs the files are ignored with etcd's warning.
//! An https URL with neither files nor auto TLS is rejected by [`crate::config`]. Everything here
//! runs once at startup, so a missing file, a key that does not match its certificate or a CA file
//! without certificates stops the member with one line naming the flag.
//!
//! As in etcd 3.4, `--auto-tls` replaces the whole TLS setup of its side: `--client-cert-auth` and
//! `--trusted-ca-file` are then ignored (with a warning), and the peer client side skips verifying
//! the (self-signed) certificates of other peers.
//!
//! Server configs offer ALPN `h2` and `http/1.1` (the client port serves gRPC and HTTP/1.1 on one
//! listener). The peer side is kept as a [`PeerTls`]: the server config for https peer listeners, the
//! client config for dialing https peer URLs (`raft::dial`), presenting this member's peer certificate.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio_rustls::TlsAcceptor;
use url::Url;

use crate::config::{Config, TlsFlags};

mod reload;
use reload::ReloadingCert;

/// How long a client gets to complete the TLS handshake before its connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Validity of an `--auto-tls` certificate (etcd: one year).
const AUTO_TLS_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// CA bundles tried, in order, when client certificates must be verified but no CA file is given
/// (Go then verifies against the system roots). `SSL_CERT_FILE` comes first.
const SYSTEM_CA_BUNDLES: &[&str] =
    &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

/// Why the TLS setup failed. Every variant displays as one line naming the flag and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {}: cannot read it: {source}", path.display())]
    Read { flag: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{flag} {}: {reason}", path.display())]
    Invalid { flag: &'static str, path: PathBuf, reason: String },
    #[error(
        "{key_flag} {} does not belong to {cert_flag} {}: tls: private key does not match public key",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert_flag: &'static str, cert: PathBuf, key_flag: &'static str, key: PathBuf },
    #[error("{flag}: cannot create a self-signed certificate in {}: {reason}", dir.display())]
    AutoTls { flag: &'static str, dir: PathBuf, reason: String },
    #[error("{0}")]
    Setup(String),
}

/// The flag names of one side, for messages.
#[derive(Clone, Copy)]
struct Side {
    name: &'static str,
    cert: &'static str,
    key: &'static str,
    ca: &'static str,
    client_cert_auth: &'static str,
    auto_tls: &'static str,
    listen: &'static str,
    fixtures: &'static str,
}

const CLIENT: Side = Side {
    name: "client",
    cert: "--cert-file",
    key: "--key-file",
    ca: "--trusted-ca-file",
    client_cert_auth: "--client-cert-auth",
    auto_tls: "--auto-tls",
    listen: "--listen-client-urls",
    fixtures: "client",
};

const PEER: Side = Side {
    name: "peer",
    cert: "--peer-cert-file",
    key: "--peer-key-file",
    ca: "--peer-trusted-ca-file",
    client_cert_auth: "--peer-client-cert-auth",
    auto_tls: "--peer-auto-tls",
    listen: "--listen-peer-urls",
    fixtures: "peer",
};

/// The TLS configurations of a member, built once at startup.
#[derive(Clone, Default)]
pub struct TlsConfigs {
    /// For the `https://` client listeners; `None` when every client URL is `http://`.
    pub client: Option<Arc<ServerConfig>>,
    /// For the peer side; `None` when no peer TLS is configured.
    pub peer: Option<PeerTls>,
}

/// Peer TLS, ready for the peer transport: the server side for `https://` peer listeners and the
/// client side for dialing other members (presenting this member's peer certificate).
#[derive(Clone)]
pub struct PeerTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

impl PeerTls {
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server.clone())
    }

    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.client.clone())
    }
}

impl TlsConfigs {
    /// Reads (or, with auto TLS, generates) the certificates `cfg` asks for. Call it after the data
    /// dir exists: auto TLS writes into `<data-dir>/fixtures`.
    pub fn build(cfg: &Config) -> Result<TlsConfigs, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let client_https = has_https(&cfg.listen_client_urls);
        warn_ignored_for_http(CLIENT, &cfg.client_tls, &cfg.listen_client_urls);
        let client = if client_https {
            let files = Files::resolve(CLIENT, &cfg.client_tls, &cfg.data_dir, &cfg.listen_client_urls)?;
            Some(Arc::new(files.server_config(&provider)?))
        } else {
            None
        };

        // The peer side is also needed without an https peer listener when peer certificates are
        // given: the peer transport presents them when it dials https peers (as etcd does).
        let peer_flags = &cfg.peer_tls;
        warn_ignored_for_http(PEER, peer_flags, &cfg.listen_peer_urls);
        let peer = if has_https(&cfg.listen_peer_urls) || !peer_flags.is_empty() || peer_flags.auto_tls {
            let files = Files::resolve(PEER, peer_flags, &cfg.data_dir, &cfg.listen_peer_urls)?;
            // One reloader serves both sides: the same files, read once per change.
            let cert = Arc::new(ReloadingCert::new(&files, &provider)?);
            let server = Arc::new(files.server_config_with(&provider, cert.clone())?);
            let client = Arc::new(files.client_config(&provider, cert)?);
            Some(PeerTls { server, client })
        } else {
            None
        };
        Ok(TlsConfigs { client, peer })
    }

    /// The acceptor for `https://` client listeners.
    pub fn client_acceptor(&self) -> Option<TlsAcceptor> {
        self.client.clone().map(TlsAcceptor::from)
    }

    /// The acceptor for `https://` peer listeners.
    pub fn peer_acceptor(&self) -> Option<TlsAcceptor> {
        self.peer.as_ref().map(PeerTls::acceptor)
    }
}

/// The acceptor a listener on `url` uses: `Some` only for `https://` URLs.
pub fn acceptor_for(url: &Url, acceptor: Option<&TlsAcceptor>) -> Option<TlsAcceptor> {
    (url.scheme() == "https").then(|| acceptor.cloned()).flatten()
}

fn has_https(urls: &[Url]) -> bool {
    urls.iter().any(|u| u.scheme() == "https")
}

/// etcd's warnings for `http://` listen URLs when TLS flags are given.
fn warn_ignored_for_http(side: Side, flags: &TlsFlags, urls: &[Url]) {
    for url in urls.iter().filter(|u| u.scheme() == "http") {
        let url = crate::config::url_string(url);
        if !flags.is_empty() {
            tracing::warn!(
                "the scheme of {} url {url} is HTTP while {} key/cert files are presented; ignored key/cert files",
                side.name,
                side.name
            );
        }
        if flags.client_cert_auth {
            tracing::warn!(
                "the scheme of {} url {url} is HTTP while client cert auth ({}) is enabled; \
                 ignored client cert auth for this url",
                side.name,
                side.client_cert_auth
            );
        }
    }
}

/// One side's files, resolved: the certificate and key, and how clients are verified.
#[derive(Clone)]
struct Files {
    side: Side,
    cert: PathBuf,
    key: PathBuf,
    /// Client certificates are required and verified against `ca` (or the system roots).
    require_client_cert: bool,
    ca: Option<PathBuf>,
    /// The certificate was generated by auto TLS.
    self_signed: bool,
}

impl Files {
    fn resolve(side: Side, flags: &TlsFlags, data_dir: &Path, listen: &[Url]) -> Result<Files, TlsError> {
        if flags.auto_tls && flags.is_empty() {
            let dir = data_dir.join("fixtures").join(side.fixtures);
            let (cert, key) = self_cert(side, &dir, listen)?;
            if flags.requires_client_cert() {
                tracing::warn!(
                    "{} and {} are ignored with {}, as in etcd: {} clients are not asked for a certificate",
                    side.client_cert_auth,
                    side.ca,
                    side.auto_tls,
                    side.name
                );
            }
            return Ok(Files { side, cert, key, require_client_cert: false, ca: None, self_signed: true });
        }
        if flags.auto_tls {
            tracing::warn!("ignoring {} since {} and {} are given", side.auto_tls, side.cert, side.key);
        }
        let (Some(cert), Some(key)) = (&flags.cert_file, &flags.key_file) else {
            // The configuration checks this for https listeners; the peer side can get here when
            // only one of the two files is given with http:// peer URLs.
            return Err(TlsError::Setup(format!(
                "{} and {} must both be present [key: {}, cert: {}]",
                side.cert,
                side.key,
                flags.key_file.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default(),
                flags.cert_file.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default(),
            )));
        };
        Ok(Files {
            side,
            cert: cert.clone(),
            key: key.clone(),
            require_client_cert: flags.requires_client_cert(),
            ca: flags.trusted_ca_file.clone(),
            self_signed: false,
        })
    }

    /// The certificate chain and its key, checked to belong together.
    fn certified_key(&self, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
        let chain = read_certs(self.side.cert, &self.cert)?;
        let der = read_key(self.side.key, &self.key)?;
        let signing_key = provider.key_provider.load_private_key(der).map_err(|e| TlsError::Invalid {
            flag: self.side.key,
            path: self.key.clone(),
            reason: format!("unusable private key: {e}"),
        })?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(TlsError::KeyMismatch {
                    cert_flag: self.side.cert,
                    cert: self.cert.clone(),
                    key_flag: self.side.key,
                    key: self.key.clone(),
                })
            }
            Err(e) => {
                return Err(TlsError::Invalid {
                    flag: self.side.cert,
                    path: self.cert.clone(),
                    reason: format!("invalid certificate: {e}"),
                })
            }
        }
        Ok(Arc::new(certified))
    }

    /// Roots for verifying the other end: the CA file, else the system's CA bundle.
    fn roots(&self) -> Result<Option<RootCertStore>, TlsError> {
        match &self.ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(self.side.ca, path)? {
                    roots.add(cert).map_err(|e| TlsError::Invalid {
                        flag: self.side.ca,
                        path: path.clone(),
                        reason: format!("not a usable CA certificate: {e}"),
                    })?;
                }
                Ok(Some(roots))
            }
            None => Ok(system_roots()),
        }
    }

    fn server_config(&self, provider: &Arc<CryptoProvider>) -> Result<ServerConfig, TlsError> {
        self.server_config_with(provider, Arc::new(ReloadingCert::new(self, provider)?))
    }

    /// The server side, presenting the pair `certified` resolves.
    fn server_config_with(
        &self,
        provider: &Arc<CryptoProvider>,
        certified: Arc<ReloadingCert>,
    ) -> Result<ServerConfig, TlsError> {
        let setup = |e: rustls::Error| TlsError::Setup(format!("{} TLS: {e}", self.side.name));
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .map_err(setup)?;
        let builder = if self.require_client_cert {
            let roots = self.roots()?.filter(|r| !r.is_empty()).ok_or_else(|| {
                TlsError::Setup(format!(
                    "{} needs {}: no CA file is given and no system CA certificates were found",
                    self.side.client_cert_auth, self.side.ca
                ))
            })?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::Setup(format!("{} TLS: client certificate verifier: {e}", self.side.name)))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_cert_resolver(certified);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tracing::info!(
            side = self.side.name,
            cert = %self.cert.display(),
            key = %self.key.display(),
            trusted_ca = %self.ca.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default(),
            client_cert_auth = self.require_client_cert,
            auto_tls = self.self_signed,
            "TLS configured"
        );
        Ok(config)
    }

    /// The client side (peers dialing peers): presents this side's certificate; verifies the
    /// server against the CA file (else the system roots), or not at all for auto TLS (etcd's
    /// `InsecureSkipVerify` for self-signed certificates). ALPN is left to the transport.
    fn client_config(
        &self,
        provider: &Arc<CryptoProvider>,
        certified: Arc<ReloadingCert>,
    ) -> Result<ClientConfig, TlsError> {
        let setup = |e: rustls::Error| TlsError::Setup(format!("{} TLS: {e}", self.side.name));
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .map_err(setup)?;
        let builder = if self.self_signed {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(SkipServerVerification(provider.clone())))
        } else {
            builder.with_root_certificates(self.roots()?.unwrap_or_else(RootCertStore::empty))
        };
        Ok(builder.with_client_cert_resolver(certified))
    }
}

fn read_file(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { flag, path: path.to_owned(), source })
}

/// All `CERTIFICATE` blocks of a PEM file (at least one).
fn read_certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(flag, path)?;
    let invalid = |reason: String| TlsError::Invalid { flag, path: path.to_owned(), reason };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no certificate found (expected a PEM \"CERTIFICATE\" block)".to_owned()));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, SEC1 EC or PKCS#1 RSA) of a PEM file.
fn read_key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(flag, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Invalid {
        flag,
        path: path.to_owned(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key found (expected a PEM \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\" block)"
                    .to_owned()
            }
            e => format!("not a PEM private key file: {e}"),
        },
    })
}

/// The system's CA certificates (`SSL_CERT_FILE`, else the usual bundle paths); `None` if none found.
fn system_roots() -> Option<RootCertStore> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let path = env.into_iter().chain(SYSTEM_CA_BUNDLES.iter().map(PathBuf::from)).find(|p| p.is_file())?;
    let pem = std::fs::read(&path).ok()?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) =
        roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok));
    (added > 0).then_some(roots)
}

/// etcd's `transport.SelfCert`: reuse `<dir>/cert.pem` and `<dir>/key.pem` if both exist, else
/// generate an ECDSA certificate for the listen URLs' hosts (IP addresses as IP SANs, names as DNS
/// SANs), valid for a year.
fn self_cert(side: Side, dir: &Path, listen: &[Url]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.is_file() && key_path.is_file() {
        tracing::info!(side = side.name, dir = %dir.display(), "auto TLS: using the existing self-signed certificate");
        return Ok((cert_path, key_path));
    }
    let fail = |reason: String| TlsError::AutoTls { flag: side.auto_tls, dir: dir.to_owned(), reason };
    create_private_dir(dir).map_err(|e| fail(format!("cannot create the directory: {e}")))?;

    let mut params = rcgen::CertificateParams::default();
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::OrganizationName, "modkv");
    params.distinguished_name = name;
    let now = SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + AUTO_TLS_VALIDITY).into();
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    if side.name == PEER.name {
        // Peers also present it when dialing other peers.
        params.extended_key_usages.push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    }
    for url in listen {
        let Some(host) = url.host_str() else { continue };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(
                host.to_owned()
                    .try_into()
                    .map_err(|e| fail(format!("{} host {host:?} is not a DNS name: {e}", side.listen)))?,
            ),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail(format!("cannot generate a key: {e}")))?;
    let cert = params.self_signed(&key_pair).map_err(|e| fail(format!("cannot sign the certificate: {e}")))?;
    write_file(&key_path, key_pair.serialize_pem().as_bytes(), 0o600)
        .map_err(|e| fail(format!("cannot write {}: {e}", key_path.display())))?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)
        .map_err(|e| fail(format!("cannot write {}: {e}", cert_path.display())))?;
    tracing::info!(
        side = side.name,
        cert = %cert_path.display(),
        key = %key_path.display(),
        "auto TLS: created a self-signed certificate"
    );
    Ok((cert_path, key_path))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// Accepts any server certificate but still checks the handshake signatures: the peer client side
/// with auto TLS, where every member's certificate is self-signed (etcd: `InsecureSkipVerify`).
#[derive(Debug)]
struct SkipServerVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<Url> {
        list.iter().map(|u| Url::parse(u).unwrap()).collect()
    }

    #[test]
    fn self_cert_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = dir.path().join("fixtures").join("client");
        let listen = urls(&["https://127.0.0.1:2379", "https://localhost:2379", "https://[::1]:2379"]);
        let (cert, key) = self_cert(CLIENT, &fixtures, &listen).unwrap();
        assert_eq!((cert.clone(), key.clone()), (fixtures.join("cert.pem"), fixtures.join("key.pem")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(&fixtures).unwrap().permissions().mode() & 0o777, 0o700);
        }
        let first = std::fs::read(&cert).unwrap();
        let files = Files { side: CLIENT, cert, key, require_client_cert: false, ca: None, self_signed: true };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = files.server_config(&provider).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        // A second start keeps the files.
        self_cert(CLIENT, &fixtures, &listen).unwrap();
        assert_eq!(std::fs::read(fixtures.join("cert.pem")).unwrap(), first);
    }

    #[test]
    fn bad_files_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert, key) = self_cert(CLIENT, &dir.path().join("a"), &urls(&["https://127.0.0.1:1"])).unwrap();
        let (_, other_key) = self_cert(CLIENT, &dir.path().join("b"), &urls(&["https://127.0.0.1:1"])).unwrap();
        let files = |cert: &Path, key: &Path| Files {
            side: CLIENT,
            cert: cert.to_owned(),
            key: key.to_owned(),
            require_client_cert: false,
            ca: None,
            self_signed: false,
        };
        let err = |f: Files| f.server_config(&provider).expect_err("should fail").to_string();

        let missing = dir.path().join("missing.pem");
        let e = err(files(&missing, &key));
        assert!(e.starts_with(&format!("--cert-file {}: cannot read it: ", missing.display())), "{e}");

        let e = err(files(&cert, &other_key));
        assert_eq!(
            e,
            format!(
                "--key-file {} does not belong to --cert-file {}: tls: private key does not match public key",
                other_key.display(),
                cert.display()
            )
        );

        // A key file given as the certificate, and the other way round.
        let e = err(files(&key, &key));
        assert!(e.contains("no certificate found"), "{e}");
        let e = err(files(&cert, &cert));
        assert!(e.contains("no private key found"), "{e}");

        // A CA file without certificates.
        let mut f = files(&cert, &key);
        f.require_client_cert = true;
        f.ca = Some(key.clone());
        assert!(err(f).starts_with("--trusted-ca-file "));
        for e in [err(files(&missing, &key)), err(files(&cert, &other_key))] {
            assert!(!e.contains('\n'), "{e:?}");
        }
    }

    #[test]
    fn peer_side_builds_server_and_client_configs() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default_for_tests();
        cfg.data_dir = dir.path().to_owned();
        cfg.listen_peer_urls = urls(&["https://127.0.0.1:2380"]);
        cfg.peer_tls.auto_tls = true;
        let tls = TlsConfigs::build(&cfg).unwrap();
        assert!(tls.client.is_none(), "http client URLs need no client TLS");
        let peer = tls.peer.expect("peer TLS");
        assert!(peer.client.client_auth_cert_resolver.has_certs());
        assert!(dir.path().join("fixtures/peer/cert.pem").is_file());
        assert!(!dir.path().join("fixtures/client").exists());
    }

    #[test]
    fn acceptor_only_for_https() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_cert(CLIENT, dir.path(), &urls(&["https://127.0.0.1:1"])).unwrap();
        let files = Files { side: CLIENT, cert, key, require_client_cert: false, ca: None, self_signed: false };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let acceptor = TlsAcceptor::from(Arc::new(files.server_config(&provider).unwrap()));
        assert!(acceptor_for(&Url::parse("https://127.0.0.1:1").unwrap(), Some(&acceptor)).is_some());
        assert!(acceptor_for(&Url::parse("http://127.0.0.1:1").unwrap(), Some(&acceptor)).is_none());
    }
}
