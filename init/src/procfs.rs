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
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// This process's resident set size in KiB (0 when /proc is unreadable).
pub fn self_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|s| vm_rss_kib(&s)).unwrap_or(0)
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
    }

    #[test]
    fn this_process_is_userspace_and_has_rss() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert_eq!(is_userspace(&stat), Some(true));
        assert!(self_rss_kib() > 0);
    }
}
