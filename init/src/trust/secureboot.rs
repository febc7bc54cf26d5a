//! Whether the firmware enforced UEFI Secure Boot for this boot, and who signed the running image.
//!
//! The firmware says whether it enforced signatures in the global `SecureBoot` variable (1 = on; `SetupMode` 1
//! means no platform key, i.e. nothing is enforced). The firmware does not say which db key verified the image,
//! so the image carries the certificate it was built to be signed for (`/etc/keel/secureboot-signer.der`, inside
//! the signed UKI, with its subject in `.txt`), and the node checks that the firmware's `db` holds it.

use crate::upgrade::efivar::{Vars, GLOBAL};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

pub const SIGNER_DER: &str = "/etc/keel/secureboot-signer.der";
pub const SIGNER_SUBJECT: &str = "/etc/keel/secureboot-signer.txt";
/// EFI_IMAGE_SECURITY_DATABASE_GUID: db, dbx.
const SECURITY_DB: &str = "d719b2cb-3d3a-4596-a3bc-dad00e67656f";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureBoot {
    /// UEFI firmware with a variable store (false: BIOS or QEMU -kernel without OVMF).
    pub uefi: bool,
    /// The firmware verified the image against db before running it.
    pub enabled: bool,
    pub setup_mode: bool,
    /// The image's signing certificate: subject and SHA-256 of its DER.
    pub signer: Option<String>,
    pub signer_sha256: Option<String>,
    /// Whether the firmware's db holds that certificate (None: no db to read).
    pub signer_enrolled: Option<bool>,
}

fn flag(vars: &Vars, name: &str) -> bool {
    matches!(vars.get(name, GLOBAL), Ok(Some(v)) if v.first() == Some(&1))
}

/// What the firmware and the image say; pure apart from reading `vars`.
pub fn observe(vars: &Vars, der: Option<&[u8]>, subject: Option<&str>) -> SecureBoot {
    let uefi = vars.dir.join(format!("SecureBoot-{GLOBAL}")).exists() || vars.available();
    let db = vars.get("db", SECURITY_DB).ok().flatten();
    let enrolled = match (der, &db) {
        (Some(der), Some(db)) if !der.is_empty() => Some(db.windows(der.len()).any(|w| w == der)),
        (Some(_), None) if uefi => Some(false),
        _ => None,
    };
    SecureBoot {
        uefi,
        enabled: flag(vars, "SecureBoot") && !flag(vars, "SetupMode"),
        setup_mode: flag(vars, "SetupMode"),
        signer: subject.map(|s| s.trim().trim_start_matches("subject=").trim().to_string()).filter(|s| !s.is_empty()),
        signer_sha256: der.map(|d| Sha256::digest(d).iter().map(|b| format!("{b:02x}")).collect()),
        signer_enrolled: enrolled,
    }
}

/// This boot's answer, read once (the variables cannot change under a running boot in a way that matters).
pub fn current() -> &'static SecureBoot {
    static CURRENT: OnceLock<SecureBoot> = OnceLock::new();
    CURRENT.get_or_init(|| {
        let der = std::fs::read(SIGNER_DER).ok();
        let subject = std::fs::read_to_string(SIGNER_SUBJECT).ok();
        observe(&Vars::system(), der.as_deref(), subject.as_deref())
    })
}

/// One line at boot: `trust.secure_boot enabled=… signer=… enrolled=…`.
pub fn log_boot() {
    let sb = current();
    log::info!(
        "trust.secure_boot enabled={} uefi={} setup_mode={} signer={} signer_sha256={} enrolled={}",
        sb.enabled,
        sb.uefi,
        sb.setup_mode,
        crate::logging::q(sb.signer.as_deref().unwrap_or("none")),
        sb.signer_sha256.as_deref().unwrap_or("none"),
        sb.signer_enrolled.map_or("unknown".to_string(), |e| e.to_string())
    );
}

/// The Secure Boot fields of `boot` in `/v1/status`.
pub fn fill_boot(sb: &SecureBoot, boot: &mut keel_config::status::BootStatus) {
    boot.secure_boot = sb.enabled;
    boot.uefi = sb.uefi;
    boot.setup_mode = sb.setup_mode;
    boot.signer = sb.signer.clone();
    boot.signer_sha256 = sb.signer_sha256.clone();
    boot.signer_enrolled = sb.signer_enrolled;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> Vars {
        let dir = std::env::temp_dir().join(format!("keel-sb-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Vars { dir }
    }

    #[test]
    fn enforcing_needs_secure_boot_on_and_setup_mode_off() {
        let vars = store("modes");
        let der = b"\x30\x82certificate-bytes";
        let none = observe(&vars, Some(der), Some("subject=CN=Keel db\n"));
        assert!(!none.uefi && !none.enabled);
        assert_eq!(none.signer.as_deref(), Some("CN=Keel db"));
        assert_eq!(none.signer_enrolled, None);
        vars.set("SecureBoot", GLOBAL, &[1]).unwrap();
        vars.set("SetupMode", GLOBAL, &[1]).unwrap();
        let setup = observe(&vars, Some(der), None);
        assert!(setup.uefi && !setup.enabled && setup.setup_mode);
        assert_eq!(setup.signer_enrolled, Some(false), "no db at all: not enrolled");
        vars.set("SetupMode", GLOBAL, &[0]).unwrap();
        let mut db = b"list-header-and-owner".to_vec();
        db.extend_from_slice(der);
        vars.set("db", SECURITY_DB, &db).unwrap();
        let on = observe(&vars, Some(der), None);
        assert!(on.enabled && !on.setup_mode);
        assert_eq!(on.signer_enrolled, Some(true));
        assert_eq!(on.signer_sha256.as_ref().map(String::len), Some(64));
        vars.set("db", SECURITY_DB, b"someone else's certificate").unwrap();
        assert_eq!(observe(&vars, Some(der), None).signer_enrolled, Some(false));
        vars.set("SecureBoot", GLOBAL, &[0]).unwrap();
        assert!(!observe(&vars, Some(der), None).enabled);
        let _ = std::fs::remove_dir_all(&vars.dir);
    }
}
