//! `[[log.forward]]`: log collectors by URL, format, CA and buffer bound.

use super::{int_in, Unique};
use crate::diag::Sink;
use crate::model::{LogFormat, LogForward, DEFAULT_LOG_BUFFER_LINES};
use crate::net::hostname_problem;
use crate::raw::{self, At};

/// Every valid collector; each bad value is reported at its place.
pub(super) fn forwards(list: &[At<raw::LogForward>], sink: &mut Sink) -> Vec<LogForward> {
    let mut seen = Unique::new("collector");
    let mut out = Vec::new();
    for (i, at) in list.iter().enumerate() {
        let path = format!("log.forward[{i}]");
        let f = at.get();
        let endpoint = match parse_url(f.url.get()) {
            Ok(e) => Some(e),
            Err(problem) => {
                sink.error(f.url.span(), &format!("{path}.url"), problem);
                None
            }
        };
        let format = match f.format.as_ref().map(|f| (f, f.get().as_str())) {
            None | Some((_, "rfc5424")) => Some(LogFormat::Rfc5424),
            Some((_, "json")) => Some(LogFormat::Json),
            Some((at, other)) => {
                let msg = format!("{other:?} is not a log format; use \"rfc5424\" or \"json\"");
                sink.error(at.span(), &format!("{path}.format"), msg);
                None
            }
        };
        let ca = f.ca.as_ref().and_then(|ca| {
            let tls = endpoint.as_ref().is_some_and(|e| e.0);
            if !ca.get().contains("-----BEGIN CERTIFICATE-----") {
                sink.error(
                    ca.span(),
                    &format!("{path}.ca"),
                    "must hold PEM CA certificates (-----BEGIN CERTIFICATE-----)",
                );
                None
            } else if endpoint.is_some() && !tls {
                sink.error(ca.span(), &format!("{path}.ca"), "is only for tls:// collectors");
                None
            } else {
                Some(ca.get().clone())
            }
        });
        let buffer = match &f.buffer_lines {
            None => Some(DEFAULT_LOG_BUFFER_LINES as i64),
            Some(b) => int_in(sink, b, &format!("{path}.buffer_lines"), 1, 1_000_000),
        };
        if let Some((tls, host, port)) = &endpoint {
            seen.check(sink, (*tls, host.clone(), *port), f.url.get(), f.url.span(), &format!("{path}.url"));
        }
        if let (Some((tls, host, port)), Some(format), Some(buffer)) = (endpoint, format, buffer) {
            let buffer_lines = usize::try_from(buffer).unwrap_or(DEFAULT_LOG_BUFFER_LINES);
            out.push(LogForward { url: f.url.get().clone(), tls, host, port, format, ca, buffer_lines });
        }
    }
    out
}

/// `tcp://host:port` or `tls://host:port` as (tls, host, port); host an IP address (IPv6 in brackets) or a DNS name.
fn parse_url(url: &str) -> Result<(bool, String, u16), String> {
    let bad = |why: &str| format!("{url:?} {why}; write tcp://host:port or tls://host:port");
    let (tls, rest) = match (url.strip_prefix("tcp://"), url.strip_prefix("tls://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(bad("has no tcp:// or tls:// scheme")),
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(bad(&format!("has port {port:?}, not 1..65535"))),
    };
    let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad(&format!("has {v6:?} in brackets, not an IPv6 address")))?;
        v6.to_string()
    } else if host.parse::<std::net::Ipv4Addr>().is_ok() {
        host.to_string()
    } else if let Some(problem) = hostname_problem(host, 253) {
        return Err(bad(&format!("has a bad host: {problem}")));
    } else {
        host.to_string()
    };
    Ok((tls, host, port))
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls() {
        assert_eq!(parse_url("tcp://10.0.2.2:5514"), Ok((false, "10.0.2.2".into(), 5514)));
        assert_eq!(parse_url("tls://logs.example.org:6514"), Ok((true, "logs.example.org".into(), 6514)));
        assert_eq!(parse_url("tcp://[fd00::1]:514"), Ok((false, "fd00::1".into(), 514)));
        for bad in [
            "udp://1.2.3.4:514",
            "tcp://1.2.3.4",
            "tcp://1.2.3.4:0",
            "tcp://1.2.3.4:70000",
            "tcp://a_b:1",
            "tcp://[x]:1",
            "tcp://:514",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
