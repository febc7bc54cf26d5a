//! The image's trust: the OpenSSH `allowed_signers` file every signed thing (configs, slot images, API commands)
//! is checked against. One place reads and parses it.

use keel_config::sshsig::AllowedSigners;

/// Where the image keeps it.
pub const ALLOWED_SIGNERS: &str = "/etc/keel/allowed_signers";

/// The file's text, or why there is none (naming the file).
pub fn read() -> Result<String, String> {
    std::fs::read_to_string(ALLOWED_SIGNERS).map_err(|e| format!("{ALLOWED_SIGNERS}: {e}"))
}

/// Parses `allowed_signers` text.
pub fn parse(text: &str) -> Result<AllowedSigners, String> {
    AllowedSigners::parse("allowed_signers", text).map_err(|e| e.to_string())
}

/// The image's trusted signers, or why there are none.
pub fn allowed_signers() -> Result<AllowedSigners, String> {
    read().and_then(|t| parse(&t))
}
