//! `keelctl status`: a human summary of `GET /v1/status`, read into the node's own type
//! ([`keel_config::status::NodeStatus`]): what an older node lacks is left out, what a newer node adds is ignored.

use std::fmt::Write;

use keel_config::status::{BootStatus, ConfigStatus, ControllerItem, NetworkStatus, NodeStatus, ServiceStatus};

pub fn uptime(secs: f64) -> String {
    let whole = secs.max(0.0) as u64;
    let (d, h, m, s) = (whole / 86_400, whole / 3600 % 24, whole / 60 % 60, whole % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs:.1}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A controller item that is not converged: `name (state): reason`.
fn item(i: &ControllerItem) -> String {
    match &i.reason {
        Some(r) => format!("{} ({}): {r}", i.name, i.state),
        None => format!("{} ({})", i.name, i.state),
    }
}

/// UEFI Secure Boot (README, "Secure Boot"): whether the firmware verified the running image, and its signer.
pub fn secure_boot(boot: &BootStatus) -> String {
    let mut text = format!("secure_boot: {}", boot.secure_boot);
    if boot.setup_mode {
        text.push_str(" (firmware in setup mode: no platform key, nothing enforced)");
    } else if !boot.secure_boot && !boot.uefi {
        text.push_str(" (not booted by UEFI firmware)");
    }
    if let Some(signer) = &boot.signer {
        let _ = write!(text, ", image signed for {signer}");
        if let Some(fp) = &boot.signer_sha256 {
            let _ = write!(text, " (sha256 {}…)", fp.get(..16).unwrap_or(fp));
        }
        match boot.signer_enrolled {
            Some(true) => text.push_str(", enrolled in db"),
            Some(false) => text.push_str(", NOT in the firmware's db"),
            None => {}
        }
    }
    text
}

/// The A/B boot slots (README, "Upgrades"): which runs, which waits for its trial, how the last upgrade ended.
pub fn slots(boot: &BootStatus) -> Option<String> {
    let last = boot.last_upgrade.as_ref();
    if boot.slot.is_none() && last.is_none() {
        return None;
    }
    let mut text = format!("running {}", boot.slot.as_deref().unwrap_or("?"));
    if let Some(p) = &boot.pending_slot {
        let _ = write!(text, "; slot {p} waits for its trial boot");
    }
    if let Some(l) = last {
        let _ = write!(text, "; last upgrade {} (slot {})", l.result, l.slot);
        if !l.reason.is_empty() {
            let _ = write!(text, ": {}", l.reason);
        }
    }
    Some(text)
}

/// The kinds not converged to the applied generation (`config.convergence`):
/// `waiting for storage (stuck: data: blocked: …), services`.
fn waiting_for(config: &ConfigStatus) -> Option<String> {
    use keel_config::status::ConvergenceState;
    let open: Vec<String> = config
        .convergence
        .iter()
        .flatten()
        .filter(|k| k.state != ConvergenceState::Converged)
        .map(|k| match k.state {
            ConvergenceState::Stuck => format!("{} (stuck: {})", k.kind, k.problems.join("; ")),
            _ => k.kind.clone(),
        })
        .collect();
    (!open.is_empty()).then(|| format!("waiting for {}", open.join(", ")))
}

fn config_lines(config: &ConfigStatus, line: &mut dyn FnMut(&str, String)) {
    let mut text = match (config.generation, config.converged_generation) {
        (None, _) => "none applied".to_string(),
        (Some(g), Some(c)) if c == g => format!("generation {g} (converged)"),
        (Some(g), Some(c)) => format!("generation {g} (converging; generation {c} converged)"),
        (Some(g), None) => format!("generation {g} (converging)"),
    };
    if let Some(src) = &config.source {
        let _ = write!(text, " from {src}");
    }
    if let Some(signer) = &config.signer {
        let _ = write!(text, " signed by {signer}");
    }
    line("config", text);
}

fn config_detail(config: &ConfigStatus, line: &mut dyn FnMut(&str, String)) {
    if let Some(text) = waiting_for(config) {
        line("", text);
    }
    if let Some(w) = &config.rollout {
        line("", format!("waiting-rollout: generation {} applies at {}", w.generation, w.applies_at));
    }
    if let Some(rej) = &config.last_rejection {
        let mut text = format!("last rejection: {}", rej.reason);
        if !rej.detail.is_empty() {
            let _ = write!(text, ": {}", rej.detail);
        }
        if !rej.source.is_empty() {
            let _ = write!(text, " (from {})", rej.source);
        }
        line("", text);
    }
    if let Some(pull) = &config.pull {
        let text = match pull.failures {
            n if n > 0 => {
                format!("pull from {} FAILING ({n} in a row): {}", pull.url, pull.last_error.as_deref().unwrap_or("?"))
            }
            _ => format!("pull from {}: ok", pull.url),
        };
        line("", text);
    }
}

fn network_lines(net: &NetworkStatus, line: &mut dyn FnMut(&str, String)) {
    let mut text = if net.ready { "ready".to_string() } else { "NOT ready".to_string() };
    if !net.nameservers.is_empty() {
        let _ = write!(text, "; nameservers {}", net.nameservers.join(", "));
    }
    line("network", text);
    for l in &net.links {
        let mut t = l.name.clone();
        if let Some(mac) = &l.mac {
            let _ = write!(t, " {mac}");
        }
        t.push_str(if l.up { " up" } else { " down" });
        if !l.carrier {
            t.push_str(" no-carrier");
        }
        let _ = write!(t, " mtu {}", l.mtu);
        line("  link", t);
    }
    for a in &net.addresses {
        line("  address", format!("{} on {} ({})", a.address, a.link, a.origin));
    }
    for r in &net.routes {
        let mut t = r.to.clone();
        if let Some(via) = &r.via {
            let _ = write!(t, " via {via}");
        }
        if let Some(l) = &r.link {
            let _ = write!(t, " on {l}");
        }
        let _ = write!(t, " metric {} ({})", r.metric, r.origin);
        line("  route", t);
    }
    for p in &net.pending {
        line("  pending", format!("{}: {}", p.item, p.reason));
    }
    for f in &net.failed {
        line("  FAILED", format!("{}: {}", f.op, f.error));
    }
}

pub fn render(st: &NodeStatus) -> String {
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "{}", format!("{label:<11}{text}").trim_end());
    };
    let mut head = Vec::new();
    head.extend(st.hostname.clone());
    if !st.machine_id.is_empty() {
        head.push(format!("machine {}", st.machine_id));
    }
    if !st.version.is_empty() {
        head.push(format!("keel {}", st.version));
    }
    if st.uptime_s > 0.0 {
        head.push(format!("up {}", uptime(st.uptime_s)));
    }
    line("node", head.join("  "));
    if !st.api.fingerprint.is_empty() {
        line("api", st.api.fingerprint.clone());
    }
    config_lines(&st.config, &mut line);
    if let Some(i) = &st.install {
        let mut text = format!("{} on {}", i.phase, i.disk.as_deref().unwrap_or("?"));
        if let Some(code) = &i.code {
            let _ = write!(text, " ({code})");
        }
        if let Some(why) = &i.reason {
            let _ = write!(text, ": {why}");
        }
        line("install", text);
    }
    config_detail(&st.config, &mut line);
    // Every node reports these two; a document without a version is no node's (an empty answer).
    if !st.version.is_empty() {
        line("trust", secure_boot(&st.boot));
    }
    if let Some(text) = slots(&st.boot) {
        line("slots", text);
    }
    if let Some(net) = &st.network {
        network_lines(net, &mut line);
    }
    if !st.version.is_empty() {
        let t = &st.time;
        let mut text = if t.synced { "synced".to_string() } else { "not synced".to_string() };
        if !t.source.is_empty() {
            let _ = write!(text, " (source {}", t.source);
            if let Some(server) = &t.server {
                let _ = write!(text, " {server}");
            }
            text.push(')');
        }
        if let Some(off) = t.offset_ms {
            let _ = write!(text, " offset {off:.1} ms");
        }
        line("time", text);
    }
    if !st.controllers.is_empty() {
        line("controllers", String::new());
        for (name, c) in &st.controllers {
            let mut t = if c.converged { "converged".to_string() } else { "NOT converged".to_string() };
            if let Some(g) = c.generation {
                let _ = write!(t, " (generation {g})");
            }
            let bad: Vec<String> = c.items.iter().filter(|i| i.state != "converged").map(item).collect();
            if !bad.is_empty() {
                let _ = write!(t, "; {}", bad.join("; "));
            }
            line(&format!("  {name}"), t);
        }
    }
    let storage = &st.storage;
    if storage.state.is_some() || !storage.volumes.is_empty() {
        line("storage", String::new());
        if let Some(s) = &storage.state {
            let mut t = s.mode.clone();
            if let Some(r) = &s.reason {
                let _ = write!(t, ": {r}");
            }
            line("  state", t);
        }
        for v in &storage.volumes {
            let mut t = format!("{} {}", v.phase, v.mount);
            if let Some(r) = &v.reason {
                let _ = write!(t, ": {r}");
            }
            line(&format!("  {}", v.name), t);
        }
    }
    if !st.services.services.is_empty() {
        line("services", String::new());
        for (name, s) in &st.services.services {
            line(&format!("  {name}"), service_detail(s));
        }
    }
    out
}

