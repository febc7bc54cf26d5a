//! The pure part of convergence: from the desired services and the running ones, what to stop (dependents
//! first), what to start (dependencies first), and what to leave alone.

use keel_config::model::{After, Service};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Removed and changed services, in layers: a layer stops only after the one before it, and no service in a
    /// layer is a dependency of one in a later layer.
    pub stop: Vec<Vec<String>>,
    /// New and changed services, each after the services it starts after.
    pub start: Vec<String>,
    /// Changed services (in both `stop` and `start`).
    pub changed: BTreeSet<String>,
    /// Removed services (only in `stop`).
    pub removed: BTreeSet<String>,
    pub unchanged: BTreeSet<String>,
}

fn service_deps(s: &Service) -> impl Iterator<Item = &str> {
    s.after.iter().filter_map(|a| match a {
        After::Service(name) => Some(name.as_str()),
        _ => None,
    })
}

pub fn plan(desired: &[Service], running: &BTreeMap<String, Arc<Service>>) -> Plan {
    let wanted: BTreeMap<&str, &Service> = desired.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut p = Plan::default();
    for (name, def) in running {
        match wanted.get(name.as_str()) {
            None => {
                p.removed.insert(name.clone());
            }
            Some(w) if **w != **def => {
                p.changed.insert(name.clone());
            }
            Some(_) => {
                p.unchanged.insert(name.clone());
            }
        }
    }
    let stopping: Vec<&Service> =
        running.values().map(|s| &**s).filter(|s| p.removed.contains(&s.name) || p.changed.contains(&s.name)).collect();
    p.stop = stop_layers(&stopping);
    let starting: BTreeSet<&str> =
        desired.iter().map(|s| s.name.as_str()).filter(|n| !p.unchanged.contains(*n)).collect();
    p.start = start_order(desired).into_iter().filter(|n| starting.contains(n.as_str())).collect();
    p
}

/// Every service after the services it starts after; otherwise in config order. A cycle (which validation
/// refuses) would put the services on it last, in config order.
pub fn start_order(services: &[Service]) -> Vec<String> {
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::new();
    loop {
        let ready: Vec<&Service> = services
            .iter()
            .filter(|s| !placed.contains(s.name.as_str()))
            .filter(|s| service_deps(s).all(|d| placed.contains(d) || !names.contains(d)))
            .collect();
        if ready.is_empty() {
            break;
        }
        for s in ready {
            placed.insert(&s.name);
            order.push(s.name.clone());
        }
    }
    order.extend(services.iter().filter(|s| !placed.contains(s.name.as_str())).map(|s| s.name.clone()));
    order
}

/// Layers to stop `services` in: first those no other of them starts after, then what they started after, and so
/// on. Each layer is sorted by name.
pub fn stop_layers(services: &[&Service]) -> Vec<Vec<String>> {
    let mut left: BTreeMap<&str, &Service> = services.iter().map(|s| (s.name.as_str(), *s)).collect();
    let mut layers = Vec::new();
    while !left.is_empty() {
        let needed: BTreeSet<&str> = left.values().flat_map(|s| service_deps(s)).collect();
        let layer: Vec<String> =
            left.keys().filter(|n| !needed.contains(**n)).map(|n| n.to_string()).collect::<Vec<_>>();
        // Only a cycle leaves nothing free: stop the rest together.
        let layer = if layer.is_empty() { left.keys().map(|n| n.to_string()).collect() } else { layer };
        for name in &layer {
            left.remove(name.as_str());
        }
        layers.push(layer);
    }
    layers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, after: &[&str]) -> Service {
        Service {
            after: after
                .iter()
                .map(|a| if *a == "network" { After::Network } else { After::Service(a.to_string()) })
                .collect(),
            ..crate::services::test_service::service(name, &format!("/usr/bin/{name}"), &[])
        }
    }

    fn running(services: &[Service]) -> BTreeMap<String, Arc<Service>> {
        services.iter().map(|s| (s.name.clone(), Arc::new(s.clone()))).collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn first_config_starts_everything_dependencies_first() {
        let desired = [svc("web", &["db", "network"]), svc("db", &["cache"]), svc("cache", &[]), svc("log", &[])];
        let p = plan(&desired, &BTreeMap::new());
        assert_eq!(p.start, ["cache", "log", "db", "web"]);
        assert!(p.stop.is_empty() && p.changed.is_empty() && p.unchanged.is_empty());
    }

    #[test]
    fn unchanged_services_are_not_touched() {
        let desired = [svc("web", &["db"]), svc("db", &[])];
        let p = plan(&desired, &running(&desired));
        assert!(p.stop.is_empty() && p.start.is_empty(), "{p:?}");
        assert_eq!(p.unchanged, set(&["db", "web"]));
    }

    #[test]
    fn a_changed_definition_restarts_only_that_service() {
        let old = [svc("web", &["db"]), svc("db", &[]), svc("cache", &[])];
        let mut db = svc("db", &[]);
        db.env.insert("MODE".into(), "fast".into());
        let desired = [svc("web", &["db"]), db, svc("cache", &[])];
        let p = plan(&desired, &running(&old));
        assert_eq!(p.stop, [vec!["db".to_string()]]);
        assert_eq!(p.start, ["db"]);
        assert_eq!(p.changed, set(&["db"]));
        assert_eq!(p.unchanged, set(&["cache", "web"]));
        // Any field counts: a new capability, limit or stop timeout is a new definition.
        let mut web = svc("web", &["db"]);
        web.stop_timeout_s = 3;
        let p = plan(&[web, svc("db", &[]), svc("cache", &[])], &running(&old));
        assert_eq!(p.changed, set(&["web"]));
    }

    #[test]
    fn removed_services_stop_dependents_first() {
        let old = [svc("web", &["api"]), svc("api", &["db"]), svc("db", &[]), svc("batch", &["db"]), svc("keep", &[])];
        let p = plan(&[svc("keep", &[])], &running(&old));
        assert_eq!(p.stop, [vec!["batch".to_string(), "web".into()], vec!["api".into()], vec!["db".into()]]);
        assert_eq!(p.removed, set(&["api", "batch", "db", "web"]));
        assert!(p.start.is_empty());
        assert_eq!(p.unchanged, set(&["keep"]));
    }

    #[test]
    fn removal_change_and_addition_together() {
        let old = [svc("a", &[]), svc("b", &["a"]), svc("gone", &["a"])];
        let mut b = svc("b", &["a"]);
        b.args.push("--v2".into());
        let desired = [svc("new", &["b"]), b, svc("a", &[])];
        let p = plan(&desired, &running(&old));
        assert_eq!(p.stop, [vec!["b".to_string(), "gone".into()]]);
        assert_eq!(p.start, ["b", "new"]);
        assert_eq!((p.changed, p.removed, p.unchanged), (set(&["b"]), set(&["gone"]), set(&["a"])));
    }

    #[test]
    fn shutdown_layers_reverse_the_start_order() {
        let all = [svc("web", &["db", "network"]), svc("db", &["cache"]), svc("cache", &[]), svc("log", &[])];
        let refs: Vec<&Service> = all.iter().collect();
        assert_eq!(
            stop_layers(&refs),
            [vec!["log".to_string(), "web".into()], vec!["db".into()], vec!["cache".into()]]
        );
        // A cycle cannot come from a validated config, but must not hang either.
        let cyclic = [svc("x", &["y"]), svc("y", &["x"])];
        let refs: Vec<&Service> = cyclic.iter().collect();
        assert_eq!(stop_layers(&refs), [vec!["x".to_string(), "y".into()]]);
        assert_eq!(start_order(&cyclic), ["x", "y"]);
    }
}
