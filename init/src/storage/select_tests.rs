use super::*;
use crate::storage::fake::{ext4, gpt, FakeTree};

const MIB: u64 = 1 << 20;

/// vda: a Keel GPT with KEEL_STATE (ext4 KEEL_STATE); vdb: blank, serial data-1; vdc: blank 8 MiB;
/// vdd: whole-disk ext4 "logs" with a WWN; sde: blank but removable; loop0: blank but virtual.
fn tree() -> FakeTree {
    let t = FakeTree::new(&format!("select-{:?}", std::thread::current().id()));
    t.disk("vda", 64 * MIB, &gpt(64 * MIB, "KEEL_STATE"));
    t.part("vda", 1, MIB, 62 * MIB, &ext4("KEEL_STATE", true));
    t.disk("vdb", 64 * MIB, &[]);
    t.file("sys/block/vdb/serial", "data-1\n");
    t.disk("vdc", 8 * MIB, &[]);
    t.disk("vdd", 64 * MIB, &ext4("logs", true));
    t.file("sys/block/vdd/device/wwid", "naa.5000c500a1b2c3d4\n");
    t.disk("sde", 64 * MIB, &[]);
    t.file("sys/block/sde/removable", "1\n");
    t.disk("loop0", 64 * MIB, &[]);
    t
}

fn pick(t: &FakeTree, sel: &str, own: &str) -> Result<String, String> {
    let inv = observe(&t.roots(), &|_| true);
    match resolve(&sel.parse().unwrap(), &inv, &t.roots(), own) {
        Resolved::Found(target) => Ok(name(&inv, target)),
        Resolved::NotFound(why) => Err(format!("not found: {why}")),
        Resolved::Ambiguous(why) => Err(format!("ambiguous: {why}")),
    }
}

#[test]
fn observes_what_each_disk_and_partition_holds() {
    let t = tree();
    let inv = observe(&t.roots(), &|_| true);
    let by = |n: &str| inv.iter().find(|o| o.disk.name == n).unwrap();
    let vda = by("vda");
    assert!(matches!(vda.content, Content::Table(Table::Gpt(_))));
    assert_eq!(vda.partlabel(&vda.parts[0].0), Some("KEEL_STATE"));
    assert_eq!(vda.parts[0].1.to_string(), "ext4 labelled \"KEEL_STATE\"");
    assert_eq!(by("vdb").content, Content::Blank);
    assert_eq!(by("vdd").content.to_string(), "ext4 labelled \"logs\"");
}

#[test]
fn every_selector_kind() {
    let t = tree();
    let own = "KEEL_STATE";
    assert_eq!(pick(&t, "/dev/vdb", own), Ok("vdb".into()));
    assert_eq!(pick(&t, "/dev/vda1", own), Ok("vda1".into()));
    assert_eq!(pick(&t, "/dev/vdz", own), Err("not found: no device has the path /dev/vdz".into()));
    assert_eq!(pick(&t, "serial:data-1", own), Ok("vdb".into()));
    assert!(pick(&t, "serial:data-2", own).unwrap_err().starts_with("not found"));
    assert_eq!(pick(&t, "wwn:0x5000C500A1B2C3D4", own), Ok("vdd".into()));
    assert_eq!(pick(&t, "wwn:naa.5000c500a1b2c3d4", own), Ok("vdd".into()));
    assert_eq!(pick(&t, "partlabel:KEEL_STATE", own), Ok("vda1".into()));
    assert_eq!(pick(&t, "label:KEEL_STATE", own), Ok("vda1".into()));
    assert_eq!(pick(&t, "label:logs", own), Ok("vdd".into()));
}

