//! Writing a partition table to a disk and getting the kernel to see it: the disk is opened exclusively (no one
//! else may have it open, mounted or claimed), checked blank once more through that very handle, written, synced,
//! then re-read with BLKRRPART (or, where that is refused, the partition added with BLKPG), and the partition's
//! node waited for.

use super::gpt::{self, Layout};
use super::probe::{self, Content};
use super::sysfs::{self, Part, Roots};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("open {path} exclusively: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("no longer blank: it now holds {0}; nothing written")]
    NotBlank(String),
    #[error("{0}")]
    Layout(#[from] gpt::GptError),
    #[error("write the partition table: {0}")]
    Write(std::io::Error),
    #[error("the kernel did not take the new partition (BLKRRPART: {rrpart}; BLKPG: {blkpg})")]
    Reread { rrpart: nix::errno::Errno, blkpg: nix::errno::Errno },
    #[error("partition 1 of {0} did not appear within {1} s")]
    NoPartition(String, u64),
}

nix::ioctl_none!(blkrrpart, 0x12, 95);

#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: i32,
    devname: [u8; 64],
    volname: [u8; 64],
}

#[repr(C)]
struct BlkpgIoctlArg {
    op: i32,
    flags: i32,
    datalen: i32,
    data: *mut BlkpgPartition,
}

const BLKPG_ADD_PARTITION: i32 = 1;
nix::ioctl_write_ptr_bad!(blkpg, nix::request_code_none!(0x12, 105), BlkpgIoctlArg);

/// Adds partition 1 (`start`, `length` bytes) to the kernel's view of `disk` without reading any table: for
/// kernels without the GPT parser, or when a re-read was refused.
pub fn add_partition(disk: &File, start: u64, length: u64) -> Result<(), nix::errno::Errno> {
    add_partition_number(disk, 1, start, length)
}

/// Adds partition `pno` (`start`, `length` bytes) to the kernel's view of `disk`.
pub fn add_partition_number(disk: &File, pno: i32, start: u64, length: u64) -> Result<(), nix::errno::Errno> {
    let mut part =
        BlkpgPartition { start: start as i64, length: length as i64, pno, devname: [0; 64], volname: [0; 64] };
    let arg = BlkpgIoctlArg {
        op: BLKPG_ADD_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as i32,
        data: &mut part,
    };
    // SAFETY: `arg` and the partition it points to live until the call returns; the layout is the kernel's.
    unsafe { blkpg(disk.as_raw_fd(), &arg) }.map(|_| ())
}

/// Asks the kernel to re-read `disk`'s partition table (BLKRRPART).
pub fn reread(disk: &File) -> Result<(), nix::errno::Errno> {
    // SAFETY: BLKRRPART takes no argument; the fd is an open block device.
    unsafe { blkrrpart(disk.as_raw_fd()) }.map(|_| ())
}

/// Writes Keel's GPT (one partition named `name` spanning the disk) to `disk`, which must still be blank.
pub fn write_gpt(node: &Path, disk_bytes: u64, sector: u32, name: &str) -> Result<Written, PartitionError> {
    let path = node.display().to_string();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_EXCL | nix::libc::O_CLOEXEC)
        .open(node)
        .map_err(|source| PartitionError::Open { path: path.clone(), source })?;
    // Checked again through the exclusive handle: what was blank when planned must still be blank now.
    let head_len = disk_bytes.min(probe::HEAD_BYTES);
    let mut head = Vec::with_capacity(head_len as usize);
    (&f).take(head_len).read_to_end(&mut head).map_err(PartitionError::Write)?;
    let tail_start = disk_bytes.saturating_sub(probe::TAIL_BYTES).max(head_len);
    let mut tail = vec![0u8; (disk_bytes - tail_start) as usize];
    f.read_exact_at(&mut tail, tail_start).map_err(PartitionError::Write)?;
    let content = probe::classify(&head, &tail, disk_bytes);
    if content != Content::Blank {
        return Err(PartitionError::NotBlank(content.to_string()));
    }
    let guid = || gpt::random_guid().map_err(PartitionError::Write);
    let layout = Layout {
        sector,
        disk_bytes,
        disk_guid: guid()?,
        part_guid: guid()?,
        type_guid: gpt::KEEL_TYPE,
        name: name.to_string(),
    };
    let img = gpt::build(&layout)?;
    // The primary first: a crash before the backup lands leaves a valid primary table naming this volume's
    // partition, which the next boot finds (blank) and formats, instead of a disk that is neither blank nor ours.
    f.write_all_at(&img.head, 0).map_err(PartitionError::Write)?;
    f.write_all_at(&img.tail, img.tail_offset).map_err(PartitionError::Write)?;
    f.sync_all().map_err(PartitionError::Write)?;
    Ok(Written { disk: f, start: img.part_start, length: img.part_bytes })
}

/// The disk just partitioned, still open exclusively.
pub struct Written {
    disk: File,
    start: u64,
    length: u64,
}

/// Gets the kernel to show the new partition and returns it: BLKRRPART, and when that is refused or the kernel
/// found nothing (no GPT parser), BLKPG to add it.
pub async fn announce(w: Written, roots: &Roots, disk: &str, timeout: Duration) -> Result<Part, PartitionError> {
    // SAFETY: BLKRRPART takes no argument; the fd is an open block device.
    let rrpart = unsafe { blkrrpart(w.disk.as_raw_fd()) };
    if rrpart.is_ok() {
        if let Ok(p) = wait_partition(roots, disk, Duration::from_secs(1)).await {
            return Ok(p);
        }
    }
    match add_partition(&w.disk, w.start, w.length) {
        // EBUSY: the re-read did add it after all (just late).
        Ok(()) | Err(nix::errno::Errno::EBUSY) => wait_partition(roots, disk, timeout).await,
        Err(blkpg) => {
            Err(PartitionError::Reread { rrpart: rrpart.err().unwrap_or(nix::errno::Errno::UnknownErrno), blkpg })
        }
    }
}

/// Waits until the kernel lists partition 1 of `disk` and its device node exists.
pub async fn wait_partition(roots: &Roots, disk: &str, timeout: Duration) -> Result<Part, PartitionError> {
    let started = Instant::now();
    loop {
        let found = sysfs::scan(roots, &|n| n == disk)
            .into_iter()
            .flat_map(|d| d.partitions)
            .find(|p| p.number == 1 && p.node.exists());
        if let Some(p) = found {
            return Ok(p);
        }
        if started.elapsed() >= timeout {
            return Err(PartitionError::NoPartition(disk.to_string(), timeout.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
