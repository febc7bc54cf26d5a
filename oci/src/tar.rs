//! A streaming tar reader (ustar, pax extended headers, GNU long names) as a state machine: the caller feeds
//! whatever bytes it has and gets at most one event back per call, so a layer is never held in memory.
//!
//! ```text
//! loop { let (used, event) = reader.feed(&buf[at..])?; at += used; handle(event); }
//! ```
//! Events: `Entry` (a header, with pax/GNU overrides applied), then `Data` for a regular file's bytes (until the
//! next `Entry` or `End`), and `End` at the first zero block. [`TarReader::finish`] says whether the stream ended
//! cleanly.

const BLOCK: usize = 512;
/// A pax record set or a GNU long name larger than this is refused.
pub const MAX_META: u64 = 64 << 10;
pub const MAX_PATH: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
    /// Any other typeflag (sparse files, volume labels, …); its data is skipped.
    Other(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path as stored (not yet cleaned; see unpack::decide).
    pub path: Vec<u8>,
    /// Link target for hard and symbolic links.
    pub link: Vec<u8>,
    pub kind: Kind,
    /// Permission and special bits (mode & 0o7777).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Data bytes that follow (0 for all but regular files).
    pub size: u64,
    pub mtime: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Entry(Entry),
    Data(&'a [u8]),
    End,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tar entry {entry}: {why}")]
pub struct TarError {
    /// Index of the header block where it went wrong.
    pub entry: u64,
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetaKind {
    Pax,
    PaxGlobal,
    LongName,
    LongLink,
}

#[derive(Debug)]
enum State {
    Header,
    Data { remaining: u64, pad: u64 },
    Skip { remaining: u64 },
    Meta { kind: MetaKind, remaining: u64, pad: u64 },
    End,
}

#[derive(Debug, Default)]
struct Overrides {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
}

#[derive(Debug)]
pub struct TarReader {
    state: State,
    block: Vec<u8>,
    meta: Vec<u8>,
    next: Overrides,
    headers: u64,
}

impl Default for TarReader {
    fn default() -> Self {
        Self::new()
    }
}

impl TarReader {
    pub fn new() -> TarReader {
        TarReader {
            state: State::Header,
            block: Vec::with_capacity(BLOCK),
            meta: Vec::new(),
            next: Overrides::default(),
            headers: 0,
        }
    }

    fn err(&self, why: impl Into<String>) -> TarError {
        TarError { entry: self.headers, why: why.into() }
    }

    /// Consumes a prefix of `input`; returns how many bytes were used and the event they completed, if any.
    /// Data events borrow from `input`. Call again with the rest until it is used up.
    pub fn feed<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Event<'a>>), TarError> {
        match &mut self.state {
            State::End => Ok((input.len(), None)),
            State::Header => {
                let n = (BLOCK - self.block.len()).min(input.len());
                self.block.extend_from_slice(&input[..n]);
                if self.block.len() < BLOCK {
                    return Ok((n, None));
                }
                let event = self.header()?;
                self.block.clear();
                Ok((n, event))
            }
            State::Data { remaining, pad } => {
                let n = (*remaining).min(input.len() as u64) as usize;
                *remaining -= n as u64;
                if *remaining == 0 {
                    let pad = *pad;
                    self.state = if pad == 0 { State::Header } else { State::Skip { remaining: pad } };
                }
                Ok((n, (n > 0).then(|| Event::Data(&input[..n]))))
            }
            State::Skip { remaining } => {
                let n = (*remaining).min(input.len() as u64) as usize;
                *remaining -= n as u64;
                self.after_skip(n)
            }
            State::Meta { kind, remaining, pad } => {
                let (kind, pad) = (*kind, *pad);
                let n = (*remaining).min(input.len() as u64) as usize;
                *remaining -= n as u64;
                let done = *remaining == 0;
                self.meta.extend_from_slice(&input[..n]);
                if done {
                    let meta = std::mem::take(&mut self.meta);
                    self.apply_meta(kind, &meta)?;
                    self.state = State::Skip { remaining: pad };
                    return self.after_skip(n);
                }
                Ok((n, None))
            }
        }
    }

    fn after_skip(&mut self, n: usize) -> Result<(usize, Option<Event<'static>>), TarError> {
        if let State::Skip { remaining: 0 } = self.state {
            self.state = State::Header;
        }
        Ok((n, None))
    }

    /// Whether the stream ended where a tar may end: at its end-of-archive block or between entries.
    pub fn finish(&self) -> Result<(), TarError> {
        match &self.state {
            State::End => Ok(()),
            State::Header if self.block.is_empty() && self.next.path.is_none() && self.next.size.is_none() => Ok(()),
            _ => Err(self.err("the archive is truncated")),
        }
    }

    fn header(&mut self) -> Result<Option<Event<'static>>, TarError> {
        let b = &self.block;
        if b.iter().all(|&x| x == 0) {
            self.state = State::End;
            return Ok(Some(Event::End));
        }
        self.headers += 1;
        let stored = octal(&b[148..156]).ok_or_else(|| self.err("bad checksum field"))?;
        let unsigned: u64 =
            b.iter().enumerate().map(|(i, &x)| if (148..156).contains(&i) { 32 } else { x as u64 }).sum();
        let signed: i64 =
            b.iter().enumerate().map(|(i, &x)| if (148..156).contains(&i) { 32 } else { x as i8 as i64 }).sum();
        if stored != unsigned && stored as i64 != signed {
            return Err(self.err("header checksum mismatch (not a tar archive, or corrupt)"));
        }
        let typeflag = b[156];
        let size_field = number(&b[124..136]).ok_or_else(|| self.err("bad size field"))?;
        let meta_kind = match typeflag {
            b'x' => Some(MetaKind::Pax),
            b'g' => Some(MetaKind::PaxGlobal),
            b'L' => Some(MetaKind::LongName),
            b'K' => Some(MetaKind::LongLink),
            _ => None,
        };
        if let Some(kind) = meta_kind {
            if size_field > MAX_META {
                return Err(self.err(format!("extended header of {size_field} bytes (at most {MAX_META})")));
            }
            self.meta.clear();
            let pad = padding(size_field);
            self.state = if size_field == 0 { State::Header } else { State::Meta { kind, remaining: size_field, pad } };
            return Ok(None);
        }
        let posix = &b[257..263] == b"ustar\0";
        let mut path = cstr(&b[0..100]).to_vec();
        if posix {
            let prefix = cstr(&b[345..500]);
            if !prefix.is_empty() {
                let mut p = prefix.to_vec();
                p.push(b'/');
                p.extend_from_slice(&path);
                path = p;
            }
        }
        let kind = match typeflag {
            b'0' | 0 | b'7' => Kind::File,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            other => Kind::Other(other),
        };
        let o = std::mem::take(&mut self.next);
        let path = o.path.unwrap_or(path);
        let link = o.link.unwrap_or_else(|| cstr(&b[157..257]).to_vec());
        if path.len() > MAX_PATH || link.len() > MAX_PATH {
            return Err(self.err(format!("a path longer than {MAX_PATH} bytes")));
        }
        let mode = number(&b[100..108]).ok_or_else(|| self.err("bad mode field"))? as u32 & 0o7777;
        let uid = match o.uid {
            Some(u) => u,
            None => number(&b[108..116]).ok_or_else(|| self.err("bad uid field"))?,
        };
        let gid = match o.gid {
            Some(g) => g,
            None => number(&b[116..124]).ok_or_else(|| self.err("bad gid field"))?,
        };
        let mtime = number(&b[136..148]).unwrap_or(0);
        let stored_size = o.size.unwrap_or(size_field);
        // As Go's archive/tar: these types carry no data whatever the size field says.
        let header_only =
            matches!(kind, Kind::HardLink | Kind::Symlink | Kind::Char | Kind::Block | Kind::Dir | Kind::Fifo);
        let data = if header_only { 0 } else { stored_size };
        let pad = padding(data);
        self.state = match kind {
            Kind::File => State::Data { remaining: data, pad },
            _ => State::Skip { remaining: data.saturating_add(pad) },
        };
        if let State::Skip { remaining: 0 } | State::Data { remaining: 0, .. } = self.state {
            self.state = State::Header;
        }
        let size = if kind == Kind::File { data } else { 0 };
        Ok(Some(Event::Entry(Entry { path, link, kind, mode, uid, gid, size, mtime })))
    }

    fn apply_meta(&mut self, kind: MetaKind, data: &[u8]) -> Result<(), TarError> {
        match kind {
            MetaKind::LongName => self.next.path = Some(cstr(data).to_vec()),
            MetaKind::LongLink => self.next.link = Some(cstr(data).to_vec()),
            MetaKind::PaxGlobal => {
                parse_pax(data).map_err(|e| self.err(e))?;
            }
            MetaKind::Pax => {
                for (key, value) in parse_pax(data).map_err(|e| self.err(e))? {
                    let num = |v: &[u8]| -> Result<u64, TarError> {
                        std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| self.err(format!("pax {} is not a number", String::from_utf8_lossy(key))))
                    };
                    match key {
                        b"path" => self.next.path = Some(value.to_vec()),
                        b"linkpath" => self.next.link = Some(value.to_vec()),
                        b"size" => self.next.size = Some(num(value)?),
                        b"uid" => self.next.uid = Some(num(value)?),
                        b"gid" => self.next.gid = Some(num(value)?),
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&x| x == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// An octal field (NUL/space padded) or GNU base-256 (high bit of the first byte set).
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = (field[0] & 0x3f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    octal(field)
}

fn octal(field: &[u8]) -> Option<u64> {
    let text = field.iter().copied().skip_while(|&b| b == b' ').take_while(|&b| b != 0 && b != b' ');
    let mut v: u64 = 0;
    let mut any = false;
    for b in text {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add((b - b'0') as u64)?;
        any = true;
    }
    // An all-blank field is 0 (some writers leave unused fields empty).
    let _ = any;
    Some(v)
}

/// pax records: `<len> <key>=<value>\n`, len counting the whole record.
/// One pax record: key and value.
type PaxRecord<'a> = (&'a [u8], &'a [u8]);

fn parse_pax(mut data: &[u8]) -> Result<Vec<PaxRecord<'_>>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let sp = data.iter().position(|&b| b == b' ').ok_or("pax record without a length")?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("pax record length is not a number")?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("pax record length does not match".into());
        }
        let record = &data[sp + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or("pax record without '='")?;
        out.push((&record[..eq], &record[eq + 1..]));
        data = &data[len..];
    }
    Ok(out)
}

#[cfg(test)]
#[path = "tar_tests.rs"]
mod tests;
