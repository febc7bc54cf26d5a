//! keelctl end to end, against the real OpenSSH `ssh-keygen`: keys from `keelctl keygen` and signatures from
//! `keelctl sign` pass `ssh-keygen -Y verify`; keys and signatures from ssh-keygen work with keelctl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const CONFIG: &str = "version = 1\ngeneration = 3\n[node]\nhostname = \"edge-1\"\n";

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("keelctl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn keelctl(dir: &Scratch, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keelctl")).current_dir(&dir.0).args(args).output().unwrap()
}

fn ssh_keygen(dir: &Scratch, args: &[&str], stdin: Option<&Path>) -> Output {
    let input = stdin.map_or_else(Stdio::null, |p| Stdio::from(std::fs::File::open(p).unwrap()));
    let mut cmd = Command::new("ssh-keygen");
    cmd.current_dir(&dir.0).args(args).stdin(input);
    cmd.output().expect("these tests need OpenSSH's ssh-keygen (apt-get install openssh-client)")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// An allowed_signers file for the key at `key` (its .pub next to it).
fn allowed_for(dir: &Scratch, key: &str, principal: &str) -> PathBuf {
    let public = std::fs::read_to_string(dir.path(&format!("{key}.pub"))).unwrap();
    let mut words = public.split_whitespace();
    let (kind, b64) = (words.next().unwrap(), words.next().unwrap());
    dir.write("allowed_signers", &format!("{principal} namespaces=\"keel-config\" {kind} {b64}\n"))
}

#[test]
fn keelctl_keys_and_signatures_pass_ssh_keygen() {
    let dir = Scratch::new("ours");
    let out = ok(keelctl(&dir, &["keygen", "-f", "signer", "-C", "ops@example.org"]));
    assert!(out.starts_with("wrote signer and signer.pub (SHA256:"), "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.path("signer")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // ssh-keygen reads our private key.
    let derived = ok(ssh_keygen(&dir, &["-y", "-f", "signer"], None));
    assert_eq!(derived, std::fs::read_to_string(dir.path("signer.pub")).unwrap());

    let config = dir.write("node.toml", CONFIG);
    let out = ok(keelctl(&dir, &["sign", "-f", "signer", "node.toml"]));
    assert!(out.starts_with("wrote node.toml.sig (\"keel-config\" signature by SHA256:"), "{out}");
    allowed_for(&dir, "signer", "ops@example.org");
    let args =
        ["-Y", "verify", "-f", "allowed_signers", "-I", "ops@example.org", "-n", "keel-config", "-s", "node.toml.sig"];
    let good = ok(ssh_keygen(&dir, &args, Some(&config)));
    assert!(good.starts_with("Good \"keel-config\" signature for ops@example.org with ED25519 key SHA256:"), "{good}");
    let out = ok(keelctl(&dir, &["verify", "-s", "allowed_signers", "-I", "ops@example.org", "node.toml"]));
    assert!(
        out.starts_with("ok: good \"keel-config\" signature for ops@example.org with ED25519 key SHA256:"),
        "{out}"
    );

    // A changed config no longer verifies, with either tool.
    let changed = dir.write("node.toml", &CONFIG.replace("generation = 3", "generation = 4"));
    assert!(!ssh_keygen(&dir, &args, Some(&changed)).status.success());
    let out = keelctl(&dir, &["verify", "-s", "allowed_signers", "node.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("does not verify: the signature does not match the data"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn ssh_keygen_keys_and_signatures_work_with_keelctl() {
    let dir = Scratch::new("theirs");
    ok(ssh_keygen(&dir, &["-q", "-t", "ed25519", "-N", "", "-C", "ops@x", "-f", "id"], None));
    dir.write("node.toml", CONFIG);
    allowed_for(&dir, "id", "ops@x");

    ok(ssh_keygen(&dir, &["-Y", "sign", "-f", "id", "-n", "keel-config", "node.toml"], None));
    ok(keelctl(&dir, &["verify", "-s", "allowed_signers", "node.toml"]));
    std::fs::rename(dir.path("node.toml.sig"), dir.path("elsewhere.sig")).unwrap();
    ok(keelctl(&dir, &["verify", "-s", "allowed_signers", "--sig", "elsewhere.sig", "node.toml"]));
    let out = keelctl(
        &dir,
        &["verify", "-s", "allowed_signers", "--sig", "elsewhere.sig", "-n", "keel-command", "node.toml"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "keelctl: elsewhere.sig: the signature is for namespace \"keel-config\", not \"keel-command\"\n"
    );

    // keelctl signs with the key ssh-keygen made; the signature is the one ssh-keygen makes (ed25519 is
    // deterministic), byte for byte.
    ok(keelctl(&dir, &["sign", "-f", "id", "node.toml"]));
    let ours = std::fs::read_to_string(dir.path("node.toml.sig")).unwrap();
    assert_eq!(ours, std::fs::read_to_string(dir.path("elsewhere.sig")).unwrap());

    // An unknown key: ssh-keygen's signature by another key is refused.
    ok(ssh_keygen(&dir, &["-q", "-t", "ed25519", "-N", "", "-f", "other"], None));
    std::fs::remove_file(dir.path("node.toml.sig")).unwrap();
    ok(ssh_keygen(&dir, &["-Y", "sign", "-f", "other", "-n", "keel-config", "node.toml"], None));
    let out = keelctl(&dir, &["verify", "-s", "allowed_signers", "node.toml"]);
    assert!(
        text(&out.stderr).contains("is not allowed: no line of allowed_signers lists this key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn encrypted_keys_sign_through_ssh_keygen_and_overwrites_are_refused_clearly() {
    let dir = Scratch::new("refusals");
    ok(ssh_keygen(&dir, &["-q", "-t", "ed25519", "-N", "a passphrase", "-f", "locked"], None));
    dir.write("node.toml", CONFIG);
    // ssh-keygen asks for the passphrase (here through SSH_ASKPASS); keelctl never sees it.
    let sign_with = |passphrase: &str| {
        dir.write("askpass", &format!("#!/bin/sh\necho '{passphrase}'\n"));
        std::fs::set_permissions(dir.path("askpass"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Command::new(env!("CARGO_BIN_EXE_keelctl"))
            .current_dir(&dir.0)
            .env("SSH_ASKPASS", dir.path("askpass"))
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .args(["sign", "-f", "locked", "node.toml"])
            .output()
            .unwrap()
    };
    let out = sign_with("not it");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("keelctl: locked: ssh-keygen could not sign with it (wrong passphrase?)"));
    ok(sign_with("a passphrase"));
    std::fs::write(
        dir.path("allowed_signers"),
        format!("ops {}", std::fs::read_to_string(dir.path("locked.pub")).unwrap()),
    )
    .unwrap();
    ok(keelctl(&dir, &["verify", "-s", "allowed_signers", "node.toml"]));

    ok(keelctl(&dir, &["keygen", "-f", "k"]));
    let before = std::fs::read_to_string(dir.path("k")).unwrap();
    let out = keelctl(&dir, &["keygen", "-f", "k"]);
    assert_eq!(
        (out.status.code(), text(&out.stderr).as_str()),
        (Some(1), "keelctl: k: already exists; keelctl keygen never overwrites a key\n")
    );
    std::fs::remove_file(dir.path("k")).unwrap();
    let out = keelctl(&dir, &["keygen", "-f", "k"]);
    assert_eq!(text(&out.stderr), "keelctl: k.pub: already exists; keelctl keygen never overwrites a key\n");
    assert!(!dir.path("k").exists() && !before.is_empty());
}

#[test]
fn validate_prints_every_error_and_signs_only_valid_configs() {
    let dir = Scratch::new("validate");
    dir.write("good.toml", CONFIG);
    assert_eq!(ok(keelctl(&dir, &["validate", "good.toml"])), "ok: generation 3\n");
    dir.write("bad.toml", "version = 1\ngeneration = 0\n[[network.link]]\nname = \"eth0\"\nmtu = 9\n");
    let out = keelctl(&dir, &["validate", "bad.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "bad.toml:2:14: generation: must be at least 1\n\
         bad.toml:5:7: network.link[0].mtu: must be 68..65535\n\
         keelctl: bad.toml is invalid (2 errors)\n"
    );
    dir.write("broken.toml", "version = 1\ngeneration = 1\n[nodes]\n");
    let out = keelctl(&dir, &["validate", "broken.toml"]);
    assert!(text(&out.stderr).starts_with("broken.toml:3:2: unknown field `nodes`"), "{}", text(&out.stderr));

    ok(keelctl(&dir, &["keygen", "-f", "k"]));
    let out = keelctl(&dir, &["sign", "-f", "k", "bad.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path("bad.toml.sig").exists());
    let out = keelctl(&dir, &["validate"]);
    assert_eq!(
        (out.status.code(), text(&out.stderr).as_str()),
        (Some(2), "keelctl: validate: which file?; run 'keelctl help'\n")
    );
    assert_eq!(ok(keelctl(&dir, &["version"])), format!("keelctl {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn validate_refuses_an_expired_config_and_warns_before_it_expires() {
    let dir = Scratch::new("expiry");
    let past = dir.write("past.toml", "version = 1\ngeneration = 3\n[node]\nexpires = 2001-01-01T00:00:00Z\n");
    let out = keelctl(&dir, &["validate", past.to_str().unwrap()]);
    assert!(!out.status.success(), "an expired config validated: {}", text(&out.stdout));
    assert!(text(&out.stderr).contains("has passed"), "{}", text(&out.stderr));

    // Two days from now: valid, with a warning naming the date.
    let soon = std::time::SystemTime::now() + std::time::Duration::from_secs(2 * 86_400);
    let days = soon.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86_400;
    let (y, m, d) = keel_config::civil_from_days(days as i64);
    let config = format!("version = 1\ngeneration = 3\n[node]\nexpires = {y:04}-{m:02}-{d:02}T00:00:00Z\n");
    let soon = dir.write("soon.toml", &config);
    let out = keelctl(&dir, &["validate", soon.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("warning") && text(&out.stderr).contains("expires"), "{}", text(&out.stderr));
}

#[test]
fn validate_lists_every_unknown_key() {
    let dir = Scratch::new("unknown");
    let f = dir.write("n.toml", "version = 1\ngeneration = 3\nbogus = 1\n[node]\nhostnam = \"x\"\n");
    let out = keelctl(&dir, &["validate", f.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("`bogus`") && err.contains("`hostnam`") && err.contains("(2 errors)"), "{err}");
}
