//! SSHSIG accept/reject. Fixtures were made by OpenSSH 9.2's ssh-keygen over the message "hello\n"; the interop
//! tests in tests/ssh_keygen.rs run the real ssh-keygen both ways.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

const MESSAGE: &[u8] = b"hello\n";
const ED_PUB: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPTURNHOBDrluPGxy7ki2JDGEkifycv+uP38ny0BTTqj ops@example";
const ED_FINGERPRINT: &str = "SHA256:qyeHPviq7cCVshXmWCSFaFF5UVnptQnAl1RygmWcLW0";
const ED_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACD01ETRzgQ65bjxscu5ItiQxhJIn8nL/rj9/J8tAU06owAAAJAp2S5fKdku
XwAAAAtzc2gtZWQyNTUxOQAAACD01ETRzgQ65bjxscu5ItiQxhJIn8nL/rj9/J8tAU06ow
AAAEDo/H1NL3qDELs611TxzLsZcTxcy6viQOeVgelFzqigfPTURNHOBDrluPGxy7ki2JDG
Ekifycv+uP38ny0BTTqjAAAAC29wc0BleGFtcGxlAQI=
-----END OPENSSH PRIVATE KEY-----
";
const ED_SIG_SHA512: &str = "-----BEGIN SSH SIGNATURE-----
U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAg9NRE0c4EOuW48bHLuSLYkMYSSJ
/Jy/64/fyfLQFNOqMAAAALa2VlbC1jb25maWcAAAAAAAAABnNoYTUxMgAAAFMAAAALc3No
LWVkMjU1MTkAAABA/NdPPbKWpn7oillkLCAEDUBffyMC4NNasrYeftrE7QNUUsXVZatY4g
QalizK/OHeGQZ/jqKsMSXk/l0mlArBCQ==
-----END SSH SIGNATURE-----
";
const ED_SIG_SHA256: &str = "-----BEGIN SSH SIGNATURE-----
U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAg9NRE0c4EOuW48bHLuSLYkMYSSJ
/Jy/64/fyfLQFNOqMAAAALa2VlbC1jb25maWcAAAAAAAAABnNoYTI1NgAAAFMAAAALc3No
LWVkMjU1MTkAAABAmJpbQjzyBWq+XPi4u5hRdySCLnxzLjrhUwFOcb5kMtXU/HM83ppHyc
zlRMIY/XLAVnWzwvWI/ynyZpJHxgOXCg==
-----END SSH SIGNATURE-----
";
const EC_PUB: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBNi89sAsl557Y8frbNQH9hyEY9ySPPIhQtmPE+KGXX/XDeA1SN9Hb+FgG3cn6TzWq78+2JKLeKdUDvgB8SlbYxs= ecdsa@example";
const EC_SIG: &str = "-----BEGIN SSH SIGNATURE-----
U1NIU0lHAAAAAQAAAGgAAAATZWNkc2Etc2hhMi1uaXN0cDI1NgAAAAhuaXN0cDI1NgAAAE
EE2Lz2wCyXnntjx+ts1Af2HIRj3JI88iFC2Y8T4oZdf9cN4DVI30dv4WAbdyfpPNarvz7Y
kot4p1QO+AHxKVtjGwAAAAtrZWVsLWNvbmZpZwAAAAAAAAAGc2hhNTEyAAAAZQAAABNlY2
RzYS1zaGEyLW5pc3RwMjU2AAAASgAAACEAg9eXam6+mDLwxoWLuDc5GncacZB77q0I4i7s
p5O7FMwAAAAhAOzQ0kO5dJHb+oVavdwXubNasqMCFsvksafXWXTl/wOq
-----END SSH SIGNATURE-----
";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_780_000_000) // 2026-05-28
}

fn allowed(text: &str) -> AllowedSigners {
    AllowedSigners::parse("allowed_signers", text).unwrap()
}

fn check(sig: &str, signers: &str, principal: Option<&str>, namespace: &str) -> Result<Verified, VerifyError> {
    verify(MESSAGE, sig, &allowed(signers), principal, namespace, now())
}

/// A key made from a fixed seed, and its allowed_signers line.
fn test_key(n: u8) -> (PrivateKey, String) {
    let key = PrivateKey::from_seed([n; 32], &format!("key{n}@test"));
    let line = format!("key{n}@test {}\n", key.public_key().to_openssh());
    (key, line)
}

