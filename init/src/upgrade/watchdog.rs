//! The hardware watchdog (`/dev/watchdog`) during a trial boot: armed when the trial starts, petted by the trial's
//! own task, disarmed (magic close) once the slot is committed. If PID 1 wedges on the new system, the petting
//! stops, the watchdog resets the machine, and the firmware boots the old slot (`BootNext` is spent). A hang
//! before PID 1 runs is not covered: nothing has armed the watchdog yet.

use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::time::Duration;

pub const DEVICE: &str = "/dev/watchdog";
/// Without a pet for this long, the machine resets.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// How often the trial pets it.
pub const PET_EVERY: Duration = Duration::from_secs(5);

nix::ioctl_readwrite!(set_timeout, b'W', 6, libc::c_int);

pub struct Armed {
    dev: std::fs::File,
}

/// Arms the watchdog; None (logged) when there is none.
pub fn arm() -> Option<Armed> {
    let dev = match std::fs::OpenOptions::new().write(true).open(DEVICE) {
        Ok(d) => d,
        Err(e) => {
            log::info!("upgrade.watchdog state=absent device={DEVICE} error={}", crate::logging::q(&e.to_string()));
            return None;
        }
    };
    let mut secs = TIMEOUT.as_secs() as libc::c_int;
    // SAFETY: WDIOC_SETTIMEOUT reads and writes one int through a valid pointer on an open watchdog device.
    if let Err(e) = unsafe { set_timeout(dev.as_raw_fd(), &mut secs) } {
        log::warn!("upgrade.watchdog_timeout_failed error={e}");
    }
    log::info!("upgrade.watchdog state=armed timeout_s={secs}");
    Some(Armed { dev })
}

impl Armed {
    pub fn pet(&mut self) {
        let _ = self.dev.write_all(b"\0");
    }

    /// The magic close: 'V', then close, stops the watchdog (on drivers without nowayout).
    pub fn disarm(mut self) {
        let _ = self.dev.write_all(b"V");
        log::info!("upgrade.watchdog state=disarmed");
    }
}
