//! The image manifest: one entry per line, in the spirit of the kernel's gen_init_cpio.
//!
//! ```text
//! dir   /dev            0755
//! nod   /dev/console    0600 c 5 1
//! file  /init           0755 ${KEEL_INIT}
//! slink /etc/resolv.conf /run/keel/resolv.conf
//! ```
//! `${NAME}` is taken from the environment; `#` starts a comment; `include PATH` reads the entries of another
//! manifest there (e.g. one generated at build time by `image/e2fsprogs-static.sh`). Every entry's parent directory
//! must be declared (or be the root), and no path may appear twice with different entries.

use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { source: PathBuf },
    Node { block: bool, major: u32, minor: u32 },
    Symlink { target: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Absolute path inside the image.
    pub path: String,
    pub mode: u32,
    pub kind: Kind,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {message}")]
pub struct ManifestError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Reads an included file (its name after `${VAR}` substitution) or says why it cannot.
pub type Reader<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// Manifest lines with where they come from: (file, line number, text), includes expanded in place.
fn expand(
    file: &str,
    text: &str,
    var: &dyn Fn(&str) -> Option<String>,
    read: Reader,
    depth: usize,
    out: &mut Vec<(String, usize, String)>,
) -> Result<(), ManifestError> {
    for (i, raw) in text.lines().enumerate() {
        let err = |message: String| ManifestError { file: file.to_string(), line: i + 1, message };
        let line = raw.split('#').next().unwrap_or("").trim();
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["include", path] => {
                if depth >= 8 {
                    return Err(err("includes nest deeper than 8".into()));
                }
                let path = substitute(path, var).map_err(err)?;
                let included = read(&path).map_err(|e| err(format!("include {path}: {e}")))?;
                expand(&path, &included, var, read, depth + 1, out)?;
            }
            _ => out.push((file.to_string(), i + 1, line.to_string())),
        }
    }
    Ok(())
}

/// Parses a manifest; `var` resolves `${NAME}`, `read` reads what `include PATH` names. Entries come back sorted
/// by path (parents first). A path declared twice is an error, unless both entries are identical (a generated
/// fragment may declare a directory the manifest has too).
pub fn parse(
    file: &str,
    text: &str,
    var: &dyn Fn(&str) -> Option<String>,
    read: Reader,
) -> Result<Vec<Entry>, ManifestError> {
    let mut lines = Vec::new();
    expand(file, text, var, read, 0, &mut lines)?;
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut lines_of: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for (file, line_no, line) in &lines {
        let (file, line_no) = (file.as_str(), *line_no);
        let err = |message: String| ManifestError { file: file.to_string(), line: line_no, message };
        if line.is_empty() {
            continue;
        }
        let words: Vec<String> =
            line.split_whitespace().map(|w| substitute(w, var)).collect::<Result<_, _>>().map_err(err)?;
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let mode = |s: &str| u32::from_str_radix(s, 8).map_err(|_| err(format!("mode {s:?} is not octal")));
        let num = |s: &str| s.parse::<u32>().map_err(|_| err(format!("{s:?} is not a number")));
        let entry = match w.as_slice() {
            ["dir", path, m] => Entry { path: path.to_string(), mode: mode(m)?, kind: Kind::Dir },
            ["file", path, m, source] => {
                Entry { path: path.to_string(), mode: mode(m)?, kind: Kind::File { source: PathBuf::from(source) } }
            }
            ["nod", path, m, t @ ("c" | "b"), major, minor] => Entry {
                path: path.to_string(),
                mode: mode(m)?,
                kind: Kind::Node { block: *t == "b", major: num(major)?, minor: num(minor)? },
            },
            ["slink", path, target] => {
                Entry { path: path.to_string(), mode: 0o777, kind: Kind::Symlink { target: target.to_string() } }
            }
            _ => {
                return Err(err(format!(
                    "cannot read {line:?}: expected 'dir PATH MODE', 'file PATH MODE SOURCE', \
                     'nod PATH MODE c|b MAJOR MINOR', 'slink PATH TARGET' or 'include PATH'"
                )))
            }
        };
        if !entry.path.starts_with('/') || entry.path == "/" || entry.path.ends_with('/') || entry.path.contains("//") {
            return Err(err(format!("path {:?} must be absolute, not the root, without trailing '/'", entry.path)));
        }
        if entry.mode > 0o7777 {
            return Err(err(format!("mode {:o} has bits beyond 07777", entry.mode)));
        }
        if let Some((first_file, first)) = lines_of.get(&entry.path) {
            if entries.get(&entry.path) == Some(&entry) {
                continue;
            }
            let at = if first_file == file { format!("line {first}") } else { format!("{first_file}:{first}") };
            return Err(err(format!("{} is already declared on {at}", entry.path)));
        }
        lines_of.insert(entry.path.clone(), (file.to_string(), line_no));
        entries.insert(entry.path.clone(), entry);
    }
    for (path, (file, line)) in &lines_of {
        let parent = &path[..path.rfind('/').unwrap_or(0)];
        let declared = parent.is_empty() || matches!(entries.get(parent), Some(Entry { kind: Kind::Dir, .. }));
        if !declared {
            return Err(ManifestError {
                file: file.clone(),
                line: *line,
                message: format!("parent directory {parent} of {path} is not declared as a dir"),
            });
        }
    }
    Ok(entries.into_values().collect())
}

