//! Test support: fake `/sys/block` and `/dev` trees in a temp dir, with regular files standing in for devices.

use super::sysfs::Roots;
use std::fs;
use std::path::PathBuf;

pub struct FakeTree {
    pub root: PathBuf,
}

impl FakeTree {
    pub fn new(tag: &str) -> FakeTree {
        let root = std::env::temp_dir().join(format!("keel-sysfs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("sys/block")).unwrap();
        fs::create_dir_all(root.join("dev")).unwrap();
        FakeTree { root }
    }

    pub fn roots(&self) -> Roots {
        Roots { sys_block: self.root.join("sys/block"), dev: self.root.join("dev") }
    }

    pub fn file(&self, rel: &str, text: &str) {
        self.bytes(rel, text.as_bytes());
    }

    pub fn bytes(&self, rel: &str, bytes: &[u8]) {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }

    /// A disk `name` of `size` bytes: its sysfs entry and a /dev file holding `content` at offset 0.
    pub fn disk(&self, name: &str, size: u64, content: &[u8]) {
        self.file(&format!("sys/block/{name}/size"), &format!("{}\n", size / 512));
        let dev = self.root.join("dev").join(name);
        let f = fs::File::create(&dev).unwrap();
        f.set_len(size).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, content, 0).unwrap();
    }

    /// Partition `number` of `disk`, `size` bytes at `start`, with its own /dev file holding `content`.
    pub fn part(&self, disk: &str, number: u32, start: u64, size: u64, content: &[u8]) {
        let name = format!("{disk}{number}");
        let dir = format!("sys/block/{disk}/{name}");
        self.file(&format!("{dir}/partition"), &format!("{number}\n"));
        self.file(&format!("{dir}/start"), &format!("{}\n", start / 512));
        self.file(&format!("{dir}/size"), &format!("{}\n", size / 512));
        let f = fs::File::create(self.root.join("dev").join(&name)).unwrap();
        f.set_len(size).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, content, 0).unwrap();
    }
}

impl Drop for FakeTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The first 2 KiB of a clean ext4 filesystem labelled `label` (only what the probe reads).
pub fn ext4(label: &str, clean: bool) -> Vec<u8> {
    let mut b = vec![0u8; 2048];
    b[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
    b[1024 + 58..1024 + 60].copy_from_slice(&(clean as u16).to_le_bytes());
    b[1024 + 92..1024 + 96].copy_from_slice(&0x4u32.to_le_bytes());
    b[1024 + 96..1024 + 100].copy_from_slice(&0x2c2u32.to_le_bytes());
    b[1024 + 120..1024 + 120 + label.len()].copy_from_slice(label.as_bytes());
    b
}

/// The head of a disk with a Keel GPT whose one partition is named `name`.
pub fn gpt(size: u64, name: &str) -> Vec<u8> {
    let layout = super::gpt::Layout {
        sector: 512,
        disk_bytes: size,
        disk_guid: super::gpt::Guid([1; 16]),
        part_guid: super::gpt::Guid([2; 16]),
        type_guid: super::gpt::KEEL_TYPE,
        name: name.into(),
    };
    super::gpt::build(&layout).unwrap().head
}
