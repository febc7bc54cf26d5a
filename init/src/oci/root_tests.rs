//! Pulls from a real registry (Debian's docker-registry over TLS, with and without htpasswd auth) into a
//! temporary store, as root (the unpacker chowns). Each test holds the reaper test lock: they start programs.

use super::registry_fixture::{gzip, layout, sha256_hex, tar, zstd, Image, TestRegistry, CREDS};
use super::{ensure_in, gc_in, store, PullError, PullProgress, PullSpec, Pulled};
use keel_oci::Reference;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::sync::watch;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("keel-oci-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Two layers: gzip then zstd, with whiteouts, an opaque dir, links, devices, setuid, owners, and symlinks that
/// would lead a naive unpacker out of the rootfs.
fn layers(marker: &str) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let one = tar(&[
        ("bin/", b'5', b"", 0o755, 0),
        ("bin/app", b'0', marker.as_bytes(), 0o755, 0),
        ("etc/", b'5', b"", 0o755, 0),
        ("etc/motd", b'0', b"hello", 0o644, 0),
        ("etc/link", b'2', b"motd", 0o777, 0),
        ("etc/gone", b'0', b"bye", 0o644, 0),
        ("usr/bin/su", b'0', b"su", 0o4755, 0),
        ("usr/lib/", b'5', b"", 0o755, 0),
        ("lib", b'2', b"/usr/lib", 0o777, 0),
        ("escape", b'2', b"/", 0o777, 0),
        ("home/user/note", b'0', b"mine", 0o600, 1000),
        ("var/cache/old", b'0', b"old", 0o644, 0),
        ("dev/null", b'3', b"", 0o666, 0),
        ("run/fifo", b'6', b"", 0o644, 0),
    ]);
    let two = tar(&[
        ("etc/.wh.gone", b'0', b"", 0o644, 0),
        ("var/cache/.wh..wh..opq", b'0', b"", 0o644, 0),
        ("var/cache/new", b'0', b"new", 0o644, 0),
        ("bin/app2", b'1', b"bin/app", 0o755, 0),
        ("lib/libx.so", b'0', b"elf", 0o755, 0),
        ("escape/etc/pwned-by-keel-test", b'0', b"x", 0o644, 0),
    ]);
    vec![("+gzip", gzip(&one), one), ("+zstd", zstd(&two), two)]
}

fn pushed(reg: &TestRegistry, name: &str, repo: &str, marker: &str, creds: Option<&str>) -> (Image, Reference) {
    let dir = tmp(&format!("layout-{name}"));
    let image = layout(&dir, &layers(marker), None);
    reg.push(&dir, repo, creds);
    let _ = std::fs::remove_dir_all(&dir);
    let r = Reference::parse(&format!("{}/{repo}@sha256:{}", reg.host(), image.manifest_hex)).unwrap();
    (image, r)
}

fn spec(reg: &TestRegistry, r: &Reference, token: Option<&str>) -> PullSpec {
    PullSpec {
        reference: r.clone(),
        plain_http: false,
        token: token.map(str::to_string),
        ca_pem: Some(reg.ca_pem.clone()),
    }
}

fn pull(root: &Path, spec: &PullSpec) -> (Result<Pulled, PullError>, PullProgress) {
    let (tx, rx) = watch::channel(PullProgress::default());
    let got = rt().block_on(ensure_in(root, spec, &tx));
    let last = *rx.borrow();
    (got, last)
}

