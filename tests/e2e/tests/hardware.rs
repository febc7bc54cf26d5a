//! End to end: the drivers a real server needs, on every storage controller and NIC QEMU emulates, in one boot.
//! Seven blank disks, one behind each controller (NVMe, ICH9 AHCI, MegaRAID SAS, LSI 53c895a, VMware PVSCSI,
//! virtio-scsi, LSI SAS1068), each with its own serial: the node lists every one with its identity (the
//! `storage.disk` lines and `storage.disks` in the status), makes one the state volume (`keel.state=` names it
//! by serial, the NVMe one) and each of the others a config volume named by a stable selector (serial; by-path
//! for one, taken from what the node reported; WWN for the SAS one), so a GPT and ext4 are written and mounted
//! through every driver. Four NICs
//! (virtio-net, e1000e, vmxnet3, rtl8139), each on its own QEMU user network: DHCP is answered over each.

use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::{build_dir, field, Vm, VmConfig, STEP_TIMEOUT};
use std::path::PathBuf;

/// (QEMU controller device, the disk device on it, the serial, the transport the node reports). The disk behind
/// the SAS HBA (`mptsas1068`) has a WWN, as every real SAS disk does: Linux's mptsas attaches an end device by its
/// SAS address, and QEMU reports a disk without `wwn=` with address 0, which mptsas skips without a word.
const CONTROLLERS: [(&str, &str, &str, &str); 7] = [
    ("", "nvme,serial=hw-nvme", "hw-nvme", "nvme"),
    ("ich9-ahci,id=ahci", "ide-hd,bus=ahci.0,serial=hw-ahci", "hw-ahci", "ata"),
    ("megasas-gen2,id=mega", "scsi-hd,bus=mega.0,serial=hw-megasas", "hw-megasas", "scsi"),
    ("lsi53c895a,id=lsi", "scsi-hd,bus=lsi.0,serial=hw-lsi", "hw-lsi", "scsi"),
    ("pvscsi,id=pv", "scsi-hd,bus=pv.0,serial=hw-pvscsi", "hw-pvscsi", "scsi"),
    ("virtio-scsi-pci,id=vscsi", "scsi-hd,bus=vscsi.0,serial=hw-vscsi", "hw-vscsi", "scsi"),
    ("mptsas1068,id=mpt", "scsi-hd,bus=mpt.0,serial=hw-mptsas,wwn=0x5000c50015ea71ac", "hw-mptsas", "sas"),
];

/// The WWN of the SAS disk, as the node reports it and a selector names it.
const SAS_WWN: &str = "naa.5000c50015ea71ac";

/// (QEMU NIC model, its MAC, the user network it is on). virtio-net (the VM's n0, 10.0.2.0/24) is the fourth.
const NICS: [(&str, &str, &str); 3] = [
    ("e1000e", "52:54:00:00:01:01", "10.0.3.0/24"),
    ("vmxnet3", "52:54:00:00:01:02", "10.0.4.0/24"),
    ("rtl8139", "52:54:00:00:01:03", "10.0.5.0/24"),
];

fn blank(dir: &std::path::Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(96 << 20).unwrap();
    p
}

