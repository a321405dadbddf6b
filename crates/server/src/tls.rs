//! `http.tls` (the `tls` feature): the certificate chain, key and client CAs loaded into a
//! rustls acceptor, and the handshake of each connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{ServeError, TlsConfig};

/// Accepts TLS connections as `http.tls` says.
pub(crate) type Acceptor = tokio_rustls::TlsAcceptor;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The rustls side of `http.tls`: the certificate chain and key (PEM, as `openssl req`
/// writes them), the minimum version, and client certificates when `clientcas` is set.
pub(crate) fn acceptor(tls: &TlsConfig) -> Result<Acceptor, ServeError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let read_certificates = |path: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, ServeError> {
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| ServeError::Tls(format!("{}: {e}", path.display())))?;
        if certificates.is_empty() {
            return Err(ServeError::Tls(format!("{}: no PEM certificate in it", path.display())));
        }
        Ok(certificates)
    };
    let chain = read_certificates(&tls.certificate)?;
    let key =
        PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| ServeError::Tls(format!("{}: {e}", tls.key.display())))?;
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls.minimum_tls13 { &[&rustls::version::TLS13] } else { rustls::ALL_VERSIONS };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let builder = if tls.client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for path in &tls.client_cas {
            for certificate in read_certificates(path)? {
                roots.add(certificate).map_err(|e| ServeError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| ServeError::Tls(format!("clientcas: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| ServeError::Tls(format!("{} and {}: {e}", tls.certificate.display(), tls.key.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Acceptor::from(Arc::new(config)))
}

/// The TLS side of `stream`, or `None` (logged) when the handshake fails or takes too long.
pub(crate) async fn handshake(
    acceptor: Acceptor,
    stream: TcpStream,
    client: std::net::SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%client, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}
