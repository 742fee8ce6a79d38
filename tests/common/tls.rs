//! TLS fixtures: a certificate authority made at test time (rcgen; no key of any value is
//! ever in the repository), certificates it signs (valid, expired, for chosen names),
//! self-signed ones, and clients that trust it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hopline::conn::{ClosedRecord, ConnSide, Observer, RequestRecord};
use hopline::transport::tls::{
    CertificateFiles, ClientTls, Handshake, ServerTls, TlsAcceptor, TlsConnector, TlsFailure,
};
use hopline::transport::{Dial, Stream};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};

use super::RawClient;

/// A directory of PEM files, removed when dropped.
pub struct Pki {
    pub dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    next: AtomicU64,
}

impl Pki {
    /// A new certificate authority (ECDSA P-256, as every test certificate).
    pub fn new() -> Pki {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hopline-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hopline test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir,
            ca,
            next: AtomicU64::new(0),
        }
    }

    /// The authority's certificate, to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn write(&self, cert: &str, key: &KeyPair) -> CertificateFiles {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let files = CertificateFiles {
            cert: self.dir.join(format!("{n}.pem")),
            key: self.dir.join(format!("{n}.key")),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by the authority.
    pub fn leaf(&self, names: &[&str]) -> CertificateFiles {
        self.leaf_with(names, |_| {})
    }

    /// A certificate for `names` that expired in 2001.
    pub fn expired(&self, names: &[&str]) -> CertificateFiles {
        self.leaf_with(names, |params| {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
    }

    fn leaf_with(&self, names: &[&str], edit: impl Fn(&mut CertificateParams)) -> CertificateFiles {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        self.write(&cert.pem(), &key)
    }

    /// A certificate for `names` signed by itself (no authority vouches for it).
    pub fn self_signed(&self, names: &[&str]) -> CertificateFiles {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        self.write(&cert.pem(), &key)
    }

    /// A server presenting these certificates (the first by default, others by SNI).
    pub fn acceptor(&self, certificates: Vec<CertificateFiles>) -> TlsAcceptor {
        TlsAcceptor::new(&ServerTls::new(certificates)).unwrap()
    }

    /// Client settings trusting the authority.
    pub fn client_settings(&self) -> ClientTls {
        let mut settings = ClientTls::default();
        settings.ca_file = Some(self.ca_file());
        settings
    }

    /// A client trusting the authority.
    pub fn connector(&self) -> TlsConnector {
        TlsConnector::new(&self.client_settings()).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A raw client over TLS to `addr`, verifying the certificate for `host`.
pub async fn raw_client(
    addr: std::net::SocketAddr,
    connector: &TlsConnector,
    host: &str,
) -> RawClient<Stream> {
    let dial = Dial {
        addr,
        tls: Some((connector, host)),
        timeout: std::time::Duration::from_secs(10),
        proxy_header: None,
    };
    let (stream, _) = hopline::transport::connect(dial)
        .await
        .expect("TLS connect");
    RawClient::from_stream(stream)
}

/// Records every TLS handshake and failure reported to it.
#[derive(Default)]
pub struct Handshakes {
    pub done: Mutex<Vec<(ConnSide, Handshake)>>,
    pub failed: Mutex<Vec<(ConnSide, &'static str)>>,
}

impl Handshakes {
    pub fn new() -> Arc<Handshakes> {
        Arc::new(Handshakes::default())
    }

    /// Completed handshakes on `side`: (total, resumed).
    pub fn count(&self, side: ConnSide) -> (usize, usize) {
        let done = self.done.lock().unwrap();
        let on_side = done.iter().filter(|(s, _)| *s == side);
        let total = on_side.clone().count();
        (total, on_side.filter(|(_, h)| h.info.resumed).count())
    }

    /// Failure labels on `side`.
    pub fn failures(&self, side: ConnSide) -> Vec<&'static str> {
        let failed = self.failed.lock().unwrap();
        failed
            .iter()
            .filter(|(s, _)| *s == side)
            .map(|(_, f)| *f)
            .collect()
    }
}

impl Observer for Handshakes {
    fn opened(&self, _side: ConnSide) {}
    fn request(&self, _record: &RequestRecord<'_>) {}
    fn closed(&self, _record: &ClosedRecord) {}

    fn tls_handshake(&self, side: ConnSide, handshake: &Handshake) {
        self.done.lock().unwrap().push((side, handshake.clone()));
    }

    fn tls_failure(&self, side: ConnSide, failure: &TlsFailure) {
        self.failed.lock().unwrap().push((side, failure.label()));
    }
}
