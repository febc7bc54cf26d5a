//! The slot image's version, inside what is signed: `image/upgrade-image.sh` appends a 4 KiB manifest after the
//! FAT file system (`keel-slot-manifest 1`, then `version=1.2.0`, zero-padded; read by
//! [`keel_config::slot_manifest`]). The firmware reads only the FAT (it ends before the manifest); the image's
//! `keel-image` signature covers both, so the version cannot be changed without the signing key. The node refuses
//! an image older than the newest it committed (`downgrade`).
//!
//! A streamed upload (`PUT /v1/upgrade?version=V`) names its version up front, because the manifest arrives last:
//! [`check_claim`] refuses a claimed downgrade before anything is written, and [`check_streamed`] then holds the
//! signed manifest to the claim, so a false claim leaves only an invalidated slot.

use crate::trust::floor::Version;
use keel_config::slot_manifest;

#[cfg(test)]
use slot_manifest::MAGIC;
pub use slot_manifest::SIZE;

/// The version the image's manifest names; None when it has no manifest (an image built before them) or a bad one.
pub fn version(img: &[u8]) -> Option<Version> {
    slot_manifest::version_text(img).and_then(Version::parse)
}

/// Before a streamed image is written: the version its upload claims must not be older than `floor`, and must be
/// given once a floor exists.
pub fn check_claim(claim: Option<&str>, floor: Option<&Version>) -> Result<Option<Version>, (&'static str, String)> {
    let claimed = match claim {
        None => None,
        Some(text) => Some(
            Version::parse(text).ok_or(("malformed", format!("version {text:?} is not a dotted number (1.2.0)")))?,
        ),
    };
    match (&claimed, floor) {
        (Some(v), Some(f)) if v < f => {
            Err(("downgrade", format!("image version {v} is older than version {f}, the newest this node committed")))
        }
        (None, Some(f)) => Err((
            "downgrade",
            format!("the upload names no version (?version=, keelctl sends it); this node committed version {f}"),
        )),
        _ => Ok(claimed),
    }
}

/// After a streamed image was written: its signed manifest (in `tail`, the last bytes) passes [`check`] and names
/// exactly the version the upload claimed.
pub fn check_streamed(
    tail: &[u8],
    claimed: Option<&Version>,
    floor: Option<&Version>,
) -> Result<(), (&'static str, String)> {
    check(tail, floor)?;
    match (claimed, version(tail)) {
        (Some(c), Some(v)) if *c != v => {
            Err(("version-mismatch", format!("the upload claimed version {c}, the image's signed manifest says {v}")))
        }
        (Some(c), None) => {
            Err(("version-mismatch", format!("the upload claimed version {c}, the image has no slot manifest")))
        }
        _ => Ok(()),
    }
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

    #[test]
    fn a_streamed_upload_is_held_to_the_version_it_claims() {
        let v = |s| Version::parse(s).unwrap();
        let code = |r: Result<Option<Version>, (&'static str, String)>| r.map_err(|e| e.0);
        assert_eq!(code(check_claim(Some("1.3"), Some(&v("1.2")))), Ok(Some(v("1.3"))));
        assert_eq!(code(check_claim(Some("1.1"), Some(&v("1.2")))), Err("downgrade"));
        assert_eq!(code(check_claim(None, Some(&v("1.2")))), Err("downgrade"));
        assert_eq!(code(check_claim(None, None)), Ok(None));
        assert_eq!(code(check_claim(Some("one"), None)), Err("malformed"));
        let tail = image("1.3.0");
        let tail = &tail[tail.len() - SIZE..];
        assert_eq!(check_streamed(tail, Some(&v("1.3.0")), Some(&v("1.2"))), Ok(()));
        assert_eq!(check_streamed(tail, None, None), Ok(()));
        assert_eq!(check_streamed(tail, Some(&v("1.4")), None).map_err(|e| e.0), Err("version-mismatch"));
        assert_eq!(
            check_streamed(&image("1.0")[8192..], Some(&v("1.3")), Some(&v("1.2"))).map_err(|e| e.0),
            Err("downgrade")
        );
        assert_eq!(check_streamed(&[0u8; SIZE], Some(&v("1.3")), None).map_err(|e| e.0), Err("version-mismatch"));
    }
}
