//! The SSH wire encoding (RFC 4251 `uint32`, `string`, `mpint`) and OpenSSH's base64 armor.

use base64::Engine;

/// What is wrong with some encoded bytes; the caller says which structure it was reading.
pub type WireError = &'static str;

/// Reads SSH wire fields from a byte slice, front to back.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err("truncated");
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn string(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()?;
        self.take(usize::try_from(len).map_err(|_| "truncated")?)
    }

    pub fn str(&mut self) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.string()?).map_err(|_| "text field is not UTF-8")
    }

    /// A non-negative `mpint` of at most `width` bytes, left-padded to `width` (OpenSSH rejects negative and
    /// non-minimal encodings, and so does this).
    #[cfg_attr(not(feature = "ecdsa"), allow(dead_code))]
    pub fn mpint(&mut self, width: usize) -> Result<Vec<u8>, WireError> {
        let raw = self.string()?;
        if raw.first().is_some_and(|b| b & 0x80 != 0) {
            return Err("negative mpint");
        }
        if raw.len() >= 2 && raw[0] == 0 && raw[1] & 0x80 == 0 {
            return Err("mpint has a needless leading zero");
        }
        let digits = if raw.first() == Some(&0) { &raw[1..] } else { raw };
        if digits.len() > width {
            return Err("mpint too large");
        }
        let mut out = vec![0u8; width - digits.len()];
        out.extend_from_slice(digits);
        Ok(out)
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Fails if anything is left: OpenSSH refuses trailing data in every structure used here.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err("trailing data")
        }
    }
}

/// Builds SSH wire fields.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Writer {
        self.buf.extend_from_slice(bytes);
        self
    }

    pub fn u8(&mut self, v: u8) -> &mut Writer {
        self.buf.push(v);
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Writer {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn string(&mut self, bytes: &[u8]) -> &mut Writer {
        // Every structure here is far below 4 GiB; saturating keeps this total without a panic path.
        self.u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        self.raw(bytes)
    }
}

pub fn b64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Standard base64 with padding; whitespace is ignored (as OpenSSH's decoder does).
pub fn b64_decode(text: &str) -> Result<Vec<u8>, WireError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(compact).map_err(|_| "bad base64")
}

/// `-----BEGIN {label}-----`, base64 in lines of 70 characters (as OpenSSH writes), `-----END {label}-----`.
pub fn armor(label: &str, bytes: &[u8]) -> String {
    let b64 = b64_encode(bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(70) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The bytes inside `-----BEGIN {label}-----` … `-----END {label}-----` (surrounding whitespace allowed).
pub fn dearmor(label: &str, text: &str) -> Result<Vec<u8>, String> {
    let (begin, end) = (format!("-----BEGIN {label}-----"), format!("-----END {label}-----"));
    let body = text.trim().strip_prefix(begin.as_str()).ok_or_else(|| format!("does not start with {begin}"))?;
    let body = body.trim_end().strip_suffix(end.as_str()).ok_or_else(|| format!("does not end with {end}"))?;
    if body.contains("-----") {
        return Err(format!("more than one {label} block"));
    }
    b64_decode(body).map_err(|e| format!("{e} between the {label} lines"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let mut w = Writer::default();
        w.u8(7).u32(0xdead_beef).string(b"ssh-ed25519").raw(b"xy");
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u32(), Ok(0xdead_beef));
        assert_eq!(r.str(), Ok("ssh-ed25519"));
        assert_eq!(r.finish(), Err("trailing data"));
        assert_eq!(r.take(2), Ok(&b"xy"[..]));
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(r.u8(), Err("truncated"));
        assert_eq!(Reader::new(&[0, 0, 0, 9, 1]).string(), Err("truncated"));
    }

    #[test]
    fn mpints_are_strict() {
        let mp = |bytes: &[u8]| {
            let mut w = Writer::default();
            w.string(bytes);
            Reader::new(&w.buf).mpint(4)
        };
        assert_eq!(mp(&[0x00, 0x80, 1]), Ok(vec![0, 0, 0x80, 1]));
        assert_eq!(mp(&[0x7f]), Ok(vec![0, 0, 0, 0x7f]));
        assert_eq!(mp(&[0x80]), Err("negative mpint"));
        assert_eq!(mp(&[0x00, 0x01]), Err("mpint has a needless leading zero"));
        assert_eq!(mp(&[1, 2, 3, 4, 5]), Err("mpint too large"));
        assert_eq!(mp(&[]), Ok(vec![0; 4]));
    }

    #[test]
    fn armor_round_trips_and_wraps_at_70() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = armor("SSH SIGNATURE", &bytes);
        assert!(text.lines().all(|l| l.len() <= 70));
        assert_eq!(dearmor("SSH SIGNATURE", &format!("\n{text}\n")), Ok(bytes));
        assert!(dearmor("SSH SIGNATURE", "hello").unwrap_err().contains("does not start with"));
        let cut = text.replace("-----END SSH SIGNATURE-----", "");
        assert!(dearmor("SSH SIGNATURE", &cut).unwrap_err().contains("does not end with"));
    }
}
