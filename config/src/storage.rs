//! Block device selectors: the syntax of `[[storage.volume]] device = "…"` and of the kernel's `keel.state=`.
//! Only the syntax lives here (keelctl checks it too); the init matches selectors against the disks it finds.
//!
//! | selector | picks |
//! |---|---|
//! | `/dev/vdb`, `/dev/vdb1` | that disk or partition |
//! | `serial:XYZ` | the disk whose serial number is `XYZ` |
//! | `wwn:0x5000c500a1b2c3d4` | the disk whose World Wide Name is that (`naa.`/`eui.`/`0x` prefixes are ignored) |
//! | `model:NAME` | the disk whose model is `NAME` (spaces written as `_`: `model:SAMSUNG_MZ7LH960`) |
//! | `path:ID` | the disk at that place on the buses (udev's by-path style: `path:pci-0000:3b:00.0-nvme-1`) |
//! | `partlabel:NAME` | the GPT partition named `NAME` |
//! | `label:NAME` | the filesystem labelled `NAME` (on a partition or a whole disk) |
//! | `blank`, `blank:>=4G` | the volume's own partition if one exists, else the first blank disk (of at least 4 GiB) |

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Path(String),
    Serial(String),
    Wwn(String),
    /// The disk's model, spaces written as `_` (as udev's `ID_MODEL`).
    Model(String),
    /// Where the disk sits on the buses (`pci-0000:00:1f.2-ata-1`), as the node reports it in status.
    ByPath(String),
    PartLabel(String),
    Label(String),
    /// A blank disk of at least `min_bytes`.
    Blank {
        min_bytes: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

const KINDS: &str = "/dev/NAME, serial:…, wwn:…, model:…, path:…, partlabel:…, label:…, blank or blank:>=SIZE";

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Selector, SelectorError> {
        let err = |m: String| Err(SelectorError(m));
        if s.trim().is_empty() {
            return err("must name a block device".into());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return err(format!("{s:?} must not contain spaces or control characters"));
        }
        if s.starts_with('/') {
            let name = s.strip_prefix("/dev/").unwrap_or("");
            if name.is_empty() || name.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
                return err(format!("{s:?} is not a device path under /dev/"));
            }
            return Ok(Selector::Path(s.to_string()));
        }
        if s == "blank" {
            return Ok(Selector::Blank { min_bytes: 0 });
        }
        let Some((kind, value)) = s.split_once(':') else {
            return err(format!("{s:?} is not a device selector; expected {KINDS}"));
        };
        if value.is_empty() && kind != "blank" {
            return err(format!("{kind}: needs a value after the colon"));
        }
        match kind {
            "serial" => Ok(Selector::Serial(value.to_string())),
            "wwn" => Ok(Selector::Wwn(value.to_string())),
            "model" => Ok(Selector::Model(value.to_string())),
            "path" => Ok(Selector::ByPath(value.to_string())),
            "partlabel" if value.encode_utf16().count() > 36 => {
                err("partlabel: GPT names are at most 36 characters".into())
            }
            "partlabel" => Ok(Selector::PartLabel(value.to_string())),
            "label" => Ok(Selector::Label(value.to_string())),
            "blank" => match value.strip_prefix(">=").and_then(parse_size) {
                Some(min_bytes) => Ok(Selector::Blank { min_bytes }),
                None => err(format!("{s:?}: expected blank:>=SIZE, e.g. blank:>=4G (K, M, G, T are powers of 1024)")),
            },
            _ => err(format!("unknown selector kind {kind:?}; expected {KINDS}")),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Path(p) => f.write_str(p),
            Selector::Serial(v) => write!(f, "serial:{v}"),
            Selector::Wwn(v) => write!(f, "wwn:{v}"),
            Selector::Model(v) => write!(f, "model:{v}"),
            Selector::ByPath(v) => write!(f, "path:{v}"),
            Selector::PartLabel(v) => write!(f, "partlabel:{v}"),
            Selector::Label(v) => write!(f, "label:{v}"),
            Selector::Blank { min_bytes: 0 } => f.write_str("blank"),
            Selector::Blank { min_bytes } => write!(f, "blank:>={}", format_size(*min_bytes)),
        }
    }
}

