//! The demo's TLS: a throwaway certificate authority made when the demo starts (rcgen,
//! ECDSA P-256), a certificate it signs for the embedded origin (`127.0.0.1`), and clients
//! that trust it — with session resumption, or without (every handshake full). The keys
//! live in a temporary directory for the demo's lifetime and are removed with it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};

use crate::error::BoxError;
use crate::transport::tls::{CertificateFiles, ClientTls, ServerTls, TlsAcceptor, TlsConnector};

/// The demo's certificates, in a directory removed on drop.
#[derive(Debug)]
pub struct DemoTls {
    dir: PathBuf,
    acceptor: TlsAcceptor,
}

impl DemoTls {
    /// A new authority and an origin certificate for `127.0.0.1` and `localhost`.
    pub fn new() -> Result<DemoTls, BoxError> {
        // One directory per demo run, even with several in one process.
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hopline-demo-tls-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let built = Self::write(&dir).and_then(|files| {
            let acceptor = TlsAcceptor::new(&ServerTls::new(vec![files]))?;
            Ok(acceptor)
        });
        match built {
            Ok(acceptor) => Ok(DemoTls { dir, acceptor }),
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(error)
            }
        }
    }

    fn write(dir: &std::path::Path) -> Result<CertificateFiles, BoxError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hopline demo CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        std::fs::write(dir.join("ca.pem"), ca.pem())?;
        let key = KeyPair::generate()?;
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let cert = CertificateParams::new(names)?.signed_by(&key, &ca)?;
        let files = CertificateFiles {
            cert: dir.join("origin.pem"),
            key: dir.join("origin.key"),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }

    /// The origin's side.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// A new client (an empty session cache) trusting the authority, offering ALPN for
    /// `protocol`; `resume`: whether its later connections resume the first one's session.
    pub fn connector(
        &self,
        resume: bool,
        protocol: crate::client::HopProtocol,
    ) -> Result<TlsConnector, BoxError> {
        let settings = ClientTls {
            ca_file: Some(self.dir.join("ca.pem")),
            resumption: resume,
            alpn: crate::client::alpn_for(protocol),
            ..ClientTls::default()
        };
        Ok(TlsConnector::new(&settings)?)
    }
}

impl Drop for DemoTls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
