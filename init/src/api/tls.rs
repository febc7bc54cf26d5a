//! The node's TLS identity: a key and a self-signed certificate made on first boot and kept under
//! /var/lib/keel/api (the state volume), so clients can pin its fingerprint like an SSH host key.

use crate::controller::files::write_atomic;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    /// `sha256:<hex>` of the DER certificate.
    pub fingerprint: String,
    pub created: bool,
}

pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Loads the identity from `dir`, or makes and saves a new one. `names` go into the certificate's SANs.
pub fn load_or_create(dir: &Path, names: Vec<String>) -> Result<Identity, String> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        let cert = CertificateDer::from_pem_file(&cert_path).map_err(|e| format!("{}: {e}", cert_path.display()))?;
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
        let fingerprint = fingerprint(&cert);
        return Ok(Identity { cert, key, fingerprint, created: false });
    }
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| format!("make a certificate: {e}"))?;
    write_atomic(&key_path, made.signing_key.serialize_pem().as_bytes(), 0o600, None)
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    write_atomic(&cert_path, made.cert.pem().as_bytes(), 0o644, None)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let cert = made.cert.der().clone();
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).map_err(|e| format!("key: {e}"))?;
    let fingerprint = fingerprint(&cert);
    Ok(Identity { cert, key, fingerprint, created: true })
}

/// TLS 1.3 only, on the ring provider chosen explicitly (never a process-wide default). 1.3 because API
/// credentials are bound to the connection by RFC 9266 `tls-exporter`, which is only safe where every
/// connection's exporter is unique (TLS 1.2 would need extended master secret as well). Stateless session
/// tickets let a client resume without a full handshake, and cost the node no memory per client.
pub fn server_config(id: &Identity) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![id.cert.clone()], id.key.clone_key())
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| format!("session tickets: {e}"))?;
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("keel-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_create(&dir, vec!["keel".into()]).unwrap();
        assert!(first.created);
        assert!(first.fingerprint.starts_with("sha256:") && first.fingerprint.len() == 7 + 64);
        let again = load_or_create(&dir, vec!["keel".into()]).unwrap();
        assert!(!again.created);
        assert_eq!(again.fingerprint, first.fingerprint);
        assert!(server_config(&again).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }
}
