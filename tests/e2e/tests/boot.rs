//! End-to-end: the foundation's promises, checked on a real kernel in QEMU (TCG). Every test here boots a VM,
//! hence the `qemu_` prefix; they need the images from `make image` and run in `make test`.

use keel_e2e::{field, Initrd, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};

const UUID: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";

fn assert_no_kernel_panic(vm: &Vm) {
    for line in vm.transcript() {
        assert!(
            !line.contains("Kernel panic") && !line.contains("Attempted to kill init"),
            "VM {:?}: the kernel panicked: {line}",
            vm.name
        );
    }
}

#[test]
fn qemu_boots_to_ready_with_identity_from_smbios() {
    let cfg =
        VmConfig { uuid: Some(UUID.into()), append: "keel.bogus=1 keel.panic=explode".into(), ..VmConfig::default() };
    let mut vm = Vm::boot("boots_to_ready", &cfg);
    // Each boot phase is marked, in order, with its time since kernel start.
    let start = vm.expect("keel: boot.start ", BOOT_TIMEOUT);
    assert!(field(&start, "uptime_ms").is_some(), "{start}");
    let mounts = vm.expect("keel: boot.mounts ", STEP_TIMEOUT);
    assert_eq!(field(&mounts, "failed"), Some("0"), "{mounts}");
    assert_eq!(field(&mounts, "mounted"), Some("9"), "{mounts}");
    // Unknown and invalid keel.* keys are reported, and the boot goes on.
    vm.expect("keel: cmdline.unknown key=keel.bogus", STEP_TIMEOUT);
    vm.expect("keel: cmdline.invalid key=keel.panic", STEP_TIMEOUT);
    let identity = vm.expect("keel: boot.identity ", STEP_TIMEOUT);
    assert_eq!(field(&identity, "source"), Some("smbios"), "{identity}");
    vm.expect("keel: boot.rootfs mode=ro", STEP_TIMEOUT);
    let ready = vm.expect_ready();
    assert_eq!(field(&ready, "machine_id"), Some("0a1b2c3d4e5f60718293a4b5c6d7e8f9"), "{ready}");
    assert_eq!(field(&ready, "hostname"), Some("keel-0a1b2c3d"), "{ready}");
    // The ACPI power button (and the keyboard, which also has a power key) are watched.
    let buttons: u32 = field(&ready, "power_buttons").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(buttons >= 1, "no power button watched: {ready}");
    for key in ["uptime_ms", "init_ms", "rss_kib"] {
        let v: f64 = field(&ready, key).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{key} in {ready}"));
        assert!(v > 0.0, "{key} in {ready}");
    }
    // Each line is printed once: the kernel echoes kmsg, so init must not write the console as well.
    let readies = vm.transcript().iter().filter(|l| l.contains("keel: ready ")).count();
    assert_eq!(readies, 1, "the ready line was printed {readies} times");
    assert_no_kernel_panic(&vm);
}

#[test]
fn qemu_random_machine_id_without_smbios_uuid() {
    let mut vm =
        Vm::boot("random_machine_id", &VmConfig { append: "keel.hostname=edge-1".into(), ..Default::default() });
    let identity = vm.expect("keel: boot.identity ", BOOT_TIMEOUT);
    // QEMU without -uuid presents no real product UUID (or a placeholder): the id is random, the host name set.
    assert_eq!(field(&identity, "source"), Some("random"), "{identity}");
    let id = field(&identity, "machine_id").unwrap_or_default();
    assert_eq!(id.len(), 32, "{identity}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{identity}");
    let ready = vm.expect_ready();
    assert_eq!(field(&ready, "hostname"), Some("edge-1"), "{ready}");
}

