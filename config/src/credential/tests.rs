use super::*;
use crate::sshsig::{sign_signature, HashAlg, PrivateKey};

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from_seed([seed; 32], "k")
}

fn trust(lines: &[(&PrivateKey, Option<&str>)]) -> AllowedSigners {
    let text: String = lines
        .iter()
        .enumerate()
        .map(|(i, (k, ns))| {
            let opts = ns.map(|n| format!("namespaces=\"{n}\" ")).unwrap_or_default();
            format!("p{i} {opts}{}\n", k.public_key().to_openssh())
        })
        .collect();
    AllowedSigners::parse("allowed_signers", &text).unwrap()
}

fn proof(k: &PrivateKey, exporter: &[u8]) -> String {
    proof_header(&sign_signature(&proof_message(exporter), k, PROOF_NAMESPACE, HashAlg::Sha512))
}

fn verify_header(header: &str, exporter: &[u8], allowed: &AllowedSigners) -> Result<Identity, Refusal> {
    match parse(header)? {
        Credential::Proof(sig) => verify_proof(&sig, exporter, allowed, SystemTime::now()),
        Credential::Metrics(_) => panic!("not a proof"),
    }
}

#[test]
fn a_proof_is_bound_to_its_connection() {
    let (reader, stranger) = (key(1), key(2));
    let allowed = trust(&[(&reader, Some("keel-read"))]);
    let (here, there) = ([7u8; 32], [8u8; 32]);
    let header = proof(&reader, &here);
    let id = verify_header(&header, &here, &allowed).unwrap();
    assert_eq!((id.principal.as_str(), id.roles), ("p0", Roles::only(Role::Read)));
    assert_eq!(id.fingerprint, reader.public_key().fingerprint());
    assert_eq!(verify_header(&header, &there, &allowed).unwrap_err().code, "bad-signature", "replayed elsewhere");
    assert_eq!(verify_header(&proof(&stranger, &here), &here, &allowed).unwrap_err().code, "unknown-key");
    // A keel-config signature over the same bytes is not a proof.
    let other_ns = sign_signature(&proof_message(&here), &reader, "keel-config", HashAlg::Sha512);
    assert_eq!(verify_header(&proof_header(&other_ns), &here, &allowed).unwrap_err().code, "malformed");
}

#[test]
fn roles_follow_the_namespaces_of_the_line() {
    let (r, w, m, any, none) = (key(1), key(2), key(3), key(4), key(5));
    let allowed = trust(&[
        (&r, Some("keel-read")),
        (&w, Some("keel-config,keel-command")),
        (&m, Some("keel-metrics")),
        (&any, None),
        (&none, Some("something-else")),
    ]);
    let ex = [1u8; 32];
    let roles = |k| verify_header(&proof(k, &ex), &ex, &allowed).map(|i| i.roles);
    let read = roles(&r).unwrap();
    assert!(read.allow(Role::Read) && read.allow(Role::Metrics) && !read.allow(Role::Config) && !read.writes());
    let write = roles(&w).unwrap();
    assert!(write.allow(Role::Read) && write.allow(Role::Config) && write.allow(Role::Command));
    assert!(!write.allow(Role::Image) && write.writes());
    assert_eq!(write.names(), "config,command");
    let metrics = roles(&m).unwrap();
    assert!(metrics.allow(Role::Metrics) && !metrics.allow(Role::Read));
    let all = roles(&any).unwrap();
    assert!(Role::ALL.iter().all(|x| all.allow(*x)));
    assert_eq!(roles(&none).unwrap_err().code, "unknown-key");
}

#[test]
fn metrics_tokens_grant_metrics_only_for_their_node_until_they_expire() {
    let (m, r) = (key(3), key(1));
    let allowed = trust(&[(&m, Some("keel-metrics")), (&r, Some("keel-read"))]);
    let node = "6b65656c0000400080000000000000a1";
    let now = SystemTime::now();
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let token = |k: &PrivateKey, n: &str, exp: u64| {
        let sig = sign_signature(&metrics_message(n, exp), k, METRICS_NAMESPACE, HashAlg::Sha512);
        format!("Bearer {}", metrics_token(n, exp, &sig))
    };
    let check = |h: String| match parse(&h).unwrap() {
        Credential::Metrics(t) => verify_metrics(&t, &allowed, node, now),
        Credential::Proof(_) => panic!("not a token"),
    };
    let id = check(token(&m, node, secs + 60)).unwrap();
    assert_eq!(id.roles, Roles::only(Role::Metrics));
    assert!(!id.roles.allow(Role::Read));
    assert!(check(token(&m, "*", secs + 60)).is_ok());
    assert_eq!(check(token(&m, node, secs - 1)).unwrap_err().code, "expired");
    assert_eq!(check(token(&m, &"0".repeat(32), secs + 60)).unwrap_err().code, "wrong-node");
    assert_eq!(check(token(&r, node, secs + 60)).unwrap_err().code, "unknown-key", "read keys do not mint tokens");
    let forged = token(&m, node, secs + 60).replace(&format!(".{}.", secs + 60), &format!(".{}.", secs + 600));
    assert_eq!(check(forged).unwrap_err().code, "bad-signature", "the expiry is signed");
}

#[test]
fn malformed_headers_are_named() {
    let cases = [
        ("", "unknown Authorization scheme"),
        ("Basic dXNlcjpwYXNz", "unknown Authorization scheme"),
        ("Keel-SSHSIG", "no signature"),
        ("Keel-SSHSIG !!!", "bad base64"),
        ("Keel-SSHSIG aGVsbG8=", "SSH signature"),
        ("Bearer abc", "km1.<node>"),
        ("Bearer km1.xyz.1.aGVsbG8=", "machine id"),
        ("Bearer km1.*.soon.aGVsbG8=", "expiry"),
        ("Bearer km1.*.1.aGVsbG8=.x", "km1.<node>"),
    ];
    for (h, want) in cases {
        let e = parse(h).unwrap_err();
        assert_eq!(e.code, "malformed", "{h}");
        assert!(e.detail.contains(want), "{h}: {}", e.detail);
    }
    let long = format!("Keel-SSHSIG {}", "A".repeat(MAX_HEADER));
    assert!(parse(&long).unwrap_err().detail.contains("longer than"));
    let sig = sign_signature(b"x", &key(1), PROOF_NAMESPACE, HashAlg::Sha256);
    assert_eq!(parse(&format!("keel-sshsig   {}", proof_header(&sig)[12..].trim())).unwrap(), Credential::Proof(sig));
}
