//! TLS to a node: the certificate is trusted by its pinned SHA-256 fingerprint instead of a CA chain. Only that
//! check is replaced; handshake signatures are verified with the ring provider's algorithms as usual.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, SignatureScheme};
use sha2::{Digest, Sha256};

/// `sha256:<64 lowercase hex>` of a DER certificate, as the node prints it.
pub fn fingerprint(der: &[u8]) -> String {
    let hex: String = Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Accepts the server's certificate iff its fingerprint is `expected`, or any certificate when there is no pin yet
/// (trust on first use). Either way it remembers what it saw, so the caller can pin it or explain a refusal.
#[derive(Debug)]
pub struct PinVerifier {
    expected: Option<String>,
    seen: Mutex<Option<String>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinVerifier {
    pub fn new(expected: Option<String>, provider: &CryptoProvider) -> PinVerifier {
        PinVerifier { expected, seen: Mutex::new(None), algorithms: provider.signature_verification_algorithms }
    }

    /// The fingerprint of the certificate the server presented, once the handshake got that far.
    pub fn seen(&self) -> Option<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or(None)
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let seen = fingerprint(end_entity);
        if let Ok(mut slot) = self.seen.lock() {
            *slot = Some(seen.clone());
        }
        match &self.expected {
            Some(pin) if *pin != seen => {
                Err(Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client config for one connection, trusting only what `verifier` accepts. The ring provider is given
/// explicitly: nothing depends on a process-wide default.
pub fn client_config(expected: Option<String>) -> Result<(ClientConfig, Arc<PinVerifier>), Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinVerifier::new(expected, &provider));
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok((config, verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(v: &PinVerifier, der: &[u8]) -> Result<ServerCertVerified, Error> {
        let name = ServerName::try_from("10.0.2.15").unwrap();
        v.verify_server_cert(&CertificateDer::from(der.to_vec()), &[], &name, &[], UnixTime::now())
    }

    #[test]
    fn fingerprint_is_sha256_of_the_der() {
        assert_eq!(fingerprint(b"abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn pinned_certificate_only() {
        let provider = rustls::crypto::ring::default_provider();
        let v = PinVerifier::new(Some(fingerprint(b"cert-a")), &provider);
        assert!(verify(&v, b"cert-a").is_ok());
        assert!(verify(&v, b"cert-b").is_err());
        assert_eq!(v.seen(), Some(fingerprint(b"cert-b")));
        let first_use = PinVerifier::new(None, &provider);
        assert_eq!(first_use.seen(), None);
        assert!(verify(&first_use, b"anything").is_ok());
        assert_eq!(first_use.seen(), Some(fingerprint(b"anything")));
    }

    #[test]
    fn signatures_are_checked_with_the_providers_algorithms() {
        let (_, v) = client_config(None).unwrap();
        let schemes = v.supported_verify_schemes();
        assert!(
            schemes.contains(&SignatureScheme::ED25519) && schemes.contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
        );
    }
}
