//! OCI images for services: pull by digest from a registry into a content-addressed store on the state volume,
//! unpack into one read-only rootfs per image, and garbage-collect what no config names any more.
//!
//! Store (`/var/lib/keel/oci/`, [`STORE`]):
//! - `blobs/sha256/<hex>`: verified blobs (index, manifest, config, layers). A blob is streamed to
//!   `<hex>.partial` while its SHA-256 is computed and renamed into place only when the digest matches; a
//!   `.partial` left by a failure or a power cut is resumed with `Range:` (its bytes are hashed first).
//! - `rootfs/<manifest hex>/`: the layers applied in order, whiteouts honoured, owned as the layers say.
//!   `rootfs/<manifest hex>.complete` (fsynced, after a syncfs of the tree) is written last; a rootfs without it
//!   is removed and unpacked again by the next [`ensure`].
//!
//! Unpacked dir, not overlayfs (chosen on reasoning, not yet measured side by side): overlayfs would still
//! unpack each layer into a directory of its own, then need a mount per image recreated at every boot and
//! overlayfs in the kernel; it saves disk only when images share layers. A plain directory is what the runner
//! bind-mounts read-only and pivots into, and it is ready after a power cut without any mount. Layer blobs are
//! kept (content-addressed, shared between images) so a damaged rootfs is redone without the network; [`gc`]
//! removes what no kept image needs.
//!
//! Setuid/setgid bits are always dropped at unpack: the rootfs is shared by every service naming the image, so
//! a per-service allowance would need a rootfs per policy (keel_oci::unpack::Options has the switch).
//!
//! Everything blocking (file writes, hashing, fsync, decompression, unpacking) runs off the event loop; pulls
//! and gc take one lock so they never see each other's half-written state.

mod http_stream;
mod pull;
mod registry;
mod store;
mod unpack;

#[cfg(test)]
mod registry_fixture;
#[cfg(test)]
mod root_tests;

use keel_oci::{ImageConfig, Reference};
use std::path::{Path, PathBuf};
use tokio::sync::watch;

pub use store::STORE;

/// What to pull, as the config names it. Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct PullSpec {
    pub reference: Reference,
    /// http:// instead of https:// (only for a registry the config marks as such).
    pub plain_http: bool,
    /// A secret for the registry: `user:password` (HTTP Basic, for the registry or its token service, e.g.
    /// docker-registry's htpasswd auth), or a token sent as `Authorization: Bearer` to the token service.
    pub token: Option<String>,
    /// CA certificates (PEM) for this registry, instead of the image's bundle.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for PullSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullSpec")
            .field("reference", &self.reference.to_string())
            .field("plain_http", &self.plain_http)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| format!("<{} bytes>", p.len())))
            .finish()
    }
}

/// An image ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// `sha256:<hex>` of the image manifest (resolved from an index for linux/amd64).
    pub manifest_digest: String,
    /// The unpacked root filesystem; the runner mounts it read-only.
    pub rootfs: PathBuf,
    pub config: ImageConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullProgress {
    /// Blob bytes in the store (including what an earlier attempt left).
    pub done: u64,
    /// Blob bytes the image has in all (0 until the manifest is known).
    pub total: u64,
}

impl PullProgress {
    /// 0..=100; 0 while the total is unknown.
    pub fn percent(&self) -> u8 {
        if self.total == 0 {
            return 0;
        }
        ((self.done.min(self.total) as u128 * 100) / self.total as u128) as u8
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("digest mismatch: {0}")]
    DigestMismatch(String),
    #[error("out of space: {0}")]
    OutOfSpace(String),
    #[error("network: {0}")]
    Network(String),
    #[error("bad manifest: {0}")]
    BadManifest(String),
    #[error("unsafe layer: {0}")]
    UnsafeLayer(String),
    #[error("no linux/amd64 image in {0}")]
    NoPlatform(String),
}

impl PullError {
    /// The reason shown in service status.
    pub fn code(&self) -> &'static str {
        match self {
            PullError::NotFound(_) => "not-found",
            PullError::Unauthorized(_) => "unauthorized",
            PullError::DigestMismatch(_) => "digest-mismatch",
            PullError::OutOfSpace(_) => "out-of-space",
            PullError::Network(_) => "network",
            PullError::BadManifest(_) => "bad-manifest",
            PullError::UnsafeLayer(_) => "unsafe-layer",
            PullError::NoPlatform(_) => "no-platform",
        }
    }

    /// A local I/O error while writing the store: out of space, or (anything else) reported as a network-class
    /// failure that a retry may clear.
    pub(crate) fn from_io(what: &str, e: &std::io::Error) -> PullError {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => PullError::OutOfSpace(format!("{what}: {e}")),
            _ => PullError::Network(format!("{what}: {e}")),
        }
    }
}

/// Makes sure the image is in the store, complete and unpacked; returns at once when it already is.
pub async fn ensure(spec: &PullSpec, progress: &watch::Sender<PullProgress>) -> Result<Pulled, PullError> {
    ensure_in(Path::new(STORE), spec, progress).await
}

/// [`ensure`] against the store at `root` (tests use a temporary one).
pub async fn ensure_in(
    root: &Path,
    spec: &PullSpec,
    progress: &watch::Sender<PullProgress>,
) -> Result<Pulled, PullError> {
    let _one_at_a_time = store::LOCK.lock().await;
    pull::ensure_locked(root, spec, progress).await
}

/// Removes images and blobs that none of `keep` needs.
pub async fn gc(keep: &[Reference]) {
    gc_in(Path::new(STORE), keep).await
}

/// [`gc`] against the store at `root`.
pub async fn gc_in(root: &Path, keep: &[Reference]) {
    let _one_at_a_time = store::LOCK.lock().await;
    let root = root.to_path_buf();
    let keep = keep.to_vec();
    match crate::fsutil::off_loop("oci gc", move || store::gc(&root, &keep)).await {
        Ok(stats) => {
            if stats.blobs + stats.rootfs > 0 {
                log::info!(
                    "oci.gc removed_blobs={} removed_rootfs={} freed_bytes={}",
                    stats.blobs,
                    stats.rootfs,
                    stats.bytes
                )
            }
        }
        Err(e) => log::warn!("oci.gc_failed error={e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_percent_and_codes() {
        assert_eq!(PullProgress { done: 37, total: 100 }.percent(), 37);
        assert_eq!(PullProgress { done: 5, total: 0 }.percent(), 0);
        assert_eq!(PullProgress { done: u64::MAX, total: u64::MAX }.percent(), 100);
        assert_eq!(PullProgress { done: 200, total: 100 }.percent(), 100);
        let codes: Vec<_> = [
            PullError::NotFound(String::new()),
            PullError::Unauthorized(String::new()),
            PullError::DigestMismatch(String::new()),
            PullError::OutOfSpace(String::new()),
            PullError::Network(String::new()),
            PullError::BadManifest(String::new()),
            PullError::UnsafeLayer(String::new()),
            PullError::NoPlatform(String::new()),
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert_eq!(
            codes,
            [
                "not-found",
                "unauthorized",
                "digest-mismatch",
                "out-of-space",
                "network",
                "bad-manifest",
                "unsafe-layer",
                "no-platform"
            ]
        );
        let r = Reference::parse(&format!("r.example/a@sha256:{}", "b".repeat(64))).unwrap();
        let spec = PullSpec { reference: r, plain_http: false, token: Some("keel:s3cret".into()), ca_pem: None };
        assert!(!format!("{spec:?}").contains("s3cret"), "{spec:?}");
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(PullError::from_io("blobs/x", &full).code(), "out-of-space");
    }
}
