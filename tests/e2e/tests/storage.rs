//! End to end: a blank disk becomes the node's persistent /var on the first boot and is found again, not
//! formatted, on the next (a power cycle: QEMU quit and started again on the same images) and after a hard reset
//! (QMP `system_reset`), with what the first boot wrote and the machine id (no SMBIOS uuid) still there; a config
//! volume on a second disk (`serial:disk1`) likewise, mounted with its options. Clean shutdowns leave the
//! filesystems clean (no e2fsck on the next boot); a reset or a power cut leaves them dirty, and the next boot runs
//! e2fsck before it mounts. A disk that already holds a filesystem with data is never written.

use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::{build_dir, field, free_port, Vm, VmConfig, STEP_TIMEOUT};
use std::path::{Path, PathBuf};

const CONFIG: &str = "version = 1\ngeneration = 2\n\
    [[storage.volume]]\nname = \"data\"\ndevice = \"serial:disk1\"\nmount = \"/var/lib/data\"\nlabel = \"data\"\n\
    options = [\"noatime\", \"commit=30\"]\n\
    [[file]]\npath = \"/var/lib/e2e/hello\"\ncontent = \"written on the first boot\\n\"\n";

fn disk(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(mib << 20).unwrap();
    path
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn dev_key() -> PathBuf {
    let key = build_dir().join("keys/dev_ed25519");
    assert!(key.exists(), "{} is missing: make image makes it", key.display());
    key
}

/// The id the node settled on once /var was known (`machine_id.settled`), with its source.
fn settled_id(vm: &mut Vm) -> (String, String) {
    let line = vm.expect("keel: machine_id.settled ", STEP_TIMEOUT);
    let id = field(&line, "machine_id").unwrap_or_default().to_string();
    assert_eq!(id.len(), 32, "{line}");
    assert_eq!(field(&line, "persistent"), Some("true"), "{line}");
    assert_eq!(field(&line, "recorded"), Some("true"), "{line}");
    (id, field(&line, "source").unwrap_or_default().to_string())
}

fn power_off(vm: &mut Vm) {
    vm.qmp(r#"{"execute":"system_powerdown"}"#);
    let done = vm.expect("keel: shutdown.unmounted ", STEP_TIMEOUT);
    assert_eq!(field(&done, "failed"), Some("0"), "{done}");
    vm.expect_exit(STEP_TIMEOUT);
}

#[test]
fn qemu_state_volume_is_made_once_and_var_persists_across_reboots() {
    let dev_key = dev_key();
    let scratch = scratch_dir("storage");
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
    // No SMBIOS uuid: a random id, recorded on the new state volume.
    let (machine_id, source) = settled_id(&mut vm);
    assert_eq!(source, "random");
    vm.expect("keel: config.accepted generation=1 source=image", STEP_TIMEOUT);
    vm.expect_anywhere("keel: config.accepted generation=2 source=http://10.0.2.2", STEP_TIMEOUT);
    vm.expect_anywhere("keel: files.apply op=write path=/var/lib/e2e/hello", STEP_TIMEOUT);
    vm.expect_anywhere("keel: storage.format name=data device=/dev/vd", STEP_TIMEOUT);
    let data = vm.expect_anywhere("mount=/var/lib/data phase=mounted", STEP_TIMEOUT);
    assert!(data.contains("keel: storage.volume name=data generation=2 device=/dev/vd"), "{data}");
    // Mounted with the config's options (as the kernel reports them) on top of the default nosuid,nodev.
    let mounted = vm.expect_anywhere("keel: storage.mounted name=data ", STEP_TIMEOUT);
    let options: Vec<&str> = field(&mounted, "options").unwrap_or_default().split(',').collect();
    for want in ["rw", "nosuid", "nodev", "noatime", "commit=30"] {
        assert!(options.contains(&want), "{want} missing: {mounted}");
    }
    // The node converges only once the volume is mounted.
    vm.expect_anywhere("keel: config.converged generation=2", STEP_TIMEOUT);
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

    // Second boot (a power cycle), no config URL: the same disks are mounted as they are, and /var still holds
    // the config, the file and the machine id: the config comes from the state volume, the file needs no write.
    // QEMU may reboot in place this time, for the reset below.
    let cfg = VmConfig { disks: disks.clone(), no_reboot: false, ..VmConfig::default() };
    let mut vm = Vm::boot("storage_second_boot", &cfg);
    let mut from = 0;
    for boot in ["power cycle", "system_reset"] {
        vm.expect_ready();
        let state = vm.expect("keel: storage.state mode=volume", STEP_TIMEOUT);
        assert_eq!(field(&state, "formatted"), Some("false"), "{boot}: {state}");
        assert_eq!(settled_id(&mut vm), (machine_id.clone(), "state".to_string()), "{boot}: the id changed");
        vm.expect("keel: config.accepted generation=2 source=state", STEP_TIMEOUT);
        vm.expect("keel: config.converged generation=2", STEP_TIMEOUT);
        let transcript = vm.transcript();
        let this_boot = &transcript[from..];
        let data = this_boot.iter().find(|l| l.contains("mount=/var/lib/data phase=mounted"));
        assert!(data.is_some_and(|l| l.contains("storage.volume name=data generation=2 device=/dev/vd")), "{boot}");
        for never in ["keel: storage.format", "keel: storage.partition", "path=/var/lib/e2e/hello"] {
            let hit = this_boot.iter().find(|l| l.contains(never));
            assert!(hit.is_none(), "{boot}: must not show {never:?}: {hit:?}");
        }
        let fsck: Vec<&String> = this_boot.iter().filter(|l| l.contains("keel: storage.fsck ")).collect();
        if boot == "power cycle" {
            // The first boot shut down cleanly.
            assert!(fsck.is_empty(), "{boot}: clean filesystems were checked: {fsck:?}");
            // A hard reset: nothing is unmounted, both filesystems are left dirty.
            vm.qmp(r#"{"execute":"system_reset"}"#);
            from = transcript.len();
        } else {
            for name in ["state", "data"] {
                assert!(fsck.iter().any(|l| l.contains(&format!("name={name} "))), "{boot}: no fsck of {name}");
            }
        }
    }
    power_off(&mut vm);
    let _ = std::fs::remove_dir_all(scratch);
}

fn ext4_image_with_data(dir: &Path, name: &str) -> PathBuf {
    let content = dir.join(format!("{name}-content"));
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("keep.txt"), "precious data\n").unwrap();
    let img = disk(dir, name, 32);
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "precious", "-d"])
        .arg(&content)
        .arg(&img)
        .output()
        .expect("mkfs.ext4 (e2fsprogs) on the host");
    assert!(out.status.success(), "mkfs.ext4: {}", String::from_utf8_lossy(&out.stderr));
    img
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

#[test]
fn qemu_a_disk_with_data_is_left_untouched_and_reported_blocked() {
    let scratch = scratch_dir("storage-foreign");
    let foreign = ext4_image_with_data(&scratch, "foreign.img");
    let before = sha256(&foreign);
    // Even wipe = true does not touch it: what is there is not what the config expects to wipe (its label).
    let config = "version = 1\ngeneration = 2\n\
        [[storage.volume]]\nname = \"old\"\ndevice = \"serial:disk1\"\nmount = \"/var/lib/old\"\n\
        label = \"scratch\"\nwipe = true\n";
    let server = FileServer::start();
    server.put("/node.toml.sig", ssh_sign(config, &dev_key(), "keel-config"));
    server.put("/node.toml", config.as_bytes().to_vec());
    let port = free_port();
    let cfg = VmConfig {
        append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1", server.port),
        disks: vec![disk(&scratch, "state.img", 64), foreign.clone()],
        hostfwd: vec![(port, 7443)],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("storage_foreign_disk", &cfg);
    vm.expect_ready();
    vm.expect("keel: storage.state mode=volume", STEP_TIMEOUT);
    let (machine_id, _) = settled_id(&mut vm);
    let blocked = vm.expect("keel: storage.volume name=old generation=2 device=/dev/vdb ", STEP_TIMEOUT);
    assert!(blocked.contains("phase=blocked reason=") && blocked.contains("never formatted"), "{blocked}");
    assert!(blocked.contains("labelled") && blocked.contains("precious"), "{blocked}");
    // Convergence waits for the volumes, and says why it cannot finish.
    let not = vm.expect("keel: config.not_converged generation=2 controller=storage", STEP_TIMEOUT);
    assert!(not.contains("old: failed: blocked: "), "{not}");
    let lines = vm.transcript();
    for never in ["keel: storage.format name=old", "keel: storage.partition name=old", "config.converged generation=2"]
    {
        assert!(lines.iter().all(|l| !l.contains(never)), "{never:?} in the transcript");
    }
    // The status says so too, under the id the node settled on.
    vm.expect_anywhere("keel: api.listening ", STEP_TIMEOUT);
    let out = keel_e2e::keelctl_cmd()
        .args(["status", "-o", "json", "--node", &format!("127.0.0.1:{port}"), "--known-nodes"])
        .arg(scratch.join("known_nodes"))
        .output()
        .expect("run keelctl");
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "keelctl status: {status}{}", String::from_utf8_lossy(&out.stderr));
    assert!(status.contains(&machine_id), "the status names another machine id: {status}");
    let storage = status.split("\"storage\"").last().unwrap_or_default();
    for want in ["blocked", "never formatted", "/var/lib/old", "\"volume\""] {
        assert!(storage.contains(want), "{want:?} not in the status's storage: {status}");
    }
    power_off(&mut vm);
    drop(vm);

    // On the host: not one byte changed, the filesystem checks clean, and the file is still there.
    assert_eq!(sha256(&foreign), before, "the disk with data was written to");
    let fsck = std::process::Command::new("e2fsck").args(["-f", "-n"]).arg(&foreign).output().expect("e2fsck");
    assert!(fsck.status.success(), "e2fsck -fn: {}", String::from_utf8_lossy(&fsck.stdout));
    let cat = std::process::Command::new("debugfs").args(["-R", "cat /keep.txt"]).arg(&foreign).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "precious data\n");
    let _ = std::fs::remove_dir_all(scratch);
}

