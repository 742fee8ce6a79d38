//! TLS flags: the certificates `serve` and `proxy` present to clients, and how `get`,
//! `bench` and the proxy's upstream side verify the servers they reach — merged with the
//! configuration file's `[downstream.tls]` and `tls` of upstream policies.

use std::path::PathBuf;

use clap::Args;

use super::Given;
use hopline::client::{HopProtocol, alpn_for};
use hopline::config::{CertificateFile, DownstreamTlsFile, UpstreamTlsFile};
use hopline::transport::tls::{CertificateFiles, ClientTls, ServerTls, TlsConnector};

/// Speaking HTTPS to clients (`serve`, `proxy`).
#[derive(Debug, Args)]
pub struct ServerTlsArgs {
    /// Speak HTTPS with this PEM certificate chain (end-entity certificate first).
    /// Repeatable: the certificate valid for the name a client asks for (SNI) is
    /// presented, else the first. Each needs its --tls-key, in the same order.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Vec<PathBuf>,
    /// The PEM private key of the --tls-cert in the same position.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Vec<PathBuf>,
    /// TLS sessions kept for resumption by session ID (tickets need no server memory).
    #[arg(long, default_value_t = 10_000)]
    pub tls_session_cache: usize,
    /// Do not issue session tickets (resumption then needs the session cache).
    #[arg(long)]
    pub no_tls_tickets: bool,
}

impl ServerTlsArgs {
    /// The TLS settings of these flags over `file`; `None` for plain HTTP.
    pub fn server_tls(
        &self,
        given: &Given,
        file: Option<&DownstreamTlsFile>,
    ) -> Result<Option<ServerTls>, String> {
        if self.tls_cert.len() != self.tls_key.len() {
            return Err(format!(
                "{} --tls-cert but {} --tls-key: give them in pairs",
                self.tls_cert.len(),
                self.tls_key.len()
            ));
        }
        let certificates: Vec<CertificateFiles> = if given.typed("tls_cert") {
            self.tls_cert
                .iter()
                .zip(&self.tls_key)
                .map(|(cert, key)| CertificateFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                })
                .collect()
        } else {
            file.map(|f| f.certificates.iter().map(files).collect())
                .unwrap_or_default()
        };
        if certificates.is_empty() {
            if file.is_some() {
                return Err("[downstream.tls] needs at least one certificate".into());
            }
            return Ok(None);
        }
        let mut tls = ServerTls::new(certificates);
        tls.session_cache = given.pick(
            "tls_session_cache",
            self.tls_session_cache,
            file.and_then(|f| f.session_cache),
        );
        tls.tickets = if given.typed("no_tls_tickets") {
            !self.no_tls_tickets
        } else {
            file.and_then(|f| f.tickets).unwrap_or(!self.no_tls_tickets)
        };
        Ok(Some(tls))
    }
}

fn files(file: &CertificateFile) -> CertificateFiles {
    CertificateFiles {
        cert: file.cert.clone(),
        key: file.key.clone(),
    }
}

/// How `get` and `bench` verify `https://` servers (curl's flags).
#[derive(Debug, Args)]
pub struct ClientTlsArgs {
    /// Trust the certificate authorities in this PEM file instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Do not verify the server's certificate (for tests and self-signed servers).
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// Send and verify this name instead of the URL's host.
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Present this PEM certificate chain when the server asks (mutual TLS); needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Do not resume TLS sessions: every new connection makes a full handshake (to
    /// measure them).
    #[arg(long)]
    pub no_tls_resumption: bool,
}

impl ClientTlsArgs {
    /// The connector these flags describe, offering ALPN for `protocol`; `None` when
    /// they are all at their defaults (the client then builds the system-trust connector
    /// on its first `https://` URL).
    pub fn connector(&self, protocol: HopProtocol) -> Result<Option<TlsConnector>, String> {
        let file = UpstreamTlsFile {
            ca_file: self.cacert.clone(),
            insecure: Some(self.insecure),
            server_name: self.tls_server_name.clone(),
            client_certificate: self
                .cert
                .clone()
                .zip(self.key.clone())
                .map(|(cert, key)| CertificateFile { cert, key }),
        };
        let mut tls = client_tls(&file);
        tls.resumption = !self.no_tls_resumption;
        build(tls, protocol)
    }
}

/// How the proxy verifies `https://` upstreams.
#[derive(Debug, Args)]
pub struct UpstreamTlsArgs {
    /// Trust the certificate authorities in this PEM file for https:// upstreams instead
    /// of the system's.
    #[arg(long, value_name = "FILE")]
    pub upstream_cacert: Option<PathBuf>,
    /// Do not verify https:// upstreams' certificates (tests only).
    #[arg(long)]
    pub upstream_insecure: bool,
    /// Send and verify this name (SNI) instead of the upstream URL's host.
    #[arg(long, value_name = "NAME")]
    pub upstream_sni: Option<String>,
    /// Present this PEM certificate chain to upstreams that ask (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "upstream_key")]
    pub upstream_cert: Option<PathBuf>,
    /// The private key of --upstream-cert.
    #[arg(long, value_name = "FILE", requires = "upstream_cert")]
    pub upstream_key: Option<PathBuf>,
}

impl UpstreamTlsArgs {
    /// The upstream TLS settings: typed flags over `file`.
    pub fn settings(&self, given: &Given, file: &UpstreamTlsFile) -> UpstreamTlsFile {
        let typed = |id: &str| given.typed(id);
        UpstreamTlsFile {
            ca_file: if typed("upstream_cacert") {
                self.upstream_cacert.clone()
            } else {
                file.ca_file.clone()
            },
            insecure: Some(given.pick("upstream_insecure", self.upstream_insecure, file.insecure)),
            server_name: if typed("upstream_sni") {
                self.upstream_sni.clone()
            } else {
                file.server_name.clone()
            },
            client_certificate: if typed("upstream_cert") {
                self.upstream_cert
                    .clone()
                    .zip(self.upstream_key.clone())
                    .map(|(cert, key)| CertificateFile { cert, key })
            } else {
                file.client_certificate.clone()
            },
        }
    }
}

/// The connector of `settings`, offering ALPN for `protocol`; `None` when they are the
/// defaults (system trust, the URL's host, no client certificate), which the client
/// builds when first needed.
pub fn connector(
    settings: &UpstreamTlsFile,
    protocol: HopProtocol,
) -> Result<Option<TlsConnector>, String> {
    build(client_tls(settings), protocol)
}

fn client_tls(settings: &UpstreamTlsFile) -> ClientTls {
    let mut tls = ClientTls::default();
    tls.ca_file = settings.ca_file.clone();
    tls.insecure = settings.insecure.unwrap_or(false);
    tls.server_name = settings.server_name.clone();
    tls.client_certificate = settings.client_certificate.as_ref().map(files);
    tls
}

fn build(mut tls: ClientTls, protocol: HopProtocol) -> Result<Option<TlsConnector>, String> {
    if tls == ClientTls::default() {
        return Ok(None);
    }
    tls.alpn = alpn_for(protocol);
    TlsConnector::new(&tls).map(Some).map_err(|e| e.to_string())
}
