//! keel-mkimage MANIFEST OUT: writes the initramfs cpio (uncompressed) that MANIFEST describes.
//! The mtime of every entry is $SOURCE_DATE_EPOCH, or 0.

mod cpio;
mod manifest;

use manifest::Kind;
use std::process::ExitCode;

fn run(manifest_path: &str, out_path: &str) -> Result<u64, String> {
    let text = std::fs::read_to_string(manifest_path).map_err(|e| format!("{manifest_path}: {e}"))?;
    let read = |path: &str| std::fs::read_to_string(path).map_err(|e| e.to_string());
    let entries =
        manifest::parse(manifest_path, &text, &|name| std::env::var(name).ok(), &read).map_err(|e| e.to_string())?;
    let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.parse().map_err(|_| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
        Err(_) => 0,
    };
    let tmp = format!("{out_path}.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| format!("{tmp}: {e}"))?;
    let mut w = cpio::Writer::new(std::io::BufWriter::new(file), mtime);
    for e in &entries {
        let data = match &e.kind {
            Kind::File { source } => {
                std::fs::read(source).map_err(|err| format!("{}: source {}: {err}", e.path, source.display()))?
            }
            Kind::Symlink { target } => target.clone().into_bytes(),
            Kind::Dir | Kind::Node { .. } => Vec::new(),
        };
        w.entry(e, &data).map_err(|err| format!("{tmp}: {err}"))?;
    }
    w.finish().map_err(|e| format!("{tmp}: {e}"))?;
    std::fs::rename(&tmp, out_path).map_err(|e| format!("{out_path}: {e}"))?;
    Ok(entries.len() as u64)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [manifest, out] = args.as_slice() else {
        eprintln!("usage: keel-mkimage MANIFEST OUT.cpio");
        return ExitCode::from(2);
    };
    match run(manifest, out) {
        Ok(n) => {
            println!("mkimage: wrote {out} entries={n}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keel-mkimage: {e}");
            ExitCode::FAILURE
        }
    }
}
