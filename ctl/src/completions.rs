//! `keelctl completions bash|zsh|fish`: static completion scripts, generated from one table of the commands and
//! their flags (tests check the table against what the parser accepts).

#[derive(Clone, Copy)]
pub enum Value {
    None,
    File,
    Text,
    Choice(&'static [&'static str]),
}

pub struct Flag {
    pub short: Option<char>,
    pub long: Option<&'static str>,
    pub value: Value,
    pub help: &'static str,
}

pub struct Command {
    pub name: &'static str,
    pub help: &'static str,
    pub flags: &'static [Flag],
    /// Positional arguments: None, or what to complete them with.
    pub args: Option<Value>,
}

const fn f(short: Option<char>, long: Option<&'static str>, value: Value, help: &'static str) -> Flag {
    Flag { short, long, value, help }
}

const NODE: Flag = f(None, Some("node"), Value::Text, "the node, HOST[:PORT] (default port 7443; or KEEL_NODE)");
const FINGERPRINT: Flag = f(None, Some("fingerprint"), Value::Text, "pin the node certificate: sha256:<hex>");
const KNOWN: Flag = f(None, Some("known-nodes"), Value::File, "the known_nodes file (or KEEL_KNOWN_NODES)");
const KEY: Flag = f(None, Some("key"), Value::File, "OpenSSH key file, or KEY.pub of an ssh-agent key (or KEEL_KEY)");
const KEY_F: Flag = f(Some('f'), Some("key"), Value::File, "OpenSSH key file, or KEY.pub of an ssh-agent key");
const NAMESPACES: &[&str] = &["keel-config", "keel-command", "keel-image", "keel-metrics"];
const NS: Flag = f(Some('n'), Some("namespace"), Value::Choice(NAMESPACES), "signature namespace");

pub const COMMANDS: &[Command] = &[
    Command {
        name: "keygen",
        help: "write a new ed25519 signing key",
        flags: &[KEY_F, f(Some('C'), None, Value::Text, "key comment")],
        args: None,
    },
    Command { name: "sign", help: "validate and sign a file", flags: &[KEY_F, NS], args: Some(Value::File) },
    Command {
        name: "verify",
        help: "check the signature of a file",
        flags: &[
            f(Some('s'), Some("allowed-signers"), Value::File, "allowed_signers file"),
            f(None, Some("sig"), Value::File, "signature file (default FILE.sig)"),
            NS,
            f(Some('I'), Some("principal"), Value::Text, "principal to check"),
        ],
        args: Some(Value::File),
    },
    Command { name: "validate", help: "check a node config", flags: &[], args: Some(Value::File) },
    Command {
        name: "apply",
        help: "sign (or use FILE.sig) and apply a config on a node",
        flags: &[
            NODE,
            KEY,
            f(None, Some("sig"), Value::File, "signature file (default FILE.sig)"),
            f(None, Some("dry-run"), Value::None, "show what would change, push nothing"),
            FINGERPRINT,
            KNOWN,
        ],
        args: Some(Value::File),
    },
    Command {
        name: "plan",
        help: "show what applying a config would change",
        flags: &[NODE, KEY, FINGERPRINT, KNOWN],
        args: Some(Value::File),
    },
    Command {
        name: "status",
        help: "show the status of a node",
        flags: &[
            NODE,
            KEY,
            f(Some('o'), Some("output"), Value::Choice(&["text", "json"]), "output format"),
            FINGERPRINT,
            KNOWN,
        ],
        args: None,
    },
    Command {
        name: "logs",
        help: "print the log buffer of a node",
        flags: &[NODE, KEY, f(Some('f'), Some("follow"), Value::None, "stream new lines"), FINGERPRINT, KNOWN],
        args: None,
    },
    Command {
        name: "upgrade",
        help: "send a signed slot image; the node reboots into it",
        flags: &[
            NODE,
            KEY,
            f(None, Some("sig"), Value::File, "signature file (default IMAGE.sig)"),
            FINGERPRINT,
            KNOWN,
        ],
        args: Some(Value::File),
    },
    Command {
        name: "metrics-token",
        help: "sign a metrics-only bearer token for Prometheus",
        flags: &[
            KEY,
            f(None, Some("machine-id"), Value::Text, "the node it is for (default: any node, *)"),
            f(None, Some("days"), Value::Text, "days until it expires (default 365)"),
        ],
        args: None,
    },
    Command { name: "reboot", help: "reboot a node (signed command)", flags: POWER, args: None },
    Command { name: "poweroff", help: "power a node off (signed command)", flags: POWER, args: None },
    Command {
        name: "completions",
        help: "print a shell completion script",
        flags: &[],
        args: Some(Value::Choice(&["bash", "zsh", "fish"])),
    },
    Command { name: "version", help: "print the version of keelctl", flags: &[], args: None },
    Command { name: "help", help: "print the help", flags: &[], args: None },
];

