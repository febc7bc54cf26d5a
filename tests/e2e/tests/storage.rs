//! End to end: a blank disk becomes the node's persistent /var on the first boot and is found again, not
//! formatted, on the next, with what the first boot wrote still there; a config volume on a second disk
//! (`serial:disk1`) likewise. Both shutdowns leave the filesystems clean (no e2fsck on the second boot).

use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::{build_dir, field, Vm, VmConfig, STEP_TIMEOUT};
use std::path::{Path, PathBuf};

const CONFIG: &str = "version = 1\ngeneration = 2\n\
    [[storage.volume]]\nname = \"data\"\ndevice = \"serial:disk1\"\nmount = \"/var/lib/data\"\nlabel = \"data\"\n\
    [[file]]\npath = \"/var/lib/e2e/hello\"\ncontent = \"written on the first boot\\n\"\n";

fn disk(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(mib << 20).unwrap();
    path
}

fn power_off(vm: &mut Vm) {
    vm.qmp(r#"{"execute":"system_powerdown"}"#);
    let done = vm.expect("keel: shutdown.unmounted ", STEP_TIMEOUT);
    assert_eq!(field(&done, "failed"), Some("0"), "{done}");
    vm.expect_exit(STEP_TIMEOUT);
}

#[test]
fn qemu_state_volume_is_made_once_and_var_persists_across_reboots() {
    let dev_key = build_dir().join("keys/dev_ed25519");
    assert!(dev_key.exists(), "{} is missing: make image makes it", dev_key.display());
    let scratch = std::env::temp_dir().join(format!("keel-e2e-storage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    // The state disk (64 MiB, the smallest blank disk taken automatically) and a smaller one for the volume.
    let disks = vec![disk(&scratch, "state.img", 64), disk(&scratch, "data.img", 32)];

    // First boot: blank disks; the node pulls generation 2, which names the data volume and writes a file to /var.
    let server = FileServer::start();
    server.put("/node.toml.sig", ssh_sign(CONFIG, &dev_key, "keel-config"));
    server.put("/node.toml", CONFIG.as_bytes().to_vec());
    let cfg = VmConfig {
        append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1", server.port),
        disks: disks.clone(),
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("storage_first_boot", &cfg);
    vm.expect_ready();
    vm.expect("keel: storage.partition name=state disk=/dev/vd", STEP_TIMEOUT);
    vm.expect("keel: storage.format name=state device=/dev/vd", STEP_TIMEOUT);
    let state = vm.expect("keel: storage.state mode=volume", STEP_TIMEOUT);
    assert_eq!((field(&state, "mount"), field(&state, "formatted")), (Some("/var"), Some("true")), "{state}");
    vm.expect("keel: config.accepted generation=1 source=image", STEP_TIMEOUT);
    vm.expect_anywhere("keel: config.accepted generation=2 source=http://10.0.2.2", STEP_TIMEOUT);
    vm.expect_anywhere("keel: files.apply op=write path=/var/lib/e2e/hello", STEP_TIMEOUT);
    vm.expect_anywhere("keel: storage.format name=data device=/dev/vd", STEP_TIMEOUT);
    let data = vm.expect_anywhere("mount=/var/lib/data phase=mounted", STEP_TIMEOUT);
    assert!(data.contains("keel: storage.volume name=data generation=2 device=/dev/vd"), "{data}");
    power_off(&mut vm);
    drop(vm);
    drop(server);

    // What the first boot left on the disks: a GPT whose one partition is named KEEL_STATE / data.
    for (img, name) in [(&disks[0], "KEEL_STATE"), (&disks[1], "data")] {
        let bytes = std::fs::read(img).unwrap();
        assert_eq!(&bytes[512..520], b"EFI PART", "{}", img.display());
        let utf16: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(&bytes[1024 + 56..1024 + 56 + utf16.len()], utf16.as_slice(), "{}", img.display());
    }

    // Second boot, no config URL: the same disks are mounted as they are, and /var still holds the config and
    // the file: the config comes from the state volume, and the file needs no write.
    let cfg = VmConfig { disks: disks.clone(), ..VmConfig::default() };
    let mut vm = Vm::boot("storage_second_boot", &cfg);
    vm.expect_ready();
    let state = vm.expect("keel: storage.state mode=volume", STEP_TIMEOUT);
    assert_eq!(field(&state, "formatted"), Some("false"), "{state}");
    vm.expect("keel: config.accepted generation=2 source=state", STEP_TIMEOUT);
    let data = vm.expect_anywhere("mount=/var/lib/data phase=mounted", STEP_TIMEOUT);
    assert!(data.contains("keel: storage.volume name=data generation=2 device=/dev/vd"), "{data}");
    vm.expect("keel: config.converged generation=2", STEP_TIMEOUT);
    let transcript = vm.transcript();
    for never in ["keel: storage.format", "keel: storage.partition", "keel: storage.fsck", "path=/var/lib/e2e/hello"] {
        let hit = transcript.iter().find(|l| l.contains(never));
        assert!(hit.is_none(), "the second boot must not show {never:?}: {hit:?}");
    }
    power_off(&mut vm);
    let _ = std::fs::remove_dir_all(scratch);
}
