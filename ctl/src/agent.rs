//! The small part of the ssh-agent protocol keelctl needs (draft-miller-ssh-agent): list the agent's keys
//! (`SSH2_AGENTC_REQUEST_IDENTITIES`) and have one sign (`SSH2_AGENTC_SIGN_REQUEST`), over the Unix socket named
//! by `SSH_AUTH_SOCK`. The private key never leaves the agent, so it never needs to be on disk in the clear.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use keel_config::sshsig::PublicKey;

const FAILURE: u8 = 5;
const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;
/// An answer longer than this is not from an agent.
const MAX_ANSWER: usize = 256 << 10;
/// Signing may wait for a confirmation (`ssh-add -c`) or a security key touch.
const TIMEOUT: Duration = Duration::from_secs(60);

pub struct Agent {
    sock: UnixStream,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// SSH wire `string` at `*at`, advancing it.
fn string<'a>(b: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(u32_at(b, *at)?).ok()?;
    let s = b.get(*at + 4..(*at + 4).checked_add(len)?)?;
    *at += 4 + len;
    Some(s)
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(s);
}

/// The key blobs and comments of an `IDENTITIES_ANSWER` body (after the type byte).
pub fn parse_identities(body: &[u8]) -> Result<Vec<(Vec<u8>, String)>, String> {
    let bad = || "a malformed identities answer from the agent".to_string();
    let n = u32_at(body, 0).ok_or_else(bad)?;
    let mut at = 4;
    let mut keys = Vec::new();
    for _ in 0..n {
        let blob = string(body, &mut at).ok_or_else(bad)?;
        let comment = string(body, &mut at).ok_or_else(bad)?;
        keys.push((blob.to_vec(), String::from_utf8_lossy(comment).into_owned()));
    }
    Ok(keys)
}

/// The `SIGN_REQUEST` body: key blob, data, flags (0: the key's own algorithm).
pub fn sign_request(key_blob: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = vec![SIGN_REQUEST];
    put_string(&mut m, key_blob);
    put_string(&mut m, data);
    m.extend_from_slice(&0u32.to_be_bytes());
    m
}

impl Agent {
    /// The agent at `SSH_AUTH_SOCK`; None when the variable is unset or empty.
    pub fn from_env() -> Result<Option<Agent>, String> {
        match std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(path) => Agent::connect(Path::new(&path)).map(Some),
        }
    }

    pub fn connect(path: &Path) -> Result<Agent, String> {
        let sock =
            UnixStream::connect(path).map_err(|e| format!("ssh-agent at {} (SSH_AUTH_SOCK): {e}", path.display()))?;
        let _ = sock.set_read_timeout(Some(TIMEOUT));
        let _ = sock.set_write_timeout(Some(TIMEOUT));
        Ok(Agent { sock })
    }

    /// One request and its answer: (type, body).
    fn call(&mut self, message: &[u8]) -> Result<(u8, Vec<u8>), String> {
        let io = |e: std::io::Error| format!("ssh-agent: {e}");
        let len = u32::try_from(message.len()).map_err(|_| "ssh-agent: request too large".to_string())?;
        self.sock.write_all(&len.to_be_bytes()).and_then(|()| self.sock.write_all(message)).map_err(io)?;
        let mut len = [0u8; 4];
        self.sock.read_exact(&mut len).map_err(io)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_ANSWER {
            return Err(format!("ssh-agent: an answer of {len} bytes; is SSH_AUTH_SOCK an ssh-agent?"));
        }
        let mut answer = vec![0u8; len];
        self.sock.read_exact(&mut answer).map_err(io)?;
        Ok((answer[0], answer.split_off(1)))
    }

    /// The agent's keys that can sign for Keel (ed25519, ECDSA P-256, security keys), with their comments.
    pub fn keys(&mut self) -> Result<Vec<(PublicKey, String)>, String> {
        match self.call(&[REQUEST_IDENTITIES])? {
            (IDENTITIES_ANSWER, body) => Ok(parse_identities(&body)?
                .into_iter()
                .filter_map(|(blob, comment)| Some((PublicKey::from_blob(&blob).ok()?, comment)))
                .collect()),
            (t, _) => Err(format!("ssh-agent answered the key list with message type {t}")),
        }
    }

    /// The SSH signature blob (`string type, string signature`) by `key` over `data`.
    pub fn sign(&mut self, key: &PublicKey, data: &[u8]) -> Result<Vec<u8>, String> {
        match self.call(&sign_request(&key.blob(), data))? {
            (SIGN_RESPONSE, body) => {
                let mut at = 0;
                string(&body, &mut at)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| "a malformed signature from the agent".to_string())
            }
            (FAILURE, _) => Err(format!(
                "ssh-agent refused to sign with {} (removed, locked, or confirmation denied?)",
                key.fingerprint()
            )),
            (t, _) => Err(format!("ssh-agent answered the signature request with message type {t}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_config::sshsig::PrivateKey;

    #[test]
    fn identities_and_requests_use_the_ssh_wire_format() {
        let key = PrivateKey::from_seed([1; 32], "k").public_key();
        let mut body = 2u32.to_be_bytes().to_vec();
        put_string(&mut body, &key.blob());
        put_string(&mut body, b"ops@laptop");
        put_string(&mut body, b"\0\0\0\x07ssh-rsa");
        put_string(&mut body, b"");
        let ids = parse_identities(&body).unwrap();
        assert_eq!(ids[0], (key.blob(), "ops@laptop".to_string()));
        assert_eq!(ids.len(), 2);
        assert!(parse_identities(&body[..body.len() - 2]).is_err());
        assert!(parse_identities(&[0, 0, 0, 9]).is_err());
        let req = sign_request(&key.blob(), b"data");
        assert_eq!(req[0], SIGN_REQUEST);
        let mut at = 1;
        assert_eq!(string(&req, &mut at), Some(&key.blob()[..]));
        assert_eq!(string(&req, &mut at), Some(&b"data"[..]));
        assert_eq!(&req[at..], &[0, 0, 0, 0]);
    }
}
