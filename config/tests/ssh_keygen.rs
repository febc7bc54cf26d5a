//! Interop with the real OpenSSH `ssh-keygen` (openssh-client; no root needed), both ways: what it signs we
//! verify, what we sign (and the keys we write) it accepts, and it agrees with us on security-key signatures.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use keel_config::sshsig::{self, AllowedSigners, HashAlg, PrivateKey, PublicKey, Signature, VerifyError};
use sha2::{Digest, Sha256};

const MESSAGE: &[u8] = b"version = 1\ngeneration = 1\n";

/// A fresh directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("keel-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ssh_keygen(args: &[&str], stdin: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(args).stdin(match stdin {
        Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
        None => Stdio::null(),
    });
    cmd.output().expect("these tests need OpenSSH's ssh-keygen (apt-get install openssh-client)")
}

fn keygen(dir: &Scratch, name: &str, kind: &[&str]) -> PathBuf {
    let key = dir.path(name);
    let mut args = vec!["-q", "-N", "", "-C", name, "-f", key.to_str().unwrap()];
    args.extend_from_slice(kind);
    let out = ssh_keygen(&args, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    key
}

fn ssh_sign(dir: &Scratch, key: &Path, namespace: &str, extra: &[&str]) -> String {
    let msg = dir.write("msg", MESSAGE);
    let _ = std::fs::remove_file(dir.path("msg.sig"));
    let mut args = vec!["-Y", "sign", "-f", key.to_str().unwrap(), "-n", namespace];
    args.extend_from_slice(extra);
    args.push(msg.to_str().unwrap());
    let out = ssh_keygen(&args, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.read("msg.sig")
}

/// `ssh-keygen -Y verify`: Ok(its stdout) or Err(its stderr).
fn ssh_verify(dir: &Scratch, allowed: &str, principal: &str, namespace: &str, sig: &str) -> Result<String, String> {
    let (allowed, sig, msg) = (dir.write("allowed", allowed), dir.write("v.sig", sig), dir.write("v.msg", MESSAGE));
    let args = [
        "-Y",
        "verify",
        "-f",
        allowed.to_str().unwrap(),
        "-I",
        principal,
        "-n",
        namespace,
        "-s",
        sig.to_str().unwrap(),
    ];
    let out = ssh_keygen(&args, Some(&msg));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

fn ours(sig: &str, allowed: &str, principal: Option<&str>, namespace: &str) -> Result<sshsig::Verified, VerifyError> {
    let allowed = AllowedSigners::parse("allowed", allowed).unwrap();
    sshsig::verify(MESSAGE, sig, &allowed, principal, namespace, SystemTime::now())
}

fn pub_line(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub")).unwrap().trim().to_string()
}

#[test]
fn ssh_keygen_signatures_verify_here() {
    let dir = Scratch::new("theirs");
    let ed = keygen(&dir, "ed", &["-t", "ed25519"]);
    let ec = keygen(&dir, "ec", &["-t", "ecdsa", "-b", "256"]);
    for (key, kind) in [(&ed, "ED25519"), (&ec, "ECDSA")] {
        let allowed = format!("ops@x namespaces=\"keel-config\" {}\n", pub_line(key));
        let fingerprint = ssh_keygen(&["-l", "-f", key.to_str().unwrap()], None);
        let fingerprint = String::from_utf8_lossy(&fingerprint.stdout).split(' ').nth(1).unwrap().to_string();
        for hash in [&["-O", "hashalg=sha512"][..], &["-O", "hashalg=sha256"][..]] {
            let sig = ssh_sign(&dir, key, "keel-config", hash);
            let v = ours(&sig, &allowed, Some("ops@x"), "keel-config").unwrap();
            assert_eq!(
                (v.key.kind(), v.fingerprint.as_str(), v.principal.as_str()),
                (kind, fingerprint.as_str(), "ops@x")
            );
            // Both refuse the same signature for another namespace or principal.
            assert!(ours(&sig, &allowed, Some("ops@x"), "keel-command").is_err());
            assert!(ssh_verify(&dir, &allowed, "ops@x", "keel-command", &sig).is_err());
            assert!(ours(&sig, &allowed, Some("eve@x"), "keel-config").is_err());
            assert!(ssh_verify(&dir, &allowed, "eve@x", "keel-config", &sig).is_err());
        }
        let wrong_ns = ssh_sign(&dir, key, "file", &[]);
        assert!(matches!(ours(&wrong_ns, &allowed, None, "keel-config"), Err(VerifyError::Namespace { .. })));
    }
}

#[test]
fn our_signatures_and_keys_verify_with_ssh_keygen() {
    let dir = Scratch::new("ours");
    let key = PrivateKey::generate("keel@test").unwrap();
    let allowed = format!("keel@test namespaces=\"keel-config\" {}\n", key.public_key().to_openssh());
    for hash in [HashAlg::Sha512, HashAlg::Sha256] {
        let sig = sshsig::sign(MESSAGE, &key, "keel-config", hash);
        let good = ssh_verify(&dir, &allowed, "keel@test", "keel-config", &sig).unwrap();
        assert!(good.contains("Good \"keel-config\" signature for keel@test"), "{good}");
        assert!(ssh_verify(&dir, &allowed, "keel@test", "keel-image", &sig).is_err());
    }
    // ssh-keygen reads the private key we write (and derives the same public key), and signs with it.
    let path = dir.write("ours_key", key.to_openssh());
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let derived = ssh_keygen(&["-y", "-f", path.to_str().unwrap()], None);
    assert_eq!(String::from_utf8_lossy(&derived.stdout), key.public_line());
    let theirs = ssh_sign(&dir, &path, "keel-config", &[]);
    assert_eq!(theirs, sshsig::sign(MESSAGE, &key, "keel-config", HashAlg::Sha512), "ed25519 is deterministic");
    // And we read the keys ssh-keygen writes.
    let ssh_key = keygen(&dir, "theirs", &["-t", "ed25519"]);
    let parsed = PrivateKey::parse(&std::fs::read_to_string(&ssh_key).unwrap()).unwrap();
    assert_eq!(parsed.public_line().trim(), pub_line(&ssh_key));
    assert_eq!(parsed.to_openssh(), std::fs::read_to_string(&ssh_key).unwrap());
}

#[test]
fn a_tampered_message_fails_in_both() {
    let dir = Scratch::new("tamper");
    let key = PrivateKey::from_seed([5; 32], "k@test");
    let allowed = format!("k@test {}\n", key.public_key().to_openssh());
    let sig = sshsig::sign(b"version = 1\ngeneration = 2\n", &key, "keel-config", HashAlg::Sha512);
    assert!(matches!(ours(&sig, &allowed, None, "keel-config"), Err(VerifyError::Invalid { .. })));
    assert!(ssh_verify(&dir, &allowed, "k@test", "keel-config", &sig).is_err());
}

/// Security keys sign sha256(application) || flags || counter || sha256(signed data); no token is needed to
/// make such a signature for a test, and ssh-keygen verifies it like one made by a token.
fn sk_signed(application: &str, flags: u8, counter: u32) -> Vec<u8> {
    let data = sshsig::signed_data("keel-config", HashAlg::Sha512, MESSAGE);
    let mut out = Sha256::digest(application).to_vec();
    out.push(flags);
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(&Sha256::digest(&data));
    out
}

fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_be_bytes());
    out.extend_from_slice(bytes);
}

fn mpint(out: &mut Vec<u8>, bytes: &[u8]) {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut v = if trimmed.first().is_some_and(|b| b & 0x80 != 0) { vec![0] } else { vec![] };
    v.extend(trimmed);
    string(out, &v);
}

fn armored(key: PublicKey, blob: Vec<u8>) -> String {
    Signature { key, namespace: "keel-config".into(), hash: HashAlg::Sha512, blob }.to_armored()
}

#[test]
fn security_key_signatures_agree_with_ssh_keygen() {
    let dir = Scratch::new("sk");
    let (flags, counter, app) = (0x01, 7, "ssh:");

    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([3; 32]));
    let ed_key = PublicKey::SkEd25519 { key: *kp.pk, application: app.into() };
    let mut blob = Vec::new();
    string(&mut blob, b"sk-ssh-ed25519@openssh.com");
    string(&mut blob, &kp.sk.sign(sk_signed(app, flags, counter), None)[..]);
    blob.push(flags);
    blob.extend_from_slice(&counter.to_be_bytes());
    let ed_sig = armored(ed_key.clone(), blob);

    use p256::ecdsa::signature::Signer;
    let sk = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
    let point = sk.verifying_key().to_sec1_point(false).as_bytes().to_vec();
    let ec_key = PublicKey::SkEcdsaP256 { point, application: app.into() };
    let sig: p256::ecdsa::Signature = sk.sign(&sk_signed(app, flags, counter));
    let (r, s) = sig.split_bytes();
    let mut inner = Vec::new();
    mpint(&mut inner, &r);
    mpint(&mut inner, &s);
    let mut blob = Vec::new();
    string(&mut blob, b"sk-ecdsa-sha2-nistp256@openssh.com");
    string(&mut blob, &inner);
    blob.push(flags);
    blob.extend_from_slice(&counter.to_be_bytes());
    let ec_sig = armored(ec_key.clone(), blob);

    for (key, sig, kind) in [(ed_key, ed_sig, "ED25519-SK"), (ec_key, ec_sig, "ECDSA-SK")] {
        let allowed = format!("fido@x {}\n", key.to_openssh());
        assert_eq!(ours(&sig, &allowed, Some("fido@x"), "keel-config").unwrap().key.kind(), kind);
        let good = ssh_verify(&dir, &allowed, "fido@x", "keel-config", &sig).unwrap();
        assert!(good.contains(&format!("with {kind} key")), "{good}");
        let mut tampered = Signature::from_armored(&sig).unwrap();
        let last = tampered.blob.len() - 1;
        tampered.blob[last] ^= 1;
        let tampered = tampered.to_armored();
        assert!(ours(&tampered, &allowed, None, "keel-config").is_err());
        assert!(ssh_verify(&dir, &allowed, "fido@x", "keel-config", &tampered).is_err());
    }
}

