//! Every reason the API refuses a signed config, command or upgrade, with its HTTP status: the one table the
//! three handlers answer from, and from which docs/api.md's table is generated (`KEEL_UPDATE_DOCS=1 cargo test
//! -p keel-api refusals` rewrites it; the test fails when the docs differ). 403: who signed; 422: what was sent;
//! 409: when and where; 429: too many; 500: the node's own fault.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Config,
    Command,
    Upgrade,
}

#[cfg(test)]
impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Command => "command",
            Kind::Upgrade => "upgrade",
        }
    }
}

pub struct Row {
    pub kind: Kind,
    pub code: &'static str,
    pub status: u16,
    /// What docs/api.md says it means (the table is generated from here).
    #[cfg_attr(not(test), allow(dead_code))]
    pub meaning: &'static str,
}

const fn row(kind: Kind, code: &'static str, status: u16, meaning: &'static str) -> Row {
    Row { kind, code, status, meaning }
}

use Kind::{Command as Cmd, Config as Cfg, Upgrade as Upg};

pub const TABLE: &[Row] = &[
    row(Cfg, "unsigned", 403, "no signature (the `signature` field missing or empty)"),
    row(Cfg, "bad-signature", 403, "the signature does not verify (wrong namespace, altered text)"),
    row(Cfg, "unknown-key", 403, "signed by a key `allowed_signers` does not trust for keel-config"),
    row(Cfg, "malformed", 422, "not TOML, or not a config"),
    row(Cfg, "invalid", 422, "fails validation (the detail names the first error)"),
    row(Cfg, "wrong-node", 409, "`[node]` targets another machine id or MAC"),
    row(Cfg, "expired", 409, "`node.expires` has passed"),
    row(Cfg, "not-newer", 409, "generation not above the running one or the rollback floor"),
    row(
        Cfg,
        "state-unavailable",
        409,
        "`keel.state=` names a volume that did not mount and no UEFI variable holds the floor",
    ),
    row(Cfg, "untrusted-image", 500, "this image trusts no signing key"),
    row(Cfg, "not-persisted", 500, "the rollback floor could not be written"),
    row(Cmd, "unsigned", 403, "no signature"),
    row(Cmd, "bad-signature", 403, "the signature does not verify"),
    row(Cmd, "unknown-key", 403, "signed by a key not trusted for keel-command"),
    row(Cmd, "malformed", 422, "not a command document"),
    row(Cmd, "wrong-node", 409, "`node` is another machine id"),
    row(Cmd, "wrong-action", 409, "signed for another action (reboot vs poweroff)"),
    row(Cmd, "expired", 409, "`expires` has passed"),
    row(Cmd, "too-far", 409, "`expires` more than 15 minutes ahead"),
    row(Cmd, "replayed", 409, "this nonce was used already"),
    row(Cmd, "too-many", 429, "64 unexpired commands are remembered already"),
    row(Cmd, "untrusted-image", 500, "this image trusts no signing key"),
    row(Cmd, "not-persisted", 500, "the nonce could not be recorded"),
    row(Upg, "unsigned", 403, "no signature before the image"),
    row(Upg, "bad-signature", 403, "the signature does not verify the streamed bytes"),
    row(Upg, "unknown-key", 403, "signed by a key not trusted for keel-image (nothing written)"),
    row(Upg, "malformed", 422, "the body is not a signature followed by an image"),
    row(Upg, "wrong-hash", 422, "the image's SHA-256 is not the pinned one"),
    row(Upg, "too-big", 422, "larger than the slot"),
    row(Upg, "not-a-slot-image", 422, "not a FAT slot image"),
    row(Upg, "incomplete", 422, "the body ended early"),
    row(Upg, "version-mismatch", 422, "the signed manifest does not say the `?version=` the upload claimed"),
    row(Upg, "unsupported", 409, "no UEFI slots or no state volume"),
    row(Upg, "busy", 409, "another upload or write"),
    row(Upg, "pending", 409, "a trial boot is due"),
    row(
        Upg,
        "downgrade",
        409,
        "older than the newest image this node committed, or an upload names no version once there is a floor",
    ),
    row(Upg, "write-failed", 500, "the read-back differed or I/O failed"),
    row(Upg, "record-unreadable", 500, "the upgrade record could not be read"),
    row(Upg, "record-failed", 500, "the upgrade record could not be written"),
    row(Upg, "boot-entry-failed", 500, "the boot entry could not be written"),
    row(Upg, "untrusted-image", 500, "this image trusts no signing key"),
    row(Upg, "internal", 500, "the writer failed unexpectedly"),
];

/// The HTTP status for `code`; a code missing from the table (a bug the tests look for) is 500.
pub fn status(kind: Kind, code: &str) -> u16 {
    TABLE.iter().find(|r| r.kind == kind && r.code == code).map(|r| r.status).unwrap_or(500)
}

/// docs/api.md's table.
#[cfg(test)]
pub fn markdown() -> String {
    let mut out = String::from("| request | reason | HTTP | meaning |\n|---|---|---|---|\n");
    for r in TABLE {
        out.push_str(&format!("| {} | `{}` | {} | {} |\n", r.kind.name(), r.code, r.status, r.meaning));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- refusals: generated from api/src/refusals.rs; do not edit -->\n";
    const END: &str = "<!-- refusals: end -->";

    #[test]
    fn docs_api_md_has_the_table_the_code_answers_from() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md");
        let text = std::fs::read_to_string(path).unwrap();
        let (start, end) = (text.find(BEGIN).expect("docs/api.md lacks the refusals marker"), text.find(END).unwrap());
        let want = format!("{}{BEGIN}{}{}", &text[..start], markdown(), &text[end..]);
        if std::env::var_os("KEEL_UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        assert!(
            text == want,
            "docs/api.md's refusal table is out of date: KEEL_UPDATE_DOCS=1 cargo test -p keel-api refusals"
        );
    }

    #[test]
    fn one_row_per_code_and_the_statuses_clients_rely_on() {
        for (i, a) in TABLE.iter().enumerate() {
            assert!(!TABLE[..i].iter().any(|b| b.kind == a.kind && b.code == a.code), "{} twice", a.code);
        }
        for kind in [Kind::Config, Kind::Command, Kind::Upgrade] {
            assert_eq!(status(kind, "unsigned"), 403);
            assert_eq!(status(kind, "malformed"), 422);
        }
        assert_eq!(status(Kind::Config, "not-newer"), 409);
        assert_eq!(status(Kind::Command, "too-many"), 429);
        assert_eq!(status(Kind::Upgrade, "write-failed"), 500);
        assert_eq!(status(Kind::Upgrade, "no-such-code"), 500);
    }
}
