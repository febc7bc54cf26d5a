//! The content-addressed store's layout, its durable writes, and garbage collection (blocking; callers run it
//! off the event loop). See mod.rs for the layout.

use keel_oci::manifest::{parse_manifest, Fetched};
use keel_oci::{Digest, Reference};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The store on the state volume.
pub const STORE: &str = "/var/lib/keel/oci";

/// One pull or gc at a time.
pub static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn blob_dir(root: &Path) -> PathBuf {
    root.join("blobs/sha256")
}

pub fn blob_path(root: &Path, d: &Digest) -> PathBuf {
    blob_dir(root).join(&d.hex)
}

pub fn partial_path(root: &Path, d: &Digest) -> PathBuf {
    blob_dir(root).join(format!("{}.partial", d.hex))
}

pub fn rootfs_path(root: &Path, manifest: &Digest) -> PathBuf {
    root.join("rootfs").join(&manifest.hex)
}

pub fn complete_marker(root: &Path, manifest: &Digest) -> PathBuf {
    root.join("rootfs").join(format!("{}.complete", manifest.hex))
}

/// fsyncs a directory so a rename or create inside it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// SHA-256 of a reader, streaming.
pub fn sha256_of(mut r: impl Read) -> std::io::Result<(Sha256, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut n_total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((h, n_total));
        }
        h.update(&buf[..n]);
        n_total += n as u64;
    }
}

pub fn hex_of(h: Sha256) -> String {
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a small verified blob (manifest, config) durably, with the init's one atomic write.
pub fn put_small_blob(root: &Path, d: &Digest, bytes: &[u8]) -> std::io::Result<()> {
    crate::safe_fs::write_atomic(&blob_path(root, d), bytes, 0o644, None)
}

/// A stored blob's bytes, bounded (manifests and configs only).
pub fn read_small_blob(root: &Path, d: &Digest, max: usize) -> Option<Vec<u8>> {
    let f = fs::File::open(blob_path(root, d)).ok()?;
    let mut out = Vec::new();
    f.take(max as u64 + 1).read_to_end(&mut out).ok()?;
    (out.len() <= max).then_some(out)
}

/// Marks a rootfs complete: syncfs of its tree, then the marker, fsynced, then its directory.
pub fn mark_complete(root: &Path, manifest: &Digest, config: &Digest) -> std::io::Result<()> {
    let tree = fs::File::open(rootfs_path(root, manifest))?;
    // SAFETY: syncfs on a valid open descriptor.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&tree)) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    crate::safe_fs::write_atomic(&complete_marker(root, manifest), format!("{config}\n").as_bytes(), 0o644, None)
}

/// The config digest a complete rootfs was made with, if it is complete.
pub fn completed_config(root: &Path, manifest: &Digest) -> Option<Digest> {
    let text = fs::read_to_string(complete_marker(root, manifest)).ok()?;
    Digest::parse(text.trim()).ok()
}

/// Removes a directory tree that may hold read-only directories (PID 1 is root, so permissions do not stop it).
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The blobs and the rootfs an image in the store needs, found by reading its stored manifests.
fn needed(root: &Path, r: &Reference, blobs: &mut HashSet<String>, rootfs: &mut HashSet<String>) {
    let max = keel_oci::manifest::MAX_MANIFEST_BYTES;
    let mut digest = r.digest.clone();
    for _ in 0..2 {
        blobs.insert(digest.hex.clone());
        let Some(body) = read_small_blob(root, &digest, max) else { return };
        match parse_manifest(None, &body) {
            Ok(Fetched::Index(i)) => match i.linux_amd64() {
                Some(m) => digest = m.digest.clone(),
                None => return,
            },
            Ok(Fetched::Manifest(m)) => {
                rootfs.insert(digest.hex.clone());
                blobs.insert(m.config.digest.hex.clone());
                blobs.extend(m.layers.iter().map(|l| l.digest.hex.clone()));
                return;
            }
            Err(_) => return,
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    pub blobs: usize,
    pub rootfs: usize,
    pub bytes: u64,
}

/// Removes every blob (and partial blob) and every rootfs that no image in `keep` needs.
pub fn gc(root: &Path, keep: &[Reference]) -> GcStats {
    let (mut blobs, mut trees) = (HashSet::new(), HashSet::new());
    for r in keep {
        needed(root, r, &mut blobs, &mut trees);
    }
    let mut stats = GcStats::default();
    let hex_of_name = |name: &str| name.split('.').next().unwrap_or("").to_string();
    if let Ok(entries) = fs::read_dir(blob_dir(root)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if blobs.contains(&hex_of_name(&name)) {
                continue;
            }
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(e.path()) {
                Ok(()) => {
                    stats.blobs += 1;
                    stats.bytes += size;
                }
                Err(err) => log::warn!("oci.gc_failed path={} error={err:?}", e.path().display()),
            }
        }
    }
    if let Ok(entries) = fs::read_dir(root.join("rootfs")) {
        // Markers first, so a tree is never complete-marked while half removed.
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| !e.file_name().to_string_lossy().contains('.'));
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if trees.contains(&hex_of_name(&name)) {
                continue;
            }
            let removed = if name.contains('.') { fs::remove_file(e.path()) } else { remove_tree(&e.path()) };
            match removed {
                Ok(()) => stats.rootfs += usize::from(!name.contains('.')),
                Err(err) => log::warn!("oci.gc_failed path={} error={err:?}", e.path().display()),
            }
        }
    }
    stats
}