#[test]
fn ssh_keygen_ed25519_signatures_verify_with_sha512_and_sha256() {
    let signers = format!("ops@example {ED_PUB}\n");
    for sig in [ED_SIG_SHA512, ED_SIG_SHA256] {
        let v = check(sig, &signers, Some("ops@example"), "keel-config").unwrap();
        assert_eq!((v.principal.as_str(), v.fingerprint.as_str(), v.line), ("ops@example", ED_FINGERPRINT, 1));
        assert_eq!(v.key.kind(), "ED25519");
    }
    assert_eq!(Signature::from_armored(ED_SIG_SHA256).unwrap().hash, HashAlg::Sha256);
    assert_eq!(Signature::from_armored(ED_SIG_SHA512).unwrap().to_armored(), ED_SIG_SHA512);
}

#[test]
fn ssh_keygen_ecdsa_signatures_verify() {
    let v = check(EC_SIG, &format!("ecdsa@example {EC_PUB}\n"), None, "keel-config").unwrap();
    assert_eq!(v.fingerprint, "SHA256:0PfKI7craBFXmX6mUETvLI61OHOX4Hsc1ZRar+CjIzk");
    assert_eq!((v.key.kind(), v.principal.as_str()), ("ECDSA", "ecdsa@example"));
}

#[test]
fn ssh_keygen_private_keys_read_and_write_back_identically() {
    let key = PrivateKey::parse(ED_KEY).unwrap();
    assert_eq!(key.public_line(), format!("{ED_PUB}\n"));
    assert_eq!(key.to_openssh(), ED_KEY);
    let ours = sign(MESSAGE, &key, "keel-config", HashAlg::Sha512);
    assert_eq!(ours, ED_SIG_SHA512, "ed25519 signatures are deterministic");
}

