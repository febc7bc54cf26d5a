//! Every disk the node sees, with the identity an operator writes a selector from: `storage.disk` lines at boot
//! and `storage.disks` in the status. Reads sysfs attributes only (no disk I/O), so it is cheap to call anywhere.

use super::sysfs::{self, Disk, Roots};
use crate::logging::q;

/// The disks worth listing: not loop/ram/zram (never storage a node keeps), not empty drives.
pub fn disks(roots: &Roots) -> Vec<Disk> {
    let keep = |n: &str| !["loop", "ram", "zram"].iter().any(|p| n.starts_with(p));
    sysfs::scan(roots, &keep).into_iter().filter(|d| d.size > 0).collect()
}

/// One line per disk: `storage.disk name=sda size=… transport=ata model="QEMU HARDDISK" serial=… wwn=… path=…`.
pub fn log_disks(disks: &[Disk]) {
    for d in disks {
        let opt = |v: &Option<String>| v.as_deref().map(q).unwrap_or_else(|| "-".into());
        log::info!(
            "storage.disk name={} size={} transport={} model={} vendor={} serial={} wwn={} path={} removable={} \
             partitions={}",
            d.name,
            d.size,
            d.transport.unwrap_or("-"),
            opt(&d.model),
            opt(&d.vendor),
            opt(&d.serial),
            opt(&d.wwid),
            opt(&d.by_path),
            d.removable,
            d.partitions.len()
        );
    }
}

/// The `storage.disks` array of the status: each disk with the selectors that name it.
pub fn disks_status(disks: &[Disk]) -> Vec<keel_config::status::DiskStatus> {
    disks
        .iter()
        .map(|d| {
            let mut selectors = vec![d.node.display().to_string()];
            if let Some(s) = &d.serial {
                selectors.push(format!("serial:{s}"));
            }
            if let Some(w) = &d.wwid {
                selectors.push(format!("wwn:{w}"));
            }
            if let Some(m) = &d.model {
                selectors.push(format!("model:{}", keel_config::storage::model_key(m)));
            }
            if let Some(p) = &d.by_path {
                selectors.push(format!("path:{p}"));
            }
            keel_config::status::DiskStatus {
                name: d.name.clone(),
                device: d.node.display().to_string(),
                size: d.size,
                transport: d.transport.map(str::to_string),
                model: d.model.clone(),
                vendor: d.vendor.clone(),
                serial: d.serial.clone(),
                wwn: d.wwid.clone(),
                path: d.by_path.clone(),
                removable: d.removable,
                read_only: d.read_only,
                partitions: d.partitions.iter().map(|p| p.name.clone()).collect(),
                selectors,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fake::FakeTree;

    #[test]
    fn lists_each_disk_with_the_selectors_that_name_it() {
        let t = FakeTree::new("inventory");
        t.disk("nvme0n1", 1 << 30, &[]);
        t.file("sys/block/nvme0n1/device/model", "SAMSUNG MZQL21T9HCJR-00A07 \n");
        t.file("sys/block/nvme0n1/device/serial", "S64GNE0R123456\n");
        t.file("sys/block/nvme0n1/wwid", "eui.36344730526054940025384500000001\n");
        t.disk("loop0", 1 << 20, &[]);
        t.disk("sr0", 0, &[]);
        let found = disks(&t.roots());
        assert_eq!(found.len(), 1, "loop devices and empty drives are left out");
        let v = serde_json::to_value(disks_status(&found)).unwrap();
        assert_eq!(v[0]["name"], "nvme0n1");
        assert_eq!(v[0]["model"], "SAMSUNG MZQL21T9HCJR-00A07");
        assert_eq!(v[0]["serial"], "S64GNE0R123456");
        let sel: Vec<&str> = v[0]["selectors"].as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
        assert_eq!(
            sel[1..],
            ["serial:S64GNE0R123456", "wwn:eui.36344730526054940025384500000001", "model:SAMSUNG_MZQL21T9HCJR-00A07"]
        );
        // Every selector listed parses and picks this disk.
        for s in &sel[1..] {
            let parsed: keel_config::storage::Selector = s.parse().unwrap();
            let inv = crate::storage::select::observe(&t.roots(), &|n| n == "nvme0n1");
            let got = crate::storage::select::resolve(&parsed, &inv, &t.roots(), "x");
            assert_eq!(got, crate::storage::select::Resolved::Found(crate::storage::select::Target::Disk(0)), "{s}");
        }
    }
}
