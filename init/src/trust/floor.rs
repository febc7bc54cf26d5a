//! The rollback floor: the least this node will ever accept again. The highest config generation it accepted, the
//! highest image version it committed, the latest time it trusted, and the nonces of signed commands that have not
//! expired. It is kept where a diskless node still has it after a power cycle, a UEFI non-volatile variable
//! (`KeelRollbackFloor-<Keel's vendor GUID>`, through efivarfs), and on the state volume when there is one
//! (`/var/lib/keel/rollback-floor`). Each read merges what both places hold and the stricter value wins; every
//! change is written to both. The node only ever raises it (the variable is not authenticated: whoever can write
//! efivarfs as root on the node can lower it, but nothing the node accepts from the network can).
//!
//! The record is a few lines of text, `key value`, so it is easy to read with `cat` on efivarfs:
//! `generation 5`, `image 1.2.0`, `time 1796000000`, `nonce <nonce> <expires>`.

use crate::upgrade::efivar::Vars;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const VAR_NAME: &str = "KeelRollbackFloor";
/// Keel's own vendor GUID for its variables.
pub const VENDOR: &str = "6b65656c-726f-4c6c-8062-61636b000001";
pub const STATE_FILE: &str = "/var/lib/keel/rollback-floor";
/// The build time of the image (seconds since 1970, written by the build): the clock never goes below it.
pub const BUILD_TIME: &str = "/etc/keel/build-time";

/// A dotted numeric version (`1.2.10`), compared number by number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub Vec<u64>);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let parts: Option<Vec<u64>> = s.trim().split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty() && p.len() <= 8).map(Version)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Floor {
    pub generation: Option<u64>,
    pub image: Option<Version>,
    /// Seconds since 1970.
    pub time: u64,
    /// Command nonce -> its expiry (seconds since 1970).
    pub nonces: BTreeMap<String, u64>,
}

fn nonce_ok(n: &str) -> bool {
    (16..=128).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Floor {
    /// Lenient: a line it does not understand is skipped (a damaged record loses that line, never the rest).
    pub fn parse(text: &str) -> Floor {
        let mut f = Floor::default();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("generation"), Some(g), None) => f.generation = g.parse().ok().max(f.generation),
                (Some("image"), Some(v), None) => f.image = Version::parse(v).max(f.image.take()),
                (Some("time"), Some(t), None) => f.time = t.parse().unwrap_or(0).max(f.time),
                (Some("nonce"), Some(n), Some(e)) if nonce_ok(n) => {
                    if let Ok(e) = e.parse::<u64>() {
                        let slot = f.nonces.entry(n.to_string()).or_insert(e);
                        *slot = (*slot).max(e);
                    }
                }
                _ => {}
            }
        }
        f
    }

    pub fn render(&self) -> String {
        let mut out = String::from("keel-rollback-floor 1\n");
        if let Some(g) = self.generation {
            out.push_str(&format!("generation {g}\n"));
        }
        if let Some(v) = &self.image {
            out.push_str(&format!("image {v}\n"));
        }
        out.push_str(&format!("time {}\n", self.time));
        for (n, e) in &self.nonces {
            out.push_str(&format!("nonce {n} {e}\n"));
        }
        out
    }

    /// The stricter of two records: every value at its highest, the nonces of both.
    pub fn merge(&self, other: &Floor) -> Floor {
        let mut nonces = self.nonces.clone();
        for (n, e) in &other.nonces {
            let slot = nonces.entry(n.clone()).or_insert(*e);
            *slot = (*slot).max(*e);
        }
        Floor {
            generation: self.generation.max(other.generation),
            image: self.image.clone().max(other.image.clone()),
            time: self.time.max(other.time),
            nonces,
        }
    }

    /// Forgets the nonces whose commands expired before the floor's time: the clock never goes below the floor,
    /// so those commands stay expired for good.
    pub fn prune(&mut self) {
        let t = self.time;
        self.nonces.retain(|_, e| *e >= t);
    }
}

/// Where the floor is kept: the UEFI variable store (when the node booted by UEFI) and the state volume's file
/// (when /var is one). Tests point both at temporary directories.
#[derive(Debug, Clone)]
pub struct Places {
    pub efi: Option<Vars>,
    pub file: Option<PathBuf>,
}