#[test]
fn tampering_with_any_byte_is_rejected() {
    let signers = format!("ops@example {ED_PUB}\n");
    let err = verify(b"hellO\n", ED_SIG_SHA512, &allowed(&signers), None, "keel-config", now()).unwrap_err();
    assert!(matches!(err, VerifyError::Invalid { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("the signature by {ED_FINGERPRINT} does not verify: the signature does not match the data")
    );
    let sig = Signature::from_armored(ED_SIG_SHA512).unwrap();
    for i in 0..sig.blob.len() {
        let mut bad = sig.clone();
        bad.blob[i] ^= 1;
        assert!(check(&bad.to_armored(), &signers, None, "keel-config").is_err(), "byte {i}");
    }
    let mut other_key = sig.clone();
    other_key.key = test_key(1).0.public_key();
    assert!(matches!(check(&other_key.to_armored(), &signers, None, "keel-config"), Err(VerifyError::Invalid { .. })));
}

#[test]
fn malformed_signatures_are_rejected_clearly() {
    let signers = format!("ops@example {ED_PUB}\n");
    let err = |text: &str| check(text, &signers, None, "keel-config").unwrap_err().to_string();
    assert_eq!(err("hello"), "not an SSH signature: does not start with -----BEGIN SSH SIGNATURE-----");
    let raw = wire::dearmor("SSH SIGNATURE", ED_SIG_SHA512).unwrap();
    let rearmor = |bytes: &[u8]| wire::armor("SSH SIGNATURE", bytes);
    let mut version2 = raw.clone();
    version2[9] = 2;
    assert_eq!(err(&rearmor(&version2)), "malformed SSH signature: version 2; only version 1 is known");
    let mut magic = raw.clone();
    magic[0] = b'X';
    assert_eq!(err(&rearmor(&magic)), "malformed SSH signature: does not start with SSHSIG");
    let mut trailing = raw.clone();
    trailing.push(0);
    assert_eq!(err(&rearmor(&trailing)), "malformed SSH signature: trailing data");
    assert_eq!(err(&rearmor(&raw[..raw.len() - 1])), "malformed SSH signature: truncated");
    let at = raw.windows(6).position(|w| w == b"sha512").unwrap();
    let mut md5 = raw.clone();
    md5[at..at + 6].copy_from_slice(b"md5xxx");
    assert_eq!(
        err(&rearmor(&md5)),
        "malformed SSH signature: unsupported hash algorithm \"md5xxx\" (sha256 or sha512)"
    );
}

#[test]
fn the_namespace_must_match() {
    let signers = format!("ops@example {ED_PUB}\n");
    let err = check(ED_SIG_SHA512, &signers, None, "keel-command").unwrap_err();
    assert_eq!(err.to_string(), "the signature is for namespace \"keel-config\", not \"keel-command\"");
    let (key, line) = test_key(1);
    let sig = sign(MESSAGE, &key, "keel-command", HashAlg::Sha512);
    assert!(check(&sig, &line, None, "keel-command").is_ok());
    assert!(matches!(check(&sig, &line, None, "keel-config"), Err(VerifyError::Namespace { .. })));
}

#[test]
fn unknown_keys_are_rejected() {
    let (_, line1) = test_key(1);
    let err = check(ED_SIG_SHA512, &line1, None, "keel-config").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("the signing key {ED_FINGERPRINT} is not allowed: no line of allowed_signers lists this key")
    );
    assert_eq!(crate::Reason::from(&err).code(), "unknown-key");
}

#[test]
fn rotation_two_allowed_keys_both_verify() {
    let ((old, old_line), (new, new_line)) = (test_key(1), test_key(2));
    let signers = format!("# rotating: key2 replaces key1\n{old_line}\n{new_line}");
    for (key, line, principal) in [(&old, 2, "key1@test"), (&new, 4, "key2@test")] {
        let sig = sign(MESSAGE, key, "keel-config", HashAlg::Sha512);
        let v = check(&sig, &signers, None, "keel-config").unwrap();
        assert_eq!((v.line, v.principal.as_str(), v.fingerprint), (line, principal, key.public_key().fingerprint()));
    }
    let retired = sign(MESSAGE, &old, "keel-config", HashAlg::Sha256);
    assert!(check(&retired, &new_line, None, "keel-config").is_err());
}

#[test]
fn allowed_signers_options_restrict_keys() {
    let (key, _) = test_key(1);
    let pk = key.public_key().to_openssh();
    let sig = sign(MESSAGE, &key, "keel-config", HashAlg::Sha512);
    let ok = |signers: &str, principal: Option<&str>| check(&sig, signers, principal, "keel-config");
    assert!(ok(&format!("a@x namespaces=\"keel-*\" {pk}"), None).is_ok());
    let detail = |r: Result<Verified, VerifyError>| match r {
        Err(VerifyError::UnknownKey { detail, .. }) => detail,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        detail(ok(&format!("a@x namespaces=\"git,file\" {pk}"), None)),
        "line 1 allows it for namespaces \"git,file\", not \"keel-config\""
    );
    assert_eq!(
        detail(ok(&format!("a@x valid-after=\"20270101\" {pk}"), None)),
        "line 1 makes it valid only from 2027-01-01T00:00:00Z"
    );
    assert_eq!(
        detail(ok(&format!("a@x valid-before=\"202601011200Z\" {pk}"), None)),
        "line 1 made it valid only until 2026-01-01T12:00:00Z"
    );
    assert!(ok(&format!("a@x Valid-After=\"20260101\",valid-before=\"20270101000000\" {pk}"), None).is_ok());
    // Principals: patterns and negation as in ssh-keygen -I.
    assert_eq!(
        ok(&format!("*@example.org,!eve@example.org {pk}"), Some("ops@example.org")).unwrap().principal,
        "ops@example.org"
    );
    assert!(ok(&format!("*@example.org,!eve@example.org {pk}"), Some("eve@example.org")).is_err());
    assert_eq!(detail(ok(&format!("a@x {pk}"), Some("b@x"))), "line 1 lists it for \"a@x\", not \"b@x\"");
    // A later line can allow what an earlier one does not.
    let two = format!("a@x namespaces=\"git\" {pk}\nb@x {pk}\n");
    assert_eq!(ok(&two, None).unwrap().principal, "b@x");
}

#[test]
fn allowed_signers_errors_name_the_line() {
    let (_, line) = test_key(1);
    let pk = line.split_once(' ').unwrap().1.trim();
    let err = |text: &str| AllowedSigners::parse("allowed_signers", text).unwrap_err().to_string();
    assert_eq!(
        err(&format!("{line}ca@x cert-authority {pk}\n")),
        "allowed_signers:2: cert-authority is not supported: Keel accepts no certificates; list the signer's own key"
    );
    assert_eq!(
        err(&format!("a@x no-touch-required {pk}")),
        "allowed_signers:1: unknown option \"no-touch-required\" (known: namespaces, valid-after, valid-before)"
    );
    assert_eq!(
        err(&format!("a@x namespaces=git {pk}")),
        "allowed_signers:1: the value of namespaces must be in double quotes"
    );
    assert_eq!(err("a@x ssh-ed25519 AAAA%%%"), "allowed_signers:1: key data: bad base64");
    let rsa = wire::b64_encode(&{
        let mut w = wire::Writer::default();
        w.string(b"ssh-rsa").string(&[1, 0, 1]).string(&[0x7f; 64]);
        w.buf
    });
    assert_eq!(
        err(&format!("a@x ssh-rsa {rsa}")),
        "allowed_signers:1: unsupported key type \"ssh-rsa\"; use ssh-ed25519, ecdsa-sha2-nistp256, or their sk- security-key forms"
    );
    assert_eq!(err("a@x"), "allowed_signers:1: missing key (expected: principals [options] key-type base64 [comment])");
    assert_eq!(
        err(&format!("a@x valid-after=\"2026\" {pk}")),
        "allowed_signers:1: \"2026\" is not a time like 20260131, 202601311200 or 20260131120000Z"
    );
    let quoted = allowed(&format!("  \"ops team@x\" namespaces=\"a b,keel-config\" {pk} a comment\n\n# end\n"));
    assert_eq!(
        (quoted.entries[0].principals.as_str(), quoted.entries[0].namespaces.as_deref()),
        ("ops team@x", Some("a b,keel-config"))
    );
}

#[test]
fn patterns_match_like_openssh() {
    assert!(match_list("ops@example.org", "*@example.org"));
    assert!(match_list("a", "b,a"));
    assert!(match_list("abc", "a?c"));
    assert!(!match_list("abc", "a?"));
    assert!(!match_list("eve@x", "*,!eve@x"));
    assert!(!match_list("x", "!y"));
    assert!(match_list("keel-config", "keel-*"));
    assert!(match_list("", "*"));
}

/// A FIDO authenticator's signature, simulated: it signs sha256(application) || flags || counter || sha256(data).
fn sk_ed25519_signature(seed: u8, application: &str, flags: u8, counter: u32) -> (PublicKey, String) {
    use sha2::{Digest, Sha256};
    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
    let key = PublicKey::SkEd25519 { key: *kp.pk, application: application.into() };
    let data = signed_data("keel-config", HashAlg::Sha512, MESSAGE);
    let mut signed = wire::Writer::default();
    signed.raw(&Sha256::digest(application)).u8(flags).u32(counter).raw(&Sha256::digest(&data));
    let mut blob = wire::Writer::default();
    blob.string(key::SK_ED25519.as_bytes()).string(&kp.sk.sign(&signed.buf, None)[..]).u8(flags).u32(counter);
    let sig = Signature { key: key.clone(), namespace: "keel-config".into(), hash: HashAlg::Sha512, blob: blob.buf };
    (key, sig.to_armored())
}

#[test]
fn security_key_ed25519_signatures_verify() {
    let (key, sig) = sk_ed25519_signature(9, "ssh:", 1, 42);
    let signers = format!("fido@x {}\n", key.to_openssh());
    let v = check(&sig, &signers, None, "keel-config").unwrap();
    assert_eq!(v.key.kind(), "ED25519-SK");
    let mut bad = Signature::from_armored(&sig).unwrap();
    let last = bad.blob.len() - 1;
    bad.blob[last] ^= 1; // the counter is signed too
    assert!(matches!(check(&bad.to_armored(), &signers, None, "keel-config"), Err(VerifyError::Invalid { .. })));
    let (_, other_app) = sk_ed25519_signature(9, "ssh:other", 1, 42);
    assert!(check(&other_app, &signers, None, "keel-config").is_err());
}

#[test]
fn public_keys_round_trip_through_text_and_blobs() {
    let (key, comment) = PublicKey::from_openssh(EC_PUB).unwrap();
    assert_eq!((key.to_openssh() + " " + &comment), EC_PUB);
    assert_eq!(PublicKey::from_blob(&key.blob()), Ok(key));
    let err = PublicKey::from_openssh(&ED_PUB.replacen("ssh-ed25519", "ecdsa-sha2-nistp256", 1)).unwrap_err();
    assert_eq!(err, "key data is a ssh-ed25519 key but the line says ecdsa-sha2-nistp256");
}

#[test]
fn private_key_errors_are_actionable() {
    let err = |text: &str| PrivateKey::parse(text).unwrap_err().to_string();
    assert_eq!(err(ED_PUB), "not an OpenSSH private key: does not start with -----BEGIN OPENSSH PRIVATE KEY-----");
    let raw = wire::dearmor("OPENSSH PRIVATE KEY", ED_KEY).unwrap();
    let mut w = wire::Writer::default();
    w.raw(b"openssh-key-v1\0").string(b"aes256-ctr").string(b"bcrypt").string(&[0; 8]).raw(&raw[15 + 8 + 8 + 4..]);
    let encrypted = wire::armor("OPENSSH PRIVATE KEY", &w.buf);
    assert!(err(&encrypted)
        .starts_with("the key is encrypted (cipher aes256-ctr, kdf bcrypt); keel signs only with unencrypted keys"));
    let (k, _) = test_key(3);
    assert_eq!(PrivateKey::parse(&k.to_openssh()).unwrap().public_key(), k.public_key());
    let generated = PrivateKey::generate("fresh").unwrap();
    assert_ne!(generated.public_key(), k.public_key());
}
