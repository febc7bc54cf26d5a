//! Durable file work for async code: the one atomic durable write ([`crate::reconcile::files::write_atomic`]:
//! temp file, fsync, rename, fsync of the directory) run on a blocking thread, so its fsyncs never stall PID 1's
//! event loop.

use std::path::PathBuf;

/// [`crate::reconcile::files::write_atomic`] off the event loop; the error names the file.
pub async fn write_atomic_off_loop(path: PathBuf, content: Vec<u8>, mode: u32) -> Result<(), String> {
    let shown = path.display().to_string();
    let done =
        tokio::task::spawn_blocking(move || crate::reconcile::files::write_atomic(&path, &content, mode, None)).await;
    match done {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{shown}: {e}")),
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

/// Runs `f` on a blocking thread; a panic there (which the panic hook already logged) becomes an error.
pub async fn off_loop<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| format!("{what}: {e}"))
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
}
