//! The commands that talk to a node: apply, plan, status, logs, reboot, poweroff.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use keel_config::net::normalize_machine_id;
use keel_config::sshsig::{self, Signature};
use keel_config::{Config, LoadError, NAMESPACE};
use serde_json::{json, Value};

use crate::client::{Client, APPLY_TIMEOUT, READ_TIMEOUT};
use crate::commands::{one_file, read, read_text, with_suffix};
use crate::diff::diff;
use crate::view::View;
use crate::{cmddoc, status, Failure, Opts};
use keel_config::status::RunningConfig;

fn client(o: &Opts, command: &str) -> Result<Client, Failure> {
    Ok(Client::new(command, o.node.clone(), o.fingerprint.clone(), o.known_nodes.clone())?.with_key(o.key.clone()))
}

fn no_files(o: &Opts, command: &str) -> Result<(), Failure> {
    match o.files.first() {
        None => Ok(()),
        Some(f) => Err(Failure::Usage(format!("{command}: unexpected argument {:?}", f.display().to_string()))),
    }
}

/// Validates like the node does; every diagnostic goes to stderr, then one summary line.
fn load_valid(file: &Path, bytes: &[u8]) -> Result<Config, Failure> {
    keel_config::parse_bytes(&file.display().to_string(), bytes).map_err(|e| {
        for d in e.diagnostics() {
            eprintln!("{d}");
        }
        let n = e.diagnostics().len();
        let kind = if matches!(e, LoadError::Malformed(_)) { "is not a well-formed config" } else { "is invalid" };
        let s = if n == 1 { "" } else { "s" };
        Failure::Failed(format!("{} {kind} ({n} error{s}); fix it, nothing was sent to the node", file.display()))
    })
}

/// `--key`: sign now; else the `.sig` beside the file, checked against the file before anything is sent.
fn signature(o: &Opts, file: &Path, bytes: &[u8]) -> Result<String, Failure> {
    if let Some(key) = &o.key {
        return crate::signer::one(Some(key), "apply")?.sign_armored(bytes, NAMESPACE);
    }
    let sig_path = o.sig.clone().unwrap_or_else(|| with_suffix(file, ".sig"));
    if !sig_path.exists() {
        return Err(Failure::Failed(format!(
            "{}: no signature; sign it (keelctl sign -f KEY {}) or pass --key KEY",
            sig_path.display(),
            file.display()
        )));
    }
    let text = read_text(&sig_path)?;
    let stale = |why: String| {
        Failure::Failed(format!(
            "{}: {why}; sign {} again (keelctl sign -f KEY {}) or pass --key KEY",
            sig_path.display(),
            file.display(),
            file.display()
        ))
    };
    let sig = Signature::from_armored(&text).map_err(|e| stale(e.to_string()))?;
    if sig.namespace != NAMESPACE {
        return Err(stale(format!("signed for namespace {:?}, not {NAMESPACE:?}", sig.namespace)));
    }
    let data = sshsig::signed_data(NAMESPACE, sig.hash, bytes);
    sig.key
        .verify(&data, &sig.blob)
        .map_err(|_| stale(format!("does not match {} (edited since?)", file.display())))?;
    Ok(text)
}

fn config_hint(reason: &str, file: &Path) -> String {
    let f = file.display();
    match reason {
        "unsigned" | "bad-signature" => format!("sign it again (keelctl sign -f KEY {f}) or pass --key KEY"),
        "unknown-key" => "sign with a key listed in the image's allowed_signers".into(),
        "malformed" | "invalid" => format!("the node reads the config differently; run keelctl validate {f}"),
        "wrong-node" => "check [node] uuid/mac against keelctl status".into(),
        "expired" => "move [node] expires into the future and sign again".into(),
        "not-newer" => "raise generation above the node's (keelctl status) and sign again".into(),
        _ => "see keelctl logs on the node".into(),
    }
}

