//! A boot network in miniature: a throwaway network namespace holding one tap device, on which a test starts
//! real servers (dnsmasq, a web server) and a VM ([`crate::VmConfig`] `netns` + `tap`). The host's own links are
//! never touched: everything lives in the namespace, which goes away with its guard, also when a test panics.
//! Needs root (`ip netns add`), as the DHCP netns tests (`make netns`) do.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Namespaces this harness makes are named `keel-boot-<pid>-<tag>`.
const PREFIX: &str = "keel-boot-";

/// A network namespace with the tap device `tap` in it, up; deleted on drop.
pub struct Netns {
    pub name: String,
    /// The tap a VM's NIC uses (for a [`Netns::peer`]: its end of the veth pair).
    pub tap: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("run ip {}: {e} (make setup installs iproute2)", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Deletes the namespaces of earlier test processes that died without their guard running (SIGKILL).
fn remove_orphans() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else { return };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = ip(&["netns", "del", &name]);
            }
        }
    }
}

impl Netns {
    /// `keel-boot-<pid>-<tag>` with loopback up and a persistent tap `tap` holding `cidr` (e.g. `10.0.0.1/24`).
    pub fn with_tap(tag: &str, tap: &str, cidr: &str) -> Netns {
        remove_orphans();
        let name = format!("{PREFIX}{}-{tag}", std::process::id());
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name]).unwrap_or_else(|e| panic!("{e} (the dnsmasq tests need root)"));
        // The guard exists from here on: a failure below still deletes the namespace.
        let ns = Netns { name, tap: tap.to_string() };
        let n = ns.name.as_str();
        for args in [
            &["-n", n, "link", "set", "lo", "up"][..],
            &["-n", n, "tuntap", "add", "dev", tap, "mode", "tap"],
            &["-n", n, "addr", "add", cidr, "dev", tap],
            &["-n", n, "link", "set", tap, "up"],
        ] {
            ip(args).unwrap_or_else(|e| panic!("set up namespace {n}: {e}"));
        }
        ns
    }

    /// Like [`Netns::with_tap`], but the tap is a port of the bridge `kbr0`, which holds `cidr`, so that more
    /// servers can join the segment from other namespaces ([`Netns::peer`]).
    pub fn with_bridged_tap(tag: &str, tap: &str, cidr: &str) -> Netns {
        let ns = Netns::with_tap(tag, tap, cidr);
        let n = ns.name.as_str();
        for args in [
            &["-n", n, "addr", "del", cidr, "dev", tap][..],
            &["-n", n, "link", "add", "kbr0", "type", "bridge"],
            &["-n", n, "link", "set", tap, "master", "kbr0"],
            &["-n", n, "addr", "add", cidr, "dev", "kbr0"],
            &["-n", n, "link", "set", "kbr0", "up"],
        ] {
            ip(args).unwrap_or_else(|e| panic!("set up the bridge in {n}: {e}"));
        }
        ns
    }

    /// Another namespace, `keel-boot-<pid>-<tag>`, on this one's bridge (see [`Netns::with_bridged_tap`]) through a
    /// veth pair whose end in it, `kpeer`, holds `cidr`: a second machine on the boot network.
    pub fn peer(&self, tag: &str, cidr: &str) -> Netns {
        let name = format!("{PREFIX}{}-{tag}", std::process::id());
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name]).unwrap_or_else(|e| panic!("{e} (the dnsmasq tests need root)"));
        let peer = Netns { name, tap: "kpeer".to_string() };
        let (n, p) = (self.name.as_str(), peer.name.as_str());
        for args in [
            &["-n", n, "link", "add", "kport", "type", "veth", "peer", "name", "kpeer", "netns", p][..],
            &["-n", n, "link", "set", "kport", "master", "kbr0"],
            &["-n", n, "link", "set", "kport", "up"],
            &["-n", p, "link", "set", "lo", "up"],
            &["-n", p, "addr", "add", cidr, "dev", "kpeer"],
            &["-n", p, "link", "set", "kpeer", "up"],
        ] {
            ip(args).unwrap_or_else(|e| panic!("join {p} to {n}'s bridge: {e}"));
        }
        peer
    }

    /// `program` run inside the namespace (`ip netns exec NAME program`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Starts `cmd` (from [`Netns::command`]) as a server whose stdout and stderr go to `log`; stopped on drop,
    /// and killed by the kernel when the calling thread dies first (a test run killed on a timeout), so no server
    /// outlives the test. Call it from the thread that owns the returned guard.
    pub fn spawn(&self, what: &str, mut cmd: Command, log: &Path) -> Server {
        die_with_parent(&mut cmd);
        let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = file.try_clone().unwrap_or_else(|e| panic!("dup {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {what} in {}: {e} (make setup installs it)", self.name));
        Server { what: what.to_string(), child, log: log.to_path_buf() }
    }
}

/// The kernel kills `cmd`'s process when the thread that started it dies (PR_SET_PDEATHSIG): a test run killed on
/// a timeout leaves no server or VM behind in a namespace.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent's; `ip netns exec` execs the program,
    // which keeps the death signal (neither is set-uid).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the tap in it. The servers (dropped first) must be gone, or the kernel
        // keeps the namespace alive until they exit.
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("netns: could not delete {}: {e}", self.name);
        }
    }
}

/// A server process a test started in a [`Netns`], with its log; killed on drop.
pub struct Server {
    what: String,
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; `Err` with the whole log when it did not within `timeout`, or when
    /// the server exited.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before logging {needle:?}; its log:\n{}",
                    self.what,
                    self.log()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not log {needle:?} within {}s; its log:\n{}",
                    self.what,
                    timeout.as_secs(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
