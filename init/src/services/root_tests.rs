//! Services against the real kernel, as root: privileges, cgroups, restarts, stops and convergence, observed in
//! /proc and cgroupfs.
//!
//! Each `root_services_*` test runs its body (an `#[ignore]`d `inner_*` test) in a child process of the test
//! binary: there the real [`Reaper`] reaps with waitpid(-1) and is a child subreaper, and sees only that test's
//! processes. The parent holds [`crate::reaper::test_lock`] meanwhile, so no reaper test in this process can take
//! the child's status. Test cgroups live under a fresh `keel-test-<pid>` group of the host's cgroup2 mount and are
//! removed afterwards.

use super::root_harness::{in_child_process, inner, proc_status, svc, wait_exec, Harness};
use super::{State, Timing};
use crate::reaper::Exit;
use keel_config::model::{CgroupLimits, CpuMax, Program, Restart, Rlimit};
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn root_services_run_with_exactly_the_privileges_asked_for() {
    in_child_process("privileges");
}

#[test]
#[ignore = "the body of root_services_run_with_exactly_the_privileges_asked_for, in its own process"]
fn inner_privileges() {
    if !inner() {
        return;
    }
    // A supervisor that ignores signals (as a shell's background job ignores SIGINT) must not pass that on.
    // SAFETY: this test body runs alone in its own process; SIG_IGN installs no handler code.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let mut h = Harness::new(Timing::default());
    let mut web = svc("web", "/bin/sleep", &["1000"]);
    (web.uid, web.gid, web.workdir) = (65534, 65533, "/tmp".into());
    web.capabilities = vec!["CAP_NET_BIND_SERVICE".into(), "CAP_KILL".into()];
    web.rlimits = [(Rlimit::Nofile, Some(64)), (Rlimit::Core, Some(0))].into_iter().collect();
    let bare = svc("bare", "/bin/sleep", &["1000"]);
    h.apply(1, vec![web, bare]);
    let pid = h.service("web", State::Running).pid.unwrap();
    wait_exec(pid, "sleep");
    assert_eq!(proc_status(pid, "Uid"), "65534 65534 65534 65534");
    assert_eq!(proc_status(pid, "Gid"), "65533 65533 65533 65533");
    assert_eq!(proc_status(pid, "Groups"), "");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status(pid, set), "0000000000000420", "{set}: CAP_KILL (5) and CAP_NET_BIND_SERVICE (10)");
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert_eq!(proc_status(pid, "SigIgn"), "0000000000000000", "every signal at its default disposition");
    assert_eq!(proc_status(pid, "SigBlk"), "0000000000000000", "nothing blocked");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(limits.lines().any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("64")));
    assert!(limits.lines().any(|l| l.starts_with("Max core file size") && l.split_whitespace().nth(4) == Some("0")));
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(), Path::new("/tmp"));
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let expected = format!("0::/{}/keel.services/web", h.group.display());
    assert!(cgroup.lines().any(|l| l == expected), "{cgroup} should have {expected}");
    // Its own session: not in the init's, so no console signal reaches it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let sid: i32 = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!(sid, pid);

    // Root without capabilities is root in name only.
    let bare = h.service("bare", State::Running).pid.unwrap();
    wait_exec(bare, "sleep");
    assert_eq!(proc_status(bare, "Uid"), "0 0 0 0");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status(bare, set), "0000000000000000", "{set}");
    }
    assert_eq!(proc_status(bare, "NoNewPrivs"), "1");
}

#[test]
fn root_services_get_their_cgroup_limits() {
    in_child_process("cgroup_limits");
}

#[test]
#[ignore = "the body of root_services_get_their_cgroup_limits, in its own process"]
fn inner_cgroup_limits() {
    if !inner() {
        return;
    }
    let mut h = Harness::new(Timing::default());
    let mut limited = svc("limited", "/bin/sleep", &["1000"]);
    limited.cgroup = CgroupLimits {
        memory_max: Some(64 << 20),
        cpu_max: Some(CpuMax { quota_us: 50_000, period_us: 100_000 }),
        pids_max: Some(32),
    };
    h.apply(1, vec![limited]);
    let available = std::fs::read_to_string(h.mount.join("cgroup.controllers")).unwrap_or_default();
    let all = ["cpu", "memory", "pids"].iter().all(|c| available.split_whitespace().any(|a| a == *c));
    if all {
        let pid = h.service("limited", State::Running).pid.unwrap();
        let read = |f: &str| std::fs::read_to_string(h.cgroup("limited").join(f)).unwrap().trim().to_string();
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("pids.max"), "32");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert!(read("cgroup.procs").lines().any(|l| l == pid.to_string()));
        eprintln!("checked memory.max, pids.max and cpu.max in {}", h.cgroup("limited").display());
    } else {
        // A hybrid host (controllers bound to cgroup v1): the service must not run without its limits.
        let s = h.until("a refused start", 20, |s| s.services.get("limited").is_some_and(|x| x.reason.is_some()));
        let s = &s.services["limited"];
        assert!(matches!(s.state, State::Backoff | State::CrashLoop), "{s:?}");
        let reason = s.reason.as_deref().unwrap_or("");
        assert!(reason.contains("is not available"), "{reason}");
        assert_eq!(s.pid, None);
        eprintln!("no cpu/memory/pids controllers in {} ({available:?}): checked the refusal", h.mount.display());
    }
}