#[test]
fn qemu_reaps_orphans() {
    let cfg = VmConfig {
        initrd: Initrd::Test,
        append: "keel.run=\"/usr/libexec/keel-testhelper orphans 3\"".into(),
        ..Default::default()
    };
    let mut vm = Vm::boot("reaps_orphans", &cfg);
    vm.expect_ready();
    let started = vm.expect("keel: run.start ", STEP_TIMEOUT);
    let helper_pid = field(&started, "pid").unwrap_or_default().to_string();
    let mut orphans = Vec::new();
    for _ in 0..3 {
        let line = vm.expect("testhelper: orphan pid=", STEP_TIMEOUT);
        orphans.push((
            field(&line, "pid").unwrap_or_default().to_string(),
            field(&line, "code").unwrap_or_default().to_string(),
        ));
    }
    // The helper itself is PID 1's own child: its status goes to the one waiting on it, not to the orphan log.
    vm.expect(&format!("keel: run.exit pid={helper_pid} status=exited:0"), STEP_TIMEOUT);
    // Its children outlive it, are re-parented to PID 1, and are reaped with their exit codes (in any order).
    for (pid, code) in &orphans {
        vm.expect_anywhere(&format!("keel: reap.orphan pid={pid} status=exited:{code}"), STEP_TIMEOUT);
    }
    assert_no_kernel_panic(&vm);
}

#[test]
fn qemu_power_button_powers_off_cleanly() {
    let mut vm = Vm::boot("power_button", &VmConfig::default());
    vm.expect_ready();
    vm.qmp(r#"{"execute":"system_powerdown"}"#);
    vm.expect("keel: shutdown.start action=poweroff reason=power-button", STEP_TIMEOUT);
    vm.expect("keel: shutdown.stopped killed=0", STEP_TIMEOUT);
    let done = vm.expect("keel: shutdown.unmounted ", STEP_TIMEOUT);
    assert_eq!(field(&done, "failed"), Some("0"), "{done}");
    let count: u32 = field(&done, "unmounted").and_then(|v| v.parse().ok()).unwrap_or(0);
    let detached: u32 = field(&done, "detached").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(count + detached >= 9, "every early mount must be released: {done}");
    vm.expect("reboot: Power down", STEP_TIMEOUT);
    vm.expect_exit(STEP_TIMEOUT);
    assert_no_kernel_panic(&vm);
}

#[test]
fn qemu_ctrl_alt_del_reboots() {
    let mut vm = Vm::boot("ctrl_alt_del", &VmConfig::default());
    vm.expect_ready();
    vm.qmp(
        r#"{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"ctrl"},{"type":"qcode","data":"alt"},{"type":"qcode","data":"delete"}]}}"#,
    );
    vm.expect("keel: shutdown.start action=reboot reason=signal:SIGINT", STEP_TIMEOUT);
    vm.expect("keel: shutdown.unmounted ", STEP_TIMEOUT);
    vm.expect("reboot: Restarting system", STEP_TIMEOUT);
    vm.expect_exit(STEP_TIMEOUT);
    assert_no_kernel_panic(&vm);
}

#[test]
fn qemu_sigterm_powers_off_and_stops_children() {
    let cfg = VmConfig {
        initrd: Initrd::Test,
        append: "keel.run=\"/usr/libexec/keel-testhelper signal-init TERM\"".into(),
        ..Default::default()
    };
    let mut vm = Vm::boot("sigterm", &cfg);
    vm.expect_ready();
    vm.expect("keel: shutdown.start action=poweroff reason=signal:SIGTERM", STEP_TIMEOUT);
    vm.expect("keel: shutdown.unmounted ", STEP_TIMEOUT);
    vm.expect("reboot: Power down", STEP_TIMEOUT);
    vm.expect_exit(STEP_TIMEOUT);
    assert_no_kernel_panic(&vm);
}

#[test]
fn qemu_panic_is_logged_and_reboots_without_kernel_panic() {
    let cfg = VmConfig { append: "keel.test=panic keel.panic_delay=1".into(), ..Default::default() };
    let mut vm = Vm::boot("panic_reboots", &cfg);
    vm.expect_ready();
    let panic = vm.expect("keel: panic message=", STEP_TIMEOUT);
    assert!(panic.contains("forced panic after ready"), "{panic}");
    assert!(field(&panic, "location").is_some_and(|l| l.contains(".rs:")), "{panic}");
    vm.expect("keel: panic.reboot delay_ms=1000", STEP_TIMEOUT);
    vm.expect("reboot: Restarting system", STEP_TIMEOUT);
    vm.expect_exit(STEP_TIMEOUT);
    assert_no_kernel_panic(&vm);
}
