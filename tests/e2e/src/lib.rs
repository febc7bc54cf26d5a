//! Boots a built Keel image in QEMU and lets a test read its serial console line by line and press buttons over
//! QMP. It builds nothing: `make image` (which `make test` runs first) provides `build/vmlinuz` and the initramfs,
//! `make pxe` and `make disk` the boot media ([`media`]).
//!
//! At most two VMs run at once on the machine, across test processes: each VM holds one of two lock files.
//! Every wait has a generous timeout and fails with a message saying what it waited for, and the last lines the
//! console printed; the whole transcript is kept under `target/e2e/<name>.log`.

pub mod api_client;
pub mod api_load;
mod console;
pub mod host_listener;
pub mod http_server;
pub mod media;
pub mod netns;
mod qmp;
pub mod registry;
pub mod services;
mod slots;
pub use slots::PairTurn;
pub mod tls;

pub use console::Console;
pub use media::Boot;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Default wait for a boot to reach ready: TCG on a loaded 2-core machine is slow and noisy; normally ~2 s.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// Wait for a UEFI disk boot to reach ready: OVMF adds firmware start-up (~4 s idle, far more on a loaded host).
pub const UEFI_BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// Default wait for anything after ready.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// The workspace's build directory (`KEEL_BUILD_DIR` overrides).
pub fn build_dir() -> PathBuf {
    match std::env::var_os("KEEL_BUILD_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initrd {
    /// What `make image` ships.
    Production,
    /// The production image plus `/usr/libexec/keel-testhelper`.
    Test,
    /// An initramfs a test made (e.g. the production one with a CA bundle added: [`tls::initrd_with_ca`]).
    Custom(PathBuf),
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    /// How the machine boots: QEMU's `-kernel` (the default), PXE, or a UEFI disk.
    pub boot: Boot,
    /// For `Boot::Kernel`: which initramfs.
    pub initrd: Initrd,
    /// For `Boot::Kernel`: appended to the base command line (`console=ttyS0 panic=-1`; without `console=ttyS0` when
    /// it names a serial console itself). PXE and disk boots carry
    /// their own command line.
    pub append: String,
    /// SMBIOS product UUID (`-uuid`), from which the node derives its machine id.
    pub uuid: Option<String>,
    /// Exit QEMU instead of rebooting, so a test can see that the guest asked to reboot.
    pub no_reboot: bool,
    pub memory_mib: u32,
    /// TCP ports forwarded from the host's loopback into the guest: (host port, guest port).
    pub hostfwd: Vec<(u16, u16)>,
    /// Raw disk images, attached as virtio disks in order (vda, vdb, …); disk `i` has the serial `disk<i>`, so a
    /// test can name it with `serial:disk1`.
    pub disks: Vec<PathBuf>,
    /// Virtual CPUs (`-smp`).
    pub cpus: u32,
    /// A virtio RNG, like any cloud VM (the kernel's pool is ready early); `false` for a machine without one.
    pub rng: bool,
    /// For `Boot::Kernel`: another kernel than `build/vmlinuz` (a flavour's `build/vmlinuz-virt`).
    pub kernel: Option<PathBuf>,
    /// More QEMU arguments, as given (controllers, NICs and their netdevs: the hardware matrix).
    pub extra_args: Vec<String>,
    /// Run QEMU inside this network namespace (`ip netns exec NS qemu-system-x86_64 …`), e.g. a [`netns::Netns`];
    /// QEMU then dies with the thread that booted it (see [`netns::die_with_parent`]).
    pub netns: Option<String>,
    /// The NIC `n0` is this tap device (in `netns`) instead of QEMU's user network: the VM sits on a real Ethernet
    /// segment with whatever the test runs there (dnsmasq, a web server). `hostfwd` does not apply to it.
    pub tap: Option<String>,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            boot: Boot::Kernel,
            initrd: Initrd::Production,
            append: String::new(),
            uuid: None,
            no_reboot: true,
            memory_mib: 256,
            hostfwd: Vec::new(),
            disks: Vec::new(),
            cpus: 1,
            rng: true,
            kernel: None,
            extra_args: Vec::new(),
            netns: None,
            tap: None,
        }
    }
}

pub struct Vm {
    pub name: String,
    child: Child,
    pub console: Console,
    qmp_path: PathBuf,
    qmp: Option<qmp::Qmp>,
    pub started: Instant,
    /// Files made for this VM (a UEFI variable store), removed with it.
    scratch: Vec<PathBuf>,
    _slot: slots::Slot,
}

/// `build/<name>`, which `make <target>` makes; a clear failure when it is missing.
fn built(name: &str, target: &str) -> PathBuf {
    let path = build_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with 'make {target}' ('make test' does it for you)",
        path.display()
    );
    path
}

