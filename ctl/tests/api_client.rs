//! The real keelctl binary against an in-test HTTPS node API (tests/support): certificate pinning on first use,
//! reconnecting, refusing a changed certificate, status, apply (signed, refused, stale .sig), the dry-run diff,
//! logs, and signed reboot/poweroff commands.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use keel_config::sshsig;
use serde_json::Value;
use support::{Server, MACHINE_ID};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("keelctl-api-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let s = Scratch(dir);
        s.write("key", &support::signer().to_openssh());
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    fn known(&self) -> String {
        std::fs::read_to_string(self.path("known_nodes")).unwrap_or_default()
    }

    /// keelctl in this directory, HOME here, no KEEL_* or agent from the caller's environment; it proves
    /// access with the trusted key (KEEL_KEY=key).
    fn keelctl(&self, args: &[&str]) -> Output {
        let mut cmd = self.bare();
        cmd.env("KEEL_KEY", self.path("key"));
        cmd.args(args).output().unwrap()
    }

    /// keelctl with no key at all (no KEEL_KEY, no agent).
    fn bare(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keelctl"));
        cmd.current_dir(&self.0).env("HOME", &self.0);
        for var in ["KEEL_NODE", "KEEL_KNOWN_NODES", "KEEL_KEY", "SSH_AUTH_SOCK"] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// keelctl COMMAND --node NODE --known-nodes known_nodes ARGS…
    fn at(&self, server: &Server, command: &str, args: &[&str]) -> Output {
        let node = server.node();
        let mut all = vec![command, "--node", &node, "--known-nodes", "known_nodes"];
        all.extend_from_slice(args);
        self.keelctl(&all)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// A failure: exit 1 and one line on stderr (after any `pinned` notice), which is returned.
fn fails(out: &Output) -> String {
    let all = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout: {}\nstderr: {all}", text(&out.stdout));
    let lines: Vec<&str> = all.lines().filter(|l| !l.starts_with("keelctl: pinned ")).collect();
    assert_eq!(lines.len(), 1, "not one line: {all}");
    assert!(lines[0].starts_with("keelctl: "), "{all}");
    format!("{}\n", lines[0])
}

const NEW_CONFIG: &str =
    "version = 1\ngeneration = 7\n[node]\nhostname = \"edge-2\"\n[sysctl]\n\"vm.swappiness\" = \"10\"\n";

#[test]
fn first_use_pins_then_reconnects_quietly() {
    // (Every request of these tests carries a verified connection proof: the test node answers 401 otherwise.)
    let server = Server::start(false);
    let dir = Scratch::new("tofu");
    let out = dir.at(&server, "status", &[]);
    ok(&out);
    let key = server.node();
    assert_eq!(text(&out.stderr), format!("keelctl: pinned {key} {} (first use)\n", server.fingerprint));
    assert_eq!(dir.known(), format!("{key} {}\n", server.fingerprint));
    let again = dir.at(&server, "status", &[]);
    ok(&again);
    assert_eq!(text(&again.stderr), "");
    assert_eq!(dir.known().lines().count(), 1);
    assert!(server.requests().iter().all(|r| r.who.as_deref() == Some("ops@test")), "every request proved its key");
}

#[test]
fn a_changed_certificate_is_refused_with_the_line_to_remove() {
    let (old, new) = (Server::start(false), Server::start(false));
    let dir = Scratch::new("changed");
    // The node at `new`'s address was pinned with another certificate (as if reinstalled).
    dir.write("known_nodes", &format!("# lab\nother:7443 {}\n{} {}\n", old.fingerprint, new.node(), old.fingerprint));
    let err = fails(&dir.at(&new, "status", &[]));
    let file = "known_nodes"; // as given with --known-nodes
    assert!(err.contains(&format!("certificate {} does not match the pinned {}", new.fingerprint, old.fingerprint)));
    assert!(err.contains(&format!("delete line 3 of {file}")), "{err}");
    assert!(new.requests().is_empty(), "no request may reach an unpinned node");

    // An explicit fingerprint that does not match is refused too, and nothing is pinned.
    let other = Scratch::new("explicit");
    let err = fails(&other.at(&new, "status", &["--fingerprint", &old.fingerprint]));
    assert!(err.contains(&format!("certificate {} is not --fingerprint {}", new.fingerprint, old.fingerprint)));
    assert_eq!(other.known(), "");

    // The operator checked the console: --fingerprint with the new one re-pins, replacing line 3.
    let out = dir.at(&new, "status", &["--fingerprint", &new.fingerprint]);
    ok(&out);
    assert!(text(&out.stderr).contains(&format!("(--fingerprint; replaced {} at {file}:3)", old.fingerprint)));
    let want = format!("# lab\nother:7443 {}\n{} {}\n", old.fingerprint, new.node(), new.fingerprint);
    assert_eq!(dir.known(), want);
    ok(&dir.at(&new, "status", &[]));
}

#[test]
fn explicit_fingerprint_pins_on_first_contact() {
    let server = Server::start(false);
    let dir = Scratch::new("explicit-first");
    let out = dir.at(&server, "status", &["--fingerprint", &server.fingerprint.to_uppercase().replace("SHA", "sha")]);
    ok(&out);
    assert!(text(&out.stderr).contains("(--fingerprint)"), "{}", text(&out.stderr));
    assert_eq!(dir.known(), format!("{} {}\n", server.node(), server.fingerprint));
}

#[test]
fn status_human_and_json_over_tls12_and_tls13() {
    for tls12_only in [false, true] {
        let server = Server::start(tls12_only);
        let dir = Scratch::new(if tls12_only { "status12" } else { "status13" });
        let human = ok(&dir.at(&server, "status", &[]));
        assert!(human.starts_with(&format!("node       edge-1  machine {MACHINE_ID}  keel 0.1.0  up 1m 15s\n")));
        for want in [
            "config     generation 6 (converged) from api signed by ops@test\n",
            "  route    0.0.0.0/0 via 10.0.2.2 on eth0 metric 1027 (dhcp)\n",
            "time       synced (source ntp 10.0.2.2) offset 1.5 ms\n",
            "  sysctl   converged (generation 6)\n",
        ] {
            assert!(human.contains(want), "missing {want:?} in\n{human}");
        }
        let raw: Value = serde_json::from_str(&ok(&dir.at(&server, "status", &["-o", "json"]))).unwrap();
        assert_eq!(raw["machine_id"], MACHINE_ID);
        assert_eq!(raw["something_new"]["the server"], "is evolving");
    }
}

#[test]
fn apply_signs_and_reports_the_outcome() {
    let server = Server::start(false);
    let dir = Scratch::new("apply");
    let file = dir.write("node.toml", NEW_CONFIG);
    let out = ok(&dir.at(&server, "apply", &["node.toml", "--key", "key"]));
    assert_eq!(out, "applied generation 7 (converged)\n");
    let put = server.requests().into_iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.path, "/v1/config");
    let body: Value = serde_json::from_str(&put.body).unwrap();
    assert_eq!(body["config"], NEW_CONFIG);
    let sig = body["signature"].as_str().unwrap();
    let allowed = support::allowed_signers();
    sshsig::verify(NEW_CONFIG.as_bytes(), sig, &allowed, None, "keel-config", SystemTime::now()).unwrap();
    assert!(!dir.path("node.toml.sig").exists(), "--key signs in memory");

    // With node.toml.sig from `keelctl sign`, no key is needed; a .sig older than an edit is caught here.
    ok(&dir.keelctl(&["sign", "-f", "key", "node.toml"]));
    assert_eq!(ok(&dir.at(&server, "apply", &["node.toml"])), "applied generation 7 (converged)\n");
    std::fs::write(&file, NEW_CONFIG.replace("edge-2", "edge-3")).unwrap();
    let err = fails(&dir.at(&server, "apply", &["node.toml"]));
    assert!(err.contains("node.toml.sig: does not match node.toml (edited since?); sign node.toml again"), "{err}");
    std::fs::remove_file(dir.path("node.toml.sig")).unwrap();
    let err = fails(&dir.at(&server, "apply", &["node.toml"]));
    assert!(err.contains("node.toml.sig: no signature; sign it"), "{err}");
}

#[test]
fn a_refusal_names_the_reason_and_what_to_do() {
    let server = Server::start(false);
    let dir = Scratch::new("refused");
    dir.write("node.toml", "version = 1\ngeneration = 1\n");
    let err = fails(&dir.at(&server, "apply", &["node.toml", "--key", "key"]));
    let node = server.node();
    assert_eq!(
        err,
        format!(
            "keelctl: {node}: refused generation 1: not-newer: generation 1 is not newer than the running \
             generation 6; raise generation above the node's (keelctl status) and sign again\n"
        )
    );
}

#[test]
fn an_invalid_config_never_leaves_this_machine() {
    let server = Server::start(false);
    let dir = Scratch::new("invalid");
    dir.write("node.toml", "version = 1\ngeneration = 7\n[[network.link]]\nname = \"eth0\"\nmtu = 10\n");
    let out = dir.at(&server, "apply", &["node.toml", "--key", "key"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.starts_with("node.toml:5:7: network.link[0].mtu:"), "{err}");
    assert!(err.ends_with("keelctl: node.toml is invalid (1 error); fix it, nothing was sent to the node\n"));
    assert!(server.requests().is_empty());
}

#[test]
fn dry_run_and_plan_show_the_diff_and_push_nothing() {
    let server = Server::start(false);
    let dir = Scratch::new("plan");
    dir.write(
        "node.toml",
        &format!("{NEW_CONFIG}[[file]]\npath = \"/run/motd\"\ncontent = \"hello\\n\"\nmode = \"0600\"\n"),
    );
    let want = "\
generation: 6 → 7
hostname: edge-1 → edge-2
sysctl:
  ~ vm.swappiness: \"60\" → \"10\"
files:
  ~ /run/motd: mode 0644 → 0600
";
    assert_eq!(ok(&dir.at(&server, "apply", &["node.toml", "--dry-run"])), want);
    assert_eq!(ok(&dir.at(&server, "plan", &["node.toml"])), want);
    assert!(server.requests().iter().all(|r| r.method == "GET" && r.path == "/v1/config"));
}

#[test]
fn reboot_is_a_signed_command_for_this_node() {
    let server = Server::start(false);
    let dir = Scratch::new("reboot");
    let out = ok(&dir.at(&server, "reboot", &["--key", "key"]));
    assert_eq!(out, format!("reboot accepted by {} (machine {MACHINE_ID})\n", server.node()));
    let reqs = server.requests();
    assert_eq!(reqs.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), ["/v1/status", "/v1/reboot"]);
    let body: Value = serde_json::from_str(&reqs[1].body).unwrap();
    let doc = body["command"].as_str().unwrap();
    assert!(doc.starts_with(&format!("action = \"reboot\"\nnode = \"{MACHINE_ID}\"\nnonce = \"")), "{doc}");

    // A given machine id is used as is (dashes allowed): no status request; the wrong one is refused.
    let dashed = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
    let out = ok(&dir.at(&server, "poweroff", &["--key", "key", "--machine-id", dashed]));
    assert!(out.starts_with("poweroff accepted by "), "{out}");
    assert_eq!(server.requests().len(), 3);
    let err = fails(&dir.at(&server, "reboot", &["--key", "key", "--machine-id", &"f".repeat(32)]));
    assert!(err.contains(": refused reboot: wrong-node: the command is for ffff"), "{err}");
    assert!(err.ends_with("; leave out --machine-id to ask the node for its id\n"), "{err}");
    // No key at all (no --key, KEEL_KEY or agent): a usage error, and nothing sent.
    let node = server.node();
    let out = dir.bare().args(["reboot", "--node", &node, "--known-nodes", "known_nodes"]).output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.code() == Some(2) && err.contains("reboot: which key? pass --key KEY"), "{err}");
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn logs_print_and_follow() {
    let server = Server::start(false);
    let dir = Scratch::new("logs");
    assert_eq!(ok(&dir.at(&server, "logs", &[])), "keel: boot.start\nkeel: ready\n");
    let out = dir.at(&server, "logs", &["-f"]);
    assert_eq!(ok(&out), "keel: old line\nkeel: new line\n");
    assert!(text(&out.stderr).ends_with("the node ended the log stream\n"));
}

#[test]
fn unreachable_nodes_and_missing_nodes_say_what_to_do() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = Scratch::new("unreachable");
    let err = fails(&dir.keelctl(&["status", "--node", &format!("127.0.0.1:{port}"), "--known-nodes", "k"]));
    assert_eq!(
        err,
        format!("keelctl: 127.0.0.1:{port}: connection refused; is the node up and the API port forwarded?\n")
    );
    let out = dir.keelctl(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("status: which node? pass --node HOST[:PORT] or set KEEL_NODE"));
}

#[test]
fn keel_node_and_keel_known_nodes_from_the_environment() {
    let server = Server::start(false);
    let dir = Scratch::new("env");
    let known: &Path = &dir.path("elsewhere/known");
    let out = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .current_dir(&dir.0)
        .env("HOME", &dir.0)
        .env("KEEL_NODE", server.node())
        .env("KEEL_KNOWN_NODES", known)
        .env("KEEL_KEY", dir.path("key"))
        .env_remove("SSH_AUTH_SOCK")
        .args(["status", "-o", "json"])
        .output()
        .unwrap();
    ok(&out);
    assert!(std::fs::read_to_string(known).unwrap().contains(&server.fingerprint));
}

#[test]
fn completions_for_every_shell() {
    let dir = Scratch::new("completions");
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&dir.keelctl(&["completions", shell]));
        assert!(script.contains("known-nodes") && script.contains("poweroff"), "{shell}");
    }
    assert_eq!(dir.keelctl(&["completions", "tcsh"]).status.code(), Some(2));
}
