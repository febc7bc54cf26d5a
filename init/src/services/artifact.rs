//! Programs fetched by URL: kept in a content-addressed store (`<dir>/<sha256 hex>`) and run only after their
//! SHA-256 matched the config's.
//!
//! The bytes are checked every time a service gets its program, whether they came from the store (say, from an
//! earlier boot on the state volume) or from the network, and the checked bytes are copied into a sealed memfd
//! that the service executes. So what runs is exactly what was verified: nothing can change the file between
//! the check and the exec, and `/var`'s noexec mount does not matter. A mismatch is refused, never stored, and
//! a corrupt stored copy is deleted and fetched again.

use crate::config::http;
use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

/// The node's store (on the state volume once there is one; until then /var is in memory).
pub const STORE: &str = "/var/lib/keel/artifacts/sha256";
/// The largest artifact a node downloads (it is held in memory while it is checked).
pub const MAX_BYTES: usize = 64 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// memfd_create's MFD_EXEC (Linux 6.3+): an executable memfd, said explicitly so the kernel does not warn.
const MFD_EXEC: libc::c_uint = 0x10;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("bad artifact URL: {0}")]
    Url(#[from] http::UrlError),
    #[error("download: {0}")]
    Http(#[from] http::HttpError),
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: sha256 mismatch: expected {expected}, got {got}; refused")]
    Mismatch { url: String, expected: String, got: String },
    #[error("store {path}: {source}")]
    Store { path: PathBuf, source: std::io::Error },
    #[error("memfd: {0}")]
    Memfd(std::io::Error),
}

impl ArtifactError {
    /// A short code for log lines.
    pub fn code(&self) -> &'static str {
        match self {
            ArtifactError::Mismatch { .. } => "mismatch",
            ArtifactError::Url(_) | ArtifactError::Http(_) | ArtifactError::Status { .. } => "download",
            ArtifactError::Store { .. } => "store",
            ArtifactError::Memfd(_) => "memfd",
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A verified program, sealed in memory: execute it as `/proc/self/fd/<fd>` (the fd is close-on-exec, and the
/// kernel resolves the path before it closes the fd).
#[derive(Debug)]
pub struct Verified {
    pub fd: OwnedFd,
    pub sha256: String,
}

impl Verified {
    pub fn exec_path(&self) -> String {
        format!("/proc/self/fd/{}", self.fd.as_raw_fd())
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// The program whose SHA-256 is `sha256`: from the store if the stored copy is intact, else from `url` (and
    /// then stored).
    pub async fn get(&self, name: &str, url: &str, sha256: &str) -> Result<Verified, ArtifactError> {
        let path = self.path(sha256);
        if let Ok(bytes) = std::fs::read(&path) {
            let got = sha256_hex(&bytes);
            if got == sha256 {
                log::info!("artifact.cached name={name} sha256={sha256} bytes={}", bytes.len());
                return seal(name, &bytes, sha256);
            }
            log::warn!(
                "artifact.corrupt name={name} path={} expected={sha256} got={got} action=refetch",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
        }
        let parsed = http::parse_url(url)?;
        log::info!("artifact.fetch name={name} url={}", crate::logging::q(url));
        let response = http::get(&parsed, None, FETCH_TIMEOUT, MAX_BYTES).await?;
        if response.status != 200 {
            return Err(ArtifactError::Status { url: url.to_string(), status: response.status });
        }
        let got = sha256_hex(&response.body);
        if got != sha256 {
            return Err(ArtifactError::Mismatch { url: url.to_string(), expected: sha256.to_string(), got });
        }
        crate::controller::files::write_atomic(&path, &response.body, 0o444, None)
            .map_err(|source| ArtifactError::Store { path: path.clone(), source })?;
        log::info!(
            "artifact.verified name={name} sha256={sha256} bytes={} stored={}",
            response.body.len(),
            path.display()
        );
        seal(name, &response.body, sha256)
    }
}

/// Copies verified bytes into a memfd and seals it against any change.
pub fn seal(name: &str, bytes: &[u8], sha256: &str) -> Result<Verified, ArtifactError> {
    let label = CString::new(format!("keel-{name}")).map_err(|e| ArtifactError::Memfd(std::io::Error::other(e)))?;
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create with a valid C string; the returned fd is owned right away.
    let mut raw = unsafe { libc::memfd_create(label.as_ptr(), flags | MFD_EXEC) };
    if raw < 0 {
        // Kernels before 6.3 do not know MFD_EXEC (and make every memfd executable).
        // SAFETY: as above.
        raw = unsafe { libc::memfd_create(label.as_ptr(), flags) };
    }
    if raw < 0 {
        return Err(ArtifactError::Memfd(std::io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).map_err(ArtifactError::Memfd)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on an fd we own, with an integer argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(ArtifactError::Memfd(std::io::Error::last_os_error()));
    }
    Ok(Verified { fd: file.into(), sha256: sha256.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    /// Serves `body` to every connection; counts them.
    async fn serve(body: &'static [u8]) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/artifact", listener.local_addr().unwrap());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body).await;
            }
        });
        (url, hits)
    }

    fn store() -> (Store, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "keel-artifacts-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        (Store::new(&dir), dir)
    }

    #[test]
    fn digests_are_lowercase_hex() {
        assert_eq!(sha256_hex(b"hello"), HELLO_SHA256);
    }

    #[test]
    fn downloads_verifies_stores_then_reuses_and_refetches_a_corrupt_copy() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (url, hits) = serve(b"hello").await;
            let (store, dir) = store();
            let v = store.get("t", &url, HELLO_SHA256).await.unwrap();
            assert_eq!(v.sha256, HELLO_SHA256);
            assert_eq!(std::fs::read(store.path(HELLO_SHA256)).unwrap(), b"hello");
            // What the service would execute holds the verified bytes and cannot be changed.
            let mut sealed = std::fs::File::open(v.exec_path()).unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut sealed, &mut text).unwrap();
            assert_eq!(text, "hello");
            let writable = std::fs::OpenOptions::new().write(true).open(v.exec_path());
            assert!(writable.and_then(|mut f| f.write_all(b"x")).is_err(), "the memfd must be sealed");
            // Reused without a download.
            store.get("t", &url, HELLO_SHA256).await.unwrap();
            assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
            // A corrupt stored copy is fetched again.
            std::fs::write(store.path(HELLO_SHA256), b"evil!").unwrap();
            store.get("t", &url, HELLO_SHA256).await.unwrap();
            assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
            assert_eq!(std::fs::read(store.path(HELLO_SHA256)).unwrap(), b"hello");
            let _ = std::fs::remove_dir_all(dir);
        });
    }

    #[test]
    fn a_mismatch_is_refused_and_never_stored() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (url, _) = serve(b"tampered").await;
            let (store, dir) = store();
            let err = store.get("t", &url, HELLO_SHA256).await.unwrap_err();
            assert_eq!(err.code(), "mismatch");
            assert!(err.to_string().contains(&format!("expected {HELLO_SHA256}, got {}", sha256_hex(b"tampered"))));
            assert!(!store.path(HELLO_SHA256).exists());
            let _ = std::fs::remove_dir_all(dir);
        });
    }
}
