//! Services' isolation against the real kernel, as root (see [`super::root_tests`] for how these run): the
//! service's own mount namespace (private /dev, read-only /sys, /proc/sys and cgroup tree, granted devices and
//! paths), the seccomp filter, and a host mount table left as it was. Observed from outside, through
//! /proc/<pid>/mountinfo, /proc/<pid>/root and /proc/<pid>/status: nothing here writes to the host.

use super::root_harness::{in_child_process, inner, proc_status, svc, wait_exec, Harness};
use super::{State, Timing};
use std::collections::BTreeMap;

#[test]
fn root_services_get_their_own_mount_namespace_and_seccomp_filter() {
    in_child_process("root_isolation_tests::inner_isolation");
}

/// Mount point -> (filesystem type, per-mount options) from /proc/<pid>/mountinfo (the last mount wins).
fn mounts(pid: &str) -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((f[4].to_string(), (f[sep + 1].to_string(), f[5].to_string())))
        })
        .collect()
}

/// How long [`super::sandbox::Sandbox::enter`] takes, in µs, each in a forked child (sorted).
fn setup_costs(runs: usize) -> Vec<u64> {
    let sandbox = super::sandbox::Sandbox::new(&[], &[]).unwrap();
    let now = || {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime into a local.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
        t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
    };
    let mut costs: Vec<u64> = (0..runs)
        .map(|_| {
            let mut fds = [0i32; 2];
            // SAFETY: pipe into a local array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: the child makes only raw system calls (what Sandbox::enter is built for) and _exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let t0 = now();
                let ok = sandbox.enter().is_ok();
                let took = if ok { now() - t0 } else { u64::MAX };
                // SAFETY: write of a local, then _exit without running anything of the parent's.
                unsafe {
                    libc::write(fds[1], (&took as *const u64).cast(), 8);
                    libc::_exit(0);
                }
            }
            let mut took = 0u64;
            // SAFETY: read into a local; wait for our own child.
            unsafe {
                libc::close(fds[1]);
                libc::read(fds[0], (&mut took as *mut u64).cast(), 8);
                libc::close(fds[0]);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            assert_ne!(took, u64::MAX, "Sandbox::enter failed in the child");
            took
        })
        .collect();
    costs.sort_unstable();
    costs
}

#[test]
#[ignore = "the body of root_services_get_their_own_mount_namespace_and_seccomp_filter, in its own process"]
fn inner_isolation() {
    if !inner() {
        return;
    }
    let host_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut h = Harness::new(Timing::default());
    let mut jail = svc("jail", "/bin/sleep", &["1000"]);
    jail.devices = vec!["/dev/kmsg".into()];
    jail.paths = vec!["/proc/sys/kernel/domainname".into()];
    h.apply(1, vec![jail]);
    let pid = h.service("jail", State::Running).pid.unwrap();
    wait_exec(pid, "sleep");
    let started = std::time::Instant::now();
    let m = mounts(&pid.to_string());
    let ro = |path: &str| m.get(path).is_some_and(|(_, o)| o.split(',').next() == Some("ro"));
    assert_eq!(m["/dev"].0, "tmpfs", "{m:#?}");
    assert!(ro("/dev") && ro("/sys") && ro("/proc/sys"), "{m:#?}");
    if std::path::Path::new("/proc/sysrq-trigger").exists() {
        assert!(ro("/proc/sysrq-trigger"), "{m:#?}");
    }
    if m.contains_key("/sys/fs/cgroup") {
        assert!(ro("/sys/fs/cgroup"), "the cgroup tree is read-only: {m:#?}");
    }
    assert_eq!(m["/dev/shm"].0, "tmpfs");
    assert!(!ro("/proc/sys/kernel/domainname"), "a granted path is writable: {m:#?}");
    // The private /dev: the basic nodes, the granted one, nothing else (no disk).
    let root = format!("/proc/{pid}/root/dev");
    let mut names: Vec<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let want = [
        "fd", "full", "kmsg", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom",
        "zero",
    ];
    assert_eq!(names, want);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(format!("{root}/null")).unwrap().file_type().is_char_device());
    assert!(std::fs::metadata(format!("{root}/kmsg")).unwrap().file_type().is_char_device());
    // The filter is on, installed once.
    assert_eq!(proc_status(pid, "Seccomp"), "2");
    assert_eq!(proc_status(pid, "Seccomp_filters"), "1");
    eprintln!("checked the namespace of pid {pid} in {:?}", started.elapsed());
    h.stop_all();
    let costs = setup_costs(20);
    eprintln!(
        "sandbox: setting up a service's namespace took {} µs (median of {}, min {} µs)",
        costs[costs.len() / 2],
        costs.len(),
        costs[0]
    );
    // Nothing of it leaked into the host's mount table.
    assert_eq!(std::fs::read_to_string("/proc/self/mountinfo").unwrap(), host_before);
}
