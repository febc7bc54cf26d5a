//! Applies verified layer blobs, in order, to a rootfs directory (blocking; runs off the event loop). What each
//! tar entry becomes is decided by `keel_oci::unpack::decide`; this module only carries it out, and resolves
//! every parent directory with openat2(RESOLVE_IN_ROOT), so a symlink in the image (`/bin -> usr/bin`, or a
//! hostile `x -> /`) can never take a write outside the rootfs. The entry's own name is created with *at calls
//! that never follow it. Memory: one 64 KiB buffer and the decompressor's window; a layer never sits in memory.

use super::store;
use super::PullError;
use keel_oci::manifest::{Compression, Manifest};
use keel_oci::tar::{Event, TarReader};
use keel_oci::unpack::{decide, Action, Options};
use keel_oci::Digest;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// zstd window limit: levels 1–19 use at most 8 MiB; a layer needing more (--long, --ultra) is refused rather
/// than let a PID 1 buffer grow to 128 MiB.
const ZSTD_MAX_WINDOW: u64 = 8 << 20;

/// Builds `rootfs/<manifest>/` from the stored layers and marks it complete. A rootfs left without its marker
/// (power cut mid-unpack) is removed first.
pub fn build_rootfs(root: &Path, manifest_digest: &Digest, m: &Manifest, config: &Digest) -> Result<(), PullError> {
    let dir = store::rootfs_path(root, manifest_digest);
    let io = |what: &Path, e: std::io::Error| PullError::from_io(&what.display().to_string(), &e);
    if store::completed_config(root, manifest_digest).is_some() {
        return Ok(());
    }
    store::remove_tree(&dir).map_err(|e| io(&dir, e))?;
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let started = std::time::Instant::now();
    for layer in &m.layers {
        let blob = store::blob_path(root, &layer.digest);
        apply_layer(&dir, &blob, layer.compression, Options::default())
            .map_err(|e| e.with_context(&format!("layer {}", layer.digest)))?;
    }
    store::mark_complete(root, manifest_digest, config).map_err(|e| io(&dir, e))?;
    log::info!(
        "oci.unpacked manifest={manifest_digest} layers={} ms={}",
        m.layers.len(),
        started.elapsed().as_millis()
    );
    Ok(())
}

impl PullError {
    fn with_context(self, what: &str) -> PullError {
        match self {
            PullError::UnsafeLayer(m) => PullError::UnsafeLayer(format!("{what}: {m}")),
            PullError::OutOfSpace(m) => PullError::OutOfSpace(format!("{what}: {m}")),
            PullError::Network(m) => PullError::Network(format!("{what}: {m}")),
            other => other,
        }
    }
}

fn errno(what: &[u8], e: Errno) -> PullError {
    PullError::from_io(&String::from_utf8_lossy(what), &std::io::Error::from(e))
}

fn unsafe_layer(what: impl std::fmt::Display) -> PullError {
    PullError::UnsafeLayer(what.to_string())
}

/// zstd streams may hold several frames (and skippable ones); ruzstd's decoder reads one.
struct ZstdFrames<R: BufRead> {
    source: Option<R>,
    current: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(dec) = &mut self.current {
                let n = dec.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                let Some(dec) = self.current.take() else { return Ok(0) };
                self.source = Some(dec.into_inner());
            }
            let Some(mut src) = self.source.take() else { return Ok(0) };
            if src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match ruzstd::decoding::StreamingDecoder::new_with_max_window_size(src, ZSTD_MAX_WINDOW) {
                Ok(d) => self.current = Some(d),
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("zstd: {e}"))),
            }
        }
    }
}

fn decompressed(blob: &Path, compression: Compression) -> Result<Box<dyn Read>, PullError> {
    let file = File::open(blob).map_err(|e| PullError::from_io(&blob.display().to_string(), &e))?;
    let buffered = BufReader::with_capacity(64 << 10, file);
    Ok(match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(ZstdFrames { source: Some(buffered), current: None }),
    })
}

