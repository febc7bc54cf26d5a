use keel_config::status::{RunningBody, RunningConfig};
use serde_json::{json, Value};

use super::*;

const EXAMPLE: &str = include_str!("../../config/examples/node.toml");

fn local(toml: &str) -> View {
    View::from_config(&keel_config::parse("node.toml", toml).unwrap())
}

/// What the node answers `GET /v1/config` for `toml` (its own serializer, `RunningBody::of`), as JSON.
fn node_json(toml: &str) -> Value {
    let c = keel_config::parse("node.toml", toml).unwrap();
    let running = RunningConfig {
        config: Some(RunningBody::of(&c, c.generation)),
        generation: Some(c.generation),
        signer: Some("ops".into()),
        source: Some("api".into()),
    };
    serde_json::to_value(running).unwrap()
}

/// What keelctl makes of a `GET /v1/config` reply.
fn remote(j: Value) -> View {
    View::from_running(&serde_json::from_value(j).unwrap())
}

#[test]
fn the_same_config_from_both_sides_has_no_changes() {
    let d = diff(&remote(node_json(EXAMPLE)), &local(EXAMPLE));
    assert!(d.lines.is_empty(), "{d}");
    assert_eq!(d.uncompared_secrets, 1);
    assert_eq!(d.to_string(), "no changes\nnote: the content of 1 secret file is not compared (the node redacts it)\n");
}

#[test]
fn other_spellings_of_ids_and_keys_a_newer_node_adds_change_nothing() {
    let mut j = node_json(EXAMPLE);
    let c = &mut j["config"];
    c["node"]["uuid"] = json!("0A1B2C3D4E5F60718293A4B5C6D7E8F9");
    c["node"]["mac"] = json!("52:54:00:12:34:56".to_uppercase());
    c["node"]["extra"] = json!("ignored");
    c["network"]["nameservers"][1] = json!("FD00:0::3");
    c["network"]["link"][1]["mac"] = json!("52:54:00:12:34:57".to_uppercase());
    c["service"][1]["restart"] = json!("onfailure"); // as nodes before the typed reply spelled it
    j["rollout"] = json!({"new": "field"});
    let d = diff(&remote(j), &local(EXAMPLE));
    assert!(d.lines.is_empty(), "{d}");
}

