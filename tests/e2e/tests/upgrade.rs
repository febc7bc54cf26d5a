//! End to end: A/B upgrades of the UEFI disk image (`make disk`, `make upgrade-image`), with the disk and the
//! firmware's variable store kept across reboots and QEMU restarts like a real machine's. A signed slot image
//! pushed with `keelctl upgrade` lands in slot B, the node reboots into it, commits it once its config converges
//! and keeps booting it; a broken image falls back to slot A by itself; an image with a bad signature or hash is
//! refused with slot B untouched; a power cut during the slot write leaves the node on slot A.

use keel_e2e::http_server::ssh_keygen;
use keel_e2e::media::{self, Boot};
use keel_e2e::{build_dir, free_port, keelctl_cmd, Vm, VmConfig, STEP_TIMEOUT, UEFI_BOOT_TIMEOUT};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const UUID: &str = "6b65656c-0000-4000-8000-00000000ab01";
/// Slot B of `make disk`: after 1 MiB of GPT, the 64 MiB ESP and the 64 MiB slot A.
const SLOT_B_OFFSET: u64 = 129 << 20;
const SLOT_BYTES: u64 = 64 << 20;

/// One machine: its own copy of the disk image, NVRAM and a blank state disk, in a scratch directory.
struct Machine {
    dir: PathBuf,
    disk: PathBuf,
    vars: PathBuf,
    state: PathBuf,
    port: u16,
}

impl Machine {
    fn new(name: &str) -> Machine {
        let dir = std::env::temp_dir().join(format!("keel-e2e-upgrade-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let disk = dir.join("disk.img");
        let ok = Command::new("cp")
            .arg("--sparse=always")
            .arg(media::disk_image())
            .arg(&disk)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "copy the disk image");
        let vars = media::ovmf_vars(&dir.join("OVMF_VARS.fd"));
        let state = dir.join("state.img");
        std::fs::File::create(&state).and_then(|f| f.set_len(64 << 20)).expect("state disk");
        Machine { dir, disk, vars, state, port: free_port() }
    }

    fn boot(&self, name: &str) -> Vm {
        let cfg = VmConfig {
            boot: Boot::UefiPersistent { disk: self.disk.clone(), vars: self.vars.clone() },
            uuid: Some(UUID.into()),
            no_reboot: false,
            memory_mib: 512,
            hostfwd: vec![(self.port, 7443)],
            disks: vec![self.state.clone()],
            ..VmConfig::default()
        };
        Vm::boot(name, &cfg)
    }

    /// Runs keelctl against the node: (success, stdout, stderr).
    fn ctl_out(&self, args: &[&str]) -> (bool, String, String) {
        let out = keelctl_cmd()
            .args(args)
            .args(["--node", &format!("127.0.0.1:{}", self.port), "--known-nodes"])
            .arg(self.dir.join("known_nodes"))
            .output()
            .expect("run keelctl");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    fn ctl(&self, args: &[&str]) -> (bool, String) {
        let (ok, out, err) = self.ctl_out(args);
        (ok, out + &err)
    }

    /// `keelctl status -o json`, retried while the node's API comes up.
    fn status(&self) -> Value {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let (ok, out, err) = self.ctl_out(&["status", "-o", "json"]);
            if ok {
                return serde_json::from_str(&out).unwrap_or_else(|e| panic!("status is not JSON ({e}): {out}"));
            }
            assert!(Instant::now() < deadline, "keelctl status never answered: {err}");
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// The first MiB of slot B on the disk image.
    fn slot_b_head(&self) -> Vec<u8> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&self.disk).expect("open the disk image");
        let mut b = vec![0u8; 1 << 20];
        f.seek(SeekFrom::Start(SLOT_B_OFFSET)).and_then(|_| f.read_exact(&mut b)).expect("read slot B");
        b
    }

    /// SHA-256 of slot B's bytes on the disk image.
    fn slot_b_hash(&self) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "dd if={} bs=1M skip={} count={} status=none | sha256sum",
                self.disk.display(),
                SLOT_B_OFFSET >> 20,
                SLOT_BYTES >> 20
            ))
            .output()
            .expect("hash slot B");
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A slot image whose UKI has `cmdline`, signed for keel-image by `key`: what `make upgrade-image` builds, with a
/// command line of the test's own. Returns the image (its signature is beside it, `.sig`).
fn slot_image(dir: &Path, name: &str, cmdline: &str, key: &Path, pad_mib: Option<u64>) -> PathBuf {
    slot_image_version(dir, name, cmdline, key, pad_mib, env!("CARGO_PKG_VERSION"))
}

