//! `[[service]]`: the typed result, each validation error with its place, and the value parsers.

use super::services::{cpu_max, limit, parse_after, signal, size};
use crate::model::{After, CpuMax, Program, Rlimit};
use crate::raw;
use crate::{parse, LoadError};

const EXAMPLE: &str = include_str!("../../examples/node.toml");

fn errors(body: &str) -> Vec<String> {
    match parse("node.toml", &format!("version = 1\ngeneration = 1\n{body}")) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_example_services_are_typed() {
    let c = parse("node.toml", EXAMPLE).unwrap();
    let app = &c.services[0];
    assert_eq!(app.program, Program::Path("/usr/bin/app".into()));
    assert_eq!((app.workdir.as_str(), app.uid, app.gid), ("/var/lib/data", 1000, 1000));
    assert_eq!(app.capabilities, ["CAP_NET_BIND_SERVICE"]);
    assert_eq!(app.rlimits[&Rlimit::Nofile], Some(4096));
    assert_eq!(app.rlimits[&Rlimit::Core], Some(0));
    assert_eq!(app.rlimits[&Rlimit::Nproc], None);
    assert_eq!(app.cgroup.memory_max, Some(512 << 20));
    assert_eq!(app.cgroup.cpu_max, Some(CpuMax { quota_us: 150_000, period_us: 100_000 }));
    assert_eq!(app.cgroup.pids_max, Some(256));
    assert_eq!((app.stop_signal.as_str(), app.stop_timeout_s), ("SIGINT", 20));
    assert_eq!(app.after, [After::Network, After::Volume("data".into()), After::Service("db".into())]);
    assert_eq!(app.log_level, raw::LogLevel::Warn);
    let db = &c.services[1];
    assert_eq!((db.workdir.as_str(), db.stop_signal.as_str(), db.stop_timeout_s), ("/", "SIGTERM", 10));
    assert_eq!((db.log_level, db.cgroup, db.rlimits.len()), (raw::LogLevel::Info, Default::default(), 0));
    let agent = &c.services[2];
    let digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    assert_eq!(agent.program, Program::Artifact { url: "http://10.0.2.2:8000/agent".into(), sha256: digest.into() });
    assert_eq!(agent.cgroup.cpu_max, Some(CpuMax { quota_us: 20_000, period_us: 100_000 }));
}

#[test]
fn service_errors_name_their_place() {
    let body = "[[service]]\nname = \"a\"\n\
                [[service]]\nname = \"b\"\nexec = \"/b\"\nartifact = { url = \"http://h/b\", sha256 = \"00\" }\n\
                [[service]]\nname = \"c\"\nartifact = { url = \"ftp://h/c\", sha256 = \"zz\" }\nworkdir = \"tmp\"\n\
                [[service]]\nname = \"d\"\nexec = \"/d\"\nrlimits = { files = 1, core = -1, nofile = \"lots\" }\n\
                memory_max = \"12Q\"\ncpu_max = 0.001\npids_max = 0\nstop_signal = \"SIGSTOP\"\nstop_timeout = 0\n\
                after = [\"volume:data\", \"disk:x\", \"network\", \"network\"]\n\
                capabilities = [\"CAP_KILL\", \"CAP_KILL\"]\nargs = [\"a\\u0000b\"]\n";
    assert_eq!(
        errors(body),
        [
            "node.toml:3:1: service[0]: needs `exec` (a path in the image), `artifact` (a URL and its sha256) or `image` (an OCI image by digest)",
            "node.toml:5:1: service[1]: give exactly one of `exec` or `artifact`, not both",
            "node.toml:11:20: service[2].artifact.url: \"ftp://h/c\" is not an http:// or https:// URL with a host",
            "node.toml:11:42: service[2].artifact.sha256: must be 64 hex digits",
            "node.toml:12:11: service[2].workdir: must be an absolute path",
            "node.toml:16:13: service[3].rlimits.files: is not a resource limit (one of as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)",
            "node.toml:16:31: service[3].rlimits.core: must be at least 0",
            "node.toml:16:44: service[3].rlimits.nofile: \"lots\" is not a number or \"unlimited\"",
            "node.toml:17:14: service[3].memory_max: \"12Q\" is not a size like \"512M\" (K, M, G, T are powers of 1024)",
            "node.toml:18:11: service[3].cpu_max: 0.001: the quota must be at least 1000 microseconds (0.01 of a CPU)",
            "node.toml:19:12: service[3].pids_max: must be 1..4194304",
            "node.toml:20:15: service[3].stop_signal: \"SIGSTOP\" is not a stop signal (one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGKILL, SIGPWR, SIGWINCH, SIGALRM)",
            "node.toml:21:16: service[3].stop_timeout: must be 1..3600",
            "node.toml:22:10: service[3].after[0]: \"data\" names no [[storage.volume]]",
            "node.toml:22:25: service[3].after[1]: \"disk:x\" is not \"network\", \"volume:<name>\" or \"service:<name>\"",
            "node.toml:22:46: service[3].after[3]: network is listed twice",
            "node.toml:23:29: service[3].capabilities[1]: capability CAP_KILL is already used by service[3].capabilities[0]",
            "node.toml:24:9: service[3].args[0]: must not contain NUL",
        ]
    );
}

#[test]
fn service_shape_errors_come_from_toml_with_their_place() {
    let malformed = |body: &str| match parse("node.toml", &format!("version = 1\ngeneration = 1\n{body}")) {
        Err(LoadError::Malformed(d)) => d.to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        malformed("[[service]]\nname = \"a\"\nexec = \"/a\"\nmemory_max = true\n"),
        "node.toml:6:14: service.memory_max: a number of bytes or a size like \"512M\""
    );
    assert_eq!(
        malformed("[[service]]\nname = \"a\"\nexec = \"/a\"\nlog_level = \"loud\"\n"),
        "node.toml:6:13: service.log_level: unknown variant `loud`, expected one of `off`, `error`, `warn`, `info`, `debug`, `trace`"
    );
}

#[test]
fn services_may_start_after_volumes_and_services_in_any_spelling() {
    let body = "[[storage.volume]]\nname = \"data\"\ndevice = \"/dev/vdb\"\nmount = \"/var/lib/data\"\n\
                [[service]]\nname = \"a\"\nexec = \"/a\"\nafter = [\"volume:data\", \"service:b\"]\n\
                [[service]]\nname = \"b\"\nexec = \"/b\"\n";
    assert_eq!(errors(body), Vec::<String>::new());
    let cycle = "[[service]]\nname = \"a\"\nexec = \"/a\"\nafter = [\"service:b\"]\n\
                 [[service]]\nname = \"b\"\nexec = \"/b\"\nafter = [\"a\", \"network\"]\n";
    assert_eq!(
        errors(cycle),
        ["node.toml:4:8: service[0].after: service \"a\" is part of an `after` cycle; no start order exists"]
    );
}

#[test]
fn sizes() {
    let text = |t: &str| size(&raw::Size::Text(t.into()));
    assert_eq!(text("512M"), Ok(Some(512 << 20)));
    assert_eq!(text("2G"), Ok(Some(2 << 30)));
    assert_eq!(text("64k"), Ok(Some(64 << 10)));
    assert_eq!(text("1GiB"), Ok(Some(1 << 30)));
    assert_eq!(text("10MB"), Ok(Some(10 << 20)));
    assert_eq!(text("65536"), Ok(Some(65536)));
    assert_eq!(text("max"), Ok(None));
    assert_eq!(size(&raw::Size::Bytes(1 << 20)), Ok(Some(1 << 20)));
    assert!(size(&raw::Size::Bytes(100)).unwrap_err().contains("at least 4096"));
    assert!(size(&raw::Size::Bytes(-1)).is_err());
    for bad in ["", "M", "1.5G", "12Q", "99999999999T", "-1M"] {
        assert!(text(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn cpu_limits() {
    let text = |t: &str| cpu_max(&raw::CpuMax::Text(t.into()));
    let frac = |f: f64| cpu_max(&raw::CpuMax::Fraction(f));
    assert_eq!(frac(0.5), Ok(Some(CpuMax { quota_us: 50_000, period_us: 100_000 })));
    assert_eq!(frac(2.0), Ok(Some(CpuMax { quota_us: 200_000, period_us: 100_000 })));
    assert_eq!(text("50000 100000"), Ok(Some(CpuMax { quota_us: 50_000, period_us: 100_000 })));
    assert_eq!(text("  20000   50000 "), Ok(Some(CpuMax { quota_us: 20_000, period_us: 50_000 })));
    assert_eq!(text("max"), Ok(None));
    assert_eq!(text("max 200000"), Ok(None));
    for bad in ["", "50000", "a b", "1 2 3", "50000 100", "50000 2000000", "500 100000"] {
        assert!(text(bad).is_err(), "{bad:?}");
    }
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.001] {
        assert!(frac(bad).is_err(), "{bad}");
    }
}

#[test]
fn rlimits_signals_and_after() {
    assert_eq!(limit(&raw::Limit::Number(0)), Ok(Some(0)));
    assert_eq!(limit(&raw::Limit::Text("unlimited".into())), Ok(None));
    assert_eq!(limit(&raw::Limit::Text("infinity".into())), Ok(None));
    assert!(limit(&raw::Limit::Number(-5)).is_err());
    assert_eq!(Rlimit::from_name("nofile"), Some(Rlimit::Nofile));
    assert!(Rlimit::ALL.iter().all(|r| Rlimit::from_name(r.name()) == Some(*r)));
    assert_eq!(signal("TERM"), Ok("SIGTERM".to_string()));
    assert_eq!(signal("SIGKILL"), Ok("SIGKILL".to_string()));
    assert!(signal("SIGSTOP").is_err() && signal("15").is_err());
    assert_eq!(parse_after("network"), Ok(After::Network));
    assert_eq!(parse_after("volume:data"), Ok(After::Volume("data".into())));
    assert_eq!(parse_after("service:db"), Ok(After::Service("db".into())));
    assert_eq!(parse_after("db"), Ok(After::Service("db".into())));
    assert!(parse_after("volume:").is_err() && parse_after("").is_err() && parse_after("x:y").is_err());
    assert_eq!(After::Volume("data".into()).to_string(), "volume:data");
}
