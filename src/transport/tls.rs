//! TLS on both sides of a hop, with rustls and its ring crypto provider (it builds with a C
//! compiler alone). TLS 1.3 and 1.2; no 0-RTT.
//!
//! - **Server** ([`TlsAcceptor`]): certificate chains and keys from PEM files, the one to
//!   present chosen by the name the client asks for (SNI; the first chain otherwise); ALPN
//!   (`http/1.1`); session resumption by tickets and by a server-side cache; the handshake
//!   bounded by a deadline (a silent client is a slowloris too); a plain HTTP request on the
//!   TLS port answered with a clear 400 instead of a handshake failure; new certificates for
//!   new connections on [`TlsAcceptor::reload`], open connections untouched.
//! - **Client** ([`TlsConnector`]): trust from the system store or a CA file, or none at all
//!   (`insecure`, curl's `-k`); the name to send and verify (the URL's host, or an override);
//!   an optional client certificate; a session cache so a new connection to a known server
//!   resumes. Its [`TlsConnector::fingerprint`] identifies the verification settings, for
//!   pool keys: a connection verified for one name and trust is never reused for another.
//! - What was negotiated ([`TlsInfo`]), and why a handshake failed ([`TlsFailure`]).
//!
//! Owns TLS configuration and handshakes. It must not know HTTP.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, HandshakeKind, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Stream;

/// ALPN's names for HTTP/1.1 and HTTP/2 (the protocols are named here, not spoken).
const ALPN_HTTP1: &[u8] = b"http/1.1";
const ALPN_H2: &[u8] = b"h2";

/// The crypto provider: ring (see the module documentation).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A configuration that could not be built: a file missing or not PEM, a key that does not
/// match, no certificate at all.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsConfigError(String);

fn config_error(what: impl fmt::Display) -> TlsConfigError {
    TlsConfigError(what.to_string())
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateFiles {
    /// The chain: the end-entity certificate first, then intermediates.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Reads a chain and its key into what rustls signs with.
fn load_certified_key(files: &CertificateFiles) -> Result<CertifiedKey, TlsConfigError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| config_error(format!("{}: {e}", files.cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| config_error(format!("{}: {e}", files.cert.display())))?;
    if chain.is_empty() {
        return Err(config_error(format!(
            "{}: no certificate in the file",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| config_error(format!("{}: {e}", files.key.display())))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| config_error(format!("{}: {e}", files.key.display())))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        config_error(format!(
            "{} and {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    Ok(certified)
}

/// A server's TLS settings, each with its default. Build them from
/// `ServerTls::new(certificates)` and set the fields that differ.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerTls {
    /// The chains to present, chosen by SNI among the names each is valid for; the first
    /// when the client asks for none or for a name none covers.
    pub certificates: Vec<CertificateFiles>,
    /// Sessions kept for resumption by session ID (TLS 1.2) and stateful tickets. Default
    /// 10,000.
    pub session_cache: usize,
    /// Resumption by stateless tickets (encrypted with keys rotated every 6 hours). Default
    /// `true`.
    pub tickets: bool,
    /// ALPN protocols accepted, most preferred first. Default `h2`, `http/1.1`; a server
    /// that does not speak HTTP/2 offers `http/1.1` alone.
    pub alpn: Vec<Vec<u8>>,
}

impl ServerTls {
    /// Settings presenting these chains, the rest at their defaults.
    pub fn new(certificates: Vec<CertificateFiles>) -> Self {
        ServerTls {
            certificates,
            session_cache: 10_000,
            tickets: true,
            alpn: vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()],
        }
    }

    /// The rustls configuration these settings describe.
    fn build(&self) -> Result<rustls::ServerConfig, TlsConfigError> {
        let keys = self
            .certificates
            .iter()
            .map(load_certified_key)
            .map(|key| key.map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(config_error("TLS needs at least one certificate and key"));
        }
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(config_error)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(BySni { keys }));
        config.session_storage = ServerSessionMemoryCache::new(self.session_cache);
        if self.tickets {
            config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(config_error)?;
        }
        config.alpn_protocols = self.alpn.clone();
        config.max_early_data_size = 0;
        Ok(config)
    }
}

/// Chooses the chain to present: the first valid for the name the client asked for, else
/// the first.
#[derive(Debug)]
struct BySni {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let wanted = hello
            .server_name()
            .and_then(|name| ServerName::try_from(name).ok());
        let chosen = wanted.and_then(|name| {
            self.keys.iter().find(|key| {
                key.end_entity_cert().is_ok_and(|cert| {
                    webpki::EndEntityCert::try_from(cert)
                        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
                })
            })
        });
        chosen.or_else(|| self.keys.first()).cloned()
    }
}

/// Accepts TLS connections with a configuration that can be replaced while running. Cheap
/// to clone (clones share the configuration).
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

/// How a handshake went: what it negotiated, and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// What was negotiated (`info.resumed`: a resumed session rather than a full
    /// handshake).
    pub info: TlsInfo,
    /// From the first byte (server) or the connect (client) to the end of the handshake.
    pub duration: Duration,
}

/// Why a TLS connection did not come up.
#[derive(Debug, thiserror::Error)]
pub enum TlsFailure {
    /// The peer's certificate is not valid (expired, wrong name, revoked, malformed), or the
    /// peer said ours is not.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// The peer's certificate is not signed by a trusted authority, or the peer said ours is
    /// not.
    #[error("unknown certificate authority: {0}")]
    UnknownCa(String),
    /// The peers could not agree (versions, ciphers, ALPN) or one broke the protocol.
    #[error("TLS protocol error: {0}")]
    Protocol(String),
    /// The handshake did not finish in time.
    #[error("TLS handshake timed out")]
    Timeout,
    /// A plain HTTP request arrived on the TLS port (answered with 400).
    #[error("plain HTTP request on a TLS port")]
    PlainHttp,
    /// The socket failed or closed.
    #[error("connection failed during the TLS handshake: {0}")]
    Io(std::io::Error),
}

impl TlsFailure {
    /// The failure as a metric label.
    pub fn label(&self) -> &'static str {
        match self {
            TlsFailure::BadCertificate(_) => "bad_certificate",
            TlsFailure::UnknownCa(_) => "unknown_ca",
            TlsFailure::Protocol(_) => "protocol",
            TlsFailure::Timeout => "timeout",
            TlsFailure::PlainHttp => "plain_http",
            TlsFailure::Io(_) => "io",
        }
    }

    /// Whether the failure is about a certificate (curl's exit code 60 rather than 35).
    pub fn is_certificate(&self) -> bool {
        matches!(
            self,
            TlsFailure::BadCertificate(_) | TlsFailure::UnknownCa(_)
        )
    }

    /// Classifies an error from a handshake.
    fn of(error: std::io::Error) -> TlsFailure {
        let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return TlsFailure::Io(error);
        };
        use rustls::{AlertDescription as Alert, CertificateError, Error};
        match tls {
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
            | Error::AlertReceived(Alert::UnknownCA) => TlsFailure::UnknownCa(tls.to_string()),
            Error::InvalidCertificate(_)
            | Error::AlertReceived(
                Alert::BadCertificate
                | Alert::CertificateExpired
                | Alert::CertificateUnknown
                | Alert::CertificateRevoked
                | Alert::UnsupportedCertificate,
            ) => TlsFailure::BadCertificate(tls.to_string()),
            _ => TlsFailure::Protocol(tls.to_string()),
        }
    }
}

