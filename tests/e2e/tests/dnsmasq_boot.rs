//! Network boot the way a datacenter does it: a real dnsmasq (DHCP + TFTP) and a web server on a boot network,
//! not QEMU's built-in user-network servers. Each test makes a throwaway network namespace with a tap device in
//! it (`netns.rs`), runs dnsmasq there with the configuration block README.md documents, read from README.md
//! itself (only the interface and the TFTP root are replaced, the words every site changes), and starts QEMU in
//! the namespace with its NIC on the tap. So the documented settings cannot drift from what is tested.
//!
//! - UEFI PXE, Secure Boot enforcing: the firmware gets an address and `keel.efi` from dnsmasq, verifies and boots
//!   the signed UKI, and Keel's own DHCP client then gets its lease from the same dnsmasq.
//! - UEFI HTTP boot: the same block, with PXE failing (an empty TFTP root), makes OVMF's HTTP boot ask with
//!   vendor class `HTTPClient`; it refuses an unsigned UKI served at the documented URL (a rogue server), then
//!   fetches the signed UKI from there and boots it.
//! - Legacy: the iPXE block. OVMF's own PXE (Secure Boot off) gets `ipxe.efi`, which asks again as iPXE and gets
//!   `boot.ipxe`, which loads Keel over TFTP; under SeaBIOS the virtio NIC's ROM is already iPXE and gets
//!   `boot.ipxe` at once, made with `KEEL_PXE_BASE=http://10.0.0.1/keel/`: it loads Keel from the web server.
//!
//! Needs root (network namespaces), like `make netns`.

use keel_e2e::media::{self, Boot};
use keel_e2e::netns::{Netns, Server};
use keel_e2e::{build_dir, field, Vm, VmConfig, STEP_TIMEOUT, UEFI_BOOT_TIMEOUT};
use std::path::{Path, PathBuf};
use std::time::Duration;

const TAP: &str = "ktap0";
const SERVER_CIDR: &str = "10.0.0.1/24";

/// The lines of README.md's code block that starts with the line `header` (e.g. `# /etc/dnsmasq.d/keel.conf`).
fn doc_block(header: &str) -> String {
    page_block("README.md", header)
}

/// The lines of the code block in `page` (relative to the repository) that starts with the line `header`.
fn page_block(page: &str, header: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(page);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut lines = text.lines().skip_while(|l| l.trim() != header);
    assert!(lines.next().is_some(), "{page} has no code block starting with {header:?}");
    let block: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
    block.join("\n") + "\n"
}

