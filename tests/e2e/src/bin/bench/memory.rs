//! Where PID 1's resident memory is at each boot milestone: the node logs `boot.memory at=<milestone> rss_kib=
//! text_kib= …` (init/src/procfs.rs, from /proc/self/smaps) at converged, and with `keel.log=debug` at ready and
//! network ready too; the bench prints the median of each field. `BENCH_ONLY=memory` boots with debug logging
//! for the three milestones and prints only this table.

use keel_e2e::{field, Vm, STEP_TIMEOUT};

/// The milestones the node logs its memory at, in boot order.
pub const MILESTONES: [&str; 3] = ["ready", "net.ready", "converged"];
/// The fields of a `boot.memory` line, as the table's columns.
const FIELDS: [(&str, &str); 9] = [
    ("rss_kib", "rss"),
    ("text_kib", "text"),
    ("rodata_kib", "rodata"),
    ("data_kib", "data"),
    ("heap_kib", "heap"),
    ("stack_kib", "stack"),
    ("anon_kib", "anon"),
    ("other_kib", "other"),
    ("threads", "thr"),
];

/// Each boot's `boot.memory` lines.
#[derive(Default)]
pub struct Memory {
    lines: Vec<Vec<String>>,
}

/// Does this boot log its memory at every milestone (`keel.log=debug`), or only at converged?
pub fn every_milestone() -> bool {
    std::env::var("BENCH_ONLY").as_deref() == Ok("memory")
}

impl Memory {
    /// Waits (anywhere in the transcript: the lines interleave with others) for this boot's memory lines.
    /// Another build (`KEEL_BUILD_DIR`, a before/after comparison) may predate `boot.memory`: its boots are
    /// given a few seconds and left out of the table when they do not log it.
    pub fn collect(&mut self, vm: &mut Vm) {
        let wanted = if every_milestone() { &MILESTONES[..] } else { &MILESTONES[2..] };
        if std::env::var_os("KEEL_BUILD_DIR").is_some() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                let transcript = vm.transcript();
                let found: Option<Vec<String>> = wanted
                    .iter()
                    .map(|at| transcript.iter().find(|l| l.contains(&format!("boot.memory at={at} "))).cloned())
                    .collect();
                if let Some(lines) = found {
                    self.lines.push(lines);
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            return;
        }
        let lines = wanted.iter().map(|at| vm.expect_anywhere(&format!("boot.memory at={at} "), STEP_TIMEOUT));
        self.lines.push(lines.collect());
    }

    /// Median of `key` at milestone `at` over every boot that logged it.
    pub fn median(&self, at: &str, key: &str) -> f64 {
        let tag = format!("boot.memory at={at} ");
        let v =
            self.lines.iter().filter_map(|b| field(b.iter().find(|l| l.contains(&tag))?, key)?.parse().ok()).collect();
        super::median(v)
    }

    /// The table, titled with the boots' network mode.
    pub fn print(&self, mode: &str) {
        if self.lines.is_empty() {
            return;
        }
        println!("PID 1 memory by kind, {mode} (KiB, /proc/self/smaps Rss; medians of {} boots)", self.lines.len());
        print!("{:<12}", "at");
        for (_, name) in FIELDS {
            print!(" {name:>7}");
        }
        println!();
        for at in MILESTONES.into_iter().filter(|at| every_milestone() || *at == "converged") {
            print!("{at:<12}");
            for (key, _) in FIELDS {
                print!(" {:>7.0}", self.median(at, key));
            }
            println!();
        }
    }
}