/// A signed slot image whose manifest (and UKI .osrel) says `version`.
fn slot_image_version(
    dir: &Path,
    name: &str,
    cmdline: &str,
    key: &Path,
    pad_mib: Option<u64>,
    version: &str,
) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (uki, img) = (dir.join(format!("{name}.efi")), dir.join(format!("{name}.img")));
    let b = build_dir();
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(
        Command::new(root.join("image/uki.sh"))
            .arg(b.join("vmlinuz"))
            .arg(b.join("initramfs.cpio.zst"))
            .arg(cmdline)
            .arg(version)
            .arg(&uki),
        "image/uki.sh",
    );
    let mut script = Command::new(root.join("image/upgrade-image.sh"));
    script.arg(&uki).arg(&img).env("KEEL_VERSION", version);
    if let Some(mib) = pad_mib {
        script.env("KEEL_SLOT_IMAGE_MIB", mib.to_string());
    }
    run(&mut script, "image/upgrade-image.sh");
    let _ = std::fs::remove_file(img.with_extension("img.sig"));
    run(Command::new("ssh-keygen").args(["-q", "-Y", "sign", "-n", "keel-image", "-f"]).arg(key).arg(&img), "sign");
    img
}

fn dev_key() -> PathBuf {
    let key = build_dir().join("keys/dev_ed25519");
    assert!(key.exists(), "{} is missing: make image makes it", key.display());
    key
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

#[test]
fn qemu_upgrade_a_to_b_commits_and_survives_a_reboot() {
    let m = Machine::new("ab");
    let img = slot_image(&m.dir, "slot-b", "console=ttyS0 panic=-1 keel.marker=slot-b-image", &dev_key(), None);
    let mut vm = m.boot("upgrade_ab");
    vm.expect("keel: upgrade.slot running=A", UEFI_BOOT_TIMEOUT);
    let (ok, out) = m.ctl(&["upgrade", arg(&img)]);
    assert!(ok, "keelctl upgrade: {out}");
    assert!(out.contains("slot B"), "{out}");
    vm.expect_anywhere("keel: upgrade.verified slot=B", STEP_TIMEOUT);
    vm.expect_anywhere("keel: upgrade.staged slot=B boot_next=Boot", STEP_TIMEOUT);

    // The reboot into slot B: its trial, judged by the config converging.
    vm.expect("keel: boot.start", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.slot running=B", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.trial slot=B", STEP_TIMEOUT);
    vm.expect("keel: upgrade.committed slot=B", Duration::from_secs(180));
    let st = m.status();
    assert_eq!(st["boot"]["slot"], "B", "{st:#}");
    assert_eq!(st["boot"]["last_upgrade"]["result"], "committed", "{st:#}");
    assert_eq!(st["boot"]["last_upgrade"]["slot"], "B", "{st:#}");
    assert!(st["boot"]["pending_slot"].is_null(), "{st:#}");
    // The new image runs: its own command line.
    vm.expect_anywhere("Kernel command line: console=ttyS0 panic=-1 keel.marker=slot-b-image", STEP_TIMEOUT);

    // A clean reboot: slot B is the default now, with no second trial.
    let (ok, out) = m.ctl(&["reboot", "--key", arg(&dev_key())]);
    assert!(ok, "keelctl reboot: {out}");
    vm.expect("keel: boot.start", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.slot running=B", UEFI_BOOT_TIMEOUT);
    let st = m.status();
    assert_eq!(st["boot"]["slot"], "B", "{st:#}");
    assert_eq!(st["boot"]["last_upgrade"]["result"], "committed", "{st:#}");
    let trials = vm.transcript().iter().filter(|l| l.contains("keel: upgrade.trial ")).count();
    assert_eq!(trials, 1, "the committed slot boots without another trial");
    drop(vm);

    // A cold start (QEMU restarted, NVRAM and disk kept) still boots slot B.
    let mut vm = m.boot("upgrade_ab_cold");
    vm.expect("keel: upgrade.slot running=B", UEFI_BOOT_TIMEOUT);
}

#[test]
fn qemu_upgrade_to_a_broken_image_rolls_back_to_a() {
    let m = Machine::new("broken");
    // Its kernel finds no init and panics; panic=-1 resets the machine at once.
    let img = slot_image(&m.dir, "broken", "console=ttyS0 panic=-1 rdinit=/nonexistent", &dev_key(), None);
    let mut vm = m.boot("upgrade_broken");
    vm.expect("keel: upgrade.slot running=A", UEFI_BOOT_TIMEOUT);
    let (ok, out) = m.ctl(&["upgrade", arg(&img)]);
    assert!(ok, "keelctl upgrade: {out}");
    vm.expect("Kernel panic", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.slot running=A", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.rolled_back slot=B running=A", STEP_TIMEOUT);
    let st = m.status();
    assert_eq!(st["boot"]["slot"], "A", "{st:#}");
    assert_eq!(st["boot"]["last_upgrade"]["result"], "rolled-back", "{st:#}");
    assert_eq!(st["boot"]["last_upgrade"]["slot"], "B", "{st:#}");
    assert!(st["boot"]["pending_slot"].is_null(), "{st:#}");
    let reason = st["boot"]["last_upgrade"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("did not come up"), "{st:#}");
}

/// PUT /v1/upgrade with a hand-made body (keelctl refuses to send these), authenticated with the development key.
fn put_raw(m: &Machine, body: &[u8], query: &str) -> String {
    let api = keel_e2e::api_client::Api::new(m.port, None).with_key(&dev_key());
    let (_, answer) = api.request("PUT", &format!("/v1/upgrade{query}"), Some(body)).expect("PUT /v1/upgrade");
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn qemu_upgrade_with_bad_signature_or_hash_is_refused_and_stages_nothing() {
    let m = Machine::new("refused");
    let img = slot_image(&m.dir, "slot-b", "console=ttyS0 panic=-1", &dev_key(), None);
    let image = std::fs::read(&img).expect("read image");
    let sig = std::fs::read(img.with_extension("img.sig")).expect("read signature");
    let before = m.slot_b_hash();
    let mut vm = m.boot("upgrade_refused");
    vm.expect("keel: upgrade.slot running=A", UEFI_BOOT_TIMEOUT);
    m.status();

    // Signed by a key the image does not trust: as keelctl's credential too, the node refuses it (401) before
    // reading the body; with a trusted credential, the signature's key is refused before a byte is written.
    let stranger = ssh_keygen(&m.dir);
    let (ok, out) = m.ctl(&["upgrade", arg(&img), "--key", arg(&stranger)]);
    assert!(!ok && out.contains("HTTP 401: unknown-key") && out.contains("nothing was written"), "{out}");
    let stranger_key = keel_config::sshsig::PrivateKey::parse(&std::fs::read_to_string(&stranger).expect("read key"))
        .expect("the stranger's key");
    let stranger_sig =
        keel_config::sshsig::sign(&image, &stranger_key, "keel-image", keel_config::sshsig::HashAlg::Sha512);
    let mut body = stranger_sig.into_bytes();
    body.extend_from_slice(&image);
    let answer = put_raw(&m, &body, "");
    assert!(answer.contains("\"unknown-key\""), "{answer}");
    // The trusted signature over other bytes.
    let mut tampered = sig.clone();
    let mut changed = image.clone();
    changed[100_000] ^= 0xff;
    tampered.extend_from_slice(&changed);
    // (Each names the image's version, as keelctl does: the node has a floor, and would refuse it otherwise.)
    let version = format!("?version={}", env!("CARGO_PKG_VERSION"));
    let answer = put_raw(&m, &tampered, &version);
    assert!(answer.contains("\"bad-signature\""), "{answer}");
    // The right image and signature, but not the hash the sender expects.
    let mut body = sig.clone();
    body.extend_from_slice(&image);
    let answer = put_raw(&m, &body, &format!("{version}&sha256={}", "0".repeat(64)));
    assert!(answer.contains("\"wrong-hash\""), "{answer}");

    vm.expect_anywhere("keel: upgrade.refused reason=wrong-hash", STEP_TIMEOUT);
    let count = |what: &str| vm.transcript().iter().filter(|l| l.contains(what)).count();
    assert_eq!(count("keel: upgrade.refused "), 3, "every bad upgrade is refused");
    // The untrusted signer is refused before a byte is written; the other two are streamed to slot B (never
    // held in memory), found bad at the end, and slot B's head is zeroed so nothing boots them.
    assert_eq!(count("keel: upgrade.write "), 2, "only trusted signers' bodies are streamed to the slot");
    assert_eq!(count("keel: upgrade.slot_invalidated "), 2);
    let st = m.status();
    assert!(st["boot"]["slot"] == "A" && st["boot"]["pending_slot"].is_null(), "{st:#}");
    drop(vm);
    assert_ne!(m.slot_b_hash(), before, "slot B was streamed to");
    assert!(m.slot_b_head().iter().all(|b| *b == 0), "slot B's first MiB is zeroed after the refusals");
}

#[test]
fn qemu_older_image_is_refused_as_a_downgrade_and_slot_b_is_untouched() {
    let m = Machine::new("downgrade");
    // Older than the running image (the crate's version, which the normal boot raised the floor to).
    let img = slot_image_version(&m.dir, "old", "console=ttyS0 panic=-1", &dev_key(), None, "0.0.9");
    let image = std::fs::read(&img).expect("read image");
    let sig = std::fs::read(img.with_extension("img.sig")).expect("read signature");
    let before = m.slot_b_hash();
    let mut vm = m.boot("upgrade_downgrade");
    vm.expect("keel: upgrade.slot running=A", UEFI_BOOT_TIMEOUT);
    vm.expect_anywhere(&format!("keel: upgrade.image_floor version={}", env!("CARGO_PKG_VERSION")), STEP_TIMEOUT);
    m.status();

    // keelctl names the image's version (from its signed manifest): refused before a byte is written.
    let (ok, out) = m.ctl(&["upgrade", arg(&img)]);
    assert!(!ok && out.contains("downgrade") && out.contains("0.0.9"), "{out}");
    let mut body = sig.clone();
    body.extend_from_slice(&image);
    // A client that names no version, once the node has a floor: refused the same way.
    let answer = put_raw(&m, &body, "");
    assert!(answer.contains("\"downgrade\"") && answer.contains("names no version"), "{answer}");
    vm.expect_anywhere("keel: upgrade.refused reason=downgrade", STEP_TIMEOUT);
    let count = |vm: &Vm, what: &str| vm.transcript().iter().filter(|l| l.contains(what)).count();
    assert_eq!(count(&vm, "keel: upgrade.write "), 0, "a downgrade is refused before the slot is opened");
    assert_eq!(m.slot_b_hash(), before, "slot B is byte-identical after the refused downgrades");

    // A client that lies about the version (it needs a keel-image key for this): the signed manifest at the end
    // contradicts the claim, and the written slot is invalidated, never staged.
    let answer = put_raw(&m, &body, "?version=99.0");
    assert!(answer.contains("\"version-mismatch\"") || answer.contains("\"downgrade\""), "{answer}");
    vm.expect_anywhere("keel: upgrade.slot_invalidated", STEP_TIMEOUT);
    let st = m.status();
    assert!(st["boot"]["slot"] == "A" && st["boot"]["pending_slot"].is_null(), "{st:#}");
    drop(vm);
    assert!(m.slot_b_head().iter().all(|b| *b == 0), "the lied-about image cannot boot: slot B's head is zeroed");
}

#[test]
fn qemu_power_cut_during_the_slot_write_leaves_slot_a_booting() {
    let m = Machine::new("powercut");
    // A slot-sized image, so the write lasts long enough to cut the power in the middle of it.
    let img = slot_image(&m.dir, "big", "console=ttyS0 panic=-1", &dev_key(), Some(60));
    let mut vm = m.boot("upgrade_powercut");
    vm.expect("keel: upgrade.slot running=A", UEFI_BOOT_TIMEOUT);
    m.status();
    let ctl = {
        let mut cmd = keelctl_cmd();
        cmd.args(["upgrade", arg(&img), "--node", &format!("127.0.0.1:{}", m.port), "--known-nodes"])
            .arg(m.dir.join("known_nodes"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().expect("run keelctl upgrade")
    };
    vm.expect("keel: upgrade.write slot=B", Duration::from_secs(300));
    // Cut the power as soon as the new image's first bytes reach slot B on the disk.
    let head = |m: &Machine| {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&m.disk).expect("open the disk image");
        let mut b = vec![0u8; 4096];
        f.seek(SeekFrom::Start(SLOT_B_OFFSET)).and_then(|_| f.read_exact(&mut b)).expect("read slot B");
        b
    };
    let new_head = std::fs::read(&img).map(|i| i[..4096].to_vec()).expect("read image");
    let deadline = Instant::now() + Duration::from_secs(300);
    while head(&m) != new_head {
        assert!(Instant::now() < deadline, "the slot write never reached the disk");
        std::thread::sleep(Duration::from_millis(5));
    }
    let transcript = vm.transcript();
    drop(vm); // SIGKILL: the power goes mid-write.
    assert!(
        !transcript.iter().any(|l| l.contains("keel: upgrade.verified")),
        "the cut came after the write had finished; the test proves nothing"
    );
    let mut ctl = ctl;
    let _ = ctl.wait();

    let mut vm = m.boot("upgrade_powercut_after");
    vm.expect("keel: upgrade.slot running=A", UEFI_BOOT_TIMEOUT);
    let st = m.status();
    assert!(st["boot"]["slot"] == "A" && st["boot"]["pending_slot"].is_null(), "{st:#}");
    let transcript = vm.transcript();
    assert!(!transcript.iter().any(|l| l.contains("upgrade.trial") || l.contains("upgrade.rolled_back")), "no trial");
}

#[test]
fn qemu_upgrade_named_by_the_config_is_fetched_installed_and_committed_once() {
    use keel_e2e::http_server::FileServer;
    let m = Machine::new("config");
    let img = slot_image(&m.dir, "slot-b", "console=ttyS0 panic=-1 keel.marker=from-config", &dev_key(), None);
    let image = std::fs::read(&img).expect("read image");
    let sha = {
        let out = Command::new("sha256sum").arg(&img).output().expect("sha256sum");
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
    };
    let server = FileServer::start();
    server.put("/slot.img", image);
    server.put("/slot.img.sig", std::fs::read(img.with_extension("img.sig")).expect("read signature"));
    let config = m.dir.join("node.toml");
    let text = format!(
        "version = 1\ngeneration = 2\n[upgrade]\nurl = \"http://10.0.2.2:{}/slot.img\"\nsha256 = \"{sha}\"\n",
        server.port
    );
    std::fs::write(&config, text).expect("write config");

    let mut vm = m.boot("upgrade_config");
    vm.expect("keel: upgrade.slot running=A", UEFI_BOOT_TIMEOUT);
    m.status();
    let (ok, out) = m.ctl(&["apply", arg(&config), "--key", arg(&dev_key())]);
    assert!(ok, "keelctl apply: {out}");
    vm.expect("keel: upgrade.fetch generation=2", STEP_TIMEOUT);
    vm.expect("keel: upgrade.staged slot=B", STEP_TIMEOUT);
    vm.expect("keel: boot.start", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.slot running=B", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.committed slot=B", Duration::from_secs(180));
    vm.expect_anywhere("Kernel command line: console=ttyS0 panic=-1 keel.marker=from-config", STEP_TIMEOUT);
    let st = m.status();
    assert_eq!(st["boot"]["slot"], "B", "{st:#}");
    assert_eq!(st["boot"]["last_upgrade"]["sha256"], sha.as_str(), "{st:#}");
    assert_eq!(st["config"]["generation"], 2, "{st:#}");
    // The same config on the new slot does not install the image again.
    let fetches = vm.transcript().iter().filter(|l| l.contains("keel: upgrade.fetch ")).count();
    assert_eq!(fetches, 1, "the image is installed once");
}

#[test]
fn qemu_upgrade_that_never_converges_rolls_back_at_the_deadline() {
    let m = Machine::new("deadline");
    // The node's config cannot converge (no such sysctl); the new image gives its trial 15 s.
    let config = m.dir.join("node.toml");
    std::fs::write(&config, "version = 1\ngeneration = 2\n[sysctl]\n\"kernel.keel_e2e_missing\" = \"1\"\n")
        .expect("write config");
    let img = slot_image(&m.dir, "slow", "console=ttyS0 panic=-1 keel.upgrade_deadline=15", &dev_key(), None);
    let mut vm = m.boot("upgrade_deadline");
    vm.expect("keel: upgrade.slot running=A", UEFI_BOOT_TIMEOUT);
    m.status();
    let (ok, out) = m.ctl(&["apply", arg(&config), "--key", arg(&dev_key())]);
    assert!(ok, "keelctl apply: {out}");
    let (ok, out) = m.ctl(&["upgrade", arg(&img)]);
    assert!(ok, "keelctl upgrade: {out}");
    vm.expect("keel: boot.start", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.trial slot=B deadline_s=15", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.rollback slot=B to=A", Duration::from_secs(120));
    vm.expect("keel: boot.start", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.slot running=A", UEFI_BOOT_TIMEOUT);
    let st = m.status();
    assert_eq!(st["boot"]["slot"], "A", "{st:#}");
    assert_eq!(st["boot"]["last_upgrade"]["result"], "rolled-back", "{st:#}");
    let reason = st["boot"]["last_upgrade"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("did not converge within 15 s"), "{st:#}");
    assert!(!vm.transcript().iter().any(|l| l.contains("keel: upgrade.committed")), "never committed");
}

#[test]
fn qemu_upgrade_whose_pid1_hangs_is_reset_by_the_watchdog_and_rolled_back() {
    let m = Machine::new("hang");
    // The new system's PID 1 wedges during its trial: its own deadline can never fire, only the watchdog can.
    let img = slot_image(&m.dir, "hang", "console=ttyS0 panic=-1 keel.test=hang", &dev_key(), None);
    let mut vm = m.boot("upgrade_hang");
    vm.expect("keel: upgrade.slot running=A", UEFI_BOOT_TIMEOUT);
    m.status();
    let (ok, out) = m.ctl(&["upgrade", arg(&img)]);
    assert!(ok, "keelctl upgrade: {out}");
    vm.expect("keel: boot.start", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.trial slot=B", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.watchdog state=armed", STEP_TIMEOUT);
    vm.expect("keel: test.hang", STEP_TIMEOUT);
    vm.expect("keel: boot.start", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.slot running=A", UEFI_BOOT_TIMEOUT);
    vm.expect("keel: upgrade.rolled_back slot=B running=A", STEP_TIMEOUT);
    let st = m.status();
    assert_eq!(st["boot"]["slot"], "A", "{st:#}");
    assert_eq!(st["boot"]["last_upgrade"]["result"], "rolled-back", "{st:#}");
}

#[test]
fn qemu_upgrade_named_by_the_config_is_retried_with_backoff_after_a_failed_fetch() {
    use keel_e2e::http_server::FileServer;
    let m = Machine::new("retry");
    let img = slot_image(&m.dir, "slot-b", "console=ttyS0 panic=-1 keel.marker=retried", &dev_key(), None);
    let sha = keel_e2e::services::sha256_hex(&std::fs::read(&img).expect("read image"));
    // The server has nothing yet: the first fetches fail (404).
    let server = FileServer::start();
    let config = m.dir.join("node.toml");
    let text = format!(
        "version = 1\ngeneration = 2\n[upgrade]\nurl = \"http://10.0.2.2:{}/slot.img\"\nsha256 = \"{sha}\"\n",
        server.port
    );
    std::fs::write(&config, text).expect("write config");
    let mut vm = m.boot("upgrade_retry");
    vm.expect("keel: upgrade.slot running=A", UEFI_BOOT_TIMEOUT);
    m.status();
    let (ok, out) = m.ctl(&["apply", arg(&config), "--key", arg(&dev_key())]);
    assert!(ok, "keelctl apply: {out}");
    vm.expect("keel: upgrade.fetch generation=2", STEP_TIMEOUT);
    vm.expect("keel: upgrade.fetch_failed", STEP_TIMEOUT);
    let first = vm.expect("keel: upgrade.source.retry generation=2 failures=1", STEP_TIMEOUT);
    vm.expect("keel: upgrade.fetch generation=2", STEP_TIMEOUT);
    let second = vm.expect("keel: upgrade.source.retry generation=2 failures=2", STEP_TIMEOUT);
    let wait = |line: &str| keel_e2e::field(line, "retry_in_s").and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    assert!(wait(&second) > wait(&first), "the backoff grows: {first} / {second}");
    // The image appears: the next try installs it and the node reboots into slot B.
    server.put("/slot.img", std::fs::read(&img).expect("read image"));
    server.put("/slot.img.sig", std::fs::read(img.with_extension("img.sig")).expect("read signature"));
    vm.expect("keel: upgrade.staged slot=B", STEP_TIMEOUT);
    vm.expect("keel: upgrade.slot running=B", UEFI_BOOT_TIMEOUT);
}