fn blob_names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store::blob_dir(root))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn root_oci_pull_verifies_unpacks_safely_and_is_reused() {
    let _lock = crate::reaper::test_lock();
    let reg = TestRegistry::start("pull", false);
    let (image, r) = pushed(&reg, "pull", "keel/app", "app v1", None);
    let root = tmp("store-pull");

    let (got, progress) = pull(&root, &spec(&reg, &r, None));
    let p = got.unwrap();
    assert_eq!(p.manifest_digest, format!("sha256:{}", image.manifest_hex));
    assert_eq!(p.config.argv(), ["/bin/app", "--port", "8080"]);
    assert_eq!(p.config.env, ["PATH=/bin", "GREETING=hi"]);
    assert_eq!((p.config.working_dir.as_deref(), p.config.user.as_deref()), (Some("/srv"), Some("1000:1000")));
    assert_eq!(progress.percent(), 100, "{progress:?}");
    let fs = &p.rootfs;
    assert_eq!(std::fs::read(fs.join("bin/app")).unwrap(), b"app v1");
    assert_eq!(std::fs::read_link(fs.join("etc/link")).unwrap(), Path::new("motd"));
    assert!(!fs.join("etc/gone").exists(), "whiteout honoured");
    assert!(!fs.join("var/cache/old").exists() && fs.join("var/cache/new").exists(), "opaque dir honoured");
    let su = std::fs::metadata(fs.join("usr/bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o755, "setuid dropped");
    let note = std::fs::metadata(fs.join("home/user/note")).unwrap();
    assert_eq!((note.uid(), note.gid(), note.permissions().mode() & 0o777), (1000, 1000, 0o600));
    let (app, app2) = (std::fs::metadata(fs.join("bin/app")).unwrap(), std::fs::metadata(fs.join("bin/app2")).unwrap());
    assert_eq!(app.ino(), app2.ino(), "hard link");
    assert!(!fs.join("dev/null").exists() && !fs.join("run/fifo").exists(), "device and fifo dropped");
    // Writes through symlinks stay in the rootfs: lib -> /usr/lib and escape -> / resolve inside it.
    assert_eq!(std::fs::read(fs.join("usr/lib/libx.so")).unwrap(), b"elf");
    assert!(fs.join("etc/pwned-by-keel-test").exists());
    assert!(!Path::new("/etc/pwned-by-keel-test").exists(), "a layer wrote outside its rootfs");
    assert!(store::complete_marker(&root, &keel_oci::Digest::parse(&p.manifest_digest).unwrap()).exists());

    // Already complete: answered from the store, with the registry gone.
    drop(reg);
    let (again, _) = pull(&root, &spec_without_registry(&r));
    assert_eq!(again.unwrap(), p);
    let _ = std::fs::remove_dir_all(&root);
}

fn spec_without_registry(r: &Reference) -> PullSpec {
    PullSpec { reference: r.clone(), plain_http: false, token: None, ca_pem: None }
}

#[test]
fn root_oci_tampered_blob_is_refused_and_nothing_is_kept() {
    let _lock = crate::reaper::test_lock();
    let reg = TestRegistry::start("tamper", false);
    let (image, r) = pushed(&reg, "tamper", "keel/app", "app v1", None);
    flip_byte(&reg.blob_file(&image.layers_hex[0]), 40);
    let root = tmp("store-tamper");
    let (got, _) = pull(&root, &spec(&reg, &r, None));
    let e = got.unwrap_err();
    assert_eq!(e.code(), "digest-mismatch", "{e}");
    assert!(e.to_string().contains(&image.layers_hex[0]), "the message names the blob: {e}");
    let blobs = blob_names(&root);
    assert!(!blobs.iter().any(|b| b.starts_with(&image.layers_hex[0])), "tampered blob kept: {blobs:?}");
    assert!(!store::rootfs_path(&root, &keel_oci::Digest::parse(&format!("sha256:{}", image.manifest_hex)).unwrap())
        .exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn root_oci_unauthorized_without_credentials_and_not_found_for_unknown_digests() {
    let _lock = crate::reaper::test_lock();
    let reg = TestRegistry::start("auth", true);
    let (_image, r) = pushed(&reg, "auth", "keel/private", "private", Some(CREDS));
    let root = tmp("store-auth");
    for token in [None, Some("keel:wrong")] {
        let (got, _) = pull(&root, &spec(&reg, &r, token));
        let e = got.unwrap_err();
        assert_eq!(e.code(), "unauthorized", "token {token:?}: {e}");
    }
    let (got, _) = pull(&root, &spec(&reg, &r, Some(CREDS)));
    assert!(got.is_ok(), "{got:?}");
    let unknown = Reference::parse(&format!("{}/keel/private@sha256:{}", reg.host(), "0".repeat(64))).unwrap();
    let (got, _) = pull(&root, &spec(&reg, &unknown, Some(CREDS)));
    let e = got.unwrap_err();
    assert_eq!(e.code(), "not-found", "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn root_oci_partial_blob_is_resumed_and_a_half_unpacked_rootfs_redone() {
    let _lock = crate::reaper::test_lock();
    let reg = TestRegistry::start("resume", false);
    let (image, r) = pushed(&reg, "resume", "keel/app", "app v1", None);
    let layer = image.layers_hex[0].clone();
    let good = std::fs::read(reg.blob_file(&layer)).unwrap();
    assert!(good.len() > 100, "layer too small to cut");
    let half = good.len() / 2;
    // A power cut left half the layer and a rootfs without its completion marker.
    let root = tmp("store-resume");
    std::fs::create_dir_all(store::blob_dir(&root)).unwrap();
    std::fs::write(root.join(format!("blobs/sha256/{layer}.partial")), &good[..half]).unwrap();
    let mdigest = keel_oci::Digest::parse(&format!("sha256:{}", image.manifest_hex)).unwrap();
    std::fs::create_dir_all(store::rootfs_path(&root, &mdigest).join("half")).unwrap();
    // Spoil the first half on the registry: only a resumed download (Range: from the cut) still matches.
    flip_byte(&reg.blob_file(&layer), 10);
    let (got, progress) = pull(&root, &spec(&reg, &r, None));
    let p = got.unwrap();
    assert_eq!(
        sha256_hex(
            &std::fs::read(store::blob_path(&root, &keel_oci::Digest::parse(&format!("sha256:{layer}")).unwrap()))
                .unwrap()
        ),
        layer
    );
    assert!(!p.rootfs.join("half").exists(), "the incomplete rootfs was not redone");
    assert_eq!(std::fs::read(p.rootfs.join("etc/motd")).unwrap(), b"hello");
    assert_eq!(progress.percent(), 100);
    // The same registry to a store without the partial: the spoiled first half is caught.
    let fresh = tmp("store-resume-fresh");
    let (got, _) = pull(&fresh, &spec(&reg, &r, None));
    assert_eq!(got.unwrap_err().code(), "digest-mismatch");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&fresh);
}

#[test]
fn root_oci_gc_removes_what_no_config_names() {
    let _lock = crate::reaper::test_lock();
    let reg = TestRegistry::start("gc", false);
    let (one, r1) = pushed(&reg, "gc1", "keel/one", "one", None);
    let (two, r2) = pushed(&reg, "gc2", "keel/two", "two", None);
    let root = tmp("store-gc");
    let p1 = pull(&root, &spec(&reg, &r1, None)).0.unwrap();
    let p2 = pull(&root, &spec(&reg, &r2, None)).0.unwrap();
    // A leftover partial of something no one wants.
    std::fs::write(root.join(format!("blobs/sha256/{}.partial", "e".repeat(64))), b"junk").unwrap();
    rt().block_on(gc_in(&root, std::slice::from_ref(&r1)));
    assert!(p1.rootfs.join("bin/app").exists() && !p2.rootfs.exists());
    let blobs = blob_names(&root);
    let mut want: Vec<String> =
        [one.manifest_hex.clone(), one.config_hex.clone()].into_iter().chain(one.layers_hex.clone()).collect();
    want.sort();
    want.dedup();
    assert_eq!(blobs, want, "kept exactly image one's blobs");
    assert!(!blobs.contains(&two.manifest_hex));
    drop(reg);
    assert_eq!(pull(&root, &spec_without_registry(&r1)).0.unwrap(), p1, "the kept image is still complete");
    rt().block_on(gc_in(&root, &[]));
    assert!(blob_names(&root).is_empty() && !p1.rootfs.exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn root_oci_index_resolves_linux_amd64_or_says_no_platform() {
    let _lock = crate::reaper::test_lock();
    let reg = TestRegistry::start("index", false);
    let root = tmp("store-index");
    for (arch, repo) in [("amd64", "keel/multi"), ("arm64", "keel/armonly")] {
        let dir = tmp(&format!("layout-index-{arch}"));
        let image = layout(&dir, &layers(arch), Some(arch));
        reg.push(&dir, repo, None);
        let index = image.index_hex.clone().unwrap();
        let r = Reference::parse(&format!("{}/{repo}@sha256:{index}", reg.host())).unwrap();
        let (got, _) = pull(&root, &spec(&reg, &r, None));
        match arch {
            "amd64" => {
                let p = got.unwrap();
                assert_eq!(p.manifest_digest, format!("sha256:{}", image.manifest_hex), "resolved through the index");
                assert_eq!(std::fs::read(p.rootfs.join("bin/app")).unwrap(), b"amd64");
            }
            _ => assert_eq!(got.unwrap_err().code(), "no-platform"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn root_oci_layer_escaping_its_rootfs_is_refused() {
    let _lock = crate::reaper::test_lock();
    let reg = TestRegistry::start("escape", false);
    let victim = format!("keel-oci-escape-victim-{}", std::process::id());
    let evil =
        tar(&[("etc/", b'5', b"", 0o755, 0), (&format!("../../../../../../tmp/{victim}"), b'0', b"x", 0o644, 0)]);
    let dir = tmp("layout-escape");
    let image = layout(&dir, &[("+gzip", gzip(&evil), evil.clone())], None);
    reg.push(&dir, "keel/evil", None);
    let r = Reference::parse(&format!("{}/keel/evil@sha256:{}", reg.host(), image.manifest_hex)).unwrap();
    let root = tmp("store-escape");
    let (got, _) = pull(&root, &spec(&reg, &r, None));
    let e = got.unwrap_err();
    assert_eq!(e.code(), "unsafe-layer", "{e}");
    assert!(e.to_string().contains(&image.layers_hex[0]), "names the layer: {e}");
    assert!(!Path::new("/tmp").join(&victim).exists());
    let mdigest = keel_oci::Digest::parse(&format!("sha256:{}", image.manifest_hex)).unwrap();
    assert!(!store::complete_marker(&root, &mdigest).exists(), "an image with a refused layer is never complete");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&dir);
}
