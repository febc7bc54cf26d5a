//! The pure decision of what one layer entry becomes in the rootfs: whiteouts (`.wh.name`, `.wh..wh..opq`),
//! refusal of `..` and absolute paths and of links that point outside the rootfs, device nodes and fifos dropped,
//! setuid/setgid dropped unless allowed. The unpacker (in the init) only carries out these actions, and resolves
//! every parent directory inside the rootfs without following a link out of it.

use crate::tar::{Entry, Kind};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Keep setuid/setgid bits (the service's config allows them).
    pub allow_setuid: bool,
}

/// Paths are relative to the rootfs, cleaned (no `.`, `..`, empty or leading `/` components), never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Dir {
        path: Vec<u8>,
        mode: u32,
        uid: u64,
        gid: u64,
    },
    File {
        path: Vec<u8>,
        mode: u32,
        uid: u64,
        gid: u64,
        size: u64,
    },
    Symlink {
        path: Vec<u8>,
        target: Vec<u8>,
        uid: u64,
        gid: u64,
    },
    /// `target` is a cleaned rootfs-relative path, as `path`.
    HardLink {
        path: Vec<u8>,
        target: Vec<u8>,
    },
    /// Remove `path` (from lower layers), whatever it is.
    Whiteout {
        path: Vec<u8>,
    },
    /// Empty the directory `dir` of what lower layers put there (`dir` empty = the root).
    Opaque {
        dir: Vec<u8>,
    },
    /// Nothing is written; `why` is logged.
    Skip {
        path: Vec<u8>,
        why: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsafe layer entry {path:?}: {why}")]
pub struct UnsafeEntry {
    pub path: String,
    pub why: &'static str,
}

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Cleans a stored path: strips `./` and repeated slashes; refuses absolute paths, `..`, and NUL bytes.
/// The rootfs root itself comes back empty.
pub fn clean_path(raw: &[u8]) -> Result<Vec<u8>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    if raw.contains(&0) {
        return Err("NUL in path");
    }
    let mut out = Vec::with_capacity(raw.len());
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("`..` in path"),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

/// Whether a symlink at `path` (cleaned) pointing at `target` stays inside the rootfs when resolved lexically.
/// Absolute targets are resolved against the rootfs root (as they are at run time after pivot_root).
fn symlink_stays_inside(path: &[u8], target: &[u8]) -> bool {
    let mut depth: i64 = if target.first() == Some(&b'/') { 0 } else { path.split(|&b| b == b'/').count() as i64 - 1 };
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

pub fn decide(entry: &Entry, opts: Options) -> Result<Action, UnsafeEntry> {
    let unsafe_entry = |why| UnsafeEntry { path: String::from_utf8_lossy(&entry.path).into_owned(), why };
    let path = clean_path(&entry.path).map_err(unsafe_entry)?;
    let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], &path[..]),
    };
    if name == OPAQUE {
        return Ok(Action::Opaque { dir: dir.to_vec() });
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT) {
        if hidden.starts_with(WHITEOUT) {
            return Ok(Action::Skip { path, why: "aufs metadata (.wh..wh.*)" });
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(unsafe_entry("whiteout of nothing, `.` or `..`"));
        }
        let mut target = dir.to_vec();
        if !target.is_empty() {
            target.push(b'/');
        }
        target.extend_from_slice(hidden);
        return Ok(Action::Whiteout { path: target });
    }
    if path.is_empty() {
        return Ok(Action::Skip { path, why: "the rootfs root itself" });
    }
    let mode = if opts.allow_setuid { entry.mode & 0o7777 } else { entry.mode & 0o1777 };
    let (uid, gid) = (entry.uid, entry.gid);
    Ok(match entry.kind {
        Kind::Dir => Action::Dir { path, mode, uid, gid },
        Kind::File => Action::File { path, mode, uid, gid, size: entry.size },
        Kind::Symlink => {
            if entry.link.is_empty() || entry.link.contains(&0) {
                return Err(unsafe_entry("symlink with an empty target"));
            }
            if !symlink_stays_inside(&path, &entry.link) {
                return Err(unsafe_entry("symlink pointing outside the rootfs"));
            }
            Action::Symlink { path, target: entry.link.clone(), uid, gid }
        }
        Kind::HardLink => {
            let target = clean_path(&entry.link).map_err(|_| unsafe_entry("hard link pointing outside the rootfs"))?;
            if target.is_empty() {
                return Err(unsafe_entry("hard link to the rootfs root"));
            }
            Action::HardLink { path, target }
        }
        Kind::Char | Kind::Block => Action::Skip { path, why: "device node dropped" },
        Kind::Fifo => Action::Skip { path, why: "fifo dropped" },
        Kind::Other(_) => Action::Skip { path, why: "unsupported entry type" },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: Kind, link: &str, mode: u32) -> Entry {
        Entry { path: path.into(), link: link.into(), kind, mode, uid: 1000, gid: 100, size: 0, mtime: 0 }
    }

    fn d(path: &str, kind: Kind, link: &str) -> Result<Action, UnsafeEntry> {
        decide(&entry(path, kind, link, 0o755), Options::default())
    }

    #[test]
    fn paths_are_cleaned_and_escapes_refused() {
        assert_eq!(clean_path(b"./usr//bin/./x").unwrap(), b"usr/bin/x");
        assert_eq!(clean_path(b"./").unwrap(), b"");
        for bad in [&b"/etc/passwd"[..], b"../x", b"a/../../x", b"a/..", b"a\0b"] {
            assert!(clean_path(bad).is_err(), "{}", String::from_utf8_lossy(bad));
            assert!(d(std::str::from_utf8(bad).unwrap(), Kind::File, "").is_err());
        }
    }

    #[test]
    fn whiteouts_and_opaque_dirs() {
        assert_eq!(d("etc/.wh.motd", Kind::File, "").unwrap(), Action::Whiteout { path: b"etc/motd".to_vec() });
        assert_eq!(d(".wh.tmp", Kind::File, "").unwrap(), Action::Whiteout { path: b"tmp".to_vec() });
        assert_eq!(d("var/cache/.wh..wh..opq", Kind::File, "").unwrap(), Action::Opaque { dir: b"var/cache".to_vec() });
        assert_eq!(d(".wh..wh..opq", Kind::File, "").unwrap(), Action::Opaque { dir: vec![] });
        assert!(matches!(d("a/.wh..wh.plnk", Kind::File, "").unwrap(), Action::Skip { .. }));
        assert!(d("a/.wh.", Kind::File, "").is_err());
        assert!(d("a/.wh..", Kind::File, "").is_err());
        assert!(d("a/.wh...", Kind::File, "").is_err());
        assert!(d("../.wh.x", Kind::File, "").is_err());
    }

    #[test]
    fn links_must_stay_inside() {
        assert!(matches!(d("bin/sh", Kind::Symlink, "busybox").unwrap(), Action::Symlink { .. }));
        assert!(matches!(d("bin/sh", Kind::Symlink, "/bin/busybox").unwrap(), Action::Symlink { .. }));
        assert!(matches!(d("usr/lib/x", Kind::Symlink, "../../lib/x").unwrap(), Action::Symlink { .. }));
        assert!(d("usr/lib/x", Kind::Symlink, "../../../etc/shadow").is_err());
        assert!(d("x", Kind::Symlink, "..").is_err());
        assert!(d("x", Kind::Symlink, "/../../etc").is_err());
        assert!(d("x", Kind::Symlink, "").is_err());
        assert_eq!(
            d("bin/ls2", Kind::HardLink, "./bin/ls").unwrap(),
            Action::HardLink { path: b"bin/ls2".to_vec(), target: b"bin/ls".to_vec() }
        );
        assert!(d("x", Kind::HardLink, "/etc/shadow").is_err());
        assert!(d("x", Kind::HardLink, "../etc/shadow").is_err());
        assert!(d("x", Kind::HardLink, ".").is_err());
    }

    #[test]
    fn devices_fifos_dropped_and_setuid_cleared() {
        for k in [Kind::Char, Kind::Block, Kind::Fifo, Kind::Other(b'S')] {
            assert!(matches!(d("dev/x", k, "").unwrap(), Action::Skip { .. }), "{k:?}");
        }
        let suid = entry("usr/bin/su", Kind::File, "", 0o6755);
        assert!(matches!(decide(&suid, Options::default()).unwrap(), Action::File { mode: 0o755, .. }));
        assert!(matches!(decide(&suid, Options { allow_setuid: true }).unwrap(), Action::File { mode: 0o6755, .. }));
        let sticky = entry("tmp", Kind::Dir, "", 0o1777);
        assert!(matches!(
            decide(&sticky, Options::default()).unwrap(),
            Action::Dir { mode: 0o1777, uid: 1000, gid: 100, .. }
        ));
        assert!(matches!(d("./", Kind::Dir, "").unwrap(), Action::Skip { .. }));
    }
}
