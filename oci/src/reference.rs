//! Image references pinned by digest: `host[:port]/path/name@sha256:<64 hex>`. Tags are refused so the signed
//! config pins exactly the bytes that run.

use crate::digest::Digest;
use std::fmt;

const MAX_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host` or `host:port`, as written.
    pub registry: String,
    /// `path/name`, lowercase components.
    pub repository: String,
    pub digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image {text:?}: {why}")]
pub struct RefError {
    pub text: String,
    pub why: String,
}

const FORM: &str = "use name@sha256:<digest>, e.g. registry.example/ns/app@sha256:<64 hex digits>";

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, RefError> {
        let err = |why: String| RefError { text: text.chars().take(100).collect(), why };
        if text.len() > MAX_LEN {
            return Err(err(format!("longer than {MAX_LEN} bytes")));
        }
        let Some((name, digest)) = text.split_once('@') else {
            let why = if last_component(text).contains(':') { "a tag is not accepted" } else { "no digest" };
            return Err(err(format!("{why}: {FORM}")));
        };
        let digest = Digest::parse(digest).map_err(|e| err(format!("{e}: {FORM}")))?;
        if last_component(name).contains(':') {
            return Err(err(format!("a tag is not accepted beside the digest; drop it: {FORM}")));
        }
        let Some((registry, repository)) = name.split_once('/') else {
            return Err(err(format!("no registry host: {FORM}")));
        };
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(err(format!(
                "{registry:?} is not a registry host (it needs a dot, a port or be localhost): {FORM}"
            )));
        }
        check_host(registry).map_err(|why| err(format!("registry {registry:?}: {why}")))?;
        for component in repository.split('/') {
            check_component(component).map_err(|why| err(format!("repository {repository:?}: {why}")))?;
        }
        Ok(Reference { registry: registry.to_string(), repository: repository.to_string(), digest })
    }

    /// The host the distribution API answers on (`docker.io` serves from `registry-1.docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// `/v2/<repository>/manifests/<digest>`.
    pub fn manifest_path(&self) -> String {
        format!("/v2/{}/manifests/{}", self.repository, self.digest)
    }

    /// `/v2/<repository>/blobs/<digest>`.
    pub fn blob_path(&self, digest: &Digest) -> String {
        format!("/v2/{}/blobs/{}", self.repository, digest)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.registry, self.repository, self.digest)
    }
}

fn last_component(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && !p.starts_with('0') => {}
            _ => return Err(format!("bad port {p:?}")),
        }
    }
    if name.is_empty() || name.len() > 253 {
        return Err("empty or too long host name".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("bad host label {label:?}"));
        }
    }
    Ok(())
}

/// One path component: lowercase alphanumerics separated by `.`, `_`, `__` or runs of `-`.
fn check_component(c: &str) -> Result<(), String> {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Err("empty path component".into());
    };
    if !alnum(first) || !alnum(last) {
        return Err(format!("component {c:?} must start and end with a lowercase letter or digit"));
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        let sep_end = bytes[i..].iter().position(|&b| alnum(b)).map_or(bytes.len(), |p| i + p);
        let sep = &c[i..sep_end];
        let ok = sep == "." || sep == "_" || sep == "__" || (!sep.is_empty() && sep.bytes().all(|b| b == b'-'));
        if !ok {
            return Err(format!("component {c:?} has the separator {sep:?} (lowercase letters, digits, . _ __ -)"));
        }
        i = sep_end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex() -> String {
        "0123456789abcdef".repeat(4)
    }

    #[test]
    fn parses_host_port_path_and_digest() {
        let r = Reference::parse(&format!("127.0.0.1:5000/team/my-app_x@sha256:{}", hex())).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/my-app_x");
        assert_eq!(r.digest.to_string(), format!("sha256:{}", hex()));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/team/my-app_x@sha256:{}", hex()));
        assert_eq!(r.manifest_path(), format!("/v2/team/my-app_x/manifests/sha256:{}", hex()));
        let hub = Reference::parse(&format!("docker.io/library/busybox@sha256:{}", hex())).unwrap();
        assert_eq!(hub.api_host(), "registry-1.docker.io");
        assert!(Reference::parse(&format!("localhost/a@sha256:{}", hex())).is_ok());
    }

    #[test]
    fn a_tag_or_no_digest_names_the_digest_form() {
        for text in ["registry.example/ns/app:1.2", "registry.example/ns/app", "registry.example:5000/app"] {
            let e = Reference::parse(text).unwrap_err();
            assert!(e.to_string().contains("name@sha256:<digest>"), "{e}");
        }
        let e = Reference::parse("registry.example/ns/app:latest").unwrap_err();
        assert!(e.why.contains("tag"), "{e}");
        let e = Reference::parse(&format!("registry.example/app:1@sha256:{}", hex())).unwrap_err();
        assert!(e.why.contains("tag"), "{e}");
    }

    #[test]
    fn refuses_hostile_and_malformed_references() {
        let h = hex();
        for bad in [
            format!("app@sha256:{h}"),
            format!("ns/app@sha256:{h}"),
            format!("registry.example/../etc@sha256:{h}"),
            format!("registry.example/Upper@sha256:{h}"),
            format!("registry.example/a//b@sha256:{h}"),
            format!("registry.example/a/@sha256:{h}"),
            format!("registry.example/a-@sha256:{h}"),
            format!("registry.example/a..b@sha256:{h}"),
            format!("registry.example:99999/a@sha256:{h}"),
            format!("registry.example:/a@sha256:{h}"),
            format!("reg istry.example/a@sha256:{h}"),
            format!("registry.example/a@sha256:{h}x"),
            format!("registry.example/a@md5:{h}"),
            format!("registry.example/a@sha256:{h}@sha256:{h}"),
            format!("registry.example/a%2f..@sha256:{h}"),
            format!("registry.example/{}@sha256:{h}", "a".repeat(600)),
            String::new(),
        ] {
            assert!(Reference::parse(&bad).is_err(), "{bad}");
        }
    }
}