#[test]
fn allowed_signers_options_agree_with_ssh_keygen() {
    let dir = Scratch::new("options");
    let key = PrivateKey::from_seed([6; 32], "k@x");
    let pk = key.public_key().to_openssh();
    let sig = sshsig::sign(MESSAGE, &key, "keel-config", HashAlg::Sha512);
    let cases = [
        (format!("ops@x namespaces=\"git\" {pk}"), "ops@x", false),
        (format!("ops@x namespaces=\"git\" {pk}\nops@x {pk}"), "ops@x", true),
        (format!("ops@x namespaces=\"file,keel-*\" {pk}"), "ops@x", true),
        (format!("ops@x valid-before=\"20200101\" {pk}"), "ops@x", false),
        (format!("ops@x valid-after=\"20200101Z\",valid-before=\"29990101\" {pk}"), "ops@x", true),
        (format!("*@x,!eve@x {pk}"), "ops@x", true),
        (format!("*@x,!eve@x {pk}"), "eve@x", false),
        (format!("\"a@x,ops@x\" {pk} comment"), "ops@x", true),
        (format!("other@x {pk}"), "ops@x", false),
    ];
    for (allowed, principal, accepted) in cases {
        let theirs = ssh_verify(&dir, &format!("{allowed}\n"), principal, "keel-config", &sig);
        let here = ours(&sig, &format!("{allowed}\n"), Some(principal), "keel-config");
        assert_eq!(
            (theirs.is_ok(), here.is_ok()),
            (accepted, accepted),
            "{allowed} for {principal}: {theirs:?} {here:?}"
        );
    }
}
