//! Disks and partitions as the kernel lists them under `/sys/block`, with their device nodes under `/dev`
//! (devtmpfs makes them; there is no udev). Reading never fails as a whole: an attribute that cannot be read is
//! simply absent.

use std::fs;
use std::path::{Path, PathBuf};

/// Where to look: the real system, or fake trees in tests.
#[derive(Debug, Clone)]
pub struct Roots {
    /// `/sys/block`.
    pub sys_block: PathBuf,
    /// `/dev`.
    pub dev: PathBuf,
}

impl Roots {
    pub fn system() -> Roots {
        Roots { sys_block: "/sys/block".into(), dev: "/dev".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub node: PathBuf,
    /// The kernel's partition number (the GPT slot, 1-based).
    pub number: u32,
    pub devno: Option<(u32, u32)>,
    /// Start on the disk, in bytes.
    pub start: u64,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub node: PathBuf,
    pub devno: Option<(u32, u32)>,
    pub size: u64,
    /// The logical block size (what a GPT's LBA is).
    pub sector: u32,
    pub serial: Option<String>,
    pub wwid: Option<String>,
    /// The model and vendor strings the device reports (`QEMU HARDDISK`, `ATA`), trimmed.
    pub model: Option<String>,
    pub vendor: Option<String>,
    /// Where it sits on the buses (`pci-0000:00:1f.2-ata-1`, [`super::bypath`]).
    pub by_path: Option<String>,
    /// How it is attached: nvme, ata, sas, scsi, usb, virtio, or none known.
    pub transport: Option<&'static str>,
    pub removable: bool,
    pub read_only: bool,
    /// loop, ram, zram, nbd, device-mapper, md, optical: never picked as a blank disk.
    pub virtual_dev: bool,
    /// Something (device-mapper, md) is stacked on it.
    pub held: bool,
    pub partitions: Vec<Part>,
}

fn attr(dir: &Path, name: &str) -> Option<String> {
    let text = fs::read_to_string(dir.join(name)).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn number(dir: &Path, name: &str) -> Option<u64> {
    attr(dir, name)?.parse().ok()
}

fn devno(dir: &Path) -> Option<(u32, u32)> {
    let text = attr(dir, "dev")?;
    let (major, minor) = text.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The node devtmpfs makes: `DEVNAME` from uevent, else the name with sysfs's `!` for `/` (cciss!c0d0).
fn node(roots: &Roots, dir: &Path, name: &str) -> PathBuf {
    let devname = fs::read_to_string(dir.join("uevent"))
        .ok()
        .and_then(|u| u.lines().find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_string)));
    roots.dev.join(devname.unwrap_or_else(|| name.replace('!', "/")))
}

/// The unit serial number from a SCSI VPD page 0x80 (`device/vpd_pg80`): 4-byte header, then the serial.
pub fn vpd80_serial(page: &[u8]) -> Option<String> {
    if page.len() < 4 || page[1] != 0x80 {
        return None;
    }
    let len = u16::from_be_bytes([page[2], page[3]]) as usize;
    let serial = String::from_utf8_lossy(page.get(4..4 + len)?).trim().trim_matches('\0').to_string();
    (!serial.is_empty()).then_some(serial)
}

fn serial(dir: &Path) -> Option<String> {
    attr(dir, "serial")
        .or_else(|| attr(dir, "device/serial"))
        .or_else(|| fs::read(dir.join("device/vpd_pg80")).ok().and_then(|p| vpd80_serial(&p)))
}

/// The transport, from the canonical sysfs path (`/sys/devices/pci…/0000:00:1f.2/ata1/host0/…/block/sda`).
pub fn transport(devpath: &str) -> Option<&'static str> {
    let parts: Vec<&str> = devpath.split('/').collect();
    let has = |pred: &dyn Fn(&str) -> bool| parts.iter().any(|p| pred(p));
    if has(&|p| p == "nvme") {
        Some("nvme")
    } else if has(&|p| p.starts_with("usb")) {
        Some("usb")
    } else if has(&|p| p.starts_with("ata") && p[3..].parse::<u32>().is_ok()) {
        Some("ata")
    } else if has(&|p| p.starts_with("end_device-")) {
        Some("sas")
    } else if has(&|p| p.starts_with("target")) {
        Some("scsi")
    } else if has(&|p| p.starts_with("virtio")) {
        Some("virtio")
    } else {
        None
    }
}

/// The `hostN` numbers directly under `dir` (for by-path's host offset).
fn scsi_hosts(dir: &str) -> Vec<u32> {
    fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("host")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn is_virtual(name: &str) -> bool {
    ["loop", "ram", "zram", "nbd", "dm-", "md", "sr", "fd"].iter().any(|p| name.starts_with(p))
}

fn read_disk(roots: &Roots, name: &str) -> Option<Disk> {
    let dir = roots.sys_block.join(name);
    let sectors = number(&dir, "size")?;
    let mut partitions: Vec<Part> = fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pname = e.file_name().to_string_lossy().into_owned();
            let pdir = e.path();
            let number = number(&pdir, "partition")? as u32;
            Some(Part {
                node: node(roots, &pdir, &pname),
                number,
                devno: devno(&pdir),
                start: number_or_zero(&pdir, "start") * 512,
                size: number_or_zero(&pdir, "size") * 512,
                name: pname,
            })
        })
        .collect();
    partitions.sort_by_key(|p| p.number);
    let held = fs::read_dir(dir.join("holders")).map(|mut d| d.next().is_some()).unwrap_or(false);
    let devpath = fs::canonicalize(&dir).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let read = |p: &str| fs::read_to_string(p).ok();
    Some(Disk {
        model: attr(&dir, "device/model"),
        vendor: attr(&dir, "device/vendor"),
        by_path: super::bypath::by_path(&devpath, &read, &scsi_hosts),
        transport: transport(&devpath),
        node: node(roots, &dir, name),
        devno: devno(&dir),
        size: sectors * 512,
        sector: number(&dir, "queue/logical_block_size").map_or(512, |s| s as u32),
        serial: serial(&dir),
        wwid: attr(&dir, "wwid").or_else(|| attr(&dir, "device/wwid")),
        removable: number(&dir, "removable") == Some(1),
        read_only: number(&dir, "ro") == Some(1),
        virtual_dev: is_virtual(name),
        held,
        partitions,
        name: name.to_string(),
    })
}