/// The documented block with the site-specific words replaced: the `interface=` and the `tftp-root=` lines. Each
/// must be there exactly once (a block without them would not be the one the README shows).
fn for_site(block: &str, interface: &str, tftp_root: &Path) -> String {
    // dnsmasq refuses (EACCES) any TFTP path with a `/../` in it, the root's included.
    let tftp_root =
        std::fs::canonicalize(tftp_root).unwrap_or_else(|e| panic!("TFTP root {}: {e}", tftp_root.display()));
    let mut replaced = (0, 0);
    let lines: Vec<String> = block
        .lines()
        .map(|l| {
            if l.starts_with("interface=") {
                replaced.0 += 1;
                format!("interface={interface}")
            } else if l.starts_with("tftp-root=") {
                replaced.1 += 1;
                format!("tftp-root={}", tftp_root.display())
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(replaced, (1, 1), "the README block must have one interface= and one tftp-root= line:\n{block}");
    lines.join("\n") + "\n"
}

/// A fresh scratch directory for one test.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-e2e-dnsmasq-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// dnsmasq in `ns` with `conf` (DHCP and TFTP only: `--port=0` turns DNS off), logging every DHCP exchange.
fn dnsmasq(ns: &Netns, dir: &Path, conf: &str) -> Server {
    let conf_file = dir.join("dnsmasq.conf");
    std::fs::write(&conf_file, conf).unwrap_or_else(|e| panic!("write {}: {e}", conf_file.display()));
    let mut cmd = ns.command("dnsmasq");
    cmd.arg("--no-daemon")
        .arg(format!("--conf-file={}", conf_file.display()))
        .arg("--port=0")
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
        .arg(format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()))
        .arg("--log-dhcp");
    let mut server = ns.spawn("dnsmasq", cmd, &dir.join("dnsmasq.log"));
    // Serving DHCP before the VM starts, or the firmware's first DISCOVER may go unanswered.
    if let Err(e) = server.wait_log("dnsmasq-dhcp: DHCP, ", Duration::from_secs(30)) {
        panic!("dnsmasq did not start with the README's block:\n{conf}\n{e}");
    }
    server
}

/// A web server in `ns` serving `served` as `http://10.0.0.1/keel/` (the README's URLs), logging each request.
fn web_server(ns: &Netns, dir: &Path, served: &Path) -> Server {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap_or_else(|e| panic!("create {}: {e}", www.display()));
    let served = std::fs::canonicalize(served).unwrap_or_else(|e| panic!("{}: {e}", served.display()));
    std::os::unix::fs::symlink(served, www.join("keel"))
        .unwrap_or_else(|e| panic!("symlink in {}: {e}", www.display()));
    let mut cmd = ns.command("python3");
    cmd.args(["-m", "http.server", "80", "--bind", "10.0.0.1", "--directory"]).arg(&www);
    let mut web = ns.spawn("python3 -m http.server", cmd, &dir.join("http.log"));
    web.wait_log("Serving HTTP", Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    web
}

/// The web server answered `GET /keel/<file>` with 200.
fn assert_got(web: &Server, file: &str) {
    let log = web.log();
    assert!(
        log.lines().any(|l| l.contains(&format!("\"GET /keel/{file} HTTP/1.1\" 200"))),
        "{file} must have been fetched over HTTP; the web server's log:\n{log}"
    );
}

/// A VM on the namespace's tap, with no disk: the firmware can only boot from the network.
fn on_tap(ns: &Netns, boot: Boot) -> VmConfig {
    VmConfig { boot, netns: Some(ns.name.clone()), tap: Some(ns.tap.clone()), ..VmConfig::default() }
}

/// Waits for `needle` on the VM's console; on expiry the panic shows the console's tail and dnsmasq's log.
fn expect(vm: &mut Vm, needle: &str, timeout: Duration, servers: &[&Server]) -> String {
    match vm.console.wait_for(|l| l.contains(needle), timeout) {
        Some(line) => line,
        None => {
            let logs: Vec<String> = servers.iter().map(|s| s.log()).collect();
            panic!(
                "VM {:?}: no console line containing {needle:?} within {}s; last console lines:\n    {}\nserver logs:\n{}",
                vm.name,
                timeout.as_secs(),
                vm.console.tail(30).join("\n    "),
                logs.join("\n----\n")
            )
        }
    }
}

/// Keel is up and leased a 10.0.0.x address from dnsmasq (its own DHCP client, after the firmware's).
fn assert_keel_leased(vm: &mut Vm, dnsmasq: &Server) {
    expect(vm, "keel: ready ", UEFI_BOOT_TIMEOUT, &[dnsmasq]);
    let bound = expect(vm, "keel: net.dhcp.bound ", STEP_TIMEOUT, &[dnsmasq]);
    let addr = field(&bound, "addr").unwrap_or_default();
    assert!(addr.starts_with("10.0.0."), "Keel's lease must come from dnsmasq's 10.0.0.100-200 range: {bound}");
    assert_eq!(field(&bound, "server"), Some("10.0.0.1"), "the lease's server must be dnsmasq: {bound}");
    let ready = expect(vm, "keel: net.ready ", STEP_TIMEOUT, &[dnsmasq]);
    assert_eq!(field(&ready, "source"), Some("dhcp"), "{ready}");
    let log = dnsmasq.log();
    // The firmware's exchange and Keel's own both end in an ACK from dnsmasq.
    let ip = addr.split('/').next().unwrap_or_default();
    let acks = log.lines().filter(|l| l.contains(&format!("DHCPACK(ktap0) {ip} "))).count();
    assert!(
        acks >= 2,
        "dnsmasq must have acknowledged {ip} to the firmware and then Keel ({acks} ACKs); its log:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains(&format!("DHCPACK(ktap0) {ip} ")) && l.contains(" keel-")),
        "Keel's own request (with its hostname) must have been acknowledged; dnsmasq's log:\n{log}"
    );
}

/// The directives of a dnsmasq block: its lines without comments, trimmed, empty ones dropped.
fn directives(block: &str) -> Vec<String> {
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or_default().trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn the_bare_metal_guide_shows_the_tested_block() {
    // docs/bare-metal.md shows what to add to a dnsmasq that already serves the network: the README's tested block
    // without the lines that site already has (interface, range). Every directive it shows must be the README's.
    let header = "# /etc/dnsmasq.d/keel-uefi.conf";
    let tested = directives(&doc_block(header));
    let shown = directives(&page_block("docs/bare-metal.md", header));
    assert!(shown.len() >= 6, "docs/bare-metal.md's block is nearly empty: {shown:?}");
    for line in &shown {
        assert!(tested.contains(line), "docs/bare-metal.md shows {line:?}, which is not in the README's tested block");
    }
}

#[test]
fn qemu_uefi_pxe_secure_boot_from_dnsmasq_with_the_readme_block() {
    let dir = scratch("pxe");
    let ns = Netns::with_tap("pxe", TAP, SERVER_CIDR);
    let conf = for_site(&doc_block("# /etc/dnsmasq.d/keel-uefi.conf"), TAP, &media::pxe_dir());
    let dnsmasq = dnsmasq(&ns, &dir, &conf);
    let boot =
        Boot::SecureBoot { vars: media::sb_vars(&dir.join("vars.fd")), disks: vec![], tftp: None, bootfiles: vec![] };
    let mut vm = Vm::boot("dnsmasq_uefi_pxe", &on_tap(&ns, boot));

    expect(&mut vm, "NBP file downloaded successfully", UEFI_BOOT_TIMEOUT, &[&dnsmasq]);
    expect(&mut vm, "EFI stub: UEFI Secure Boot is enabled", UEFI_BOOT_TIMEOUT, &[&dnsmasq]);
    let line = expect(&mut vm, "keel: trust.secure_boot ", UEFI_BOOT_TIMEOUT, &[&dnsmasq]);
    assert_eq!(field(&line, "enabled"), Some("true"), "{line}");
    assert_eq!(field(&line, "enrolled"), Some("true"), "{line}");
    assert_keel_leased(&mut vm, &dnsmasq);

    let log = dnsmasq.log();
    assert!(
        log.contains("vendor class: PXEClient:Arch:00007") && log.contains("tags: efi64, ktap0"),
        "dnsmasq must have seen a UEFI x86-64 PXE client (client-arch 7, tag efi64); its log:\n{log}"
    );
    assert_sent(&log, "keel.efi");
    eprintln!("dnsmasq UEFI PXE: QEMU start -> ready in {:.1} s", vm.started.elapsed().as_secs_f64());
    drop(vm);
    drop(dnsmasq);
    drop(ns);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn qemu_uefi_http_boot_secure_boot_from_dnsmasq_with_the_readme_block() {
    let dir = scratch("http");
    let ns = Netns::with_tap("http", TAP, SERVER_CIDR);
    // An empty TFTP root: the firmware's PXE attempt gets "file not found" at once and OVMF goes on to its
    // HTTP boot option, which asks again with vendor class HTTPClient.
    let empty = dir.join("tftp-empty");
    std::fs::create_dir_all(&empty).unwrap_or_else(|e| panic!("create {}: {e}", empty.display()));
    let conf = for_site(&doc_block("# /etc/dnsmasq.d/keel-uefi.conf"), TAP, &empty);
    // The README's URL is http://10.0.0.1/keel/keel.efi. First a rogue server's image there: the signed UKI with
    // its signature removed.
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap_or_else(|e| panic!("create {}: {e}", served.display()));
    let uki = served.join("keel.efi");
    let signed = media::pxe_dir().join("keel.efi");
    std::fs::copy(&signed, &uki).unwrap_or_else(|e| panic!("copy {}: {e}", signed.display()));
    let out = std::process::Command::new("sbattach")
        .arg("--remove")
        .arg(&uki)
        .output()
        .unwrap_or_else(|e| panic!("run sbattach: {e} (make setup installs sbsigntool)"));
    assert!(out.status.success(), "sbattach --remove: {}", String::from_utf8_lossy(&out.stderr));
    let web = web_server(&ns, &dir, &served);
    let dnsmasq = dnsmasq(&ns, &dir, &conf);
    let boot =
        Boot::SecureBoot { vars: media::sb_vars(&dir.join("vars.fd")), disks: vec![], tftp: None, bootfiles: vec![] };
    // The firmware is reset after the refusal: QEMU must not exit on it.
    let mut vm = Vm::boot("dnsmasq_uefi_http", &VmConfig { no_reboot: false, ..on_tap(&ns, boot) });

    // The firmware fetches the unsigned image over HTTP and refuses it; then the signed one is served and the
    // machine reset.
    let refused = loop {
        // PXE's failure (the empty TFTP root) comes first.
        let line = expect(&mut vm, "BdsDxe: failed to load", UEFI_BOOT_TIMEOUT, &[&dnsmasq, &web]);
        if line.contains("HTTPv4") {
            break line;
        }
    };
    assert!(refused.contains("Access Denied"), "the firmware must refuse the unsigned UKI: {refused}");
    assert_got(&web, "keel.efi");
    assert!(vm.transcript().iter().all(|l| !l.contains("keel:")), "the unsigned UKI ran Keel");
    std::fs::copy(&signed, &uki).unwrap_or_else(|e| panic!("serve {}: {e}", signed.display()));
    vm.qmp(r#"{"execute": "system_reset"}"#);

    expect(&mut vm, "EFI stub: UEFI Secure Boot is enabled", UEFI_BOOT_TIMEOUT, &[&dnsmasq, &web]);
    let line = expect(&mut vm, "keel: trust.secure_boot ", UEFI_BOOT_TIMEOUT, &[&dnsmasq, &web]);
    assert_eq!(field(&line, "enabled"), Some("true"), "{line}");
    assert_keel_leased(&mut vm, &dnsmasq);

    let log = dnsmasq.log();
    assert!(
        log.contains("vendor class: HTTPClient:Arch:00016") && log.contains("httpboot"),
        "dnsmasq must have seen OVMF's HTTP boot client (vendor class HTTPClient, tag httpboot); its log:\n{log}"
    );
    assert!(
        log.contains("bootfile-name  http://10.0.0.1/keel/keel.efi"),
        "dnsmasq must have answered with the README's URL; its log:\n{log}"
    );
    assert_got(&web, "keel.efi");
    assert!(
        !log.contains("dnsmasq-tftp: sent "),
        "nothing may have come over TFTP in the HTTP boot test; dnsmasq's log:\n{log}"
    );
    let stubs = vm.transcript().iter().filter(|l| l.contains("EFI stub: UEFI Secure Boot is enabled")).count();
    assert_eq!(stubs, 1, "only the signed UKI may have started a kernel");
    eprintln!("dnsmasq UEFI HTTP boot: QEMU start -> ready in {:.1} s", vm.started.elapsed().as_secs_f64());
    drop(vm);
    drop(dnsmasq);
    drop(web);
    drop(ns);
    let _ = std::fs::remove_dir_all(dir);
}

/// The TFTP root the README's `keel.conf` block describes: `pxe` (`build/pxe/` or a variant of it) plus
/// `undionly.kpxe` and `ipxe.efi` from Debian's `ipxe` package.
fn ipxe_tftp_root(dir: &Path, pxe: &Path) -> PathBuf {
    let root = dir.join("tftp");
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
    let files = ["boot.ipxe", "vmlinuz", "initramfs.cpio.zst"].map(|f| pxe.join(f));
    let ipxe = ["undionly.kpxe", "ipxe.efi"].map(|f| Path::new("/usr/lib/ipxe").join(f));
    for src in files.iter().chain(&ipxe) {
        let name = src.file_name().unwrap_or_default();
        std::fs::copy(src, root.join(name))
            .unwrap_or_else(|e| panic!("copy {}: {e} (make setup installs ipxe, make pxe the rest)", src.display()));
    }
    root
}

/// dnsmasq sent `file` over TFTP.
fn assert_sent(log: &str, file: &str) {
    assert!(
        log.lines().any(|l| l.contains("dnsmasq-tftp: sent ") && l.contains(&format!("/{file} to 10.0.0."))),
        "dnsmasq must have sent {file} over TFTP; its log:\n{log}"
    );
}

#[test]
fn qemu_uefi_pxe_chains_ipxe_from_dnsmasq_with_the_readme_block() {
    let dir = scratch("ipxe-efi");
    let ns = Netns::with_tap("ipxe-efi", TAP, SERVER_CIDR);
    let conf = for_site(&doc_block("# /etc/dnsmasq.d/keel.conf"), TAP, &ipxe_tftp_root(&dir, &media::pxe_dir()));
    let dnsmasq = dnsmasq(&ns, &dir, &conf);
    // OVMF's own PXE (no option ROM on the NIC) without enrolled keys: Secure Boot off, as on a server whose owner
    // chose the legacy path; Debian's ipxe.efi is not signed. The firmware asks without user class iPXE, gets
    // ipxe.efi, and iPXE asks again and gets boot.ipxe.
    let vars = dir.join("vars.fd");
    std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap_or_else(|e| panic!("OVMF_VARS_4M.fd: {e}"));
    let boot = Boot::SecureBoot { vars, disks: vec![], tftp: None, bootfiles: vec![] };
    let mut vm = Vm::boot("dnsmasq_uefi_ipxe", &on_tap(&ns, boot));
    expect(&mut vm, "keel: boot.start ", UEFI_BOOT_TIMEOUT, &[&dnsmasq]);
    assert_keel_leased(&mut vm, &dnsmasq);

    let log = dnsmasq.log();
    assert!(
        log.contains("tags: efi64, ktap0") && log.contains("bootfile-name  ipxe.efi"),
        "dnsmasq must have given the UEFI PXE client (tag efi64, not ipxe) ipxe.efi; its log:\n{log}"
    );
    assert!(
        log.contains("tags: ipxe, efi64, ktap0") && log.contains("bootfile-name  boot.ipxe"),
        "dnsmasq must have given the chained iPXE (tags ipxe, efi64) boot.ipxe; its log:\n{log}"
    );
    for file in ["ipxe.efi", "boot.ipxe", "vmlinuz", "initramfs.cpio.zst"] {
        assert_sent(&log, file);
    }
    eprintln!("dnsmasq UEFI PXE -> iPXE: QEMU start -> ready in {:.1} s", vm.started.elapsed().as_secs_f64());
    drop(vm);
    drop(dnsmasq);
    drop(ns);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn qemu_bios_ipxe_from_dnsmasq_with_the_readme_block() {
    let dir = scratch("ipxe");
    let ns = Netns::with_tap("ipxe", TAP, SERVER_CIDR);
    // boot.ipxe made with the README's KEEL_PXE_BASE for HTTP: the script comes over TFTP, the kernel and the
    // initramfs from the web server (TFTP's round trip per block is what makes it slow on real networks).
    let pxe = media::pxe_variant(&dir.join("pxe"), &[("KEEL_PXE_BASE", "http://10.0.0.1/keel/")]);
    let web = web_server(&ns, &dir, &pxe);
    let conf = for_site(&doc_block("# /etc/dnsmasq.d/keel.conf"), TAP, &ipxe_tftp_root(&dir, &pxe));
    let dnsmasq = dnsmasq(&ns, &dir, &conf);
    // SeaBIOS; QEMU's virtio NIC ROM is iPXE, so the first request already carries user class iPXE.
    let boot = Boot::Pxe { dir: build_dir().join("pxe"), uefi: false };
    let mut vm = Vm::boot("dnsmasq_bios_ipxe", &on_tap(&ns, boot));
    expect(&mut vm, "keel: boot.start ", UEFI_BOOT_TIMEOUT, &[&dnsmasq]);
    assert_keel_leased(&mut vm, &dnsmasq);

    let log = dnsmasq.log();
    assert!(
        log.contains("user class: iPXE") && log.contains("bootfile-name  boot.ipxe"),
        "dnsmasq must have given iPXE boot.ipxe (tag ipxe); its log:\n{log}"
    );
    assert_sent(&log, "boot.ipxe");
    for file in ["vmlinuz", "initramfs.cpio.zst"] {
        assert_got(&web, file);
    }
    eprintln!("dnsmasq BIOS iPXE: QEMU start -> ready in {:.1} s", vm.started.elapsed().as_secs_f64());
    drop(vm);
    drop(dnsmasq);
    drop(web);
    drop(ns);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn qemu_uefi_pxe_secure_boot_from_a_proxy_dnsmasq_with_the_guide_block() {
    let dir = scratch("proxy");
    // The boot network: the VM's tap and the proxy on a bridge (10.0.0.1), and the site's own DHCP server, which
    // knows nothing of network boot, in a second namespace on the same bridge (10.0.0.2).
    let ns = Netns::with_bridged_tap("proxy", TAP, SERVER_CIDR);
    let site = ns.peer("site", "10.0.0.2/24");
    let site_dir = dir.join("site");
    std::fs::create_dir_all(&site_dir).unwrap_or_else(|e| panic!("create {}: {e}", site_dir.display()));
    let site_conf = format!("interface={}\ndhcp-range=10.0.0.100,10.0.0.200,12h\n", site.tap);
    let site_dhcp = dnsmasq(&site, &site_dir, &site_conf);
    let block = page_block("docs/bare-metal.md", "# /etc/dnsmasq.d/keel-proxy.conf");
    let conf = for_site(&block, "kbr0", &media::pxe_dir());
    let proxy = dnsmasq(&ns, &dir, &conf);
    let boot =
        Boot::SecureBoot { vars: media::sb_vars(&dir.join("vars.fd")), disks: vec![], tftp: None, bootfiles: vec![] };
    let mut vm = Vm::boot("dnsmasq_proxy_pxe", &on_tap(&ns, boot));
    let servers = [&proxy, &site_dhcp];

    expect(&mut vm, "NBP file downloaded successfully", UEFI_BOOT_TIMEOUT, &servers);
    expect(&mut vm, "EFI stub: UEFI Secure Boot is enabled", UEFI_BOOT_TIMEOUT, &servers);
    let line = expect(&mut vm, "keel: trust.secure_boot ", UEFI_BOOT_TIMEOUT, &servers);
    assert_eq!(field(&line, "enabled"), Some("true"), "{line}");
    expect(&mut vm, "keel: ready ", UEFI_BOOT_TIMEOUT, &servers);
    let bound = expect(&mut vm, "keel: net.dhcp.bound ", STEP_TIMEOUT, &servers);
    assert_eq!(field(&bound, "server"), Some("10.0.0.2"), "Keel must lease from the site's server: {bound}");
    expect(&mut vm, "keel: net.ready ", STEP_TIMEOUT, &servers);

    let log = proxy.log();
    assert!(
        log.contains("PXE(kbr0) 52:54:00:12:34:56 proxy") && log.contains("bootfile name: keel.efi"),
        "the proxy must have answered the firmware's PXE request with keel.efi; its log:\n{log}"
    );
    assert!(!log.contains("DHCPACK"), "a proxy leases nothing; its log:\n{log}");
    assert_sent(&log, "keel.efi");
    let site_log = site_dhcp.log();
    let ip = field(&bound, "addr").unwrap_or_default().split('/').next().unwrap_or_default().to_string();
    let acks = site_log.lines().filter(|l| l.contains(&format!("DHCPACK(kpeer) {ip} "))).count();
    assert!(acks >= 2, "the site's server must have leased {ip} to the firmware and to Keel; its log:\n{site_log}");
    eprintln!("dnsmasq proxy UEFI PXE: QEMU start -> ready in {:.1} s", vm.started.elapsed().as_secs_f64());
    drop(vm);
    drop(proxy);
    drop(site_dhcp);
    drop(site);
    drop(ns);
    let _ = std::fs::remove_dir_all(dir);
}