fn files_config(generation: u64, files: usize) -> String {
    let mut text = format!("version = 1\ngeneration = {generation}\n");
    for i in 0..files {
        text.push_str(&format!(
            "[[file]]\npath = \"/var/lib/e2e/gen{generation}/f{i}\"\ncontent = \"{}\"\n",
            format!("generation {generation} file {i} ").repeat(100)
        ));
    }
    text
}

#[test]
fn qemu_power_cut_while_writing_then_fsck_and_the_last_good_config_from_state() {
    let scratch = scratch_dir("storage-power-cut");
    let state = disk(&scratch, "state.img", 64);
    let key = dev_key();
    let server = FileServer::start();
    let publish = |text: &str| {
        server.put("/node.toml.sig", ssh_sign(text, &key, "keel-config"));
        server.put("/node.toml", text.as_bytes().to_vec());
    };
    publish(&files_config(2, 2));
    let cfg = VmConfig {
        append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1", server.port),
        disks: vec![state.clone()],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("storage_power_cut", &cfg);
    vm.expect_ready();
    vm.expect("keel: storage.state mode=volume", STEP_TIMEOUT);
    let (machine_id, _) = settled_id(&mut vm);
    vm.expect("keel: config.converged generation=2", STEP_TIMEOUT);
    // Generation 3 writes 40 files, each synced; the power goes as soon as the first one is written (the
    // config itself is saved before the controllers see it).
    publish(&files_config(3, 40));
    vm.expect("keel: files.apply op=write path=/var/lib/e2e/gen3/", STEP_TIMEOUT);
    drop(vm); // SIGKILL: no shutdown, no unmount, no sync
    drop(server);

    let cfg = VmConfig { disks: vec![state], ..VmConfig::default() };
    let mut vm = Vm::boot("storage_after_power_cut", &cfg);
    vm.expect_ready();
    let fsck = vm.expect("keel: storage.fsck name=state ", STEP_TIMEOUT);
    assert!(matches!(field(&fsck, "result"), Some("clean" | "repaired")), "{fsck}");
    let mounted = vm.expect("keel: storage.state mode=volume", STEP_TIMEOUT);
    assert_eq!(field(&mounted, "formatted"), Some("false"), "{mounted}");
    assert_eq!(settled_id(&mut vm), (machine_id, "state".to_string()), "the machine id changed");
    vm.expect("keel: config.accepted generation=3 source=state", STEP_TIMEOUT);
    // What the cut interrupted is finished now.
    vm.expect("keel: config.converged generation=3", STEP_TIMEOUT);
    power_off(&mut vm);
    let _ = std::fs::remove_dir_all(scratch);
}