#[test]
fn root_services_restart_with_backoff_and_enter_crash_loop() {
    in_child_process("restart_backoff");
}

#[test]
#[ignore = "the body of root_services_restart_with_backoff_and_enter_crash_loop, in its own process"]
fn inner_restart_backoff() {
    if !inner() {
        return;
    }
    let timing = Timing {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(400),
        stable: Duration::from_secs(30),
        crash_loop_after: 3,
    };
    let mut h = Harness::new(timing);
    let mut crash = svc("crash", "/bin/sh", &["-c", "echo crashing; exit 3"]);
    crash.restart = Restart::OnFailure;
    let mut once = svc("once", "/bin/sh", &["-c", "exit 3"]);
    once.restart = Restart::Never;
    let mut done = svc("done", "/bin/true", &[]);
    done.restart = Restart::OnFailure;
    h.apply(1, vec![crash, once, done]);
    // Each start is a new pid; record when each one appeared.
    let mut starts: Vec<(i32, Instant)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while starts.len() < 6 && Instant::now() < deadline {
        let s = h.until("a new run", 10, |s| {
            let pid = s.services.get("crash").and_then(|x| x.pid);
            pid.is_some() && pid != starts.last().map(|l| l.0)
        });
        starts.push((s.services["crash"].pid.unwrap_or(0), Instant::now()));
    }
    let gaps: Vec<u128> = starts.windows(2).map(|w| w[1].1.duration_since(w[0].1).as_millis()).collect();
    // 100, 200, 400, then capped at 400 ms, each −20% jitter at most (a lower bound each; the machine may be slow).
    for (gap, min) in gaps.iter().zip([80u128, 160, 320, 320, 320]) {
        assert!(*gap + 20 >= min, "gaps {gaps:?}");
    }
    let s = h.until("crash-loop", 10, |s| s.services["crash"].state == State::CrashLoop);
    let crash = &s.services["crash"];
    assert!(crash.restarts >= 5, "{crash:?}");
    assert_eq!(crash.last_exit, Some(Exit::Code(3)));
    assert!(crash.reason.as_deref().unwrap_or("").contains("exited:3"), "{crash:?}");
    let once = h.service("once", State::Failed);
    assert_eq!((once.restarts, once.last_exit), (0, Some(Exit::Code(3))));
    let done = h.service("done", State::Stopped);
    assert_eq!((done.restarts, done.last_exit), (0, Some(Exit::Code(0))));
    let lines = crate::logging_ring::since(0);
    assert!(lines.iter().any(|e| e.text == "crashing"
        && matches!(&e.source, crate::logging_ring::Source::Service { name, .. } if &**name == "crash")));
}

#[test]
fn root_services_stop_with_their_signal_then_sigkill() {
    in_child_process("stop");
}

#[test]
#[ignore = "the body of root_services_stop_with_their_signal_then_sigkill, in its own process"]
fn inner_stop() {
    if !inner() {
        return;
    }
    let mut h = Harness::new(Timing::default());
    // Ignores SIGTERM (and so does the sleep it starts, which must die with it).
    let mut stubborn = svc("stubborn", "/bin/sh", &["-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"]);
    stubborn.stop_timeout_s = 1;
    let mut polite = svc("polite", "/bin/sleep", &["1000"]);
    polite.stop_signal = "SIGINT".into();
    polite.after = vec![keel_config::model::After::Service("stubborn".into())];
    h.apply(1, vec![stubborn, polite]);
    h.service("stubborn", State::Running);
    h.service("polite", State::Running);
    // Its stdout reaches the log ring (read by the runtime, so poll from inside it).
    h.rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !crate::logging_ring::since(0).iter().any(|e| e.text == "ready") {
            assert!(Instant::now() < deadline, "stubborn's output never reached the log ring");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let asked = Instant::now();
    h.stop_all();
    let took = asked.elapsed();
    let s = h.until("all stopped", 10, |s| s.services.values().all(|x| x.state == State::Stopped));
    assert_eq!(s.services["polite"].last_exit, Some(Exit::Signal { signal: libc::SIGINT, core_dumped: false }));
    assert_eq!(s.services["stubborn"].last_exit, Some(Exit::Signal { signal: libc::SIGKILL, core_dumped: false }));
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(6), "{took:?}");
    assert!(!h.cgroup("stubborn").exists(), "its cgroup (and every process in it) is gone");
    assert!(!h.cgroup("polite").exists());
}

