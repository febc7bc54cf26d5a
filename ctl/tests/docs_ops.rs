//! Operator docs that cannot drift from the code:
//! - every `keelctl …` command shown in the docs names a real subcommand and only flags that subcommand takes
//!   (the table `keelctl completions bash` is generated from, which keelctl's own tests check against its parser);
//! - every log event the docs quote as `keel: area.event …` is one PID 1 can print (a string literal in init/src);
//! - every status field docs/troubleshooting.md names as status `a.b` is a key of the status JSON init/src renders;
//! - every `KEEL_*` make variable the docs name is read somewhere, and every `keel.key=` is a command-line key;
//! - the `/metrics` names docs/api.md lists are exactly the ones init/src serves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

mod doc_files;
use doc_files::{docs, read, root};

/// Every piece of code a Markdown text shows, with its line number: each line of a fenced block, and each
/// inline `code span` outside blocks.
fn code(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            out.push((i + 1, line.to_string()));
            continue;
        }
        // Inline spans: split on backticks; the odd pieces are code.
        for (n, piece) in line.split('`').enumerate() {
            if n % 2 == 1 {
                out.push((i + 1, piece.to_string()));
            }
        }
    }
    out
}

/// The `keelctl` invocation a line of code holds, as words: after an optional `$ ` prompt and `VAR=value`
/// assignments, up to a `#` comment, a pipe or a redirection.
fn keelctl_words(line: &str) -> Option<Vec<String>> {
    let mut words = line.trim().trim_start_matches("$ ").split_whitespace().peekable();
    while words.peek().is_some_and(|w| w.contains('=') && !w.starts_with('-')) {
        words.next();
    }
    if words.next()? != "keelctl" {
        return None;
    }
    let rest: Vec<String> = words
        .take_while(|w| !w.starts_with('#') && !["|", ">", ">>", "&&", ";", "2>&1"].contains(w))
        .map(String::from)
        .collect();
    // "keelctl" alone, or prose such as "keelctl asks …" inside a span, is not an invocation.
    Some(rest)
}

/// Subcommand -> the flags it takes, from the bash completion script (one table drives it and the parser).
fn known_commands() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO_BIN_EXE_keelctl")).args(["completions", "bash"]).output().expect("keelctl");
    assert!(out.status.success(), "keelctl completions bash failed");
    let script = String::from_utf8(out.stdout).expect("UTF-8");
    let mut commands = BTreeMap::new();
    // The first-word list: compgen -W "keygen sign …".
    let first = script.lines().find(|l| l.contains("COMP_CWORD\" -eq 1")).map(|_| ());
    assert!(first.is_some(), "completion script layout changed: no first-word branch");
    let words = script
        .split("compgen -W \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the command list in the completion script");
    for w in words.split_whitespace() {
        commands.insert(w.to_string(), BTreeSet::new());
    }
    let mut current: Option<String> = None;
    for line in script.lines() {
        let t = line.trim();
        if line.starts_with("    ") && !line.starts_with("     ") && t.ends_with(')') {
            let name = t.trim_end_matches(')');
            if commands.contains_key(name) {
                current = Some(name.to_string());
            }
        }
        if let (Some(c), Some(opts)) = (&current, t.strip_prefix("opts=\"")) {
            let opts = opts.split('"').next().unwrap_or("");
            commands.get_mut(c).expect("known").extend(opts.split_whitespace().map(String::from));
        }
    }
    assert!(
        commands.get("apply").is_some_and(|f| f.contains("--node")) && commands.contains_key("status"),
        "completion script parse broken: {commands:?}"
    );
    commands
}

/// What is wrong with one `keelctl` invocation, if anything.
fn check_invocation(words: &[String], known: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
    let sub = words.first()?;
    let sub = match sub.as_str() {
        "--help" | "-h" => "help",
        "--version" | "-V" => "version",
        s => s,
    };
    // A subcommand placeholder such as `keelctl <command>` is not an invocation.
    if sub.starts_with('<') {
        return None;
    }
    let Some(flags) = known.get(sub) else {
        return Some(format!("unknown subcommand {sub:?}"));
    };
    let mut bad = Vec::new();
    for w in &words[1..] {
        if !w.starts_with('-') || w == "-" {
            continue;
        }
        let flag = w.split('=').next().unwrap_or(w);
        // Short flags may carry their value: -nkeel-command.
        let short = if !flag.starts_with("--") && flag.len() > 2 { &flag[..2] } else { flag };
        if !flags.contains(flag) && !flags.contains(short) {
            bad.push(flag.to_string());
        }
    }
    if bad.is_empty() {
        None
    } else {
        Some(format!("{sub} takes none of {bad:?} (it takes {flags:?})"))
    }
}

