//! End to end, PID 1 never waits without limit on a child (issue 13): a service stuck in uninterruptible sleep
//! (`keel-testhelper read-direct`: an O_DIRECT read from a disk QEMU throttles to 1 byte/s) is dropped by the next
//! config. Its stop can never finish (SIGKILL is not delivered to a process in D state), yet the API keeps
//! answering, that config's other resources converge (a sysctl, a file, and a new service the services manager
//! starts once it gave up waiting), the stuck stop is reported (`service.stuck`, `services.stop_unfinished`, and
//! the service shown as `stopping` with the reason), and the config after it converges too, all but the services
//! kind: it stays unconverged (the service shown `stopping` with why) as long as a process the config dropped still runs.

use keel_e2e::api_client::Api;
use keel_e2e::http_server::ssh_sign;
use keel_e2e::services::{default_demo, lines_with};
use keel_e2e::{build_dir, field, free_port, http_get, Initrd, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const UUID: &str = "6b65656c-0000-4000-8000-0000000000d5";
/// A status answer slower than this counts as the API not answering (TCG on a loaded 2-core machine; normally
/// tens of milliseconds).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// QEMU's throttle lets the first request through and then holds the next until the bucket drains: at 1 byte/s
/// after a 64 KiB read, about 18 hours.
const THROTTLE: &str = r#"{"execute":"block_set_io_throttle","arguments":{"id":"/machine/peripheral/slow-disk/virtio-backend","bps":1,"bps_rd":0,"bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":0}}"#;

fn slow_disk() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("stuck_slow.img");
    let _ = std::fs::remove_file(&path);
    std::fs::File::create(&path).and_then(|f| f.set_len(16 << 20)).expect("make a sparse disk image");
    path
}

/// Reads the slow disk (the VM's only disk, /dev/vda) as root without capabilities; stopped after 1 s, SIGKILL
/// then has 5 s before the supervisor reports it stuck.
const SLOW: &str = "[[service]]\nname = \"slow\"\nexec = \"/usr/libexec/keel-testhelper\"\n\
                    args = [\"read-direct\", \"/dev/vda\"]\nuid = 0\ngid = 0\ndevices = [\"/dev/vda\"]\n\
                    stop_timeout = 1\nrestart = \"never\"\n";

fn config(generation: u64, ip_forward: u8, service: &str) -> String {
    format!(
        "version = 1\ngeneration = {generation}\n[sysctl]\n\"net.ipv4.ip_forward\" = \"{ip_forward}\"\n\
         [[file]]\npath = \"/run/stuck-e2e\"\ncontent = \"generation {generation}\\n\"\n\n{service}"
    )
}

/// `PUT /v1/config`, signed with the development key, on its own thread: the node answers once the config
/// converged or after its 30 s bound, and the test watches the node meanwhile.
fn push(api: &Api, text: String) -> JoinHandle<Result<(u16, Value), String>> {
    let key = build_dir().join("keys/dev_ed25519");
    let sig = String::from_utf8(ssh_sign(&text, &key, "keel-config")).expect("an armored signature is text");
    let api = api.clone();
    std::thread::spawn(move || api.push(&text, &sig))
}

fn accepted(what: &str, push: JoinHandle<Result<(u16, Value), String>>) -> Value {
    let (code, v) = push.join().expect("the push thread").unwrap_or_else(|e| panic!("push {what}: {e}"));
    assert!(code == 200 && v["accepted"] == Value::Bool(true), "push {what}: HTTP {code}: {v}");
    v
}

/// The node's status, which must answer within [`ANSWER_WITHIN`].
fn status(vm: &Vm, api: &Api) -> Value {
    let asked = Instant::now();
    let st = api.status().unwrap_or_else(|e| {
        panic!(
            "VM {:?}: /v1/status failed after {:?}: {e} (console in target/e2e/{}.log)",
            vm.name,
            asked.elapsed(),
            vm.name
        )
    });
    let took = asked.elapsed();
    assert!(took < ANSWER_WITHIN, "VM {:?}: /v1/status took {took:?}: PID 1 is not answering", vm.name);
    st
}