/// What each place holds, and why one could not be read.
#[derive(Debug, Default)]
pub struct Read {
    pub efi: Option<Floor>,
    pub file: Option<Floor>,
    pub errors: Vec<String>,
}

impl Read {
    pub fn merged(&self) -> Floor {
        let empty = Floor::default();
        self.efi.as_ref().unwrap_or(&empty).merge(self.file.as_ref().unwrap_or(&empty))
    }
}

impl Places {
    /// The node's places as of now: efivarfs when mounted, the file when /var is the state volume.
    pub fn system() -> Places {
        // Only the node's PID 1 keeps a floor: a unit test on a UEFI development host must never write its NVRAM.
        if std::process::id() != 1 {
            return Places { efi: None, file: None };
        }
        let vars = Vars::system();
        let efi = Path::new(&vars.dir).join(format!("SecureBoot-{}", crate::upgrade::efivar::GLOBAL)).exists()
            || vars.available();
        let volume =
            crate::storage::state::boot_state().is_some_and(|s| s.mode == crate::storage::state::StateMode::Volume);
        Places { efi: efi.then_some(vars), file: volume.then(|| PathBuf::from(STATE_FILE)) }
    }

    pub fn read(&self) -> Read {
        let mut r = Read::default();
        if let Some(vars) = &self.efi {
            match vars.get(VAR_NAME, VENDOR) {
                Ok(v) => r.efi = Some(v.map(|b| Floor::parse(&String::from_utf8_lossy(&b))).unwrap_or_default()),
                Err(e) => r.errors.push(format!("efi variable {VAR_NAME}: {e}")),
            }
        }
        if let Some(file) = &self.file {
            match std::fs::read_to_string(file) {
                Ok(t) => r.file = Some(Floor::parse(&t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => r.file = Some(Floor::default()),
                Err(e) => r.errors.push(format!("{}: {e}", file.display())),
            }
        }
        r
    }

    /// Writes `floor` to every place; the places written, or why none could be.
    pub fn write(&self, floor: &Floor) -> Result<Vec<&'static str>, String> {
        let text = floor.render();
        let mut written = Vec::new();
        let mut errors = Vec::new();
        if let Some(vars) = &self.efi {
            match vars.set(VAR_NAME, VENDOR, text.as_bytes()) {
                Ok(()) => written.push("efi"),
                Err(e) => errors.push(format!("efi variable {VAR_NAME}: {e}")),
            }
        }
        if let Some(file) = &self.file {
            match crate::controller::files::write_atomic(file, text.as_bytes(), 0o600, None) {
                Ok(()) => written.push("state"),
                Err(e) => errors.push(format!("{}: {e}", file.display())),
            }
        }
        match (written.is_empty(), errors.is_empty()) {
            (_, true) => Ok(written),
            (false, false) => {
                log::warn!(
                    "trust.floor_partial written={} error={}",
                    written.join(","),
                    crate::logging::q(&errors.join("; "))
                );
                Ok(written)
            }
            (true, false) => Err(errors.join("; ")),
        }
    }
}

/// The command API's replay memory (`keel_api::command`) in the floor.
#[cfg(feature = "api")]
impl keel_api::command::Floor for Places {
    fn read(&self) -> (u64, BTreeMap<String, u64>) {
        let f = current_in(self, build_time());
        (f.time, f.nonces)
    }