/// The answer a plain HTTP request on a TLS port gets (nginx answers the same shape).
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 57\r\nconnection: close\r\n\r\n\
400 Bad Request: a plain HTTP request on an HTTPS port.\n\n";

impl TlsAcceptor {
    /// An acceptor with these settings.
    pub fn new(settings: &ServerTls) -> Result<Self, TlsConfigError> {
        Ok(TlsAcceptor {
            config: Arc::new(RwLock::new(Arc::new(settings.build()?))),
        })
    }

    /// New connections get these settings from now on; open ones keep theirs. On error
    /// nothing changes.
    pub fn reload(&self, settings: &ServerTls) -> Result<(), TlsConfigError> {
        let config = Arc::new(settings.build()?);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// Completes the server side of a handshake on `tcp` before `deadline`. A client that
    /// sends a plain HTTP request instead gets a 400 (and the connection closes).
    pub async fn accept(
        &self,
        mut tcp: TcpStream,
        deadline: Instant,
    ) -> Result<(Stream, Handshake), TlsFailure> {
        let config = self
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let handshake = async {
            // A TLS record starts with its type (22: handshake); a plain request with a
            // method, in capitals.
            let mut first = [0u8; 1];
            match tcp.peek(&mut first).await {
                Ok(0) => return Err(TlsFailure::Io(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(_) if first[0].is_ascii_uppercase() => {
                    let _ = tcp.write_all(PLAIN_HTTP_ANSWER).await;
                    let _ = tcp.shutdown().await;
                    return Err(TlsFailure::PlainHttp);
                }
                Ok(_) => {}
                Err(error) => return Err(TlsFailure::Io(error)),
            }
            let started = Instant::now();
            let tls = tokio_rustls::TlsAcceptor::from(config)
                .accept(tcp)
                .await
                .map_err(TlsFailure::of)?;
            let handshake = Handshake {
                info: TlsInfo::of_server(tls.get_ref().1),
                duration: started.elapsed(),
            };
            Ok((Stream::TlsServer(Box::new(tls)), handshake))
        };
        match tokio::time::timeout_at(deadline, handshake).await {
            Ok(result) => result,
            Err(_) => Err(TlsFailure::Timeout),
        }
    }
}

/// A client's TLS settings, each with its default (`ClientTls::default()`: the system's
/// trusted authorities, the URL's host as the name, no client certificate, sessions
/// resumed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ClientTls {
    /// Trust the authorities in this PEM file instead of the system store (curl's
    /// `--cacert`).
    pub ca_file: Option<PathBuf>,
    /// Verify nothing about the server's certificate (curl's `-k`): for tests and
    /// self-signed servers only. The handshake is still authenticated with the key the
    /// certificate carries.
    pub insecure: bool,
    /// The name to send (SNI) and to verify the certificate for, instead of the URL's host.
    pub server_name: Option<String>,
    /// A certificate to present when the server asks (mutual TLS).
    pub client_certificate: Option<CertificateFiles>,
    /// Keep sessions (up to 256 servers) so that a new connection to a known server
    /// resumes: no certificate sent, no signature made. Default `true`; `false` makes every
    /// handshake a full one (to measure them).
    pub resumption: bool,
    /// ALPN protocols offered, most preferred first. Default `http/1.1`; a client that
    /// speaks HTTP/2 offers `h2` first.
    pub alpn: Vec<Vec<u8>>,
}

impl Default for ClientTls {
    fn default() -> Self {
        ClientTls {
            ca_file: None,
            insecure: false,
            server_name: None,
            client_certificate: None,
            resumption: true,
            alpn: vec![ALPN_HTTP1.to_vec()],
        }
    }
}

/// Opens TLS connections with one set of client settings. Cheap to clone.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
    fingerprint: u64,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The system's trusted authorities (`/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "a system certificate could not be read");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system trust store loaded");
    roots
}

fn file_roots(path: &Path) -> Result<rustls::RootCertStore, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| config_error(format!("{}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| config_error(format!("{}: {e}", path.display())))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(config_error(format!(
            "{}: no certificate authority in the file",
            path.display()
        )));
    }
    Ok(roots)
}

