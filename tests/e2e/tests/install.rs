//! End to end: install to disk from a network boot (README, "Install to disk"). OVMF enforcing Secure Boot (the
//! build's keys enrolled) boots the signed UKI over UEFI PXE; a pushed config's `[install]` names the blank
//! virtio disk; the node partitions it, writes the signed slot image, carries its identity over, makes the boot
//! entry and reboots. QEMU is then started again with the same disk and NVRAM and no PXE: the node boots from
//! the disk with the same machine id, config generation and API fingerprint. A second machine whose disk holds
//! data is refused with the reason in its status, and its disk is left byte-identical.

use keel_e2e::api_client::Api;
use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::media::{self, Boot};
use keel_e2e::{build_dir, field, free_port, keelctl, Vm, VmConfig, STEP_TIMEOUT, UEFI_BOOT_TIMEOUT};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const UUID: &str = "6b65656c-0000-4000-8000-00000000a1a1";
const UUID_REFUSED: &str = "6b65656c-0000-4000-8000-00000000a1a2";
/// How long partitioning, writing the slot image and formatting may take under TCG.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

fn key() -> PathBuf {
    build_dir().join("keys/dev_ed25519")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-e2e-install-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// Serves `make upgrade-image`'s slot image and its signature; returns the server and the image's digest.
fn serve_image() -> (FileServer, String) {
    let img = build_dir().join("keel-upgrade.img");
    let sig = build_dir().join("keel-upgrade.img.sig");
    let server = FileServer::start();
    server.put("/slot.img", std::fs::read(&img).expect("read build/keel-upgrade.img (make upgrade-image)"));
    server.put("/slot.img.sig", std::fs::read(&sig).expect("read build/keel-upgrade.img.sig"));
    (server, sha256(&img))
}

/// A UEFI machine with the build's Secure Boot keys, `disk` as its virtio disk `disk0`; booted over UEFI PXE
/// when `pxe`, else from what its NVRAM says.
fn machine(vars: &Path, disk: &Path, uuid: &str, port: u16, pxe: bool) -> VmConfig {
    let (tftp, bootfiles) = if pxe { (Some(media::pxe_dir()), vec!["keel.efi".to_string()]) } else { (None, vec![]) };
    VmConfig {
        boot: Boot::SecureBoot { vars: vars.to_path_buf(), disks: vec![], tftp, bootfiles },
        uuid: Some(uuid.into()),
        hostfwd: vec![(port, 7443)],
        disks: vec![disk.to_path_buf()],
        memory_mib: 512,
        ..VmConfig::default()
    }
}

fn install_config(generation: u64, uuid: &str, port: u16, sha: &str) -> String {
    format!(
        "version = 1\ngeneration = {generation}\n[node]\nuuid = \"{uuid}\"\n[install]\ndisk = \"serial:disk0\"\n\
         url = \"http://10.0.2.2:{port}/slot.img\"\nsha256 = \"{sha}\"\n"
    )
}

fn push(api: &Api, text: &str) {
    let (code, v) = api.push(text, &String::from_utf8_lossy(&ssh_sign(text, &key(), "keel-config"))).expect("PUT");
    assert_eq!(code, 200, "PUT /v1/config: {v}");
}

fn keelctl_status(port: u16, known: &Path) -> String {
    let out = Command::new(keelctl())
        .args(["status", "--node", &format!("127.0.0.1:{port}"), "--known-nodes"])
        .arg(known)
        .env("KEEL_KEY", key())
        .output()
        .expect("run keelctl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "keelctl status: {text}");
    text
}

/// Boots to the API; returns its pinned client and the fingerprint it announced.
fn up(vm: &mut Vm, port: u16) -> (Api, String) {
    vm.expect("keel: ready ", UEFI_BOOT_TIMEOUT);
    let listening = vm.expect("keel: api.listening ", STEP_TIMEOUT);
    let fingerprint = field(&listening, "fingerprint").expect("api.listening names its fingerprint").to_string();
    (Api::new(port, Some(&fingerprint)).with_key(&key()), fingerprint)
}

#[test]
fn qemu_pxe_node_installs_to_its_blank_disk_and_boots_from_it_as_itself() {
    let dir = scratch("blank");
    let (vars, disk) = (media::sb_vars(&dir.join("vars.fd")), dir.join("disk.raw"));
    std::fs::File::create(&disk).and_then(|f| f.set_len(512 << 20)).expect("blank disk");
    let (server, sha) = serve_image();
    let port = free_port();

    let mut vm = Vm::boot("install_pxe", &machine(&vars, &disk, UUID, port, true));
    vm.expect("EFI stub: UEFI Secure Boot is enabled", UEFI_BOOT_TIMEOUT);
    let (api, fingerprint) = up(&mut vm, port);
    let state = vm.expect_anywhere("keel: storage.state ", STEP_TIMEOUT);
    assert_eq!(field(&state, "mode"), Some("tmpfs"), "a network boot leaves the blank disk alone: {state}");
    let before = api.status().expect("status");
    push(&api, &install_config(2, UUID, server.port, &sha));
    vm.expect("keel: install.installing ", STEP_TIMEOUT);
    vm.expect("keel: install.partitioned ", INSTALL_TIMEOUT);
    vm.expect("keel: install.slot_written slot=A", INSTALL_TIMEOUT);
    vm.expect("keel: install.carried ", INSTALL_TIMEOUT);
    vm.expect("keel: install.boot_entry slot=A", STEP_TIMEOUT);
    vm.expect("keel: install.done ", STEP_TIMEOUT);
    vm.expect_exit(STEP_TIMEOUT);
    drop(vm);

    // The same disk and NVRAM, no network boot: the firmware boots the entry the install made.
    let mut vm = Vm::boot("install_disk", &machine(&vars, &disk, UUID, port, false));
    let (api, again) = up(&mut vm, port);
    vm.expect_anywhere("keel: upgrade.slot running=A", STEP_TIMEOUT);
    vm.expect_anywhere("keel: install.installed ", STEP_TIMEOUT);
    assert_eq!(again, fingerprint, "the API identity was carried over");
    let st = api.status().expect("status");
    assert_eq!(st["machine_id"], before["machine_id"], "{st:#}");
    assert_eq!(st["config"]["generation"], 2, "{st:#}");
    assert_eq!(st["boot"]["slot"], "A", "{st:#}");
    assert_eq!(st["install"]["phase"], "installed", "{st:#}");
    let transcript = vm.transcript();
    assert!(!transcript.iter().any(|l| l.contains("keel: install.partitioned")), "an installed node writes nothing");
    let out = keelctl_status(port, &dir.join("known_nodes"));
    assert!(out.contains(&fingerprint), "keelctl status pins the same fingerprint: {out}");
    assert!(out.contains("install    installed on /dev/vda"), "keelctl status shows the install: {out}");
    drop(vm);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn qemu_pxe_node_refuses_a_disk_holding_data_and_leaves_it_byte_identical() {
    let dir = scratch("data");
    let (vars, disk) = (media::sb_vars(&dir.join("vars.fd")), dir.join("disk.raw"));
    let mut bytes = vec![0u8; 512 << 20];
    bytes[0..22].copy_from_slice(b"someone else's data!!\n");
    bytes[(300 << 20)..(300 << 20) + 6].copy_from_slice(b"marker");
    std::fs::write(&disk, &bytes).expect("write disk");
    let hash = sha256(&disk);
    let (server, sha) = serve_image();
    let port = free_port();

    let mut vm = Vm::boot("install_refused", &machine(&vars, &disk, UUID_REFUSED, port, true));
    let (api, _) = up(&mut vm, port);
    push(&api, &install_config(2, UUID_REFUSED, server.port, &sha));
    let line = vm.expect("keel: install.refused ", STEP_TIMEOUT);
    assert_eq!(field(&line, "reason"), Some("not-blank"), "{line}");
    let st = api.status().expect("status");
    let install: &Value = &st["install"];
    assert_eq!((install["phase"].as_str(), install["code"].as_str()), (Some("refused"), Some("not-blank")), "{st:#}");
    assert!(install["reason"].as_str().unwrap_or("").contains("wipe = true"), "the reason says what to do: {st:#}");
    assert_eq!(server.requests(), 0, "nothing was fetched for a refused disk");
    drop(vm);
    assert_eq!(sha256(&disk), hash, "the refused disk is byte-identical");
    let _ = std::fs::remove_dir_all(dir);
}