    fn remember(&self, nonce: &str, expires: u64, now: u64) -> Result<(), String> {
        raise_in(self, build_time(), |f| {
            f.nonces.insert(nonce.to_string(), expires);
            f.time = now;
        })
        .map(drop)
    }
}

/// The image's build time, the first floor any node of it has.
pub fn build_time() -> u64 {
    std::fs::read_to_string(BUILD_TIME).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}

static LOCK: Mutex<()> = Mutex::new(());

/// The floor as the node knows it now: both places merged, never below the image's build time.
pub fn current() -> Floor {
    current_in(&Places::system(), build_time())
}

pub fn current_in(places: &Places, build: u64) -> Floor {
    let mut f = places.read().merged();
    f.time = f.time.max(build);
    f
}

/// Raises the floor with `change` (applied to the merged record) and writes it back to every place, unless it did
/// not change. Serialised, so two raises never lose each other's values. Err: it could be kept nowhere (the
/// caller then refuses what it was about to accept, rather than forget it).
pub fn raise(change: impl FnOnce(&mut Floor)) -> Result<Floor, String> {
    raise_in(&Places::system(), build_time(), change)
}

pub fn raise_in(places: &Places, build: u64, change: impl FnOnce(&mut Floor)) -> Result<Floor, String> {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let read = places.read();
    let before = read.merged();
    let mut after = before.clone();
    change(&mut after);
    // Never lower anything: the change is merged over what was there.
    let mut after = before.merge(&after);
    after.time = after.time.max(build);
    after.prune();
    let unchanged = Some(&after) == read.efi.as_ref() || places.efi.is_none();
    let file_unchanged = Some(&after) == read.file.as_ref() || places.file.is_none();
    if unchanged && file_unchanged {
        return Ok(after);
    }
    if places.efi.is_none() && places.file.is_none() {
        return Ok(after);
    }
    places.write(&after)?;
    Ok(after)
}

/// Seconds since 1970 on the node's clock, never below the floor's time: expiry checks use this, so turning the
/// clock back (were it possible) would not revive an expired command or config.
pub fn now_at_least(floor: &Floor) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    now.max(floor.time)
}

/// The `rollback` field of `/v1/status`.
pub fn rollback_status() -> keel_config::status::RollbackStatus {
    let places = Places::system();
    let read = places.read();
    let mut f = read.merged();
    f.time = f.time.max(build_time());
    let kept_in = [("efi", read.efi.is_some()), ("state", read.file.is_some())]
        .into_iter()
        .filter_map(|(n, ok)| ok.then_some(n.to_string()))
        .collect();
    keel_config::status::RollbackStatus {
        generation: f.generation,
        image: f.image.map(|v| v.to_string()),
        time: f.time,
        build_time: build_time(),
        nonces: f.nonces.len(),
        kept_in,
        state: state_word().into(),
        errors: read.errors,
    }
}

/// Whether the state volume holds its part: `volume`, `none` (no state volume: /var is memory by choice or for
/// want of a disk), or `unavailable` (`keel.state=<selector>` named one that could not be mounted).
pub fn state_word() -> &'static str {
    use crate::storage::state::StateMode;
    match crate::storage::state::boot_state() {
        Some(s) if s.mode == StateMode::Volume => "volume",
        _ if state_lost() => "unavailable",
        _ => "none",
    }
}

static STATE_LOST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set at boot when `keel.state=<selector>` named a disk that could not be mounted: what the node accepted before
/// is on that disk, and it cannot prove it has not seen more.
pub fn set_state_lost(lost: bool) {
    STATE_LOST.store(lost, std::sync::atomic::Ordering::Relaxed);
}

