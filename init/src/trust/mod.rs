//! Trust that starts at the firmware: what Secure Boot verified for this boot (`secureboot`), and the rollback
//! floor a node keeps across power cycles, disk or not (`floor`): config generations, image versions, command
//! nonces and time never go below what it has seen.

pub mod floor;
pub mod secureboot;

use crate::time::sync::Clock;

/// Puts the clock at the floor's time when it is below it (an RTC that lost power, or was set back). The floor is
/// the image's build time or the latest time this node trusted, whichever is later.
pub fn clamp_clock(floor: &floor::Floor) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    if now >= floor.time {
        return;
    }
    let ahead_ns = i64::try_from((floor.time - now).saturating_mul(1_000_000_000)).unwrap_or(i64::MAX);
    match crate::time::system::SystemClock::default().step(ahead_ns) {
        Ok(()) => log::warn!("time.floor_applied from={now} to={} reason=clock-below-floor", floor.time),
        Err(e) => log::error!("time.floor_failed error={}", crate::logging::q(&e.to_string())),
    }
}

/// After the state volume is (or is not) mounted: records whether a named state volume is missing, logs the
/// floor as the node now knows it, and keeps the clock above it.
pub fn after_state(settings: &crate::cmdline::Settings, state: &crate::storage::state::StateStatus) {
    use crate::storage::state::{StateChoice, StateMode};
    let lost = matches!(settings.state, StateChoice::Select(_)) && state.mode != StateMode::Volume;
    floor::set_state_lost(lost);
    let f = floor::current();
    let places = floor::Places::system();
    log::info!(
        "trust.floor generation={} image={} time={} nonces={} efi={} state={}",
        f.generation.map_or("none".into(), |g| g.to_string()),
        f.image.as_ref().map_or("none".into(), |v| v.to_string()),
        f.time,
        f.nonces.len(),
        places.efi.is_some(),
        floor::state_word()
    );
    if lost {
        log::error!(
            "trust.state_unavailable reason=\"keel.state names a volume that could not be mounted\" \
             floor_from={} refusing=\"configs not newer than the floor{}\"",
            if places.efi.is_some() { "efi" } else { "nothing" },
            if f.generation.is_some() { "" } else { "; with no floor at all, every new config" }
        );
    }
    clamp_clock(&f);
}
