//! The last-known-good config on disk: the accepted config and its signature, and the highest generation ever
//! accepted (so a reboot cannot be used to roll back). Written atomically: temp file, fsync, rename, fsync dir.

use crate::controller::files::write_atomic;
use std::path::PathBuf;

pub struct Store {
    dir: PathBuf,
}

/// A config as received: its text and its armored signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub text: Vec<u8>,
    pub sig: Vec<u8>,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn last_good(&self) -> Option<Signed> {
        let text = std::fs::read(self.path("current.toml")).ok()?;
        let sig = std::fs::read(self.path("current.toml.sig")).ok()?;
        Some(Signed { text, sig })
    }

    pub fn highest(&self) -> Option<u64> {
        std::fs::read_to_string(self.path("highest-generation")).ok()?.trim().parse().ok()
    }

    /// Saves the signature first, then the config, then the generation: a crash in between leaves a pair that
    /// fails verification (and is refused) rather than an unsigned config that looks fine.
    pub fn save(&self, signed: &Signed, generation: u64) -> std::io::Result<()> {
        write_atomic(&self.path("current.toml.sig"), &signed.sig, 0o600, None)?;
        write_atomic(&self.path("current.toml"), &signed.text, 0o600, None)?;
        if self.highest().is_none_or(|h| generation > h) {
            write_atomic(&self.path("highest-generation"), format!("{generation}\n").as_bytes(), 0o600, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_never_lowers_the_highest_generation() {
        let dir = std::env::temp_dir().join(format!("keel-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::new(&dir);
        assert_eq!(store.last_good(), None);
        assert_eq!(store.highest(), None);
        let a = Signed { text: b"generation = 5".to_vec(), sig: b"sig5".to_vec() };
        store.save(&a, 5).unwrap();
        assert_eq!(store.last_good(), Some(a));
        assert_eq!(store.highest(), Some(5));
        let b = Signed { text: b"generation = 3".to_vec(), sig: b"sig3".to_vec() };
        store.save(&b, 3).unwrap();
        assert_eq!(store.highest(), Some(5));
        let _ = std::fs::remove_dir_all(dir);
    }
}
