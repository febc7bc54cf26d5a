//! The `allowed_signers` file of `ssh-keygen -Y verify` (see ssh-keygen(1), ALLOWED SIGNERS):
//! `principals [options] key-type base64 [comment]`, one per line, `#` comments. Options: `namespaces="a,b"`,
//! `valid-after="YYYYMMDD[HHMM[SS]][Z]"`, `valid-before=…`. `cert-authority` is refused: Keel accepts only
//! signatures by keys listed themselves. Several lines may list several keys, e.g. during a key rotation.
//!
//! The whole file is checked when read (ssh-keygen only reads up to the line it needs): a broken line baked into
//! an image should fail the build, not surface when some other key signs.

use super::key::PublicKey;
use crate::time::Timestamp;

/// One line: who may sign with which key, in which namespaces, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number in the file.
    pub line: usize,
    /// Comma-separated principal patterns (`*` and `?` wildcards, `!` negation), e.g. `ops@example.org`.
    pub principals: String,
    /// Namespace patterns the key may sign for; None means any.
    pub namespaces: Option<String>,
    pub valid_after: Option<Timestamp>,
    pub valid_before: Option<Timestamp>,
    pub key: PublicKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedSigners {
    pub entries: Vec<Entry>,
}

/// A line of an `allowed_signers` file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct AllowedSignersError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl AllowedSigners {
    /// Reads a whole file; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<AllowedSigners, AllowedSignersError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let error = |message: String| AllowedSignersError { file: file.to_string(), line: line_no, message };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            entries.push(parse_line(line_no, line).map_err(error)?);
        }
        Ok(AllowedSigners { entries })
    }

    /// The first line that allows `key` to sign in `namespace` at `now` (and, if given, for `principal`);
    /// else why none does.
    pub fn find(
        &self,
        key: &PublicKey,
        principal: Option<&str>,
        namespace: &str,
        now: Timestamp,
    ) -> Result<&Entry, String> {
        let mut why = None;
        for e in self.entries.iter().filter(|e| e.key == *key) {
            let problem = if principal.is_some_and(|p| !match_list(p, &e.principals)) {
                format!("line {} lists it for {:?}, not {:?}", e.line, e.principals, principal.unwrap_or_default())
            } else if e.namespaces.as_ref().is_some_and(|ns| !match_list(namespace, ns)) {
                format!(
                    "line {} allows it for namespaces {:?}, not {namespace:?}",
                    e.line,
                    e.namespaces.as_deref().unwrap_or_default()
                )
            } else if let Some(after) = e.valid_after.filter(|after| now < *after) {
                format!("line {} makes it valid only from {after}", e.line)
            } else if let Some(before) = e.valid_before.filter(|before| now > *before) {
                format!("line {} made it valid only until {before}", e.line)
            } else {
                return Ok(e);
            };
            why.get_or_insert(problem);
        }
        Err(why.unwrap_or_else(|| "no line of allowed_signers lists this key".to_string()))
    }
}

fn parse_line(line_no: usize, line: &str) -> Result<Entry, String> {
    let (principals, rest) = token(line);
    let principals = principals.trim_matches('"').to_string();
    if principals.is_empty() {
        return Err("no principals".into());
    }
    let rest = rest.trim_start();
    let first_word = rest.split_ascii_whitespace().next().unwrap_or("");
    let looks_like_key = ["ssh-", "ecdsa-", "sk-", "rsa-"].iter().any(|p| first_word.starts_with(p));
    let (options, key_text) = if looks_like_key { ("", rest) } else { token(rest) };
    if key_text.trim().is_empty() {
        return Err("missing key (expected: principals [options] key-type base64 [comment])".into());
    }
    let (key, _comment) = PublicKey::from_openssh(key_text)?;
    let mut entry = Entry { line: line_no, principals, namespaces: None, valid_after: None, valid_before: None, key };
    for option in split_unquoted(options, ',').into_iter().filter(|o| !o.is_empty()) {
        let (name, value) = match option.split_once('=') {
            Some((n, v)) => (n.to_ascii_lowercase(), Some(v)),
            None => (option.to_ascii_lowercase(), None),
        };
        let value = || -> Result<String, String> {
            let v = value.ok_or_else(|| format!("option {name} needs a value: {name}=\"…\""))?;
            let inner = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
            inner
                .filter(|i| !i.contains('"'))
                .map(str::to_string)
                .ok_or_else(|| format!("the value of {name} must be in double quotes"))
        };
        let slot_taken = |taken: bool| if taken { Err(format!("option {name} given twice")) } else { Ok(()) };
        match name.as_str() {
            "cert-authority" => {
                return Err(
                    "cert-authority is not supported: Keel accepts no certificates; list the signer's own key".into()
                )
            }
            "namespaces" => {
                slot_taken(entry.namespaces.is_some())?;
                entry.namespaces = Some(value()?);
            }
            "valid-after" => {
                slot_taken(entry.valid_after.is_some())?;
                entry.valid_after = Some(parse_time(&value()?)?);
            }
            "valid-before" => {
                slot_taken(entry.valid_before.is_some())?;
                entry.valid_before = Some(parse_time(&value()?)?);
            }
            _ => return Err(format!("unknown option {name:?} (known: namespaces, valid-after, valid-before)")),
        }
    }
    Ok(entry)
}

/// The first word (a `"quoted string"` may hold spaces) and the rest.
fn token(text: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_ascii_whitespace() && !quoted => return (&text[..i], &text[i..]),
            _ => {}
        }
    }
    (text, "")
}

fn split_unquoted(text: &str, sep: char) -> Vec<&str> {
    let (mut parts, mut quoted, mut start) = (Vec::new(), false, 0);
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, optionally ending in `Z`. ssh-keygen reads a time without `Z`
/// in local time; a Keel node has no time zone but UTC, so both mean UTC here.
fn parse_time(text: &str) -> Result<Timestamp, String> {
    let digits = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    let bad = || format!("{text:?} is not a time like 20260131, 202601311200 or 20260131120000Z");
    if ![8, 12, 14].contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let field = |range: std::ops::Range<usize>| digits.get(range).and_then(|d| d.parse::<u16>().ok()).unwrap_or(0);
    let iso = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        field(0..4),
        field(4..6),
        field(6..8),
        field(8..10),
        field(10..12),
        field(12..14)
    );
    let dt = iso.parse::<toml::value::Datetime>().map_err(|_| bad())?;
    Timestamp::from_toml(&dt).ok_or_else(bad)
}

/// OpenSSH's `match_pattern_list`: true if `s` matches one of the comma-separated patterns and no `!pattern`.
pub fn match_list(s: &str, patterns: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(s.as_bytes(), negated.as_bytes()) => return false,
            Some(_) => {}
            None => matched |= glob(s.as_bytes(), pattern.as_bytes()),
        }
    }
    matched
}

/// `*` matches any run of bytes, `?` any one byte.
fn glob(s: &[u8], p: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|c| *c == b'*')
}
