//! A real OCI registry for the image-service tests: Debian's `docker-registry` (the CNCF distribution registry) on
//! the host's loopback with TLS from a throwaway CA (its certificate names 10.0.2.2, where a guest reaches the
//! host), optionally htpasswd-protected, and small OCI images written here (an uncompressed tar layer, an OCI
//! layout) and pushed with `skopeo`.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// bcrypt of "s3cret" for user keel (docker-registry's htpasswd takes bcrypt only).
const HTPASSWD: &str = "keel:$2b$12$c11e2Ym6M3P9S11gFN7dwO2mmK0Hu2PjyHimUvkeE11UuCsTdcmSi\n";
/// The htpasswd registry's credentials, `user:password`.
pub const CREDS: &str = "keel:s3cret";

/// `n` bytes no compressor shrinks (xorshift), so a layer made of them is the size it says.
pub fn incompressible(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

pub struct TestRegistry {
    pub dir: PathBuf,
    pub port: u16,
    /// The CA the registry's certificate chains to (the node's `[[registry]] ca`).
    pub ca_pem: String,
    child: Child,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestRegistry {
    pub fn start(name: &str, htpasswd: bool) -> TestRegistry {
        let dir = std::env::temp_dir().join(format!("keel-e2e-registry-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("registry dir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "keel e2e registry CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let names = vec!["10.0.2.2".to_string(), "127.0.0.1".to_string()];
        let leaf = CertificateParams::new(names).expect("leaf params").signed_by(&leaf_key, &issuer).expect("leaf");
        std::fs::write(dir.join("cert.pem"), leaf.pem()).expect("write cert");
        std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).expect("write key");
        let port = crate::free_port();
        let auth = if htpasswd {
            std::fs::write(dir.join("htpasswd"), HTPASSWD).expect("write htpasswd");
            format!("auth:\n  htpasswd:\n    realm: keel-test\n    path: {}\n", dir.join("htpasswd").display())
        } else {
            String::new()
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {dir}/cert.pem\n    key: {dir}/key.pem\n{auth}",
            data = dir.join("data").display(),
            dir = dir.display(),
        );
        std::fs::write(dir.join("config.yml"), config).expect("write registry config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .args(["serve", &dir.join("config.yml").to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt: docker-registry; make setup installs it)");
        let reg = TestRegistry { dir, port, ca_pem: ca_cert.pem(), child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {port} within 30 s: {}",
                std::fs::read_to_string(reg.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// The registry as a guest names it.
    pub fn guest_host(&self) -> String {
        format!("10.0.2.2:{}", self.port)
    }

    /// Pushes the OCI layout at `layout` (tag `v1`) as `repo:v1`, digests unchanged.
    pub fn push(&self, layout: &Path, repo: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        cmd.arg(format!("oci:{}:v1", layout.display())).arg(format!("docker://127.0.0.1:{}/{repo}:v1", self.port));
        let out = cmd.output().expect("skopeo (apt: skopeo; make setup installs it)");
        assert!(out.status.success(), "skopeo copy failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The registry's file for a blob (to tamper with).
    pub fn blob_file(&self, hex: &str) -> PathBuf {
        self.dir.join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

/// A tar of regular files and directories: (path, content, mode); a path ending in '/' is a directory.
pub fn tar(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(name, body, mode) in entries {
        let mut b = vec![0u8; 512];
        b[..name.len()].copy_from_slice(name.as_bytes());
        let field = |b: &mut Vec<u8>, at: usize, width: usize, v: u64| {
            b[at..at + width].copy_from_slice(format!("{v:0w$o}\0", w = width - 1).as_bytes());
        };
        let dir = name.ends_with('/');
        let size = if dir { 0 } else { body.len() as u64 };
        field(&mut b, 100, 8, u64::from(mode));
        field(&mut b, 108, 8, 0);
        field(&mut b, 116, 8, 0);
        field(&mut b, 124, 12, size);
        field(&mut b, 136, 12, 1_700_000_000);
        b[156] = if dir { b'5' } else { b'0' };
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&b);
        if size > 0 {
            out.extend_from_slice(body);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A written OCI image layout: its manifest digest and its layers' digests.
pub struct Image {
    pub manifest_hex: String,
    pub layers_hex: Vec<String>,
}

/// Writes an OCI layout at `dir` with uncompressed tar `layers` and `run_config` as the image config's
/// `config` object (Entrypoint, Cmd, Env, …).
pub fn layout(dir: &Path, layers: &[Vec<u8>], run_config: &str) -> Image {
    let _ = std::fs::remove_dir_all(dir);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("layout dir");
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).expect("write blob");
        hex
    };
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("\"sha256:{}\"", sha256_hex(l))).collect();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{run_config},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let config_hex = put(config.as_bytes());
    let mut layers_hex = Vec::new();
    let mut descs = Vec::new();
    for layer in layers {
        let hex = put(layer);
        descs.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{hex}","size":{}}}"#,
            layer.len()
        ));
        layers_hex.push(hex);
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_hex}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        descs.join(",")
    );
    let manifest_hex = put(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest_hex}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#,
        manifest.len()
    );
    std::fs::write(dir.join("index.json"), index).expect("index.json");
    Image { manifest_hex, layers_hex }
}
