//! The boot media a VM can start from, besides QEMU's own `-kernel`: the PXE directory (`make pxe`), fetched by
//! the NIC's iPXE ROM over QEMU's TFTP, and the UEFI disk (`make disk`), booted by OVMF. Nothing is built here.

use crate::{build_dir, built};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
/// OVMF that enforces Secure Boot (SMM-protected variables), for [`Boot::SecureBoot`].
pub const OVMF_CODE_SB: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Boot {
    /// QEMU loads `build/vmlinuz` and the initramfs itself (`-kernel`, `-initrd`, `-append`).
    #[default]
    Kernel,
    /// No disk and no `-kernel`: the firmware (SeaBIOS, or OVMF when `uefi`) boots from the network, the virtio
    /// NIC's iPXE ROM gets `boot.ipxe` from `dir` over QEMU's built-in DHCP and TFTP, and the script loads the rest.
    /// With `VmConfig::tap` the tap's network serves DHCP and TFTP instead (`dir` is unused).
    Pxe { dir: PathBuf, uefi: bool },
    /// OVMF (UEFI) boots this disk image (raw or `.qcow2`) as a virtio disk; writes go to a throwaway overlay.
    Uefi { disk: PathBuf },
    /// Like `Uefi`, but the raw `disk` is written in place and `vars` is the UEFI variable store as is (a copy the
    /// test made with [`ovmf_vars`]): both survive QEMU restarts, like a machine's disk and NVRAM.
    UefiPersistent { disk: PathBuf, vars: PathBuf },
    /// OVMF enforcing Secure Boot (q35 with SMM, `OVMF_CODE_4M.secboot.fd`) with `vars` as its variable store, in
    /// place (a copy made with [`sb_vars`]: it survives QEMU restarts, like a machine's NVRAM). The firmware
    /// tries, in this order, each of `disks` (throwaway overlays), then UEFI PXE (OVMF's own network stack, no
    /// option ROM) on one NIC per name in `bootfiles`, each served from `tftp` by its own QEMU user network. The
    /// last NIC is the one with the host forwards; the others are named `pxe0`, `pxe1`, … (`set_link` them down
    /// once the firmware is past them, so the node has one network). With `VmConfig::tap` the NIC `n0` is on the
    /// tap's network instead, whose DHCP server names the boot file (`tftp` and the bootfile names are unused).
    SecureBoot { vars: PathBuf, disks: Vec<PathBuf>, tftp: Option<PathBuf>, bootfiles: Vec<String> },
}

/// `build/OVMF_VARS_4M.keel-sb.fd` (`make sb-vars`: the build's PK, KEK and db enrolled, Secure Boot on), copied
/// to `dest` for one machine.
pub fn sb_vars(dest: &Path) -> PathBuf {
    let src = built("OVMF_VARS_4M.keel-sb.fd", "sb-vars");
    std::fs::copy(&src, dest).unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dest.display()));
    dest.to_path_buf()
}

/// A fresh writable copy of OVMF's variable store at `dest`, for [`Boot::UefiPersistent`].
pub fn ovmf_vars(dest: &Path) -> PathBuf {
    std::fs::copy(OVMF_VARS, dest)
        .unwrap_or_else(|e| panic!("copy {OVMF_VARS} to {}: {e} (make setup installs ovmf)", dest.display()));
    dest.to_path_buf()
}

/// `build/pxe/`, as `make pxe` wrote it.
pub fn pxe_dir() -> PathBuf {
    for f in ["boot.ipxe", "vmlinuz", "initramfs.cpio.zst"] {
        built(&format!("pxe/{f}"), "pxe");
    }
    build_dir().join("pxe")
}

/// `build/keel.img`, the raw UEFI disk image `make disk` wrote.
pub fn disk_image() -> PathBuf {
    built("keel.img", "disk")
}

/// A copy of `build/pxe/` in `dir` whose `boot.ipxe` is written by the same generator `make pxe` uses
/// (`image/boot-ipxe.sh`), with `env` (e.g. `KEEL_PXE_CONFIG_URL`) set: a test's own variant of the shipped script.
pub fn pxe_variant(dir: &Path, env: &[(&str, &str)]) -> PathBuf {
    let shipped = pxe_dir();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    for f in ["vmlinuz", "initramfs.cpio.zst"] {
        std::fs::copy(shipped.join(f), dir.join(f)).unwrap_or_else(|e| panic!("copy {f} to {}: {e}", dir.display()));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../image/boot-ipxe.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir.join("boot.ipxe"))
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(out.status.success(), "{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    dir.to_path_buf()
}

fn allocated(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.blocks() * 512)
}

/// The sizes of the boot media in bytes, labelled, for what exists: the UKI, the disk image (apparent and
/// allocated: it is sparse), the qcow2, and the PXE directory.
pub fn sizes() -> Vec<(&'static str, u64)> {
    let b = build_dir();
    let len = |p: PathBuf| std::fs::metadata(p).ok().map(|m| m.len());
    let pxe = std::fs::read_dir(b.join("pxe"))
        .ok()
        .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum::<u64>());
    [
        ("UKI (keel.efi)", len(b.join("keel.efi"))),
        ("disk keel.img, apparent", len(b.join("keel.img"))),
        ("disk keel.img, allocated", allocated(&b.join("keel.img"))),
        ("disk keel.qcow2", len(b.join("keel.qcow2"))),
        ("PXE directory", pxe),
        ("slot image keel-upgrade.img", len(b.join("keel-upgrade.img"))),
    ]
    .into_iter()
    .filter_map(|(name, size)| Some((name, size?)))
    .collect()
}

