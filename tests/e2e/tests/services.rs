//! End to end: the default config's demo service answers through a host port forward with the node's host name,
//! runs with exactly the privileges and limits its definition asks for, a pulled config that changes only the
//! demo's environment restarts only the demo, and at power-off the services stop before everything else.

use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::{build_dir, field, free_port, http_get, Vm, VmConfig, STEP_TIMEOUT};

const UUID: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
const HOSTNAME: &str = "keel-0a1b2c3d";
const DEFAULT_CONFIG: &str = include_str!("../../../image/default-node.toml");

/// The demo's definition exactly as in the image's default config, so a config that repeats it leaves it alone.
fn default_demo() -> &'static str {
    let start = DEFAULT_CONFIG.find("[[service]]\nname = \"demo\"").expect("the default config defines the demo");
    &DEFAULT_CONFIG[start..]
}

/// A config with the demo (optionally with extra keys) and a second demo instance, "other", on port 8081.
fn config(generation: u64, demo_extra: &str) -> String {
    format!(
        "version = 1\ngeneration = {generation}\n\n{}\n{demo_extra}\n\n[[service]]\nname = \"other\"\n\
         exec = \"/usr/libexec/keel-demo\"\nenv = {{ KEEL_DEMO_PORT = \"8081\" }}\nuid = 65534\ngid = 65534\n\
         restart = \"always\"\nafter = [\"network\", \"service:demo\"]\n",
        default_demo().trim_end()
    )
}

#[test]
fn qemu_demo_service_answers_and_a_changed_definition_restarts_only_it() {
    let dev_key = build_dir().join("keys/dev_ed25519");
    assert!(dev_key.exists(), "{} is missing: make image makes it", dev_key.display());
    let server = FileServer::start();
    let publish = |text: &str| {
        server.put("/node.toml.sig", ssh_sign(text, &dev_key, "keel-config"));
        server.put("/node.toml", text.as_bytes().to_vec());
    };
    let (port, other_port) = (free_port(), free_port());
    let cfg = VmConfig {
        uuid: Some(UUID.into()),
        append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1", server.port),
        hostfwd: vec![(port, 8080), (other_port, 8081)],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("services_demo", &cfg);
    vm.expect_ready();
    vm.expect("keel: config.accepted generation=1 source=image", STEP_TIMEOUT);
    let start = vm.expect("keel: service.start name=demo ", STEP_TIMEOUT);
    assert_eq!(field(&start, "uid"), Some("65534"), "{start}");
    assert_eq!(field(&start, "caps"), Some("none"), "{start}");
    assert_eq!(field(&start, "cgroup"), Some("/sys/fs/cgroup/keel.services/demo"), "{start}");
    let demo_pid = field(&start, "pid").unwrap_or_default().to_string();

    let hello = http_get(port, "/", STEP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hello, format!("hello from {HOSTNAME}, config generation 1\n"));
    // What the demo sees of itself: nobody, no capabilities in any set, no_new_privs, its rlimit and cgroup limits.
    let me = http_get(port, "/self", STEP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    for line in [
        "Uid: 65534 65534 65534 65534",
        "Gid: 65534 65534 65534 65534",
        "Groups:\n",
        "CapInh: 0000000000000000",
        "CapPrm: 0000000000000000",
        "CapEff: 0000000000000000",
        "CapBnd: 0000000000000000",
        "CapAmb: 0000000000000000",
        "NoNewPrivs: 1",
        "Seccomp: 2",
        "nofile: 256",
        "cgroup: /keel.services/demo",
        "memory.max: 33554432",
        "pids.max: 16",
        "cpu.max: 50000 100000",
    ] {
        assert!(me.contains(line), "{line:?} missing from /self:\n{me}");
    }
    vm.expect_anywhere("keel: service.log name=demo stream=stdout line=\"GET / from ", STEP_TIMEOUT);
    vm.expect_anywhere("keel: config.converged generation=1", STEP_TIMEOUT);

    // Generation 2 adds a service and repeats the demo unchanged: the demo is not touched.
    publish(&config(2, ""));
    vm.expect("keel: config.accepted generation=2", STEP_TIMEOUT);
    vm.expect("keel: services.plan generation=2 start=other stop=- changed=- unchanged=demo", STEP_TIMEOUT);
    vm.expect("keel: service.start name=other ", STEP_TIMEOUT);
    vm.expect("keel: config.converged generation=2", STEP_TIMEOUT);
    let other = http_get(other_port, "/", STEP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(other, format!("hello from {HOSTNAME}, config generation 2\n"));

    // Generation 3 changes only the demo's environment: only the demo restarts.
    publish(&config(3, "env = { KEEL_DEMO_GREETING = \"bonjour\" }"));
    vm.expect("keel: config.accepted generation=3", STEP_TIMEOUT);
    vm.expect("keel: services.plan generation=3 start=- stop=- changed=demo unchanged=other", STEP_TIMEOUT);
    let stop = vm.expect("keel: service.stop name=demo ", STEP_TIMEOUT);
    assert_eq!(field(&stop, "pid"), Some(demo_pid.as_str()), "{stop}");
    assert_eq!(field(&stop, "reason"), Some("changed"), "{stop}");
    vm.expect("keel: service.start name=demo ", STEP_TIMEOUT);
    vm.expect("keel: config.converged generation=3", STEP_TIMEOUT);
    let hello = http_get(port, "/", STEP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hello, format!("bonjour from {HOSTNAME}, config generation 3\n"));
    let transcript = vm.transcript();
    let count = |needle: &str| transcript.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("keel: service.start name=other "), 1, "other must not restart");
    assert_eq!(count("keel: service.stop name=other "), 0, "other must not stop");
    assert_eq!(count("keel: service.start name=demo "), 2, "demo starts once per definition");

    // Power-off: services stop first (dependents first), then everything else.
    vm.qmp(r#"{"execute": "system_powerdown"}"#);
    vm.expect("keel: services.stop_all services=2 layers=2", STEP_TIMEOUT);
    vm.expect("keel: service.stop name=other ", STEP_TIMEOUT);
    vm.expect("keel: service.stop name=demo ", STEP_TIMEOUT);
    vm.expect("keel: shutdown.stopped killed=0", STEP_TIMEOUT);
    vm.expect("reboot: Power down", STEP_TIMEOUT);
    vm.expect_exit(STEP_TIMEOUT);
}
