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

#[test]
fn root_an_image_service_holding_cap_sys_chroot_cannot_climb_out_of_its_root() {
    in_child_process("root_container_tests::inner_escape");
}

/// Set (to a host path outside every container root) only for [`escape_probe`] run inside a container.
const ESCAPE_MARKER: &str = "KEEL_ESCAPE_MARKER";

/// Runs inside the container of [`inner_escape`] (this test binary copied into the image): the classic chroot
/// escape, chroot("sub") with the working directory left outside it, then `..` up to the namespace's root.
#[test]
#[ignore = "run by inner_escape inside a container"]
fn escape_probe() {
    let Some(marker) = std::env::var_os(ESCAPE_MARKER) else { return };
    // SAFETY: chroot/chdir with NUL-terminated literals.
    let chroot = match unsafe { libc::chroot(c"sub".as_ptr()) } {
        0 => "ok".to_string(),
        _ => std::io::Error::last_os_error().raw_os_error().map_or("?".into(), |e| format!("errno{e}")),
    };
    for _ in 0..64 {
        // SAFETY: as above.
        unsafe { libc::chdir(c"..".as_ptr()) };
    }
    let relative = Path::new(&marker).strip_prefix("/").unwrap_or(Path::new(&marker)).to_path_buf();
    let escaped = if relative.exists() { "yes" } else { "no" };
    println!("probe: chroot={chroot} escaped={escaped}");
}

#[test]
#[ignore = "the body of root_an_image_service_holding_cap_sys_chroot_…, in its own process"]
fn inner_escape() {
    if !inner() {
        return;
    }
    let base = std::env::temp_dir().join(format!("keel-escape-test-{}", std::process::id()));
    let root = base.join("rootfs");
    rootfs(&root);
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let me = std::env::current_exe().unwrap();
    std::fs::copy(&me, root.join("bin/probe")).unwrap();
    let gcc = root.join("lib/x86_64-linux-gnu/libgcc_s.so.1");
    std::fs::copy(std::fs::canonicalize("/lib/x86_64-linux-gnu/libgcc_s.so.1").unwrap(), gcc).unwrap();
    // Visible only outside the container's root: in the host's /var/tmp.
    let marker = PathBuf::from(format!("/var/tmp/keel-escape-marker-{}", std::process::id()));
    std::fs::write(&marker, "host\n").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _in_runtime = rt.enter();
    let reaper = Reaper::default();
    // The capability validation refuses for image services: only the seccomp filter stands in the way here.
    let def = keel_config::model::Service { capabilities: vec!["CAP_SYS_CHROOT".into()], ..svc("web", "/unused", &[]) };
    let args = ["/bin/probe", "--exact", "services::root_container_tests::escape_probe", "--ignored", "--nocapture"];
    let process = Resolved {
        argv: args.iter().map(|a| a.to_string()).chain(["--test-threads=1".to_string()]).collect(),
        env: [(ESCAPE_MARKER.to_string(), marker.to_string_lossy().into_owned())].into_iter().collect(),
        workdir: "/".into(),
        uid: 0,
        gid: 0,
        candidates: vec!["/bin/probe".into()],
    };
    let stages = base.join("stages");
    let start = Start { run: &process, rootfs: &root, binds: &[], stage_base: &stages };
    let (launched, _) = super::namespaced::spawn(&reaper, &def, &start, super::caps::last_cap(), None).unwrap();
    let out = rt.block_on(async {
        let mut out = String::new();
        let mut stdout = launched.stdout;
        let read = tokio::time::timeout(Duration::from_secs(30), stdout.read_to_string(&mut out));
        read.await.expect("the probe's output in 30 s").unwrap();
        let mut stderr = String::new();
        let mut err = launched.stderr;
        let _ = tokio::time::timeout(Duration::from_secs(5), err.read_to_string(&mut stderr)).await;
        for _ in 0..20 {
            reaper.reap_all();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        format!("{out}\nstderr: {stderr}")
    });
    let _ = std::fs::remove_file(&marker);
    let _ = std::fs::remove_dir_all(&base);
    // libtest prints the probe's line after its own `test … ... `.
    let line = out.lines().find_map(|l| l.split_once("probe: ")).map(|(_, r)| r);
    let line = line.unwrap_or_else(|| panic!("no probe line: {out}"));
    assert_eq!(line, format!("chroot=errno{} escaped=no", libc::EPERM), "{out}");
}
