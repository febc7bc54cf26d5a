//! End to end: OCI images as services, pulled by digest from a real registry (Debian's `docker-registry` with
//! TLS, started here) and run in their own namespaces. One node, three image services at once (the 2-core box
//! boots one VM for all): one that runs and answers through hostfwd from inside its container (PID 1 of its
//! namespace, no /var/lib/keel, a read-only root), one whose layer was changed on the registry's disk (refused
//! with `digest-mismatch`, never started), one on an htpasswd registry without credentials (`unauthorized`).
//! And `keelctl validate` refuses a tag with the reason, without a VM.

use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::registry::{incompressible, layout, tar, TestRegistry};
use keel_e2e::services::{lines_with, testhelper_binary, Ctl};
use keel_e2e::{build_dir, free_port, http_get, keelctl_cmd, Initrd, Vm, VmConfig};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The port the image service listens on inside the guest.
const SERVICE_PORT: u16 = 9090;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e");
    let _ = std::fs::create_dir_all(&dir);
    dir.join(name)
}

fn blank_disk(name: &str) -> PathBuf {
    let path = scratch(name);
    let _ = std::fs::remove_file(&path);
    std::fs::File::create(&path).and_then(|f| f.set_len(256 << 20)).expect("make a sparse disk image");
    path
}