/// A service's state, an image service's pull progress and manifest digest, and why it is not running.
fn service_detail(s: &ServiceStatus) -> String {
    let mut t = s.state.clone();
    if let Some(p) = s.pull_percent {
        let _ = write!(t, " {p}%");
    }
    if let Some(image) = &s.image {
        let _ = write!(t, " image {image}");
    }
    if let Some(reason) = &s.reason {
        let _ = write!(t, ": {reason}");
    }
    t
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The document as keelctl reads it off the wire.
    fn doc(v: serde_json::Value) -> NodeStatus {
        serde_json::from_value(v).unwrap()
    }

    fn render(v: serde_json::Value) -> String {
        super::render(&doc(v))
    }

    #[test]
    fn a_failing_config_pull_shows_its_reason() {
        let reason = "https://10.0.2.2:8443/n.toml: untrusted certificate: its issuer is not a CA in /etc/keel/ca.pem";
        let st = json!({"config": {"generation": 1, "converged_generation": 1, "source": "image",
                                   "pull": {"url": "https://10.0.2.2:8443/n.toml", "polls": 4, "failures": 3,
                                            "last_error": reason}}});
        let want = format!(
            "node\nconfig     generation 1 (converged) from image\n           \
             pull from https://10.0.2.2:8443/n.toml FAILING (3 in a row): {reason}\n"
        );
        assert_eq!(render(st.clone()), want);
        let ok = json!({"config": {"pull": {"url": "http://h/n", "polls": 4, "failures": 0, "last_error": "old"}}});
        assert_eq!(render(ok), "node\nconfig     none applied\n           pull from http://h/n: ok\n");
    }

    #[test]
    fn a_config_held_for_its_rollout_turn_shows_when_it_applies() {
        let st = json!({"config": {"generation": 4, "converged_generation": 4, "source": "http://h/n",
            "rollout": {"state": "waiting-rollout", "generation": 5, "applies_at": "2026-12-02T18:00:00Z",
                        "applies_at_unix": 1_796_234_400, "slot": 0.41, "source": "http://h/n"}}});
        assert_eq!(
            render(st.clone()),
            "node\nconfig     generation 4 (converged) from http://h/n\n           \
             waiting-rollout: generation 5 applies at 2026-12-02T18:00:00Z\n"
        );
    }

    #[test]
    fn the_kinds_not_yet_converged_are_named() {
        let st = json!({"config": {"generation": 4, "converged_generation": 3, "source": "api",
            "convergence": [{"kind": "network", "state": "converged"}, {"kind": "storage", "state": "stuck",
                             "problems": ["data: blocked: holds xfs"]}, {"kind": "services", "state": "pending"}]}});
        assert_eq!(
            render(st.clone()),
            "node\nconfig     generation 4 (converging; generation 3 converged) from api\n           \
             waiting for storage (stuck: data: blocked: holds xfs), services\n"
        );
        let done = json!({"config": {"generation": 4, "converged_generation": 4,
            "convergence": [{"kind": "files", "state": "converged"}]}});
        assert_eq!(render(done), "node\nconfig     generation 4 (converged)\n");
    }

    #[test]
    fn the_install_says_where_it_stands_and_why() {
        let st = json!({"install": {"generation": 2, "phase": "refused", "disk": "/dev/vda", "code": "not-blank",
                                    "reason": "the disk holds data"}});
        assert_eq!(
            render(st.clone()),
            "node\nconfig     none applied\ninstall    refused on /dev/vda (not-blank): the disk holds data\n"
        );
        assert_eq!(render(json!({"install": null})), "node\nconfig     none applied\n", "no [install]: no line");
    }

    #[test]
    fn a_full_status() {
        let st = json!({
            "version": "0.1.0", "machine_id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "hostname": "edge-1",
            "uptime_s": 192.4, "api": {"fingerprint": "sha256:ab"},
            "config": {"generation": 3, "source": "api", "signer": "ops", "converged_generation": 2,
                       "last_rejection": {"reason": "not-newer", "detail": "generation 1 <= 3", "source": "api"}},
            "controllers": {"files": {"converged": false, "generation": 3,
                                      "items": [{"name": "/run/a", "state": "converged"},
                                                {"name": "/var/x", "state": "failed", "reason": "read-only"}]},
                            "sysctl": {"converged": true, "generation": 3, "items": []}},
            "network": {"ready": true, "links": [{"name": "eth0", "mac": "52:54:00:12:34:56", "up": true,
                                                  "carrier": false, "mtu": 1500}],
                        "addresses": [{"link": "eth0", "address": "10.0.2.15/24", "origin": "dhcp"}],
                        "routes": [{"to": "0.0.0.0/0", "via": "10.0.2.2", "link": "eth0", "metric": 1027,
                                    "origin": "dhcp"}],
                        "nameservers": ["10.0.2.3"], "pending": [{"item": "eth1", "reason": "no carrier"}],
                        "failed": [{"op": "eth2", "error": "gone"}]},
            "time": {"synced": false, "source": "rtc", "offset_ms": null, "server": null},
            "storage": {}, "services": {"generation": 3, "converged": true, "services": {"app": {"state": "running", "pid": 7}}},
            "future": {"x": 1}
        });
        let want = "\
node       edge-1  machine 0a1b2c3d4e5f60718293a4b5c6d7e8f9  keel 0.1.0  up 3m 12s
api        sha256:ab
config     generation 3 (converging; generation 2 converged) from api signed by ops
           last rejection: not-newer: generation 1 <= 3 (from api)
trust      secure_boot: false (not booted by UEFI firmware)
network    ready; nameservers 10.0.2.3
  link     eth0 52:54:00:12:34:56 up no-carrier mtu 1500
  address  10.0.2.15/24 on eth0 (dhcp)
  route    0.0.0.0/0 via 10.0.2.2 on eth0 metric 1027 (dhcp)
  pending  eth1: no carrier
  FAILED   eth2: gone
time       not synced (source rtc)
controllers
  files    NOT converged (generation 3); /var/x (failed): read-only
  sysctl   converged (generation 3)
services
  app      running
";
        assert_eq!(render(st.clone()), want);
    }

    #[test]
    fn image_services_show_their_pull_digest_and_failure() {
        let st = json!({"services": {"services": {
            "a": {"state": "pulling", "pull_percent": 37},
            "b": {"state": "running", "pid": 9, "image": "sha256:ab12"},
            "c": {"state": "backoff", "reason": "digest-mismatch: digest mismatch: blob sha256:cd"}}}});
        let shown = render(st.clone());
        assert!(shown.contains("  a        pulling 37%\n"), "{shown}");
        assert!(shown.contains("  b        running image sha256:ab12\n"), "{shown}");
        assert!(shown.contains("  c        backoff: digest-mismatch: digest mismatch: blob sha256:cd\n"), "{shown}");
    }

    #[test]
    fn missing_fields_are_left_out_and_unknown_ones_ignored() {
        assert_eq!(render(json!({})), "node\nconfig     none applied\n");
        let newer = json!({"hostname": "n", "config": {"generation": 2, "stages": [1]}, "quantum": {"x": 1},
                           "controllers": {"a": {"converged": true, "future": 1}}});
        assert_eq!(
            render(newer),
            "node       n\nconfig     generation 2 (converging)\ncontrollers\n  a        converged\n"
        );
        let odd: Result<NodeStatus, _> = serde_json::from_value(json!({"config": {"generation": "x"}}));
        assert!(odd.is_err(), "a field of the wrong type is an error, not a silent default");
    }

    #[test]
    fn secure_boot_and_signer() {
        let boot = |v| doc(json!({ "boot": v })).boot;
        let b = boot(json!({"secure_boot": true, "uefi": true, "setup_mode": false, "signer": "CN=Keel db",
                            "signer_sha256": "0123456789abcdef0123", "signer_enrolled": true}));
        assert_eq!(
            secure_boot(&b),
            "secure_boot: true, image signed for CN=Keel db (sha256 0123456789abcdef…), enrolled in db"
        );
        let st = json!({"version": "0.1.0", "boot": {"secure_boot": false, "uefi": false, "signer": null}});
        assert_eq!(secure_boot(&doc(st.clone()).boot), "secure_boot: false (not booted by UEFI firmware)");
        assert!(render(st).contains("trust      secure_boot: false"));
    }

    #[test]
    fn boot_slots() {
        assert_eq!(slots(&doc(json!({"boot": {"slot": null}})).boot), None);
        let st = doc(json!({"boot": {"slot": "A", "pending_slot": null, "last_upgrade": {"result": "rolled-back",
                        "slot": "B", "reason": "slot B did not come up; booted slot A instead"}}}));
        assert_eq!(
            slots(&st.boot).as_deref(),
            Some("running A; last upgrade rolled-back (slot B): slot B did not come up; booted slot A instead")
        );
        let st = doc(json!({"boot": {"slot": "A", "pending_slot": "B", "last_upgrade": null}}));
        assert_eq!(slots(&st.boot).as_deref(), Some("running A; slot B waits for its trial boot"));
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime(12.34), "12.3s");
        assert_eq!(uptime(3.0 * 3600.0 + 125.0), "3h 2m");
        assert_eq!(uptime(2.0 * 86_400.0 + 3600.0), "2d 1h");
    }
}
