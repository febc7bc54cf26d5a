//! The default seccomp filter every service runs under: classic BPF, built here (no library), computed before
//! the fork and installed last, after no_new_privs, by [`install`] (one raw `seccomp(2)` call).
//!
//! Refused with `EPERM` whatever capabilities the service holds (the list is what a workload never needs and
//! what would turn the node against itself):
//! - the mount table: `mount`, `umount2`, `pivot_root`, `fsopen`, `fsconfig`, `fsmount`, `fspick`,
//!   `move_mount`, `open_tree`, `mount_setattr`; namespaces: `unshare`, `setns`, and `clone` with any
//!   `CLONE_NEW*` flag (`clone3` answers `ENOSYS`, so C libraries fall back to `clone`, whose flags are visible);
//! - the kernel itself: `kexec_load`, `kexec_file_load`, `init_module`, `finit_module`, `delete_module`, `bpf`,
//!   `perf_event_open`, `reboot`, `swapon`, `swapoff`, `acct`, `quotactl`, `syslog`, `iopl`, `ioperm`,
//!   `userfaultfd`, `uselib`;
//! - other processes: `ptrace`, `process_vm_readv`, `process_vm_writev`; signals to PID 1 (`kill`, `tkill`,
//!   `tgkill`, `rt_sigqueueinfo`, `rt_tgsigqueueinfo`, `pidfd_open` with pid 1);
//! - keys and handles: `keyctl`, `add_key`, `request_key`, `open_by_handle_at`;
//! - any other ABI than x86_64 (i386 `int 0x80`, x32): the numbers would mean other calls.
//!
//! An image service's filter ([`image_program`]) also refuses `chroot`: its root sits below the host's
//! initramfs root (which pivot_root cannot move), so chroot into a subdirectory then `..` would climb out of it.
//! Validation refuses the capabilities for that too; this is defense in depth.
//!
//! Everything else is allowed: this is a deny list on top of the capability, uid and mount-namespace limits.

/// `AUDIT_ARCH_X86_64`: EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// struct seccomp_data: nr (u32), arch (u32), instruction_pointer (u64), args[6] (u64 each).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const RET_KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// Every `CLONE_NEW*` flag `clone` takes (CLONE_NEWTIME only exists for clone3/unshare).
const CLONE_NEW_ANY: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

/// System calls refused outright (see the module docs).
pub const DENIED: [(&str, libc::c_long); 36] = [
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("syslog", libc::SYS_syslog),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("uselib", libc::SYS_uselib),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
];

/// Refused as well for an image service (see the module docs).
pub const DENIED_IN_IMAGE: [(&str, libc::c_long); 1] = [("chroot", libc::SYS_chroot)];

/// Calls refused when their first argument (a pid or thread-group id) is 1.
pub const DENIED_FOR_PID1: [(&str, libc::c_long); 6] = [
    ("kill", libc::SYS_kill),
    ("tkill", libc::SYS_tkill),
    ("tgkill", libc::SYS_tgkill),
    ("rt_sigqueueinfo", libc::SYS_rt_sigqueueinfo),
    ("rt_tgsigqueueinfo", libc::SYS_rt_tgsigqueueinfo),
    ("pidfd_open", libc::SYS_pidfd_open),
];

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter every plain service runs under.
pub fn program() -> Vec<libc::sock_filter> {
    program_denying(&[])
}

/// The filter of an image service: [`program`] plus [`DENIED_IN_IMAGE`].
pub fn image_program() -> Vec<libc::sock_filter> {
    program_denying(&DENIED_IN_IMAGE)
}

/// The filter program, refusing `extra` too. Each test is a short forward jump, so no offset ever exceeds a u8.
fn program_denying(extra: &[(&str, libc::c_long)]) -> Vec<libc::sock_filter> {
    let mut p = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, RET_KILL),
        stmt(BPF_LD_W_ABS, OFF_NR),
        jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, RET_EPERM),
    ];
    for &(_, nr) in DENIED.iter().chain(extra) {
        p.push(jump(BPF_JEQ_K, nr as u32, 0, 1));
        p.push(stmt(BPF_RET_K, RET_EPERM));
    }
    p.push(jump(BPF_JEQ_K, libc::SYS_clone3 as u32, 0, 1));
    p.push(stmt(BPF_RET_K, RET_ENOSYS));
    // The matched call decides here: refused, or allowed at once (the accumulator no longer holds the number).
    let mut arg_test = |nr: libc::c_long, test: libc::sock_filter| {
        p.push(jump(BPF_JEQ_K, nr as u32, 0, 4));
        p.push(stmt(BPF_LD_W_ABS, off_arg_lo(0)));
        p.push(test);
        p.push(stmt(BPF_RET_K, RET_EPERM));
        p.push(stmt(BPF_RET_K, RET_ALLOW));
    };
    for (_, nr) in DENIED_FOR_PID1 {
        arg_test(nr, jump(BPF_JEQ_K, 1, 0, 1));
    }
    arg_test(libc::SYS_clone, jump(BPF_JSET_K, CLONE_NEW_ANY, 0, 1));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    p
}

