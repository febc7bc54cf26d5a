//! One pull: resolve the reference to a linux/amd64 manifest, fetch and verify every blob into the store
//! (resuming partial ones), unpack the layers into the rootfs, mark it complete. Network failures are retried
//! with the init's backoff a bounded number of times; anything else fails at once with its reason.

use super::registry::{error_text, Registry};
use super::store;
use super::{PullError, PullProgress, PullSpec, Pulled};
use crate::fsutil::off_loop;
use crate::retry::Backoff;
use keel_oci::manifest::{parse_manifest, Fetched, Manifest, ACCEPT, MAX_MANIFEST_BYTES};
use keel_oci::{Digest, ImageConfig};
use sha2::Digest as _;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Tries per `ensure` when the network fails (each one resumes where the last stopped).
const ATTEMPTS: u32 = 4;

/// Bytes of a blob written between two `fdatasync`s of its partial file: a power cut loses at most this much
/// of a pull (the page cache goes with it), while the cost stays one flush per few MiB.
const SYNC_EVERY: u64 = 4 << 20;

/// When the blob writer flushes: counts bytes since the last flush and says when one is due.
#[derive(Debug, Default)]
struct SyncCadence {
    since: u64,
}

impl SyncCadence {
    /// Records `n` more bytes written; true when they bring the unflushed amount to `SYNC_EVERY` or more
    /// (the count then restarts from zero: the caller flushes now).
    fn wrote(&mut self, n: u64) -> bool {
        self.since += n;
        if self.since >= SYNC_EVERY {
            self.since = 0;
            return true;
        }
        false
    }
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, PullError> + Send + 'static,
) -> Result<T, PullError> {
    off_loop(what, f).await.map_err(PullError::Network)?
}

pub async fn ensure_locked(
    root: &Path,
    spec: &PullSpec,
    progress: &watch::Sender<PullProgress>,
) -> Result<Pulled, PullError> {
    if let Some(done) = already(root, spec).await {
        return Ok(done);
    }
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(15));
    let mut attempt = 0;
    loop {
        attempt += 1;
        match pull(root, spec, progress).await {
            Ok(p) => return Ok(p),
            Err(PullError::Network(why)) if attempt < ATTEMPTS => {
                let wait = backoff.failed();
                log::warn!("oci.pull_retry image={} attempt={attempt} wait={wait:?} error={why:?}", spec.reference);
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                log::warn!("oci.pull_failed image={} reason={} error={:?}", spec.reference, e.code(), e.to_string());
                return Err(e);
            }
        }
    }
}

/// The stored manifest for the reference (resolving a stored index), without the network.
fn local_manifest(root: &Path, d: &Digest) -> Option<(Digest, Manifest)> {
    let mut digest = d.clone();
    for _ in 0..2 {
        let body = store::read_small_blob(root, &digest, MAX_MANIFEST_BYTES)?;
        match parse_manifest(None, &body).ok()? {
            Fetched::Index(i) => digest = i.linux_amd64()?.digest.clone(),
            Fetched::Manifest(m) => return Some((digest, m)),
        }
    }
    None
}

async fn already(root: &Path, spec: &PullSpec) -> Option<Pulled> {
    let (root, d) = (root.to_path_buf(), spec.reference.digest.clone());
    off_loop("oci lookup", move || {
        let (mdigest, _) = local_manifest(&root, &d)?;
        let config = store::completed_config(&root, &mdigest)?;
        let body = store::read_small_blob(&root, &config, MAX_MANIFEST_BYTES)?;
        let config = ImageConfig::parse(&body).ok()?;
        Some(Pulled { manifest_digest: mdigest.to_string(), rootfs: store::rootfs_path(&root, &mdigest), config })
    })
    .await
    .ok()
    .flatten()
}

