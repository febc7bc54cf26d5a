//! Test fixtures for the OCI root tests: a real registry (Debian's `docker-registry`, the CNCF distribution
//! registry) on 127.0.0.1 with TLS from a throwaway CA, optionally htpasswd-protected, and small OCI images
//! written here (tar, gzip, zstd, an OCI layout) and pushed with `skopeo`.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// bcrypt of "s3cret" (docker-registry's htpasswd takes bcrypt only), made once with Python's crypt module.
const HTPASSWD: &str = "keel:$2b$12$c11e2Ym6M3P9S11gFN7dwO2mmK0Hu2PjyHimUvkeE11UuCsTdcmSi\n";
pub const CREDS: &str = "keel:s3cret";

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

pub struct TestRegistry {
    pub dir: PathBuf,
    pub port: u16,
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

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl TestRegistry {
    pub fn start(name: &str, htpasswd: bool) -> TestRegistry {
        let dir = std::env::temp_dir().join(format!("keel-oci-registry-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "keel test registry CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf =
            CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
        std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
        let port = free_port();
        let auth = if htpasswd {
            std::fs::write(dir.join("htpasswd"), HTPASSWD).unwrap();
            format!("auth:\n  htpasswd:\n    realm: keel-test\n    path: {}\n", dir.join("htpasswd").display())
        } else {
            String::new()
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {dir}/cert.pem\n    key: {dir}/key.pem\n{auth}",
            data = dir.join("data").display(),
            dir = dir.display(),
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", &dir.join("config.yml").to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
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

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes the OCI layout at `layout` (tag `v1`) as `repo:v1`, digests unchanged.
    pub fn push(&self, layout: &Path, repo: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        cmd.arg(format!("oci:{}:v1", layout.display())).arg(format!("docker://{}/{repo}:v1", self.host()));
        let out = cmd.output().expect("skopeo (apt: skopeo; make setup installs it)");
        assert!(out.status.success(), "skopeo copy failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The registry's file for a blob (to tamper with).
    pub fn blob_file(&self, hex: &str) -> PathBuf {
        self.dir.join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

/// One tar entry for [`tar`]: (path, typeflag, content or link target, mode, uid).
pub type TarEntry<'a> = (&'a str, u8, &'a [u8], u32, u64);

pub fn tar(entries: &[TarEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(name, typeflag, body, mode, uid) in entries {
        let mut b = vec![0u8; 512];
        b[..name.len()].copy_from_slice(name.as_bytes());
        let field = |b: &mut Vec<u8>, at: usize, width: usize, v: u64| {
            b[at..at + width].copy_from_slice(format!("{v:0w$o}\0", w = width - 1).as_bytes());
        };
        let is_link = typeflag == b'1' || typeflag == b'2';
        let size = if typeflag == b'0' { body.len() as u64 } else { 0 };
        field(&mut b, 100, 8, mode as u64);
        field(&mut b, 108, 8, uid);
        field(&mut b, 116, 8, uid);
        field(&mut b, 124, 12, size);
        field(&mut b, 136, 12, 1_700_000_000);
        b[156] = typeflag;
        if is_link {
            b[157..157 + body.len()].copy_from_slice(body);
        }
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|&x| x as u64).sum();
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

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// A written OCI image layout: its manifest digest and the digests of its layers.
pub struct Image {
    /// The image index wrapping the manifest, when [`layout`] was asked for one.
    pub index_hex: Option<String>,
    pub manifest_hex: String,
    pub config_hex: String,
    pub layers_hex: Vec<String>,
}

/// Writes an OCI layout at `dir` with the given layers ((media type suffix, compressed, uncompressed)); with
/// `index_arch`, tag `v1` names an image index listing the manifest for linux/<arch>.
pub fn layout(dir: &Path, layers: &[(&str, Vec<u8>, Vec<u8>)], index_arch: Option<&str>) -> Image {
    let _ = std::fs::remove_dir_all(dir);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        hex
    };
    let diff_ids: Vec<String> = layers.iter().map(|(_, _, raw)| format!("\"sha256:{}\"", sha256_hex(raw))).collect();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Entrypoint":["/bin/app"],"Cmd":["--port","8080"],"Env":["PATH=/bin","GREETING=hi"],"WorkingDir":"/srv","User":"1000:1000"}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let config_hex = put(config.as_bytes());
    let mut layers_hex = Vec::new();
    let mut descs = Vec::new();
    for (suffix, blob, _) in layers {
        let hex = put(blob);
        descs.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar{suffix}","digest":"sha256:{hex}","size":{}}}"#,
            blob.len()
        ));
        layers_hex.push(hex);
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_hex}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        descs.join(",")
    );
    let manifest_hex = put(manifest.as_bytes());
    let mut top = ("application/vnd.oci.image.manifest.v1+json", manifest_hex.clone(), manifest.len());
    let index_hex = index_arch.map(|arch| {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest_hex}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}}}}]}}"#,
            manifest.len()
        );
        let hex = put(index.as_bytes());
        top = ("application/vnd.oci.image.index.v1+json", hex.clone(), index.len());
        hex
    });
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"sha256:{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#,
            top.0, top.1, top.2
        ),
    )
    .unwrap();
    Image { index_hex, manifest_hex, config_hex, layers_hex }
}
