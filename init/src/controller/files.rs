//! Files the config asks for, under the writable trees (/run, /var): content, mode and owner. Every read, write,
//! chmod and removal goes through [`crate::safe_fs`]: atomic (O_EXCL temp file with an unpredictable name, fsync,
//! renameat, fsync of the directory) and never following a symlink, so a link planted in a file's directory
//! cannot make PID 1 write or chown anything outside it. Keel removes only files it wrote itself and that the
//! config no longer names; the list of those lives beside them so it survives restarts.

use super::{Controller, ItemState, Plan, Target};
use crate::registry::Kind;
use crate::safe_fs;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub path: PathBuf,
    pub content: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

pub enum FileOp {
    Write(FileSpec),
    /// Same content: only mode or owner differ.
    Attrs(FileSpec),
    Remove(PathBuf),
}

impl std::fmt::Display for FileOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileOp::Write(s) => {
                write!(f, "op=write path={} bytes={} mode={:04o}", s.path.display(), s.content.len(), s.mode)
            }
            FileOp::Attrs(s) => {
                write!(f, "op=attrs path={} mode={:04o} uid={} gid={}", s.path.display(), s.mode, s.uid, s.gid)
            }
            FileOp::Remove(p) => write!(f, "op=remove path={}", p.display()),
        }
    }
}

pub struct Files {
    /// Where the list of files Keel wrote is kept.
    manifest: PathBuf,
    owned: BTreeSet<PathBuf>,
}

impl Files {
    pub fn new(manifest: impl Into<PathBuf>) -> Files {
        let manifest = manifest.into();
        let owned = fs::read_to_string(&manifest)
            .map(|t| t.lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect())
            .unwrap_or_default();
        Files { manifest, owned }
    }

    fn save_manifest(&self) -> std::io::Result<()> {
        let text: String = self.owned.iter().map(|p| format!("{}\n", p.display())).collect();
        write_atomic(&self.manifest, text.as_bytes(), 0o600, None)
    }
}

/// Writes `content` to `path` atomically with `mode` (and owner, when given), creating parent directories,
/// never through a symlink ([`safe_fs::write_atomic`]).
pub fn write_atomic(path: &Path, content: &[u8], mode: u32, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    safe_fs::write_atomic(path, content, mode, owner)
}

/// What the host holds at a desired file's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The desired content; `attrs` says whether mode and owner are right too.
    Same { attrs: bool },
    /// Another content, or nothing.
    Differs,
    /// A directory is in the way.
    Dir,
}

/// The files controller's view: each desired path, and the files Keel wrote earlier.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub found: Vec<Found>,
    pub owned: BTreeSet<PathBuf>,
}

impl Files {
    /// Reads the host for `desired` (blocking).
    pub fn observe_now(&self, desired: &[FileSpec]) -> Observed {
        let found = desired
            .iter()
            .map(|spec| match safe_fs::read_regular(&spec.path) {
                Ok(Some((content, meta))) if content == spec.content => Found::Same {
                    attrs: meta.mode() & 0o7777 == spec.mode && meta.uid() == spec.uid && meta.gid() == spec.gid,
                },
                _ if fs::symlink_metadata(&spec.path).is_ok_and(|m| m.is_dir()) => Found::Dir,
                _ => Found::Differs,
            })
            .collect();
        Observed { found, owned: self.owned.clone() }
    }

    /// Applies one operation (blocking) and keeps the manifest of what Keel wrote.
    pub fn apply_now(&mut self, op: &FileOp) -> Result<(), String> {
        let result = match op {
            FileOp::Write(s) => write_atomic(&s.path, &s.content, s.mode, Some((s.uid, s.gid))),
            FileOp::Attrs(s) => safe_fs::set_attrs(&s.path, s.mode, s.uid, s.gid),
            FileOp::Remove(p) => safe_fs::remove(p),
        };
        result.map_err(|e| e.to_string())?;
        let changed = match op {
            FileOp::Remove(p) => self.owned.remove(p),
            FileOp::Write(s) | FileOp::Attrs(s) => self.owned.insert(s.path.clone()),
        };
        if changed {
            self.save_manifest().map_err(|e| format!("applied, but the manifest could not be saved: {e}"))?;
        }
        Ok(())
    }
}

