//! End to end: a machine with no disk boots Keel from the network, as bare metal does. QEMU's firmware boots
//! from the NIC, whose iPXE ROM gets `boot.ipxe` from QEMU's DHCP and TFTP server; the script loads the kernel and
//! initramfs over TFTP, and the node pulls and converges the signed config named by the `keel.config` URL the
//! script put on its command line, with the node's `${hostname}`, `${uuid}` and `${mac}` filled in by iPXE. Under
//! UEFI firmware the same script boots too (the kernel's EFI stub takes the initramfs iPXE names in `initrd=`).

use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::{build_dir, field, media, Boot, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT, UEFI_BOOT_TIMEOUT};

const UUID: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
/// What the node makes of UUID (its machine id) and its default host name.
const MACHINE_ID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const HOSTNAME: &str = "keel-0a1b2c3d";
/// QEMU's MAC for the first NIC.
const MAC: &str = "52:54:00:12:34:56";

#[test]
fn shipped_boot_script_loads_kernel_and_initramfs_from_one_place() {
    let text = std::fs::read_to_string(media::pxe_dir().join("boot.ipxe")).expect("read build/pxe/boot.ipxe");
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#') || l.starts_with("#!")).collect();
    assert_eq!(lines.first(), Some(&"#!ipxe"), "iPXE runs only scripts that start with #!ipxe:\n{text}");
    assert!(lines.iter().any(|l| l.ends_with("dhcp")), "the script must configure the network:\n{text}");
    // Both from the same place: by default the TFTP server the DHCP answer names (KEEL_PXE_BASE).
    let initrd = lines.iter().find_map(|l| l.strip_prefix("initrd ")).unwrap_or_else(|| panic!("no initrd:\n{text}"));
    let base = initrd.strip_suffix("initramfs.cpio.zst").unwrap_or_else(|| panic!("initrd of another file: {initrd}"));
    let kernel = lines.iter().find(|l| l.starts_with("kernel ")).unwrap_or_else(|| panic!("no kernel line:\n{text}"));
    assert!(kernel.starts_with(&format!("kernel {base}vmlinuz console=ttyS0")), "{kernel}");
    assert_eq!(lines.last(), Some(&"boot"), "the script must end by booting:\n{text}");
}

fn config(generation: u64) -> String {
    format!(
        "version = 1\ngeneration = {generation}\n[node]\nuuid = \"{UUID}\"\nhostname = \"pxe-{generation}\"\n\
         [[file]]\npath = \"/run/booted-by\"\ncontent = \"pxe\\n\"\n"
    )
}

#[test]
fn qemu_pxe_boots_over_tftp_and_converges_the_served_config() {
    let dev_key = build_dir().join("keys/dev_ed25519");
    assert!(dev_key.exists(), "{} is missing: make image makes it", dev_key.display());
    let server = FileServer::start();
    // The node's own variables, as an operator writes them in KEEL_PXE_CONFIG_URL.
    let template = format!("http://10.0.2.2:{}/nodes/${{hostname}}/${{uuid}}/${{mac}}.toml", server.port);
    let path = format!("/nodes/{HOSTNAME}/{MACHINE_ID}/{MAC}.toml");
    let text = config(7);
    server.put(&format!("{path}.sig"), ssh_sign(&text, &dev_key, "keel-config"));
    server.put(&path, text.into_bytes());

    let scratch = std::env::temp_dir().join(format!("keel-e2e-pxe-{}", std::process::id()));
    let dir = media::pxe_variant(
        &scratch,
        &[("KEEL_PXE_CONFIG_URL", &template), ("KEEL_PXE_APPEND", "keel.config_interval=2")],
    );
    let cfg = VmConfig { boot: Boot::Pxe { dir, uefi: false }, uuid: Some(UUID.into()), ..VmConfig::default() };
    let mut vm = Vm::boot("pxe_boot", &cfg);

    // What reached the kernel: the URL with iPXE's values, exactly as the node would have substituted them.
    let url = format!("http://10.0.2.2:{}{path}", server.port);
    let cmdline = vm.expect("Command line: ", BOOT_TIMEOUT);
    assert!(cmdline.contains(&format!(" keel.config={url} ")), "iPXE passed another URL: {cmdline}");
    assert!(cmdline.contains("console=ttyS0"), "{cmdline}");
    vm.expect_ready();
    eprintln!("pxe: QEMU start -> ready in {:.1} s", vm.started.elapsed().as_secs_f64());

    let accepted = vm.expect("keel: config.accepted generation=7 ", STEP_TIMEOUT);
    assert!(accepted.contains(&format!("source={url}")), "pulled from another URL: {accepted}");
    vm.expect("keel: config.converged generation=7", STEP_TIMEOUT);
    vm.expect_anywhere("keel: net.hostname name=pxe-7", STEP_TIMEOUT);
    assert!(server.requests() >= 2, "the node must have fetched the config and its signature");
    let _ = std::fs::remove_dir_all(scratch);
}

#[test]
fn qemu_uefi_pxe_boots_the_shipped_script_to_ready() {
    let cfg = VmConfig {
        boot: Boot::Pxe { dir: media::pxe_dir(), uefi: true },
        uuid: Some(UUID.into()),
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("pxe_uefi", &cfg);
    vm.expect("Command line: ", UEFI_BOOT_TIMEOUT);
    vm.expect("efi: EFI v", STEP_TIMEOUT);
    let ready = vm.expect("keel: ready ", UEFI_BOOT_TIMEOUT);
    assert_eq!(field(&ready, "machine_id"), Some(MACHINE_ID), "{ready}");
    eprintln!("pxe (UEFI): QEMU start -> ready in {:.1} s", vm.started.elapsed().as_secs_f64());
}