impl Vm {
    /// Boots a VM named after the test. Waits for a free VM slot first.
    pub fn boot(name: &str, cfg: &VmConfig) -> Vm {
        assert!(
            cfg.boot == Boot::Kernel || cfg.append.is_empty(),
            "VM {name:?}: `append` only applies to Boot::Kernel; PXE and disk boots carry their own command line"
        );
        // The images first, so a missing one fails at once rather than after waiting for a slot.
        let kernel = (cfg.boot == Boot::Kernel).then(|| {
            let initrd = match &cfg.initrd {
                Initrd::Production => built("initramfs.cpio.zst", "image"),
                Initrd::Test => built("initramfs-test.cpio.zst", "image"),
                Initrd::Custom(path) => path.clone(),
            };
            (cfg.kernel.clone().unwrap_or_else(|| built("vmlinuz", "image")), initrd)
        });
        let slot = slots::Slot::acquire(&slots::lock_dir(), Duration::from_secs(1800));
        let run_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e");
        let _ = std::fs::create_dir_all(&run_dir);
        let qmp_path = run_dir.join(format!("{name}.qmp"));
        let _ = std::fs::remove_file(&qmp_path);
        assert!(
            cfg.tap.is_none() || cfg.hostfwd.is_empty(),
            "VM {name:?}: `hostfwd` needs QEMU's user network; a `tap` NIC has none"
        );
        let mut cmd = match &cfg.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "qemu-system-x86_64"]);
                // An orphaned QEMU would keep the test's namespace (and its tap) alive.
                netns::die_with_parent(&mut c);
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        cmd.args(accel_args())
            .args(["-m", &cfg.memory_mib.to_string(), "-smp", &cfg.cpus.to_string(), "-nodefaults", "-display", "none"])
            .args(["-serial", "stdio"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()));
        if cfg.rng {
            cmd.args(["-device", "virtio-rng-pci"]);
        }
        let (media_args, scratch) =
            media::qemu_args(&cfg.boot, &run_dir.join(name), &netdev(cfg.tap.as_deref(), &cfg.hostfwd));
        cmd.args(media_args);
        if let Some((kernel, initrd)) = kernel {
            cmd.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd);
            // Linux's 8250 driver is one console: a test naming another UART (`console=ttyS1`) gets it alone.
            let base = if cfg.append.contains("console=ttyS") { "panic=-1" } else { "console=ttyS0 panic=-1" };
            cmd.arg("-append").arg(format!("{base} {}", cfg.append).trim());
        }
        if let Some(uuid) = &cfg.uuid {
            cmd.args(["-uuid", uuid]);
        }
        if cfg.no_reboot {
            cmd.arg("-no-reboot");
        }
        for (i, disk) in cfg.disks.iter().enumerate() {
            cmd.arg("-drive").arg(format!("file={},if=none,id=disk{i},format=raw", disk.display()));
            cmd.args(["-device", &format!("virtio-blk-pci,drive=disk{i},serial=disk{i}")]);
        }
        cmd.args(&cfg.extra_args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child =
            cmd.spawn().unwrap_or_else(|e| panic!("cannot start qemu-system-x86_64: {e} (make setup installs it)"));
        let console = Console::attach(&mut child, &run_dir.join(format!("{name}.log")));
        Vm { name: name.to_string(), child, console, qmp_path, qmp: None, started, scratch, _slot: slot }
    }

    /// Waits for a console line containing `needle`, after the lines already consumed; panics on timeout.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        match self.console.wait_for(|l| l.contains(needle), timeout) {
            Some(line) => line,
            None => self.fail(&format!("a console line containing {needle:?}"), timeout),
        }
    }

    /// Waits for a line containing `needle` anywhere in the transcript, consumed or not; the cursor stays.
    pub fn expect_anywhere(&mut self, needle: &str, timeout: Duration) -> String {
        match self.console.wait_any(|l| l.contains(needle), timeout) {
            Some(line) => line,
            None => self.fail(&format!("a console line containing {needle:?}"), timeout),
        }
    }

    /// Waits for the ready line.
    pub fn expect_ready(&mut self) -> String {
        self.expect("keel: ready ", BOOT_TIMEOUT)
    }

    fn fail(&mut self, what: &str, timeout: Duration) -> ! {
        let tail = self.console.tail(40).join("\n    ");
        panic!(
            "VM {:?}: timed out after {}s waiting for {what}; console so far in {}; last lines:\n    {tail}",
            self.name,
            timeout.as_secs(),
            self.console.transcript_path().display()
        )
    }

    /// Sends one QMP command (`{"execute": …}` JSON) and returns the reply line.
    pub fn qmp(&mut self, command: &str) -> String {
        if self.qmp.is_none() {
            match qmp::Qmp::connect(&self.qmp_path, Duration::from_secs(30)) {
                Ok(q) => self.qmp = Some(q),
                Err(e) => panic!("VM {:?}: QMP connect to {}: {e}", self.name, self.qmp_path.display()),
            }
        }
        let q = self.qmp.as_mut().unwrap_or_else(|| unreachable!());
        q.execute(command).unwrap_or_else(|e| panic!("VM {:?}: QMP {command}: {e}", self.name))
    }

    /// Waits for QEMU to exit (the guest powered off, or rebooted under `-no-reboot`).
    pub fn expect_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => self.fail("QEMU to exit", timeout),
            }
        }
    }

    /// Every console line so far.
    pub fn transcript(&self) -> Vec<String> {
        self.console.all()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.qmp_path);
        for f in &self.scratch {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// QEMU's user network, with the host ports forwarded into the guest; or the tap device `tap`, as it is (no
/// scripts: the test made and addressed it).
fn netdev(tap: Option<&str>, hostfwd: &[(u16, u16)]) -> String {
    if let Some(tap) = tap {
        return format!("tap,id=n0,ifname={tap},script=no,downscript=no");
    }
    let mut spec = "user,id=n0".to_string();
    for (host, guest) in hostfwd {
        spec.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
    }
    spec
}

/// Taken by a test before it boots the first of two VMs that live at once, and held until both are gone (bind it
/// before them: `let _turn = two_vm_turn();`), so two such tests never deadlock on the machine's two VM slots.
pub fn two_vm_turn() -> PairTurn {
    slots::PairTurn::take(&slots::lock_dir(), Duration::from_secs(1800))
}

/// A TCP port on the host's loopback that nothing listens on right now (for a `hostfwd`).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().map(|a| a.port()).unwrap_or(0)
}

