//! A slot image (`make upgrade-image`): a FAT file system holding `keel.efi`, signed with a trusted key in the
//! `keel-image` namespace. It is checked completely before a byte reaches the disk, written raw over the inactive
//! slot partition, flushed, and read back from the device to prove what landed is what was signed.

use keel_config::sshsig::{self, AllowedSigners};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::SystemTime;

pub const NAMESPACE: &str = "keel-image";
/// The largest image accepted (a slot of `make disk` is 64 MiB).
pub const MAX_IMAGE: usize = 64 << 20;
const END_MARKER: &[u8] = b"-----END SSH SIGNATURE-----";

/// A refused upgrade: the API's one refusal type (code and detail).
pub use keel_config::credential::Refusal;

/// `PUT /v1/upgrade`'s body: the armored signature (up to and including its END line and one newline), then the
/// image bytes.
pub fn split_body(body: &[u8]) -> Result<(&str, &[u8]), Refusal> {
    let end = body
        .windows(END_MARKER.len())
        .position(|w| w == END_MARKER)
        .ok_or_else(|| Refusal::new("unsigned", "the body must start with the image's armored SSH signature"))?;
    let mut at = end + END_MARKER.len();
    if body.get(at) == Some(&b'\r') {
        at += 1;
    }
    if body.get(at) == Some(&b'\n') {
        at += 1;
    }
    let sig = std::str::from_utf8(&body[..at]).map_err(|_| Refusal::new("malformed", "the signature is not text"))?;
    Ok((sig, &body[at..]))
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Who signed it: the principal. Checks the signature, then the expected hash (when given), then that it fits
/// the slot and looks like a FAT boot sector.
pub fn verify(
    image: &[u8],
    sig: &str,
    sha256: Option<&str>,
    allowed: &AllowedSigners,
    slot_bytes: u64,
    now: SystemTime,
) -> Result<String, Refusal> {
    let verified = sshsig::verify(image, sig, allowed, None, NAMESPACE, now).map_err(|e| {
        let reason = keel_config::Reason::from(&e);
        let code = if reason.code() == "unknown-key" { "unknown-key" } else { "bad-signature" };
        Refusal::new(code, reason.to_string())
    })?;
    if let Some(want) = sha256 {
        let got = sha256_hex(image);
        if !want.eq_ignore_ascii_case(&got) {
            return Err(Refusal::new("wrong-hash", format!("sha256 is {got}, expected {want}")));
        }
    }
    if image.len() as u64 > slot_bytes {
        return Err(Refusal::new("too-big", format!("{} bytes do not fit the {slot_bytes}-byte slot", image.len())));
    }
    let fat = image.len() >= 512 && image[510..512] == [0x55, 0xAA] && image[3..11].iter().all(|b| b.is_ascii());
    if !fat {
        return Err(Refusal::new("not-a-slot-image", "not a FAT file system image (make upgrade-image builds one)"));
    }
    Ok(verified.principal)
}

// BLKFLSBUF: write back and drop the block device's buffer cache, so the read-back comes from the disk.
nix::ioctl_none!(blk_flush_buffers, 0x12, 97);

/// Writes `image` at the start of the partition `node`, flushes it to the device, drops the cache, reads it
/// back and compares hashes. Returns the SHA-256 of what was read back.
pub fn write_and_verify(node: &Path, image: &[u8]) -> Result<String, String> {
    let ctx = |what: &str, e: std::io::Error| format!("{what} {}: {e}", node.display());
    let mut dev = std::fs::OpenOptions::new().read(true).write(true).open(node).map_err(|e| ctx("open", e))?;
    // In 4 MiB steps, each flushed: little dirty memory on a small node, and the disk fills from the start.
    for chunk in image.chunks(4 << 20) {
        dev.write_all(chunk).and_then(|_| dev.sync_data()).map_err(|e| ctx("write", e))?;
    }
    dev.sync_all().map_err(|e| ctx("fsync", e))?;
    // SAFETY: an argument-less ioctl on an open block device. Failing it (not a block device) only weakens
    // the read-back to the page cache; the fadvise below still drops clean pages.
    let _ = unsafe { blk_flush_buffers(dev.as_raw_fd()) };
    // SAFETY: advisory call on an open descriptor.
    let _ = unsafe { libc::posix_fadvise(dev.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    dev.seek(SeekFrom::Start(0)).map_err(|e| ctx("seek", e))?;
    let mut hasher = Sha256::new();
    let mut left = image.len();
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(buf.len());
        dev.read_exact(&mut buf[..n]).map_err(|e| ctx("read back", e))?;
        hasher.update(&buf[..n]);
        left -= n;
    }
    let got: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let want = sha256_hex(image);
    if got != want {
        return Err(format!("read back {} as sha256 {got}, wrote {want}", node.display()));
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_config::sshsig::{sign, HashAlg, PrivateKey};

    fn fat_image() -> Vec<u8> {
        let mut img = vec![0u8; 4096];
        img[..11].copy_from_slice(b"\xeb\x3c\x90mkfs.fat");
        img[510] = 0x55;
        img[511] = 0xAA;
        img[1000] = 42;
        img
    }

    fn trust(key: &PrivateKey, ns: &str) -> AllowedSigners {
        let line = format!("ops namespaces=\"{ns}\" {}", key.public_key().to_openssh());
        AllowedSigners::parse("allowed_signers", &line).unwrap()
    }

    #[test]
    fn splits_signature_and_image() {
        let key = PrivateKey::from_seed([3u8; 32], "ops");
        let img = fat_image();
        let sig = sign(&img, &key, NAMESPACE, HashAlg::Sha512);
        let mut body = sig.clone().into_bytes();
        body.extend_from_slice(&img);
        let (s, i) = split_body(&body).unwrap();
        assert_eq!((s, i), (sig.as_str(), img.as_slice()));
        assert_eq!(split_body(&img).unwrap_err().code, "unsigned");
    }

    #[test]
    fn verifies_signer_hash_size_and_format() {
        let key = PrivateKey::from_seed([3u8; 32], "ops");
        let allowed = trust(&key, NAMESPACE);
        let img = fat_image();
        let now = SystemTime::now();
        let sig = sign(&img, &key, NAMESPACE, HashAlg::Sha512);
        let hash = sha256_hex(&img);
        assert_eq!(verify(&img, &sig, Some(&hash.to_uppercase()), &allowed, 1 << 20, now), Ok("ops".into()));
        let code = |r: Result<String, Refusal>| r.unwrap_err().code;
        assert_eq!(code(verify(&img, &sig, Some(&sha256_hex(b"x")), &allowed, 1 << 20, now)), "wrong-hash");
        assert_eq!(code(verify(&img, &sig, None, &allowed, 100, now)), "too-big");
        let mut tampered = img.clone();
        tampered[1000] = 43;
        assert_eq!(code(verify(&tampered, &sig, None, &allowed, 1 << 20, now)), "bad-signature");
        let config_sig = sign(&img, &key, "keel-config", HashAlg::Sha512);
        assert_eq!(code(verify(&img, &config_sig, None, &allowed, 1 << 20, now)), "bad-signature");
        let stranger = PrivateKey::from_seed([4u8; 32], "x");
        let other = sign(&img, &stranger, NAMESPACE, HashAlg::Sha512);
        assert_eq!(code(verify(&img, &other, None, &allowed, 1 << 20, now)), "unknown-key");
        let not_fat = vec![7u8; 4096];
        let sig = sign(&not_fat, &key, NAMESPACE, HashAlg::Sha512);
        assert_eq!(code(verify(&not_fat, &sig, None, &allowed, 1 << 20, now)), "not-a-slot-image");
    }

    #[test]
    fn writes_and_reads_back() {
        let path = std::env::temp_dir().join(format!("keel-slot-{}", std::process::id()));
        std::fs::write(&path, vec![0xEEu8; 3 << 20]).unwrap();
        let img: Vec<u8> = (0..(1 << 20) + 4097).map(|i| (i % 251) as u8).collect();
        assert_eq!(write_and_verify(&path, &img), Ok(sha256_hex(&img)));
        let disk = std::fs::read(&path).unwrap();
        assert_eq!(&disk[..img.len()], img.as_slice());
        assert!(disk[img.len()..].iter().all(|b| *b == 0xEE), "nothing past the image is touched");
        let _ = std::fs::remove_file(path);
    }
}
