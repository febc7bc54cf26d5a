//! What a service starts `after`, read from the other controllers' published status: the network's readiness,
//! the storage controller's volumes, the other services. Declared in the config, checked here, in one place.

use super::status::{ServicesStatus, State};
use crate::reaper::Exit;
use crate::storage::controller::StorageStatus;
use crate::storage::volume::Phase;
use keel_config::model::After;
use tokio::sync::watch;

/// The status a service's dependencies are read from.
#[derive(Clone)]
pub struct Deps {
    /// The network controller reports the network ready.
    pub network: watch::Receiver<bool>,
    /// The config volumes, as the storage controller last reported them.
    pub volumes: watch::Receiver<StorageStatus>,
}

/// The volume is mounted where its config says.
pub fn volume_mounted(volumes: &StorageStatus, name: &str) -> bool {
    volumes.volumes.iter().any(|v| v.name == name && v.phase == Phase::Mounted)
}

/// The other service runs, or ran to a clean end.
pub fn service_up(services: &ServicesStatus, name: &str) -> bool {
    services
        .services
        .get(name)
        .is_some_and(|o| o.state == State::Running || (o.state == State::Stopped && o.last_exit == Some(Exit::Code(0))))
}

/// Resolves when `dep` is satisfied; false when its source is gone (it never will be).
pub async fn ready(dep: &After, deps: &Deps, services: &watch::Sender<ServicesStatus>) -> bool {
    match dep {
        After::Network => deps.network.clone().wait_for(|up| *up).await.is_ok(),
        After::Volume(name) => deps.volumes.clone().wait_for(|v| volume_mounted(v, name)).await.is_ok(),
        After::Service(other) => services.subscribe().wait_for(|s| service_up(s, other)).await.is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::volume::VolumeStatus;
    use std::time::Duration;

    fn volume(name: &str, phase: Phase) -> VolumeStatus {
        VolumeStatus::for_tests(name, phase)
    }

    #[tokio::test(start_paused = true)]
    async fn a_volume_dependency_waits_until_the_volume_is_mounted() {
        let (volumes_tx, volumes) = watch::channel(StorageStatus::default());
        let deps = Deps { network: watch::channel(true).1, volumes };
        let (services, _) = watch::channel(ServicesStatus::default());
        let dep = After::Volume("data".into());
        let waiting = tokio::spawn({
            let (deps, services, dep) = (deps.clone(), services.clone(), dep.clone());
            async move { ready(&dep, &deps, &services).await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished(), "satisfied before the storage controller reported the volume");
        for phase in [Phase::Waiting("no disk yet".into()), Phase::Formatting] {
            volumes_tx.send_replace(StorageStatus { generation: Some(1), volumes: vec![volume("data", phase)] });
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert!(!waiting.is_finished(), "satisfied before the mount");
        }
        let other = volume("logs", Phase::Mounted);
        volumes_tx.send_replace(StorageStatus { generation: Some(1), volumes: vec![other.clone()] });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished(), "another volume's mount satisfied it");
        let mounted = vec![other, volume("data", Phase::Mounted)];
        volumes_tx.send_replace(StorageStatus { generation: Some(1), volumes: mounted });
        assert!(tokio::time::timeout(Duration::from_secs(1), waiting).await.unwrap().unwrap());
        // The storage controller gone: never satisfied, and says so.
        drop(volumes_tx);
        assert!(!ready(&After::Volume("data2".into()), &deps, &services).await);
    }

    #[test]
    fn service_dependencies_need_a_running_or_cleanly_ended_service() {
        use super::super::status::ServiceStatus;
        let mut s = ServicesStatus::default();
        assert!(!service_up(&s, "db"));
        s.services.insert("db".into(), ServiceStatus::new(State::Starting));
        assert!(!service_up(&s, "db"));
        s.services.insert("db".into(), ServiceStatus::new(State::Running));
        assert!(service_up(&s, "db"));
        let mut done = ServiceStatus::new(State::Stopped);
        done.last_exit = Some(Exit::Code(0));
        s.services.insert("db".into(), done.clone());
        assert!(service_up(&s, "db"));
        done.last_exit = Some(Exit::Code(1));
        s.services.insert("db".into(), done);
        assert!(!service_up(&s, "db"));
    }
}
