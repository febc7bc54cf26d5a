//! Writes that cannot be turned against the node: every path is resolved component by component from `/` with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`, so a symlink anywhere on the way (a
//! planted `/var/app -> /var/lib/keel`, a final name pointing at `/etc/...`) is an error (`ELOOP`), never followed.
//!
//! - [`write_atomic`]: missing parent directories are made one at a time with `mkdirat` (0755) and opened again
//!   without following links (no `create_dir_all` through a symlinked parent); the content goes to a temp file
//!   with an unpredictable name created with `O_CREAT | O_EXCL | O_NOFOLLOW` in the same directory, gets its
//!   mode and owner through the fd (`fchmod`/`fchown`), is fsynced, renamed over the target with `renameat`
//!   (which replaces a symlink there, never writes through it) and the directory is fsynced.
//! - [`set_attrs`]: chmod/chown of an existing regular file through an fd opened with `O_NOFOLLOW`.
//! - [`read_regular`], [`remove`]: the same resolution for observing and removing.
//!
//! Everything is blocking (fsync): call it off the event loop.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// The kernel's `struct open_how` (libc's is non-exhaustive, so it cannot be built here).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;

fn cstr(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path contains NUL"))
}

/// `openat2` of one name beneath `dir` (or beneath `/` when `dir` is None), never following a link: a symlink
/// there is `ELOOP` (RESOLVE_NO_SYMLINKS covers the final component too).
fn open_beneath(dir: Option<&OwnedFd>, name: &[u8], flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let name = cstr(name)?;
    let how = OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode: u64::from(mode), resolve: RESOLVE };
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: openat2 with a NUL-terminated name and a properly sized open_how that outlive the call.
    let fd =
        unsafe { libc::syscall(libc::SYS_openat2, dirfd, name.as_ptr(), &how as *const OpenHow, size_of::<OpenHow>()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The normal components of an absolute, clean path (`..` and `.` are refused, not resolved).
fn components(path: &Path) -> io::Result<Vec<&[u8]>> {
    if !path.is_absolute() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not absolute", path.display())));
    }
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n.as_bytes()),
            _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not clean", path.display()))),
        }
    }
    Ok(out)
}

/// Opens the directory `path` component by component from `/`, never following a symlink; with `create`,
/// missing directories are made (0755, owned by the caller).
fn open_dir(path: &[&[u8]], create: bool) -> io::Result<OwnedFd> {
    let mut dir = open_root()?;
    for name in path {
        if create {
            let c = cstr(name)?;
            // SAFETY: mkdirat with a valid directory fd and a NUL-terminated name.
            let r = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(e);
                }
            }
        }
        dir = open_beneath(Some(&dir), name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    }
    Ok(dir)
}