#[test]
fn blank_finds_the_volume_it_made_before_any_blank_disk() {
    let t = tree();
    assert_eq!(pick(&t, "blank", "KEEL_STATE"), Ok("vda1".into()));
    // Another volume: the first blank disk, never a removable, virtual or too small one.
    assert_eq!(pick(&t, "blank", "data"), Ok("vdb".into()));
    assert_eq!(pick(&t, "blank:>=32M", "data"), Ok("vdb".into()));
    assert_eq!(
        pick(&t, "blank:>=1G", "data"),
        Err("not found: no partition named \"data\" and no blank disk of at least 1G".into())
    );
    // Once vdb holds something, vdc (8 MiB) is the only blank fixed disk left.
    t.disk("vdb", 64 * MIB, b"\x01");
    assert_eq!(pick(&t, "blank", "data"), Ok("vdc".into()));
    assert!(pick(&t, "blank:>=16M", "data").is_err());
}

#[test]
fn two_matches_are_never_a_guess() {
    let t = tree();
    t.disk("vdb", 64 * MIB, &gpt(64 * MIB, "KEEL_STATE"));
    t.part("vdb", 1, MIB, 62 * MIB, &ext4("KEEL_STATE", true));
    assert_eq!(
        pick(&t, "partlabel:KEEL_STATE", "x"),
        Err("ambiguous: 2 devices have a partition named \"KEEL_STATE\": vda1, vdb1".into())
    );
    assert!(pick(&t, "blank", "KEEL_STATE").unwrap_err().starts_with("ambiguous"));
    assert!(pick(&t, "label:KEEL_STATE", "x").unwrap_err().starts_with("ambiguous"));
}

#[test]
fn an_unreadable_device_is_reported_as_such() {
    let t = tree();
    std::fs::remove_file(t.root.join("dev/vdc")).unwrap();
    let inv = observe(&t.roots(), &|_| true);
    let vdc = inv.iter().find(|o| o.disk.name == "vdc").unwrap();
    assert!(matches!(vdc.content, Content::Unreadable(_)), "{:?}", vdc.content);
}

#[test]
fn disks_are_found_by_model_and_by_path() {
    let t = tree();
    // sdf sits on AHCI port 2, as the kernel lays it out: /sys/block/sdf links into /sys/devices.
    let dev = "sys/devices/pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0";
    t.file(&format!("{dev}/block/sdf/size"), &format!("{}\n", 64 * MIB / 512));
    t.file(&format!("{dev}/model"), "QEMU HARDDISK   \n");
    t.file(&format!("{dev}/vendor"), "ATA     \n");
    t.file("sys/devices/pci0000:00/0000:00:1f.2/ata2/ata_port/ata2/port_no", "2\n");
    std::os::unix::fs::symlink(t.root.join(dev), t.root.join(format!("{dev}/block/sdf/device"))).unwrap();
    std::os::unix::fs::symlink(t.root.join(format!("{dev}/block/sdf")), t.root.join("sys/block/sdf")).unwrap();
    std::fs::File::create(t.root.join("dev/sdf")).unwrap().set_len(64 * MIB).unwrap();

    let inv = observe(&t.roots(), &|_| true);
    let sdf = &inv.iter().find(|o| o.disk.name == "sdf").unwrap().disk;
    assert_eq!(sdf.by_path.as_deref(), Some("pci-0000:00:1f.2-ata-2"));
    assert_eq!(
        (sdf.model.as_deref(), sdf.vendor.as_deref(), sdf.transport),
        (Some("QEMU HARDDISK"), Some("ATA"), Some("ata"))
    );
    assert_eq!(pick(&t, "model:QEMU_HARDDISK", "x"), Ok("sdf".into()));
    assert_eq!(pick(&t, "path:pci-0000:00:1f.2-ata-2", "x"), Ok("sdf".into()));
    assert!(pick(&t, "path:pci-0000:00:1f.2-ata-1", "x").unwrap_err().starts_with("not found"));
    // A second disk of the same model: naming the model alone is a guess, so it picks nothing.
    t.file("sys/block/vdb/device/model", "QEMU  HARDDISK\n");
    assert!(pick(&t, "model:QEMU_HARDDISK", "x").unwrap_err().starts_with("ambiguous: 2 devices have model"));
}
