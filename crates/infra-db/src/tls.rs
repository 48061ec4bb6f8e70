//! TLS for `sslmode=require` / `verify-ca` / `verify-full`, through rustls (no OpenSSL).

use std::sync::Arc;

use diesel::ConnectionError;
use infra_core::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, as read from the URL's query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// libpq tries TLS first; here it means no TLS (say `require` to get it).
    #[default]
    Prefer,
    /// TLS, without checking the server's certificate (libpq's meaning).
    Require,
    /// TLS with a certificate chain to a trusted root. rustls also checks the host name, so
    /// this behaves like `verify-full`.
    VerifyCa,
    /// TLS with a trusted certificate for the host name.
    VerifyFull,
}

impl SslMode {
    /// Reads `sslmode` from a PostgreSQL URL (`variable` names it in errors).
    pub fn from_url(variable: &str, url: &str) -> Result<Self> {
        let parsed = infra_core::parse_url(variable, url)?;
        let Some(mode) = parsed
            .query_pairs()
            .find(|(k, _)| k == "sslmode")
            .map(|(_, v)| v.into_owned())
        else {
            return Ok(SslMode::default());
        };
        match mode.as_str() {
            "disable" | "allow" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(Error::config(
                variable,
                format_args!(
                    "has an unknown sslmode `{other}` (disable, prefer, require, verify-ca, verify-full)"
                ),
            )),
        }
    }

    /// Whether connections use TLS.
    pub fn uses_tls(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls connector for `mode`; `None` when the mode uses no TLS.
pub(crate) fn connector(mode: SslMode) -> Result<Option<MakeRustlsConnect>> {
    if !mode.uses_tls() {
        return Ok(None);
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::backend(format!("TLS setup: {e}")))?;
    let config = match mode {
        SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider())))
            .with_no_client_auth(),
        _ => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// A connection's driver over rustls.
pub(crate) type TlsConnection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;

/// Opens a TLS connection: tokio-postgres knows `require` only, so the URL's stricter modes
/// are handed to it as `require` while rustls does the verifying.
pub(crate) async fn connect_tls(
    url: &str,
    tls: MakeRustlsConnect,
) -> diesel::ConnectionResult<(tokio_postgres::Client, TlsConnection)> {
    let mut parsed =
        url::Url::parse(url).map_err(|_| ConnectionError::BadConnection("invalid URL".into()))?;
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "sslmode" {
                "require".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    let (client, connection) = tokio_postgres::connect(parsed.as_str(), tls)
        .await
        .map_err(|e| ConnectionError::BadConnection(with_causes(&e)))?;
    Ok((client, connection))
}

/// The error and its causes: tokio-postgres's own message ("error performing TLS handshake")
/// hides the reason (an untrusted certificate, a host name mismatch).
pub(crate) fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `sslmode=require`: encrypt, accept any certificate (libpq's behaviour), but still check
/// that the handshake signatures are valid.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_build() {
        let m = |url: &str| SslMode::from_url("DATABASE_URL", url);
        assert_eq!(m("postgres://h/db").unwrap(), SslMode::Prefer);
        assert_eq!(
            m("postgres://h/db?sslmode=require").unwrap(),
            SslMode::Require
        );
        assert_eq!(
            m("postgres://h/db?application_name=x&sslmode=verify-full").unwrap(),
            SslMode::VerifyFull
        );
        assert_eq!(
            m("postgres://h/db?sslmode=disable").unwrap(),
            SslMode::Disable
        );
        let err = m("postgres://u:s3cret@h/db?sslmode=maybe").unwrap_err();
        assert_eq!(err.variable(), Some("DATABASE_URL"));
        assert!(!err.to_string().contains("s3cret"));
        for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert!(connector(mode).unwrap().is_some());
        }
        assert!(connector(SslMode::Disable).unwrap().is_none());
    }
}
