use super::*;
use crate::parse;

/// xorshift64*, fixed seed: the same 100,000 ids on every run.
struct Ids(u64);

impl Ids {
    fn next_id(&mut self) -> String {
        let mut word = || {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        format!("{:016x}{:016x}", word(), word())
    }
}

const BINS: usize = 100;
/// The chi-square critical value for 99 degrees of freedom at p = 0.001: a uniform function exceeds it once in
/// a thousand seeds; the seed is fixed, so this test is deterministic.
const CRITICAL: f64 = 148.23;

fn chi_square(slots: impl Iterator<Item = f64>) -> f64 {
    let mut counts = [0u64; BINS];
    let mut n = 0u64;
    for s in slots {
        assert!((0.0..1.0).contains(&s), "slot {s} outside [0, 1)");
        counts[((s * BINS as f64) as usize).min(BINS - 1)] += 1;
        n += 1;
    }
    let expected = n as f64 / BINS as f64;
    counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum()
}

fn random_ids() -> impl Iterator<Item = String> {
    let mut ids = Ids(0x6b65_656c_2026_1202);
    (0..100_000).map(move |_| ids.next_id())
}

#[test]
fn slots_are_uniform_over_random_machine_ids() {
    let x2 = chi_square(random_ids().map(|id| slot(&id)));
    assert!(x2 < CRITICAL, "chi-square {x2:.1} over {BINS} bins is above {CRITICAL}: the slots are not uniform");
}

#[test]
fn slots_are_uniform_over_sequential_machine_ids() {
    // What a provisioning system hands out: ids that differ only in their last digits.
    let x2 = chi_square((0..100_000u64).map(|i| slot(&format!("6b65656c00004000800000{i:010x}"))));
    assert!(x2 < CRITICAL, "chi-square {x2:.1}: sequential ids do not spread");
}

/// The test above can fail: the same statistic over deliberately biased variants is far above the threshold.
#[test]
fn the_uniformity_check_catches_biased_slot_functions() {
    // The classic mistake: one hash byte into 100 buckets (256 is no multiple of 100).
    let one_byte = |id: &str| {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(id.as_bytes());
        f64::from(d[0] % 100) / 100.0
    };
    let x2 = chi_square(random_ids().map(|id| one_byte(&id)));
    assert!(x2 > CRITICAL, "a modulo-biased function passed: chi-square {x2:.1}");
    // A mild skew towards early slots.
    let skewed = chi_square(random_ids().map(|id| slot(&id).powf(1.05)));
    assert!(skewed > CRITICAL, "a skewed function passed: chi-square {skewed:.1}");
    // The machine id's own digits: sequential ids all land in one bucket.
    let digits = |id: &str| u64::from_str_radix(&id[..13], 16).unwrap_or(0) as f64 / (1u64 << 52) as f64;
    let x2 = chi_square((0..100_000u64).map(|i| digits(&format!("6b65656c00004000800000{i:010x}"))));
    assert!(x2 > CRITICAL, "the raw-digits function passed: chi-square {x2:.1}");
}

#[test]
fn the_slot_is_stable_and_ignores_case() {
    // Pinned: a node's slot must not move between releases, or a rollout in progress would reshuffle.
    let id = "6b65656c000040008000000000000001";
    assert_eq!(slot(id), slot(id));
    assert_eq!(slot(id), slot(&id.to_ascii_uppercase()));
    assert_eq!(format!("{:.12}", slot(id)), format!("{:.12}", PINNED_SLOT));
    assert_ne!(slot(id), slot("6b65656c000040008000000000000002"));
}

const PINNED_SLOT: f64 = 0.851_033_943_436;

fn rollout(text: &str) -> Rollout {
    let doc = format!("version = 1\ngeneration = 2\n[rollout]\n{text}");
    match parse("node.toml", &doc) {
        Ok(c) => c.rollout.unwrap_or_else(|| panic!("no rollout in {text}")),
        Err(e) => panic!("{e}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    match parse("node.toml", &format!("version = 1\ngeneration = 2\n[rollout]\n{text}")) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn an_even_rollout_spreads_slots_over_the_duration() {
    let r = rollout("start = 2026-12-02T16:00:00Z\nduration = \"6h\"\n");
    assert_eq!((r.start.to_string(), r.duration_s, r.steps.len()), ("2026-12-02T16:00:00Z".into(), 21_600, 0));
    assert_eq!(r.offset_s(0.0), 0);
    assert_eq!(r.offset_s(0.5), 10_800);
    assert_eq!(r.applies_at(0.25).to_string(), "2026-12-02T17:30:00Z");
    assert_eq!(r.offset_s(0.999_999), 21_599);
    let at = |s: &str| Timestamp::from_toml(&s.parse().unwrap()).unwrap();
    assert_eq!(r.share_at(at("2026-12-02T15:00:00Z")), 0.0);
    assert_eq!(r.share_at(at("2026-12-02T19:00:00Z")), 0.5);
    assert_eq!(r.share_at(at("2026-12-03T00:00:00Z")), 1.0);
}

#[test]
fn steps_open_in_turn() {
    let r = rollout("start = 2026-12-02T16:00:00Z\nduration = \"3h\"\nsteps = [1, 10, 50, 100]\n");
    assert_eq!(r.steps, [1, 10, 50, 100]);
    assert_eq!(r.offset_s(0.005), 0);
    assert_eq!(r.offset_s(0.01), 3600);
    assert_eq!(r.offset_s(0.3), 7200);
    assert_eq!(r.offset_s(0.75), 10_800);
    let at = |s: &str| Timestamp::from_toml(&s.parse().unwrap()).unwrap();
    assert_eq!(r.share_at(at("2026-12-02T16:00:00Z")), 0.01);
    assert_eq!(r.share_at(at("2026-12-02T17:59:59Z")), 0.10);
    assert_eq!(r.share_at(at("2026-12-02T19:00:00Z")), 1.0);
    // One step: everyone at start.
    assert_eq!(rollout("start = 2026-12-02T16:00:00Z\nduration = \"1h\"\nsteps = [100]\n").offset_s(0.9), 0);
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("6h"), Ok(21_600));
    assert_eq!(parse_duration("1h30m"), Ok(5400));
    assert_eq!(parse_duration("90s"), Ok(90));
    assert_eq!(parse_duration("0s"), Ok(0));
    assert_eq!(parse_duration("2d"), Ok(172_800));
    for bad in ["", "6", "h", "6x", "1.5h", "-1h", "6h ", "367d"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn bad_rollouts_name_what_is_wrong() {
    assert_eq!(
        errors("start = 2026-12-02T16:00:00\nduration = \"6 hours\"\nsteps = [10, 5, 101]\n"),
        [
            "node.toml:4:9: rollout.start: 2026-12-02T16:00:00 names no single instant; give a date, a time and an offset, e.g. 2026-12-02T16:00:00Z",
            "node.toml:5:12: rollout.duration: \"6 hours\" is not a duration: give numbers with units s, m, h or d, e.g. \"6h\" or \"1h30m\"",
            "node.toml:6:14: rollout.steps[1]: must be larger than the step before it (10)",
            "node.toml:6:17: rollout.steps[2]: must be a percentage 1..100",
        ]
    );
    assert_eq!(
        errors("start = 2026-12-02T16:00:00Z\nduration = \"1h\"\nsteps = [1, 50]\n"),
        ["node.toml:6:9: rollout.steps: the last step must be 100, or some nodes never apply it"]
    );
    assert_eq!(
        errors("start = 2026-12-02T16:00:00Z\nduration = \"1h\"\nsteps = []\n"),
        ["node.toml:6:9: rollout.steps: must list at least one percentage, the last 100"]
    );
    assert!(errors("start = 2026-12-02T16:00:00Z\n")[0].contains("missing field `duration`"));
}
