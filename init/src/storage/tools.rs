//! mke2fs and e2fsck from e2fsprogs, run directly (no shell) through PID 1's one reaper. Their output goes to a
//! log file under /run/keel/storage, whose last line is the reason when one fails.

use crate::reaper::{Exit, Reaper};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Tools {
    pub mke2fs: PathBuf,
    pub e2fsck: PathBuf,
    pub log_dir: PathBuf,
}

impl Tools {
    /// Where the image carries them.
    pub fn system() -> Tools {
        Tools {
            mke2fs: "/usr/sbin/mke2fs".into(),
            e2fsck: "/usr/sbin/e2fsck".into(),
            log_dir: "/run/keel/storage".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot start {tool}: {source}")]
    Start { tool: String, source: std::io::Error },
    #[error("{tool} {exit}: {last_line}")]
    Failed { tool: String, exit: String, last_line: String },
    #[error("{tool} still running after {secs} s: killed")]
    Timeout { tool: String, secs: u64 },
}

/// What e2fsck -p did (its exit code; 4 and up are failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsck {
    Clean,
    Repaired,
}

const MKFS_TIMEOUT: Duration = Duration::from_secs(600);
const FSCK_TIMEOUT: Duration = Duration::from_secs(1800);

fn tool_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

impl Tools {
    /// Runs `program args` with output to `<log_dir>/<tool>.log`; returns how it ended and that log's last line.
    async fn run(
        &self,
        reaper: &Reaper,
        program: &Path,
        args: &[&str],
        limit: Duration,
    ) -> Result<(Exit, String), ToolError> {
        let tool = tool_name(program);
        let start_err = |source| ToolError::Start { tool: tool.clone(), source };
        std::fs::create_dir_all(&self.log_dir).map_err(start_err)?;
        let log_path = self.log_dir.join(format!("{tool}.log"));
        let log = std::fs::File::create(&log_path).map_err(start_err)?;
        let log2 = log.try_clone().map_err(start_err)?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(log).stderr(log2).env_clear().env("PATH", "/usr/sbin:/usr/bin");
        let child = reaper.spawn(&mut cmd).map_err(start_err)?;
        let pid = child.pid;
        let started = Instant::now();
        log::debug!("storage.exec tool={tool} pid={pid} args={}", crate::logging::q(&args.join(" ")));
        let exit = match tokio::time::timeout(limit, child.wait()).await {
            Ok(Some(exit)) => exit,
            Ok(None) => Exit::Code(-1),
            Err(_) => {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                return Err(ToolError::Timeout { tool, secs: limit.as_secs() });
            }
        };
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        let last_line = output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        log::debug!("storage.exit tool={tool} pid={pid} status={exit} ms={}", crate::clock::ms(started.elapsed()));
        Ok((exit, last_line))
    }

    /// Makes an ext4 filesystem. `force` (-F) only for a wipe the plan allowed: without it mke2fs itself refuses
    /// (stdin is not a terminal, so it cannot be asked) to overwrite a filesystem it finds.
    pub async fn mkfs_ext4(
        &self,
        reaper: &Reaper,
        device: &Path,
        label: Option<&str>,
        force: bool,
    ) -> Result<(), ToolError> {
        let dev = device.to_string_lossy();
        let mut args = vec!["-q", "-t", "ext4"];
        if force {
            args.push("-F");
        }
        if let Some(l) = label {
            args.extend(["-L", l]);
        }
        args.push(&dev);
        match self.run(reaper, &self.mke2fs, &args, MKFS_TIMEOUT).await? {
            (Exit::Code(0), _) => Ok(()),
            (exit, last_line) => {
                Err(ToolError::Failed { tool: tool_name(&self.mke2fs), exit: exit.to_string(), last_line })
            }
        }
    }

    /// `e2fsck -p`: replays the journal and fixes what is safe to fix without asking.
    pub async fn fsck(&self, reaper: &Reaper, device: &Path) -> Result<Fsck, ToolError> {
        let dev = device.to_string_lossy();
        match self.run(reaper, &self.e2fsck, &["-p", &dev], FSCK_TIMEOUT).await? {
            (Exit::Code(0), _) => Ok(Fsck::Clean),
            (Exit::Code(1..=3), _) => Ok(Fsck::Repaired),
            (exit, last_line) => {
                Err(ToolError::Failed { tool: tool_name(&self.e2fsck), exit: exit.to_string(), last_line })
            }
        }
    }
}