#[test]
fn every_keelctl_command_in_the_docs_exists_with_its_flags() {
    let known = known_commands();
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in docs() {
        for (line, code) in code(&read(&file)) {
            let Some(words) = keelctl_words(&code) else { continue };
            checked += 1;
            if let Some(problem) = check_invocation(&words, &known) {
                failures.push(format!("{}:{line}: `{}`: {problem}", file.display(), code.trim()));
            }
        }
    }
    assert!(checked >= 20, "only {checked} keelctl commands found in the docs: has the notation changed?");
    assert!(failures.is_empty(), "keelctl commands in the docs that keelctl does not have:\n{}", failures.join("\n"));
}

#[test]
fn the_invocation_check_can_fail() {
    let known = known_commands();
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(check_invocation(&words("status --node n1 -o json"), &known), None);
    assert_eq!(check_invocation(&words("sign -nkeel-command node.toml"), &known), None);
    assert!(check_invocation(&words("frobnicate"), &known).is_some());
    assert!(check_invocation(&words("status --dry-run"), &known).is_some());
    assert!(check_invocation(&words("--fingerprint x"), &known).is_some());
    assert_eq!(keelctl_words("$ KEEL_NODE=n1 keelctl status   # the node"), Some(words("status")));
    assert_eq!(keelctl_words("keelctl logs -f | grep x"), Some(words("logs -f")));
    assert_eq!(keelctl_words("curl x"), None);
}

/// Every Rust source text under a directory, concatenated.
fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push_str(&read(&path));
            out.push('\n');
        }
    }
}

/// The `area.event` of a quoted log line: `keel: area.event …`, or `area.event key=…` without the prefix.
fn event_of(code: &str) -> Option<String> {
    let code = code.trim();
    let (rest, prefixed) = match code.strip_prefix("keel: ") {
        Some(rest) => (rest, true),
        None => (code, false),
    };
    let mut words = rest.split_whitespace();
    let event = words.next()?;
    if !prefixed && !words.next().is_some_and(|w| w.contains('=') && !w.starts_with('=')) {
        return None;
    }
    let ok = event.contains('.') && event.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.');
    (ok && event != "area.event").then(|| event.to_string())
}

/// Whether PID 1's sources hold a string literal that starts with the event: `"area.event` followed by a space,
/// a quote or a format placeholder.
fn init_prints(src: &str, event: &str) -> bool {
    let needle = format!("\"{event}");
    src.match_indices(&needle)
        .any(|(at, _)| matches!(src[at + needle.len()..].chars().next(), Some(' ' | '"' | '{' | '\\')))
}

/// The events the one controller runner prints for every kind: `"{}.apply …"` with the kind's
/// `const AREA: &'static str = "net";` makes `net.apply`. Returned as source text `init_prints` finds.
fn runner_events(src: &str, runner: &str) -> String {
    let areas: Vec<&str> =
        src.split("const AREA: &'static str = \"").skip(1).filter_map(|rest| rest.split('"').next()).collect();
    let events: Vec<&str> = runner
        .split("\"{}.")
        .skip(1)
        .filter_map(|rest| rest.split(|c: char| !(c.is_ascii_lowercase() || c == '_')).next())
        .filter(|e| !e.is_empty())
        .collect();
    areas.iter().flat_map(|a| events.iter().map(move |e| format!("\"{a}.{e} \"\n"))).collect()
}

