//! keelctl: the operator's CLI for Keel nodes. It grows with the node: config signing and validation, then the API.

use std::process::ExitCode;

const USAGE: &str = "\
usage: keelctl <command>

commands:
  version     print keelctl's version
  help        print this help

Config signing, validation and the node API arrive with their issues (see README).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("version") | Some("--version") | Some("-V") => {
            println!("keelctl {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("help") | Some("--help") | Some("-h") | None => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("keelctl: unknown command {other:?}; run 'keelctl help'");
            ExitCode::from(2)
        }
    }
}
