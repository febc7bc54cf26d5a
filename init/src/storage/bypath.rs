//! Where a disk sits on the buses, as a stable id in udev's `by-path` style: `pci-0000:00:1f.2-ata-1`,
//! `pci-0000:3b:00.0-nvme-1`, `pci-0000:00:05.0-scsi-0:0:2:0`, `pci-0000:02:00.0-sas-0x5000c500a1b2c3d4-lun-0`,
//! `pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0`. Unlike `/dev/sdb` it does not move when another disk appears or a
//! controller probes faster; it moves only when the disk moves to another slot. Keel has no udev: this is its own
//! derivation from the sysfs device path (the `/sys/block/<name>` link's target), written to agree with udev's
//! `path_id` for the common cases so operators can take selectors from tools they know.

/// The by-path id of the block device whose canonical sysfs path is `devpath` (`/sys/devices/pci0000:00/…/block/
/// sda`), or None when it hangs off no PCI device (loop, ram, …). `read(path)` reads a sysfs attribute (the
/// ata port number, a SAS address) and `hosts(dir)` lists the `hostN` numbers directly under `dir`; both are
/// parameters so the derivation is pure and tested on fake trees.
pub fn by_path(
    devpath: &str,
    read: &dyn Fn(&str) -> Option<String>,
    hosts: &dyn Fn(&str) -> Vec<u32>,
) -> Option<String> {
    let parts: Vec<&str> = devpath.trim_end_matches('/').split('/').collect();
    // The PCI function closest to the disk (a disk behind a bridge hangs off the last one).
    let pci_at = parts.iter().rposition(|p| is_pci_address(p))?;
    let dir_of = |i: usize| parts[..=i].join("/");
    let mut id = format!("pci-{}", parts[pci_at]);
    let rest = &parts[pci_at + 1..];
    let name = *parts.last()?;
    // NVMe: the namespace (nvme0n1 -> 1).
    if rest.first() == Some(&"nvme") {
        let nsid = name.rsplit_once('n').and_then(|(_, n)| n.parse::<u32>().ok())?;
        return Some(format!("{id}-nvme-{nsid}"));
    }
    // USB: the port path below the root hub (2-1.4:1.0 -> usb-0:1.4:1.0), then the SCSI address below.
    if let Some(port) = rest.iter().find_map(|p| usb_interface_port(p)) {
        id.push_str(&format!("-usb-0:{port}"));
    }
    // ATA: the controller's port number (ataN/ata_port/ataN/port_no), else N.
    if let Some(i) = rest.iter().position(|p| p.starts_with("ata") && p[3..].parse::<u32>().is_ok()) {
        let ata = rest[i];
        let port = read(&format!("{}/{ata}/ata_port/{ata}/port_no", dir_of(pci_at + i)))
            .and_then(|p| p.trim().parse::<u32>().ok())
            .unwrap_or_else(|| ata[3..].parse().unwrap_or(0));
        return Some(format!("{id}-ata-{port}"));
    }
    // SCSI: H:C:T:L, the host counted from the first host of the same controller (hosts are numbered globally, in
    // probe order); a SAS disk is named by its end device's SAS address instead.
    let scsi = rest.iter().rev().find(|p| p.split(':').count() == 4 && p.split(':').all(|n| n.parse::<u32>().is_ok()));
    if let Some(hctl) = scsi {
        let n: Vec<u32> = hctl.split(':').filter_map(|n| n.parse().ok()).collect();
        if let Some(i) = rest.iter().position(|p| p.starts_with("end_device-")) {
            let end = dir_of(pci_at + 1 + i);
            let sas = read(&format!("{end}/sas_device/{}/sas_address", rest[i]));
            if let Some(addr) = sas {
                return Some(format!("{id}-sas-{}-lun-{}", addr.trim(), n[3]));
            }
        }
        let host_dir = rest.iter().position(|p| *p == format!("host{}", n[0])).map(|i| dir_of(pci_at + i));
        let base = host_dir.map(|d| hosts(&d).into_iter().min().unwrap_or(n[0])).unwrap_or(n[0]);
        return Some(format!("{id}-scsi-{}:{}:{}:{}", n[0].saturating_sub(base), n[1], n[2], n[3]));
    }
    // virtio-blk and anything else straight on a PCI function.
    Some(id)
}

