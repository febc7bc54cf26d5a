//! The slot image's version, inside what is signed: `image/upgrade-image.sh` appends a 4 KiB manifest after the
//! FAT file system (`keel-slot-manifest 1`, then `version=1.2.0`, zero-padded). The firmware reads only the FAT
//! (it ends before the manifest); the image's `keel-image` signature covers both, so the version cannot be changed
//! without the signing key. The node refuses an image older than the newest it committed (`downgrade`).

use crate::trust::floor::Version;

pub const SIZE: usize = 4096;
pub const MAGIC: &str = "keel-slot-manifest 1\n";

/// The version the image's manifest names; None when it has no manifest (an image built before them) or a bad one.
pub fn version(img: &[u8]) -> Option<Version> {
    let tail = img.get(img.len().checked_sub(SIZE)?..)?;
    let text = std::str::from_utf8(tail.split(|b| *b == 0).next()?).ok()?;
    let body = text.strip_prefix(MAGIC)?;
    body.lines().find_map(|l| l.strip_prefix("version=")).and_then(Version::parse)
}

/// Refuses `img` when it is older than `floor` (the newest image version committed), or names no version while a
/// floor exists.
pub fn check(img: &[u8], floor: Option<&Version>) -> Result<(), (&'static str, String)> {
    match (version(img), floor) {
        (Some(v), Some(f)) if v < *f => {
            Err(("downgrade", format!("image version {v} is older than version {f}, the newest this node committed")))
        }
        (None, Some(f)) => Err((
            "downgrade",
            format!("the image names no version (no slot manifest); this node committed version {f}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(version: &str) -> Vec<u8> {
        let mut img = vec![0xeb; 8192];
        let mut m = format!("{MAGIC}version={version}\n").into_bytes();
        m.resize(SIZE, 0);
        img.extend(m);
        img
    }

    #[test]
    fn reads_the_version_and_refuses_older_images() {
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(version(&image("1.2.0")), Some(v("1.2.0")));
        assert_eq!(version(&[0u8; 100]), None);
        assert_eq!(version(&vec![0u8; 9000]), None);
        assert_eq!(check(&image("1.2.0"), Some(&v("1.2.0"))), Ok(()));
        assert_eq!(check(&image("1.10.0"), Some(&v("1.9.0"))), Ok(()));
        assert_eq!(check(&image("1.1.9"), Some(&v("1.2.0"))).map_err(|e| e.0), Err("downgrade"));
        assert_eq!(check(&[0u8; 9000], Some(&v("1.0"))).map_err(|e| e.0), Err("downgrade"));
        assert_eq!(check(&[0u8; 9000], None), Ok(()));
    }
}