fn substitute(word: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("unclosed ${{ in {word:?}"))?;
        let name = &after[..end];
        let value = var(name).ok_or_else(|| format!("variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "INIT" => Some("/build/init".to_string()),
            "FRAGMENT" => Some("build/storage.manifest".to_string()),
            _ => None,
        }
    }

    fn no_includes(path: &str) -> Result<String, String> {
        Err(format!("no file {path}"))
    }

    fn parse(file: &str, text: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Entry>, ManifestError> {
        super::parse(file, text, var, &no_includes)
    }

    #[test]
    fn parses_all_kinds_sorted_with_parents_first() {
        let text = "# the image\nfile /init 0755 ${INIT}\nnod /dev/console 0600 c 5 1\ndir /dev 0755\n\
                    dir /etc 0755\nslink /etc/resolv.conf /run/keel/resolv.conf\n";
        let entries = parse("m", text, &vars).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/dev", "/dev/console", "/etc", "/etc/resolv.conf", "/init"]);
        assert_eq!(entries[4].kind, Kind::File { source: "/build/init".into() });
        assert_eq!(entries[1].kind, Kind::Node { block: false, major: 5, minor: 1 });
        assert_eq!(entries[1].mode, 0o600);
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let e = parse("m", "dir /dev 0755\nfile /init 0755 ${NOPE}\n", &vars).unwrap_err();
        assert_eq!(e.to_string(), "m:2: variable NOPE is not set");
        let e = parse("m", "nod /dev/console 0600 c 5 1\n", &vars).unwrap_err();
        assert_eq!(e.to_string(), "m:1: parent directory /dev of /dev/console is not declared as a dir");
        let e = parse("m", "dir /a 0755\ndir /a 0700\n", &vars).unwrap_err();
        assert_eq!(e.to_string(), "m:2: /a is already declared on line 1");
        let e = parse("m", "dir /a 0789\n", &vars).unwrap_err();
        assert_eq!(e.to_string(), "m:1: mode \"0789\" is not octal");
        assert!(parse("m", "dir a 0755\n", &vars).is_err());
        assert!(parse("m", "link /a /b\n", &vars).unwrap_err().message.contains("expected"));
    }

    #[test]
    fn includes_expand_in_place_and_identical_duplicates_are_fine() {
        let fragment =
            "dir /usr 0755\ndir /usr/sbin 0755\nfile /usr/sbin/mke2fs 0755 /usr/sbin/mke2fs\ndir /etc 0755\n";
        let read = |path: &str| match path {
            "build/storage.manifest" => Ok(fragment.to_string()),
            other => Err(format!("no file {other}")),
        };
        let text = "dir /etc 0755\ninclude ${FRAGMENT}\nfile /init 0755 ${INIT}\n";
        let entries = super::parse("m", text, &vars, &read).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/etc", "/init", "/usr", "/usr/sbin", "/usr/sbin/mke2fs"]);
        let e = super::parse("m", "dir /etc 0700\ninclude ${FRAGMENT}\n", &vars, &read).unwrap_err();
        assert_eq!(e.to_string(), "build/storage.manifest:4: /etc is already declared on m:1");
        let e = super::parse("m", "include missing\n", &vars, &read).unwrap_err();
        assert_eq!(e.to_string(), "m:1: include missing: no file missing");
        let looping = |_: &str| Ok("include self\n".to_string());
        assert!(super::parse("m", "include self\n", &vars, &looping).unwrap_err().message.contains("deeper"));
    }
}
