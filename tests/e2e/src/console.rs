//! The serial console of a VM: a thread reads QEMU's stdout line by line into a shared transcript (and a log
//! file); tests wait on it with timeouts.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    lines: Vec<String>,
    /// When each line arrived (same index as `lines`): the benchmarks time boot phases by the host's clock, which
    /// a guest's clock under a loaded TCG host does not keep.
    arrived: Vec<Instant>,
    closed: bool,
}

pub struct Console {
    shared: Arc<(Mutex<State>, Condvar)>,
    /// Lines before this index have been consumed by a wait.
    cursor: usize,
    path: PathBuf,
}

impl Console {
    pub fn attach(child: &mut Child, transcript: &Path) -> Console {
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let mut file = std::fs::File::create(transcript).ok();
        if let Some(stdout) = child.stdout.take() {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_string();
                            if let Some(f) = file.as_mut() {
                                let _ = writeln!(f, "{line}");
                            }
                            let (lock, cv) = &*shared;
                            let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
                            state.lines.push(line);
                            state.arrived.push(Instant::now());
                            drop(state);
                            cv.notify_all();
                        }
                    }
                }
                let (lock, cv) = &*shared;
                lock.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
                cv.notify_all();
            });
        }
        if let Some(mut stderr) = child.stderr.take() {
            let path = transcript.with_extension("stderr");
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = stderr.read_to_end(&mut text);
                let _ = std::fs::write(path, text);
            });
        }
        Console { shared, cursor: 0, path: transcript.to_path_buf() }
    }

    /// Waits for the next line (after the cursor) that matches; moves the cursor past it.
    pub fn wait_for(&mut self, matches: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(i) = state.lines[self.cursor..].iter().position(|l| matches(l)) {
                let at = self.cursor + i;
                self.cursor = at + 1;
                return Some(state.lines[at].clone());
            }
            self.cursor = state.lines.len();
            let now = Instant::now();
            if state.closed || now >= deadline {
                return None;
            }
            state = cv.wait_timeout(state, deadline - now).map(|(s, _)| s).unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Waits for any line of the whole transcript to match, without moving the cursor.
    pub fn wait_any(&self, matches: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(line) = state.lines.iter().find(|l| matches(l)) {
                return Some(line.clone());
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return None;
            }
            state = cv.wait_timeout(state, deadline - now).map(|(s, _)| s).unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// The first line of the whole transcript containing `needle`, and when it arrived; `None` if none has yet.
    pub fn arrival(&self, needle: &str) -> Option<(String, Instant)> {
        let state = self.shared.0.lock().unwrap_or_else(|p| p.into_inner());
        let i = state.lines.iter().position(|l| l.contains(needle))?;
        Some((state.lines[i].clone(), *state.arrived.get(i)?))
    }

    pub fn all(&self) -> Vec<String> {
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner()).lines.clone()
    }

    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.all();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    pub fn transcript_path(&self) -> &Path {
        &self.path
    }
}