impl TlsConnector {
    /// A connector with these settings (reads the trust store and files now).
    pub fn new(settings: &ClientTls) -> Result<Self, TlsConfigError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(config_error)?;
        let builder = if settings.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
        } else {
            let roots = match &settings.ca_file {
                Some(path) => file_roots(path)?,
                None => system_roots(),
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match &settings.client_certificate {
            Some(files) => {
                // Checks the files (and that the key matches) before handing them over.
                let chain = load_certified_key(files)?.cert;
                let key = PrivateKeyDer::from_pem_file(&files.key)
                    .map_err(|e| config_error(format!("{}: {e}", files.key.display())))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(config_error)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = settings.alpn.clone();
        config.enable_early_data = false;
        if !settings.resumption {
            config.resumption = rustls::client::Resumption::disabled();
        }
        let server_name = settings
            .server_name
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_string())
                    .map_err(|e| config_error(format!("server name {name}: {e}")))
            })
            .transpose()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        settings.hash(&mut hasher);
        Ok(TlsConnector {
            config: Arc::new(config),
            server_name,
            fingerprint: hasher.finish(),
        })
    }

    /// Identifies the verification settings (trust, name override, client certificate):
    /// two connections may share a pool only when this matches.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The name a connection to `host` sends and verifies.
    pub fn server_name_for(&self, host: &str) -> Result<ServerName<'static>, TlsFailure> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_string())
            .map_err(|e| TlsFailure::Protocol(format!("{host} is not a server name: {e}")))
    }

    /// Completes the client side of a handshake on `tcp` to `host`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> Result<(Stream, Handshake), TlsFailure> {
        let name = self.server_name_for(host)?;
        let sent_name = name.to_str().into_owned();
        let started = Instant::now();
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .map_err(TlsFailure::of)?;
        let handshake = Handshake {
            info: TlsInfo {
                server_name: Some(sent_name),
                ..TlsInfo::of_client(tls.get_ref().1)
            },
            duration: started.elapsed(),
        };
        Ok((Stream::TlsClient(Box::new(tls)), handshake))
    }
}

/// curl's `-k`: any certificate is accepted, but the handshake's signatures are still
/// checked against the key it carries.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a TLS handshake negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The cipher suite, as IANA names it.
    pub cipher: &'static str,
    /// The application protocol agreed by ALPN, if any.
    pub alpn: Option<String>,
    /// Whether the session was resumed (no certificate exchanged, one round trip).
    pub resumed: bool,
    /// The name the client asked for (SNI): on a server, as received; on a client, as sent
    /// (in the handshake's report).
    pub server_name: Option<String>,
}

impl TlsInfo {
    fn of_common(conn: &rustls::CommonState) -> TlsInfo {
        TlsInfo {
            version: match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "unknown",
            },
            cipher: conn
                .negotiated_cipher_suite()
                .and_then(|suite| suite.suite().as_str())
                .unwrap_or("unknown"),
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
            server_name: None,
        }
    }

    pub(super) fn of_server(conn: &rustls::ServerConnection) -> TlsInfo {
        TlsInfo {
            server_name: conn.server_name().map(str::to_string),
            ..TlsInfo::of_common(conn)
        }
    }

    pub(super) fn of_client(conn: &rustls::ClientConnection) -> TlsInfo {
        TlsInfo::of_common(conn)
    }
}
