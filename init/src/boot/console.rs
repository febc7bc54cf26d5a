//! Standard input, output and error on /dev/console, whatever the kernel left us with.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;

pub fn attach() -> std::io::Result<()> {
    let console = OpenOptions::new().read(true).write(true).custom_flags(nix::libc::O_NOCTTY).open("/dev/console")?;
    nix::unistd::dup2_stdin(&console)?;
    nix::unistd::dup2_stdout(&console)?;
    nix::unistd::dup2_stderr(&console)?;
    Ok(())
}