#[test]
fn a_node_without_config_gets_everything_added() {
    let text = diff(&remote(json!({"generation": null, "config": null})), &local(EXAMPLE)).to_string();
    for want in [
        "generation: (none) → 7\n",
        "hostname: (default) → edge-1\n",
        "node:\n  expires (none) → 2099-12-31T00:00:00Z\n  mac (none) → 52:54:00:12:34:56\n",
        "  + net.ipv4.ip_forward = \"1\"\n",
        "  ~ nameservers [] → [10.0.2.3, fd00::3]\n",
        "  + link eth0: dhcp4 false, mtu 1500, up true; addresses [10.0.2.15/24, fd00::15/64]\n",
        "  + route 0.0.0.0/0 via 10.0.2.2 link eth0 metric 100\n",
        "  + route 192.168.50.0/24 via 192.168.49.1 link 52:54:00:12:34:57 onlink\n",
        "storage:\n  + volume data: /dev/vdb at /var/lib/data (ext4)\n",
        "files:\n  + /run/motd (0644, 0:0, 18 bytes)\n  + /var/lib/app/token (0600, 1000:1000, 6 bytes, secret)\n",
        "services:\n",
        "  + app (/usr/bin/app, uid 1000:1000, capabilities [CAP_NET_BIND_SERVICE], devices [/dev/net/tun], \
         paths [/proc/sys/net/ipv4/ip_forward])\n",
        "  + db (/usr/bin/db, uid 65534:65534)\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("secret") || !text.contains("c2VjcmV0"), "{text}");
}

const OLD: &str = r#"version = 1
generation = 6
[node]
hostname = "edge-1"
[sysctl]
"vm.swappiness" = "60"
"kernel.panic" = "10"
[[network.link]]
name = "eth0"
addresses = ["10.0.2.15/24"]
[[network.route]]
to = "default"
via = "10.0.2.2"
[[file]]
path = "/run/motd"
content = "hello"
[[file]]
path = "/run/old"
content = "x"
[[service]]
name = "app"
exec = "/usr/bin/app"
env = { A = "1", B = "2" }
[[service]]
name = "gone"
exec = "/usr/bin/gone"
"#;

const NEW: &str = r#"version = 1
generation = 7
[node]
hostname = "edge-2"
[sysctl]
"vm.swappiness" = "10"
"net.ipv4.ip_forward" = "1"
[[network.link]]
name = "eth0"
mtu = 9000
addresses = ["10.0.3.15/24"]
[[network.route]]
to = "default"
via = "10.0.3.1"
[[file]]
path = "/run/motd"
content = "HELLO"
mode = "0600"
[[file]]
path = "/run/new"
content = "new!"
[[service]]
name = "app"
exec = "/usr/bin/app"
args = ["-v"]
restart = "always"
env = { A = "1", B = "3", C = "4" }
"#;

#[test]
fn every_section_reports_added_changed_removed() {
    let text = diff(&local(OLD), &local(NEW)).to_string();
    let want = "\
generation: 6 → 7
hostname: edge-1 → edge-2
sysctl:
  + net.ipv4.ip_forward = \"1\"
  ~ vm.swappiness: \"60\" → \"10\"
  - kernel.panic (was \"10\")
network:
  ~ link eth0: mtu default → 9000; + address 10.0.3.15/24; - address 10.0.2.15/24
  + route 0.0.0.0/0 via 10.0.3.1
  - route 0.0.0.0/0 via 10.0.2.2
files:
  + /run/new (0644, 0:0, 4 bytes)
  ~ /run/motd: mode 0644 → 0600; content changed (5 bytes)
  - /run/old
services:
  ~ app: args [] → [\"-v\"]; restart on-failure → always; env +C ~B
  - gone
";
    assert_eq!(text, want);
    assert_eq!(diff(&local(NEW), &local(NEW)).to_string(), "no changes\n");
}

#[test]
fn redacted_secrets_compare_by_size_when_the_node_gives_one() {
    let toml = "version = 1\ngeneration = 2\n[[file]]\npath = \"/run/k\"\ncontent = \"abcdef\"\nsecret = true\n";
    let node = |size: u64| {
        let mut j = node_json(toml);
        assert_eq!(j["config"]["file"][0]["content"], "<redacted>");
        j["config"]["file"][0]["size"] = json!(size);
        remote(j)
    };
    let d = diff(&node(4), &local(toml));
    assert_eq!(d.lines, ["files:", "  ~ /run/k: content 4 → 6 bytes"]);
    let d = diff(&node(6), &local(toml));
    assert!(d.lines.is_empty() && d.uncompared_secrets == 1, "{d}");
}

#[test]
fn log_collectors_are_compared_by_url() {
    let head = "version = 1\ngeneration = 1\n";
    let old =
        format!("{head}[[log.forward]]\nurl = \"tcp://10.0.2.2:5514\"\n[[log.forward]]\nurl = \"tcp://old:514\"\n");
    let new = format!(
        "{head}[[log.forward]]\nurl = \"tcp://10.0.2.2:5514\"\nbuffer_lines = 5\n\
         [[log.forward]]\nurl = \"tls://new:6514\"\nformat = \"json\"\n"
    );
    let want = "\
log collectors:
  + tls://new:6514 (json, buffer 10000 lines)
  ~ tcp://10.0.2.2:5514: buffer_lines 10000 → 5
  - tcp://old:514
";
    assert_eq!(diff(&local(&old), &local(&new)).to_string(), want);
}