/// Applies one layer to `dir`.
pub fn apply_layer(dir: &Path, blob: &Path, compression: Compression, opts: Options) -> Result<(), PullError> {
    let root: OwnedFd = File::open(dir).map_err(|e| PullError::from_io(&dir.display().to_string(), &e))?.into();
    let mut input = decompressed(blob, compression)?;
    let mut tar = TarReader::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut current: Option<File> = None;
    // Paths this layer wrote: an opaque marker empties its directory of lower layers' entries only.
    let mut mine: HashSet<Vec<u8>> = HashSet::new();
    'read: loop {
        let n = input.read(&mut buf).map_err(|e| unsafe_layer(format!("decompressing: {e}")))?;
        if n == 0 {
            break;
        }
        let mut at = 0;
        while at < n {
            let (used, event) = tar.feed(&buf[at..n]).map_err(unsafe_layer)?;
            at += used;
            match event {
                Some(Event::Entry(entry)) => {
                    drop(current.take());
                    let action = decide(&entry, opts).map_err(unsafe_layer)?;
                    current = apply(root.as_fd(), action, &mut mine)?;
                }
                Some(Event::Data(data)) => {
                    if let Some(f) = &mut current {
                        f.write_all(data).map_err(|e| PullError::from_io("writing a layer file", &e))?;
                    }
                }
                Some(Event::End) => break 'read,
                None => {}
            }
        }
    }
    tar.finish().map_err(unsafe_layer)?;
    Ok(())
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// Opens directory `rel` inside the rootfs, resolving symlinks as if the rootfs were `/`; creates missing
/// directories (0755, root) when `create`.
fn open_dir(root: BorrowedFd, rel: &[u8], create: bool) -> Result<Option<OwnedFd>, PullError> {
    let rel_or_dot: &[u8] = if rel.is_empty() { b"." } else { rel };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_XDEV);
    match openat2(root, os(rel_or_dot), how) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) if create && !rel.is_empty() => {
            let (parent, name) = split(rel);
            let Some(pfd) = open_dir(root, parent, true)? else { return Ok(None) };
            match mkdirat(&pfd, os(name), Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(errno(rel, e)),
            }
            open_dir(root, rel, false)
        }
        Err(Errno::ENOENT) => Ok(None),
        Err(Errno::ENOTDIR) => {
            Err(unsafe_layer(format!("{:?}: a parent is not a directory", String::from_utf8_lossy(rel))))
        }
        Err(e) => Err(errno(rel, e)),
    }
}

/// Removes `name` in `dir`, whatever it is (a directory with everything below it), never following links.
fn remove(dir: BorrowedFd, name: &[u8]) -> Result<(), PullError> {
    let st = match fstatat(dir, os(name), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(errno(name, e)),
    };
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        let fd = openat(
            dir,
            os(name),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno(name, e))?;
        for child in children(&fd, name)? {
            remove(fd.as_fd(), &child)?;
        }
        unlinkat(dir, os(name), UnlinkatFlags::RemoveDir).map_err(|e| errno(name, e))
    } else {
        unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir).map_err(|e| errno(name, e))
    }
}

fn children(fd: &OwnedFd, what: &[u8]) -> Result<Vec<Vec<u8>>, PullError> {
    let dup = fd.try_clone().map_err(|e| PullError::from_io(&String::from_utf8_lossy(what), &e))?;
    let dir = nix::dir::Dir::from_fd(dup).map_err(|e| errno(what, e))?;
    let mut names = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| errno(what, e))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

fn ids(uid: u64, gid: u64) -> Result<(Uid, Gid), PullError> {
    let uid = u32::try_from(uid).map_err(|_| unsafe_layer(format!("uid {uid} out of range")))?;
    let gid = u32::try_from(gid).map_err(|_| unsafe_layer(format!("gid {gid} out of range")))?;
    Ok((Uid::from_raw(uid), Gid::from_raw(gid)))
}

