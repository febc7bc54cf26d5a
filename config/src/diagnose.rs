//! Every problem of a config at once, for `keelctl validate`. TOML deserialization stops at the first unknown key;
//! here each unknown key is masked (its first character becomes `#`, so the line turns into a comment and every
//! offset stays where it was) and the config is read again, until it parses or another kind of error stops it.
//! Then the semantic checks run too. The node itself needs only the first reason ([`crate::parse`]).

use crate::diag::{Diagnostic, LoadError};

/// How many unknown keys are reported before giving up (a config of garbage should not loop for long).
const MAX_UNKNOWN: usize = 64;

/// All diagnostics of `text`, in file order; empty when the config is valid.
pub fn all_diagnostics(file: &str, text: &str) -> Vec<Diagnostic> {
    let mut masked = text.to_string();
    let mut found = Vec::new();
    loop {
        match crate::parse(file, &masked) {
            Ok(_) => break,
            Err(LoadError::Invalid(ds)) => {
                found.extend(ds);
                break;
            }
            Err(LoadError::Malformed(d)) => {
                let offset = unknown_key_offset(&d, &masked);
                found.push(d);
                match offset {
                    Some(at) if found.len() < MAX_UNKNOWN => masked.replace_range(at..at + 1, "#"),
                    _ => break,
                }
            }
        }
    }
    found.sort_by_key(|d| (d.line, d.column));
    found.dedup();
    found
}

/// Where the unknown key of an "unknown field" error starts, when masking it leaves a line that is only a comment
/// (a `key = value` on a line of its own); `None` for any other error.
fn unknown_key_offset(d: &Diagnostic, text: &str) -> Option<usize> {
    if !d.message.starts_with("unknown field") {
        return None;
    }
    let line = text.lines().nth(d.line.checked_sub(1)?)?;
    let line_start = text.lines().take(d.line - 1).map(|l| l.len() + 1).sum::<usize>();
    let col = d.column.checked_sub(1)?;
    // Only a key that starts its line (after indentation): masking it comments out exactly that key-value pair.
    if !line.get(..col)?.trim().is_empty() || line.get(col..)?.starts_with('[') {
        return None;
    }
    // A value that goes on past this line (an open array or inline table) would break the rest: stop there.
    let value = line.split_once('=').map(|(_, v)| v.trim())?;
    let opens = value.matches(['[', '{']).count();
    let closes = value.matches([']', '}']).count();
    if opens != closes || value.starts_with("\"\"\"") || value.starts_with("'''") {
        return None;
    }
    Some(line_start + col)
}

#[cfg(test)]
mod tests {
    use super::all_diagnostics;

    #[test]
    fn every_unknown_key_and_every_invalid_value_is_reported() {
        let text = "version = 1\ngeneration = 2\nbogus = 1\n[node]\nhostnam = \"x\"\nhostname = \"-bad-\"\n\
                    [network]\nfoo = [1, 2]\n";
        let ds = all_diagnostics("n.toml", text);
        let shown: Vec<String> = ds.iter().map(|d| d.to_string()).collect();
        assert_eq!(ds.len(), 4, "{shown:#?}");
        assert!(shown[0].contains("n.toml:3:1") && shown[0].contains("unknown field `bogus`"), "{shown:#?}");
        assert!(shown[1].contains(":5:1") && shown[1].contains("unknown field `hostnam`"), "{shown:#?}");
        assert!(shown[2].contains(":6:") && shown[2].contains("hostname"), "{shown:#?}");
        assert!(shown[3].contains(":8:1") && shown[3].contains("unknown field `foo`"), "{shown:#?}");
    }

    #[test]
    fn a_valid_config_has_none_and_a_broken_one_stops_at_the_break() {
        assert!(all_diagnostics("n.toml", "version = 1\ngeneration = 2\n").is_empty());
        let ds = all_diagnostics("n.toml", "version = 1\ngeneration = 2\nx = [1,\n2]\ny = 1\n");
        assert_eq!(ds.len(), 1, "{ds:?}");
    }
}
