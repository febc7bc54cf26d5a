//! keelctl: the operator's CLI for Keel nodes: make a signing key, validate, sign and verify node configs, and
//! talk to nodes over their API (HTTPS, certificate pinned on first use): apply, plan, status, logs, reboot.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod agent;
mod client;
mod cmddoc;
mod commands;
mod completions;
mod diff;
mod http;
mod known;
mod remote;
mod signer;
mod status;
mod tls;
mod upgrade;
mod view;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use lexopt::{Arg, Parser, ValueExt};

const USAGE: &str = "\
usage: keelctl <command> [options]

commands:
  keygen -f KEY [-C COMMENT]        write a new ed25519 signing key: KEY (OpenSSH private key, mode 0600) and KEY.pub,
                                    and print its allowed_signers line with every role (see ROLES below)
  sign [-f KEY] [-n NAMESPACE] FILE validate FILE (for keel-config) and write FILE.sig, an OpenSSH signature
  verify -s ALLOWED_SIGNERS [--sig SIG] [-n NAMESPACE] [-I PRINCIPAL] FILE
                                    check FILE.sig (or SIG) like `ssh-keygen -Y verify`
  validate FILE                     print every error in a node config, or `ok: generation N`
  apply FILE [--key KEY | --sig SIG] [--dry-run]
                                    validate, sign with KEY (or use FILE.sig) and apply FILE on the node;
                                    --dry-run shows what would change instead
  plan FILE                         what applying FILE would change on the node (same as apply --dry-run)
  status [-o json]                  the node's status: identity, config, network, time, controllers
  logs [-f]                         the node's log buffer; -f streams new lines until interrupted
  upgrade IMAGE [--key KEY | --sig SIG]
                                    send a signed slot image (make upgrade-image; namespace keel-image, IMAGE.sig
                                    by default): the node writes it to its other boot slot and reboots into it
  reboot|poweroff [--key KEY] [--machine-id ID]
                                    send a signed command (the machine id is asked from the node if not given);
                                    keelctl writes the command (nonce, expiry) at that moment, so there is no
                                    --sig: KEY may be a passphrase-protected key or an ssh-agent key (below)
  metrics-token [--key KEY] [--machine-id ID] [--days N]
                                    print a metrics-only bearer token (a keel-metrics signature; default: any
                                    node, 365 days) for Prometheus: docs/api.md, \"Prometheus\"
  completions bash|zsh|fish         print a shell completion script
  version                           print keelctl's version
  help                              print this help

node options (apply, plan, status, logs, upgrade, reboot, poweroff):
  --node HOST[:PORT]                the node (default port 7443); or set KEEL_NODE
  --key KEY                         who you are: every request proves it holds a key of the node's
                                    allowed_signers. KEY is an OpenSSH key file (a passphrase-protected one is
                                    signed with by ssh-keygen, which asks) or KEY.pub of a key in ssh-agent;
                                    default $KEEL_KEY, else each key of ssh-agent (SSH_AUTH_SOCK) in turn
  --fingerprint sha256:HEX          require this certificate and pin it (as printed on the node's console)
  --known-nodes FILE                pinned certificates (default $KEEL_KNOWN_NODES, else ~/.config/keel/known_nodes)

The first connection to a node pins its certificate (trust on first use); a changed certificate is refused.
NAMESPACE defaults to keel-config. Keys from ssh-keygen work too: `ssh-keygen -t ed25519 -N ''`.
ALLOWED_SIGNERS lines are `principal namespaces=ROLES ssh-ed25519 AAAA…`, as baked into the image.

ROLES: a key may do what its line's namespaces= lists. Every role (what keygen prints):
  ops@example.org namespaces=\"keel-config,keel-command,keel-image,keel-read,keel-metrics\" ssh-ed25519 AAAA…
One role per key limits what a stolen key can do: keel-config (push configs), keel-command (reboot, poweroff),
keel-image (upgrades), keel-read (status, logs, config), keel-metrics (/metrics only, for a scraper). Each write
role also reads. A key signing configs is in effect root on the node.";

/// What a command needs, as given on the command line.
#[derive(Debug, Default)]
pub struct Opts {
    pub key: Option<PathBuf>,
    pub comment: Option<String>,
    pub namespace: Option<String>,
    pub allowed_signers: Option<PathBuf>,
    pub sig: Option<PathBuf>,
    pub principal: Option<String>,
    pub node: Option<String>,
    pub fingerprint: Option<String>,
    pub known_nodes: Option<PathBuf>,
    pub dry_run: bool,
    pub output: Option<String>,
    pub follow: bool,
    pub machine_id: Option<String>,
    pub days: Option<String>,
    pub files: Vec<PathBuf>,
}

/// How a command failed: a usage mistake (exit 2) or a failed check or operation (exit 1). One line each.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}; run 'keelctl help'")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

/// The value of the option just read, as UTF-8 text.
fn value(p: &mut Parser, command: &str) -> Result<String, Failure> {
    let usage = |e: lexopt::Error| Failure::Usage(format!("{command}: {e}"));
    p.value().map_err(usage)?.string().map_err(usage)
}

fn parse(command: &str, args: Vec<OsString>) -> Result<Opts, Failure> {
    let usage = |e: lexopt::Error| Failure::Usage(format!("{command}: {e}"));
    let mut p = Parser::from_args(args);
    let mut o = Opts::default();
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            // For logs, -f is tail's --follow; everywhere else it is ssh-keygen's key file.
            Arg::Short('f') | Arg::Long("follow") if command == "logs" => o.follow = true,
            Arg::Short('f') | Arg::Long("key") => o.key = Some(value(&mut p, command)?.into()),
            Arg::Short('C') => o.comment = Some(value(&mut p, command)?),
            Arg::Short('n') | Arg::Long("namespace") => o.namespace = Some(value(&mut p, command)?),
            Arg::Short('s') | Arg::Long("allowed-signers") => o.allowed_signers = Some(value(&mut p, command)?.into()),
            Arg::Long("sig") => o.sig = Some(value(&mut p, command)?.into()),
            Arg::Short('I') | Arg::Long("principal") => o.principal = Some(value(&mut p, command)?),
            Arg::Long("node") => o.node = Some(value(&mut p, command)?),
            Arg::Long("fingerprint") => o.fingerprint = Some(value(&mut p, command)?),
            Arg::Long("known-nodes") => o.known_nodes = Some(value(&mut p, command)?.into()),
            Arg::Long("dry-run") => o.dry_run = true,
            Arg::Short('o') | Arg::Long("output") => o.output = Some(value(&mut p, command)?),
            Arg::Long("machine-id") => o.machine_id = Some(value(&mut p, command)?),
            Arg::Long("days") => o.days = Some(value(&mut p, command)?),
            Arg::Value(v) => o.files.push(v.into()),
            other => return Err(usage(other.unexpected())),
        }
    }
    Ok(o)
}

