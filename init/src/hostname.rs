//! The one place that names the host (boot, the settled machine id, the network controller's reconcile).

/// The kernel's host name now ("" when it cannot be read).
pub fn current() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}

/// Sets the host name to `name` unless it is that already. `Ok(Some(was))` when it changed, `Ok(None)` when it
/// was right; the kernel's error otherwise.
pub fn converge(name: &str) -> Result<Option<String>, nix::errno::Errno> {
    let was = current();
    if was == name {
        return Ok(None);
    }
    nix::unistd::sethostname(name)?;
    Ok(Some(was))
}