fn is_dir(dir: BorrowedFd, name: &[u8]) -> bool {
    fstatat(dir, os(name), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// Carries out one action; returns the file to write the entry's data into, if any.
fn apply(root: BorrowedFd, action: Action, mine: &mut HashSet<Vec<u8>>) -> Result<Option<File>, PullError> {
    match action {
        Action::Skip { path, why } => {
            log::debug!("oci.unpack_skip path={:?} why={why:?}", String::from_utf8_lossy(&path));
            Ok(None)
        }
        Action::Whiteout { path } => {
            let (parent, name) = split(&path);
            if let Some(p) = open_dir(root, parent, false)? {
                remove(p.as_fd(), name)?;
            }
            Ok(None)
        }
        Action::Opaque { dir } => {
            if let Some(fd) = open_dir(root, &dir, false)? {
                let rd = openat(&fd, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(|e| errno(&dir, e))?;
                for child in children(&rd, &dir)? {
                    let full = if dir.is_empty() { child.clone() } else { [&dir[..], b"/", &child].concat() };
                    if !mine.contains(&full) {
                        remove(rd.as_fd(), &child)?;
                    }
                }
            }
            Ok(None)
        }
        Action::Dir { path, mode, uid, gid } => {
            let (parent, name) = split(&path);
            let (uid, gid) = ids(uid, gid)?;
            let p = open_dir(root, parent, true)?.ok_or_else(|| unsafe_layer("parent vanished"))?;
            if !is_dir(p.as_fd(), name) {
                remove(p.as_fd(), name)?;
                mkdirat(&p, os(name), Mode::from_bits_truncate(0o700)).map_err(|e| errno(&path, e))?;
            }
            let fd = openat(
                &p,
                os(name),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| errno(&path, e))?;
            fchown(&fd, Some(uid), Some(gid)).map_err(|e| errno(&path, e))?;
            fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(|e| errno(&path, e))?;
            mine.insert(path);
            Ok(None)
        }
        Action::File { path, mode, uid, gid, .. } => {
            let (parent, name) = split(&path);
            let (uid, gid) = ids(uid, gid)?;
            let p = open_dir(root, parent, true)?.ok_or_else(|| unsafe_layer("parent vanished"))?;
            remove(p.as_fd(), name)?;
            let fd = openat(
                &p,
                os(name),
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| errno(&path, e))?;
            fchown(&fd, Some(uid), Some(gid)).map_err(|e| errno(&path, e))?;
            fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(|e| errno(&path, e))?;
            mine.insert(path);
            Ok(Some(File::from(fd)))
        }
        Action::Symlink { path, target, uid, gid } => {
            let (parent, name) = split(&path);
            let (uid, gid) = ids(uid, gid)?;
            let p = open_dir(root, parent, true)?.ok_or_else(|| unsafe_layer("parent vanished"))?;
            remove(p.as_fd(), name)?;
            symlinkat(os(&target), &p, os(name)).map_err(|e| errno(&path, e))?;
            fchownat(&p, os(name), Some(uid), Some(gid), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| errno(&path, e))?;
            mine.insert(path);
            Ok(None)
        }
        Action::HardLink { path, target } => {
            let (parent, name) = split(&path);
            let (tparent, tname) = split(&target);
            let t = open_dir(root, tparent, false)?
                .ok_or_else(|| unsafe_layer(format!("hard link to missing {:?}", String::from_utf8_lossy(&target))))?;
            if is_dir(t.as_fd(), tname) {
                return Err(unsafe_layer(format!("hard link to the directory {:?}", String::from_utf8_lossy(&target))));
            }
            let p = open_dir(root, parent, true)?.ok_or_else(|| unsafe_layer("parent vanished"))?;
            remove(p.as_fd(), name)?;
            linkat(&t, os(tname), &p, os(name), nix::fcntl::AtFlags::empty()).map_err(|e| errno(&path, e))?;
            mine.insert(path);
            Ok(None)
        }
    }
}
