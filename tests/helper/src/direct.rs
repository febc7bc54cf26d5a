//! `read-direct DEVICE`: reads DEVICE with O_DIRECT (no page cache: every read waits for the disk) in a reader
//! thread, 64 KiB at a time, and reports from the main thread what the reader is doing. On a disk whose I/O the
//! host throttles to nothing, the reader sits in uninterruptible sleep (`State: D`): SIGKILL is not delivered
//! until its read completes, so the process cannot exit. That is the stuck service the e2e tests need.
//!
//! Lines: `testhelper: read-direct open device=…`, one `… read offset=N bytes=N ms=N` per completed read, and
//! `… tid=N state=D stuck_ms=N` once the reader has been in D for a second without a read completing.

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHUNK: usize = 64 << 10;
/// O_DIRECT wants the buffer aligned to the device's logical block size; a page covers every disk.
const ALIGN: usize = 4096;
/// How long the reader must stay in D without a read completing to count as stuck.
const STUCK_AFTER: Duration = Duration::from_secs(1);

/// A heap buffer aligned for O_DIRECT.
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize) -> Option<Aligned> {
        let layout = std::alloc::Layout::from_size_align(len, ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        (!ptr.is_null()).then_some(Aligned { ptr, layout })
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr points to layout.size() initialised bytes owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// The one-letter scheduler state of thread `tid` of this process (`/proc/self/task/TID/stat`, after the name).
fn state(tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

pub fn run(device: &str) -> ExitCode {
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_DIRECT).open(device) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("testhelper: read-direct open {device}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("testhelper: read-direct open device={device}");
    let (tid_tx, tid_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let _ = tid_tx.send(nix::unistd::gettid().as_raw());
        let Some(mut buf) = Aligned::new(CHUNK) else {
            eprintln!("testhelper: read-direct cannot allocate {CHUNK} bytes");
            return;
        };
        let mut offset = 0u64;
        loop {
            let started = Instant::now();
            match file.read_at(buf.as_mut(), offset) {
                Ok(0) => offset = 0,
                Ok(n) => {
                    println!(
                        "testhelper: read-direct read offset={offset} bytes={n} ms={}",
                        started.elapsed().as_millis()
                    );
                    offset += n as u64;
                }
                Err(e) => {
                    eprintln!("testhelper: read-direct read offset={offset}: {e}");
                    return;
                }
            }
            let _ = done_tx.send(());
            // An unthrottled disk would otherwise flood the log.
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let Ok(tid) = tid_rx.recv() else {
        eprintln!("testhelper: read-direct: the reader thread did not start");
        return ExitCode::FAILURE;
    };
    // Report each time the reader becomes stuck: in D, and no read completed for STUCK_AFTER.
    let mut since = Instant::now();
    let mut reported = false;
    while !reader.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if done_rx.try_iter().count() > 0 {
            since = Instant::now();
            reported = false;
        }
        match state(tid) {
            Some('D') if !reported && since.elapsed() >= STUCK_AFTER => {
                println!("testhelper: read-direct tid={tid} state=D stuck_ms={}", since.elapsed().as_millis());
                reported = true;
            }
            Some('D') => {}
            _ => since = Instant::now(),
        }
    }
    ExitCode::FAILURE
}
