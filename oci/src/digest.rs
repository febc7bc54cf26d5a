//! Content digests: `sha256:<64 lowercase hex>`, the only algorithm Keel accepts.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// Always `sha256` today.
    pub algo: String,
    /// 64 lowercase hex digits.
    pub hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a digest: {why} (expected sha256:<64 lowercase hex digits>)")]
pub struct DigestError {
    pub text: String,
    pub why: &'static str,
}

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        let err = |why| DigestError { text: text.chars().take(100).collect(), why };
        let (algo, hex) = text.split_once(':').ok_or_else(|| err("no algorithm prefix"))?;
        if algo != "sha256" {
            return Err(err("only sha256 is supported"));
        }
        if hex.len() != 64 {
            return Err(err("wrong length"));
        }
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(err("not lowercase hex"));
        }
        Ok(Digest { algo: algo.to_string(), hex: hex.to_string() })
    }

    /// The digest of `hex`, a sha256 computed by the caller, as 32 bytes.
    pub fn sha256_bytes(bytes: &[u8; 32]) -> Digest {
        let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Digest { algo: "sha256".into(), hex }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo, self.hex)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_sha256() {
        let hex = "a".repeat(64);
        let d = Digest::parse(&format!("sha256:{hex}")).unwrap();
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
        assert_eq!(Digest::sha256_bytes(&[0xab; 32]).hex, "ab".repeat(32));
    }

    #[test]
    fn refuses_other_algorithms_lengths_and_case() {
        for bad in [
            format!("sha512:{}", "a".repeat(128)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}/../x", "a".repeat(58)),
            "a".repeat(64),
            String::new(),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
    }
}