const POWER: &[Flag] = &[
    NODE,
    KEY,
    f(None, Some("machine-id"), Value::Text, "the machine id of the node (default: asked from it)"),
    FINGERPRINT,
    KNOWN,
];

fn spellings(flag: &Flag) -> Vec<String> {
    flag.short.map(|c| format!("-{c}")).into_iter().chain(flag.long.map(|l| format!("--{l}"))).collect()
}

fn bash() -> String {
    let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
    let mut s = String::from("# bash completion for keelctl; source it, or put it in /etc/bash_completion.d/keelctl\n");
    s.push_str("_keelctl() {\n    local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n");
    s.push_str("    local cmd=\"${COMP_WORDS[1]}\" opts=\"\" args=\"\"\n    COMPREPLY=()\n");
    s.push_str(&format!(
        "    if [ \"$COMP_CWORD\" -eq 1 ]; then\n        COMPREPLY=($(compgen -W \"{}\" -- \"$cur\"))\n        return\n    fi\n",
        names.join(" ")
    ));
    s.push_str("    case \"$cmd\" in\n");
    for c in COMMANDS {
        s.push_str(&format!("    {})\n", c.name));
        let mut values = String::new();
        for flag in c.flags {
            let pat = spellings(flag).join("|");
            match flag.value {
                Value::None => {}
                Value::File => {
                    values.push_str(&format!("        {pat}) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"))
                }
                Value::Text => values.push_str(&format!("        {pat}) return ;;\n")),
                Value::Choice(ch) => values.push_str(&format!(
                    "        {pat}) COMPREPLY=($(compgen -W \"{}\" -- \"$cur\")); return ;;\n",
                    ch.join(" ")
                )),
            }
        }
        if !values.is_empty() {
            s.push_str(&format!("        case \"$prev\" in\n{values}        esac\n"));
        }
        let opts: Vec<String> = c.flags.iter().flat_map(spellings).collect();
        s.push_str(&format!("        opts=\"{}\"", opts.join(" ")));
        match c.args {
            Some(Value::File) => s.push_str("; args=file"),
            Some(Value::Choice(ch)) => s.push_str(&format!("; args=\"{}\"", ch.join(" "))),
            _ => {}
        }
        s.push_str(" ;;\n");
    }
    s.push_str("    esac\n");
    s.push_str("    if [[ \"$cur\" == -* ]]; then\n        COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n");
    s.push_str("    elif [ \"$args\" = file ]; then\n        COMPREPLY=($(compgen -f -- \"$cur\"))\n");
    s.push_str("    elif [ -n \"$args\" ]; then\n        COMPREPLY=($(compgen -W \"$args\" -- \"$cur\"))\n    fi\n}\n");
    s.push_str("complete -o filenames -F _keelctl keelctl\n");
    s
}

fn zsh_action(v: Value) -> String {
    match v {
        Value::None => String::new(),
        Value::File => ":file:_files".into(),
        Value::Text => ":value: ".into(),
        Value::Choice(ch) => format!(":value:({})", ch.join(" ")),
    }
}

