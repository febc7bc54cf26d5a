//! `keelctl upgrade IMAGE`: sends a signed slot image (`make upgrade-image`) to a node, which writes it to its
//! inactive boot slot, verifies it, and reboots into it for a trial (README, "Upgrades").

use keel_config::sshsig::{self, Signature};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::client::{Client, APPLY_TIMEOUT};
use crate::commands::{one_file, read, read_text, with_suffix};
use crate::{Failure, Opts};

pub const NAMESPACE: &str = "keel-image";

/// `--key`: sign now; else IMAGE.sig (or `--sig`), checked against the image before anything is sent.
fn signature(o: &Opts, file: &std::path::Path, image: &[u8]) -> Result<String, Failure> {
    if let Some(key) = &o.key {
        return crate::signer::one(Some(key), "upgrade")?.sign_armored(image, NAMESPACE);
    }
    let sig_path = o.sig.clone().unwrap_or_else(|| with_suffix(file, ".sig"));
    let text = read_text(&sig_path).map_err(|_| {
        Failure::Failed(format!(
            "{}: no signature; sign it (ssh-keygen -Y sign -n {NAMESPACE} -f KEY {}) or pass --key KEY",
            sig_path.display(),
            file.display()
        ))
    })?;
    let bad = |why: String| Failure::Failed(format!("{}: {why}; sign {} again", sig_path.display(), file.display()));
    let sig = Signature::from_armored(&text).map_err(|e| bad(e.to_string()))?;
    if sig.namespace != NAMESPACE {
        return Err(bad(format!("signed for namespace {:?}, not {NAMESPACE:?}", sig.namespace)));
    }
    let data = sshsig::signed_data(NAMESPACE, sig.hash, image);
    sig.key.verify(&data, &sig.blob).map_err(|_| bad(format!("does not match {}", file.display())))?;
    Ok(text)
}

/// The request body: the signature, then the image.
pub fn body(sig: &str, image: &[u8]) -> Vec<u8> {
    let mut body = sig.as_bytes().to_vec();
    if !sig.ends_with('\n') {
        body.push(b'\n');
    }
    body.extend_from_slice(image);
    body
}

pub fn upgrade(o: Opts) -> Result<(), Failure> {
    let file = one_file(&o, "upgrade")?;
    let client =
        Client::new("upgrade", o.node.clone(), o.fingerprint.clone(), o.known_nodes.clone())?.with_key(o.key.clone());
    let image = read(&file)?;
    let sig = signature(&o, &file, &image)?;
    let sha: String = Sha256::digest(&image).iter().map(|b| format!("{b:02x}")).collect();
    // The signed slot manifest comes last in the stream: naming its version lets the node refuse a downgrade
    // before it writes anything (and it holds the manifest to this claim).
    let path = match keel_config::slot_manifest::version_text(&image) {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            format!("/v1/upgrade?sha256={sha}&version={v}")
        }
        _ => format!("/v1/upgrade?sha256={sha}"),
    };
    let what = "PUT /v1/upgrade";
    let mut response = client.send("PUT", &path, Some(&body(&sig, &image)), Some(APPLY_TIMEOUT))?;
    let bytes = response.read_all().map_err(|e| client.io_fail(what, e))?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if (200..300).contains(&response.status) && v.get("accepted").and_then(Value::as_bool) == Some(true) {
        let slot = v.get("slot").and_then(Value::as_str).unwrap_or("?");
        println!(
            "upgrade written to slot {slot} and verified (sha256 {sha}); {} reboots into it and keeps it once its \
             config converges (keelctl status shows the outcome)",
            client.key
        );
        return Ok(());
    }
    match v.get("reason").and_then(Value::as_str) {
        Some(reason) => {
            let detail = v.get("detail").and_then(Value::as_str).map(|d| format!(": {d}")).unwrap_or_default();
            let after = match reason {
                "write-failed" | "record-failed" | "boot-entry-failed" => {
                    "the inactive slot may be partly written; the node keeps booting its running slot"
                }
                _ => "nothing was written",
            };
            Err(Failure::Failed(format!("{}: refused the upgrade: {reason}{detail}; {after}", client.key)))
        }
        // The credential was refused: the node read nothing of the image.
        None if matches!(response.status, 401 | 403) => Err(Failure::Failed(format!(
            "{}: refused the upgrade: HTTP {}: {}; nothing was written",
            client.key,
            response.status,
            crate::client::describe_error(&v)
        ))),
        None => Err(client.http_error(what, response.status, &bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_signature_then_image() {
        assert_eq!(body("SIG\n", b"IMG"), b"SIG\nIMG");
        assert_eq!(body("SIG", b"IMG"), b"SIG\nIMG");
    }
}
