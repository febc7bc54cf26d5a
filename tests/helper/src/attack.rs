//! `attack`: what a service running as root without capabilities might try against the node. Each attempt prints
//! one line, `testhelper: attack NAME refused error="…"` or `testhelper: attack NAME SUCCEEDED …`; the exit code
//! is 0 only if every attempt was refused. The node's tests check the node is unchanged afterwards.

use std::io::{Read, Write};
use std::process::ExitCode;

/// The outcome of one attempt: Ok(what it achieved) is a success (bad), Err(error) a refusal (good).
type Attempt = Result<String, String>;

/// One named attempt.
type Attack = (&'static str, fn() -> Attempt);

fn io<T>(r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

fn read_file(path: &str) -> Attempt {
    let mut f = io(std::fs::File::open(path))?;
    let mut buf = Vec::new();
    io(f.read_to_end(&mut buf))?;
    Ok(format!("read {} bytes of {path}", buf.len()))
}

fn write_file(path: &str, content: &[u8]) -> Attempt {
    let mut f = io(std::fs::OpenOptions::new().write(true).truncate(true).create(true).open(path))?;
    io(f.write_all(content))?;
    Ok(format!("wrote {path}"))
}

/// The node's disks by their kernel names (sysfs is readable), tried at /dev and as a node made here.
fn block_devices() -> Attempt {
    let names: Vec<String> = std::fs::read_dir("/sys/block")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    let mut errors = Vec::new();
    let mut disks: Vec<String> =
        names.into_iter().filter(|n| !n.starts_with("loop") && !n.starts_with("ram")).collect();
    if disks.is_empty() {
        disks.push("vda".into());
    }
    for name in &disks {
        let path = format!("/dev/{name}");
        match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(_) => return Ok(format!("opened {path} for writing")),
            Err(e) => errors.push(format!("{path}: {e}")),
        }
        // Make the node ourselves, with the device number sysfs tells.
        let Ok(dev) = std::fs::read_to_string(format!("/sys/block/{name}/dev")) else { continue };
        let Some((major, minor)) = dev.trim().split_once(':') else { continue };
        let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else { continue };
        let node = format!("/tmp/attack-{name}");
        let made = nix::sys::stat::mknod(
            node.as_str(),
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(major, minor),
        );
        match made.map_err(|e| e.to_string()).and_then(|()| io(std::fs::OpenOptions::new().write(true).open(&node))) {
            Ok(_) => return Ok(format!("made and opened {node} ({major}:{minor}) for writing")),
            Err(e) => errors.push(format!("mknod {node}: {e}")),
        }
    }
    Err(errors.join("; "))
}

fn kill_init() -> Attempt {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), nix::sys::signal::Signal::SIGTERM)
        .map(|()| "sent SIGTERM to pid 1".to_string())
        .map_err(|e| e.to_string())
}

/// Out of its own cgroup: into the root group, or into a new group of its own making.
fn cgroup_escape() -> Attempt {
    let pid = std::process::id().to_string();
    let root = write_file("/sys/fs/cgroup/cgroup.procs", pid.as_bytes());
    if root.is_ok() {
        return root.map(|_| "moved itself into the root cgroup".to_string());
    }
    let made = io(std::fs::create_dir("/sys/fs/cgroup/attack"));
    match made {
        Ok(()) => Ok("made /sys/fs/cgroup/attack".to_string()),
        Err(e) => Err(format!("cgroup.procs: {}; mkdir: {e}", root.unwrap_err())),
    }
}

fn mount_tmpfs() -> Attempt {
    nix::mount::mount(Some("tmpfs"), "/tmp", Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>)
        .map(|()| "mounted a tmpfs".to_string())
        .map_err(|e| e.to_string())
}

pub fn run() -> ExitCode {
    let attempts: [Attack; 8] = [
        ("read-api-key", || read_file("/var/lib/keel/api/key.pem")),
        ("read-api-key-via-proc", || read_file("/proc/1/root/var/lib/keel/api/key.pem")),
        ("write-highest-generation", || write_file("/var/lib/keel/config/highest-generation", b"999999\n")),
        ("write-block-device", block_devices),
        ("kill-pid1", kill_init),
        ("write-hostname", || write_file("/proc/sys/kernel/hostname", b"pwned\n")),
        ("escape-cgroup", cgroup_escape),
        ("mount", mount_tmpfs),
    ];
    let mut succeeded = 0;
    for (name, attempt) in attempts {
        match attempt() {
            Ok(what) => {
                succeeded += 1;
                println!("testhelper: attack {name} SUCCEEDED what={what:?}");
            }
            Err(error) => println!("testhelper: attack {name} refused error={error:?}"),
        }
    }
    println!("testhelper: attack done succeeded={succeeded}");
    if succeeded == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
