//! The keelctl commands. Each returns one actionable line on failure; `validate` prints every config error first.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use keel_config::sshsig::{self, AllowedSigners, PrivateKey};
use keel_config::{LoadError, Timestamp, NAMESPACE};

use crate::{Failure, Opts};

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    fs::read(path).map_err(|e| Failure::Failed(format!("{}: cannot read: {e}", path.display())))
}

pub(crate) fn read_text(path: &Path) -> Result<String, Failure> {
    String::from_utf8(read(path)?).map_err(|_| Failure::Failed(format!("{}: not UTF-8 text", path.display())))
}

pub(crate) fn one_file(o: &Opts, what: &str) -> Result<PathBuf, Failure> {
    match o.files.as_slice() {
        [file] => Ok(file.clone()),
        [] => Err(Failure::Usage(format!("{what}: which file?"))),
        more => Err(Failure::Usage(format!("{what}: one file at a time, got {}", more.len()))),
    }
}

/// `path` with `suffix` appended to its file name: `node.toml` → `node.toml.sig`.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates `path` with `mode`; never replaces an existing file.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::Failed(format!("{}: cannot write: {e}", path.display()));
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(fail)?;
    f.write_all(contents.as_bytes()).and_then(|()| f.sync_all()).map_err(fail)
}

/// Replaces `path` atomically (a reader sees the old file or the new one, never half of one).
fn write_replace(path: &Path, contents: &str) -> Result<(), Failure> {
    let tmp = with_suffix(path, ".tmp");
    let fail = |e: std::io::Error| Failure::Failed(format!("{}: cannot write: {e}", path.display()));
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, contents, 0o644)?;
    fs::rename(&tmp, path).map_err(fail)
}

/// Every role a key can have (keel_config::credential::Role): config pushes, commands, images, reads, metrics.
/// The one line `keelctl keygen` prints and every example in the docs shows (ctl/tests/docs.rs checks them).
pub const ALL_NAMESPACES: &str = "keel-config,keel-command,keel-image,keel-read,keel-metrics";

pub fn keygen(o: Opts) -> Result<(), Failure> {
    if !o.files.is_empty() {
        return Err(Failure::Usage("keygen: the key path goes after -f".into()));
    }
    let path = o.key.ok_or_else(|| Failure::Usage("keygen: -f KEY is required".into()))?;
    let public = with_suffix(&path, ".pub");
    for p in [&path, &public] {
        if p.symlink_metadata().is_ok() {
            return Err(Failure::Failed(format!(
                "{}: already exists; keelctl keygen never overwrites a key",
                p.display()
            )));
        }
    }
    let comment = o.comment.unwrap_or_else(|| "keel-config signer".to_string());
    let key = PrivateKey::generate(&comment).map_err(|e| Failure::Failed(format!("no randomness for a key: {e}")))?;
    write_new(&path, &key.to_openssh(), 0o600)?;
    write_new(&public, &key.public_line(), 0o644)?;
    println!("wrote {} and {} ({})", path.display(), public.display(), key.public_key().fingerprint());
    println!("allowed_signers line (every role):");
    println!("ops@example.org namespaces=\"{ALL_NAMESPACES}\" {}", key.public_key().to_openssh());
    println!("(one role per key: keep only what this key does, e.g. namespaces=\"keel-read\"; keelctl help)");
    Ok(())
}

pub fn sign(o: Opts) -> Result<(), Failure> {
    let file = one_file(&o, "sign")?;
    let signer = crate::signer::one(o.key.as_deref(), "sign")?;
    let namespace = o.namespace.unwrap_or_else(|| NAMESPACE.to_string());
    let message = read(&file)?;
    if namespace == NAMESPACE {
        if let Err(e) = keel_config::parse_bytes(&file.display().to_string(), &message) {
            let n = e.diagnostics().len();
            let first = e.diagnostics().first().map(ToString::to_string).unwrap_or_default();
            let more = if n > 1 { format!(" (and {} more; run keelctl validate)", n - 1) } else { String::new() };
            return Err(Failure::Failed(format!("refusing to sign an invalid config: {first}{more}")));
        }
    }
    let sig_path = with_suffix(&file, ".sig");
    let sig = signer.sign(&message, &namespace).map_err(Failure::Failed)?;
    write_replace(&sig_path, &sig.to_armored())?;
    println!("wrote {} ({namespace:?} signature by {})", sig_path.display(), sig.key.fingerprint());
    Ok(())
}

