//! Installing a slot image as it streams in (`PUT /v1/upgrade`): never held whole in memory. The signature comes
//! first; its key must be trusted for `keel-image`, and the version the upload claims (`?version=`) must not be
//! older than the newest committed ([`super::manifest::check_claim`]), before a byte is written. The image then goes to the inactive
//! slot in 4 MiB steps, each flushed, hashed on the way (the signature's hash and SHA-256); at the end the
//! signature is checked against that digest, then the `?sha256=` pin, the size and the FAT boot sector, then the
//! slot is read back from the device. Only then are the record and `BootNext` written ([`super::stage`]).
//!
//! Unlike [`super::install`], a refusal found at the end (a signature that does not match the bytes, a wrong
//! pin, a broken upload, a signed manifest that contradicts the claimed version) comes after the inactive slot was written: its first MiB is then zeroed, so nothing
//! boots unverified bytes. The running slot, the boot order and the trial are untouched, and only a key trusted
//! for `keel-image` gets this far. The next good upgrade rewrites the slot.

use super::image::{Refusal, MAX_IMAGE, NAMESPACE};
use super::{manifest, Installed};
use crate::logging::q;
use crate::trust::floor::Version;
use keel_config::sshsig::{AllowedSigners, HashAlg, Signature};
use sha2::{Digest, Sha256, Sha512};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::SystemTime;

/// Bytes buffered before each write + flush.
const STEP: usize = 4 << 20;

enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    fn new(alg: HashAlg) -> Hasher {
        match alg {
            HashAlg::Sha256 => Hasher::Sha256(Sha256::new()),
            HashAlg::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The armored signature, parsed, and its key trusted for `keel-image`: checked before anything is written.
pub fn check_signer(sig: &str, allowed: &AllowedSigners, now: SystemTime) -> Result<(Signature, String), Refusal> {
    let parsed = Signature::from_armored(sig).map_err(|e| Refusal::new("bad-signature", e.to_string()))?;
    if parsed.namespace != NAMESPACE {
        let detail = format!("the signature is for namespace {:?}, not {NAMESPACE:?}", parsed.namespace);
        return Err(Refusal::new("bad-signature", detail));
    }
    let entry = allowed
        .find(&parsed.key, None, NAMESPACE, keel_config::Timestamp::from_system(now))
        .map_err(|e| Refusal::new("unknown-key", format!("the signing key {}: {e}", parsed.key.fingerprint())))?;
    let principal = entry.principals.clone();
    Ok((parsed, principal))
}

/// Writes chunks to the start of a slot partition, hashing them, within `limit` bytes.
pub struct SlotWriter<W: Write> {
    dev: W,
    limit: u64,
    written: u64,
    buf: Vec<u8>,
    head: Vec<u8>,
    /// The last [`manifest::SIZE`] bytes seen: where the signed slot manifest is.
    tail: Vec<u8>,
    sha256: Sha256,
    signed: Hasher,
}

/// What was written: its SHA-256, the digest the signature covers, its size, its first 512 and last 4096 bytes.
pub struct Written {
    pub sha256: String,
    pub signed_digest: Vec<u8>,
    pub bytes: u64,
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
}

impl<W: Write + AsRawFd> SlotWriter<W> {
    pub fn new(dev: W, limit: u64, alg: HashAlg) -> SlotWriter<W> {
        SlotWriter {
            dev,
            limit,
            written: 0,
            buf: Vec::with_capacity(STEP),
            head: Vec::new(),
            tail: Vec::with_capacity(2 * manifest::SIZE),
            sha256: Sha256::new(),
            signed: Hasher::new(alg),
        }
    }

    pub fn write(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        let total = self.written + self.buf.len() as u64 + chunk.len() as u64;
        if total > self.limit {
            return Err(Refusal::new("too-big", format!("more than the {}-byte slot", self.limit)));
        }
        if self.head.len() < 512 {
            let take = (512 - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        keep_tail(&mut self.tail, chunk);
        self.sha256.update(chunk);
        self.signed.update(chunk);
        self.buf.extend_from_slice(chunk);
        if self.buf.len() >= STEP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Refusal> {
        let fd = self.dev.as_raw_fd();
        self.dev.write_all(&self.buf).map_err(|e| Refusal::new("write-failed", format!("write: {e}")))?;
        // SAFETY: fdatasync on an open descriptor.
        if unsafe { libc::fdatasync(fd) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(Refusal::new("write-failed", format!("flush: {e}")));
        }
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    pub fn finish(mut self) -> Result<Written, Refusal> {
        self.flush()?;
        Ok(Written {
            sha256: hex(&self.sha256.finalize()),
            signed_digest: self.signed.finish(),
            bytes: self.written,
            head: self.head,
            tail: self.tail,
        })
    }
}

/// Keeps the last [`manifest::SIZE`] bytes of everything passed through it.
fn keep_tail(tail: &mut Vec<u8>, chunk: &[u8]) {
    if chunk.len() >= manifest::SIZE {
        tail.clear();
        tail.extend_from_slice(&chunk[chunk.len() - manifest::SIZE..]);
        return;
    }
    tail.extend_from_slice(chunk);
    if tail.len() > manifest::SIZE {
        tail.drain(..tail.len() - manifest::SIZE);
    }
}

/// The checks that need the whole image: the signature over its digest, the pin, the boot sector.
pub fn check_written(w: &Written, sig: &Signature, sha256: Option<&str>) -> Result<(), Refusal> {
    sig.verify_digest(NAMESPACE, &w.signed_digest).map_err(|e| Refusal::new("bad-signature", e.to_string()))?;
    if let Some(want) = sha256 {
        if !want.eq_ignore_ascii_case(&w.sha256) {
            return Err(Refusal::new("wrong-hash", format!("sha256 is {}, expected {want}", w.sha256)));
        }
    }
    let h = &w.head;
    let fat = h.len() >= 512 && h[510..512] == [0x55, 0xAA] && h[3..11].iter().all(|b| b.is_ascii());
    if !fat {
        return Err(Refusal::new("not-a-slot-image", "not a FAT file system image (make upgrade-image builds one)"));
    }
    Ok(())
}

// BLKFLSBUF, as in image.rs: drop the block device's cache so the read-back comes from the disk.
nix::ioctl_none!(blk_flush_buffers, 0x12, 97);

/// The SHA-256 of the first `len` bytes of `node`, read from the device.
pub fn read_back(node: &Path, len: u64) -> Result<String, String> {
    let ctx = |what: &str, e: std::io::Error| format!("{what} {}: {e}", node.display());
    let mut dev = std::fs::File::open(node).map_err(|e| ctx("open", e))?;
    // SAFETY: argument-less ioctl / advisory call on an open descriptor; failing only weakens the read-back.
    let _ = unsafe { blk_flush_buffers(dev.as_raw_fd()) };
    let _ = unsafe { libc::posix_fadvise(dev.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    dev.seek(SeekFrom::Start(0)).map_err(|e| ctx("seek", e))?;
    let mut hasher = Sha256::new();
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        dev.read_exact(&mut buf[..n]).map_err(|e| ctx("read back", e))?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hex(&hasher.finalize()))
}

/// What a streamed upload is checked against besides its signature: the `?sha256=` pin and the version it claims
/// (`?version=`), and the newest image version the node committed.
pub struct Expect<'a> {
    pub sha256: Option<&'a str>,
    pub claimed: Option<Version>,
    pub floor: Option<Version>,
}

/// Installs the image whose chunks `chunks` yields (an `Err` chunk: the upload broke off), signed by `sig`, which
/// claims to be `version`. Blocking (disk I/O): run it off the async runtime.
pub fn install<B: AsRef<[u8]>>(
    sig: &str,
    chunks: impl Iterator<Item = Result<B, String>>,
    sha256: Option<&str>,
    version: Option<&str>,
    allowed: &AllowedSigners,
) -> Result<Installed, Refusal> {
    let (parsed, signer) = check_signer(sig, allowed, SystemTime::now()).inspect_err(refused)?;
    // No downgrades, decided before a byte is written: an older image would bring back the keys it trusted.
    let floor = crate::trust::floor::current().image;
    let claimed = manifest::check_claim(version, floor.as_ref())
        .map_err(|(code, detail)| Refusal::new(code, detail))
        .inspect_err(refused)?;
    let (layout, running) = super::begin()?;
    let expect = Expect { sha256, claimed, floor };
    let result = write_all(&layout, running, &parsed, signer, chunks, &expect);
    super::finish(running, &result);
    result
}

fn refused(r: &Refusal) {
    log::warn!("upgrade.refused reason={} detail={}", r.code, q(&r.detail));
}

fn write_all<B: AsRef<[u8]>>(
    layout: &super::slots::Layout,
    running: super::slots::Slot,
    sig: &Signature,
    signer: String,
    chunks: impl Iterator<Item = Result<B, String>>,
    expect: &Expect,
) -> Result<Installed, Refusal> {
    let target = layout.part(running.other());
    let started = std::time::Instant::now();
    log::info!(
        "upgrade.write slot={} device={} streaming=true signer={}",
        target.slot,
        target.node.display(),
        q(&signer)
    );
    let (got, written) = match stream_and_check(&target.node, target.bytes, sig, chunks, expect) {
        Ok(done) => done,
        Err(r) => {
            refused(&r);
            invalidate(&target.node);
            return Err(r);
        }
    };
    let ms = crate::clock::ms(started.elapsed());
    log::info!("upgrade.verified slot={} sha256={got} bytes={written} ms={ms}", target.slot);
    super::stage(layout, running, target.slot, got, signer, usize::try_from(written).unwrap_or(usize::MAX))
}

/// Streams the image to `node` and checks it: (the SHA-256 read back, bytes).
fn stream_and_check<B: AsRef<[u8]>>(
    node: &Path,
    slot_bytes: u64,
    sig: &Signature,
    chunks: impl Iterator<Item = Result<B, String>>,
    expect: &Expect,
) -> Result<(String, u64), Refusal> {
    let dev = std::fs::OpenOptions::new()
        .write(true)
        .open(node)
        .map_err(|e| Refusal::new("write-failed", format!("open {}: {e}", node.display())))?;
    let mut w = SlotWriter::new(dev, slot_bytes.min(MAX_IMAGE as u64), sig.hash);
    for chunk in chunks {
        let chunk = chunk.map_err(|e| Refusal::new("incomplete", format!("the upload broke off: {e}")))?;
        w.write(chunk.as_ref())?;
    }
    let written = w.finish()?;
    check_written(&written, sig, expect.sha256)?;
    manifest::check_streamed(&written.tail, expect.claimed.as_ref(), expect.floor.as_ref())
        .map_err(|(code, detail)| Refusal::new(code, detail))?;
    let got = read_back(node, written.bytes).map_err(|e| Refusal::new("write-failed", e))?;
    if got != written.sha256 {
        return Err(Refusal::new("write-failed", format!("read back sha256 {got}, wrote {}", written.sha256)));
    }
    Ok((got, written.bytes))
}

/// After a refusal part-way: zero the slot's first MiB (its FAT boot sector and tables), so nothing can boot
/// bytes that were never verified.
fn invalidate(node: &Path) {
    let wipe = || -> std::io::Result<()> {
        let mut dev = std::fs::OpenOptions::new().write(true).open(node)?;
        dev.write_all(&vec![0u8; 1 << 20])?;
        dev.sync_all()
    };
    match wipe() {
        Ok(()) => log::warn!("upgrade.slot_invalidated device={}", node.display()),
        Err(e) => log::error!("upgrade.invalidate_failed device={} error={e}", node.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_config::sshsig::{sign, PrivateKey};

    fn fat_image(n: usize) -> Vec<u8> {
        let mut img: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        img[..11].copy_from_slice(b"\xeb\x3c\x90mkfs.fat");
        img[510] = 0x55;
        img[511] = 0xAA;
        img
    }

    fn trust(key: &PrivateKey, ns: &str) -> AllowedSigners {
        let line = format!("ops namespaces=\"{ns}\" {}", key.public_key().to_openssh());
        AllowedSigners::parse("allowed_signers", &line).unwrap()
    }

    fn stream_to(path: &Path, img: &[u8], sig: &Signature, limit: u64, pin: Option<&str>) -> Result<Written, Refusal> {
        let dev = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let mut w = SlotWriter::new(dev, limit, sig.hash);
        for chunk in img.chunks(7919) {
            w.write(chunk)?;
        }
        let written = w.finish()?;
        check_written(&written, sig, pin)?;
        Ok(written)
    }

    #[test]
    fn streamed_images_are_hashed_checked_and_land_whole() {
        let key = PrivateKey::from_seed([3u8; 32], "ops");
        let allowed = trust(&key, NAMESPACE);
        let img = fat_image((5 << 20) + 4097);
        let armored = sign(&img, &key, NAMESPACE, HashAlg::Sha512);
        let (sig, who) = check_signer(&armored, &allowed, SystemTime::now()).unwrap();
        assert_eq!(who, "ops");
        let path = std::env::temp_dir().join(format!("keel-stream-slot-{}", std::process::id()));
        std::fs::write(&path, vec![0xEEu8; 6 << 20]).unwrap();
        let sha = super::super::image::sha256_hex(&img);
        let w = stream_to(&path, &img, &sig, 6 << 20, Some(&sha.to_uppercase())).unwrap();
        assert_eq!((w.sha256.as_str(), w.bytes), (sha.as_str(), img.len() as u64));
        assert_eq!(read_back(&path, w.bytes), Ok(sha.clone()));
        assert_eq!(w.tail.as_slice(), &img[img.len() - manifest::SIZE..], "the manifest's bytes are kept");
        let disk = std::fs::read(&path).unwrap();
        assert_eq!(&disk[..img.len()], img.as_slice());
        assert!(disk[img.len()..].iter().all(|b| *b == 0xEE), "nothing past the image is touched");

        let code = |r: Result<Written, Refusal>| r.err().map(|r| r.code);
        assert_eq!(code(stream_to(&path, &img, &sig, 1 << 20, None)), Some("too-big"));
        assert_eq!(code(stream_to(&path, &img, &sig, 6 << 20, Some(&"0".repeat(64)))), Some("wrong-hash"));
        let mut tampered = img.clone();
        tampered[1 << 20] ^= 1;
        assert_eq!(code(stream_to(&path, &tampered, &sig, 6 << 20, None)), Some("bad-signature"));
        let not_fat = vec![7u8; 4096];
        let (nsig, _) =
            check_signer(&sign(&not_fat, &key, NAMESPACE, HashAlg::Sha256), &allowed, SystemTime::now()).unwrap();
        assert_eq!(code(stream_to(&path, &not_fat, &nsig, 6 << 20, None)), Some("not-a-slot-image"));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_tail_is_the_last_manifest_size_bytes_whatever_the_chunking() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
        for step in [1usize, 100, 4095, 4096, 4097, 9000] {
            let mut tail = Vec::new();
            for c in data.chunks(step) {
                keep_tail(&mut tail, c);
            }
            assert_eq!(tail.as_slice(), &data[data.len() - manifest::SIZE..], "chunks of {step}");
        }
        let mut short = Vec::new();
        keep_tail(&mut short, &data[..10]);
        assert_eq!(short.as_slice(), &data[..10]);
    }

    #[test]
    fn the_signer_is_checked_before_anything_is_written() {
        let key = PrivateKey::from_seed([3u8; 32], "ops");
        let img = fat_image(4096);
        let code = |armored: &str, allowed: &AllowedSigners| {
            check_signer(armored, allowed, SystemTime::now()).err().map(|r| r.code)
        };
        let good = sign(&img, &key, NAMESPACE, HashAlg::Sha512);
        assert_eq!(code(&good, &trust(&key, "keel-config")), Some("unknown-key"));
        let stranger = PrivateKey::from_seed([4u8; 32], "x");
        assert_eq!(
            code(&sign(&img, &stranger, NAMESPACE, HashAlg::Sha512), &trust(&key, NAMESPACE)),
            Some("unknown-key")
        );
        assert_eq!(
            code(&sign(&img, &key, "keel-config", HashAlg::Sha512), &trust(&key, NAMESPACE)),
            Some("bad-signature")
        );
        assert_eq!(code("not a signature", &trust(&key, NAMESPACE)), Some("bad-signature"));
    }
}
