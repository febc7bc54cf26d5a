//! End to end with real firmware: OVMF enforcing Secure Boot, with the build's PK/KEK/db enrolled (`make
//! sb-vars`). The signed UKI boots from the disk and over UEFI PXE (the firmware fetches it itself over TFTP, no
//! iPXE); an unsigned UKI, one signed by another key, and one with a single byte changed inside its initramfs are
//! refused by the firmware, from a disk and over PXE, and never print a `keel:` line. A diskless node keeps its
//! rollback floor in a UEFI variable: after a power cycle with the same NVRAM it refuses an older config
//! (`not-newer`) and a replayed reboot command (`replayed`).

use keel_e2e::api_client::Api;
use keel_e2e::http_server::ssh_sign;
use keel_e2e::media::{self, Boot};
use keel_e2e::{build_dir, field, free_port, keelctl, Vm, VmConfig, STEP_TIMEOUT, UEFI_BOOT_TIMEOUT};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

const UUID: &str = "6b65656c-0000-4000-8000-0000000005b1";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e} (make setup installs it)"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The three UKIs the firmware must refuse, made from the signed one in `dir`: `unsigned.efi` (signature
/// removed), `foreign.efi` (signed by a key that is not in db), `tampered.efi` (signed, then one byte in the middle
/// of its .initrd section changed).
fn bad_ukis(dir: &Path) -> [PathBuf; 3] {
    std::fs::create_dir_all(dir).expect("temp dir");
    let signed = build_dir().join("keel.efi");
    let unsigned = dir.join("unsigned.efi");
    std::fs::copy(&signed, &unsigned).expect("copy keel.efi");
    run(Command::new("sbattach").arg("--remove").arg(&unsigned));
    let (key, cert) = (dir.join("foreign.key"), dir.join("foreign.crt"));
    run(Command::new("openssl")
        .args(["req", "-quiet", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30"])
        .args(["-subj", "/CN=not enrolled/", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    let foreign = dir.join("foreign.efi");
    run(Command::new("sbsign")
        .arg("--key")
        .arg(&key)
        .arg("--cert")
        .arg(&cert)
        .arg("--output")
        .arg(&foreign)
        .arg(&unsigned));
    // objdump -h rows: Idx Name Size VMA LMA FileOff Algn.
    let table = run(Command::new("objdump").arg("-h").arg(&signed));
    let (size, off) = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.get(1) == Some(&".initrd"))
        .and_then(|w| Some((u64::from_str_radix(w.get(2)?, 16).ok()?, u64::from_str_radix(w.get(5)?, 16).ok()?)))
        .expect("the UKI has an .initrd section");
    let mut bytes = std::fs::read(&signed).expect("read keel.efi");
    let at = (off + size / 2) as usize;
    bytes[at] ^= 0x01;
    let tampered = dir.join("tampered.efi");
    std::fs::write(&tampered, &bytes).expect("write tampered.efi");
    [unsigned, foreign, tampered]
}

/// A small UEFI disk (the same layout `make disk` writes) whose ESP holds `uki`.
fn disk_with(uki: &Path) -> PathBuf {
    let img = uki.with_extension("img");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../image/disk.sh");
    // GUIDs of its own (not the real disk's), so the good disk's partitions stay unique.
    let guids = [
        ("KEEL_DISK_GUID", "5b000000-0000-4000-8000-000000000001"),
        ("KEEL_ESP_GUID", "5b000000-0000-4000-8000-000000000002"),
        ("KEEL_SLOT_A_GUID", "5b000000-0000-4000-8000-000000000003"),
        ("KEEL_SLOT_B_GUID", "5b000000-0000-4000-8000-000000000004"),
        ("KEEL_SLOT_TYPE", "8c94f5fd-5600-4e54-8f54-c52ce9fa74e8"),
    ];
    run(Command::new("bash")
        .arg(script)
        .arg(uki)
        .arg(&img)
        .arg(uki.with_extension("qcow2"))
        .env("KEEL_DISK_SIZE", "256")
        .envs(guids));
    img
}

/// The firmware's refusals so far: `BdsDxe: failed to load … Access Denied` lines.
fn denied(vm: &Vm) -> Vec<String> {
    vm.transcript()
        .into_iter()
        .filter(|l| l.contains("BdsDxe: failed to load") && l.contains("Access Denied"))
        .collect()
}

/// Nothing of Keel ran before the firmware started the good image: no `keel:` line and one EFI stub start.
fn assert_only_signed_ran(vm: &Vm) {
    let lines = vm.transcript();
    let stubs = lines.iter().filter(|l| l.contains("EFI stub: UEFI Secure Boot is enabled")).count();
    let starts = lines.iter().filter(|l| l.contains("keel: boot.start ")).count();
    assert_eq!((stubs, starts), (1, 1), "only the signed UKI may have started a kernel and Keel");
}

fn keelctl_status(port: u16, known: &Path) -> String {
    let out = Command::new(keelctl())
        .args(["status", "--node", &format!("127.0.0.1:{port}"), "--known-nodes"])
        .arg(known)
        .env("KEEL_KEY", build_dir().join("keys/dev_ed25519"))
        .output()
        .expect("run keelctl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "keelctl status: {text}");
    text
}

fn assert_secure(st: &Value) {
    let boot = &st["boot"];
    assert_eq!(boot["secure_boot"].as_bool(), Some(true), "status boot: {boot}");
    assert_eq!(boot["signer"].as_str(), Some("CN=Keel development Secure Boot db key"), "status boot: {boot}");
    assert_eq!(boot["signer_enrolled"].as_bool(), Some(true), "status boot: {boot}");
}

#[test]
fn qemu_secure_boot_disk_refuses_bad_ukis_and_boots_the_signed_one() {
    let dir = std::env::temp_dir().join(format!("keel-e2e-sb-disk-{}", std::process::id()));
    let bad = bad_ukis(&dir);
    let mut disks: Vec<PathBuf> = bad.iter().map(|u| disk_with(u)).collect();
    disks.push(media::disk_image());
    let port = free_port();
    let cfg = VmConfig {
        boot: Boot::SecureBoot { vars: media::sb_vars(&dir.join("vars.fd")), disks, tftp: None, bootfiles: vec![] },
        uuid: Some(UUID.into()),
        hostfwd: vec![(port, 7443)],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("secureboot_disk", &cfg);
    vm.expect("EFI stub: UEFI Secure Boot is enabled", UEFI_BOOT_TIMEOUT);
    let refused = denied(&vm);
    assert_eq!(refused.len(), 3, "the firmware must refuse the three bad disks first: {refused:#?}");
    let line = vm.expect("keel: trust.secure_boot ", UEFI_BOOT_TIMEOUT);
    assert_eq!(field(&line, "enabled"), Some("true"), "{line}");
    assert_eq!(field(&line, "enrolled"), Some("true"), "{line}");
    vm.expect("keel: ready ", UEFI_BOOT_TIMEOUT);
    let listening = vm.expect("keel: api.listening ", STEP_TIMEOUT);
    assert_only_signed_ran(&vm);
    let api = Api::new(port, field(&listening, "fingerprint")).with_key(&build_dir().join("keys/dev_ed25519"));
    assert_secure(&api.status().expect("status"));
    let out = keelctl_status(port, &dir.join("known_nodes"));
    assert!(out.contains("secure_boot: true, image signed for CN=Keel development Secure Boot db key"), "{out}");
    eprintln!("secure boot disk: QEMU start -> ready in {:.1} s", vm.started.elapsed().as_secs_f64());
    drop(vm);
    let _ = std::fs::remove_dir_all(dir);
}

fn config(generation: u64) -> String {
    format!("version = 1\ngeneration = {generation}\n[node]\nuuid = \"{UUID}\"\nhostname = \"sb-node-{generation}\"\n")
}

fn push(api: &Api, generation: u64) -> (u16, Value) {
    let text = config(generation);
    let key = build_dir().join("keys/dev_ed25519");
    api.push(&text, &String::from_utf8_lossy(&ssh_sign(&text, &key, "keel-config"))).expect("PUT /v1/config")
}

#[test]
fn qemu_secure_pxe_refuses_bad_ukis_and_a_diskless_node_keeps_its_floor_across_a_power_cycle() {
    let dir = std::env::temp_dir().join(format!("keel-e2e-sb-pxe-{}", std::process::id()));
    let tftp = dir.join("tftp");
    let bad = bad_ukis(&tftp);
    let served = tftp.join("keel.efi");
    let vars = media::sb_vars(&dir.join("vars.fd"));
    let port = free_port();
    let boot = VmConfig {
        boot: Boot::SecureBoot {
            vars: vars.clone(),
            disks: vec![],
            tftp: Some(tftp.clone()),
            bootfiles: vec!["keel.efi".into()],
        },
        uuid: Some(UUID.into()),
        hostfwd: vec![(port, 7443)],
        // The firmware is reset between the bad images; the node's reboot is the power cycle (QEMU is killed).
        no_reboot: false,
        ..VmConfig::default()
    };

    // One machine, four network boots: the TFTP server serves each bad UKI in turn, the firmware fetches and
    // refuses it (then would try HTTP boot; a reset cuts that short), and last the signed one.
    std::fs::copy(&bad[0], &served).expect("serve unsigned.efi");
    let mut vm = Vm::boot("secureboot_pxe", &boot);
    for (i, uki) in bad.iter().enumerate() {
        vm.expect("NBP file downloaded successfully", UEFI_BOOT_TIMEOUT);
        let line = vm.expect("BdsDxe: failed to load", UEFI_BOOT_TIMEOUT);
        assert!(line.contains("PXEv4") && line.contains("Access Denied"), "{}: {line}", uki.display());
        let next = bad.get(i + 1).cloned().unwrap_or_else(|| build_dir().join("pxe/keel.efi"));
        std::fs::copy(&next, &served).unwrap_or_else(|e| panic!("serve {}: {e} (make pxe)", next.display()));
        vm.qmp(r#"{"execute": "system_reset"}"#);
    }
    assert!(vm.transcript().iter().all(|l| !l.contains("keel:")), "a refused UKI ran Keel");
    vm.expect("EFI stub: UEFI Secure Boot is enabled", UEFI_BOOT_TIMEOUT);
    let line = vm.expect("keel: trust.secure_boot ", UEFI_BOOT_TIMEOUT);
    assert_eq!(field(&line, "enabled"), Some("true"), "{line}");
    vm.expect("keel: ready ", UEFI_BOOT_TIMEOUT);
    let listening = vm.expect("keel: api.listening ", STEP_TIMEOUT);
    vm.expect("keel: net.ready ", STEP_TIMEOUT);
    assert_only_signed_ran(&vm);
    let api = Api::new(port, field(&listening, "fingerprint")).with_key(&build_dir().join("keys/dev_ed25519"));
    let st = api.status().expect("status");
    assert_secure(&st);
    assert_eq!(st["rollback"]["state"].as_str(), Some("none"), "diskless: {}", st["rollback"]);
    let out = keelctl_status(port, &dir.join("known_nodes"));
    assert!(out.contains("secure_boot: true"), "{out}");

    let (code, v) = push(&api, 5);
    assert_eq!((code, v["accepted"].as_bool()), (200, Some(true)), "generation 5: {v}");
    let st = api.status().expect("status");
    assert_eq!(st["rollback"]["generation"].as_u64(), Some(5), "{}", st["rollback"]);
    assert!(st["rollback"]["kept_in"].to_string().contains("efi"), "{}", st["rollback"]);

    // A signed reboot, captured; QEMU exits at the reboot (-no-reboot): the power cycle.
    let expires = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) + 600;
    let machine = st["machine_id"].as_str().expect("machine_id").to_string();
    let doc = format!(
        "action = \"reboot\"\nnode = \"{machine}\"\nnonce = \"e2e-sb-replay-{}\"\nexpires = {expires}\n",
        std::process::id() as u64 * 1_000_003
    );
    let key = build_dir().join("keys/dev_ed25519");
    let body = json!({"command": doc, "signature": String::from_utf8_lossy(&ssh_sign(&doc, &key, "keel-command"))});
    let (code, v) = api.json("POST", "/v1/reboot", Some(&body)).expect("POST /v1/reboot");
    assert_eq!((code, v["accepted"].as_bool()), (202, Some(true)), "{v}");
    vm.expect("reboot: Restarting system", STEP_TIMEOUT);
    drop(vm);

    // Power on again: same NVRAM, no disk; the node's memory is all that was lost.
    let mut vm = Vm::boot("secureboot_pxe_again", &boot);
    vm.expect("keel: ready ", UEFI_BOOT_TIMEOUT);
    let line = vm.expect("keel: trust.floor ", STEP_TIMEOUT);
    assert_eq!(field(&line, "generation"), Some("5"), "the UEFI variable must hold generation 5: {line}");
    let listening = vm.expect("keel: api.listening ", STEP_TIMEOUT);
    vm.expect("keel: net.ready ", STEP_TIMEOUT);
    let api = Api::new(port, field(&listening, "fingerprint")).with_key(&build_dir().join("keys/dev_ed25519"));
    let (code, v) = push(&api, 3);
    assert_eq!((code, v["reason"].as_str()), (409, Some("not-newer")), "generation 3 after the power cycle: {v}");
    let (code, v) = api.json("POST", "/v1/reboot", Some(&body)).expect("replay POST /v1/reboot");
    assert_eq!((code, v["reason"].as_str()), (409, Some("replayed")), "the replayed reboot: {v}");
    vm.expect("keel: api.command_refused action=reboot reason=replayed", STEP_TIMEOUT);
    // Generation 5 again (a diskless node fetching its config after the power cycle) is no rollback.
    let (code, v) = push(&api, 5);
    assert_eq!((code, v["accepted"].as_bool()), (200, Some(true)), "generation 5 again: {v}");
    let (code, v) = push(&api, 4);
    assert_eq!((code, v["reason"].as_str()), (409, Some("not-newer")), "generation 4: {v}");
    eprintln!("secure boot pxe: second boot to ready in {:.1} s", vm.started.elapsed().as_secs_f64());
    drop(vm);
    let _ = std::fs::remove_dir_all(dir);
}
