//! Small readers of /proc used by the boot and shutdown paths. Parsing is pure and unit-tested.

/// `PF_KTHREAD` in /proc/<pid>/stat's flags: a kernel thread, which signals do not stop.
const PF_KTHREAD: u64 = 0x0020_0000;

/// From the text of /proc/<pid>/stat: is this a user-space process (not a kernel thread)?
pub fn is_userspace(stat: &str) -> Option<bool> {
    // comm may hold spaces and parentheses: the fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let flags: u64 = rest.split_whitespace().nth(6)?.parse().ok()?;
    Some(flags & PF_KTHREAD == 0)
}

/// Pids of every user-space process except PID 1 itself.
pub fn userspace_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != 1)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| is_userspace(&s)).unwrap_or(false)
        })
        .collect()
}

/// `VmRSS` in KiB from the text of /proc/<pid>/status.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    status_field(status, "VmRSS:")
}

/// The number after `name` (`VmRSS:`, `Threads:`) in the text of /proc/<pid>/status.
fn status_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// This process's resident set size in KiB (0 when /proc is unreadable).
pub fn self_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|s| vm_rss_kib(&s)).unwrap_or(0)
}

/// Where PID 1's resident memory is, in KiB, from /proc/self/smaps: its own binary (code, read-only data,
/// writable data: relocated pointers, statics), the brk heap, the main thread's stack, all other anonymous memory
/// (musl's malloc maps its groups with mmap, and the other threads' stacks are mappings too: the kernel merges
/// adjacent ones, so smaps cannot tell them apart), and the rest (vdso).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Memory {
    pub rss: u64,
    pub text: u64,
    pub rodata: u64,
    pub data: u64,
    pub heap: u64,
    pub stack: u64,
    pub anon: u64,
    pub other: u64,
    /// Threads, the main one included (`Threads:` of /proc/self/status).
    pub threads: u64,
}

/// One mapping's header line: `start-end perms offset dev inode [path]`: its permissions and path.
fn mapping(line: &str) -> Option<(&str, &str)> {
    let mut f = line.split_whitespace();
    let (start, end) = f.next()?.split_once('-')?;
    u64::from_str_radix(start, 16).ok()?;
    u64::from_str_radix(end, 16).ok()?;
    let perms = f.next()?;
    let path = f.nth(3).unwrap_or("");
    Some((perms, path))
}

/// Sums the `Rss:` of every mapping of an smaps text by kind. `exe` is the binary's path as smaps names it.
pub fn memory(smaps: &str, exe: &str) -> Memory {
    let mut m = Memory::default();
    let mut kind: Option<fn(&mut Memory) -> &mut u64> = None;
    for line in smaps.lines() {
        if let Some((perms, path)) = mapping(line) {
            kind = Some(match (path, perms.as_bytes()) {
                (p, [_, _, b'x', ..]) if p == exe => |m| &mut m.text,
                (p, [_, b'w', ..]) if p == exe => |m| &mut m.data,
                (p, _) if p == exe => |m| &mut m.rodata,
                ("[heap]", _) => |m| &mut m.heap,
                ("[stack]", _) => |m| &mut m.stack,
                ("", _) => |m| &mut m.anon,
                _ => |m| &mut m.other,
            });
        } else if let Some(v) = line.strip_prefix("Rss:") {
            let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            if let Some(k) = kind {
                *k(&mut m) += kib;
                m.rss += kib;
            }
        }
    }
    m
}

/// Logs where this process's resident memory is, as `boot.memory at=<at> rss_kib= text_kib= …` at `level`
/// (nothing is read when that level is off): what `make bench` prints. A read of procfs, no disk; it walks the
/// page tables (~0.2 ms natively, ~5 ms under QEMU TCG), so the boot logs it once at converged, and at ready and
/// network ready only with `keel.log=debug`.
pub fn log_memory(at: &str, level: log::Level) {
    if !log::log_enabled!(level) {
        return;
    }
    let exe = std::fs::read_link("/proc/self/exe").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut m = memory(&smaps, &exe);
    m.threads =
        std::fs::read_to_string("/proc/self/status").ok().and_then(|s| status_field(&s, "Threads:")).unwrap_or(0);
    log::log!(
        level,
        "boot.memory at={at} rss_kib={} text_kib={} rodata_kib={} data_kib={} heap_kib={} stack_kib={} \
         anon_kib={} other_kib={} threads={}",
        m.rss,
        m.text,
        m.rodata,
        m.data,
        m.heap,
        m.stack,
        m.anon,
        m.other,
        m.threads
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_kernel_threads_from_processes() {
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0";
        let process = "77 (my (odd) name) S 1 77 77 0 -1 4194560 91 0 0 0 0 0 0 0 20 0 1 0 120 1 1";
        assert_eq!(is_userspace(kthread), Some(false));
        assert_eq!(is_userspace(process), Some(true));
        assert_eq!(is_userspace("garbage"), None);
    }

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tinit\nVmPeak:\t 1000 kB\nVmRSS:\t    1234 kB\nThreads:\t1\n";
        assert_eq!(vm_rss_kib(status), Some(1234));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
        assert_eq!(status_field("Name:\tx\nThreads:\t7\n", "Threads:"), Some(7));
    }

    #[test]
    fn this_process_is_userspace_and_has_rss() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert_eq!(is_userspace(&stat), Some(true));
        assert!(self_rss_kib() > 0);
    }

    #[test]
    fn sorts_resident_memory_by_kind() {
        let smaps = "\
00400000-00500000 r--p 00000000 00:02 10   /init
Rss:                 100 kB
00500000-00900000 r-xp 00100000 00:02 10   /init
Rss:                2000 kB
00900000-00a00000 rw-p 00500000 00:02 10   /init
Rss:                  40 kB
00a00000-00b00000 rw-p 00000000 00:00 0    [heap]
Rss:                 300 kB
7f0000000000-7f0000001000 ---p 00000000 00:00 0
Rss:                   0 kB
7f0000001000-7f0000201000 rw-p 00000000 00:00 0
Rss:                  16 kB
7f0000300000-7f0000301000 ---p 00000000 00:00 0
Rss:                   0 kB
7f0000301000-7f0000501000 rw-p 00000000 00:00 0
Rss:                  12 kB
7f0000600000-7f0000700000 rw-p 00000000 00:00 0
Rss:                 500 kB
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0    [stack]
Rss:                  24 kB
7ffc00100000-7ffc00102000 r-xp 00000000 00:00 0    [vdso]
Rss:                   4 kB
";
        let m = memory(smaps, "/init");
        let want = Memory {
            rss: 2996,
            text: 2000,
            rodata: 100,
            data: 40,
            heap: 300,
            stack: 24,
            anon: 528,
            other: 4,
            threads: 0,
        };
        assert_eq!(m, want);
    }

    #[test]
    fn this_process_memory_adds_up_to_its_rss() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let m = memory(&std::fs::read_to_string("/proc/self/smaps").unwrap(), &exe.to_string_lossy());
        assert!(m.text > 0, "{m:?}");
        assert!(m.rss >= m.text + m.heap + m.anon, "{m:?}");
    }
}
