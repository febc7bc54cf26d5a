//! End to end: an LACP bond with a tagged VLAN on it, made from the kernel command line before any config, between
//! two Keel VMs joined by two QEMU socket links (this host's kernel has neither bonding nor 8021q, so the switch
//! side is a guest too: the partner node, configured by its own command line). Each node has
//! `bond=bond0:eth1,eth2:mode=802.3ad,…` and `vlan=bond0.100:bond0` with a static address on the VLAN; the
//! first link is cut on both ends (QMP `set_link … off`) as they boot. The bond must still negotiate LACP over the link
//! that is left, and the node must reach the partner's demo service (port 8080) over VLAN 100 on the bond.

use keel_e2e::{free_port, Initrd, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};

const BOND: &str = "bond=bond0:eth1,eth2:mode=802.3ad,miimon=100,lacp_rate=fast vlan=bond0.100:bond0";

fn links(side: &str, ports: (u16, u16), macs: (&str, &str)) -> Vec<String> {
    let mut args = Vec::new();
    for (i, (port, mac)) in [(ports.0, macs.0), (ports.1, macs.1)].into_iter().enumerate() {
        args.push("-netdev".to_string());
        args.push(format!("socket,id=s{},{side}=127.0.0.1:{port}", i + 1));
        args.push("-device".to_string());
        // 802.3ad aggregates only links that report speed and duplex (virtio-net reports none by default).
        args.push(format!("virtio-net-pci,netdev=s{},mac={mac},speed=10000,duplex=full", i + 1));
    }
    args
}

#[test]
// Flaky, not broken (main at 77557fc, 2026-12-03): 3 of 4 runs pass in ~4 s. The failing run: on the node, eth2's
// carrier comes up (miimon "link status definitely up") in the same instant bond0 is set up after both members
// were enslaved to the still-down bond; the kernel logs "bond0: now running without any active interface!", no
// aggregator is ever selected (no "No 802.3ad response" either), and the helper's 60 s of connects get
// EHOSTUNREACH. Next step: bring the bond up before enslaving (or re-enslave a member of a bond with no active
// aggregator) and print /proc/net/bonding/bond0 on failure, then run it many times before removing the ignore.
#[ignore = "flaky (about 1 run in 4): the node's 802.3ad bond can come up with no active aggregator and stay so; \
            see the comment above; run with --ignored"]
fn qemu_lacp_bond_with_vlan_from_the_command_line_survives_a_cut_link() {
    let ports = (free_port(), free_port());
    // The partner listens on both sockets; it boots first and serves the demo on 10.9.100.2:8080.
    let partner_cfg = VmConfig {
        append: format!("{BOND} ip=10.9.100.2:::255.255.255.0::bond0.100:off"),
        extra_args: links("listen", ports, ("52:54:00:00:02:01", "52:54:00:00:02:02")),
        ..VmConfig::default()
    };
    let mut partner = Vm::boot("bond_partner", &partner_cfg);
    let node_cfg = VmConfig {
        initrd: Initrd::Test,
        append: format!(
            "{BOND} ip=10.9.100.1:::255.255.255.0::bond0.100:off \
             keel.run=\"/usr/libexec/keel-testhelper connect 10.9.100.2:8080 over-the-bond\""
        ),
        extra_args: links("connect", ports, ("52:54:00:00:03:01", "52:54:00:00:03:02")),
        ..VmConfig::default()
    };
    let mut node = Vm::boot("bond_node", &node_cfg);
    // Cut the first link at once, on both ends (as a pulled cable drops carrier on both): the bonds have to do
    // with the second.
    for vm in [&mut partner, &mut node] {
        let reply = vm.qmp(r#"{"execute":"set_link","arguments":{"name":"s1","up":false}}"#);
        assert!(reply.contains("return"), "{reply}");
    }

    for vm in [&mut partner, &mut node] {
        vm.expect_ready();
        vm.expect_anywhere("keel: net.apply op=link-add if=bond0 kind=bond", STEP_TIMEOUT);
        vm.expect_anywhere("keel: net.apply op=link-master if=eth1 master=bond0", STEP_TIMEOUT);
        vm.expect_anywhere("keel: net.apply op=link-master if=eth2 master=bond0", STEP_TIMEOUT);
        vm.expect_anywhere("keel: net.apply op=link-add if=bond0.100 kind=vlan", STEP_TIMEOUT);
        vm.expect_anywhere("keel: net.apply op=addr-add if=bond0.100 addr=10.9.100.", STEP_TIMEOUT);
    }
    // Traffic over VLAN 100 on the bond, on the one link left.
    node.expect_anywhere("testhelper: connected to 10.9.100.2:8080", BOOT_TIMEOUT);
    partner.expect_anywhere("keel: net.ready ", STEP_TIMEOUT);
    // LACP negotiated with the partner (the kernel's 802.3ad code complains when no partner answers).
    for vm in [&partner, &node] {
        let transcript = vm.transcript();
        assert!(
            !transcript.iter().any(|l| l.contains("No 802.3ad response from the link partner")),
            "{}: LACP did not negotiate",
            vm.name
        );
    }
}
