//! Where shutdown requests come from: signals to PID 1 and the ACPI power button.
//!
//! - SIGTERM, SIGPWR → poweroff; SIGINT → reboot. The kernel sends SIGINT on Ctrl-Alt-Del once
//!   `reboot(RB_DISABLE_CAD)` has handed that key to init.
//! - The ACPI power button (QEMU `system_powerdown`, `virsh shutdown`) arrives as a `KEY_POWER` press on an evdev
//!   device: every `/dev/input/event*` whose key capabilities include it is watched.

use std::fmt;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Poweroff,
    Reboot,
    Halt,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Poweroff => "poweroff",
            Action::Reboot => "reboot",
            Action::Halt => "halt",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub action: Action,
    pub reason: String,
}

/// Listens for SIGTERM, SIGINT and SIGPWR and forwards them as requests.
pub fn watch_signals(tx: mpsc::Sender<Request>) {
    let table = [
        (SignalKind::terminate(), Action::Poweroff, "signal:SIGTERM"),
        (SignalKind::interrupt(), Action::Reboot, "signal:SIGINT"),
        (SignalKind::from_raw(nix::libc::SIGPWR), Action::Poweroff, "signal:SIGPWR"),
    ];
    for (kind, action, reason) in table {
        match signal(kind) {
            Ok(mut stream) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        let _ = tx.send(Request { action, reason: reason.to_string() }).await;
                    }
                });
            }
            Err(e) => log::error!("power.signal_failed reason={reason} error={e:?}"),
        }
    }
}

const EV_KEY: u16 = 0x01;
const KEY_POWER: u16 = 116;
/// `struct input_event` on 64-bit: a 16-byte timeval, then type (u16), code (u16), value (i32).
const EVENT_SIZE: usize = 24;

/// Does a `capabilities/key` bitmap from sysfs (hex words, most significant first) include `bit`?
pub fn bitmap_has(bitmap: &str, bit: usize) -> bool {
    let words: Vec<&str> = bitmap.split_whitespace().collect();
    let Some(index) = words.len().checked_sub(1 + bit / 64) else {
        return false;
    };
    u64::from_str_radix(words[index], 16).map(|w| w & (1 << (bit % 64)) != 0).unwrap_or(false)
}

/// Does this buffer of input events contain a power-button press?
pub fn has_power_press(events: &[u8]) -> bool {
    events.chunks_exact(EVENT_SIZE).any(|e| {
        let kind = u16::from_ne_bytes([e[16], e[17]]);
        let code = u16::from_ne_bytes([e[18], e[19]]);
        let value = i32::from_ne_bytes([e[20], e[21], e[22], e[23]]);
        kind == EV_KEY && code == KEY_POWER && value == 1
    })
}

/// Event devices that can report the power key, by their /dev path.
fn power_button_devices() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/input") else {
        return Vec::new();
    };
    let mut found: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("event"))
        .filter(|name| {
            std::fs::read_to_string(format!("/sys/class/input/{name}/device/capabilities/key"))
                .map(|bits| bitmap_has(&bits, KEY_POWER as usize))
                .unwrap_or(false)
        })
        .map(|name| format!("/dev/input/{name}"))
        .collect();
    found.sort();
    found
}

/// Watches every power-button device; returns how many are watched.
pub fn watch_power_button(tx: mpsc::Sender<Request>) -> usize {
    let mut watched = 0;
    for path in power_button_devices() {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(&path);
        // SAFETY: the File is moved into the AsyncFd, which owns (and alone closes) the descriptor it registers.
        let registered = file.and_then(|f| {
            unsafe { AsyncFd::register_with_interest(f, Interest::READABLE) }.map_err(std::io::Error::from)
        });
        let fd = match registered {
            Ok(fd) => fd,
            Err(e) => {
                log::warn!("power.button_unavailable device={path} error={e}");
                continue;
            }
        };
        log::debug!("power.button device={path} fd={}", fd.get_ref().as_raw_fd());
        watched += 1;
        let tx = tx.clone();
        tokio::spawn(async move { read_button(fd, path, tx).await });
    }
    watched
}

async fn read_button(fd: AsyncFd<std::fs::File>, path: String, tx: mpsc::Sender<Request>) {
    use std::io::Read;
    let mut buf = [0u8; EVENT_SIZE * 16];
    loop {
        let mut guard = match fd.readable().await {
            Ok(g) => g,
            Err(e) => {
                log::warn!("power.button_lost device={path} error={e}");
                return;
            }
        };
        match guard.try_io(|inner| inner.get_ref().read(&mut buf)) {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => {
                if has_power_press(&buf[..n]) {
                    let _ = tx.send(Request { action: Action::Poweroff, reason: "power-button".into() }).await;
                }
            }
            Ok(Err(e)) => {
                log::warn!("power.button_lost device={path} error={e}");
                return;
            }
            Err(_would_block) => continue,
        }
    }
}

/// Answer first, then act: the API's reply reaches the client before the node goes down. The one place that
/// delays a power request after a reply (commands, upgrades).
pub fn after_reply(power: &mpsc::Sender<Request>, action: Action, reason: String) {
    let power = power.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let _ = power.send(Request { action, reason }).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sysfs_key_bitmaps() {
        // The ACPI power button as 6.x kernels show it: bit 116 in the last word.
        assert!(bitmap_has("10000000000000 0", KEY_POWER as usize));
        assert!(!bitmap_has("10000000000000 0", 115));
        assert!(bitmap_has("1", 0));
        // A keyboard's long bitmap: word order is most significant first.
        assert!(bitmap_has("1 0 0", 128));
        assert!(!bitmap_has("", 116));
        assert!(!bitmap_has("zz", 0));
    }

    fn event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut e = vec![0u8; 16];
        e.extend_from_slice(&kind.to_ne_bytes());
        e.extend_from_slice(&code.to_ne_bytes());
        e.extend_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn finds_power_press_among_events() {
        let mut buf = event(EV_KEY, KEY_POWER, 0); // release
        buf.extend(event(0, 0, 0)); // EV_SYN
        assert!(!has_power_press(&buf));
        buf.extend(event(EV_KEY, KEY_POWER, 1));
        assert!(has_power_press(&buf));
        assert!(!has_power_press(&event(EV_KEY, 30, 1)));
    }
}
