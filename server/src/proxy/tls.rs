//! TLS both ways: towards the members (`--cert`, `--key`, `--cacert`, `--insecure-skip-tls-verify`: a
//! rustls client config and the [`Connector`] tonic dials with) and towards the proxy's clients
//! (`--cert-file`, `--key-file`, `--trusted-ca-file`: the member's own server-side TLS setup).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::config::{Config, ProxyConfig};

/// Dials a member over TLS (HTTP/2 by ALPN) for tonic's `connect_with_connector`.
#[derive(Clone)]
pub struct Connector {
    tls: tokio_rustls::TlsConnector,
}

impl Connector {
    pub fn new(config: Arc<rustls::ClientConfig>) -> Connector {
        Connector { tls: tokio_rustls::TlsConnector::from(config) }
    }
}

type Conn = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower::Service<http::Uri> for Connector {
    type Response = Conn;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned());
            let host = uri.host().ok_or_else(|| invalid("endpoint without a host"))?.to_owned();
            let port = uri.port_u16().unwrap_or(2379);
            let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .map_err(|_| invalid("endpoint host is not a valid server name"))?;
            Ok(TokioIo::new(tls.connect(name, tcp).await?))
        })
    }
}

/// The client side towards the members; `None` when they are dialled in plain HTTP/2.
pub fn upstream_config(cfg: &ProxyConfig) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    let t = &cfg.upstream_tls;
    if !t.enabled() {
        return Ok(None);
    }
    // The member's peer-side client setup does exactly this (a certificate presented, the other end
    // verified against a CA bundle): build it from a member configuration carrying these files.
    let mut member = Config::default_for_tests();
    member.data_dir = cfg.data_dir.clone();
    member.peer_tls = crate::config::TlsFlags {
        cert_file: t.cert.clone(),
        key_file: t.key.clone(),
        trusted_ca_file: t.cacert.clone(),
        client_cert_auth: false,
        auto_tls: false,
    };
    let mut client = if t.cert.is_some() {
        let built = crate::tls::TlsConfigs::build(&member).map_err(|e| e.to_string())?;
        let peer = built.peer.ok_or("--cert: no client certificate")?;
        (*peer.client).clone()
    } else {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = &t.cacert {
            let pem = std::fs::read(ca).map_err(|e| format!("--cacert {}: {e}", ca.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("--cacert {}: {e}", ca.display()))?;
                roots.add(cert).map_err(|e| format!("--cacert {}: {e}", ca.display()))?;
            }
        }
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth()
    };
    if t.insecure_skip_verify {
        client
            .dangerous()
            .set_certificate_verifier(Arc::new(NoVerify(Arc::new(rustls::crypto::ring::default_provider()))));
    }
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(Arc::new(client)))
}

/// The acceptor of the proxy's listener; `None` without `--cert-file`.
pub fn client_acceptor(cfg: &ProxyConfig) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    if cfg.client_tls.cert_file.is_none() {
        return Ok(None);
    }
    let mut member = Config::default_for_tests();
    member.data_dir = cfg.data_dir.clone();
    member.client_tls = cfg.client_tls.clone();
    member.listen_client_urls =
        vec![url::Url::parse(&format!("https://{}", cfg.listen_addr)).map_err(|e| e.to_string())?];
    let built = crate::tls::TlsConfigs::build(&member).map_err(|e| e.to_string())?;
    Ok(built.client_acceptor())
}

/// `--insecure-skip-tls-verify`: any certificate is taken (signatures are still checked).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