pub fn verify(o: Opts) -> Result<(), Failure> {
    let file = one_file(&o, "verify")?;
    let signers_path =
        o.allowed_signers.ok_or_else(|| Failure::Usage("verify: -s ALLOWED_SIGNERS is required".into()))?;
    let namespace = o.namespace.unwrap_or_else(|| NAMESPACE.to_string());
    let allowed = AllowedSigners::parse(&signers_path.display().to_string(), &read_text(&signers_path)?)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let sig_path = o.sig.unwrap_or_else(|| with_suffix(&file, ".sig"));
    let sig = read_text(&sig_path)?;
    let message = read(&file)?;
    let principal = o.principal.as_deref();
    let v = sshsig::verify(&message, &sig, &allowed, principal, &namespace, SystemTime::now())
        .map_err(|e| Failure::Failed(format!("{}: {e}", sig_path.display())))?;
    println!(
        "ok: good {namespace:?} signature for {} with {} key {} ({}:{})",
        v.principal,
        v.key.kind(),
        v.fingerprint,
        signers_path.display(),
        v.line
    );
    Ok(())
}

/// From this long before its `[node] expires`, `validate` warns: a config published now reaches nodes over days.
const EXPIRY_WARNING_SECS: i64 = 14 * 86_400;

pub fn validate(o: Opts) -> Result<(), Failure> {
    let file = one_file(&o, "validate")?;
    let name = file.display().to_string();
    let bytes = read(&file)?;
    let config = match keel_config::parse_bytes(&name, &bytes) {
        Ok(config) => config,
        Err(e) => {
            // The node stops at the first problem; an operator wants every one (each unknown key too).
            let all = std::str::from_utf8(&bytes).map(|t| keel_config::all_diagnostics(&name, t)).unwrap_or_default();
            let all = if all.is_empty() { e.diagnostics().to_vec() } else { all };
            for d in &all {
                eprintln!("{d}");
            }
            let n = all.len();
            let kind = if matches!(e, LoadError::Malformed(_)) { "is not a well-formed config" } else { "is invalid" };
            return Err(Failure::Failed(format!("{name} {kind} ({n} error{})", if n == 1 { "" } else { "s" })));
        }
    };
    if let Some(expires) = config.target.expires {
        let now = Timestamp::from_system(SystemTime::now());
        let left = expires.unix_seconds - now.unix_seconds;
        if left <= 0 {
            return Err(Failure::Failed(format!(
                "{name}: [node] expires = {expires} has passed (it is now {now}): every node refuses it as expired"
            )));
        }
        if left < EXPIRY_WARNING_SECS {
            eprintln!(
                "keelctl: warning: {name}: [node] expires = {expires}, in {} h: nodes refuse it from then on",
                left / 3600
            );
        }
    }
    println!("ok: generation {}", config.generation);
    Ok(())
}

/// `metrics-token`: a bearer token for `/metrics` only (docs/api.md, "Prometheus"), signed in `keel-metrics`.
pub fn metrics_token(o: Opts) -> Result<(), Failure> {
    use keel_config::credential;
    if let Some(f) = o.files.first() {
        return Err(Failure::Usage(format!("metrics-token: unexpected argument {:?}", f.display().to_string())));
    }
    let node = match o.machine_id.as_deref() {
        None | Some("*") => "*".to_string(),
        Some(id) => keel_config::net::normalize_machine_id(id).ok_or_else(|| {
            Failure::Usage(format!("metrics-token: --machine-id {id:?}: expected 32 hex digits or *"))
        })?,
    };
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = match o.days.as_deref() {
        None => 365,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .ok_or_else(|| Failure::Usage(format!("metrics-token: --days {v:?}: a number from 1 to 3650")))?,
    };
    let expires = now + days * 86_400;
    let signer = crate::signer::one(o.key.as_deref(), "metrics-token")?;
    let sig = signer
        .sign(&credential::metrics_message(&node, expires), credential::METRICS_NAMESPACE)
        .map_err(Failure::Failed)?;
    println!("{}", credential::metrics_token(&node, expires, &sig));
    Ok(())
}
