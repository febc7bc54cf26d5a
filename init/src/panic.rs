//! The last line of defence: PID 1 must never exit, and the kernel panics if it does. Any panic, on any thread or
//! task, lands in this hook: it logs the message and where it happened, asks every process to stop, syncs the
//! filesystems and, after a short delay that leaves the console readable, reboots or halts as `keel.panic` says.
//! The hook never returns, so nothing unwinds past it.

use crate::cmdline::PanicAction;
use crate::logging::{emergency, q};
use crate::power::Action;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::sync::OnceLock;
use std::time::Duration;

static POLICY: OnceLock<(PanicAction, Duration)> = OnceLock::new();

/// Records what to do on panic once the command line is read; before that, the defaults apply.
pub fn set_policy(action: PanicAction, delay: Duration) {
    let _ = POLICY.set((action, delay));
}

pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
            s.to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".to_string()
        };
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        emergency(&format!("panic message={} location={} thread={}", q(&message), q(&location), q(&thread)));
        fail_safe()
    }));
}

/// Stops everything that can be stopped, syncs, waits, and reboots or halts. Never returns.
pub fn fail_safe() -> ! {
    let (action, delay) = *POLICY.get_or_init(|| (PanicAction::Reboot, Duration::from_secs(2)));
    let action = match action {
        PanicAction::Reboot => Action::Reboot,
        PanicAction::Halt => Action::Halt,
    };
    emergency(&format!("panic.{action} delay_ms={}", delay.as_millis()));
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    nix::unistd::sync();
    std::thread::sleep(delay);
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    nix::unistd::sync();
    crate::shutdown::power_off(action)
}
