use super::*;

/// A ustar header block for the tests (checksum filled in).
pub(crate) fn header(name: &str, typeflag: u8, size: u64, link: &str, mode: u32) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[..name.len()].copy_from_slice(name.as_bytes());
    let field = |b: &mut Vec<u8>, at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        b[at..at + width].copy_from_slice(s.as_bytes());
    };
    field(&mut b, 100, 8, mode as u64);
    field(&mut b, 108, 8, 1000);
    field(&mut b, 116, 8, 100);
    field(&mut b, 124, 12, size);
    field(&mut b, 136, 12, 0);
    b[156] = typeflag;
    b[157..157 + link.len()].copy_from_slice(link.as_bytes());
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[148..156].copy_from_slice(b"        ");
    let sum: u64 = b.iter().map(|&x| x as u64).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
    b
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(512) * 512, 0);
    v
}

fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        let mut len = body.len() + 1;
        while format!("{len}").len() + body.len() != len {
            len += 1;
        }
        out.extend_from_slice(format!("{len}{body}").as_bytes());
    }
    out
}

/// Feeds `archive` in pieces of `chunk` bytes; returns the entries with their data.
fn read_all(archive: &[u8], chunk: usize) -> Result<Vec<(Entry, Vec<u8>)>, TarError> {
    let mut r = TarReader::new();
    let mut out: Vec<(Entry, Vec<u8>)> = Vec::new();
    for piece in archive.chunks(chunk) {
        let mut at = 0;
        while at < piece.len() {
            let (used, event) = r.feed(&piece[at..])?;
            at += used;
            match event {
                Some(Event::Entry(e)) => out.push((e, Vec::new())),
                Some(Event::Data(d)) => out.last_mut().expect("data after an entry").1.extend_from_slice(d),
                Some(Event::End) | None => {}
            }
        }
    }
    r.finish()?;
    Ok(out)
}

fn sample() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend(header("./", b'5', 0, "", 0o755));
    t.extend(header("hello.txt", b'0', 11, "", 0o644));
    t.extend(padded(b"hello world"));
    t.extend(header("empty", b'0', 0, "", 0o600));
    t.extend(header("sh", b'2', 0, "busybox", 0o777));
    let long = format!("{}/file", "d".repeat(150));
    let p = pax(&[("path", &long), ("uid", "70000")]);
    t.extend(header("PaxHeaders/x", b'x', p.len() as u64, "", 0o644));
    t.extend(padded(&p));
    t.extend(header("short", b'0', 3, "", 0o644));
    t.extend(padded(b"abc"));
    let gnu = format!("{}/gnu\0", "g".repeat(120));
    t.extend(header("././@LongLink", b'L', gnu.len() as u64, "", 0));
    t.extend(padded(gnu.as_bytes()));
    t.extend(header("trunc", b'5', 0, "", 0o755));
    t.extend(header("dev/null", b'3', 0, "", 0o666));
    t.extend(vec![0u8; 1024]);
    t
}

#[test]
fn reads_ustar_pax_and_gnu_entries_in_any_chunking() {
    let t = sample();
    let expect = read_all(&t, t.len()).unwrap();
    let names: Vec<String> = expect.iter().map(|(e, _)| String::from_utf8_lossy(&e.path).into_owned()).collect();
    assert_eq!(names[..4], ["./", "hello.txt", "empty", "sh"]);
    assert_eq!(names[4], format!("{}/file", "d".repeat(150)));
    assert_eq!(names[5], format!("{}/gnu", "g".repeat(120)));
    assert_eq!(names[6], "dev/null");
    assert_eq!(expect[1].1, b"hello world");
    assert_eq!(expect[1].0.size, 11);
    assert_eq!(expect[3].0.link, b"busybox");
    assert_eq!(expect[3].0.kind, Kind::Symlink);
    assert_eq!(expect[4].0.uid, 70000);
    assert_eq!(expect[4].1, b"abc");
    assert_eq!(expect[5].0.kind, Kind::Dir);
    assert_eq!(expect[6].0.kind, Kind::Char);
    for chunk in [1, 7, 511, 512, 513, 4096] {
        assert_eq!(read_all(&t, chunk).unwrap(), expect, "chunk {chunk}");
    }
}

#[test]
fn pax_size_overrides_the_header() {
    let mut t = Vec::new();
    let p = pax(&[("size", "600")]);
    t.extend(header("PaxHeaders/big", b'x', p.len() as u64, "", 0o644));
    t.extend(padded(&p));
    t.extend(header("big", b'0', 0, "", 0o644));
    t.extend(padded(&[7u8; 600]));
    t.extend(vec![0u8; 1024]);
    let got = read_all(&t, 100).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, vec![7u8; 600]);
}

#[test]
fn refuses_corrupt_truncated_and_oversized_archives() {
    let t = sample();
    // Truncated inside file data, inside a header, and inside a pax header.
    for cut in [512 + 512 + 5, 512 + 100, 512 * 5 + 10] {
        assert!(read_all(&t[..cut], 64).is_err(), "cut at {cut}");
    }
    let mut bad = t.clone();
    bad[512 + 3] ^= 1; // a name byte of hello.txt: checksum no longer matches
    assert!(read_all(&bad, 512).unwrap_err().why.contains("checksum"));
    let mut meta = header("PaxHeaders/x", b'x', MAX_META + 1, "", 0o644);
    meta.extend(vec![0u8; 1024]);
    assert!(read_all(&meta, 512).is_err());
    let mut badpax = header("PaxHeaders/x", b'x', 10, "", 0o644);
    badpax.extend(padded(b"99 path=x\n"));
    assert!(read_all(&badpax, 512).is_err());
    let mut badnum = header("PaxHeaders/x", b'x', 12, "", 0o644);
    badnum.extend(padded(b"12 size=-1\n\n"));
    assert!(read_all(&badnum, 512).is_err());
    assert!(read_all(&[0x41; 512], 512).is_err());
}

#[test]
fn numbers_octal_and_base256() {
    assert_eq!(number(b"0000644\0"), Some(0o644));
    assert_eq!(number(b"   644 \0"), Some(0o644));
    assert_eq!(number(b"\0\0\0\0"), Some(0));
    assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]), Some(1 << 32));
    assert_eq!(number(&[0xff, 0xff]), None);
    assert_eq!(number(b"0009"), None);
    assert_eq!(number(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), None);
}
