//! Image services against the real kernel, as root (see [`super::root_tests`] for how these run): the
//! namespaced spawn and the container root on a small rootfs made of the host's dash and its C library.
//! Checked from inside (what the program reports) and outside (the host's mount table is unchanged).

use super::image::Resolved;
use super::namespaced::Start;
use super::root_harness::{in_child_process, inner, svc};
use crate::reaper::{Exit, Reaper};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncReadExt;

#[test]
fn root_image_services_run_as_pid_1_on_a_read_only_root_without_the_nodes_records() {
    in_child_process("root_container_tests::inner_container");
}

/// A rootfs with /bin/sh (the host's dash) and what it links: `ldd /bin/sh`'s files at the same paths.
fn rootfs(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    for file in ["/bin/dash", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"] {
        let to = dir.join(file.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(std::fs::canonicalize(file).unwrap(), &to).unwrap();
    }
    std::os::unix::fs::symlink("dash", dir.join("bin/sh")).unwrap();
}

fn run(script: &str, env: &[(&str, &str)]) -> Resolved {
    Resolved {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        workdir: "/".into(),
        uid: 65534,
        gid: 65534,
        candidates: vec!["/usr/bin/sh".into(), "/bin/sh".into()],
    }
}

#[test]
#[ignore = "the body of root_image_services_run_…, in its own process"]
fn inner_container() {
    if !inner() {
        return;
    }
    let base = std::env::temp_dir().join(format!("keel-container-test-{}", std::process::id()));
    let root = base.join("rootfs");
    rootfs(&root);
    // Bound at its own path, which must not be under the service's fresh /tmp.
    let volume = PathBuf::from(format!("/var/tmp/keel-container-volume-{}", std::process::id()));
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::set_permissions(&volume, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let stages: PathBuf = base.join("stages");
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _in_runtime = rt.enter();
    let reaper = Reaper::default();
    let script = "read h < /proc/sys/kernel/hostname; \
                  if [ -e /var/lib/keel ]; then k=present; else k=absent; fi; \
                  if (echo x > /probe) 2>/dev/null; then w=yes; else w=no; fi; \
                  if (echo x > /tmp/probe) 2>/dev/null; then t=yes; else t=no; fi; \
                  echo hello > /data/out; \
                  echo \"pid=$$ keel=$k root_writable=$w tmp_writable=$t hostname=$h env=$GREETING\"";
    let def = svc("web", "/unused", &[]);
    let binds = [volume.to_string_lossy().into_owned()];
    let process = run(&script.replace("/data", &binds[0]), &[("GREETING", "hi")]);
    let start = Start { run: &process, rootfs: &root, binds: &binds, stage_base: &stages };
    let (launched, stage) = super::namespaced::spawn(&reaper, &def, &start, super::caps::last_cap(), None).unwrap();
    assert!(stage.starts_with(&stages));
    let exit = rt.block_on(async {
        let mut out = String::new();
        let mut stdout = launched.stdout;
        let read = tokio::time::timeout(Duration::from_secs(20), stdout.read_to_string(&mut out));
        read.await.expect("the service's output in 20 s").unwrap();
        let mut stderr = String::new();
        let mut err = launched.stderr;
        let _ = tokio::time::timeout(Duration::from_secs(5), err.read_to_string(&mut stderr)).await;
        let waiter = launched.child.wait();
        tokio::pin!(waiter);
        let exit = loop {
            reaper.reap_all();
            match tokio::time::timeout(Duration::from_millis(50), &mut waiter).await {
                Ok(exit) => break exit,
                Err(_) => continue,
            }
        };
        assert_eq!(
            out.trim(),
            "pid=1 keel=absent root_writable=no tmp_writable=yes hostname=web env=hi",
            "stderr: {stderr}"
        );
        exit
    });
    assert_eq!(exit, Some(Exit::Code(0)));
    // The volume was bound in read-write at its own path; nothing of the service's mounts reached the host.
    assert_eq!(std::fs::read_to_string(volume.join("out")).unwrap(), "hello\n");
    assert_eq!(std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count(), host_mounts);
    // A program the image does not have: the start fails with the exec's error, not a silent exit.
    let missing = Resolved { candidates: vec!["/bin/nothing".into()], ..run("", &[]) };
    let start = Start { run: &missing, rootfs: &root, binds: &[], stage_base: &stages };
    let err = super::namespaced::spawn(&reaper, &def, &start, super::caps::last_cap(), None);
    let err = err.err().expect("a missing program must fail the start").to_string();
    assert!(err.contains("No such file"), "{err}");
    rt.block_on(async {
        for _ in 0..20 {
            reaper.reap_all();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let _ = std::fs::remove_dir_all(&base);
    let _ = std::fs::remove_dir_all(&volume);
}