impl Controller for Files {
    const KIND: Kind = Kind::Files;
    const AREA: &'static str = "files";
    const RESYNC: Duration = Duration::from_secs(30);
    type Desired = Vec<FileSpec>;
    type Observed = Observed;
    type Op = FileOp;
    type Event = ();

    async fn observe(&mut self, target: &Target<Vec<FileSpec>>) -> Result<Observed, String> {
        let me = Files { manifest: self.manifest.clone(), owned: self.owned.clone() };
        let desired = target.desired.clone();
        crate::fsutil::off_loop("files observe", move || me.observe_now(&desired)).await
    }

    fn plan(desired: &Vec<FileSpec>, observed: &Observed) -> Plan<FileOp> {
        let mut plan = Plan::default();
        for (spec, found) in desired.iter().zip(&observed.found) {
            let name = spec.path.display().to_string();
            match found {
                Found::Same { attrs: true } => plan.item(name, ItemState::Converged),
                Found::Same { attrs: false } => plan.op(name, FileOp::Attrs(spec.clone())),
                Found::Dir => plan.item(name, ItemState::Failed("a directory is in the way".into())),
                Found::Differs => plan.op(name, FileOp::Write(spec.clone())),
            }
        }
        for path in &observed.owned {
            if !desired.iter().any(|s| &s.path == path) {
                plan.op(path.display().to_string(), FileOp::Remove(path.clone()));
            }
        }
        plan
    }

    async fn apply(&mut self, op: FileOp, generation: Option<u64>) -> Result<(), String> {
        self.apply_all(vec![op], generation).await.pop().unwrap_or_else(|| Err("not applied".into()))
    }