fn open_root() -> io::Result<OwnedFd> {
    let root = cstr(b"/")?;
    // SAFETY: open of a constant NUL-terminated path.
    let fd = unsafe { libc::open(root.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The parent directory (opened) and the final name of `path`.
fn split(path: &Path, create: bool) -> io::Result<(OwnedFd, Vec<u8>)> {
    let parts = components(path)?;
    let (name, parents) =
        parts.split_last().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    Ok((open_dir(parents, create)?, name.to_vec()))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// 16 hex digits from the init's one non-blocking random source (`retry::insecure_u64`: never waits for the pool
/// early at boot). O_EXCL, not the name, is what makes the temp file safe.
fn random_suffix() -> String {
    format!("{:016x}", crate::retry::insecure_u64())
}

/// Says which path a refused symlink was on: "…: a symbolic link is in the path (never followed)".
fn explain(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| match e.raw_os_error() {
        Some(libc::ELOOP) => {
            io::Error::other(format!("{}: a symbolic link is in the path (never followed)", path.display()))
        }
        _ => e,
    }
}

/// Writes `content` to `path` atomically with `mode` and, when given, `owner` (uid, gid); see the module docs.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    write_atomic_inner(path, content, mode, owner).map_err(explain(path))
}

fn write_atomic_inner(path: &Path, content: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    let (dir, name) = split(path, true)?;
    let mut tmp_name = b".".to_vec();
    tmp_name.extend_from_slice(&name);
    tmp_name.extend_from_slice(format!(".{}.keel-tmp", random_suffix()).as_bytes());
    let tmp = open_beneath(Some(&dir), &tmp_name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600)?;
    let result = (|| {
        let mut file = std::fs::File::from(tmp);
        file.write_all(content)?;
        if let Some((uid, gid)) = owner {
            // SAFETY: fchown on an fd we own.
            check(unsafe { libc::fchown(file.as_raw_fd(), uid, gid) })?;
        }
        // After chown, which clears set-id bits.
        // SAFETY: fchmod on an fd we own.
        check(unsafe { libc::fchmod(file.as_raw_fd(), mode) })?;
        file.sync_all()?;
        let (from, to) = (cstr(&tmp_name)?, cstr(&name)?);
        // SAFETY: renameat within one directory fd, NUL-terminated names.
        check(unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) })?;
        // SAFETY: fsync on a directory fd we own.
        check(unsafe { libc::fsync(dir.as_raw_fd()) })
    })();
    if result.is_err() {
        if let Ok(c) = cstr(&tmp_name) {
            // SAFETY: unlinkat within our directory fd; a temp file that was already renamed is simply absent.
            unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
        }
    }
    result
}

/// Opens the regular file `path` for reading without following any link; `Ok(None)` when it does not exist.
fn open_regular(path: &Path) -> io::Result<Option<std::fs::File>> {
    let (dir, name) = match split(path, false) {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // O_NONBLOCK: a FIFO planted at the path must not block the open.
    let fd = match open_beneath(Some(&dir), &name, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY, 0) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(Some(file))
}

/// The content and metadata of the regular file `path`, read without following links; `Ok(None)` if absent.
pub fn read_regular(path: &Path) -> io::Result<Option<(Vec<u8>, std::fs::Metadata)>> {
    use std::io::Read;
    let Some(mut file) = open_regular(path).map_err(explain(path))? else { return Ok(None) };
    let meta = file.metadata()?;
    let mut content = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut content)?;
    Ok(Some((content, meta)))
}

/// Sets the mode and owner of the existing regular file `path` through an fd, never through a link.
pub fn set_attrs(path: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<()> {
    let file = open_regular(path).map_err(explain(path))?.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    // SAFETY: fchown/fchmod on an fd we own.
    check(unsafe { libc::fchown(file.as_raw_fd(), uid, gid) })?;
    check(unsafe { libc::fchmod(file.as_raw_fd(), mode) })
}

/// Removes the file `path` (a symlink there is removed itself, never its target); absent is success.
pub fn remove(path: &Path) -> io::Result<()> {
    let (dir, name) = match split(path, false) {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let c = cstr(&name)?;
    // SAFETY: unlinkat within a directory fd we own.
    match check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) }) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::PathBuf;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("keel-safefs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn is_loop(e: &io::Error) -> bool {
        e.to_string().contains("a symbolic link is in the path (never followed)")
    }

    #[test]
    fn writes_atomically_with_mode_and_leaves_no_temp_file() {
        let d = dir("write");
        let path = d.join("a/b/file");
        write_atomic(&path, b"one", 0o640, None).unwrap();
        write_atomic(&path, b"two", 0o600, None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        let names: Vec<_> = fs::read_dir(d.join("a/b")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["file"], "no temp file left behind");
        let (content, meta) = read_regular(&path).unwrap().unwrap();
        assert_eq!((content.as_slice(), meta.mode() & 0o7777), (&b"two"[..], 0o600));
        assert!(read_regular(&d.join("missing")).unwrap().is_none());
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(!path.exists());
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn never_follows_a_symlinked_parent_or_final_name() {
        let d = dir("links");
        let outside = d.join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("victim"), "precious").unwrap();
        fs::create_dir_all(d.join("tree")).unwrap();
        std::os::unix::fs::symlink(&outside, d.join("tree/sub")).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), d.join("tree/file")).unwrap();

        // A symlinked parent: refused, nothing written outside, no directory made through it.
        let e = write_atomic(&d.join("tree/sub/victim"), b"owned", 0o644, None).unwrap_err();
        assert!(is_loop(&e), "{e}");
        let e = write_atomic(&d.join("tree/sub/new/x"), b"owned", 0o644, None).unwrap_err();
        assert!(is_loop(&e), "{e}");
        assert!(!outside.join("new").exists());
        // A symlink as the final name is replaced, its target untouched.
        write_atomic(&d.join("tree/file"), b"mine", 0o644, None).unwrap();
        assert_eq!(fs::read_to_string(outside.join("victim")).unwrap(), "precious");
        assert!(fs::symlink_metadata(d.join("tree/file")).unwrap().is_file());
        // chmod never goes through a link either, nor does reading.
        std::os::unix::fs::symlink(outside.join("victim"), d.join("tree/link")).unwrap();
        assert!(is_loop(&set_attrs(&d.join("tree/link"), 0o777, 0, 0).unwrap_err()));
        assert!(is_loop(&read_regular(&d.join("tree/link")).unwrap_err()));
        assert_ne!(fs::metadata(outside.join("victim")).unwrap().permissions().mode() & 0o777, 0o777);
        // remove takes the link away, not its target.
        remove(&d.join("tree/link")).unwrap();
        assert!(outside.join("victim").exists());
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn refuses_unclean_paths() {
        assert!(write_atomic(Path::new("relative/x"), b"", 0o644, None).is_err());
        assert!(write_atomic(Path::new("/tmp/../etc/x"), b"", 0o644, None).is_err());
    }
}