fn zsh() -> String {
    let mut s =
        String::from("#compdef keelctl\n# zsh completion for keelctl; put it in a directory on $fpath as _keelctl\n");
    s.push_str("_keelctl() {\n    local -a commands\n    commands=(\n");
    for c in COMMANDS {
        s.push_str(&format!("        '{}:{}'\n", c.name, c.help.replace('\'', "")));
    }
    s.push_str(
        "    )\n    if (( CURRENT == 2 )); then\n        _describe 'command' commands\n        return\n    fi\n",
    );
    s.push_str("    local cmd=$words[2]\n    shift words\n    (( CURRENT-- ))\n    case $cmd in\n");
    for c in COMMANDS {
        let mut specs: Vec<String> = Vec::new();
        for flag in c.flags {
            let help = flag.help.replace(['\'', '[', ']', ':'], " ");
            let action = zsh_action(flag.value);
            let all = spellings(flag);
            if all.len() == 2 {
                specs.push(format!("'({0} {1})'{{{0},{1}}}'[{help}]{action}'", all[0], all[1]));
            } else {
                specs.push(format!("'{}[{help}]{action}'", all[0]));
            }
        }
        if let Some(v) = c.args {
            specs.push(format!("'*{}'", zsh_action(v)));
        }
        if !specs.is_empty() {
            s.push_str(&format!("        {}) _arguments -s {} ;;\n", c.name, specs.join(" ")));
        }
    }
    s.push_str("    esac\n}\n_keelctl \"$@\"\n");
    s
}

fn fish() -> String {
    let mut s = String::from("# fish completion for keelctl; put it in ~/.config/fish/completions/keelctl.fish\n");
    s.push_str("complete -c keelctl -f\n");
    let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
    let fresh = format!("not __fish_seen_subcommand_from {}", names.join(" "));
    for c in COMMANDS {
        s.push_str(&format!("complete -c keelctl -n '{fresh}' -a {} -d '{}'\n", c.name, c.help.replace('\'', "")));
    }
    for c in COMMANDS {
        let cond = format!("__fish_seen_subcommand_from {}", c.name);
        for flag in c.flags {
            let mut line = format!("complete -c keelctl -n '{cond}'");
            if let Some(ch) = flag.short {
                line.push_str(&format!(" -s {ch}"));
            }
            if let Some(l) = flag.long {
                line.push_str(&format!(" -l {l}"));
            }
            match flag.value {
                Value::None => {}
                Value::File => line.push_str(" -r -F"),
                Value::Text => line.push_str(" -r"),
                Value::Choice(ch) => line.push_str(&format!(" -r -a '{}'", ch.join(" "))),
            }
            s.push_str(&format!("{line} -d '{}'\n", flag.help.replace('\'', "")));
        }
        match c.args {
            Some(Value::File) => s.push_str(&format!("complete -c keelctl -n '{cond}' -F\n")),
            Some(Value::Choice(ch)) => s.push_str(&format!("complete -c keelctl -n '{cond}' -a '{}'\n", ch.join(" "))),
            _ => {}
        }
    }
    s
}

pub fn script(shell: &str) -> Option<String> {
    match shell {
        "bash" => Some(bash()),
        "zsh" => Some(zsh()),
        "fish" => Some(fish()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_names_every_command_and_flag() {
        for shell in ["bash", "zsh", "fish"] {
            let text = script(shell).unwrap();
            for c in COMMANDS {
                assert!(text.contains(c.name), "{shell}: {}", c.name);
                for flag in c.flags {
                    for name in [flag.long.unwrap_or(""), &flag.short.map(String::from).unwrap_or_default()] {
                        assert!(text.contains(name), "{shell}: {} {name}", c.name);
                    }
                }
            }
        }
        assert!(script("tcsh").is_none());
    }

    #[test]
    fn bash_script_is_valid_bash() {
        let Ok(out) = std::process::Command::new("bash").args(["-n", "-c", &script("bash").unwrap()]).output() else {
            return;
        };
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