fn run(args: Vec<OsString>) -> Result<(), Failure> {
    let mut args = args.into_iter();
    let command = args.next().map(|c| c.to_string_lossy().into_owned());
    let Some(command) = command else {
        println!("{USAGE}");
        return Ok(());
    };
    let rest: Vec<OsString> = args.collect();
    match command.as_str() {
        "version" | "--version" | "-V" => {
            println!("keelctl {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        "keygen" => commands::keygen(parse(&command, rest)?),
        "sign" => commands::sign(parse(&command, rest)?),
        "verify" => commands::verify(parse(&command, rest)?),
        "validate" => commands::validate(parse(&command, rest)?),
        "apply" => remote::apply(parse(&command, rest)?, false),
        "plan" => remote::apply(parse(&command, rest)?, true),
        "status" => remote::status(parse(&command, rest)?),
        "logs" => remote::logs(parse(&command, rest)?),
        "upgrade" => upgrade::upgrade(parse(&command, rest)?),
        "reboot" | "poweroff" => remote::power(parse(&command, rest)?, &command),
        "metrics-token" => commands::metrics_token(parse(&command, rest)?),
        "completions" => {
            let o = parse(&command, rest)?;
            let shell = match o.files.as_slice() {
                [one] => one.to_string_lossy().into_owned(),
                _ => return Err(Failure::Usage("completions: which shell? bash, zsh or fish".into())),
            };
            let script = completions::script(&shell)
                .ok_or_else(|| Failure::Usage(format!("completions: {shell:?}: expected bash, zsh or fish")))?;
            print!("{script}");
            Ok(())
        }
        other => Err(Failure::Usage(format!("unknown command {other:?}"))),
    }
}

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keelctl: {e}");
            ExitCode::from(match e {
                Failure::Usage(_) => 2,
                Failure::Failed(_) => 1,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Result<Opts, Failure> {
        parse("verify", args.iter().map(OsString::from).collect())
    }

    #[test]
    fn options_in_any_order_and_both_spellings() {
        let o = opts(&["node.toml", "-s", "allowed", "--sig=x.sig", "-nkeel-command", "-I", "ops@x"]).unwrap();
        assert_eq!(o.files, [PathBuf::from("node.toml")]);
        assert_eq!(o.allowed_signers, Some("allowed".into()));
        assert_eq!(o.sig, Some("x.sig".into()));
        assert_eq!(o.namespace.as_deref(), Some("keel-command"));
        assert_eq!(o.principal.as_deref(), Some("ops@x"));
    }

    #[test]
    fn usage_errors_are_one_line() {
        let e = opts(&["-x"]).unwrap_err().to_string();
        assert_eq!(e, "verify: invalid option '-x'; run 'keelctl help'");
        let e = opts(&["-s"]).unwrap_err().to_string();
        assert_eq!(e, "verify: missing argument for option '-s'; run 'keelctl help'");
        let e = run(vec!["frobnicate".into()]).unwrap_err().to_string();
        assert_eq!(e, "unknown command \"frobnicate\"; run 'keelctl help'");
    }

    #[test]
    fn f_is_follow_for_logs_and_a_key_elsewhere() {
        let logs = parse("logs", vec!["-f".into(), "--node".into(), "n:1".into()]).unwrap();
        assert!(logs.follow && logs.key.is_none() && logs.node.as_deref() == Some("n:1"));
        let sign = parse("sign", vec!["-f".into(), "k".into()]).unwrap();
        assert!(!sign.follow && sign.key == Some("k".into()));
    }

    #[test]
    fn the_completion_table_matches_the_parser() {
        for c in completions::COMMANDS {
            for flag in c.flags {
                let spellings =
                    flag.short.map(|s| format!("-{s}")).into_iter().chain(flag.long.map(|l| format!("--{l}")));
                for spelling in spellings {
                    let mut args = vec![OsString::from(&spelling)];
                    if !matches!(flag.value, completions::Value::None) {
                        args.push("x".into());
                    }
                    assert!(parse(c.name, args).is_ok(), "{} {spelling}", c.name);
                }
            }
        }
    }

    #[test]
    fn version_and_help_still_work() {
        assert!(run(vec!["version".into()]).is_ok());
        assert!(run(vec!["help".into()]).is_ok());
        assert!(run(vec![]).is_ok());
    }
}
