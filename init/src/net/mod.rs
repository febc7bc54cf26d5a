//! Networking over rtnetlink: a desired state (from config, or `ip=` and defaults before any config), a pure
//! planner, and a controller that applies the plan and repairs drift as soon as the kernel reports it.

pub mod controller;
pub mod desired;
pub mod dhcp;
mod dhcp_glue;
pub mod kernel_ip;
pub mod model;
pub mod netlink;
#[cfg(test)]
pub mod netns_tests;
#[cfg(test)]
mod netns_topology_tests;
pub mod observed;
pub mod plan;
mod plan_topology;
pub mod resolv;
pub mod topology;

use crate::cmdline::Settings;
use controller::{Controller, NetEvent, NetStatus, Options};
use model::Desired;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Starts the network controller on the boot's settings: `ip=` if given, else DHCP on every physical link.
/// Returns its inbox and status, or `None` when netlink is unavailable (logged; the node runs on without network).
#[allow(clippy::type_complexity)]
pub fn start(
    settings: &Settings,
    default_hostname: String,
    exec_at: Duration,
) -> (Option<(mpsc::Sender<NetEvent>, watch::Receiver<NetStatus>)>, Desired) {
    let ip = settings.ip.as_deref().and_then(|v| match kernel_ip::parse(v) {
        Ok(ip) => Some(ip),
        Err(e) => {
            log::warn!("net.ip_invalid value={} error={} using=dhcp", crate::logging::q(v), crate::logging::q(&e));
            None
        }
    });
    let mut base = desired::before_config(ip.as_ref());
    let (virtual_links, errors) = topology::from_cmdline(&settings.bond, &settings.vlan, &settings.bridge);
    for e in errors {
        log::warn!("net.cmdline_invalid error={}", crate::logging::q(&e));
    }
    base.virtual_links = virtual_links;
    if !settings.ntp.is_empty() {
        base.ntp = settings.ntp.clone();
    }
    let opts = Options { default_hostname, resolv_path: resolv::PATH.into(), manage_hostname: true, exec_at };
    match Controller::new(base.clone(), dhcp_glue::starter(Some(opts.default_hostname.clone())), opts) {
        Ok((controller, inbox, status)) => {
            tokio::spawn(controller.run());
            (Some((inbox, status)), base)
        }
        Err(e) => {
            log::error!("net.start_failed error={}", crate::logging::q(&e.to_string()));
            (None, base)
        }
    }
}
