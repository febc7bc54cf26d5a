//! The one test constructor of a [`Service`] definition: root (the config's default is nobody; the root tests
//! check what root without capabilities can do), no capabilities, no grants, no limits, restart always, SIGTERM
//! with 10 s, no ordering, for the unit and root tests to adjust.

use keel_config::model::{CgroupLimits, LogLevel, Program, Restart, Service};
use std::collections::BTreeMap;

pub fn service(name: &str, exec: &str, args: &[&str]) -> Service {
    Service {
        name: name.into(),
        program: Program::Path(exec.into()),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: BTreeMap::new(),
        workdir: "/".into(),
        uid: 0,
        gid: 0,
        capabilities: Vec::new(),
        devices: Vec::new(),
        paths: Vec::new(),
        rlimits: BTreeMap::new(),
        cgroup: CgroupLimits::default(),
        restart: Restart::Always,
        stop_signal: "SIGTERM".into(),
        stop_timeout_s: 10,
        after: Vec::new(),
        log_level: LogLevel::Info,
    }
}
