use super::*;

/// A status with every section filled, as a node would serve it.
pub(super) fn sample() -> NodeStatus {
    let mut s = NodeStatus {
        version: "0.1.0".into(),
        machine_id: "0a1b".into(),
        hostname: Some("edge-1".into()),
        uptime_s: 12.5,
        rss_kib: 2048,
        ..NodeStatus::default()
    };
    s.boot.slot = Some("A".into());
    s.boot.last_upgrade = Some(LastUpgrade { result: "rolled-back".into(), slot: "B".into(), ..Default::default() });
    s.config.generation = Some(3);
    s.config.converged_generation = Some(3);
    s.config.convergence =
        Some(vec![KindConvergence { kind: "files".into(), state: ConvergenceState::Converged, problems: vec![] }]);
    s.controllers.insert(
        "files".into(),
        ControllerStatus {
            converged: false,
            items: vec![ControllerItem { name: "/x".into(), state: "failed".into(), reason: Some("ro".into()) }],
            ..Default::default()
        },
    );
    s.network = Some(NetworkStatus {
        ready: true,
        links: vec![LinkStatus { name: "eth0".into(), mtu: 1500, ..Default::default() }],
        pending: vec![PendingItem { item: "eth1".into(), reason: "no carrier".into() }],
        ..Default::default()
    });
    s.services
        .services
        .insert("app".into(), ServiceStatus { state: "running".into(), pid: Some(7), ..Default::default() });
    s.storage.volumes.push(VolumeStatus { name: "data".into(), phase: "mounted".into(), ..Default::default() });
    s.install = Some(InstallStatus { phase: "waiting".into(), ..Default::default() });
    s.rollback.kept_in = vec!["state".into()];
    s
}

#[test]
fn what_the_node_serializes_keelctl_reads_back_equal() {
    let s = sample();
    let text = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<NodeStatus>(&text).unwrap(), s);
}

#[test]
fn the_keys_e2e_tests_and_scripts_read_are_there() {
    let v = serde_json::to_value(sample()).unwrap();
    for key in ["version", "machine_id", "hostname", "uptime_s", "boot", "api", "config", "controllers", "network"] {
        assert!(v.get(key).is_some(), "{key}");
    }
    for key in ["time", "services", "storage", "install", "logs", "rollback", "rss_kib"] {
        assert!(v.get(key).is_some(), "{key}");
    }
    let boot = &v["boot"];
    for key in ["slot", "pending_slot", "last_upgrade", "secure_boot", "signer", "signer_enrolled", "upgrades"] {
        assert!(boot.get(key).is_some(), "boot.{key}");
    }
    assert_eq!(boot["pending_slot"], serde_json::Value::Null, "absent values are null, not missing");
    assert_eq!(boot["upgrades"], serde_json::json!({"supported": true}));
    for key in ["generation", "converged_generation", "last_rejection", "rollout", "source", "signer"] {
        assert!(v["config"].get(key).is_some(), "config.{key}");
    }
    let app = &v["services"]["services"]["app"];
    for key in ["state", "pid", "restarts", "last_exit", "artifact", "image", "pull_percent", "reason"] {
        assert!(app.get(key).is_some(), "service.{key}");
    }
    for key in ["generation", "forward", "intake_dropped"] {
        assert!(v["logs"].get(key).is_some(), "logs.{key}");
    }
    assert!(v["rollback"].get("kept_in").is_some() && v["install"].get("phase").is_some());
    assert_eq!(v["controllers"]["files"]["items"][0]["reason"], "ro");
}

#[test]
fn an_older_node_and_a_newer_node_both_read() {
    // An older node: fields missing.
    let old: NodeStatus = serde_json::from_str(r#"{"version": "0.0.9", "config": {"generation": 2}}"#).unwrap();
    assert_eq!((old.version.as_str(), old.config.generation, old.network), ("0.0.9", Some(2), None));
    // A newer node: fields this keelctl does not know.
    let new: NodeStatus =
        serde_json::from_str(r#"{"hostname": "n", "future": {"x": 1}, "boot": {"slot": "B", "tpm": true}}"#).unwrap();
    assert_eq!((new.hostname.as_deref(), new.boot.slot.as_deref()), (Some("n"), Some("B")));
}

#[test]
fn a_converged_item_carries_no_reason_key() {
    let item = ControllerItem { name: "a".into(), state: "converged".into(), reason: None };
    assert_eq!(serde_json::to_string(&item).unwrap(), r#"{"name":"a","state":"converged"}"#);
}