/// A USB interface's port path: `2-1.4:1.0` (bus 2, port 1.4, config 1, interface 0) -> `1.4:1.0`.
fn usb_interface_port(s: &str) -> Option<&str> {
    let (bus, port) = s.split_once('-')?;
    let (ports, intf) = port.split_once(':')?;
    let digits_dots = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.');
    (bus.chars().all(|c| c.is_ascii_digit()) && !bus.is_empty() && digits_dots(ports) && digits_dots(intf))
        .then_some(port)
}

/// `0000:00:1f.2`: domain:bus:device.function.
fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && s.chars().enumerate().all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn id(devpath: &str, attrs: &[(&str, &str)], host_list: &[(&str, &[u32])]) -> Option<String> {
        let attrs: HashMap<String, String> = attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let host_list: HashMap<String, Vec<u32>> = host_list.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
        by_path(devpath, &|p| attrs.get(p).cloned(), &|d| host_list.get(d).cloned().unwrap_or_default())
    }

    #[test]
    fn names_each_bus_like_udev() {
        let pci = "/sys/devices/pci0000:00";
        assert_eq!(id(&format!("{pci}/0000:00:03.0/virtio0/block/vda"), &[], &[]).unwrap(), "pci-0000:00:03.0");
        assert_eq!(
            id(&format!("{pci}/0000:00:02.0/0000:3b:00.0/nvme/nvme0/nvme0n2"), &[], &[]).unwrap(),
            "pci-0000:3b:00.0-nvme-2"
        );
        let ahci = format!("{pci}/0000:00:1f.2");
        assert_eq!(
            id(
                &format!("{ahci}/ata3/host2/target2:0:0/2:0:0:0/block/sda"),
                &[(&format!("{ahci}/ata3/ata_port/ata3/port_no"), "3\n")],
                &[]
            )
            .unwrap(),
            "pci-0000:00:1f.2-ata-3"
        );
        // Second controller: host 7 is its first host, so the disk is scsi-0:…, whatever probed before it.
        let mega = format!("{pci}/0000:00:05.0");
        assert_eq!(
            id(&format!("{mega}/host7/target7:2:1/7:2:1:0/block/sdc"), &[], &[(mega.as_str(), &[7])]).unwrap(),
            "pci-0000:00:05.0-scsi-0:2:1:0"
        );
        let vscsi = format!("{pci}/0000:00:07.0/virtio2");
        assert_eq!(
            id(&format!("{vscsi}/host3/target3:0:0/3:0:0:1/block/sdd"), &[], &[(vscsi.as_str(), &[3])]).unwrap(),
            "pci-0000:00:07.0-scsi-0:0:0:1"
        );
        let sas = format!("{pci}/0000:00:06.0/host2/port-2:0/end_device-2:0");
        assert_eq!(
            id(
                &format!("{sas}/target2:0:0/2:0:0:0/block/sdb"),
                &[(&format!("{sas}/sas_device/end_device-2:0/sas_address"), "0x5000c500a1b2c3d4\n")],
                &[]
            )
            .unwrap(),
            "pci-0000:00:06.0-sas-0x5000c500a1b2c3d4-lun-0"
        );
        let usb = format!("{pci}/0000:00:14.0/usb2/2-1/2-1:1.0");
        assert_eq!(
            id(&format!("{usb}/host4/target4:0:0/4:0:0:0/block/sde"), &[], &[(usb.as_str(), &[4])]).unwrap(),
            "pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0"
        );
        assert_eq!(id("/sys/devices/virtual/block/loop0", &[], &[]), None);
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:00:1f.2"));
        assert!(is_pci_address("0000:3b:00.0"));
        assert!(!is_pci_address("pci0000:00"));
        assert!(!is_pci_address("2:0:0:0"));
        assert!(!is_pci_address("0000:00:1g.2"));
    }
}