/// `apply FILE` (and with `--dry-run`, or as `plan FILE`: the diff against the node's running config).
pub fn apply(o: Opts, plan: bool) -> Result<(), Failure> {
    let command = if plan { "plan" } else { "apply" };
    let file = one_file(&o, command)?;
    let client = client(&o, command)?;
    let bytes = read(&file)?;
    let config = load_valid(&file, &bytes)?;
    if plan || o.dry_run {
        let (status, running) = client.json("GET", "/v1/config", None, READ_TIMEOUT)?;
        let running: RunningConfig = match status {
            200..=299 => serde_json::from_value(running)
                .map_err(|e| client.fail(format!("GET /v1/config: not a running config: {e}")))?,
            404 => RunningConfig::default(),
            _ => return Err(client.http_error("GET /v1/config", status, running.to_string().as_bytes())),
        };
        if running.config.is_none() {
            println!("the node runs no config yet");
        }
        print!("{}", diff(&View::from_running(&running), &View::from_config(&config)));
        return Ok(());
    }
    let sig = signature(&o, &file, &bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let body = json!({"config": text, "signature": sig});
    let (status, v) = client.json("PUT", "/v1/config", Some(&body), APPLY_TIMEOUT)?;
    let accepted = v.get("accepted").and_then(Value::as_bool);
    if (200..300).contains(&status) && accepted != Some(false) {
        let generation = v.get("generation").and_then(Value::as_u64).unwrap_or(config.generation);
        if let Some(at) = v.get("waiting_rollout").and_then(|w| w.get("applies_at")).and_then(Value::as_str) {
            println!("accepted generation {generation}: waiting-rollout, this node applies it at {at}");
            return Ok(());
        }
        let state = match v.get("converged").and_then(Value::as_bool) {
            Some(true) => " (converged)",
            Some(false) => " (not converged yet; see keelctl status)",
            None => "",
        };
        println!("applied generation {generation}{state}");
        return Ok(());
    }
    match v.get("reason").and_then(Value::as_str) {
        Some(reason) => {
            let detail = v.get("detail").and_then(Value::as_str).map(|d| format!(": {d}")).unwrap_or_default();
            Err(Failure::Failed(format!(
                "{}: refused generation {}: {reason}{detail}; {}",
                client.key,
                config.generation,
                config_hint(reason, &file)
            )))
        }
        None => Err(client.http_error("PUT /v1/config", status, v.to_string().as_bytes())),
    }
}

pub fn status(o: Opts) -> Result<(), Failure> {
    no_files(&o, "status")?;
    let json_out = match o.output.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => return Err(Failure::Usage(format!("status: -o {other:?}: expected json or text"))),
    };
    let client = client(&o, "status")?;
    let v = client.get_json("/v1/status")?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        let st: keel_config::status::NodeStatus = serde_json::from_value(v)
            .map_err(|e| Failure::Failed(format!("status: the node's answer is not a status document: {e}")))?;
        print!("{}", status::render(&st));
    }
    Ok(())
}

/// Copies the body to stdout as it comes; a closed stdout (`| head`) ends quietly.
pub fn logs(o: Opts) -> Result<(), Failure> {
    no_files(&o, "logs")?;
    let client = client(&o, "logs")?;
    let (path, timeout) = if o.follow { ("/v1/logs?follow=1", None) } else { ("/v1/logs", Some(READ_TIMEOUT)) };
    let what = format!("GET {path}");
    let mut response = client.send("GET", path, None, timeout)?;
    if !(200..300).contains(&response.status) {
        let body = response.read_all().map_err(|e| client.io_fail(&what, e))?;
        return Err(client.http_error(&what, response.status, &body));
    }
    let mut stdout = io::stdout().lock();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match response.body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if o.follow && e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(Failure::Failed(format!(
                    "{}: the log stream broke off (the node may be rebooting); run keelctl logs -f again",
                    client.key
                )))
            }
            Err(e) => return Err(client.io_fail(&what, e)),
        };
        match stdout.write_all(&buf[..n]).and_then(|()| stdout.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(Failure::Failed(format!("stdout: {e}"))),
        }
    }
    if o.follow {
        eprintln!("keelctl: {}: the node ended the log stream", client.key);
    }
    Ok(())
}

fn command_hint(reason: &str) -> &'static str {
    match reason {
        "unsigned" | "bad-signature" | "malformed" => "is keelctl older than the node?",
        "unknown-key" => "use a key listed for keel-command in the image's allowed_signers",
        "wrong-node" => "leave out --machine-id to ask the node for its id",
        "wrong-action" => "this is a keelctl bug; please report it",
        "expired" | "too-far" => "check this machine's clock against the node's (keelctl status)",
        "replayed" => "run the command again (it gets a fresh nonce)",
        _ => "see keelctl logs on the node",
    }
}

/// `reboot` / `poweroff`: a signed command document, POSTed.
pub fn power(o: Opts, action: &str) -> Result<(), Failure> {
    no_files(&o, action)?;
    let signer = crate::signer::one(o.key.as_deref(), action)?;
    let client = client(&o, action)?;
    let node = match &o.machine_id {
        Some(id) => normalize_machine_id(id).ok_or_else(|| {
            Failure::Usage(format!("{action}: --machine-id {id:?}: expected 32 hex digits (dashes allowed)"))
        })?,
        None => {
            let st = client.get_json("/v1/status")?;
            let id = st.get("machine_id").and_then(Value::as_str).and_then(normalize_machine_id);
            id.ok_or_else(|| {
                Failure::Failed(format!("{}: /v1/status has no usable machine_id; pass --machine-id ID", client.key))
            })?
        }
    };
    let nonce = cmddoc::nonce().map_err(|e| Failure::Failed(format!("/dev/urandom: {e}; cannot make a nonce")))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let body = cmddoc::request(action, &node, &nonce, now, &signer).map_err(Failure::Failed)?;
    let path = format!("/v1/{action}");
    let (status, v) = client.json("POST", &path, Some(&body), READ_TIMEOUT)?;
    if (200..300).contains(&status) && v.get("accepted").and_then(Value::as_bool) != Some(false) {
        println!("{action} accepted by {} (machine {node})", client.key);
        return Ok(());
    }
    match v.get("reason").and_then(Value::as_str) {
        Some(reason) => {
            let detail = v.get("detail").and_then(Value::as_str).map(|d| format!(": {d}")).unwrap_or_default();
            let hint = command_hint(reason);
            Err(Failure::Failed(format!("{}: refused {action}: {reason}{detail}; {hint}", client.key)))
        }
        None => Err(client.http_error(&format!("POST {path}"), status, v.to_string().as_bytes())),
    }
}
