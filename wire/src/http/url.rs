//! `http://` and `https://` URLs as a node config names them: scheme, host (a name, an IPv4 address or a
//! bracketed IPv6 literal such as `[fd00::1]`), optional port, path and query.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// https:// (true) or http:// (false).
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with '/'.
    pub path: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        write!(f, "{scheme}://{host}:{}{}", self.port, self.path)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("{0:?}: only http:// and https:// URLs are supported")]
    Scheme(String),
    #[error("{0:?}: no host")]
    NoHost(String),
    #[error("{0:?}: bad port")]
    Port(String),
    /// `:`, `[` or `]` where they cannot be: an IPv6 literal goes in brackets, a name or IPv4 address has none.
    #[error("{0:?}: bad host")]
    Host(String),
}

pub fn parse_url(text: &str) -> Result<Url, UrlError> {
    let (tls, rest) = match (text.strip_prefix("http://"), text.strip_prefix("https://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => return Err(UrlError::Scheme(text.to_string())),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let default_port = if tls { 443 } else { 80 };
    let port = |p: &str| p.parse::<u16>().map_err(|_| UrlError::Port(text.to_string()));
    // `[v6]` or `[v6]:port`; otherwise `host` or `host:port`.
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((h, "")) => (h, default_port),
            Some((h, rest)) => match rest.strip_prefix(':') {
                Some(p) => (h, port(p)?),
                None => return Err(UrlError::Port(text.to_string())),
            },
            None => return Err(UrlError::NoHost(text.to_string())),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, port(p)?),
            None => (authority, default_port),
        },
    };
    if host.is_empty() {
        return Err(UrlError::NoHost(text.to_string()));
    }
    let bracketed = authority.starts_with('[');
    if host.contains(['[', ']']) || (!bracketed && host.contains(':')) {
        return Err(UrlError::Host(text.to_string()));
    }
    Ok(Url { tls, host: host.to_string(), port, path: path.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            parse_url("http://10.0.2.2:8080/nodes/a.toml?x=1"),
            Ok(Url { tls: false, host: "10.0.2.2".into(), port: 8080, path: "/nodes/a.toml?x=1".into() })
        );
        let url = |tls, host: &str, port, path: &str| Ok(Url { tls, host: host.into(), port, path: path.into() });
        assert_eq!(parse_url("http://cfg.example"), url(false, "cfg.example", 80, "/"));
        assert_eq!(parse_url("http://[fd00::1]:81/c"), url(false, "fd00::1", 81, "/c"));
        // An IPv6 literal without a port takes the scheme's.
        assert_eq!(parse_url("http://[fd00::1]/x"), url(false, "fd00::1", 80, "/x"));
        assert_eq!(parse_url("https://[fd00::1]"), url(true, "fd00::1", 443, "/"));
        assert_eq!(parse_url("http://[fd00::1]/x").unwrap().to_string(), "http://[fd00::1]:80/x");
        assert!(matches!(parse_url("http://[fd00::1]x/"), Err(UrlError::Port(_))));
        assert!(matches!(parse_url("http://[fd00::1/"), Err(UrlError::NoHost(_))));
        assert!(matches!(parse_url("http://[]:80/"), Err(UrlError::NoHost(_))));
        assert_eq!(parse_url("https://cfg.example/n.toml"), url(true, "cfg.example", 443, "/n.toml"));
        assert_eq!(parse_url("https://10.0.2.2:8443/n"), url(true, "10.0.2.2", 8443, "/n"));
        assert_eq!(parse_url("https://10.0.2.2:8443/n").unwrap().to_string(), "https://10.0.2.2:8443/n");
        assert_eq!(parse_url("http://[fd00::1]:81/c").unwrap().to_string(), "http://[fd00::1]:81/c");
        assert!(matches!(parse_url("ftp://x/"), Err(UrlError::Scheme(_))));
        assert!(matches!(parse_url("http://:80/"), Err(UrlError::NoHost(_))));
        assert!(matches!(parse_url("http://x:99999/"), Err(UrlError::Port(_))));
        // An IPv6 address only in brackets: without them it would print back as another URL (found by fuzzing).
        assert!(matches!(parse_url("http://>fd00::1]:8080/x"), Err(UrlError::Host(_))));
        assert!(matches!(parse_url("http://fd00::1:80/"), Err(UrlError::Host(_))));
        assert!(matches!(parse_url("http://[a[b]/"), Err(UrlError::Host(_))));
    }
}
