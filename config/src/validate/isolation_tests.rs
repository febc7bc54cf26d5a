//! What keeps workloads from being turned against the node: service identities and grants, `[[file]]` targets,
//! volume mount points, secret file modes. Each refusal names the key and says why.

use crate::model::{DEFAULT_SERVICE_ID, INIT_REAL_UID};
use crate::parse;

fn config(body: &str) -> Result<crate::Config, Vec<String>> {
    parse("node.toml", &format!("version = 1\ngeneration = 1\n{body}"))
        .map_err(|e| e.diagnostics().iter().map(ToString::to_string).collect())
}

fn errors(body: &str) -> Vec<String> {
    config(body).err().unwrap_or_default()
}

#[test]
fn a_service_without_uid_runs_as_nobody_and_root_must_be_asked_for() {
    let c = config(
        "[[service]]\nname = \"a\"\nexec = \"/a\"\n[[service]]\nname = \"b\"\nexec = \"/b\"\nuid = 0\ngid = 0\n",
    )
    .unwrap();
    assert_eq!((c.services[0].uid, c.services[0].gid), (DEFAULT_SERVICE_ID, DEFAULT_SERVICE_ID));
    assert_eq!((c.services[0].uid, c.services[1].uid, c.services[1].gid), (65534, 0, 0));
    assert!(c.services[0].devices.is_empty() && c.services[0].paths.is_empty());
}

#[test]
fn no_service_may_take_pid_1s_real_uid() {
    let body = format!("[[service]]\nname = \"a\"\nexec = \"/a\"\nuid = {INIT_REAL_UID}\ngid = {INIT_REAL_UID}\n");
    assert_eq!(
        errors(&body),
        [
            "node.toml:6:7: service[0].uid: must be 0..4294967293",
            "node.toml:7:7: service[0].gid: must be 0..4294967293"
        ]
    );
}

#[test]
fn grants_are_devices_and_kernel_paths_never_keels_records() {
    let body = "[[service]]\nname = \"a\"\nexec = \"/a\"\n\
                devices = [\"/dev/kvm\", \"/dev/net/tun\", \"kvm\", \"/dev/null\", \"/dev/pts/0\", \"/dev/kvm\"]\n\
                paths = [\"/proc/sys/net/ipv4/ip_forward\", \"/sys/class/leds\", \"/var/lib/keel/api\", \"/etc/passwd\", \"/proc/sys\", \"/sys/../etc\"]\n";
    assert_eq!(
        errors(body),
        [
            "node.toml:6:40: service[0].devices[2]: must be an absolute path",
            "node.toml:6:47: service[0].devices[3]: every service has it already",
            "node.toml:6:60: service[0].devices[4]: is the service's own (a private devpts and /dev/shm)",
            "node.toml:6:74: service[0].devices[5]: path \"/dev/kvm\" is already used by service[0].devices[0]",
            "node.toml:7:62: service[0].paths[2]: is /var/lib/keel, one of Keel's own records, which no service is granted",
            "node.toml:7:83: service[0].paths[3]: must be under /sys/ or /proc/sys/ (the rest of the node is writable or hidden as it is)",
            "node.toml:7:98: service[0].paths[4]: must be under /sys/ or /proc/sys/ (the rest of the node is writable or hidden as it is)",
            "node.toml:7:111: service[0].paths[5]: must not contain empty, '.' or '..' components",
        ]
    );
    assert_eq!(
        errors("[[service]]\nname = \"a\"\nexec = \"/a\"\ndevices = [\"/sys/kvm\"]\n"),
        ["node.toml:6:12: service[0].devices[0]: must be a device node under /dev/, e.g. \"/dev/kvm\""]
    );
    let ok = "[[service]]\nname = \"a\"\nexec = \"/a\"\ndevices = [\"/dev/net/tun\"]\npaths = [\"/sys/class/leds\"]\n";
    let c = config(ok).unwrap();
    assert_eq!(
        (c.services[0].devices.as_slice(), c.services[0].paths.as_slice()),
        (&["/dev/net/tun".to_string()][..], &["/sys/class/leds".to_string()][..])
    );
}

#[test]
fn a_workdir_services_cannot_see_is_refused() {
    let body = "[[service]]\nname = \"a\"\nexec = \"/a\"\nworkdir = \"/var/lib/keel/x\"\n\
                [[service]]\nname = \"b\"\nexec = \"/b\"\nworkdir = \"/etc/keel\"\n";
    assert_eq!(
        errors(body),
        [
            "node.toml:6:11: service[0].workdir: is inside /var/lib/keel, which services do not see",
            "node.toml:10:11: service[1].workdir: is inside /etc/keel, which services do not see",
        ]
    );
}

#[test]
fn files_cannot_target_keels_own_records() {
    let file = |p: &str| format!("[[file]]\npath = \"{p}\"\ncontent = \"x\"\n");
    let body: String = [
        "/var/lib/keel/config/highest-generation",
        "/run/keel/generation",
        "/var/lib/keel",
        "/run/keelx",
        "/var/lib/keelx/a",
    ]
    .iter()
    .map(|p| file(p))
    .collect();
    assert_eq!(
        errors(&body),
        [
            "node.toml:4:8: file[0].path: is inside /var/lib/keel, one of Keel's own records, which no [[file]] may write",
            "node.toml:7:8: file[1].path: is inside /run/keel, one of Keel's own records, which no [[file]] may write",
            "node.toml:10:8: file[2].path: is inside /var/lib/keel, one of Keel's own records, which no [[file]] may write",
        ]
    );
}

#[test]
fn secret_files_default_to_0600() {
    let c = config(
        "[[file]]\npath = \"/run/a\"\ncontent = \"x\"\nsecret = true\n[[file]]\npath = \"/run/b\"\ncontent = \"x\"\n\
         [[file]]\npath = \"/run/c\"\ncontent = \"x\"\nsecret = true\nmode = \"0640\"\n",
    )
    .unwrap();
    let modes: Vec<u32> = c.files.iter().map(|f| f.mode).collect();
    assert_eq!(modes, [0o600, 0o644, 0o640]);
}

#[test]
fn volumes_cannot_mount_over_the_nodes_own_trees() {
    let vol =
        |i: usize, m: &str| format!("[[storage.volume]]\nname = \"v{i}\"\ndevice = \"/dev/vd{i}\"\nmount = \"{m}\"\n");
    let mounts =
        ["/etc", "/var/lib/keel", "/run/keel", "/var", "/var/lib", "/run", "/etc/ssl", "/run/keel/x", "/var/lib/data"];
    let body: String = mounts.iter().enumerate().map(|(i, m)| vol(i, m)).collect();
    let line = |i: usize| 4 * i + 6;
    let over = |i: usize, m: &str| {
        format!(
            "node.toml:{}:9: storage.volume[{i}].mount: must not be {m}: it would hide what the node keeps there \
             (/etc, /var/lib/keel, /run/keel)",
            line(i)
        )
    };
    let inside = |i: usize, r: &str| {
        format!(
            "node.toml:{}:9: storage.volume[{i}].mount: must not be inside {r}, which holds the node's own records",
            line(i)
        )
    };
    let mut want: Vec<String> = mounts[..6].iter().enumerate().map(|(i, m)| over(i, m)).collect();
    want.push(inside(6, "/etc"));
    want.push(inside(7, "/run/keel"));
    assert_eq!(errors(&body), want);
}