/// GETs a small document (manifest or config) by digest, verifies it and stores it.
async fn fetch_small(
    reg: &mut Registry,
    root: &Path,
    path: String,
    d: &Digest,
    accept: Option<&str>,
) -> Result<(Option<String>, Vec<u8>), PullError> {
    let headers: Vec<(&str, String)> = accept.map(|a| ("Accept", a.to_string())).into_iter().collect();
    let (head, body) = reg.get(path, &headers).await?;
    let what = format!("{d} from {}", head.get("content-location").unwrap_or("the registry"));
    match head.status {
        200 => {}
        404 => return Err(PullError::NotFound(format!("{d}{}", error_text(body).await))),
        s => return Err(PullError::Network(format!("{what}: status {s}{}", error_text(body).await))),
    }
    let content_type = head.get("content-type").map(str::to_string);
    let bytes = body.read_all(MAX_MANIFEST_BYTES).await.map_err(|e| match e {
        crate::config::http::HttpError::TooLarge(..) => {
            PullError::BadManifest(format!("{d}: larger than {MAX_MANIFEST_BYTES} bytes"))
        }
        e => PullError::Network(e.to_string()),
    })?;
    let got = store::hex_of(sha2::Sha256::new_with_prefix(&bytes));
    if got != d.hex {
        return Err(PullError::DigestMismatch(format!("{d}: the registry sent content with digest sha256:{got}")));
    }
    let (root2, d2, b2) = (root.to_path_buf(), d.clone(), bytes.clone());
    blocking("store blob", move || {
        store::put_small_blob(&root2, &d2, &b2).map_err(|e| PullError::from_io(&format!("storing {d2}"), &e))
    })
    .await?;
    Ok((content_type, bytes))
}

async fn pull(root: &Path, spec: &PullSpec, progress: &watch::Sender<PullProgress>) -> Result<Pulled, PullError> {
    let r = &spec.reference;
    let mut reg = Registry::new(spec)?;
    let (ctype, body) = fetch_small(&mut reg, root, r.manifest_path(), &r.digest, Some(ACCEPT)).await?;
    let bad = |e: keel_oci::ManifestError| PullError::BadManifest(format!("{r}: {e}"));
    let (mdigest, manifest) = match parse_manifest(ctype.as_deref(), &body).map_err(bad)? {
        Fetched::Manifest(m) => (r.digest.clone(), m),
        Fetched::Index(index) => {
            let d = index.linux_amd64().ok_or_else(|| PullError::NoPlatform(r.to_string()))?.digest.clone();
            let path = format!("/v2/{}/manifests/{d}", r.repository);
            let (ctype, body) = fetch_small(&mut reg, root, path, &d, Some(ACCEPT)).await?;
            match parse_manifest(ctype.as_deref(), &body).map_err(bad)? {
                Fetched::Manifest(m) => (d, m),
                Fetched::Index(_) => return Err(PullError::BadManifest(format!("{r}: an index inside an index"))),
            }
        }
    };
    let total = manifest.total_size();
    progress.send_replace(PullProgress { done: 0, total });
    let (_, config_bytes) =
        fetch_small(&mut reg, root, r.blob_path(&manifest.config.digest), &manifest.config.digest, None).await?;
    let config = ImageConfig::parse(&config_bytes).map_err(|e| PullError::BadManifest(format!("{r}: {e}")))?;
    if !config.os.is_empty() && (config.os != "linux" || config.architecture != "amd64") {
        return Err(PullError::NoPlatform(format!("{r} is {}/{}", config.os, config.architecture)));
    }
    let mut done = manifest.config.size;
    progress.send_replace(PullProgress { done, total });
    for layer in &manifest.layers {
        fetch_blob(&mut reg, root, r.blob_path(&layer.digest), &layer.digest, layer.size, progress, done, total)
            .await?;
        done += layer.size;
        progress.send_replace(PullProgress { done, total });
    }
    let (root2, m2, mf, cd) = (root.to_path_buf(), mdigest.clone(), manifest.clone(), manifest.config.digest.clone());
    blocking("oci unpack", move || super::unpack::build_rootfs(&root2, &m2, &mf, &cd)).await?;
    log::info!("oci.pulled image={r} manifest={mdigest} layers={} bytes={total}", manifest.layers.len());
    Ok(Pulled { manifest_digest: mdigest.to_string(), rootfs: store::rootfs_path(root, &mdigest), config })
}

