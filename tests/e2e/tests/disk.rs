//! End to end: the UEFI disk image boots like a disk in a real machine. Its layout is what the firmware and the
//! later A/B upgrades rely on (GPT: an EFI system partition with the UKI at the removable-media path, slots KEEL_A
//! with a copy of it and KEEL_B, free space for the state volume), and OVMF boots it under TCG to ready.

use keel_e2e::{build_dir, media, Boot, Vm, VmConfig, STEP_TIMEOUT, UEFI_BOOT_TIMEOUT};
use std::path::Path;
use std::process::Command;

const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

struct Part {
    type_guid: String,
    name: String,
    first_lba: u64,
    last_lba: u64,
}

fn guid(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10..16].iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

/// The used entries of the primary GPT.
fn gpt(image: &Path) -> Vec<Part> {
    use std::io::Read;
    let mut head = vec![0u8; 1024 + 128 * 128];
    std::fs::File::open(image).and_then(|mut f| f.read_exact(&mut head)).expect("read the GPT");
    assert_eq!(&head[512..520], b"EFI PART", "{}: no GPT header at LBA 1", image.display());
    let (start, count, size) =
        (u64_at(&head, 512 + 72) as usize * 512, head[512 + 80] as usize, head[512 + 84] as usize);
    assert!(start == 1024 && size == 128 && count <= 128, "unexpected GPT geometry");
    (0..count)
        .map(|i| &head[start + i * size..start + (i + 1) * size])
        .filter(|e| e[..16].iter().any(|b| *b != 0))
        .map(|e| Part {
            type_guid: guid(&e[..16]),
            name: String::from_utf16_lossy(
                &e[56..128]
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|c| *c != 0)
                    .collect::<Vec<_>>(),
            ),
            first_lba: u64_at(e, 32),
            last_lba: u64_at(e, 40),
        })
        .collect()
}

/// A file out of the FAT file system of `part` (mtools reads it in place, at the partition's byte offset).
fn fat_file(image: &Path, part: &Part, file: &str) -> Vec<u8> {
    let out = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@{}", image.display(), part.first_lba * 512))
        .arg(format!("::{file}"))
        .arg("-")
        .output()
        .expect("run mcopy (make setup installs mtools)");
    assert!(out.status.success(), "{file} in {}: {}", part.name, String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn disk_image_has_esp_with_uki_two_slots_and_room_for_state() {
    let image = media::disk_image();
    let uki = std::fs::read(build_dir().join("keel.efi")).expect("read build/keel.efi (make disk)");
    let parts = gpt(&image);
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["EFI system partition", "KEEL_A", "KEEL_B"], "partitions");
    assert_eq!(parts[0].type_guid, ESP_TYPE, "partition 1 must be an EFI system partition");
    assert!(
        fat_file(&image, &parts[0], "/EFI/BOOT/BOOTX64.EFI") == uki,
        "the ESP must hold the UKI at the fallback path"
    );
    assert!(fat_file(&image, &parts[1], "/keel.efi") == uki, "slot A must hold a copy of the UKI");
    for slot in &parts[1..] {
        let bytes = (slot.last_lba - slot.first_lba + 1) * 512;
        assert!(bytes >= 2 * uki.len() as u64, "slot {} ({bytes} bytes) leaves no room to grow the UKI", slot.name);
    }
    let disk_bytes = std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0);
    let free = disk_bytes.saturating_sub((parts[2].last_lba + 1 + 33) * 512);
    assert!(free >= 256 << 20, "only {free} bytes left after the slots for the state volume");
    let compare = Command::new("qemu-img")
        .arg("compare")
        .arg(&image)
        .arg(build_dir().join("keel.qcow2"))
        .output()
        .expect("run qemu-img (make setup installs qemu-utils)");
    assert!(compare.status.success(), "keel.qcow2 differs from keel.img: {}", String::from_utf8_lossy(&compare.stdout));
    for (name, bytes) in media::sizes() {
        eprintln!("size: {name:<26} {:>10} bytes ({:.1} MiB)", bytes, bytes as f64 / 1048576.0);
    }
}

#[test]
fn qemu_uefi_disk_boots_to_ready() {
    let cfg = VmConfig {
        boot: Boot::Uefi { disk: media::disk_image() },
        uuid: Some("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9".into()),
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("uefi_disk", &cfg);
    // The kernel was started by the firmware through the UKI's stub, with the UKI's command line.
    let cmdline = vm.expect("Command line: ", UEFI_BOOT_TIMEOUT);
    assert!(cmdline.contains("console=ttyS0"), "{cmdline}");
    vm.expect("efi: EFI v", STEP_TIMEOUT);
    vm.expect("keel: ready ", UEFI_BOOT_TIMEOUT);
    eprintln!("disk: QEMU start -> ready under OVMF in {:.1} s", vm.started.elapsed().as_secs_f64());
}
