//! Errors about a config file, each pointing at a place in it: `node.toml:14:3: network.link[0].mtu: must be 68..65535`.

use std::fmt;
use std::ops::Range;

/// One problem in a config file. Lines and columns count from 1; columns count characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The key path, e.g. `network.link[0].mtu`; empty when the problem is not about one key.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a config was not accepted as a [`crate::Config`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// Not TOML, or not the schema's shape (unknown key, wrong type, missing key). TOML stops at the first.
    #[error("{0}")]
    Malformed(Diagnostic),
    /// Well-formed but semantically wrong; all problems, in file order.
    #[error("{}", lines(.0))]
    Invalid(Vec<Diagnostic>),
}

impl LoadError {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            LoadError::Malformed(d) => std::slice::from_ref(d),
            LoadError::Invalid(ds) => ds,
        }
    }
}

fn lines(diags: &[Diagnostic]) -> String {
    diags.iter().map(Diagnostic::to_string).collect::<Vec<_>>().join("\n")
}

/// Turns byte offsets into line and column, and collects diagnostics for one file.
pub(crate) struct Sink<'a> {
    file: &'a str,
    text: &'a str,
    pub diags: Vec<Diagnostic>,
}

impl<'a> Sink<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Sink<'a> {
        Sink { file, text, diags: Vec::new() }
    }

    pub fn diagnostic(&self, offset: usize, path: &str, message: impl Into<String>) -> Diagnostic {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Diagnostic {
            file: self.file.to_string(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            path: path.to_string(),
            message: message.into(),
        }
    }

    pub fn error(&mut self, span: Range<usize>, path: &str, message: impl Into<String>) {
        let d = self.diagnostic(span.start, path, message);
        self.diags.push(d);
    }

    /// The collected diagnostics in file order (stable, so problems at one place keep the order they were found).
    pub fn finish(mut self) -> Vec<Diagnostic> {
        self.diags.sort_by_key(|d| (d.line, d.column));
        self.diags
    }
}

/// A TOML key as it would be written in a key path: bare when it can be, else quoted.
pub(crate) fn key(name: &str) -> String {
    let bare = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let text = "a = 1\n# é\n  b = 2\n";
        let sink = Sink::new("n.toml", text);
        let at = |needle: &str| {
            let d = sink.diagnostic(text.find(needle).unwrap(), "p", "m");
            (d.line, d.column)
        };
        assert_eq!(at("a"), (1, 1));
        assert_eq!(at("b"), (3, 3));
        let after_accent = sink.diagnostic(text.find('é').unwrap() + 'é'.len_utf8(), "", "m");
        assert_eq!((after_accent.line, after_accent.column), (2, 4));
        assert_eq!(after_accent.to_string(), "n.toml:2:4: m");
        assert_eq!(sink.diagnostic(999, "x.y", "m").to_string(), "n.toml:4:1: x.y: m");
    }

    #[test]
    fn keys_are_quoted_only_when_needed() {
        assert_eq!(key("ip_forward"), "ip_forward");
        assert_eq!(key("net.ipv4.ip_forward"), "\"net.ipv4.ip_forward\"");
    }
}
