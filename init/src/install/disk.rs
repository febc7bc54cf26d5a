//! The disk half of an install, blocking (run off the event loop): partition the disk as `make disk` does
//! ([`super::plan::layout`], written by the one GPT writer, [`gpt::build_parts`]), get the kernel to show the
//! partitions, write the verified slot image to KEEL_A, and, as the very last write, rename the state partition
//! from KEEL_INSTALLING to KEEL_STATE (what marks the install complete).

use super::plan::{self, INSTALLING, STATE};
use crate::storage::blockdev;
use crate::storage::gpt::{self, Guid, NewPart};
use crate::storage::probe::{self, Content};
use crate::storage::sysfs::{self, Roots};
use crate::upgrade::slots::{self, Layout, Slot};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the kernel may take to show the new partitions.
const PARTITIONS_WAIT: Duration = Duration::from_secs(10);

/// The disk once partitioned: what the next steps write to.
#[derive(Debug, Clone)]
pub struct Partitioned {
    pub disk: PathBuf,
    pub sector: u32,
    pub disk_bytes: u64,
    pub disk_guid: Guid,
    pub parts: Vec<NewPart>,
    pub slots: Layout,
    pub state: PathBuf,
}

/// What was found on the disk through the exclusive handle.
fn content(f: &File, disk_bytes: u64) -> std::io::Result<Content> {
    let head_len = disk_bytes.min(probe::HEAD_BYTES);
    let mut head = Vec::with_capacity(head_len as usize);
    f.take(head_len).read_to_end(&mut head)?;
    let tail_start = disk_bytes.saturating_sub(probe::TAIL_BYTES).max(head_len);
    let mut tail = vec![0u8; (disk_bytes - tail_start) as usize];
    f.read_exact_at(&mut tail, tail_start)?;
    Ok(probe::classify(&head, &tail, disk_bytes))
}

fn open_exclusive(node: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
        .open(node)
        .map_err(|e| format!("open {} exclusively: {e}", node.display()))
}

/// Partitions `node` (the disk the plan saw holding `planned`; it must still hold exactly that) and waits for
/// the kernel's partition nodes. The first MiB of each partition is zeroed, so no old filesystem shows through.
pub fn partition(
    roots: &Roots,
    node: &Path,
    disk_bytes: u64,
    sector: u32,
    planned: &Content,
) -> Result<Partitioned, String> {
    let f = open_exclusive(node)?;
    let now = content(&f, disk_bytes).map_err(|e| format!("read {}: {e}", node.display()))?;
    if &now != planned {
        return Err(format!("the disk changed since it was planned for: it now holds {now}; nothing written"));
    }
    let guid = || gpt::random_guid().map_err(|e| format!("random GUID: {e}"));
    let (disk_guid, guids) = (guid()?, [guid()?, guid()?, guid()?, guid()?]);
    let parts = plan::layout(sector, disk_bytes, guids, INSTALLING)
        .ok_or_else(|| format!("the disk ({disk_bytes} bytes) is too small for the install layout"))?;
    let img = gpt::build_parts(sector, disk_bytes, disk_guid, &parts).map_err(|e| e.to_string())?;
    let zeros = vec![0u8; gpt::ALIGN_BYTES as usize];
    let write = |what: &str, r: std::io::Result<()>| r.map_err(|e| format!("write {what} to {}: {e}", node.display()));
    for p in &parts {
        write(&p.name, f.write_all_at(&zeros, p.first_lba * sector as u64))?;
    }
    write("the partition table", f.write_all_at(&img.head, 0))?;
    write("the backup partition table", f.write_all_at(&img.tail, img.tail_offset))?;
    write("(sync)", f.sync_all())?;
    log::info!("install.partitioned disk={} partitions={}", node.display(), parts.len());
    announce(&f, roots, node, sector, &parts)?;
    let table = gpt::parse(&img.head).ok_or("the table just built does not parse")?;
    let name = node.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nodes = part_nodes(roots, &name);
    let find = |n: u32| nodes.iter().find(|(num, _)| *num == n).map(|(_, p)| p.clone());
    let slots = slots::from_table(node.to_path_buf(), &table, &find).ok_or("the slots' partition nodes are missing")?;
    let state = find(4).ok_or("the state partition's node is missing")?;
    Ok(Partitioned { disk: node.to_path_buf(), sector, disk_bytes, disk_guid, parts, slots, state })
}

fn part_nodes(roots: &Roots, disk: &str) -> Vec<(u32, PathBuf)> {
    sysfs::scan(roots, &|n| n == disk)
        .into_iter()
        .flat_map(|d| d.partitions)
        .filter(|p| p.node.exists())
        .map(|p| (p.number, p.node))
        .collect()
}

/// BLKRRPART, else BLKPG for each partition; then waits (bounded) for all four nodes.
fn announce(f: &File, roots: &Roots, node: &Path, sector: u32, parts: &[NewPart]) -> Result<(), String> {
    let name = node.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Err(rr) = blockdev::reread(f) {
        for (i, p) in parts.iter().enumerate() {
            let (start, len) = (p.first_lba * sector as u64, (p.last_lba - p.first_lba + 1) * sector as u64);
            match blockdev::add_partition_number(f, i as i32 + 1, start, len) {
                Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
                Err(e) => return Err(format!("the kernel did not take the partitions (BLKRRPART: {rr}; BLKPG: {e})")),
            }
        }
    }
    let started = Instant::now();
    while part_nodes(roots, &name).len() < parts.len() {
        if started.elapsed() > PARTITIONS_WAIT {
            return Err(format!("the partitions of {name} did not appear within {} s", PARTITIONS_WAIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Writes the slot image to KEEL_A and reads it back; its SHA-256.
pub fn write_slot(p: &Partitioned, image: &[u8]) -> Result<String, String> {
    let a = &p.slots.part(Slot::A).node;
    let sha = crate::upgrade::image::write_and_verify(a, image)?;
    log::info!("install.slot_written slot=A device={} bytes={} sha256={sha}", a.display(), image.len());
    Ok(sha)
}

/// The last write: the state partition gets its name KEEL_STATE, which says the install is complete.
pub fn complete(p: &Partitioned) -> Result<(), String> {
    let mut parts = p.parts.clone();
    if let Some(state) = parts.last_mut() {
        state.name = STATE.into();
    }
    let img = gpt::build_parts(p.sector, p.disk_bytes, p.disk_guid, &parts).map_err(|e| e.to_string())?;
    let f = OpenOptions::new().write(true).open(&p.disk).map_err(|e| format!("open {}: {e}", p.disk.display()))?;
    let ctx = |e: std::io::Error| format!("write the partition table to {}: {e}", p.disk.display());
    f.write_all_at(&img.head, 0).map_err(ctx)?;
    f.write_all_at(&img.tail, img.tail_offset).map_err(ctx)?;
    f.sync_all().map_err(ctx)
}