#[test]
fn qemu_every_emulated_controller_and_nic_works() {
    let dir = std::env::temp_dir().join(format!("keel-e2e-hardware-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut args: Vec<String> = Vec::new();
    for (i, (controller, disk, _, _)) in CONTROLLERS.iter().enumerate() {
        let img = blank(&dir, &format!("d{i}.img"));
        args.extend(["-drive".into(), format!("file={},if=none,id=hd{i},format=raw", img.display())]);
        if !controller.is_empty() {
            args.extend(["-device".into(), controller.to_string()]);
        }
        args.extend(["-device".into(), format!("{disk},drive=hd{i}")]);
    }
    for (i, (model, mac, net)) in NICS.iter().enumerate() {
        args.extend(["-netdev".into(), format!("user,id=hw{i},net={net}")]);
        args.extend(["-device".into(), format!("{model},netdev=hw{i},mac={mac}")]);
    }

    // Volumes on seven controllers, each named by a selector an operator would write; the NVMe one is the
    // state volume, named on the command line. The PVSCSI disk is found by where it sits (by-path), read from
    // what the node reports, in a second config.
    let mut config = String::from("version = 1\ngeneration = 2\n");
    for (i, (_, _, serial, _)) in CONTROLLERS.iter().enumerate().skip(1) {
        let device = match *serial {
            "hw-pvscsi" => continue,
            "hw-mptsas" => format!("wwn:{SAS_WWN}"),
            _ => format!("serial:{serial}"),
        };
        config.push_str(&format!(
            "[[storage.volume]]\nname = \"v{i}\"\ndevice = \"{device}\"\nmount = \"/var/lib/v{i}\"\n"
        ));
    }
    let key = build_dir().join("keys/dev_ed25519");
    let server = FileServer::start();
    server.put("/node.toml.sig", ssh_sign(&config, &key, "keel-config"));
    server.put("/node.toml", config.clone().into_bytes());
    let cfg = VmConfig {
        append: format!(
            "keel.state=serial:hw-nvme keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1",
            server.port
        ),
        memory_mib: 512,
        extra_args: args,
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("hardware_matrix", &cfg);
    vm.expect_ready();

    // Every disk is listed with its identity.
    let mut pv_path = String::new();
    for (_, _, serial, transport) in CONTROLLERS {
        let line = vm.expect_anywhere(&format!("serial={serial} "), STEP_TIMEOUT);
        assert!(line.contains("keel: storage.disk name="), "{line}");
        assert_eq!(field(&line, "transport"), Some(transport), "{line}");
        assert!(field(&line, "path").is_some_and(|p| p.starts_with("pci-0000:")), "{serial}: no by-path: {line}");
        assert_ne!(field(&line, "model"), Some("-"), "{serial}: no model: {line}");
        if serial == "hw-pvscsi" {
            pv_path = field(&line, "path").unwrap_or_default().to_string();
        }
        if serial == "hw-mptsas" {
            assert_eq!(field(&line, "wwn"), Some(SAS_WWN), "{line}");
        }
    }
    // The NVMe disk is the state volume; the others become config volumes, each through its own driver.
    let state = vm.expect_anywhere("keel: storage.state mode=volume", STEP_TIMEOUT);
    assert_eq!(field(&state, "formatted"), Some("true"), "{state}");
    assert!(field(&state, "device").is_some_and(|d| d.starts_with("/dev/nvme0n1")), "{state}");
    vm.expect_anywhere("keel: config.converged generation=2", STEP_TIMEOUT * 3);
    for i in [1, 2, 3, 5, 6] {
        vm.expect_anywhere(&format!("mount=/var/lib/v{i} phase=mounted"), STEP_TIMEOUT);
    }

    // Generation 3 adds the PVSCSI disk by its by-path id, as the node reported it.
    assert!(!pv_path.is_empty());
    let config3 = config.replace("generation = 2", "generation = 3")
        + &format!("[[storage.volume]]\nname = \"v4\"\ndevice = \"path:{pv_path}\"\nmount = \"/var/lib/v4\"\n");
    server.put("/node.toml.sig", ssh_sign(&config3, &key, "keel-config"));
    server.put("/node.toml", config3.into_bytes());
    vm.expect_anywhere("mount=/var/lib/v4 phase=mounted", STEP_TIMEOUT * 2);
    vm.expect_anywhere("keel: config.converged generation=3", STEP_TIMEOUT);

    // DHCP answered over each NIC: the lease comes from that NIC's own user network. Interface names follow
    // driver probe order, not the command line, so each NIC is found by its MAC.
    let virtio = ("virtio-net", "52:54:00:12:34:56", "10.0.2.0/24");
    for (model, mac, net) in NICS.into_iter().chain([virtio]) {
        let start = vm.expect_anywhere(&format!("mac={mac}"), STEP_TIMEOUT);
        let ifname = field(&start, "if").unwrap_or_default().to_string();
        let prefix = net.trim_end_matches(".0/24");
        let bound = vm.expect_anywhere(&format!("keel: net.dhcp.bound if={ifname} addr={prefix}."), STEP_TIMEOUT);
        assert!(!ifname.is_empty(), "{model}: {start} / {bound}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