    /// The whole round in one trip off the event loop.
    async fn apply_all(&mut self, ops: Vec<FileOp>, _generation: Option<u64>) -> Vec<Result<(), String>> {
        let n = ops.len();
        let mut me = Files { manifest: self.manifest.clone(), owned: std::mem::take(&mut self.owned) };
        let done = crate::fsutil::off_loop("files write", move || {
            let r: Vec<Result<(), String>> = ops.iter().map(|op| me.apply_now(op)).collect();
            (me.owned, r)
        })
        .await;
        match done {
            Ok((owned, r)) => {
                self.owned = owned;
                r
            }
            Err(e) => {
                // Only a panic or shutdown gets here: the manifest on disk is still right.
                *self = Files::new(self.manifest.clone());
                vec![Err(e); n]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("keel-files-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn spec(path: PathBuf, content: &str, mode: u32) -> FileSpec {
        FileSpec { path, content: content.as_bytes().to_vec(), mode, uid: 0, gid: 0 }
    }

    fn plan(f: &Files, desired: &Vec<FileSpec>) -> Plan<FileOp> {
        Files::plan(desired, &f.observe_now(desired))
    }

    fn converge(f: &mut Files, desired: &Vec<FileSpec>) -> usize {
        let ops = plan(f, desired).ops;
        for (_, op) in &ops {
            f.apply_now(op).unwrap();
        }
        ops.len()
    }

    #[test]
    fn writes_then_plans_nothing_then_repairs_drift() {
        let d = dir("drift");
        let mut f = Files::new(d.join("manifest"));
        let want = vec![spec(d.join("etc/motd"), "hello\n", 0o644), spec(d.join("secret"), "s3cret", 0o600)];
        assert_eq!(converge(&mut f, &want), 2);
        assert_eq!(fs::read_to_string(d.join("etc/motd")).unwrap(), "hello\n");
        assert_eq!(fs::metadata(d.join("secret")).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(converge(&mut f, &want), 0, "converged: zero writes");
        fs::write(d.join("etc/motd"), "tampered").unwrap();
        fs::set_permissions(d.join("secret"), fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(converge(&mut f, &want), 2);
        assert_eq!(fs::read_to_string(d.join("etc/motd")).unwrap(), "hello\n");
        assert_eq!(fs::metadata(d.join("secret")).unwrap().mode() & 0o7777, 0o600);
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn removes_only_files_it_wrote_even_after_a_restart() {
        let d = dir("owner");
        fs::write(d.join("foreign"), "not ours").unwrap();
        let mut f = Files::new(d.join("manifest"));
        converge(&mut f, &vec![spec(d.join("a"), "a", 0o644), spec(d.join("b"), "b", 0o644)]);
        // A new init (after a reboot) reads the manifest back.
        let mut f = Files::new(d.join("manifest"));
        converge(&mut f, &vec![spec(d.join("a"), "a", 0o644)]);
        assert!(d.join("a").exists());
        assert!(!d.join("b").exists(), "a file dropped from the config is removed");
        assert!(d.join("foreign").exists(), "a file Keel did not write is never removed");
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn a_directory_in_the_way_is_reported() {
        let d = dir("dir");
        fs::create_dir_all(d.join("x")).unwrap();
        let f = Files::new(d.join("manifest"));
        let p = plan(&f, &vec![spec(d.join("x"), "x", 0o644)]);
        assert!(p.ops.is_empty());
        assert_eq!(p.items[0].1, ItemState::Failed("a directory is in the way".into()));
        let _ = fs::remove_dir_all(d);
    }

    /// As root, with owners that differ from root's: a symlink planted in a file's directory (as the parent, or as
    /// the file itself) never makes PID 1 write, chmod or chown anything outside that directory.
    #[test]
    fn root_files_never_follow_a_planted_symlink() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (chown)");
            return;
        }
        let d = dir("root-symlink");
        let (inside, outside) = (d.join("app"), d.join("outside"));
        fs::create_dir_all(&inside).unwrap();
        fs::create_dir_all(&outside).unwrap();
        let victim = outside.join("victim");
        fs::write(&victim, "precious").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o640)).unwrap();
        let before = fs::metadata(&victim).unwrap();
        // Planted by someone who may write in app/: its subdirectory and its file are links to outside.
        std::os::unix::fs::symlink(&outside, inside.join("conf.d")).unwrap();
        std::os::unix::fs::symlink(&victim, inside.join("token")).unwrap();
        let owned = |path: PathBuf| FileSpec { path, content: b"ours".to_vec(), mode: 0o666, uid: 4321, gid: 4321 };
        let mut f = Files::new(d.join("manifest"));
        let want =
            vec![owned(inside.join("conf.d/victim")), owned(inside.join("conf.d/new/x")), owned(inside.join("token"))];
        let ops = plan(&f, &want).ops;
        let results: Vec<_> = ops.iter().map(|(_, op)| f.apply_now(op)).collect();
        // Through the linked directory: refused, nothing made out there.
        assert!(results[0].as_ref().is_err_and(|e| e.contains("a symbolic link is in the path")), "{:?}", results[0]);
        assert!(results[1].is_err(), "{:?}", results[1]);
        assert!(!outside.join("new").exists());
        // The linked file itself is replaced by a real file with the config's owner; the link's target is not.
        assert!(results[2].is_ok(), "{:?}", results[2]);
        let token = fs::symlink_metadata(inside.join("token")).unwrap();
        assert!(token.is_file() && token.uid() == 4321 && token.mode() & 0o7777 == 0o666);
        let after = fs::metadata(&victim).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!((after.uid(), after.gid(), after.mode()), (before.uid(), before.gid(), before.mode()));
        // A link planted after the write, where only mode and owner would be fixed: never chowned through.
        fs::remove_file(inside.join("token")).unwrap();
        std::os::unix::fs::symlink(&victim, inside.join("token")).unwrap();
        let attrs = FileOp::Attrs(owned(inside.join("token")));
        assert!(f.apply_now(&attrs).is_err());
        let after = fs::metadata(&victim).unwrap();
        assert_eq!((after.uid(), after.gid(), after.mode()), (before.uid(), before.gid(), before.mode()));
        let _ = fs::remove_dir_all(d);
    }
}
