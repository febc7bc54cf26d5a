//! The streaming tar reader and the entry decision on arbitrary bytes, fed in pieces whose size the first byte
//! picks: no panic, data never exceeds what the entry declared, and no decided path escapes the rootfs.
#![no_main]

use keel_oci::tar::{Event, TarReader};
use keel_oci::unpack::{decide, Action, Options};
use libfuzzer_sys::fuzz_target;

fn inside(p: &[u8]) -> bool {
    p.first() != Some(&b'/') && !p.split(|&b| b == b'/').any(|c| c == b".." || c == b"." || c.is_empty())
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, archive)) = data.split_first() else { return };
    let chunk = chunk as usize + 1;
    let mut r = TarReader::new();
    let mut left = 0u64;
    for piece in archive.chunks(chunk) {
        let mut at = 0;
        while at < piece.len() {
            let Ok((used, event)) = r.feed(&piece[at..]) else { return };
            assert!(used > 0 || at == piece.len(), "no progress");
            at += used;
            match event {
                Some(Event::Entry(e)) => {
                    assert_eq!(left, 0, "entry before the previous one's data ended");
                    left = e.size;
                    for allow_setuid in [false, true] {
                        match decide(&e, Options { allow_setuid }) {
                            Ok(Action::File { path, mode, .. }) | Ok(Action::Dir { path, mode, .. }) => {
                                assert!(inside(&path));
                                assert!(allow_setuid || mode & 0o6000 == 0);
                            }
                            Ok(Action::HardLink { path, target }) => assert!(inside(&path) && inside(&target)),
                            Ok(Action::Symlink { path, .. }) | Ok(Action::Whiteout { path }) => assert!(inside(&path)),
                            Ok(Action::Opaque { dir }) => assert!(dir.is_empty() || inside(&dir)),
                            Ok(Action::Skip { .. }) | Err(_) => {}
                        }
                    }
                }
                Some(Event::Data(d)) => {
                    assert!(d.len() as u64 <= left);
                    left -= d.len() as u64;
                }
                Some(Event::End) | None => {}
            }
        }
    }
    let _ = r.finish();
});