/// A model or vendor string as selectors write it: trimmed, each run of spaces one `_` (`QEMU HARDDISK` ->
/// `QEMU_HARDDISK`), so it fits on a kernel command line.
pub fn model_key(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join("_")
}

/// `4G`, `512M`, `100K`, `1T` (powers of 1024; an optional trailing `B`/`iB`), or a plain number of bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.strip_suffix("iB").or_else(|| s.strip_suffix('B')).unwrap_or(s);
    let (digits, shift) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 10),
        'M' | 'm' => (&s[..s.len() - 1], 20),
        'G' | 'g' => (&s[..s.len() - 1], 30),
        'T' | 't' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

/// The shortest exact form: `4G` rather than `4096M`.
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_prints_it_back() {
        let cases = [
            ("/dev/vdb", Selector::Path("/dev/vdb".into())),
            ("/dev/nvme0n1p2", Selector::Path("/dev/nvme0n1p2".into())),
            ("serial:QM00001", Selector::Serial("QM00001".into())),
            ("wwn:0x5000c500a1b2c3d4", Selector::Wwn("0x5000c500a1b2c3d4".into())),
            ("model:QEMU_HARDDISK", Selector::Model("QEMU_HARDDISK".into())),
            ("path:pci-0000:00:1f.2-ata-1", Selector::ByPath("pci-0000:00:1f.2-ata-1".into())),
            ("partlabel:KEEL_STATE", Selector::PartLabel("KEEL_STATE".into())),
            ("label:data", Selector::Label("data".into())),
            ("blank", Selector::Blank { min_bytes: 0 }),
            ("blank:>=4G", Selector::Blank { min_bytes: 4 << 30 }),
            ("blank:>=64M", Selector::Blank { min_bytes: 64 << 20 }),
        ];
        for (text, want) in cases {
            let got: Selector = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text);
        }
        assert_eq!("serial:a:b".parse::<Selector>().unwrap(), Selector::Serial("a:b".into()));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let bad = |s: &str| s.parse::<Selector>().unwrap_err().0;
        assert_eq!(bad(" "), "must name a block device");
        assert!(bad("/dev/").contains("not a device path"), "{}", bad("/dev/"));
        assert!(bad("/etc/passwd").contains("not a device path"));
        assert!(bad("/dev/../etc").contains("not a device path"));
        assert!(bad("vdb").contains("not a device selector"));
        assert!(bad("uuid:1234").contains("unknown selector kind \"uuid\""));
        assert!(bad("serial:").contains("needs a value"));
        assert!(bad("blank:4G").contains("blank:>=SIZE"));
        assert!(bad("blank:>=lots").contains("blank:>=SIZE"));
        assert!(bad("label:a b").contains("spaces"));
        assert!(bad(&format!("partlabel:{}", "x".repeat(37))).contains("36"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("4GiB"), Some(4 << 30));
        assert_eq!(parse_size("4GB"), Some(4 << 30));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("-1G"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert_eq!(format_size(4 << 30), "4G");
        assert_eq!(format_size(1536 << 20), "1536M");
        assert_eq!(format_size(1000), "1000");
    }

    #[test]
    fn model_keys_join_words_with_underscores() {
        assert_eq!(model_key("  QEMU HARDDISK   "), "QEMU_HARDDISK");
        assert_eq!(model_key("SAMSUNG  MZ7LH960HAJR-00005"), "SAMSUNG_MZ7LH960HAJR-00005");
        assert_eq!(model_key("QEMU_HARDDISK"), "QEMU_HARDDISK");
    }
}
