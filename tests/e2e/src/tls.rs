//! TLS for the harness: a throwaway test CA that issues server certificates (IP addresses become IP SANs), the
//! rustls server side of [`FileServer`](crate::http_server::FileServer)'s https mode, and an initramfs with a CA
//! bundle baked in: the production image plus a tiny cpio holding `/etc/keel/ca.pem` (the kernel unpacks
//! concatenated archives in order, as it does for `initramfs-test.cpio.zst`).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

pub struct TestCa {
    /// The CA certificate, PEM: what an image trusts.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A server's certificate and key.
pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        TestCa { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A server certificate for `names` (DNS names, or IP addresses such as 10.0.2.2).
    pub fn issue(&self, names: &[&str]) -> Identity {
        self.issue_with(names, false)
    }

    /// Like [`issue`](Self::issue), but valid only during 2020.
    pub fn issue_expired(&self, names: &[&str]) -> Identity {
        self.issue_with(names, true)
    }

    fn issue_with(&self, names: &[&str], expired: bool) -> Identity {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server certificate parameters");
        params.distinguished_name.push(DnType::CommonName, "keel e2e config server");
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("issue the server certificate");
        let key = PrivateKeyDer::try_from(key.serialize_der()).expect("server key DER");
        Identity { cert: cert.der().clone(), key }
    }
}

/// TLS 1.2/1.3 on the ring provider (explicit, as in the node), serving `id`.
pub fn server_config(id: &Identity) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![id.cert.clone()], id.key.clone_key())
        .expect("server certificate and key");
    Arc::new(config)
}

/// One file in a newc cpio archive (what the kernel unpacks), with the trailer.
fn newc_file(path: &str, mode: u32, data: &[u8]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    entry(&mut out, 1, 0o100000 | mode, path.trim_start_matches('/'), data);
    entry(&mut out, 2, 0, "TRAILER!!!", &[]);
    out
}

/// `build/initramfs.cpio.zst` with `/etc/keel/ca.pem` = `ca_pem` added, written to `out`.
pub fn initrd_with_ca(ca_pem: &[u8], out: &Path) -> PathBuf {
    initrd_with_file("/etc/keel/ca.pem", ca_pem, out)
}

/// `build/initramfs.cpio.zst` with the file `path` (mode 0644) = `data` added or replaced, written to `out`.
pub fn initrd_with_file(path: &str, data: &[u8], out: &Path) -> PathBuf {
    let production = crate::build_dir().join("initramfs.cpio.zst");
    let mut image = std::fs::read(&production)
        .unwrap_or_else(|e| panic!("{}: {e} (build it with 'make image')", production.display()));
    let mut zstd = Command::new("zstd")
        .args(["-q", "-c", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run zstd (make setup installs it)");
    let cpio = newc_file(path, 0o644, data);
    zstd.stdin.take().expect("zstd stdin").write_all(&cpio).expect("feed zstd");
    let extra = zstd.wait_with_output().expect("zstd output");
    assert!(extra.status.success() && !extra.stdout.is_empty(), "zstd failed");
    image.extend_from_slice(&extra.stdout);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).expect("make the initramfs directory");
    }
    std::fs::write(out, image).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    out.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_archive_is_what_cpio_reads() {
        let dir = std::env::temp_dir().join(format!("keel-newc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc/keel")).unwrap();
        let archive = newc_file("/etc/keel/ca.pem", 0o644, b"-----BEGIN CERTIFICATE-----\n");
        assert!(archive.len().is_multiple_of(4));
        let mut cpio = Command::new("cpio")
            .args(["-i", "--quiet", "-u"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .spawn()
            .expect("run cpio");
        cpio.stdin.take().unwrap().write_all(&archive).unwrap();
        assert!(cpio.wait().unwrap().success());
        assert_eq!(std::fs::read(dir.join("etc/keel/ca.pem")).unwrap(), b"-----BEGIN CERTIFICATE-----\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
