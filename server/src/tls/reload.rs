//! A certificate and key read again when their files change, as etcd reads them for every handshake:
//! certificates rotate without a restart.
//!
//! ```text
//!   handshake ─▶ resolve ─▶ stat cert and key ─ unchanged ─▶ the loaded pair
//!                                 │ changed
//!                                 ▼
//!                           read and check them ─ ok ─▶ the new pair (logged)
//!                                 │ not (e.g. the key not written yet, or a bad file)
//!                                 ▼
//!                           the old pair, a warning; tried again when a file changes again
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use super::{Files, TlsError};

/// What is compared to tell a file changed: its modification time and size.
type Stamp = [(Option<SystemTime>, u64); 2];

/// A side's certificate and key, re-read when their files change.
pub(super) struct ReloadingCert {
    files: Files,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Stamp, Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    /// Reads the pair now (a bad file is a startup error).
    pub(super) fn new(files: &Files, provider: &Arc<CryptoProvider>) -> Result<ReloadingCert, TlsError> {
        let stamp = stamp(files);
        let key = files.certified_key(provider)?;
        Ok(ReloadingCert { files: files.clone(), provider: provider.clone(), current: Mutex::new((stamp, key)) })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let now = stamp(&self.files);
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if now != cur.0 {
            cur.0 = now;
            match self.files.certified_key(&self.provider) {
                Ok(key) => {
                    tracing::info!(side = self.files.side.name, cert = %self.files.cert.display(), "TLS certificate reloaded");
                    cur.1 = key;
                }
                Err(e) => tracing::warn!(
                    side = self.files.side.name,
                    "TLS certificate not reloaded, the loaded one stays: {e}"
                ),
            }
        }
        cur.1.clone()
    }
}

fn stamp(files: &Files) -> Stamp {
    [&files.cert, &files.key].map(|p| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    })
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert").field("cert", &self.files.cert).field("key", &self.files.key).finish()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
