//! `PUT /v1/upgrade`: a signed slot image, written to the inactive boot slot and verified before the answer; the
//! node then reboots into it for its trial (README, "Upgrades"). Body: the armored `keel-image` signature, then
//! the image. `?sha256=HEX` additionally pins the image's hash; `?version=V` names the image's version (its signed
//! slot manifest comes last), so a downgrade is refused before anything is written.

use super::state::Inner;
use crate::power::Action;
use crate::upgrade::image::{self, Refusal};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_api::request::UpgradeQuery;
use keel_config::status::UpgradeAccepted;

/// The largest body: the image and its signature.
pub const MAX_UPGRADE_BODY: usize = image::MAX_IMAGE + (64 << 10);

fn refused(r: &Refusal) -> Response {
    let status = keel_api::refusals::status(keel_api::refusals::Kind::Upgrade, r.code);
    keel_api::reply::refused(status, r.code, r.detail.clone())
}

/// The signature must arrive within this many bytes.
const MAX_SIGNATURE: usize = 64 << 10;
/// Chunks in flight between the connection and the slot writer: with hyper's frames, a few hundred KiB at most.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Reads the body up to the end of the armored signature: (signature, the image bytes already read).
async fn read_signature(body: &mut axum::body::BodyDataStream) -> Result<(String, Vec<u8>), Refusal> {
    use futures_util::StreamExt;
    let mut head = Vec::new();
    loop {
        let ended = match body.next().await {
            Some(Ok(chunk)) => {
                head.extend_from_slice(&chunk);
                false
            }
            Some(Err(e)) => return Err(Refusal::new("incomplete", format!("the upload broke off: {e}"))),
            None => true,
        };
        // The signature's END line is complete once a byte after it (or the end of the body) has arrived.
        if let Ok((sig, rest)) = image::split_body(&head) {
            if !rest.is_empty() || ended {
                return Ok((sig.to_string(), rest.to_vec()));
            }
        }
        if ended || head.len() > MAX_SIGNATURE {
            let detail =
                format!("the body must start with the image's armored SSH signature (within {MAX_SIGNATURE} bytes)");
            return Err(Refusal::new("unsigned", detail));
        }
    }
}

/// After a refusal part-way (a client with the `keel-image` role, so trusted): reads and drops the rest of the
/// body, up to the limit, so the client gets the refusal instead of a reset connection. Nothing is kept.
async fn drain(body: &mut axum::body::BodyDataStream, mut seen: usize) {
    use futures_util::StreamExt;
    while let Some(Ok(chunk)) = body.next().await {
        seen += chunk.len();
        if seen > MAX_UPGRADE_BODY {
            return;
        }
    }
}

pub async fn put_upgrade(s: &Inner, q: UpgradeQuery, body: axum::body::Body) -> Response {
    use futures_util::StreamExt;
    let allowed = match &s.allowed {
        Ok(a) => a.clone(),
        Err(e) => return refused(&Refusal::new("untrusted-image", e.clone())),
    };
    // One upload at a time: a second one is refused before its body is read.
    let Ok(_upload) = s.gates.upload.clone().try_acquire_owned() else {
        return refused(&Refusal::new("busy", "another upgrade is being uploaded"));
    };
    let mut body = body.into_data_stream();
    let (sig, first) = match read_signature(&mut body).await {
        Ok(v) => v,
        Err(r) => {
            log::warn!("upgrade.refused reason={} detail={}", r.code, crate::logging::q(&r.detail));
            drain(&mut body, 0).await;
            return refused(&r);
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<bytes_chunk::Chunk, String>>(CHUNKS_IN_FLIGHT);
    let (sha, version) = (q.sha256, q.version);
    let work = tokio::task::spawn_blocking(move || {
        let chunks = std::iter::from_fn(move || rx.blocking_recv());
        crate::upgrade::stream::install(&sig, chunks, sha.as_deref(), version.as_deref(), &allowed)
    });
    let mut sent = 0usize;
    let _fed: Option<()> = async {
        if !first.is_empty() {
            sent += first.len();
            tx.send(Ok(bytes_chunk::Chunk::Vec(first))).await.ok()?;
        }
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| e.to_string());
            if let Ok(c) = &chunk {
                sent += c.len();
                if sent > MAX_UPGRADE_BODY {
                    tx.send(Err(format!("more than {MAX_UPGRADE_BODY} bytes"))).await.ok()?;
                    return None;
                }
            }
            // The writer stopped early (a refusal): stop reading.
            tx.send(chunk.map(bytes_chunk::Chunk::Bytes)).await.ok()?;
        }
        Some(())
    }
    .await;
    drop(tx);
    let done = match work.await {
        Ok(Ok(done)) => done,
        Ok(Err(r)) => {
            drain(&mut body, sent).await;
            return refused(&r);
        }
        Err(e) => return refused(&Refusal::new("internal", e.to_string())),
    };
    // Answer first, then reboot into the trial.
    crate::power::after_reply(&s.power, Action::Reboot, format!("upgrade to slot {}", done.slot));
    let accepted = UpgradeAccepted {
        accepted: true,
        bytes: done.bytes as u64,
        rebooting: true,
        sha256: done.sha256,
        signer: done.signer,
        slot: done.slot.to_string(),
    };
    Json(accepted).into_response()
}

/// A body chunk: the first one (copied while looking for the signature's end), then hyper's own.
mod bytes_chunk {
    pub enum Chunk {
        Vec(Vec<u8>),
        Bytes(axum::body::Bytes),
    }

    impl AsRef<[u8]> for Chunk {
        fn as_ref(&self) -> &[u8] {
            match self {
                Chunk::Vec(v) => v,
                Chunk::Bytes(b) => b,
            }
        }
    }
}
