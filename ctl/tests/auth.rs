//! keelctl proves access to a node (docs/api.md, "Authentication") with a key file, a passphrase-protected key
//! (ssh-keygen asks for the passphrase), or a key held by a real ssh-agent, and says what to do without one.
//! The in-test node (tests/support) checks each proof against its own TLS exporter.

#[allow(dead_code)]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::Server;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("keelctl-auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = Dir(dir);
        d.write("key", &support::signer().to_openssh(), 0o600);
        d.write("key.pub", &support::signer().public_line(), 0o644);
        d
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// keelctl COMMAND --node … with only the given environment.
    fn keelctl(&self, server: &Server, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keelctl"));
        cmd.current_dir(&self.0).env("HOME", &self.0);
        for var in ["KEEL_NODE", "KEEL_KNOWN_NODES", "KEEL_KEY", "SSH_AUTH_SOCK"] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args).args(["--node", &server.node(), "--known-nodes", "known_nodes"]).output().unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A real ssh-agent on a socket in `dir`, killed on drop.
struct Agent {
    child: Child,
    sock: PathBuf,
}

impl Agent {
    fn start(dir: &Dir) -> Agent {
        let sock = dir.path("agent.sock");
        let child = Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&sock)
            .stdout(Stdio::null())
            .spawn()
            .expect("run ssh-agent (openssh-client; make setup installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { child, sock }
    }

    fn add(&self, key: &Path) {
        let out = Command::new("ssh-add").arg(key).env("SSH_AUTH_SOCK", &self.sock).output().expect("run ssh-add");
        assert!(out.status.success(), "ssh-add: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn without_a_key_keelctl_says_what_to_do_and_sends_nothing() {
    let server = Server::start(false);
    let dir = Dir::new("none");
    let out = dir.keelctl(&server, &["status"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("needs a credential: pass --key KEY"), "{}", text(&out));
    assert!(server.requests().is_empty());
}

#[test]
fn a_key_file_proves_access_and_a_stranger_is_refused() {
    let server = Server::start(false);
    let dir = Dir::new("file");
    let out = dir.keelctl(&server, &["status", "--key", "key"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stranger = keel_config::sshsig::PrivateKey::from_seed([9; 32], "stranger");
    dir.write("stranger", &stranger.to_openssh(), 0o600);
    let out = dir.keelctl(&server, &["status", "--key", "stranger"], &[]);
    assert!(!out.status.success() && text(&out).contains("HTTP 401"), "{}", text(&out));
    let who: Vec<Option<String>> = server.requests().into_iter().map(|r| r.who).collect();
    assert_eq!(who, [Some("ops@test".to_string()), None]);
}

#[test]
fn an_ssh_agent_key_needs_no_key_file() {
    let server = Server::start(false);
    let dir = Dir::new("agent");
    let agent = Agent::start(&dir);
    // A key the node does not trust comes first: keelctl moves on to the next after the 401.
    let stranger = keel_config::sshsig::PrivateKey::from_seed([9; 32], "stranger");
    agent.add(&dir.write("stranger", &stranger.to_openssh(), 0o600));
    agent.add(&dir.path("key"));
    std::fs::remove_file(dir.path("key")).unwrap();
    std::fs::remove_file(dir.path("stranger")).unwrap();
    let sock = agent.sock.clone();
    let out = dir.keelctl(&server, &["status"], &[("SSH_AUTH_SOCK", &sock)]);
    assert!(out.status.success(), "{}", text(&out));
    let who: Vec<Option<String>> = server.requests().into_iter().map(|r| r.who).collect();
    assert_eq!(who, [None, Some("ops@test".to_string())]);
    // Signing commands take the agent's key too, named by its public half.
    let out = dir.keelctl(&server, &["reboot", "--key", "key.pub"], &[("SSH_AUTH_SOCK", &sock)]);
    assert!(out.status.success() && text(&out).contains("reboot accepted"), "{}", text(&out));
    let out = dir.keelctl(&server, &["reboot", "--key", "key.pub"], &[]);
    assert!(text(&out).contains("no ssh-agent (SSH_AUTH_SOCK) holds its private half"), "{}", text(&out));
}

#[test]
fn a_passphrase_protected_key_is_signed_with_by_ssh_keygen() {
    let server = Server::start(false);
    let dir = Dir::new("passphrase");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "correct horse", "-f"])
        .arg(dir.path("key"))
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(dir.path("key")).unwrap().contains("OPENSSH PRIVATE KEY"));
    let askpass = dir.write("askpass", "#!/bin/sh\necho 'correct horse'\n", 0o755);
    let force = dir.write("force", "force", 0o644);
    let env = [("SSH_ASKPASS", askpass.as_path()), ("DISPLAY", Path::new(":0"))];
    let mut cmd_env = env.to_vec();
    let force_value = std::fs::read_to_string(&force).unwrap();
    cmd_env.push(("SSH_ASKPASS_REQUIRE", Path::new(&force_value)));
    let out = dir.keelctl(&server, &["status", "--key", "key"], &cmd_env);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server.requests().last().and_then(|r| r.who.clone()).as_deref(), Some("ops@test"));
    // A signed command with no plaintext key on disk: reboot signs with the passphrase-protected key.
    let out = dir.keelctl(&server, &["reboot", "--key", "key"], &cmd_env);
    assert!(out.status.success() && text(&out).contains("reboot accepted"), "{}", text(&out));
}
