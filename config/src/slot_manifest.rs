//! The slot image's manifest, read by the node (which refuses downgrades) and by keelctl (which names the version
//! when it streams an image, so the node can refuse a downgrade before it writes a byte).
//!
//! `image/upgrade-image.sh` appends it after the FAT file system: 4 KiB, `keel-slot-manifest 1`, then
//! `version=1.2.0`, zero-padded. The image's `keel-image` signature covers it.

pub const SIZE: usize = 4096;
pub const MAGIC: &str = "keel-slot-manifest 1\n";

/// The `version=` value of the manifest in the last [`SIZE`] bytes of `img`; None when there is no manifest.
pub fn version_text(img: &[u8]) -> Option<&str> {
    let tail = img.get(img.len().checked_sub(SIZE)?..)?;
    let text = std::str::from_utf8(tail.split(|b| *b == 0).next()?).ok()?;
    let body = text.strip_prefix(MAGIC)?;
    body.lines().find_map(|l| l.strip_prefix("version=")).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_version_only_in_a_manifest_at_the_end() {
        let mut img = vec![0xeb; 8192];
        let mut m = format!("{MAGIC}version=1.2.0\n").into_bytes();
        m.resize(SIZE, 0);
        img.extend(m);
        assert_eq!(version_text(&img), Some("1.2.0"));
        img.push(0);
        assert_eq!(version_text(&img), None, "the manifest must be the last 4 KiB");
        assert_eq!(version_text(&[0u8; 100]), None);
        assert_eq!(version_text(&[0u8; SIZE]), None);
    }
}
