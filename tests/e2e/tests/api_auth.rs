//! End to end: nothing on the node API but `/healthz` answers without a credential (docs/api.md,
//! "Authentication"). The image trusts three keys: the development key (write roles), a read-only key
//! (`keel-read`) and a scraper key (`keel-metrics`). Anonymous reads are 401; the reader reads but cannot push
//! (403); a metrics token reads `/metrics` and nothing else; a proof made on one connection is refused on
//! another; `keelctl status` works through a real ssh-agent with no key file; and a storm of anonymous
//! requests with long bodies leaves the node's log ring as it was.

use keel_config::credential;
use keel_config::sshsig::{sign_signature, HashAlg, PrivateKey};
use keel_e2e::api_client::{Api, Auth};
use keel_e2e::http_server::ssh_sign;
use keel_e2e::tls::initrd_with_file;
use keel_e2e::{build_dir, field, free_port, keelctl, Initrd, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const UUID: &str = "6b65656c-0000-4000-8000-0000000000a3";
const MACHINE_ID: &str = "6b65656c0000400080000000000000a3";

fn write_key(dir: &Path, name: &str, key: &PrivateKey) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, key.to_openssh()).expect("write a key");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod the key");
    p
}

fn config(generation: u64) -> String {
    format!("version = 1\ngeneration = {generation}\n[node]\nhostname = \"auth-{generation}\"\n")
}

/// A real ssh-agent on a socket in `dir`, killed on drop.
struct Agent(std::process::Child, PathBuf);

