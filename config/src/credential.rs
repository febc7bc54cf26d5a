//! Credentials for the node API (docs/api.md, "Authentication"): what a client puts in `Authorization`, parsed
//! here by a small pure module (fuzzed: `fuzz/fuzz_targets/credential_parse.rs`) and checked against the node's
//! `allowed_signers`.
//!
//! - `Keel-SSHSIG <base64>`: an OpenSSH signature (binary SSHSIG, base64) in namespace `keel-api` over
//!   [`proof_message`]: a fixed prefix and 32 bytes of RFC 9266 `tls-exporter` keying material of this TLS
//!   connection. Only the holder of the key can make it, and it is worth nothing on any other connection, so a
//!   captured header cannot be replayed. One proof serves every request of its (keep-alive) connection.
//! - `Bearer km1.<node>.<expires>.<base64>`: a metrics-only token for scrapers that cannot sign (Prometheus):
//!   a `keel-metrics` signature over the node (`*` for any) and an expiry. It grants `/metrics` and nothing else.
//!
//! Roles come from the `namespaces=` of the key's `allowed_signers` line: `keel-read` reads (status, logs,
//! config, metrics), `keel-metrics` reads only metrics, and each write namespace (`keel-config`, `keel-command`,
//! `keel-image`) grants its write and reads too. A line without `namespaces=` grants every role.

use std::time::SystemTime;

use crate::sshsig::{wire_b64_decode, wire_b64_encode, AllowedSigners, Signature, VerifyError};
use crate::time::Timestamp;

/// The SSHSIG namespace of connection proofs.
pub const PROOF_NAMESPACE: &str = "keel-api";
/// The SSHSIG namespace of metrics tokens (and the metrics-only role).
pub const METRICS_NAMESPACE: &str = "keel-metrics";
/// RFC 9266: the exporter label for TLS channel bindings, and its length.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
pub const EXPORTER_LEN: usize = 32;
/// The scheme names in `Authorization`.
pub const PROOF_SCHEME: &str = "Keel-SSHSIG";
pub const BEARER_SCHEME: &str = "Bearer";
/// A longer header is refused unread: an ed25519 or P-256 signature is a few hundred bytes.
pub const MAX_HEADER: usize = 4096;
const PROOF_PREFIX: &[u8] = b"keel-api-auth-v1\0";
const TOKEN_PREFIX: &str = "km1";