/// Removes a partial blob that cannot be resumed (best effort: a leftover is re-hashed or replaced next time).
async fn discard(partial: PathBuf) {
    let _ = off_loop("blob discard", move || std::fs::remove_file(&partial)).await;
}

enum Piece {
    Data(Vec<u8>),
    Finish,
}

/// What the writer thread saw: the blob verified and in place, or left partial for a resume.
enum Written {
    Complete,
    Partial,
}

/// Streams one blob into `<hex>.partial` (appending to what an earlier try left when the registry honours
/// `Range:`), hashing as it goes off the event loop, and renames it into place only when the digest matches.
#[allow(clippy::too_many_arguments)]
async fn fetch_blob(
    reg: &mut Registry,
    root: &Path,
    path: String,
    d: &Digest,
    size: u64,
    progress: &watch::Sender<PullProgress>,
    done_before: u64,
    total: u64,
) -> Result<(), PullError> {
    let (final_path, partial) = (store::blob_path(root, d), store::partial_path(root, d));
    let (fp, pp, dir) = (final_path.clone(), partial.clone(), store::blob_dir(root));
    let have = blocking("blob stat", move || {
        std::fs::create_dir_all(&dir).map_err(|e| PullError::from_io(&dir.display().to_string(), &e))?;
        if fp.exists() {
            return Ok(None);
        }
        Ok(Some(std::fs::metadata(&pp).map(|m| m.len()).unwrap_or(0)))
    })
    .await?;
    let Some(mut offset) = have else { return Ok(()) };
    if offset > size {
        offset = 0;
    }
    let mut headers = Vec::new();
    if offset > 0 {
        headers.push(("Range", format!("bytes={offset}-")));
    }
    let (head, mut body) = reg.get(path, &headers).await?;
    match head.status {
        200 => offset = 0,
        206 if head.get("content-range").is_some_and(|v| v.starts_with(&format!("bytes {offset}-"))) => {}
        206 => return Err(PullError::Network(format!("{d}: a Content-Range that does not start at {offset}"))),
        404 => return Err(PullError::NotFound(format!("blob {d}{}", error_text(body).await))),
        416 => {
            let pp = partial.clone();
            discard(pp).await;
            return Err(PullError::Network(format!("{d}: the registry refused to resume at byte {offset}")));
        }
        s => return Err(PullError::Network(format!("blob {d}: status {s}{}", error_text(body).await))),
    }
    log::info!("oci.blob_fetch digest={d} size={size} resume_at={offset}");
    let (tx, rx) = mpsc::channel::<Piece>(4);
    let writer = tokio::spawn(off_loop("blob write", {
        let (partial, final_path, d) = (partial.clone(), final_path.clone(), d.clone());
        move || write_blob(rx, &partial, &final_path, &d, offset)
    }));
    let mut got = offset;
    let mut failure = None;
    loop {
        match body.next().await {
            Ok(Some(piece)) => {
                got += piece.len() as u64;
                if got > size {
                    failure = Some(PullError::DigestMismatch(format!("{d}: the registry sent more than {size} bytes")));
                    break;
                }
                if tx.send(Piece::Data(piece)).await.is_err() {
                    break; // the writer failed; its error is reported below
                }
                progress.send_replace(PullProgress { done: done_before + got, total });
            }
            Ok(None) => {
                let _ = tx.send(Piece::Finish).await;
                break;
            }
            Err(e) => {
                failure = Some(PullError::Network(format!("blob {d}: {e}")));
                break;
            }
        }
    }
    drop(tx);
    let written =
        writer.await.map_err(|e| PullError::Network(format!("blob {d}: {e}")))?.map_err(PullError::Network)?;
    if let Some(PullError::DigestMismatch(why)) = failure {
        let pp = partial.clone();
        discard(pp).await;
        return Err(PullError::DigestMismatch(why));
    }
    match (written?, failure) {
        (_, Some(e)) => Err(e),
        (Written::Complete, None) => Ok(()),
        (Written::Partial, None) => Err(PullError::Network(format!("blob {d}: the transfer stopped early"))),
    }
}