fn number_or_zero(dir: &Path, name: &str) -> u64 {
    number(dir, name).unwrap_or(0)
}

/// Every disk under `/sys/block` that `keep` accepts (by name), in a stable order: shorter names first, so
/// vda < vdb < … < vdz < vdaa, as the kernel hands them out.
pub fn scan(roots: &Roots, keep: &dyn Fn(&str) -> bool) -> Vec<Disk> {
    let Ok(dir) = fs::read_dir(&roots.sys_block) else { return Vec::new() };
    let mut disks: Vec<Disk> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| keep(name))
        .filter_map(|name| read_disk(roots, &name))
        .collect();
    disks.sort_by(|a, b| (a.name.len(), &a.name).cmp(&(b.name.len(), &b.name)));
    disks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fake::FakeTree;

    #[test]
    fn reads_disks_partitions_and_attributes() {
        let t = FakeTree::new("attrs");
        t.file("sys/block/vdb/size", "131072\n");
        t.file("sys/block/vdb/dev", "254:16\n");
        t.file("sys/block/vdb/serial", "disk-1\n");
        t.file("sys/block/vdb/ro", "0\n");
        t.file("sys/block/vdb/removable", "0\n");
        t.file("sys/block/vdb/vdb1/partition", "1\n");
        t.file("sys/block/vdb/vdb1/start", "2048\n");
        t.file("sys/block/vdb/vdb1/size", "129024\n");
        t.file("sys/block/vdb/vdb1/dev", "254:17\n");
        t.file("sys/block/sda/size", "0\n");
        t.file("sys/block/sda/ro", "1\n");
        t.file("sys/block/sda/removable", "1\n");
        t.file("sys/block/sda/device/wwid", "naa.5000c500a1b2c3d4\n");
        t.file("sys/block/sda/queue/logical_block_size", "4096\n");
        t.bytes("sys/block/sda/device/vpd_pg80", b"\0\x80\0\x06SER123");
        t.file("sys/block/sda/holders/dm-0", "");
        t.file("sys/block/loop0/size", "100\n");
        t.file("sys/block/cciss!c0d0/size", "8\n");
        let disks = scan(&t.roots(), &|_| true);
        let names: Vec<_> = disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "vdb", "loop0", "cciss!c0d0"]);
        let vdb = &disks[1];
        assert_eq!(vdb.node, t.root.join("dev/vdb"));
        assert_eq!((vdb.size, vdb.sector, vdb.devno), (64 << 20, 512, Some((254, 16))));
        assert_eq!(vdb.serial.as_deref(), Some("disk-1"));
        assert!(!vdb.removable && !vdb.read_only && !vdb.virtual_dev && !vdb.held);
        assert_eq!(vdb.partitions.len(), 1);
        let p = &vdb.partitions[0];
        assert_eq!((p.number, p.start, p.size, p.devno), (1, 1 << 20, 129024 * 512, Some((254, 17))));
        assert_eq!(p.node, t.root.join("dev/vdb1"));
        let sda = &disks[0];
        assert_eq!((sda.sector, sda.read_only, sda.removable, sda.held), (4096, true, true, true));
        assert_eq!(sda.wwid.as_deref(), Some("naa.5000c500a1b2c3d4"));
        assert_eq!(sda.serial.as_deref(), Some("SER123"));
        assert!(disks[2].virtual_dev);
        assert_eq!(disks[3].node, t.root.join("dev/cciss/c0d0"));
        assert_eq!(scan(&t.roots(), &|n| n == "vdb").len(), 1);
    }

    #[test]
    fn uevent_devname_names_the_node_and_a_missing_tree_is_no_disks() {
        let t = FakeTree::new("uevent");
        t.file("sys/block/nvme0n1/size", "2048\n");
        t.file("sys/block/nvme0n1/uevent", "MAJOR=259\nMINOR=0\nDEVNAME=nvme0n1\nDEVTYPE=disk\n");
        t.file("sys/block/nvme0n1/device/serial", "S4EVNX0R\n");
        let disks = scan(&t.roots(), &|_| true);
        assert_eq!(disks[0].node, t.root.join("dev/nvme0n1"));
        assert_eq!(disks[0].serial.as_deref(), Some("S4EVNX0R"));
        let gone = Roots { sys_block: t.root.join("nope"), dev: t.root.join("dev") };
        assert!(scan(&gone, &|_| true).is_empty());
    }

    #[test]
    fn vpd_page_80() {
        assert_eq!(vpd80_serial(b"\0\x80\0\x08  ABC   "), Some("ABC".into()));
        assert_eq!(vpd80_serial(b"\0\x83\0\x03ABC"), None);
        assert_eq!(vpd80_serial(b"\0\x80\0\x09ABC"), None);
    }
}