#[test]
fn every_log_event_the_docs_quote_is_one_pid1_prints() {
    let mut src = String::new();
    sources(&root().join("init/src"), &mut src);
    let generated = runner_events(&src, &read(&root().join("init/src/controller/runner.rs")));
    assert!(init_prints(&generated, "net.repair"), "the runner's events are not found: {generated}");
    src.push_str(&generated);
    assert!(init_prints(&src, "config.rejected") && !init_prints(&src, "config.rejecte"), "the matcher is broken");
    let mut per_file: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for file in docs() {
        for (line, code) in code(&read(&file)) {
            let Some(event) = event_of(&code) else { continue };
            *per_file.entry(file.file_name().unwrap_or_default().to_string_lossy().into_owned()).or_default() += 1;
            if !init_prints(&src, &event) {
                failures.push(format!("{}:{line}: `keel: {event}` is printed nowhere in init/src", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "log lines the docs quote that PID 1 does not print:\n{}", failures.join("\n"));
    let troubleshooting = per_file.get("troubleshooting.md").copied().unwrap_or(0);
    assert!(troubleshooting >= 20, "docs/troubleshooting.md quotes only {troubleshooting} log lines as `keel: …`");
}

/// The status fields the troubleshooting page names: each "status `a.b[].c`" (the `/v1/status` path), with its line.
fn status_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lower = line.to_ascii_lowercase();
        for (at, _) in lower.match_indices("status `") {
            let rest = &line[at + "status `".len()..];
            if let Some(end) = rest.find('`') {
                out.push((i + 1, rest[..end].to_string()));
            }
        }
    }
    out
}

#[test]
fn every_status_field_troubleshooting_names_is_one_the_node_renders() {
    let mut src = String::new();
    sources(&root().join("init/src/api"), &mut src);
    sources(&root().join("init/src/storage"), &mut src);
    sources(&root().join("init/src/upgrade"), &mut src);
    sources(&root().join("init/src/trust"), &mut src);
    // The document's fields are those of keel_config::status (`pub ready: bool`).
    sources(&root().join("config/src/status"), &mut src);
    let file = root().join("docs/troubleshooting.md");
    let paths = status_paths(&read(&file));
    assert!(paths.len() >= 10, "docs/troubleshooting.md names only {} status fields as status `a.b`", paths.len());
    let mut failures = Vec::new();
    for (line, path) in &paths {
        for part in path.split('.').map(|p| p.trim_end_matches("[]")) {
            // `<name>` stands for a map key (a service's name).
            if part.starts_with('<') {
                continue;
            }
            let field = [format!("\"{part}\":"), format!("\"{part}\", "), format!("pub {part}: ")];
            if !field.iter().any(|f| src.contains(f.as_str())) {
                failures
                    .push(format!("{}:{line}: status `{path}`: no field {part:?} in the status JSON", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "status fields the docs name that the node does not render:\n{}", failures.join("\n"));
}

/// Words of a text that start with `prefix` and continue with the characters `more` allows.
fn words_with(text: &str, prefix: &str, more: fn(char) -> bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        let tail: String = text[at + prefix.len()..].chars().take_while(|c| more(*c)).collect();
        if !tail.is_empty() {
            out.insert(format!("{prefix}{tail}"));
        }
    }
    out
}

#[test]
fn every_make_variable_and_kernel_word_the_docs_name_exists() {
    let root = root();
    // Where KEEL_* variables are read: the Makefile, its includes and scripts, the e2e harness, the code.
    let mut build = read(&root.join("Makefile"));
    for dir in ["image", "kernel-config", "qemu"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("dir").flatten() {
            if entry.path().is_file() {
                build.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
    }
    for dir in ["init/src", "ctl/src", "config/src", "tests/e2e/src", "tests/e2e/tests"] {
        sources(&root.join(dir), &mut build);
    }
    let cmdline = read(&root.join("init/src/cmdline.rs"));
    let mut failures = Vec::new();
    let mut seen = 0;
    for file in docs() {
        let text = read(&file);
        for var in words_with(&text, "KEEL_", |c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
            seen += 1;
            let var = var.trim_end_matches('_');
            if !build.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| w == var) {
                failures.push(format!(
                    "{}: {var} is read nowhere (Makefile, image/, kernel-config/, qemu/, code)",
                    file.display()
                ));
            }
        }
        for word in words_with(&text, "keel.", |c| c.is_ascii_lowercase() || c == '_') {
            // Kernel command-line words are written `keel.key=value`; only those are checked.
            if !text.contains(&format!("{word}=")) {
                continue;
            }
            seen += 1;
            if !cmdline.contains(&format!("\"{word}\"")) {
                failures.push(format!("{}: {word}= is not a key init/src/cmdline.rs reads", file.display()));
            }
        }
    }
    assert!(seen >= 20, "only {seen} KEEL_* / keel.* words found in the docs: has the notation changed?");
    assert!(
        failures.is_empty(),
        "make variables or kernel words the docs name that do not exist:\n{}",
        failures.join("\n")
    );
}

/// The metric names in a text: `keel_…` words.
fn metric_names(text: &str, literal_only: bool) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let prefix = if literal_only { "\"keel_" } else { "keel_" };
    for (at, _) in text.match_indices(prefix) {
        let start = at + prefix.len() - "keel_".len();
        let name: String =
            text[start..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        names.insert(name);
    }
    names
}

#[test]
fn docs_api_lists_exactly_the_metrics_the_node_serves() {
    let root = root();
    let mut served = metric_names(&read(&root.join("init/src/metrics.rs")), true);
    served.extend(metric_names(&read(&root.join("init/src/api/routes.rs")), true));
    served.extend(metric_names(&read(&root.join("init/src/api/metrics.rs")), true));
    // The one label-bearing family is written inside a longer literal.
    served.extend(
        metric_names(&read(&root.join("init/src/metrics.rs")), false).into_iter().filter(|n| n.ends_with("_total")),
    );
    assert!(served.contains("keel_config_generation") && served.len() >= 10, "metric scan broken: {served:?}");
    let api = read(&root.join("docs/api.md"));
    let section = api.split("### Metrics").nth(1).expect("docs/api.md has a \"### Metrics\" section");
    let section = section.split("\n#").next().unwrap_or(section);
    let listed = metric_names(section, false);
    let missing: Vec<_> = served.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&served).collect();
    assert!(missing.is_empty(), "docs/api.md, Metrics, lacks {missing:?}");
    assert!(stale.is_empty(), "docs/api.md, Metrics, lists {stale:?}, which the node does not serve");
}