/// What a key may do on the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `GET /v1/status`, `/v1/logs`, `/v1/config`, `/metrics`.
    Read,
    /// `GET /metrics` only.
    Metrics,
    /// `PUT /v1/config`.
    Config,
    /// `POST /v1/reboot`, `/v1/poweroff`.
    Command,
    /// `PUT /v1/upgrade`.
    Image,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Read, Role::Metrics, Role::Config, Role::Command, Role::Image];

    /// The `allowed_signers` namespace that grants it.
    pub fn namespace(self) -> &'static str {
        match self {
            Role::Read => "keel-read",
            Role::Metrics => METRICS_NAMESPACE,
            Role::Config => "keel-config",
            Role::Command => "keel-command",
            Role::Image => "keel-image",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles(u8);

impl Roles {
    pub fn only(role: Role) -> Roles {
        Roles(role.bit())
    }

    pub fn has(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn with(self, role: Role) -> Roles {
        Roles(self.0 | role.bit())
    }

    /// Whether these roles allow what `needed` guards: any write role also reads, and reading includes metrics.
    pub fn allow(self, needed: Role) -> bool {
        let readers = [Role::Read, Role::Config, Role::Command, Role::Image];
        match needed {
            Role::Read => readers.iter().any(|r| self.has(*r)),
            Role::Metrics => self.has(Role::Metrics) || readers.iter().any(|r| self.has(*r)),
            write => self.has(write),
        }
    }

    /// Any write role.
    pub fn writes(self) -> bool {
        [Role::Config, Role::Command, Role::Image].iter().any(|r| self.has(*r))
    }

    /// `read,config`: for log lines and status.
    pub fn names(self) -> String {
        let names: Vec<&str> = Role::ALL.iter().filter(|r| self.has(**r)).map(|r| &r.namespace()[5..]).collect();
        names.join(",")
    }
}

/// A parsed `Authorization` value; nothing is verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Proof(Signature),
    Metrics(MetricsToken),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsToken {
    /// The machine id (32 lowercase hex) the token is for, or `*`.
    pub node: String,
    /// Unix seconds after which the token is refused.
    pub expires: u64,
    pub signature: Signature,
}

/// Why a credential was refused. `code` is stable (log lines, the 401/403 body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub detail: String,
}

impl Refusal {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal { code, detail: detail.into() }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// Who a verified credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The principals of the `allowed_signers` line.
    pub principal: String,
    /// `SHA256:…` of the key.
    pub fingerprint: String,
    pub roles: Roles,
}

/// The message a connection proof signs.
pub fn proof_message(exporter: &[u8]) -> Vec<u8> {
    let mut m = PROOF_PREFIX.to_vec();
    m.extend_from_slice(exporter);
    m
}

/// The `Authorization` value carrying a proof.
pub fn proof_header(sig: &Signature) -> String {
    format!("{PROOF_SCHEME} {}", wire_b64_encode(&sig.to_bytes()))
}

/// The message a metrics token signs.
pub fn metrics_message(node: &str, expires: u64) -> Vec<u8> {
    format!("keel-metrics-token-v1 node={node} expires={expires}").into_bytes()
}

/// The token (what follows `Bearer `).
pub fn metrics_token(node: &str, expires: u64, sig: &Signature) -> String {
    format!("{TOKEN_PREFIX}.{node}.{expires}.{}", wire_b64_encode(&sig.to_bytes()))
}

/// Parses an `Authorization` header value. Pure; bounded by [`MAX_HEADER`].
pub fn parse(value: &str) -> Result<Credential, Refusal> {
    if value.len() > MAX_HEADER {
        return Err(Refusal::new("malformed", format!("Authorization longer than {MAX_HEADER} bytes")));
    }
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let rest = rest.trim();
    let sig = |b64: &str| {
        let bytes = wire_b64_decode(b64).map_err(|e| Refusal::new("malformed", format!("signature: {e}")))?;
        Signature::from_bytes(&bytes).map_err(|e| Refusal::new("malformed", e.to_string()))
    };
    if scheme.eq_ignore_ascii_case(PROOF_SCHEME) {
        if rest.is_empty() {
            return Err(Refusal::new("malformed", format!("no signature after {PROOF_SCHEME}")));
        }
        return Ok(Credential::Proof(sig(rest)?));
    }
    if !scheme.eq_ignore_ascii_case(BEARER_SCHEME) {
        return Err(Refusal::new(
            "malformed",
            format!("unknown Authorization scheme {:?} ({PROOF_SCHEME} or {BEARER_SCHEME})", truncate(scheme)),
        ));
    }
    let mut parts = rest.split('.');
    let (Some(TOKEN_PREFIX), Some(node), Some(expires), Some(b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::new("malformed", "a bearer token is km1.<node>.<expires>.<signature>"));
    };
    let node_ok = node == "*" || (node.len() == 32 && node.bytes().all(|b| b.is_ascii_hexdigit()));
    if !node_ok {
        return Err(Refusal::new("malformed", "the token's node is a 32-hex machine id or *"));
    }
    let expires = expires
        .parse::<u64>()
        .map_err(|_| Refusal::new("malformed", "the token's expiry is not a number of seconds"))?;
    Ok(Credential::Metrics(MetricsToken { node: node.to_ascii_lowercase(), expires, signature: sig(b64)? }))
}

fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

/// The roles `allowed_signers` grants `sig`'s key at `now`, with the line's principals.
fn roles_of(sig: &Signature, allowed: &AllowedSigners, now: SystemTime) -> Result<(String, Roles), Refusal> {
    let now = Timestamp::from_system(now);
    let mut roles = Roles::default();
    let mut principal = None;
    let mut why = None;
    for role in Role::ALL {
        match allowed.find(&sig.key, None, role.namespace(), now) {
            Ok(e) => {
                roles = roles.with(role);
                principal.get_or_insert_with(|| e.principals.clone());
            }
            Err(e) => why = why.or(Some(e)),
        }
    }
    match principal {
        Some(p) => Ok((p, roles)),
        None => Err(Refusal::new(
            "unknown-key",
            format!(
                "key {} has no API role: {}",
                sig.key.fingerprint(),
                why.unwrap_or_else(|| "not in allowed_signers".into())
            ),
        )),
    }
}

fn check_signature(sig: &Signature, namespace: &str, message: &[u8]) -> Result<(), Refusal> {
    sig.verify_digest(namespace, &sig.hash.digest(message)).map_err(|e| match e {
        VerifyError::Namespace { .. } => Refusal::new("malformed", e.to_string()),
        _ => Refusal::new("bad-signature", e.to_string()),
    })
}

/// Checks a connection proof against this connection's exporter; returns who it is and what they may do.
pub fn verify_proof(
    sig: &Signature,
    exporter: &[u8],
    allowed: &AllowedSigners,
    now: SystemTime,
) -> Result<Identity, Refusal> {
    check_signature(sig, PROOF_NAMESPACE, &proof_message(exporter))?;
    let (principal, roles) = roles_of(sig, allowed, now)?;
    Ok(Identity { principal, fingerprint: sig.key.fingerprint(), roles })
}

/// Checks a metrics token for the node `machine_id` (32 hex) at `now`; grants at most [`Role::Metrics`].
pub fn verify_metrics(
    t: &MetricsToken,
    allowed: &AllowedSigners,
    machine_id: &str,
    now: SystemTime,
) -> Result<Identity, Refusal> {
    check_signature(&t.signature, METRICS_NAMESPACE, &metrics_message(&t.node, t.expires))?;
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    if secs > t.expires {
        return Err(Refusal::new("expired", format!("the metrics token expired at {}", t.expires)));
    }
    if t.node != "*" && !t.node.eq_ignore_ascii_case(machine_id) {
        return Err(Refusal::new("wrong-node", format!("the metrics token is for node {}", t.node)));
    }
    let (principal, roles) = roles_of(&t.signature, allowed, now)?;
    if !roles.has(Role::Metrics) {
        return Err(Refusal::new("unknown-key", format!("key {} lacks keel-metrics", t.signature.key.fingerprint())));
    }
    Ok(Identity { principal, fingerprint: t.signature.key.fingerprint(), roles: Roles::only(Role::Metrics) })
}

#[cfg(test)]
mod tests;