/// Polls the status until `done` holds; returns it and how many answers it took.
fn until(vm: &Vm, api: &Api, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> (Value, u32) {
    let deadline = Instant::now() + timeout;
    let mut answers = 0;
    loop {
        let st = status(vm, api);
        answers += 1;
        if done(&st) {
            return (st, answers);
        }
        assert!(
            Instant::now() < deadline,
            "VM {:?}: not within {}s: {what}; last status (console in target/e2e/{}.log):\nconfig {}\ncontrollers {}\n\
             services {}",
            vm.name,
            timeout.as_secs(),
            vm.name,
            st["config"],
            st["controllers"],
            st["services"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn kind_at(st: &Value, kind: &str, generation: u64) -> bool {
    let c = &st["controllers"][kind];
    c["generation"].as_u64() == Some(generation) && c["converged"] == Value::Bool(true)
}

fn services_at(st: &Value, generation: u64) -> bool {
    st["services"]["generation"].as_u64() == Some(generation)
}

fn service_state<'a>(st: &'a Value, name: &str) -> &'a str {
    st["services"]["services"][name]["state"].as_str().unwrap_or("absent")
}

/// The services kind's state, as `config.convergence` lists it (None: not listed).
fn services_state(st: &Value) -> Option<String> {
    let kinds = st["config"]["convergence"].as_array()?;
    let services = kinds.iter().find(|k| k["kind"] == "services")?;
    services["state"].as_str().map(str::to_string)
}

/// The dropped `slow` is still listed, stopping, with the reason its stop did not finish.
fn shown_stuck(st: &Value) -> bool {
    let slow = &st["services"]["services"]["slow"];
    slow["state"] == "stopping" && slow["reason"].as_str().is_some_and(|r| r.contains("SIGKILL"))
}

/// The index of the first console line containing all of `needles`.
fn line_index(vm: &Vm, needles: &[&str]) -> usize {
    let t = vm.transcript();
    t.iter()
        .position(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("VM {:?}: no console line with {needles:?} (target/e2e/{}.log)", vm.name, vm.name))
}

#[test]
fn qemu_a_service_stuck_in_uninterruptible_sleep_blocks_neither_the_api_nor_later_configs() {
    let (api_port, demo_port) = (free_port(), free_port());
    let disk = slow_disk();
    let cfg = VmConfig {
        initrd: Initrd::Test,
        uuid: Some(UUID.into()),
        // The blank disk is the service's, not the node's state volume.
        append: "keel.state=none".into(),
        hostfwd: vec![(api_port, 7443), (demo_port, 8080)],
        extra_args: vec![
            "-drive".into(),
            format!("file={},if=none,id=slow,format=raw", disk.display()),
            "-device".into(),
            "virtio-blk-pci,drive=slow,id=slow-disk,serial=slow".into(),
        ],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("stuck_service", &cfg);
    vm.expect_ready();
    let listening = vm.expect_anywhere("keel: api.listening ", BOOT_TIMEOUT);
    let fingerprint = field(&listening, "fingerprint").unwrap_or_else(|| panic!("no fingerprint in {listening:?}"));
    let key = build_dir().join("keys/dev_ed25519");
    assert!(key.exists(), "{} is missing: make image makes it", key.display());
    let api = Api::new(api_port, Some(fingerprint)).with_key(&key).with_timeout(Duration::from_secs(60));
    vm.expect_anywhere("keel: net.ready", STEP_TIMEOUT);
    vm.expect_anywhere("keel: config.converged generation=1", STEP_TIMEOUT);

    // The kernel has probed the disk; from now on its reads (after one) wait for QEMU's throttle.
    let reply = vm.qmp(THROTTLE);
    assert!(reply.contains("\"return\""), "block_set_io_throttle: {reply}");

    // Generation 2 runs the reader; it gets stuck in D state.
    let v = accepted("generation 2", push(&api, config(2, 0, SLOW)));
    assert_eq!(v["generation"].as_u64(), Some(2), "{v}");
    let stuck = vm.expect_anywhere("testhelper: read-direct tid=", STEP_TIMEOUT);
    assert!(stuck.contains("state=D"), "the reader is not in uninterruptible sleep: {stuck}");

    // Generation 3 drops it (its stop never finishes), starts the demo and changes a sysctl and a file.
    let gen3 = push(&api, config(3, 1, default_demo()));
    let asked = Instant::now();
    let (_, mut answers) = until(&vm, &api, "generation 3's sysctl and file applied", STEP_TIMEOUT, |st| {
        kind_at(st, "sysctl", 3) && kind_at(st, "files", 3)
    });
    let (st, n) = until(
        &vm,
        &api,
        "the stuck stop reported and generation 3's services applied (`demo` running)",
        STEP_TIMEOUT,
        |st| shown_stuck(st) && services_at(st, 3) && service_state(st, "demo") == "running",
    );
    answers += n;
    eprintln!(
        "stuck: generation 3 applied around the stuck stop in {:?}; slow: {}",
        asked.elapsed(),
        st["services"]["services"]["slow"]
    );
    vm.expect_anywhere("keel: service.stuck name=slow ", STEP_TIMEOUT);
    vm.expect_anywhere("keel: services.stop_unfinished name=slow ", STEP_TIMEOUT);
    // The other kinds did not wait for the services manager's stop.
    let applied = line_index(&vm, &["keel: sysctl.apply ", "generation=3"]);
    assert!(applied < line_index(&vm, &["keel: service.stuck name=slow "]), "the sysctl waited for the stuck stop");
    let hello = http_get(demo_port, "/", STEP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(hello.contains("config generation 3"), "{hello}");

    // Generation 4 changes the sysctl and the file again: converges while `slow` still lingers.
    let gen4 = push(&api, config(4, 0, default_demo()));
    let (st, n) = until(&vm, &api, "generation 4 applied", STEP_TIMEOUT, |st| {
        kind_at(st, "sysctl", 4) && kind_at(st, "files", 4) && services_at(st, 4)
    });
    answers += n;
    assert!(shown_stuck(&st), "the stuck service is no longer reported: {}", st["services"]);
    assert_eq!(service_state(&st, "demo"), "running", "{}", st["services"]);
    let hello = http_get(demo_port, "/", STEP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(hello.contains("config generation 4"), "{hello}");
    // One meaning of "converged": a process the config no longer has still runs, so the services kind (and the
    // node) is not converged, with the lingering service named as its problem; everything else is.
    let (st, n) = until(&vm, &api, "the services kind reported unconverged while `slow` lingers", STEP_TIMEOUT, |st| {
        services_state(st).is_some_and(|k| k != "converged") && shown_stuck(st)
    });
    answers += n;
    assert_eq!(st["services"]["converged"], Value::Bool(false), "{}", st["services"]);
    assert_ne!(st["config"]["converged_generation"].as_u64(), Some(4), "{}", st["config"]);

    // Both pushes were answered (within the node's bound), and the API answered every status request meanwhile.
    let v3 = accepted("generation 3", gen3);
    let v4 = accepted("generation 4", gen4);
    assert_eq!(v4["converged"], Value::Bool(false), "generation 4 answered converged while `slow` lingers: {v4}");
    assert!(answers >= 5, "only {answers} status answers while the service was stuck");
    let t = vm.transcript();
    eprintln!(
        "stuck: {answers} status answers, each within {ANSWER_WITHIN:?}; push answers {v3} {v4}; reads done {}",
        lines_with(&t, &["read-direct read offset="]).len()
    );
    let _ = std::fs::remove_file(&disk);
}