pub fn state_lost() -> bool {
    STATE_LOST.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(name: &str, efi: bool, file: bool) -> (Places, PathBuf) {
        let dir = std::env::temp_dir().join(format!("keel-floor-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("efivars")).unwrap();
        let p = Places {
            efi: efi.then(|| Vars { dir: dir.join("efivars") }),
            file: file.then(|| dir.join("var/lib/keel/rollback-floor")),
        };
        (p, dir)
    }

    #[test]
    fn versions_compare_number_by_number() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("1.10.0") > v("1.9.3"));
        assert!(v("2") > v("1.99"));
        assert_eq!(v("0.1.0").to_string(), "0.1.0");
        assert_eq!(Version::parse("1.x"), None);
        assert_eq!(Version::parse(""), None);
    }

    #[test]
    fn records_round_trip_and_damage_loses_only_its_line() {
        let mut f =
            Floor { generation: Some(5), image: Version::parse("1.2.0"), time: 1_800_000_000, ..Floor::default() };
        f.nonces.insert("nonce-0000000000000001".into(), 1_800_000_600);
        assert_eq!(Floor::parse(&f.render()), f);
        let damaged = f.render().replace("generation 5", "generation five") + "nonce short 1\ngarbage\n";
        let back = Floor::parse(&damaged);
        assert_eq!(back.generation, None);
        assert_eq!(back.image, f.image);
        assert_eq!(back.nonces.len(), 1);
    }

    #[test]
    fn the_stricter_place_wins_and_both_are_written() {
        let (p, dir) = places("merge", true, true);
        let efi_only = Places { efi: p.efi.clone(), file: None };
        raise_in(&efi_only, 0, |f| f.generation = Some(7)).unwrap();
        let file_only = Places { efi: None, file: p.file.clone() };
        raise_in(&file_only, 0, |f| f.image = Version::parse("2.0")).unwrap();
        let both = current_in(&p, 100);
        assert_eq!((both.generation, both.image.clone(), both.time), (Some(7), Version::parse("2.0"), 100));
        // A raise writes the merged record to both places.
        raise_in(&p, 100, |f| f.time = 500).unwrap();
        let read = p.read();
        assert_eq!(read.efi, read.file);
        assert_eq!(read.efi.as_ref().map(|f| (f.generation, f.time)), Some((Some(7), 500)));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn nothing_is_ever_lowered_and_expired_nonces_go() {
        let (p, dir) = places("lower", true, false);
        raise_in(&p, 0, |f| {
            f.generation = Some(9);
            f.time = 1000;
            f.nonces.insert("nonce-expires-soon-01".into(), 1100);
            f.nonces.insert("nonce-expires-late-02".into(), 3000);
        })
        .unwrap();
        let after = raise_in(&p, 0, |f| {
            f.generation = Some(3);
            f.time = 10;
        })
        .unwrap();
        assert_eq!((after.generation, after.time, after.nonces.len()), (Some(9), 1000, 2));
        let later = raise_in(&p, 0, |f| f.time = 2000).unwrap();
        assert_eq!(later.nonces.keys().collect::<Vec<_>>(), ["nonce-expires-late-02"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn no_place_to_keep_it_is_an_error_only_when_one_was_expected() {
        let (none, dir) = places("none", false, false);
        assert!(raise_in(&none, 0, |f| f.generation = Some(1)).is_ok());
        let broken = Places { efi: Some(Vars { dir: dir.join("missing") }), file: None };
        assert!(raise_in(&broken, 0, |f| f.generation = Some(1)).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The command nonces (`keel_api::command::Nonces`) kept in the real floor.
#[cfg(all(test, feature = "api"))]
mod command_tests {
    use keel_api::command::{Nonces, NAMESPACE};
    use keel_config::sshsig::{sign, AllowedSigners, HashAlg, PrivateKey};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const ID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

    fn doc(nonce: &str, expires: u64) -> String {
        format!("action = \"reboot\"\nnode = \"{ID}\"\nnonce = \"{nonce}\"\nexpires = {expires}\n")
    }

    #[test]
    fn a_diskless_node_remembers_nonces_in_the_floor_and_never_goes_below_its_time() {
        let k = PrivateKey::from_seed([7u8; 32], "ops");
        let line = format!("ops namespaces=\"keel-command\" {}", k.public_key().to_openssh());
        let allowed = AllowedSigners::parse("allowed_signers", &line).unwrap();
        let now = SystemTime::now();
        let t = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let dir = std::env::temp_dir().join(format!("keel-nonce-floor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("efivars")).unwrap();
        let places = super::Places { efi: Some(crate::upgrade::efivar::Vars { dir: dir.join("efivars") }), file: None };
        let fresh = || Nonces::default().with_floor(Box::new(places.clone()));
        let cmd = doc("nonce-in-the-floor-01", t + 60);
        let sig = sign(cmd.as_bytes(), &k, NAMESPACE, HashAlg::Sha512);
        assert!(fresh().verify(&cmd, &sig, &allowed, ID, "reboot", now).is_ok());
        // Power cycle: no file, a new PID 1; the UEFI variable remembers.
        let again = fresh().verify(&cmd, &sig, &allowed, ID, "reboot", now);
        assert_eq!(again.err().map(|r| r.code), Some("replayed"));
        // The clock turned back an hour: a command that expired before the floor's time stays expired.
        let earlier = now - Duration::from_secs(3600);
        let old = doc("nonce-in-the-floor-02", t - 30);
        let sig = sign(old.as_bytes(), &k, NAMESPACE, HashAlg::Sha512);
        let r = fresh().verify(&old, &sig, &allowed, ID, "reboot", earlier);
        assert_eq!(r.err().map(|r| r.code), Some("expired"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