/// GET `path` from 127.0.0.1:`port` (a hostfwd into a guest), retrying until a complete HTTP 200 answer arrives
/// (QEMU accepts and closes a forwarded connection while nothing listens in the guest). Returns the body.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Result<String, String> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        let attempt = (|| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n\r\n").as_bytes())
                .map_err(|e| e.to_string())?;
            let mut reply = String::new();
            s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
            match reply.split_once("\r\n\r\n") {
                Some((head, body)) if head.starts_with("HTTP/1.1 200 ") => Ok(body.to_string()),
                _ => Err(format!("answer {reply:?}")),
            }
        })();
        match attempt {
            Ok(body) => return Ok(body),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!("GET 127.0.0.1:{port}{path}: no answer within {}s (last: {last})", timeout.as_secs()))
}

/// The keelctl binary built for this workspace (`make e2e` builds it first).
pub fn keelctl() -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    for profile in ["debug", "release"] {
        let p = target.join(profile).join("keelctl");
        if p.exists() {
            return p;
        }
    }
    panic!("keelctl is not built under {}: run 'cargo build -p keelctl' (make e2e does)", target.display())
}

/// keelctl, authenticating to nodes with the development key (`KEEL_KEY`), and never with an ssh-agent the
/// test runner happens to have.
pub fn keelctl_cmd() -> Command {
    let mut cmd = Command::new(keelctl());
    cmd.env("KEEL_KEY", build_dir().join("keys/dev_ed25519")).env_remove("SSH_AUTH_SOCK");
    cmd
}

/// TCG by default; `KEEL_KVM=1` opts in to KVM where nested virtualisation works.
pub fn accel_args() -> Vec<String> {
    if std::env::var("KEEL_KVM").as_deref() == Ok("1") {
        vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()]
    } else {
        vec!["-accel".into(), "tcg".into()]
    }
}

/// The value of `key=` in a structured log line (`keel: ready uptime_ms=812.3 …`).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_host_ports() {
        assert_eq!(netdev(None, &[]), "user,id=n0");
        assert_eq!(netdev(None, &[(18080, 8080)]), "user,id=n0,hostfwd=tcp:127.0.0.1:18080-:8080");
    }

    #[test]
    fn a_tap_nic_is_used_as_it_is() {
        assert_eq!(netdev(Some("ktap0"), &[]), "tap,id=n0,ifname=ktap0,script=no,downscript=no");
    }

    #[test]
    fn reads_fields_from_log_lines() {
        let line = "[    0.912345] keel: ready uptime_ms=912.3 init_ms=4.1 hostname=keel-0a1b2c3d";
        assert_eq!(field(line, "uptime_ms"), Some("912.3"));
        assert_eq!(field(line, "hostname"), Some("keel-0a1b2c3d"));
        assert_eq!(field(line, "init"), None);
        assert_eq!(field(line, "missing"), None);
    }
}