/// QEMU arguments for the firmware, disk and NIC of `boot` (everything but `-kernel`), and the files to remove
/// when the VM is gone. `scratch` is where a writable copy of the UEFI variable store goes.
/// `net` is the user-network spec (`user,id=n0` plus any hostfwd).
pub(crate) fn qemu_args(boot: &Boot, scratch: &Path, net: &str) -> (Vec<String>, Vec<PathBuf>) {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    // OVMF from read-only flash, with a writable copy of the variable store for this VM.
    let ovmf = || {
        let vars = scratch.with_extension("OVMF_VARS.fd");
        std::fs::copy(OVMF_VARS, &vars)
            .unwrap_or_else(|e| panic!("copy {OVMF_VARS} to {}: {e} (make setup installs ovmf)", vars.display()));
        let args = s(&[
            "-drive",
            &format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
            "-drive",
            &format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        ]);
        (args, vec![vars])
    };
    match boot {
        Boot::Kernel => (s(&["-netdev", net, "-device", "virtio-net-pci,netdev=n0"]), vec![]),
        Boot::Pxe { dir, uefi } => {
            let (mut args, files) = if *uefi { ovmf() } else { (vec![], vec![]) };
            // virtio-net-pci's default option ROM in Debian's QEMU is iPXE (ipxe-qemu's efi-virtio.rom: BIOS and
            // UEFI). OVMF tries the network by itself when there is no disk; SeaBIOS needs -boot n.
            // On a tap NIC the boot network's own DHCP/TFTP server (e.g. a test's dnsmasq) names the file.
            let netdev = with_tftp(net, &dir.display().to_string(), "boot.ipxe");
            args.extend(s(&["-boot", "n", "-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0"]));
            (args, files)
        }
        Boot::Uefi { disk } => {
            let (mut args, files) = ovmf();
            let format = if disk.extension().is_some_and(|e| e == "qcow2") { "qcow2" } else { "raw" };
            args.extend(uefi_disk(&format!("format={format},snapshot=on,file={}", disk.display()), net));
            (args, files)
        }
        Boot::SecureBoot { vars, disks, tftp, bootfiles } => {
            let mut args = s(&[
                "-machine",
                "q35,smm=on",
                "-global",
                "driver=cfi.pflash01,property=secure,value=on",
                "-drive",
                &format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE_SB}"),
                "-drive",
                &format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
                // PXE over IPv4 only: QEMU's user network has no DHCPv6, so the IPv6 attempt would only wait.
                "-fw_cfg",
                "name=opt/org.tianocore/IPv6PXESupport,string=n",
            ]);
            for (i, disk) in disks.iter().enumerate() {
                let format = if disk.extension().is_some_and(|e| e == "qcow2") { "qcow2" } else { "raw" };
                args.extend(s(&[
                    "-drive",
                    &format!("if=none,id=sbd{i},format={format},snapshot=on,file={}", disk.display()),
                    "-device",
                    &format!("virtio-blk-pci,drive=sbd{i},bootindex={i}"),
                ]));
            }
            let tftp = tftp.as_ref().map(|d| d.display().to_string()).unwrap_or_default();
            for (j, file) in bootfiles.iter().enumerate() {
                let last = j + 1 == bootfiles.len();
                let id = if last { "n0".to_string() } else { format!("pxe{j}") };
                let base = if last { net.to_string() } else { format!("user,id={id}") };
                args.extend(s(&[
                    "-netdev",
                    &with_tftp(&base, &tftp, file),
                    "-device",
                    &format!("virtio-net-pci,netdev={id},id={id}dev,romfile=,bootindex={}", disks.len() + j),
                ]));
            }
            if bootfiles.is_empty() {
                args.extend(s(&["-netdev", net, "-device", "virtio-net-pci,netdev=n0,romfile="]));
            }
            (args, vec![])
        }
        Boot::UefiPersistent { disk, vars } => {
            let mut args = s(&[
                "-drive",
                &format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
                "-drive",
                &format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
            ]);
            args.extend(uefi_disk(&format!("format=raw,file={}", disk.display()), net));
            // A hardware watchdog, as servers have: it resets the machine when the armed PID 1 stops petting it.
            args.extend(s(&["-device", "i6300esb"]));
            (args, vec![])
        }
    }
}

/// The netdev `net` with QEMU's built-in TFTP server serving `file` from `dir`, when `net` is QEMU's user network;
/// any other netdev (a tap) as it is: its network has its own DHCP and TFTP server.
fn with_tftp(net: &str, dir: &str, file: &str) -> String {
    if net.starts_with("user,") {
        format!("{net},tftp={dir},bootfile={file}")
    } else {
        net.to_string()
    }
}

/// The boot disk (first in the firmware's order) and a NIC without an option ROM.
fn uefi_disk(drive: &str, net: &str) -> Vec<String> {
    [
        "-drive",
        &format!("if=none,id=d0,{drive}"),
        "-device",
        "virtio-blk-pci,drive=d0,bootindex=0",
        "-netdev",
        net,
        // No option ROM: the disk boots, and OVMF under TCG would spend seconds starting iPXE's driver.
        "-device",
        "virtio-net-pci,netdev=n0,romfile=",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}