#[test]
fn root_services_converge_changed_removed_and_unchanged() {
    in_child_process("converge");
}

#[test]
#[ignore = "the body of root_services_converge_changed_removed_and_unchanged, in its own process"]
fn inner_converge() {
    if !inner() {
        return;
    }
    let mut h = Harness::new(Timing::default());
    let mut web = svc("web", "/bin/sleep", &["1000"]);
    web.after = vec![keel_config::model::After::Network, keel_config::model::After::Service("db".into())];
    let db = svc("db", "/bin/sleep", &["1001"]);
    let gone = svc("gone", "/bin/sleep", &["1002"]);
    h.apply(1, vec![web.clone(), db.clone(), gone]);
    let s = h.service("web", State::Blocked);
    assert_eq!(s.reason.as_deref(), Some("waiting for network"));
    h.network.send_replace(true);
    let web_pid = h.service("web", State::Running).pid;
    let s = h.until("converged", 10, |s| s.converged && s.generation == Some(1));
    let (db_pid, gone_pid) = (s.services["db"].pid, s.services["gone"].pid);

    let mut db2 = db.clone();
    db2.env.insert("MODE".into(), "v2".into());
    h.apply(2, vec![web, db2]);
    let s = h.until("generation 2", 20, |s| s.converged && s.generation == Some(2));
    assert!(!s.services.contains_key("gone"));
    assert_eq!(s.services["web"].pid, web_pid, "unchanged: not touched");
    assert_ne!(s.services["db"].pid, db_pid, "changed: restarted");
    let gone_pid = gone_pid.unwrap();
    assert!(!Path::new(&format!("/proc/{gone_pid}")).exists(), "removed: stopped");
    let db_pid = s.services["db"].pid.unwrap();
    wait_exec(db_pid, "sleep");
    let environ = std::fs::read(format!("/proc/{db_pid}/environ")).unwrap();
    assert_eq!(environ, b"MODE=v2\0", "only the configured environment");
}

#[test]
fn root_services_run_only_verified_artifacts() {
    in_child_process("artifacts");
}

#[test]
#[ignore = "the body of root_services_run_only_verified_artifacts, in its own process"]
fn inner_artifacts() {
    if !inner() {
        return;
    }
    let mut h = Harness::new(Timing::default());
    let program: &'static [u8] = std::fs::read("/bin/sleep").unwrap().leak();
    let url = h.rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sleep", listener.local_addr().unwrap());
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", program.len()).as_bytes())
                    .await;
                let _ = s.write_all(program).await;
            }
        });
        url
    });
    let digest = super::artifact::sha256_hex(program);
    let mut good = svc("fetched", "/unused", &["1000"]);
    good.program = Program::Artifact { url: url.clone(), sha256: digest.clone() };
    (good.uid, good.gid) = (65534, 65534);
    let mut bad = svc("tampered", "/unused", &["1000"]);
    bad.program = Program::Artifact { url, sha256: "0".repeat(64) };
    h.apply(1, vec![good, bad]);
    let s = h.service("fetched", State::Running);
    assert_eq!(s.artifact.as_deref(), Some(digest.as_str()));
    let pid = s.pid.unwrap();
    // It runs the sealed in-memory copy that was verified, as its user.
    let deadline = Instant::now() + Duration::from_secs(10);
    let exe = loop {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if exe.to_string_lossy().starts_with("/memfd:") || Instant::now() > deadline {
            break exe;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(exe.to_string_lossy().starts_with("/memfd:keel-fetched"), "{exe:?}");
    assert_eq!(proc_status(pid, "Uid"), "65534 65534 65534 65534");
    let s = h.until("the refusal", 20, |s| s.services["tampered"].reason.is_some());
    let refused = &s.services["tampered"];
    assert!(refused.reason.as_deref().unwrap_or("").contains("sha256 mismatch"), "{refused:?}");
    assert!(matches!(refused.state, State::Backoff | State::CrashLoop) && refused.pid.is_none(), "{refused:?}");
    assert_eq!(refused.artifact, None);
}