/// Installs `filter` on the calling thread. Async-signal-safe: one system call on memory the caller owns.
/// Needs no_new_privs (or CAP_SYS_ADMIN).
pub fn install(filter: &[libc::sock_filter]) -> std::io::Result<()> {
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads `prog` and the filter it points to, both alive for the call.
    let r = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0u32, &prog as *const libc::sock_fprog)
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter of the filter over a fake `seccomp_data`, so its decisions are tested without a kernel.
    fn run(p: &[libc::sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
        let load = |off: u32| match off {
            OFF_NR => nr,
            OFF_ARCH => arch,
            16 => arg0 as u32,
            20 => (arg0 >> 32) as u32,
            _ => 0,
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => acc = load(i.k),
                BPF_RET_K => return i.k,
                BPF_JEQ_K | BPF_JGE_K | BPF_JSET_K => {
                    let hit = match i.code {
                        BPF_JEQ_K => acc == i.k,
                        BPF_JGE_K => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    const A: u32 = AUDIT_ARCH_X86_64;

    #[test]
    fn refuses_the_listed_calls_and_allows_the_rest() {
        let p = program();
        assert!(p.len() < u16::MAX as usize);
        for (name, nr) in DENIED {
            assert_eq!(run(&p, A, nr as u32, 0), RET_EPERM, "{name}");
        }
        for nr in [libc::SYS_read, libc::SYS_write, libc::SYS_openat, libc::SYS_execve, libc::SYS_exit_group] {
            assert_eq!(run(&p, A, nr as u32, 0), RET_ALLOW, "{nr}");
        }
        assert_eq!(run(&p, A, libc::SYS_clone3 as u32, 0), RET_ENOSYS);
        assert_eq!(run(&p, 0x4000_0003, libc::SYS_read as u32, 0), RET_KILL, "i386 ABI");
        assert_eq!(run(&p, A, X32_SYSCALL_BIT | libc::SYS_read as u32, 0), RET_EPERM, "x32 ABI");
        assert_eq!(run(&p, A, libc::SYS_chroot as u32, 0), RET_ALLOW, "a plain service granted CAP_SYS_CHROOT");
    }

    #[test]
    fn an_image_service_cannot_chroot_nor_anything_a_plain_service_cannot() {
        let p = image_program();
        for (name, nr) in DENIED.iter().chain(&DENIED_IN_IMAGE) {
            assert_eq!(run(&p, A, *nr as u32, 0), RET_EPERM, "{name}");
        }
        assert_eq!(run(&p, A, libc::SYS_chdir as u32, 0), RET_ALLOW);
        assert_eq!(run(&p, A, libc::SYS_kill as u32, 1), RET_EPERM, "kill(1)");
    }

    #[test]
    fn signals_to_pid_1_and_new_namespaces_are_refused() {
        let p = program();
        for (name, nr) in DENIED_FOR_PID1 {
            assert_eq!(run(&p, A, nr as u32, 1), RET_EPERM, "{name}(1)");
            assert_eq!(run(&p, A, nr as u32, 42), RET_ALLOW, "{name}(42)");
        }
        let clone = libc::SYS_clone as u32;
        let fork_flags = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;
        let thread_flags = (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_THREAD) as u64;
        assert_eq!(run(&p, A, clone, fork_flags), RET_ALLOW);
        assert_eq!(run(&p, A, clone, thread_flags), RET_ALLOW);
        assert_eq!(run(&p, A, clone, fork_flags | libc::CLONE_NEWUSER as u64), RET_EPERM);
        assert_eq!(run(&p, A, clone, libc::CLONE_NEWNS as u64), RET_EPERM);
    }
}
