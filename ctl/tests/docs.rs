//! Docs that cannot drift: every node config shown in the docs passes `keelctl validate`, and
//! config/examples/node.toml, which claims to show every key, sets every key the JSON schema has.
//!
//! A ```toml block is a node config; blocks that show something else say so after the language
//! (```toml keel-command). A block without `version` is a fragment: it is checked inside a minimal config.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

mod doc_files;
use doc_files::{docs, read, root};

/// (file, first line, text) of every ```toml block that is a node config.
fn toml_blocks() -> Vec<(PathBuf, usize, String)> {
    let mut blocks = Vec::new();
    for file in docs() {
        let text = read(&file);
        let mut current: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            match &mut current {
                None if line.trim_start() == "```toml" => current = Some((i + 2, String::new())),
                Some(_) if line.trim_start().starts_with("```") => {
                    let (start, body) = current.take().expect("inside a block");
                    blocks.push((file.clone(), start, body));
                }
                Some((_, body)) => {
                    body.push_str(line);
                    body.push('\n');
                }
                None => {}
            }
        }
    }
    blocks
}

#[test]
fn every_node_config_in_the_docs_passes_keelctl_validate() {
    let blocks = toml_blocks();
    assert!(!blocks.is_empty(), "no ```toml block found in the docs: has the fence convention changed?");
    let dir = std::env::temp_dir().join(format!("keelctl-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut failures = Vec::new();
    for (n, (file, line, body)) in blocks.iter().enumerate() {
        let whole = body.lines().any(|l| l.trim_start().starts_with("version"));
        let text = if whole { body.clone() } else { format!("version = 1\ngeneration = 1\n{body}") };
        let path = dir.join(format!("block-{n}.toml"));
        std::fs::write(&path, text).expect("write block");
        let out = Command::new(env!("CARGO_BIN_EXE_keelctl")).arg("validate").arg(&path).output().expect("keelctl");
        if !out.status.success() {
            failures.push(format!(
                "{}:{line}: {}{}",
                file.display(),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "node configs in the docs that keelctl refuses:\n{}", failures.join("\n"));
}

/// Every key path the schema allows, e.g. `service[].cpu_max.period`; maps with free keys end in `.*`.
fn schema_keys(schema: &Value, node: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(r) = node.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        return schema_keys(schema, &schema["$defs"][name], prefix, out);
    }
    for alt in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(options)) = node.get(alt) {
            for o in options {
                schema_keys(schema, o, prefix, out);
            }
        }
    }
    if let Some(items) = node.get("items") {
        schema_keys(schema, items, &format!("{prefix}[]"), out);
    }
    if let Some(Value::Object(props)) = node.get("properties") {
        for (key, sub) in props {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            out.insert(path.clone());
            schema_keys(schema, sub, &path, out);
        }
    }
    if let Some(extra @ Value::Object(_)) = node.get("additionalProperties") {
        out.insert(format!("{prefix}.*"));
        schema_keys(schema, extra, &format!("{prefix}.*"), out);
    }
}

/// Every key path a TOML document sets, in the same notation.
fn toml_keys(value: &toml::Value, prefix: &str, free_maps: &BTreeSet<String>, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(t) => {
            let free = free_maps.contains(&format!("{prefix}.*"));
            for (key, sub) in t {
                let path = match (prefix.is_empty(), free) {
                    (true, _) => key.clone(),
                    (false, true) => format!("{prefix}.*"),
                    (false, false) => format!("{prefix}.{key}"),
                };
                out.insert(path.clone());
                toml_keys(sub, &path, free_maps, out);
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                toml_keys(item, &format!("{prefix}[]"), free_maps, out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_example_config_sets_every_key_of_the_schema() {
    let root = root();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("config/keel-config.schema.json")).expect("the schema"),
    )
    .expect("the schema is JSON");
    let mut allowed = BTreeSet::new();
    schema_keys(&schema, &schema, "", &mut allowed);
    assert!(allowed.contains("node.hostname") && allowed.contains("service[].name"), "walker broken: {allowed:?}");
    let free_maps: BTreeSet<String> = allowed.iter().filter(|k| k.ends_with(".*")).cloned().collect();

    let example = std::fs::read_to_string(root.join("config/examples/node.toml")).expect("the example");
    let doc: toml::Value = toml::from_str(&example).expect("the example is TOML");
    let mut set = BTreeSet::new();
    toml_keys(&doc, "", &free_maps, &mut set);

    let missing: Vec<&String> = allowed.iter().filter(|k| !set.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "config/examples/node.toml claims every key but lacks: {missing:?} (add each, with a comment on what it does)"
    );
    let unknown: Vec<&String> = set.iter().filter(|k| !allowed.contains(*k)).collect();
    assert!(unknown.is_empty(), "config/examples/node.toml sets keys the schema does not have: {unknown:?}");
}