/// An image whose one layer holds the test helper at `path`, run as `helper container PORT`.
fn helper_image(dir: &Path, path: &str) -> keel_e2e::registry::Image {
    let helper = testhelper_binary();
    let layer = tar(&[("bin/", b"", 0o755), (path, &helper, 0o755)]);
    let run = format!(r#"{{"Entrypoint":["/{path}"],"Cmd":["container","{SERVICE_PORT}"],"User":"1000:1000"}}"#);
    layout(dir, &[layer], &run)
}

fn image_service(name: &str, reference: &str) -> String {
    format!("[[service]]\nname = \"{name}\"\nimage = \"{reference}\"\nafter = [\"network\"]\n")
}

fn registry_entry(reg: &TestRegistry) -> String {
    format!("[[registry]]\nhost = \"{}\"\nca = \"\"\"\n{}\"\"\"\n", reg.guest_host(), reg.ca_pem)
}

#[test]
fn keelctl_validate_refuses_an_image_tag_with_the_reason() {
    let path = scratch("oci_tag.toml");
    std::fs::write(
        &path,
        "version = 1\ngeneration = 1\n[[service]]\nname = \"web\"\nimage = \"registry.example/ns/web:1.0\"\n",
    )
    .expect("write config");
    let out = keelctl_cmd().arg("validate").arg(&path).output().expect("run keelctl validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "a tag must be refused: {text}");
    assert!(text.contains(":5:9: service[0].image: a tag is not accepted"), "line:col and the reason: {text}");
    assert!(text.contains("@sha256:"), "the reason names the digest form: {text}");
}

#[test]
fn qemu_image_services_run_isolated_and_refuse_tampered_or_unauthorized_pulls() {
    let key = build_dir().join("keys/dev_ed25519");
    assert!(key.exists(), "{} is missing: make image makes it", key.display());
    let open = TestRegistry::start("open", false);
    let locked = TestRegistry::start("locked", true);
    let good = helper_image(&scratch("oci_good_layout"), "bin/helper");
    open.push(&scratch("oci_good_layout"), "keel/web", None);
    let bad = helper_image(&scratch("oci_bad_layout"), "bin/other");
    open.push(&scratch("oci_bad_layout"), "keel/bad", None);
    // Same length, other bytes: only the digest can tell.
    let blob = open.blob_file(&bad.layers_hex[0]);
    let mut bytes = std::fs::read(&blob).expect("the pushed layer on the registry's disk");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, &bytes).expect("tamper with the layer");
    // Its own content: an image already in the node's store (by digest) would need no registry at all.
    let private = helper_image(&scratch("oci_private_layout"), "bin/private");
    locked.push(&scratch("oci_private_layout"), "keel/private", Some(keel_e2e::registry::CREDS));

    let reference = |reg: &TestRegistry, repo: &str, hex: &str| format!("{}/{repo}@sha256:{hex}", reg.guest_host());
    let config = format!(
        "version = 1\ngeneration = 2\n{}\n{}\n{}\n{}\n{}",
        registry_entry(&open),
        registry_entry(&locked),
        image_service("web", &reference(&open, "keel/web", &good.manifest_hex)),
        image_service("bad", &reference(&open, "keel/bad", &bad.manifest_hex)),
        image_service("locked", &reference(&locked, "keel/private", &private.manifest_hex)),
    );
    let server = FileServer::start();
    server.put("/node.toml.sig", ssh_sign(&config, &key, "keel-config"));
    server.put("/node.toml", config.as_bytes().to_vec());
    let (web_port, api_port) = (free_port(), free_port());
    let cfg = VmConfig {
        initrd: Initrd::Test,
        disks: vec![blank_disk("oci_state.img")],
        append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1", server.port),
        hostfwd: vec![(web_port, SERVICE_PORT), (api_port, 7443)],
        memory_mib: 384,
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("oci_images", &cfg);
    vm.expect_ready();
    vm.expect_anywhere("keel: service.start name=web ", Duration::from_secs(300));

    // The service answers from inside its container: PID 1 there, without the node's records, read-only root.
    let deadline = Instant::now() + Duration::from_secs(120);
    let body = loop {
        match http_get(web_port, "/", Duration::from_secs(10)) {
            Ok(b) if b.contains("testhelper: container") => break b,
            other => {
                assert!(Instant::now() < deadline, "the image service never answered through hostfwd: {other:?}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    for want in ["pid=1 ", "keel_state=absent", "root_writable=no", "tmp_writable=yes", "hostname=web", "uid=1000"] {
        assert!(body.contains(want), "{want:?} in the container's report: {body}");
    }

    let ctl = Ctl::new(api_port, "oci");
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        let st = ctl.status();
        let reason = |name: &str| st["services"]["services"][name]["reason"].as_str().unwrap_or_default().to_string();
        if reason("bad").starts_with("digest-mismatch") && reason("locked").starts_with("unauthorized") {
            break st;
        }
        assert!(Instant::now() < deadline, "no digest-mismatch / unauthorized in the status: {}", st["services"]);
        std::thread::sleep(Duration::from_secs(1));
    };
    let web = &status["services"]["services"]["web"];
    assert_eq!(web["state"], "running", "{web}");
    assert_eq!(web["image"].as_str(), Some(format!("sha256:{}", good.manifest_hex).as_str()), "{web}");
    // Never run: nothing unverified started.
    let transcript = vm.transcript();
    assert!(lines_with(&transcript, &["keel: service.start name=bad "]).is_empty(), "the tampered image ran");
    assert!(lines_with(&transcript, &["keel: service.start name=locked "]).is_empty(), "the locked image ran");
    assert!(!lines_with(&transcript, &["service.pull_failed name=bad reason=digest-mismatch"]).is_empty());
}

#[test]
fn qemu_a_power_cut_mid_pull_is_completed_by_the_next_boot() {
    let key = build_dir().join("keys/dev_ed25519");
    assert!(key.exists(), "{} is missing: make image makes it", key.display());
    let registry = TestRegistry::start("cut", false);
    let dir = scratch("oci_cut_layout");
    let helper = testhelper_binary();
    let big = incompressible(48 << 20);
    let layer = tar(&[("bin/", b"", 0o755), ("bin/helper", &helper, 0o755), ("filler", &big, 0o644)]);
    let run = format!(r#"{{"Entrypoint":["/bin/helper"],"Cmd":["container","{SERVICE_PORT}"]}}"#);
    let image = layout(&dir, &[layer], &run);
    registry.push(&dir, "keel/big", None);
    let reference = format!("{}/keel/big@sha256:{}", registry.guest_host(), image.manifest_hex);
    let config =
        format!("version = 1\ngeneration = 2\n{}\n{}", registry_entry(&registry), image_service("web", &reference));
    let server = FileServer::start();
    server.put("/node.toml.sig", ssh_sign(&config, &key, "keel-config"));
    server.put("/node.toml", config.as_bytes().to_vec());
    let disk = blank_disk("oci_cut_state.img");
    let (web_port, api_port) = (free_port(), free_port());
    let cfg = VmConfig {
        initrd: Initrd::Test,
        disks: vec![disk],
        append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1", server.port),
        hostfwd: vec![(web_port, SERVICE_PORT), (api_port, 7443)],
        memory_mib: 384,
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("oci_power_cut", &cfg);
    vm.expect_ready();
    let big_layer = format!("digest=sha256:{}", image.layers_hex[0]);
    let started = vm.expect_anywhere("keel: oci.blob_fetch ", Duration::from_secs(300));
    let ctl = Ctl::new(api_port, "oci-cut");
    // Cut the power once the blob writer has flushed a first part of the big layer (its `oci.blob_synced`
    // line), well before all of it: that prefix must survive the cut.
    let synced = vm.expect_anywhere(&format!("keel: oci.blob_synced {big_layer} "), Duration::from_secs(300));
    let st = ctl.status();
    let p = st["services"]["services"]["web"]["pull_percent"].as_u64().unwrap_or(0);
    assert!(p < 100, "the pull finished before the power cut ({started}, {synced}): {st}");
    vm.qmp(r#"{"execute":"quit"}"#);
    let _ = vm.expect_exit(Duration::from_secs(30));
    drop(vm);

    let mut vm = Vm::boot("oci_power_cut_again", &cfg);
    vm.expect_ready();
    vm.expect_anywhere("keel: service.start name=web ", Duration::from_secs(600));
    // The prefix flushed before the cut is kept: the big layer resumes instead of starting over.
    let fetches = lines_with(&vm.transcript(), &["keel: oci.blob_fetch ", &big_layer]);
    for l in &fetches {
        eprintln!("after the power cut: {l}");
    }
    let resume_at = |l: &String| {
        l.split_whitespace().find_map(|w| w.strip_prefix("resume_at=")).and_then(|v| v.parse::<u64>().ok())
    };
    let first = fetches.first().unwrap_or_else(|| panic!("no oci.blob_fetch line for the big layer after the cut"));
    assert!(
        resume_at(first).is_some_and(|at| at > 0),
        "the second boot restarted the big layer instead of resuming it (flushed before the cut: {synced}): {first}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match http_get(web_port, "/", Duration::from_secs(10)) {
            Ok(b) if b.contains("pid=1 ") => break,
            other => {
                assert!(Instant::now() < deadline, "the completed image never answered: {other:?}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    let st = ctl.status();
    assert_eq!(
        st["services"]["services"]["web"]["image"].as_str(),
        Some(format!("sha256:{}", image.manifest_hex).as_str())
    );
}
