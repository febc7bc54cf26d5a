//! End to end: on a UEFI server without a serial line, the operator's KVM/iKVM shows the EFI framebuffer. One OVMF
//! boot with a VGA card and `console=tty0 console=ttyS0`: the kernel's efifb + fbcon draw the same `keel:` lines the
//! serial console carries. The test reads the screen back from QEMU (`screendump`) and recognises the text cell by
//! cell against the kernel's own 8x16 font (`lib/fonts/font_8x16.c`, the only font the kernel builds in), so what
//! it asserts is pixels a person would read, not a kernel log saying a framebuffer exists.

use keel_e2e::{build_dir, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// OVMF as one image (code + variables), for `-bios`: enough for a `-kernel` boot through the EFI stub.
const OVMF_FD: &str = "/usr/share/ovmf/OVMF.fd";
const FONT_FILE: &str = "lib/fonts/font_8x16.c";

/// The kernel's 8x16 font, from the extracted source the kernel build left, or from Debian's source tarball (a
/// cached kernel leaves no extracted tree): 256 glyphs of 16 rows, one byte per row, most significant bit left.
fn kernel_font() -> Vec<[u8; 16]> {
    let tree = build_dir().join("linux-src").join(FONT_FILE);
    let source = match std::fs::read_to_string(&tree) {
        Ok(text) => text,
        Err(_) => {
            let tarball = "/usr/src/linux-source-6.12.tar.xz";
            let out = Command::new("tar")
                .args(["-xJOf", tarball, &format!("linux-source-6.12/{FONT_FILE}")])
                .output()
                .unwrap_or_else(|e| panic!("tar: {e} (make setup installs tar)"));
            assert!(out.status.success(), "{FONT_FILE} from {tarball}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    // Each row of a glyph is a line `\t0x7e, /* 01111110 */`.
    let bytes: Vec<u8> = source
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let hex = l.strip_prefix("0x")?.split(',').next()?;
            l.contains("/*").then(|| u8::from_str_radix(hex, 16).ok()).flatten()
        })
        .collect();
    assert_eq!(bytes.len(), 256 * 16, "{FONT_FILE}: {} glyph rows, expected 4096", bytes.len());
    bytes.chunks(16).map(|g| g.try_into().unwrap_or([0; 16])).collect()
}

/// A binary PPM (`P6`, as QEMU's screendump writes it): width, height, RGB bytes.
fn read_ppm(path: &Path) -> (usize, usize, Vec<u8>) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Header: four whitespace-separated fields (P6, width, height, maxval), then one whitespace byte.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while i < data.len() && data[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < data.len() && !data[i].is_ascii_whitespace() {
            i += 1;
        }
        assert!(i > start, "{}: truncated PPM header", path.display());
        fields.push(String::from_utf8_lossy(&data[start..i]).into_owned());
    }
    assert_eq!(fields[0], "P6", "{}: not a binary PPM", path.display());
    let (w, h): (usize, usize) = (fields[1].parse().unwrap_or(0), fields[2].parse().unwrap_or(0));
    let pixels = data[i + 1..].to_vec();
    assert_eq!(pixels.len(), w * h * 3, "{}: {w}x{h} but {} pixel bytes", path.display(), pixels.len());
    (w, h, pixels)
}

/// The text on the screen: each 8x16 cell from the top left (where fbcon starts) read as the glyph whose lit
/// pixels it shows; a cell that is no printable ASCII glyph (the cursor, a partial redraw) reads as `?`.
fn screen_text(dump: &Path, glyphs: &HashMap<[u8; 16], char>) -> Vec<String> {
    let (w, h, px) = read_ppm(dump);
    let lit = |x: usize, y: usize| {
        let p = &px[(y * w + x) * 3..][..3];
        p.iter().map(|&c| u32::from(c)).sum::<u32>() > 3 * 64
    };
    (0..h / 16)
        .map(|row| {
            let line: String = (0..w / 8)
                .map(|col| {
                    let mut cell = [0u8; 16];
                    for (y, bits) in cell.iter_mut().enumerate() {
                        for x in 0..8 {
                            if lit(col * 8 + x, row * 16 + y) {
                                *bits |= 0x80 >> x;
                            }
                        }
                    }
                    glyphs.get(&cell).copied().unwrap_or('?')
                })
                .collect();
            line.trim_end().to_string()
        })
        .collect()
}

#[test]
fn qemu_keel_lines_reach_the_efi_framebuffer() {
    assert!(Path::new(OVMF_FD).exists(), "{OVMF_FD} is missing (make setup installs Debian's ovmf)");
    let font = kernel_font();
    // Printable ASCII only; space is the empty cell.
    let glyphs: HashMap<[u8; 16], char> = (0x20u8..0x7f).map(|c| (font[c as usize], c as char)).collect();
    assert_eq!(glyphs.len(), 0x7f - 0x20, "two printable glyphs of the kernel font look the same");

    let run_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e");
    std::fs::create_dir_all(&run_dir).unwrap_or_else(|e| panic!("{}: {e}", run_dir.display()));
    let dump = run_dir.join("framebuffer.ppm");
    let cfg = VmConfig {
        // ttyS0 last: /dev/console stays the serial line the harness reads; kmsg lines reach every console.
        append: "console=tty0 console=ttyS0".into(),
        extra_args: ["-bios", OVMF_FD, "-vga", "std"].map(String::from).to_vec(),
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("framebuffer_efi", &cfg);
    vm.expect_ready();
    let net_ready = vm.expect_anywhere("keel: net.ready ", STEP_TIMEOUT);
    // What the kernel said about framebuffers, for the failure message.
    let fb_lines: Vec<String> = vm
        .transcript()
        .into_iter()
        .filter(|l| l.contains("efifb") || l.contains("fb0") || l.contains("fbcon"))
        .collect();

    // The screen shows the serial console's net.ready line, as text (a long line wraps at the screen's width).
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        let _ = std::fs::remove_file(&dump);
        let reply = vm.qmp(&format!(r#"{{"execute":"screendump","arguments":{{"filename":"{}"}}}}"#, dump.display()));
        assert!(reply.contains("return"), "screendump: {reply}");
        let screen = screen_text(&dump, &glyphs);
        let shown = screen.iter().find(|row| row.contains("keel: net.ready "));
        if let Some(row) = shown {
            let start = row.find("keel: ").unwrap_or(0);
            assert!(
                net_ready.contains(&row[start..]),
                "the screen's line {:?} is not the serial console's {net_ready:?}",
                &row[start..]
            );
            eprintln!("framebuffer: {} text rows; shows {row:?}", screen.len());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no keel: net.ready line on the EFI framebuffer after {}s; the kernel said {fb_lines:#?}; the screen reads:\n{}",
            BOOT_TIMEOUT.as_secs(),
            screen.join("\n")
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let _ = std::fs::remove_file(&dump);
}
