//! Storage: find disks (sysfs, no udev), pick the one a selector names, and make it a mounted ext4 volume —
//! partitioning and formatting only what is blank, never destroying data.

#[cfg(test)]
mod fake;
pub mod gpt;
pub mod plan;
pub mod probe;
pub mod select;
pub mod sysfs;
