//! Who signs for keelctl: API connection proofs, configs, commands, images, metrics tokens. `--key KEY` (or
//! `KEEL_KEY`) names an OpenSSH private key file, or a public key (`KEY.pub`) whose private half an ssh-agent
//! holds; without one, the agent's keys are tried in turn. A passphrase-protected key file is signed with by
//! `ssh-keygen -Y sign`, which asks for the passphrase itself (on the terminal, or `SSH_ASKPASS`), so keelctl
//! never sees it and no private key needs to be on disk unencrypted.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keel_config::sshsig::{self, HashAlg, KeyFileError, PrivateKey, PublicKey, Signature};

use crate::agent::Agent;
use crate::commands::read_text;
use crate::Failure;

pub enum Signer {
    File(PrivateKey),
    Agent {
        key: PublicKey,
        comment: String,
    },
    /// An encrypted key file: `ssh-keygen -Y sign -f PATH` signs, asking for the passphrase.
    Keygen(PathBuf),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Signer {
    pub fn describe(&self) -> String {
        match self {
            Signer::File(k) => format!("key {}", k.public_key().fingerprint()),
            Signer::Agent { key, comment } => format!("ssh-agent key {} {comment}", key.fingerprint()),
            Signer::Keygen(p) => format!("key file {}", p.display()),
        }
    }

    /// An SSHSIG signature over `message` for `namespace` (sha512, as ssh-keygen).
    pub fn sign(&self, message: &[u8], namespace: &str) -> Result<Signature, String> {
        match self {
            Signer::File(k) => Ok(sshsig::sign_signature(message, k, namespace, HashAlg::Sha512)),
            Signer::Agent { key, .. } => {
                let data = sshsig::signed_data(namespace, HashAlg::Sha512, message);
                let mut agent = Agent::from_env()?.ok_or("SSH_AUTH_SOCK is no longer set")?;
                let blob = agent.sign(key, &data)?;
                let sig = Signature { key: key.clone(), namespace: namespace.into(), hash: HashAlg::Sha512, blob };
                // Never send what would not verify: an agent that signed with another algorithm, or a bug.
                sig.verify_digest(namespace, &HashAlg::Sha512.digest(message))
                    .map_err(|e| format!("ssh-agent: {e}"))?;
                Ok(sig)
            }
            Signer::Keygen(path) => keygen_sign(path, message, namespace),
        }
    }

    /// Armored, as a `.sig` file.
    pub fn sign_armored(&self, message: &[u8], namespace: &str) -> Result<String, Failure> {
        self.sign(message, namespace).map(|s| s.to_armored()).map_err(Failure::Failed)
    }
}

fn keygen_sign(path: &Path, message: &[u8], namespace: &str) -> Result<Signature, String> {
    // The message goes in a private temporary file, not on stdin: ssh-keygen reads a passphrase from stdin when
    // there is no terminal, and the terminal (or SSH_ASKPASS) must stay its own.
    let nonce = crate::cmddoc::nonce().map_err(|e| format!("/dev/urandom: {e}"))?;
    let dir = std::env::temp_dir().join(format!("keelctl-sign-{}-{nonce}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join("message");
    let result = (|| {
        std::fs::write(&file, message).map_err(|e| format!("{}: {e}", file.display()))?;
        let status = Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
            .arg(path)
            .arg(&file)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("{} is passphrase-protected and ssh-keygen cannot run: {e}", path.display()))?;
        if !status.success() {
            return Err(format!("{}: ssh-keygen could not sign with it (wrong passphrase?)", path.display()));
        }
        let armored = std::fs::read_to_string(dir.join("message.sig")).map_err(|e| format!("ssh-keygen: {e}"))?;
        Signature::from_armored(&armored).map_err(|e| format!("ssh-keygen: {e}"))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The agent's key equal to `want`, or every key when `want` is None.
fn agent_keys(want: Option<&PublicKey>) -> Result<Vec<Signer>, String> {
    let Some(mut agent) = Agent::from_env()? else { return Ok(Vec::new()) };
    Ok(agent
        .keys()?
        .into_iter()
        .filter(|(k, _)| want.is_none_or(|w| w == k))
        .map(|(key, comment)| Signer::Agent { key, comment })
        .collect())
}

/// The signer(s) for `--key` (else `KEEL_KEY`, else the agent's keys, in the agent's order). Empty when there
/// is none at all: the caller says what to do.
pub fn resolve(key: Option<&Path>) -> Result<Vec<Signer>, Failure> {
    let env = std::env::var_os("KEEL_KEY").filter(|k| !k.is_empty()).map(PathBuf::from);
    let Some(path) = key.map(Path::to_path_buf).or(env) else {
        return agent_keys(None).map_err(Failure::Failed);
    };
    let text = read_text(&path)?;
    let fail = |e: String| Failure::Failed(format!("{}: {e}", path.display()));
    if text.trim_start().starts_with("-----BEGIN") {
        return match PrivateKey::parse(&text) {
            Ok(k) => Ok(vec![Signer::File(k)]),
            Err(KeyFileError::Encrypted { .. }) => Ok(vec![Signer::Keygen(path)]),
            Err(e) => Err(fail(e.to_string())),
        };
    }
    // A public key: its private half is in the agent.
    let (public, _) = PublicKey::from_openssh(text.trim()).map_err(fail)?;
    let found = agent_keys(Some(&public)).map_err(Failure::Failed)?;
    if found.is_empty() {
        return Err(fail(format!(
            "a public key ({}); no ssh-agent (SSH_AUTH_SOCK) holds its private half: ssh-add it",
            public.fingerprint()
        )));
    }
    Ok(found)
}

/// Exactly one signer, for commands that sign a document: the first of [`resolve`].
pub fn one(key: Option<&Path>, command: &str) -> Result<Signer, Failure> {
    resolve(key)?.into_iter().next().ok_or_else(|| {
        Failure::Usage(format!(
            "{command}: which key? pass --key KEY (a key file or KEY.pub in ssh-agent) or ssh-add one"
        ))
    })
}
