//! Every validation error, with its exact `file:line:col: path: message`.

use std::net::IpAddr;

use crate::model::{LinkSelector, LogFormat, Restart};
use crate::{parse, LoadError};

const EXAMPLE: &str = include_str!("../../examples/node.toml");

/// The errors for a config made of the two required lines and `body` (which so starts on line 3).
fn errors(body: &str) -> Vec<String> {
    match parse("node.toml", &format!("version = 1\ngeneration = 1\n{body}")) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

fn one_error(body: &str) -> String {
    let all = errors(body);
    assert_eq!(all.len(), 1, "{all:#?}");
    all[0].clone()
}

#[test]
fn the_example_parses_into_the_typed_config() {
    let c = parse("node.toml", EXAMPLE).unwrap();
    assert_eq!(c.generation, 7);
    assert_eq!(c.target.machine_id.as_deref(), Some("0a1b2c3d4e5f60718293a4b5c6d7e8f9"));
    assert_eq!(c.target.mac.unwrap().to_string(), "52:54:00:12:34:56");
    assert_eq!(c.target.expires.unwrap().to_string(), "2099-12-31T00:00:00Z");
    assert_eq!(c.target.hostname.as_deref(), Some("edge-1"));
    assert_eq!(c.sysctl["net.ipv4.ip_forward"], "1");
    let net = &c.network;
    assert_eq!(net.nameservers, ["10.0.2.3".parse::<IpAddr>().unwrap(), "fd00::3".parse().unwrap()]);
    assert_eq!(net.ntp.iter().map(ToString::to_string).collect::<Vec<_>>(), ["10.0.2.2", "pool.ntp.org"]);
    assert_eq!(net.links.len(), 2);
    assert_eq!(net.links[0].selector, LinkSelector::Name("eth0".into()));
    assert!(net.links[0].up && !net.links[0].dhcp4);
    assert_eq!(net.links[0].mtu, Some(1500));
    assert_eq!(net.links[0].addresses[1].to_string(), "fd00::15/64");
    assert_eq!(net.links[1].selector, LinkSelector::Mac("52:54:00:12:34:57".parse().unwrap()));
    assert!(net.links[1].dhcp4);
    assert_eq!(net.routes[0].to.to_string(), "0.0.0.0/0");
    assert_eq!(net.routes[0].link, Some(LinkSelector::Name("eth0".into())));
    assert_eq!(net.routes[0].metric, Some(100));
    assert_eq!(net.routes[1].to.to_string(), "::/0");
    assert_eq!(net.routes[2].link, Some(LinkSelector::Mac("52:54:00:12:34:57".parse().unwrap())));
    assert_eq!(c.volumes[0].mount, "/var/lib/data");
    assert_eq!(c.files[0].content, b"Welcome to edge-1\n");
    assert_eq!((c.files[0].mode, c.files[0].uid), (0o644, 0));
    assert_eq!((c.files[1].content.as_slice(), c.files[1].mode, c.files[1].secret), (&b"secret"[..], 0o600, true));
    assert_eq!(c.services[0].restart, Restart::Always);
    assert_eq!(c.services[0].env["RUST_LOG"], "info");
    assert_eq!(c.services[1].restart, Restart::OnFailure);
    assert_eq!((c.services[1].uid, c.services[1].args.len()), (65534, 0));
    let logs = &c.log_forward;
    assert_eq!((logs[0].tls, logs[0].host.as_str(), logs[0].port), (false, "10.0.2.2", 5514));
    assert_eq!((logs[0].format, logs[0].buffer_lines, logs[0].ca.is_none()), (LogFormat::Rfc5424, 5000, true));
    assert_eq!((logs[1].tls, logs[1].port, logs[1].format), (true, 6514, LogFormat::Json));
    assert!(logs[1].ca.as_deref().is_some_and(|ca| ca.contains("BEGIN CERTIFICATE")));
    assert_eq!(logs[1].buffer_lines, crate::model::DEFAULT_LOG_BUFFER_LINES);
}

#[test]
fn log_collectors_name_the_bad_value() {
    assert_eq!(
        one_error("[[log.forward]]\nurl = \"udp://10.0.2.2:514\"\n"),
        "node.toml:4:7: log.forward[0].url: \"udp://10.0.2.2:514\" has no tcp:// or tls:// scheme; write tcp://host:port or tls://host:port"
    );
    assert_eq!(
        one_error("[[log.forward]]\nurl = \"tcp://10.0.2.2:514\"\nformat = \"gelf\"\n"),
        "node.toml:5:10: log.forward[0].format: \"gelf\" is not a log format; use \"rfc5424\" or \"json\""
    );
    assert_eq!(
        one_error("[[log.forward]]\nurl = \"tcp://10.0.2.2:514\"\nbuffer_lines = 0\n"),
        "node.toml:5:16: log.forward[0].buffer_lines: must be 1..1000000"
    );
    assert_eq!(
        one_error("[[log.forward]]\nurl = \"tcp://h:1\"\nca = \"-----BEGIN CERTIFICATE-----\"\n"),
        "node.toml:5:6: log.forward[0].ca: is only for tls:// collectors"
    );
    let dup = "[[log.forward]]\nurl = \"tcp://h:1\"\n[[log.forward]]\nurl = \"tcp://h:1\"\nformat = \"json\"\n";
    assert_eq!(
        one_error(dup),
        "node.toml:6:7: log.forward[1].url: collector tcp://h:1 is already used by log.forward[0].url"
    );
}

#[test]
fn the_minimal_config_is_two_lines() {
    let c = parse("node.toml", "version = 1\ngeneration = 1\n").unwrap();
    assert_eq!(c.generation, 1);
    assert!(c.network.links.is_empty() && c.files.is_empty() && c.target.machine_id.is_none());
}

#[test]
fn parse_errors_are_one_line_with_place_and_key() {
    let malformed = |text: &str| match parse("node.toml", text) {
        Err(LoadError::Malformed(d)) => d.to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        malformed("version = 1\ngeneration = 1\n[node]\nfoo = 1\n"),
        "node.toml:4:1: node: unknown field `foo`, expected one of `uuid`, `mac`, `expires`, `hostname`"
    );
    assert_eq!(
        malformed("version = 1\ngeneration = \n"),
        "node.toml:2:14: string values must be quoted, expected literal string"
    );
    assert_eq!(malformed("version = 1\n"), "node.toml:1:1: missing field `generation`");
    assert_eq!(malformed("generation = 1\n"), "node.toml:1:1: missing key `version` (version = 1)");
    assert_eq!(
        malformed("version = 2\ngeneration = 1\n[future]\n"),
        "node.toml:1:11: version: unsupported config version 2; this node understands version = 1"
    );
    assert_eq!(
        malformed("version = 1\ngeneration = 1\n[[service]]\nname = \"a\"\nexec = \"/a\"\nrestart = \"sometimes\"\n"),
        "node.toml:6:11: service.restart: unknown variant `sometimes`, expected one of `always`, `on-failure`, `never`"
    );
    assert_eq!(malformed("version = 1\ngeneration = 1\ngeneration = 2\n"), "node.toml:3:1: duplicate key");
    let dup_sysctl =
        "version = 1\ngeneration = 1\n[sysctl]\n\"net.ipv4.ip_forward\" = \"1\"\n\"net.ipv4.ip_forward\" = \"0\"\n";
    assert_eq!(malformed(dup_sysctl), "node.toml:5:1: duplicate key");
    assert_eq!(malformed("version = \"1\"\ngeneration = 1\n"), "node.toml:1:11: version: must be the integer 1");
    let not_utf8 = crate::parse_bytes("node.toml", b"version = 1\n\xff").unwrap_err();
    assert_eq!(not_utf8.to_string(), "node.toml:2:1: not UTF-8 (invalid byte at offset 12)");
}

#[test]
fn top_level_and_node() {
    let e = parse("node.toml", "version = 1\ngeneration = 0\n").unwrap_err();
    assert_eq!(e.to_string(), "node.toml:2:14: generation: must be at least 1");
    assert_eq!(
        errors("[node]\nuuid = \"0a1b\"\nmac = \"52:54:00\"\nexpires = 2026-12-31T00:00:00\nhostname = \"-edge\"\n"),
        [
            "node.toml:4:8: node.uuid: \"0a1b\" is not a UUID (0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9) or 32 hex digits",
            "node.toml:5:7: node.mac: \"52:54:00\" is not a MAC address like 52:54:00:12:34:56",
            "node.toml:6:11: node.expires: 2026-12-31T00:00:00 names no single instant; give a date, a time and an offset, e.g. 2026-12-31T00:00:00Z",
            "node.toml:7:12: node.hostname: \"-edge\" is not an RFC 1123 host name (labels of letters, digits and inner '-', 1..63 long)",
        ]
    );
    assert_eq!(
        one_error(&format!("[node]\nhostname = \"{}\"\n", "a".repeat(65))),
        format!("node.toml:4:12: node.hostname: \"{}\" is longer than 64 characters", "a".repeat(65))
    );
}

#[test]
fn sysctl_keys_and_values() {
    assert_eq!(
        errors("[sysctl]\n\"net..ipv4\" = \"1\"\n\".net\" = \"1\"\n\"net/ipv4\" = \"1\"\n\"Net.x\" = \"1\"\n\"kernel.x\" = \"\"\n"),
        [
            "node.toml:4:1: sysctl.\"net..ipv4\": is not a sysctl key: dot-separated parts of [a-z0-9_-] and, after the first, '/' for a dot inside a name, e.g. \"net.ipv4.ip_forward\", \"net.ipv4.conf.eth0/100.rp_filter\"",
            "node.toml:5:1: sysctl.\".net\": is not a sysctl key: dot-separated parts of [a-z0-9_-] and, after the first, '/' for a dot inside a name, e.g. \"net.ipv4.ip_forward\", \"net.ipv4.conf.eth0/100.rp_filter\"",
            "node.toml:6:1: sysctl.\"net/ipv4\": is not a sysctl key: dot-separated parts of [a-z0-9_-] and, after the first, '/' for a dot inside a name, e.g. \"net.ipv4.ip_forward\", \"net.ipv4.conf.eth0/100.rp_filter\"",
            "node.toml:7:1: sysctl.\"Net.x\": is not a sysctl key: dot-separated parts of [a-z0-9_-] and, after the first, '/' for a dot inside a name, e.g. \"net.ipv4.ip_forward\", \"net.ipv4.conf.eth0/100.rp_filter\"",
            "node.toml:8:14: sysctl.\"kernel.x\": value must be non-empty text on one line",
        ]
    );
    // A '/' stands for a dot inside a name (a VLAN interface), as sysctl(8) writes it; never at a part's end.
    let ok = "[sysctl]\n\"net.ipv4.conf.eth0/100.rp_filter\" = \"2\"\n\"net.ipv6.conf.bond0/7.mtu\" = \"1500\"\n";
    assert_eq!(errors(ok), Vec::<String>::new());
    for bad in ["net.ipv4.conf./eth0.rp_filter", "net.ipv4.conf.eth0/.rp_filter", "net.ipv4.conf.a//b.x"] {
        assert_eq!(errors(&format!("[sysctl]\n\"{bad}\" = \"1\"\n")).len(), 1, "{bad}");
    }
}

#[test]
fn links() {
    let body = "[[network.link]]\nname = \"eth0\"\nmac = \"52:54:00:12:34:56\"\n\
                [[network.link]]\ndhcp4 = true\n\
                [[network.link]]\nname = \"eth1\"\nmtu = 9000000\n\
                [[network.link]]\nname = \"eth1\"\n\
                [[network.link]]\nmac = \"52:54:00:12:34:56\"\n[[network.link]]\nmac = \"52:54:00:12:34:56\"\n\
                [[network.link]]\nname = \"a/b\"\n\
                [[network.link]]\nname = \"eth6\"\nmtu = 1000\naddresses = [\"fd00::1/64\"]\n";
    assert_eq!(
        errors(body),
        [
            "node.toml:3:1: network.link[0]: give exactly one of `name` or `mac`, not both",
            "node.toml:6:1: network.link[1]: needs `name` or `mac` to select its interface",
            "node.toml:10:7: network.link[2].mtu: must be 68..65535",
            "node.toml:12:8: network.link[3].name: link \"eth1\" is already used by network.link[2].name",
            "node.toml:16:7: network.link[5].mac: link 52:54:00:12:34:56 is already used by network.link[4].mac",
            "node.toml:18:8: network.link[6].name: \"a/b\" is not an interface name (1..15 bytes, no '/', ':' or spaces)",
            "node.toml:21:7: network.link[7].mtu: must be at least 1280 on a link with IPv6 addresses",
        ]
    );
}

#[test]
fn addresses() {
    let body = "[[network.link]]\nname = \"eth0\"\naddresses = [\"10.0.2.15/24\", \"10.0.2.0/24\", \"10.0.2.255/24\", \
                \"10.0.2.15\", \"10.0.2.16/33\", \"224.0.0.1/4\", \"10.0.3.0/31\", \"10.0.3.2/32\"]\n\
                [[network.link]]\nname = \"eth1\"\naddresses = [\"fd00::15/64\", \"10.0.2.15/16\"]\n";
    assert_eq!(
        errors(body),
        [
            "node.toml:5:30: network.link[0].addresses[1]: 10.0.2.0 is the network address of 10.0.2.0/24; use a host address",
            "node.toml:5:45: network.link[0].addresses[2]: 10.0.2.255 is the broadcast address of 10.0.2.0/24; use a host address",
            "node.toml:5:62: network.link[0].addresses[3]: \"10.0.2.15\" has no prefix length (like 10.0.2.15/24)",
            "node.toml:5:75: network.link[0].addresses[4]: prefix length \"33\" must be 0..32",
            "node.toml:5:91: network.link[0].addresses[5]: 224.0.0.1 is not a unicast address",
            "node.toml:8:29: network.link[1].addresses[1]: address 10.0.2.15 is already used by network.link[0].addresses[0]",
        ]
    );
}

#[test]
fn routes() {
    let body = "[[network.link]]\nname = \"eth0\"\naddresses = [\"10.0.2.15/24\", \"fd00::15/64\"]\n\
                [[network.link]]\nname = \"eth1\"\ndhcp4 = true\n\
                [[network.route]]\nto = \"10.1.0.1/16\"\nvia = \"10.0.2.2\"\n\
                [[network.route]]\nto = \"default\"\nvia = \"10.0.3.1\"\nlink = \"eth0\"\n\
                [[network.route]]\nto = \"default\"\nvia = \"10.0.3.1\"\nlink = \"eth0\"\nonlink = true\n\
                [[network.route]]\nto = \"default\"\nvia = \"10.9.9.9\"\nlink = \"eth1\"\n\
                [[network.route]]\nto = \"default\"\nlink = \"eth9\"\n\
                [[network.route]]\nto = \"default6\"\nvia = \"10.0.2.2\"\n\
                [[network.route]]\nto = \"default6\"\nvia = \"fe80::1\"\nlink = \"eth0\"\nmetric = -1\n\
                [[network.route]]\nto = \"10.0.0.0/8\"\nvia = \"fd00::9\"\n\
                [[network.route]]\nto = \"everywhere\"\nvia = \"fd01::1\"\n";
    assert_eq!(
        errors(body),
        [
            "node.toml:10:6: network.route[0].to: \"10.1.0.1/16\" has host bits set; the network is 10.1.0.0/16",
            "node.toml:14:7: network.route[1].via: gateway 10.0.3.1 is in no subnet of an address on link eth0; add such an address, or set onlink = true",
            "node.toml:27:8: network.route[4].link: \"eth9\" is neither the name nor the mac of any [[network.link]]",
            "node.toml:30:7: network.route[5].via: gateway 10.0.2.2 is not of the same IP family as the destination ::/0",
            "node.toml:35:10: network.route[6].metric: must be 0..4294967295",
            "node.toml:38:7: network.route[7].via: gateway fd00::9 is not of the same IP family as the destination 10.0.0.0/8",
            "node.toml:40:6: network.route[8].to: \"everywhere\" is not \"default\", \"default6\" or a network like \"10.0.0.0/8\"",
            "node.toml:41:7: network.route[8].via: gateway fd01::1 is in no subnet of an address on any link; add such an address, or set onlink = true",
        ]
    );
    let unreachable = one_error("[[network.route]]\nto = \"default6\"\nvia = \"fd01::1\"\n");
    let msg = "gateway fd01::1 is in no subnet of an address on any link; add such an address, or set onlink = true";
    assert_eq!(unreachable, format!("node.toml:5:7: network.route[0].via: {msg}"));
}

#[test]
fn servers_and_domains() {
    assert_eq!(
        errors("[network]\nnameservers = [\"10.0.2.3\", \"dns.example\"]\nsearch = [\"ex ample.org\"]\nntp = [\"ntp_1\"]\n"),
        [
            "node.toml:4:28: network.nameservers[1]: \"dns.example\" is not an IP address",
            "node.toml:5:11: network.search[0]: \"ex ample.org\" is not an RFC 1123 host name (labels of letters, digits and inner '-', 1..63 long)",
            "node.toml:6:8: network.ntp[0]: \"ntp_1\" is neither an IP address nor a host name",
        ]
    );
}

#[test]
fn files() {
    let body = "[[file]]\npath = \"/etc/motd\"\ncontent = \"x\"\n\
                [[file]]\npath = \"/run/a/../b\"\ncontent = \"x\"\n\
                [[file]]\npath = \"/run/a/\"\ncontent = \"x\"\n\
                [[file]]\npath = \"run/a\"\ncontent = \"x\"\n\
                [[file]]\npath = \"/run/a\"\ncontent = \"x\"\ncontent_base64 = \"eA==\"\n\
                [[file]]\npath = \"/run/b\"\n\
                [[file]]\npath = \"/var/c\"\ncontent_base64 = \"not base64!\"\nmode = \"0x644\"\nuid = -1\ngid = 4294967295\n\
                [[file]]\npath = \"/var/d\"\ncontent = \"x\"\n[[file]]\npath = \"/var/d\"\ncontent = \"y\"\n";
    assert_eq!(
        errors(body),
        [
            "node.toml:4:8: file[0].path: must be under /run/ or /var/ (the root is read-only)",
            "node.toml:7:8: file[1].path: must not contain empty, '.' or '..' components",
            "node.toml:10:8: file[2].path: must not end with '/'",
            "node.toml:13:8: file[3].path: must be an absolute path",
            "node.toml:15:1: file[4]: give exactly one of `content` or `content_base64`, not both",
            "node.toml:19:1: file[5]: needs `content` or `content_base64`",
            "node.toml:23:18: file[6].content_base64: is not standard base64 (A-Z a-z 0-9 + /, '=' padding)",
            "node.toml:24:8: file[6].mode: \"0x644\" is not an octal mode like \"0644\"",
            "node.toml:25:7: file[6].uid: must be 0..4294967294",
            "node.toml:26:7: file[6].gid: must be 0..4294967294",
            "node.toml:31:8: file[8].path: path \"/var/d\" is already used by file[7].path",
        ]
    );
}

#[test]
fn services() {
    let body = "[[service]]\nname = \"web\"\nexec = \"bin/web\"\nenv = { \"1X\" = \"a\" }\n\
                capabilities = [\"CAP_NET_BIND_SERVICE\", \"NET_ADMIN\"]\nafter = [\"web\", \"dbx\"]\n\
                [[service]]\nname = \"web\"\nexec = \"/bin/web\"\n\
                [[service]]\nname = \"Web_2\"\nexec = \"/bin/web\"\n";
    assert_eq!(
        errors(body),
        [
            "node.toml:5:8: service[0].exec: must be an absolute path",
            "node.toml:6:9: service[0].env.1X: is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
            "node.toml:7:41: service[0].capabilities[1]: \"NET_ADMIN\" is not a Linux capability (CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, …)",
            "node.toml:8:10: service[0].after[0]: a service cannot start after itself",
            "node.toml:8:17: service[0].after[1]: \"dbx\" names no [[service]]",
            "node.toml:10:8: service[1].name: name \"web\" is already used by service[0].name",
            "node.toml:13:8: service[2].name: \"Web_2\" is not a name: 1..64 of [a-z0-9-]",
        ]
    );
    let cycle = "[[service]]\nname = \"a\"\nexec = \"/a\"\nafter = [\"b\"]\n[[service]]\nname = \"b\"\nexec = \"/b\"\nafter = [\"a\"]\n";
    assert_eq!(
        one_error(cycle),
        "node.toml:4:8: service[0].after: service \"a\" is part of an `after` cycle; no start order exists"
    );
}

#[test]
fn volumes() {
    let body =
        "[[storage.volume]]\nname = \"data\"\ndevice = \" \"\nmount = \"/\"\nlabel = \"a-label-longer-than-16\"\n\
                [[storage.volume]]\nname = \"data\"\ndevice = \"/dev/vdc\"\nmount = \"var/x\"\n\
                [[storage.volume]]\nname = \"logs\"\ndevice = \"/dev/vdd\"\nmount = \"/var/x\"\n\
                [[storage.volume]]\nname = \"logs2\"\ndevice = \"/dev/vde\"\nmount = \"/var/x\"\n";
    assert_eq!(
        errors(body),
        [
            "node.toml:5:10: storage.volume[0].device: must name a block device",
            "node.toml:6:9: storage.volume[0].mount: must not be / (the image)",
            "node.toml:7:9: storage.volume[0].label: must be 1..16 bytes (the ext4 limit)",
            "node.toml:9:8: storage.volume[1].name: name \"data\" is already used by storage.volume[0].name",
            "node.toml:11:9: storage.volume[1].mount: must be an absolute path",
            "node.toml:19:9: storage.volume[3].mount: mount path \"/var/x\" is already used by storage.volume[2].mount",
        ]
    );
}

#[test]
fn all_errors_are_collected_in_file_order() {
    let text = "version = 1\ngeneration = 0\n[[file]]\npath = \"/etc/x\"\ncontent = \"\"\n[node]\nhostname = \"a_b\"\n";
    let e = parse("node.toml", text).unwrap_err();
    let lines: Vec<String> = e.diagnostics().iter().map(|d| format!("{}:{}", d.line, d.path)).collect();
    assert_eq!(lines, ["2:generation", "4:file[0].path", "7:node.hostname"]);
    assert_eq!(e.to_string().lines().count(), 3);
}

#[test]
fn volume_devices_labels_and_options() {
    let body = "[[storage.volume]]\nname = \"a\"\ndevice = \"sda\"\nmount = \"/var/a\"\nlabel = \"my data\"\n\
                [[storage.volume]]\nname = \"b\"\ndevice = \"blank:>=4G\"\nmount = \"/var/b\"\noptions = [\"noatime\", \"bind\", \"a,b\"]\n\
                [[storage.volume]]\nname = \"c\"\ndevice = \"partlabel:c\"\nmount = \"/var/c\"\noptions = [\"ro\", \"commit=30\"]\n";
    assert_eq!(
        errors(body),
        [
            "node.toml:5:10: storage.volume[0].device: \"sda\" is not a device selector; expected /dev/NAME, serial:…, \
             wwn:…, model:…, path:…, partlabel:…, label:…, blank or blank:>=SIZE",
            "node.toml:7:9: storage.volume[0].label: must not contain spaces or control characters",
            "node.toml:8:1: storage.volume[1].options: \"bind\" is not a mount option a volume may take",
            "node.toml:8:1: storage.volume[1].options: \"a,b\" must be one word without commas",
        ]
    );
}

#[test]
fn upgrade_is_a_url_and_a_digest() {
    let digest = "AB".repeat(32);
    let c = parse(
        "node.toml",
        &format!("version = 1\ngeneration = 1\n[upgrade]\nurl = \"http://h/slot.img\"\nsha256 = \"{digest}\"\n"),
    )
    .unwrap();
    let u = c.upgrade.unwrap();
    assert_eq!((u.url.as_str(), u.sha256), ("http://h/slot.img", digest.to_ascii_lowercase()));
    assert!(parse("node.toml", "version = 1\ngeneration = 1\n").unwrap().upgrade.is_none());
    assert_eq!(
        errors("[upgrade]\nurl = \"ftp://h/x\"\nsha256 = \"00\"\n"),
        [
            "node.toml:4:7: upgrade.url: \"ftp://h/x\" is not an http:// or https:// URL with a host",
            "node.toml:5:10: upgrade.sha256: must be 64 hex digits"
        ]
    );
    assert!(one_error("[upgrade]\nurl = \"http://h/x\"\n").contains("sha256"));
}