impl Agent {
    fn start(dir: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&sock)
            .stdout(Stdio::null())
            .spawn()
            .expect("run ssh-agent (make setup installs openssh-client)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent(child, sock)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn qemu_api_needs_a_credential_bound_to_its_connection_with_the_right_role() {
    let dir = std::env::temp_dir().join(format!("keel-e2e-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dev_key = build_dir().join("keys/dev_ed25519");
    let (reader, scraper) = (PrivateKey::from_seed([0x52; 32], "reader"), PrivateKey::from_seed([0x4d; 32], "scraper"));
    let reader_path = write_key(&dir, "reader", &reader);
    let trusted =
        std::fs::read_to_string(build_dir().join("keys/allowed_signers")).expect("build/keys/allowed_signers");
    let signers = format!(
        "{trusted}reader namespaces=\"keel-read\" {}\nscraper namespaces=\"keel-metrics\" {}\n",
        reader.public_key().to_openssh(),
        scraper.public_key().to_openssh()
    );
    let initrd = initrd_with_file("/etc/keel/allowed_signers", signers.as_bytes(), &dir.join("initramfs.cpio.zst"));
    let port = free_port();
    let cfg = VmConfig {
        initrd: Initrd::Custom(initrd),
        uuid: Some(UUID.into()),
        hostfwd: vec![(port, 7443)],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("api_auth", &cfg);
    vm.expect_ready();
    let listening = vm.expect("keel: api.listening ", BOOT_TIMEOUT);
    vm.expect_anywhere("keel: config.converged generation=1 ", STEP_TIMEOUT);
    let anonymous = Api::new(port, field(&listening, "fingerprint"));
    let admin = anonymous.with_key(&dev_key);
    let read_only = anonymous.with_key(&reader_path);

    // Anonymous: only /healthz.
    assert_eq!(anonymous.request("GET", "/healthz", None).expect("GET /healthz").0, 200);
    for path in ["/v1/status", "/v1/logs", "/v1/config", "/metrics", "/v1/nothing"] {
        let (code, body) = anonymous.request("GET", path, None).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(code, 401, "anonymous GET {path}: {}", String::from_utf8_lossy(&body));
    }

    // The reader reads, but a push with its key is 403, with the role it lacks named.
    let st = read_only.status().expect("the reader reads /v1/status");
    assert_eq!(st["machine_id"], MACHINE_ID);
    for path in ["/v1/logs", "/v1/config", "/metrics"] {
        assert_eq!(read_only.request("GET", path, None).expect(path).0, 200, "reader GET {path}");
    }
    let text = config(2);
    let sig = String::from_utf8_lossy(&ssh_sign(&text, &dev_key, "keel-config")).into_owned();
    let (code, v) = read_only.push(&text, &sig).expect("PUT /v1/config as the reader");
    assert_eq!(code, 403, "{v}");
    assert!(v["detail"].as_str().unwrap_or_default().contains("keel-config"), "{v}");
    let (code, v) = admin.push(&text, &sig).expect("PUT /v1/config as the admin");
    assert_eq!((code, v["converged"].as_bool()), (200, Some(true)), "{v}");

    // A metrics token (Prometheus cannot sign) reads /metrics and nothing else.
    let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let token_sig = sign_signature(
        &credential::metrics_message(MACHINE_ID, expires),
        &scraper,
        credential::METRICS_NAMESPACE,
        HashAlg::Sha512,
    );
    let bearer = Auth::Fixed(format!("Bearer {}", credential::metrics_token(MACHINE_ID, expires, &token_sig)));
    let (code, body, _) = anonymous.request_auth("GET", "/metrics", &bearer, None).expect("GET /metrics");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("keel_api_unauthenticated_total "), "metrics count refusals");
    assert_eq!(anonymous.request_auth("GET", "/v1/status", &bearer, None).expect("status").0, 403);
    let other_node = sign_signature(
        &credential::metrics_message(&"0".repeat(32), expires),
        &scraper,
        credential::METRICS_NAMESPACE,
        HashAlg::Sha512,
    );
    let wrong = Auth::Fixed(format!("Bearer {}", credential::metrics_token(&"0".repeat(32), expires, &other_node)));
    assert_eq!(anonymous.request_auth("GET", "/metrics", &wrong, None).expect("metrics").0, 401);

    // A proof is bound to its connection: replayed on another one, it is refused.
    let (code, _, proof) = admin.request_auth("GET", "/v1/status", &Auth::Proof, None).expect("status");
    assert_eq!(code, 200);
    let replay = Auth::Fixed(proof.expect("the proof sent"));
    let (code, body, _) = anonymous.request_auth("GET", "/v1/status", &replay, None).expect("replay");
    assert_eq!(code, 401, "a replayed proof: {}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("bad-signature"), "{}", String::from_utf8_lossy(&body));

    // keelctl through a real ssh-agent: no key file anywhere.
    let agent = Agent::start(&dir);
    let agent_key =
        write_key(&dir, "agent_key", &PrivateKey::parse(&std::fs::read_to_string(&dev_key).unwrap()).unwrap());
    let added = Command::new("ssh-add").arg(&agent_key).env("SSH_AUTH_SOCK", &agent.1).output().expect("run ssh-add");
    assert!(added.status.success(), "ssh-add: {}", String::from_utf8_lossy(&added.stderr));
    std::fs::remove_file(&agent_key).expect("remove the key file");
    let out = Command::new(keelctl())
        .args(["status", "--node", &format!("127.0.0.1:{port}"), "--known-nodes"])
        .arg(dir.join("known_nodes"))
        .env_remove("KEEL_KEY")
        .env("SSH_AUTH_SOCK", &agent.1)
        .output()
        .expect("run keelctl");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains(MACHINE_ID), "keelctl status via ssh-agent: {said}");

    // Anonymous requests with bad bodies evict no log line: they are refused before a body is read, and
    // counted, not logged. (Before, each reached the config pipeline and logged a `config.rejected` line: the
    // ring keeps 2048 lines, so this many flushed it.)
    let first_line = |api: &Api| {
        let (code, body) = api.request("GET", "/v1/logs", None).expect("GET /v1/logs");
        assert_eq!(code, 200);
        String::from_utf8_lossy(&body).lines().next().unwrap_or_default().to_string()
    };
    let before = first_line(&admin);
    let junk = serde_json::json!({"config": "x".repeat(8000), "signature": "y".repeat(8000)}).to_string();
    let storm: Vec<_> = (0..8)
        .map(|_| {
            let (api, junk) = (anonymous.clone(), junk.clone());
            std::thread::spawn(move || {
                (0..270)
                    .filter(|_| matches!(api.request("PUT", "/v1/config", Some(junk.as_bytes())), Ok((401, _))))
                    .count()
            })
        })
        .collect();
    let refused: usize = storm.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    assert_eq!(refused, 8 * 270, "every anonymous PUT is a 401");
    assert_eq!(first_line(&admin), before, "the oldest log line is still there");
    let rejected = vm.transcript().iter().filter(|l| l.contains("keel: config.rejected")).count();
    assert_eq!(rejected, 0, "no anonymous body reached the config pipeline");
    let _ = std::fs::remove_dir_all(&dir);
}
