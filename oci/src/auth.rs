//! The registry's `WWW-Authenticate` challenge (RFC 7235 auth-params) and the token service's answer.

use serde::Deserialize;

const MAX_HEADER: usize = 8 << 10;
const MAX_TOKEN_BODY: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// The token flow: GET `realm?service=…&scope=…` for a token, then send `Authorization: Bearer <token>`.
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
    /// HTTP Basic on the registry itself (docker-registry with htpasswd auth).
    Basic { realm: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WWW-Authenticate {header:?}: {why}")]
pub struct ChallengeError {
    pub header: String,
    pub why: String,
}

/// Parses a `WWW-Authenticate` header value with one challenge (Bearer or Basic).
pub fn parse_challenge(header: &str) -> Result<Challenge, ChallengeError> {
    let err = |why: &str| ChallengeError { header: header.chars().take(200).collect(), why: why.to_string() };
    if header.len() > MAX_HEADER {
        return Err(err("longer than 8 KiB"));
    }
    let header = header.trim();
    let (scheme, rest) = match header.find([' ', '\t']) {
        Some(i) => (&header[..i], header[i..].trim_start()),
        None => (header, ""),
    };
    let params = parse_params(rest).map_err(|why| err(&why))?;
    let get = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
    if scheme.eq_ignore_ascii_case("bearer") {
        let realm = get("realm").ok_or_else(|| err("Bearer challenge without a realm"))?;
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(err("the realm is not an http(s) URL"));
        }
        Ok(Challenge::Bearer { realm, service: get("service"), scope: get("scope") })
    } else if scheme.eq_ignore_ascii_case("basic") {
        Ok(Challenge::Basic { realm: get("realm") })
    } else {
        Err(err("neither a Bearer nor a Basic challenge"))
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn parse_params(mut s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([' ', '\t', ',']);
        if s.is_empty() {
            return Ok(out);
        }
        let name_len = s.bytes().take_while(|&b| is_tchar(b)).count();
        if name_len == 0 {
            return Err(format!("expected a parameter name at {:?}", s.chars().take(20).collect::<String>()));
        }
        let name = &s[..name_len];
        s = s[name_len..].trim_start();
        s = s.strip_prefix('=').ok_or_else(|| format!("parameter {name:?} without '='"))?.trim_start();
        let value;
        if let Some(q) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c)) => v.push(c),
                        None => return Err("unterminated escape".into()),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => v.push(c),
                    None => return Err(format!("unterminated quoted value of {name:?}")),
                }
            };
            value = v;
            s = &q[end + 1..];
        } else {
            let len = s.bytes().take_while(|&b| is_tchar(b) || b == b'/' || b == b':').count();
            value = s[..len].to_string();
            s = &s[len..];
        }
        out.push((name.to_string(), value));
        if out.len() > 32 {
            return Err("more than 32 parameters".into());
        }
        let t = s.trim_start();
        if !(t.is_empty() || t.starts_with(',')) {
            return Err(format!("junk after parameter {name:?}"));
        }
        s = t;
    }
}

#[derive(Deserialize)]
struct RawToken {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// The token from a token service's JSON answer (`token`, or OAuth2's `access_token`).
pub fn parse_token_response(body: &[u8]) -> Result<String, String> {
    if body.len() > MAX_TOKEN_BODY {
        return Err(format!("token response of {} bytes is over 64 KiB", body.len()));
    }
    let raw: RawToken = serde_json::from_slice(body).map_err(|e| format!("token response: {e}"))?;
    let token = raw.token.filter(|t| !t.is_empty()).or(raw.access_token).unwrap_or_default();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("token response without a usable token".into());
    }
    Ok(token)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The token URL for a Bearer challenge: `realm?service=…&scope=…`.
pub fn token_url(realm: &str, service: Option<&str>, scope: Option<&str>) -> String {
    let mut url = realm.to_string();
    let mut sep = if realm.contains('?') { '&' } else { '?' };
    for (k, v) in [("service", service), ("scope", scope)] {
        if let Some(v) = v {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(&query_escape(v));
            sep = '&';
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_as_registries_send_it() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }
        );
        let Challenge::Bearer { realm, service, scope } = c else { unreachable!() };
        assert_eq!(
            token_url(&realm, service.as_deref(), scope.as_deref()),
            "https://auth.docker.io/token?service=registry.docker.io&scope=repository%3Alibrary%2Fbusybox%3Apull"
        );
    }

    #[test]
    fn basic_and_unquoted_and_escaped_values() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#).unwrap(),
            Challenge::Basic { realm: Some("Registry Realm".into()) }
        );
        let c = parse_challenge(r#"bearer  realm=https://a/t , service="a\"b",error="insufficient_scope""#).unwrap();
        assert!(
            matches!(c, Challenge::Bearer { realm, service: Some(s), .. } if realm == "https://a/t" && s == "a\"b")
        );
    }

    #[test]
    fn refuses_hostile_challenges() {
        for bad in [
            "",
            "Negotiate abc",
            "Bearer service=\"x\"",
            "Bearer realm=\"file:///etc/passwd\"",
            "Bearer realm=\"https://a",
            "Bearer realm=\"https://a\\",
            "Bearer =x",
            "Bearer realm",
            "Bearer realm=\"https://a\" junk",
        ] {
            assert!(parse_challenge(bad).is_err(), "{bad}");
        }
        let long = format!("Bearer realm=\"https://a/{}\"", "x".repeat(9000));
        assert!(parse_challenge(&long).is_err());
        let many = format!("Bearer realm=\"https://a\"{}", ",a=b".repeat(40));
        assert!(parse_challenge(&many).is_err());
    }

    #[test]
    fn token_responses() {
        assert_eq!(parse_token_response(br#"{"token":"abc.def","expires_in":60}"#).unwrap(), "abc.def");
        assert_eq!(parse_token_response(br#"{"access_token":"xyz"}"#).unwrap(), "xyz");
        assert!(parse_token_response(br#"{"token":""}"#).is_err());
        assert!(parse_token_response(br#"{"token":"a\r\nX-Evil: 1"}"#).is_err());
        assert!(parse_token_response(b"<html>").is_err());
    }
}
