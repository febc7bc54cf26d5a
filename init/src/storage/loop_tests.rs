//! Host tests as root against real block devices: loop devices backed by files in a temp dir (never a real
//! disk: discovery is limited to the test's own loop device), detached again even when a test fails. They run
//! the host's mke2fs/e2fsck and need `losetup` (util-linux). `cargo test -p keel-init -- --ignored root_loop_`.

use super::mount::{parse_options, unmount};
use super::probe::{self, Content, FsKind};
use super::state::{mount_state_with, StateChoice, StateMode};
use super::sysfs::Roots;
use super::tools::Tools;
use super::volume::{converge, Env, Phase, VolumeSpec, VolumeStatus};
use crate::reaper::Reaper;
use nix::mount::MsFlags;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One at a time: the reaper reaps any child of the test process, so no other test may run commands meanwhile.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A file-backed loop device with partition scanning, and a scratch dir for mount points and tool logs.
struct LoopDisk {
    dir: PathBuf,
    dev: String,
    name: String,
    rt: tokio::runtime::Runtime,
    reaper: Reaper,
}

impl LoopDisk {
    fn new(tag: &str, size: u64) -> LoopDisk {
        let dir = std::env::temp_dir().join(format!("keel-loop-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("disk.img");
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        let dev = run("losetup", &["-f", "--show", "-P", img.to_str().unwrap()]);
        assert!(dev.starts_with("/dev/loop"), "{dev}");
        let name = dev.trim_start_matches("/dev/").to_string();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let reaper = Reaper::default();
        let r = reaper.clone();
        rt.spawn(async move {
            loop {
                r.reap_all();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        LoopDisk { dir, dev, name, rt, reaper }
    }

    fn env(&self) -> Env {
        let name = self.name.clone();
        Env {
            roots: Roots::system(),
            mountinfo: "/proc/self/mountinfo".into(),
            tools: Tools {
                mke2fs: "/usr/sbin/mke2fs".into(),
                e2fsck: "/usr/sbin/e2fsck".into(),
                log_dir: self.dir.join("logs"),
            },
            keep: Arc::new(move |n| n == name),
        }
    }

    fn mnt(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn spec(&self, selector: &str, label: Option<&str>, wipe: bool) -> VolumeSpec {
        VolumeSpec {
            name: "test".into(),
            selector: selector.replace("DEV", &self.dev).parse().unwrap(),
            label: label.map(str::to_string),
            partlabel: "keel-test".into(),
            wipe,
            mount: self.mnt("mnt"),
            options: parse_options(&[], MsFlags::MS_NOSUID | MsFlags::MS_NODEV),
            over_tmpfs: false,
        }
    }

    fn converge(&self, spec: &VolumeSpec) -> VolumeStatus {
        let started = Instant::now();
        let s = self.rt.block_on(converge(&self.env(), spec, &self.reaper, Duration::ZERO, &mut |_| {}));
        eprintln!("converge {} → {} in {:?}", spec.selector, s.phase, started.elapsed());
        s
    }

    /// Every byte of the device, to prove nothing was written.
    fn bytes(&self) -> Vec<u8> {
        nix::unistd::sync();
        std::fs::read(&self.dev).unwrap()
    }

    fn content(&self, dev: &str) -> Content {
        let size = run("blockdev", &["--getsize64", dev]).parse().unwrap();
        probe::probe(Path::new(dev), size).unwrap()
    }

    /// Puts a file on the ext filesystem on `dev` (mounted just for that).
    fn put_file(&self, dev: &str, text: &str) {
        let m = self.mnt("setup");
        std::fs::create_dir_all(&m).unwrap();
        run("mount", &[dev, m.to_str().unwrap()]);
        std::fs::write(m.join("precious.txt"), text).unwrap();
        unmount(&m).unwrap();
    }

    fn file_intact(&self, text: &str) -> bool {
        std::fs::read_to_string(self.mnt("mnt").join("precious.txt")).ok().as_deref() == Some(text)
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for m in super::mount::parse_mountinfo(&mounts).iter().rev() {
            if m.target.starts_with(&self.dir) {
                let _ = unmount(&m.target);
            }
        }
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
#[ignore = "root: loop devices"]
fn root_loop_blank_disk_is_partitioned_formatted_mounted_and_found_again() {
    let _g = serial();
    let d = LoopDisk::new("blank", 64 << 20);
    let spec = d.spec("DEV", Some("keel-test"), false);
    let s = d.converge(&spec);
    assert_eq!(s.phase, Phase::Mounted);
    assert!(s.formatted);
    assert_eq!(s.device, Some(PathBuf::from(format!("{}p1", d.dev))));
    assert_eq!((s.fs.as_deref(), s.size), (Some("ext4"), Some(128_991 * 512)));
    assert!(s.free.unwrap() > 40 << 20, "{s:?}");
    // The kernel and sgdisk read the table we wrote.
    let verify = run("sgdisk", &["-v", &d.dev]);
    assert!(verify.contains("No problems found"), "{verify}");
    assert!(run("sgdisk", &["-i", "1", &d.dev]).contains("Partition name: 'keel-test'"));
    std::fs::write(d.mnt("mnt").join("precious.txt"), "kept").unwrap();

    // Idempotent: converging again leaves the mount alone.
    let again = d.converge(&spec);
    assert_eq!((again.phase, again.formatted), (Phase::Mounted, false));
    unmount(&d.mnt("mnt")).unwrap();
    assert!(matches!(d.content(&format!("{}p1", d.dev)), Content::Fs(f) if f.clean), "unmounted clean");

    // Found again by every selector that names it; never formatted again.
    for sel in ["DEV", "DEVp1", "partlabel:keel-test", "label:keel-test"] {
        let s = d.converge(&d.spec(sel, Some("keel-test"), false));
        assert_eq!((s.phase, s.formatted), (Phase::Mounted, false), "{sel}");
        assert!(d.file_intact("kept"), "{sel}");
        unmount(&d.mnt("mnt")).unwrap();
    }
}

#[test]
#[ignore = "root: loop devices"]
fn root_loop_a_dirty_filesystem_is_checked_before_it_is_mounted() {
    let _g = serial();
    let d = LoopDisk::new("dirty", 32 << 20);
    run("mke2fs", &["-q", "-t", "ext4", "-L", "keel-test", &d.dev]);
    d.put_file(&d.dev, "kept");
    // Mark it "not cleanly unmounted" (s_state without EXT4_VALID_FS), as a power cut would; debugfs keeps the
    // superblock checksum right.
    run("debugfs", &["-w", "-R", "ssv state 0", &d.dev]);
    assert!(matches!(d.content(&d.dev), Content::Fs(f) if !f.clean));
    let s = d.converge(&d.spec("DEV", Some("keel-test"), false));
    assert_eq!((s.phase, s.formatted), (Phase::Mounted, false));
    assert!(d.file_intact("kept"));
    assert!(std::fs::read_to_string(d.dir.join("logs/e2fsck.log")).is_ok(), "e2fsck ran");
    unmount(&d.mnt("mnt")).unwrap();
    assert!(matches!(d.content(&d.dev), Content::Fs(f) if f.clean), "e2fsck marked it clean");
}

/// The safety promise on real devices: a disk holding data is left byte-for-byte untouched by every volume
/// config that does not consent to wiping it, and a filesystem that is already right is mounted, not remade.
#[test]
#[ignore = "root: loop devices"]
fn root_loop_data_survives_every_plan_that_does_not_say_wipe() {
    let _g = serial();
    let d = LoopDisk::new("survive", 32 << 20);

    // 1. An ext4 filesystem labelled "precious" with a file on it.
    run("mke2fs", &["-q", "-t", "ext4", "-L", "precious", &d.dev]);
    d.put_file(&d.dev, "precious data");
    let before = d.bytes();
    for (sel, label, wipe) in [
        ("DEV", Some("other"), false),
        ("DEV", Some("other"), true),
        ("blank", Some("precious"), true),
        ("blank", None, true),
        ("partlabel:precious", Some("precious"), true),
        ("label:nothing", Some("nothing"), true),
    ] {
        let s = d.converge(&d.spec(sel, label, wipe));
        assert!(matches!(s.phase, Phase::Blocked(_) | Phase::Waiting(_)), "{sel} {label:?} {wipe}: {:?}", s.phase);
        assert!(d.bytes() == before, "{sel} {label:?} wipe={wipe} wrote to the disk");
    }
    // Right as it is (by label, or no label asked for): mounted, never reformatted, even with wipe = true.
    for (sel, label, wipe) in [("DEV", Some("precious"), true), ("DEV", None, false), ("label:precious", None, true)] {
        let s = d.converge(&d.spec(sel, label, wipe));
        assert_eq!((s.phase, s.formatted), (Phase::Mounted, false), "{sel} {label:?} {wipe}");
        assert!(d.file_intact("precious data"), "{sel} {label:?} {wipe}");
        unmount(&d.mnt("mnt")).unwrap();
    }

    // 2. An msdos partition table with that filesystem in its partition.
    let zero = vec![0u8; 32 << 20];
    std::fs::write(&d.dev, &zero).unwrap();
    let mut sfdisk = Command::new("sfdisk").args(["-q", &d.dev]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(sfdisk.stdin.as_mut().unwrap(), b"2048,,83\n").unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let part = format!("{}p1", d.dev);
    if !Path::new(&part).exists() {
        // A host kernel without the msdos parser: tell it about the partition directly.
        let disk = std::fs::File::open(&d.dev).unwrap();
        super::blockdev::add_partition(&disk, 1 << 20, (32 << 20) - (1 << 20)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !Path::new(&part).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    run("mke2fs", &["-q", "-t", "ext4", "-L", "precious", &part]);
    d.put_file(&part, "precious data");
    let before = d.bytes();
    for (sel, label, wipe) in [("DEV", Some("data"), true), ("DEV", Some("data"), false), ("blank", None, true)] {
        let s = d.converge(&d.spec(sel, label, wipe));
        assert!(matches!(s.phase, Phase::Blocked(_) | Phase::Waiting(_)), "{sel}: {:?}", s.phase);
        assert!(d.bytes() == before, "{sel} {label:?} wipe={wipe} wrote to the disk");
    }

    // 3. Swap labelled "data": foreign to a volume labelled anything else, wipe or not.
    std::fs::write(&d.dev, &zero).unwrap();
    run("blockdev", &["--rereadpt", &d.dev]);
    run("mkswap", &["-q", "-L", "data", &d.dev]);
    let before = d.bytes();
    for (label, wipe) in [(Some("other"), true), (None, true), (Some("data"), false)] {
        let s = d.converge(&d.spec("DEV", label, wipe));
        assert!(matches!(s.phase, Phase::Blocked(_)), "{label:?} {wipe}: {:?}", s.phase);
        assert!(d.bytes() == before, "{label:?} wipe={wipe} wrote to the disk");
    }
    // The one consented case: the volume's own label, the wrong kind, and wipe = true.
    let s = d.converge(&d.spec("DEV", Some("data"), true));
    assert_eq!((s.phase, s.formatted), (Phase::Mounted, true));
    unmount(&d.mnt("mnt")).unwrap();
    assert!(
        matches!(d.content(&d.dev), Content::Fs(f) if f.kind == FsKind::Ext4 && f.label.as_deref() == Some("data"))
    );

    // 4. Unrecognised bytes in the middle of the first 2 MiB.
    std::fs::write(&d.dev, &zero).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&d.dev).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"someone's data", 1536 << 10).unwrap();
    drop(f);
    let before = d.bytes();
    for sel in ["DEV", "blank"] {
        let s = d.converge(&d.spec(sel, None, true));
        assert!(matches!(s.phase, Phase::Blocked(_) | Phase::Waiting(_)), "{sel}: {:?}", s.phase);
        assert!(d.bytes() == before, "{sel} wrote to the disk");
    }
}

#[test]
#[ignore = "root: loop devices"]
fn root_loop_state_volume_is_made_once_then_found_by_its_label() {
    let _g = serial();
    let d = LoopDisk::new("state", 64 << 20);
    let var = d.mnt("var");
    std::fs::create_dir_all(&var).unwrap();
    run("mount", &["-t", "tmpfs", "tmpfs", var.to_str().unwrap()]);
    let named = StateChoice::Select(d.dev.parse().unwrap());
    let first = d.rt.block_on(mount_state_with(&d.env(), &named, &var, &d.reaper));
    assert_eq!(first.mode, StateMode::Volume, "{first:?}");
    assert!(first.volume.as_ref().unwrap().formatted);
    std::fs::create_dir_all(var.join("lib/keel/config")).unwrap();
    std::fs::write(var.join("lib/keel/config/current.toml"), "generation = 2\n").unwrap();
    unmount(&var).unwrap();

    // Next boot: nothing named, found by its label, mounted over the tmpfs, not formatted.
    let second = d.rt.block_on(mount_state_with(&d.env(), &StateChoice::Auto, &var, &d.reaper));
    assert_eq!(second.mode, StateMode::Volume, "{second:?}");
    assert!(!second.volume.as_ref().unwrap().formatted);
    assert_eq!(std::fs::read_to_string(var.join("lib/keel/config/current.toml")).unwrap(), "generation = 2\n");
    unmount(&var).unwrap();

    let off = d.rt.block_on(mount_state_with(&d.env(), &StateChoice::Disabled, &var, &d.reaper));
    assert_eq!((off.mode, off.reason.as_deref()), (StateMode::Tmpfs, Some("disabled by keel.state=none")));
}
