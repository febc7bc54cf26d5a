//! Durable file work for async code: the one atomic durable write ([`crate::controller::files::write_atomic`]:
//! temp file, fsync, rename, fsync of the directory) run on a blocking thread, so its fsyncs never stall PID 1's
//! event loop. Every piece of blocking work goes through [`off_loop`], which counts it: shutdown waits (bounded)
//! for what is in flight before it unmounts, so a write on /var never makes /var busy and the filesystem dirty.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Set by [`quiesce`]: no new blocking work starts (the node is going down).
static CLOSED: AtomicBool = AtomicBool::new(false);
static DONE: Notify = Notify::const_new();

/// Decrements the count when the work ends, however it ends.
struct InFlight;

impl InFlight {
    fn start() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        DONE.notify_waiters();
    }
}

/// For shutdown: refuses new blocking work from now on and waits until what is in flight ended, at most `limit`;
/// returns how many pieces are still running.
pub async fn quiesce(limit: Duration) -> usize {
    CLOSED.store(true, Ordering::SeqCst);
    drain(limit).await
}

/// Waits until no blocking work is in flight, at most `limit`; returns how many pieces are still running.
async fn drain(limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let done = DONE.notified();
        let left = IN_FLIGHT.load(Ordering::SeqCst);
        if left == 0 {
            return 0;
        }
        if tokio::time::timeout_at(deadline, done).await.is_err() {
            return IN_FLIGHT.load(Ordering::SeqCst);
        }
    }
}

/// [`crate::controller::files::write_atomic`] off the event loop; the error names the file.
pub async fn write_atomic_off_loop(path: PathBuf, content: Vec<u8>, mode: u32) -> Result<(), String> {
    let shown = path.display().to_string();
    let done = off_loop("write", move || crate::controller::files::write_atomic(&path, &content, mode, None)).await;
    match done {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{shown}: {e}")),
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

/// Runs `f` on a blocking thread, counted for [`drain`]; a panic there (which the panic hook already logged)
/// becomes an error.
pub async fn off_loop<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let counted = InFlight::start();
    if CLOSED.load(Ordering::SeqCst) {
        return Err(format!("{what}: the node is shutting down"));
    }
    let done = tokio::task::spawn_blocking(move || {
        let _counted = counted;
        f()
    })
    .await;
    done.map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_durably_off_the_loop_and_names_the_file_on_error() {
        let dir = std::env::temp_dir().join(format!("keel-fsutil-{}", std::process::id()));
        let path = dir.join("sub/generation");
        write_atomic_off_loop(path.clone(), b"7\n".to_vec(), 0o644).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"7\n");
        let bad = PathBuf::from("/proc/version/x");
        let e = write_atomic_off_loop(bad, b"x".to_vec(), 0o644).await.unwrap_err();
        assert!(e.starts_with("/proc/version/x: "), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn drain_waits_for_blocking_work_in_flight_and_is_bounded() {
        let (release_tx, release) = std::sync::mpsc::channel::<()>();
        let work = tokio::spawn(off_loop("test", move || release.recv_timeout(Duration::from_secs(10))));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(drain(Duration::from_millis(100)).await >= 1, "the work is still running");
        let waiting = tokio::spawn(drain(Duration::from_secs(10)));
        release_tx.send(()).unwrap();
        assert!(work.await.unwrap().unwrap().is_ok());
        // Other tests' work may be in flight in this process; ours is done.
        let _ = waiting.await.unwrap();
    }
}
