use serde_json::{json, Value};

use super::*;

const EXAMPLE: &str = include_str!("../../config/examples/node.toml");

fn local(toml: &str) -> View {
    View::from_config(&keel_config::parse("node.toml", toml).unwrap())
}

/// The example config as a node would answer `GET /v1/config`: the node.toml shape, the secret redacted.
fn example_json() -> Value {
    json!({
        "version": 1, "generation": 7,
        "node": {"uuid": "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", "mac": "52:54:00:12:34:56",
                 "expires": "2099-12-31T00:00:00Z", "hostname": "edge-1"},
        "sysctl": {"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0.rp_filter": "2"},
        "network": {
            "nameservers": ["10.0.2.3", "fd00::3"], "search": ["example.org"], "ntp": ["10.0.2.2", "pool.ntp.org"],
            "link": [{"name": "eth0", "mtu": 1500, "addresses": ["10.0.2.15/24", "fd00::15/64"]},
                     {"mac": "52:54:00:12:34:57", "dhcp4": true}],
            "route": [{"to": "default", "via": "10.0.2.2", "link": "eth0", "metric": 100},
                      {"to": "default6", "via": "fd00::1"},
                      {"to": "192.168.50.0/24", "via": "192.168.49.1", "link": "52:54:00:12:34:57", "onlink": true}]
        },
        "storage": {"volume": [{"name": "data", "device": "/dev/vdb", "fs": "ext4", "mount": "/var/lib/data",
                                "options": ["noatime"], "label": "DATA"}]},
        "file": [{"path": "/run/motd", "content": "Welcome to edge-1\n"},
                 {"path": "/var/lib/app/token", "content_base64": "<redacted>", "mode": "0600", "uid": 1000,
                  "gid": 1000, "secret": true}],
        "service": [{"name": "app", "exec": "/usr/bin/app", "args": ["--listen", "0.0.0.0:80"],
                     "env": {"RUST_LOG": "info"}, "uid": 1000, "gid": 1000,
                     "capabilities": ["CAP_NET_BIND_SERVICE"], "devices": ["/dev/net/tun"],
                     "paths": ["/proc/sys/net/ipv4/ip_forward"], "restart": "always",
                     "after": ["network", "volume:data", "service:db"]},
                    {"name": "db", "exec": "/usr/bin/db"},
                    {"name": "agent", "exec": "http://10.0.2.2:8000/agent sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                     "uid": 65534, "gid": 65534, "after": ["db"]},
                    {"name": "exporter",
                     "exec": "image registry.example:5000/ops/exporter@sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                     "args": ["--port", "9100"], "uid": 65534, "gid": 65534, "after": ["network", "volume:data"]}],
        "log": {"forward": [{"url": "tcp://10.0.2.2:5514", "format": "rfc5424", "buffer_lines": 5000, "ca": "image"},
                            {"url": "tls://logs.example.org:6514", "format": "json", "buffer_lines": 10000, "ca": "config"}]}
    })
}

#[test]
fn the_same_config_from_both_sides_has_no_changes() {
    let d = diff(&View::from_json(&example_json()), &local(EXAMPLE));
    assert!(d.lines.is_empty(), "{d}");
    assert_eq!(d.uncompared_secrets, 1);
    assert_eq!(d.to_string(), "no changes\nnote: the content of 1 secret file is not compared (the node redacts it)\n");
}

#[test]
fn model_shaped_json_with_other_spellings_is_read_too() {
    let mut j = example_json();
    let o = j.as_object_mut().unwrap();
    let mut net = o.remove("network").unwrap();
    let n = net.as_object_mut().unwrap();
    let links = n.remove("link").unwrap();
    n.insert("links".into(), links);
    n.insert(
        "routes".into(),
        json!([{"to": "0.0.0.0/0", "via": "10.0.2.2", "link": "eth0", "metric": 100},
               {"to": "::/0", "via": "fd00:0::1"},
               {"to": "192.168.50.0/24", "via": "192.168.49.1", "link": "52:54:00:12:34:57", "onlink": true}]),
    );
    n.remove("route");
    o.insert("network".into(), net);
    let mut files = o.remove("file").unwrap();
    files[1]["mode"] = json!(0o600);
    files[1]["content_base64"] = json!("c2VjcmV0");
    o.insert("files".into(), files);
    let services = o.remove("service").unwrap();
    o.insert("services".into(), services);
    o.insert(
        "node".into(),
        json!({"uuid": "0A1B2C3D4E5F60718293A4B5C6D7E8F9", "mac": "52:54:00:12:34:56",
                                   "expires": 4102358400_i64, "hostname": "edge-1", "extra": "ignored"}),
    );
    let wrapped = json!({"config": j, "signer": "ops"});
    let d = diff(&View::from_json(&wrapped), &local(EXAMPLE));
    assert!(d.lines.is_empty() && d.uncompared_secrets == 0, "{d}");
}

#[test]
fn a_node_without_config_gets_everything_added() {
    let text = diff(&View::from_json(&Value::Null), &local(EXAMPLE)).to_string();
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
    let node = |size: Value| json!({"generation": 2, "file": [{"path": "/run/k", "content": "<redacted>", "size": size, "secret": true}]});
    let d = diff(&View::from_json(&node(json!(4))), &local(toml));
    assert_eq!(d.lines, ["files:", "  ~ /run/k: content 4 → 6 bytes"]);
    let d = diff(&View::from_json(&node(json!(6))), &local(toml));
    assert!(d.lines.is_empty() && d.uncompared_secrets == 1, "{d}");
}

#[test]
fn base64_round_trips() {
    use crate::view::base64_decode;
    assert_eq!(base64_decode("c2VjcmV0").unwrap(), b"secret");
    assert_eq!(base64_decode("YQ==").unwrap(), b"a");
    assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
    assert_eq!(base64_decode("").unwrap(), b"");
    for bad in ["YQ=", "Y===", "Y=Q=", "<redacted>"] {
        assert_eq!(base64_decode(bad), None, "{bad}");
    }
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
