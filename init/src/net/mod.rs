//! Networking over rtnetlink: a desired state (from config, or `ip=` and defaults before any config), a pure
//! planner, and a controller that applies the plan and repairs drift as soon as the kernel reports it.

pub mod controller;
pub mod desired;
pub mod kernel_ip;
pub mod model;
pub mod netlink;
#[cfg(test)]
mod netns_tests;
pub mod observed;
pub mod plan;
pub mod resolv;