fn write_blob(
    mut rx: mpsc::Receiver<Piece>,
    partial: &PathBuf,
    final_path: &PathBuf,
    d: &Digest,
    offset: u64,
) -> Result<Written, PullError> {
    let io = |e: std::io::Error| PullError::from_io(&partial.display().to_string(), &e);
    let mut file =
        std::fs::OpenOptions::new().create(true).write(true).read(true).truncate(false).open(partial).map_err(io)?;
    let mut hash = sha2::Sha256::new();
    if offset > 0 {
        // Hash what is already there (exactly `offset` bytes), then append after it.
        let (h, n) = store::sha256_of(std::io::Read::take(&mut file, offset)).map_err(io)?;
        if n != offset {
            return Err(PullError::Network(format!("{}: shorter than expected", partial.display())));
        }
        hash = h;
    }
    file.set_len(offset).map_err(io)?;
    file.seek(std::io::SeekFrom::Start(offset)).map_err(io)?;
    let mut finished = false;
    let (mut cadence, mut written, mut dir_synced) = (SyncCadence::default(), offset, false);
    while let Some(piece) = rx.blocking_recv() {
        match piece {
            Piece::Data(bytes) => {
                hash.update(&bytes);
                file.write_all(&bytes).map_err(io)?;
                written += bytes.len() as u64;
                if cadence.wrote(bytes.len() as u64) {
                    // The prefix on disk is what the next boot resumes from after a power cut.
                    file.sync_data().map_err(io)?;
                    if !dir_synced {
                        if let Some(dir) = partial.parent() {
                            store::sync_dir(dir).map_err(io)?;
                        }
                        dir_synced = true;
                    }
                    log::info!("oci.blob_synced digest={d} bytes={written}");
                }
            }
            Piece::Finish => {
                finished = true;
                break;
            }
        }
    }
    file.sync_all().map_err(io)?;
    if !finished {
        return Ok(Written::Partial);
    }
    drop(file);
    let got = store::hex_of(hash);
    if got != d.hex {
        let _ = std::fs::remove_file(partial);
        return Err(PullError::DigestMismatch(format!("blob {d}: the registry sent content with digest sha256:{got}")));
    }
    std::fs::rename(partial, final_path).map_err(io)?;
    if let Some(dir) = final_path.parent() {
        store::sync_dir(dir).map_err(io)?;
    }
    Ok(Written::Complete)
}

#[cfg(test)]
mod tests {
    use super::{SyncCadence, SYNC_EVERY};

    #[test]
    fn the_partial_blob_is_flushed_once_per_sync_interval_whatever_the_piece_sizes() {
        let mut c = SyncCadence::default();
        let piece = 16 << 10;
        let flushes = (0..(3 * SYNC_EVERY / piece)).filter(|_| c.wrote(piece)).count();
        assert_eq!(flushes, 3, "one flush per {SYNC_EVERY} bytes written in {piece}-byte pieces");
        assert!(!c.wrote(SYNC_EVERY - 1), "less than an interval since the last flush");
        assert!(c.wrote(1), "the byte that completes the interval");
        assert!(c.wrote(5 * SYNC_EVERY), "one large piece is flushed at once");
        assert!(!c.wrote(1), "the count restarts after a flush");
    }
}
