//! Storage: find disks (sysfs, no udev), pick the one a selector names, and make it a mounted ext4 volume —
//! partitioning and formatting only what is blank, never destroying data.
//!
//! - [`sysfs`] lists disks and partitions with their identity ([`bypath`]: where each sits on the buses), [`probe`] reads what each holds from its own bytes, [`gpt`] writes
//!   and reads partition tables, [`select`] finds the device a selector names.
//! - [`plan`] decides, purely, what may be done to it; [`volume`] carries a plan out ([`blockdev`]: the table,
//!   [`tools`]: mke2fs and e2fsck through the reaper, [`mount`]: the mount).
//! - [`state`]: the state volume on /var at boot ([`mount_state`]); [`controller`]: the config's volumes;
//!   [`status_json`]: both, in the node's status.

pub mod blockdev;
pub mod bypath;
pub mod controller;
#[cfg(test)]
mod fake;
pub mod gpt;
pub mod inventory;
#[cfg(test)]
mod loop_tests;
pub mod mount;
pub mod plan;
pub mod probe;
pub mod select;
pub mod state;
pub mod status_json;
pub mod sysfs;
pub mod tools;
pub mod volume;

pub use state::mount_state;
