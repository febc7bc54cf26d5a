//! End-to-end networking: the node brings its network up over netlink (static from `ip=`, or DHCP from QEMU's
//! built-in server) and reaches a TCP listener on the host through QEMU user networking (host = 10.0.2.2).

use keel_e2e::host_listener::{accept_line, listener};
use keel_e2e::{field, Initrd, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};

#[test]
fn qemu_static_ip_from_cmdline_reaches_the_host() {
    let (l, port) = listener();
    let cfg = VmConfig {
        initrd: Initrd::Test,
        append: format!(
            "ip=10.0.2.15::10.0.2.2:255.255.255.0:static-node:eth0:off:10.0.2.3 \
             keel.run=\"/usr/libexec/keel-testhelper connect 10.0.2.2:{port} static-ok\""
        ),
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("net_static", &cfg);
    vm.expect_ready();
    vm.expect("keel: net.apply op=addr-add if=eth0 addr=10.0.2.15/24", STEP_TIMEOUT);
    vm.expect("keel: net.apply op=route-add route=0.0.0.0/0 via=10.0.2.2", STEP_TIMEOUT);
    let ready = vm.expect("keel: net.ready ", STEP_TIMEOUT);
    assert_eq!(field(&ready, "source"), Some("static"), "{ready}");
    assert_eq!(
        accept_line(&l, BOOT_TIMEOUT).expect("the node never connected to the host listener"),
        "static-ok static-node"
    );
    vm.expect_anywhere("keel: net.hostname name=static-node", STEP_TIMEOUT);
}

#[test]
fn qemu_dhcp_from_qemu_reaches_the_host() {
    let (l, port) = listener();
    let cfg = VmConfig {
        initrd: Initrd::Test,
        append: format!("keel.run=\"/usr/libexec/keel-testhelper connect 10.0.2.2:{port} dhcp-ok\""),
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("net_dhcp", &cfg);
    vm.expect_ready();
    let bound = vm.expect("keel: net.dhcp.bound if=eth0", STEP_TIMEOUT);
    assert_eq!(field(&bound, "addr"), Some("10.0.2.15/24"), "{bound}");
    assert_eq!(field(&bound, "gw"), Some("10.0.2.2"), "{bound}");
    let ready = vm.expect("keel: net.ready ", STEP_TIMEOUT);
    assert_eq!(field(&ready, "source"), Some("dhcp"), "{ready}");
    let line = accept_line(&l, BOOT_TIMEOUT).expect("the node never connected to the host listener");
    assert!(line.starts_with("dhcp-ok keel-"), "{line}");
    vm.expect_anywhere("keel: net.resolv nameservers=1", STEP_TIMEOUT);
    // A clean poweroff releases the lease while the network still works.
    vm.qmp(r#"{"execute":"system_powerdown"}"#);
    vm.expect("keel: net.dhcp.released if=eth0", STEP_TIMEOUT);
    vm.expect("reboot: Power down", STEP_TIMEOUT);
}
