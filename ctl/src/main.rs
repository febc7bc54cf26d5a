//! keelctl: the operator's CLI for Keel nodes: make a signing key, validate, sign and verify node configs.
//! The node API arrives with its issue.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod commands;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use lexopt::{Arg, Parser, ValueExt};

const USAGE: &str = "\
usage: keelctl <command> [options]

commands:
  keygen -f KEY [-C COMMENT]        write a new ed25519 signing key: KEY (OpenSSH private key, mode 0600) and KEY.pub
  sign -f KEY [-n NAMESPACE] FILE   validate FILE (for keel-config) and write FILE.sig, an OpenSSH signature
  verify -s ALLOWED_SIGNERS [--sig SIG] [-n NAMESPACE] [-I PRINCIPAL] FILE
                                    check FILE.sig (or SIG) like `ssh-keygen -Y verify`
  validate FILE                     print every error in a node config, or `ok: generation N`
  version                           print keelctl's version
  help                              print this help

NAMESPACE defaults to keel-config. Keys from ssh-keygen work too: `ssh-keygen -t ed25519 -N ''`.
ALLOWED_SIGNERS lines are `principal [namespaces=\"keel-config\"] ssh-ed25519 AAAA…`, as baked into the image.";

/// What a command needs, as given on the command line.
#[derive(Debug, Default)]
pub struct Opts {
    pub key: Option<PathBuf>,
    pub comment: Option<String>,
    pub namespace: Option<String>,
    pub allowed_signers: Option<PathBuf>,
    pub sig: Option<PathBuf>,
    pub principal: Option<String>,
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

fn parse(command: &str, args: Vec<OsString>) -> Result<Opts, Failure> {
    let usage = |e: lexopt::Error| Failure::Usage(format!("{command}: {e}"));
    let mut p = Parser::from_args(args);
    let mut o = Opts::default();
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Arg::Short('f') => o.key = Some(p.value().map_err(usage)?.into()),
            Arg::Short('C') => o.comment = Some(p.value().map_err(usage)?.string().map_err(usage)?),
            Arg::Short('n') | Arg::Long("namespace") => {
                o.namespace = Some(p.value().map_err(usage)?.string().map_err(usage)?)
            }
            Arg::Short('s') | Arg::Long("allowed-signers") => {
                o.allowed_signers = Some(p.value().map_err(usage)?.into())
            }
            Arg::Long("sig") => o.sig = Some(p.value().map_err(usage)?.into()),
            Arg::Short('I') | Arg::Long("principal") => {
                o.principal = Some(p.value().map_err(usage)?.string().map_err(usage)?)
            }
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
    fn version_and_help_still_work() {
        assert!(run(vec!["version".into()]).is_ok());
        assert!(run(vec!["help".into()]).is_ok());
        assert!(run(vec![]).is_ok());
    }
}
