//! A reproducible newc ("070701") cpio writer: entries in the order given, inode numbers counted from 1, owner
//! root, one fixed mtime. The same entries and file contents always give the same bytes.

use crate::manifest::{Entry, Kind};
use std::io::{self, Write};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;

pub struct Writer<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    mtime: u32,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, mtime: u32) -> Self {
        Writer { out, written: 0, next_ino: 1, mtime }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: u32, rdev: (u32, u32)) -> io::Result<()> {
        let ino = if name == "TRAILER!!!" { 0 } else { self.next_ino };
        self.next_ino += 1;
        let fields = [ino, mode, 0, 0, nlink, self.mtime, size, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        let mut h = String::from("070701");
        for f in fields {
            h.push_str(&format!("{f:08x}"));
        }
        self.put(h.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    /// Writes one entry; `data` is the file's content (or the symlink target).
    pub fn entry(&mut self, e: &Entry, data: &[u8]) -> io::Result<()> {
        let name = e.path.trim_start_matches('/');
        let size = u32::try_from(data.len()).map_err(|_| io::Error::other(format!("{} is over 4 GiB", e.path)))?;
        match &e.kind {
            Kind::Dir => self.header(name, S_IFDIR | e.mode, 2, 0, (0, 0)),
            Kind::Node { block, major, minor } => {
                let t = if *block { S_IFBLK } else { S_IFCHR };
                self.header(name, t | e.mode, 1, 0, (*major, *minor))
            }
            Kind::File { .. } | Kind::Symlink { .. } => {
                let t = if matches!(e.kind, Kind::Symlink { .. }) { S_IFLNK } else { S_IFREG };
                self.header(name, t | e.mode, 1, size, (0, 0))?;
                self.put(data)?;
                self.pad()
            }
        }
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", 0, 1, 0, (0, 0))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let entries = [
            Entry { path: "/dev".into(), mode: 0o755, kind: Kind::Dir },
            Entry { path: "/dev/console".into(), mode: 0o600, kind: Kind::Node { block: false, major: 5, minor: 1 } },
            Entry { path: "/init".into(), mode: 0o755, kind: Kind::File { source: "x".into() } },
        ];
        let mut w = Writer::new(Vec::new(), 0);
        w.entry(&entries[0], b"").unwrap();
        w.entry(&entries[1], b"").unwrap();
        w.entry(&entries[2], b"hello").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn writes_newc_headers_and_pads_to_four() {
        let out = sample();
        assert_eq!(&out[..6], b"070701");
        assert_eq!(out.len() % 4, 0);
        // ino 1, directory mode 040755
        assert_eq!(&out[6..22], b"00000001000041ed");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("dev/console\0"));
        // /dev/console: char device 5:1 in rdevmajor/rdevminor
        let fields = [2u32, 0o020600, 0, 0, 1, 0, 0, 0, 0, 5, 1, 12, 0];
        let header: String = fields.iter().map(|f| format!("{f:08x}")).collect();
        assert!(text.contains(&format!("070701{header}dev/console\0")), "char node header not found");
        assert!(text.contains("init\0"));
        assert!(text.contains("hello"));
        assert!(text.ends_with("TRAILER!!!\0\0\0\0"));
    }

    #[test]
    fn same_input_same_bytes() {
        assert_eq!(sample(), sample());
    }
}
