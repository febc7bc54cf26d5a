//! How one log line is written to a collector: RFC 5424 syslog framed by octet counting (RFC 6587 §3.4.1; the
//! same framing RFC 5425 uses over TLS), or one JSON object per line. Pure: a record and the node's identity in,
//! bytes out. Nothing here parses what a collector sends (a collector sends nothing).

use std::time::{SystemTime, UNIX_EPOCH};

/// The SD-ID of Keel's STRUCTURED-DATA element. 32473 is the private enterprise number RFC 5612 reserves for
/// documentation and examples; `keel@32473` is what an rsyslog template or a collector's parser matches on.
pub const SD_ID: &str = "keel@32473";

/// syslog facilities (RFC 5424 table 1).
pub const KERN: u8 = 0;
pub const DAEMON: u8 = 3;

/// One line to forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub at: SystemTime,
    /// `keel`, `kernel` or a service's name.
    pub app: std::sync::Arc<str>,
    pub facility: u8,
    /// 0 (emerg) ..= 7 (debug).
    pub severity: u8,
    /// For a service: `stdout` or `stderr`.
    pub stream: Option<&'static str>,
    pub text: String,
}

/// Who sends: put into every line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub machine_id: String,
    pub hostname: String,
}

const SEVERITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

pub fn severity_name(severity: u8) -> &'static str {
    SEVERITIES[usize::from(severity.min(7))]
}

/// syslog severity of a `log` level.
pub fn severity(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-12-02T15:04:05.123456Z`.
pub fn timestamp(at: SystemTime) -> String {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let (y, m, day) = keel_config::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z", s / 3600, s / 60 % 60, s % 60, d.subsec_micros())
}

/// A header field: printable US-ASCII without spaces, at most `max` characters, `-` when empty (RFC 5424 §6).
fn header_field(text: &str, max: usize) -> String {
    let clean: String = text.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if clean.is_empty() {
        "-".into()
    } else {
        clean
    }
}

/// A PARAM-VALUE: `"`, `\` and `]` escaped with a backslash (RFC 5424 §6.3.3).
fn param_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One RFC 5424 message (without framing). MSG is UTF-8 without a BOM; line breaks inside it are kept as they
/// are (octet counting, unlike newline framing, carries them).
pub fn rfc5424(r: &Record, id: &Identity) -> String {
    let pri = u16::from(r.facility.min(23)) * 8 + u16::from(r.severity.min(7));
    let stream = r.stream.map(|s| format!(" stream=\"{s}\"")).unwrap_or_default();
    format!(
        "<{pri}>1 {} {} {} - - [{SD_ID} machine_id=\"{}\"{stream}] {}",
        timestamp(r.at),
        header_field(&id.hostname, 255),
        header_field(&r.app, 48),
        param_value(&id.machine_id),
        r.text
    )
}

/// RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`, the length in bytes.
pub fn octet_counted(msg: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg.as_bytes());
}

/// One JSON object and a newline; a line break inside the text is escaped, so one record is always one line.
pub fn json_line(r: &Record, id: &Identity, out: &mut Vec<u8>) {
    let mut v = serde_json::json!({
        "time": timestamp(r.at),
        "hostname": id.hostname,
        "machine_id": id.machine_id,
        "app": &*r.app,
        "facility": r.facility,
        "severity": severity_name(r.severity),
        "msg": r.text,
    });
    if let (Some(stream), Some(obj)) = (r.stream, v.as_object_mut()) {
        obj.insert("stream".into(), stream.into());
    }
    out.extend_from_slice(v.to_string().as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id() -> Identity {
        Identity { machine_id: "0a1b2c3d4e5f60718293a4b5c6d7e8f9".into(), hostname: "edge-1".into() }
    }

    fn rec(app: &str, facility: u8, severity: u8, text: &str) -> Record {
        // 2026-12-02T15:04:05.123456Z
        let at = UNIX_EPOCH + Duration::from_micros(1_796_223_845_123_456);
        Record { at, app: app.into(), facility, severity, stream: None, text: text.into() }
    }

    #[test]
    fn rfc5424_carries_identity_app_and_priority() {
        let msg = rfc5424(&rec("keel", DAEMON, 6, "config.applied generation=3"), &id());
        assert_eq!(
            msg,
            "<30>1 2026-12-02T15:04:05.123456Z edge-1 keel - - [keel@32473 machine_id=\"0a1b2c3d4e5f60718293a4b5c6d7e8f9\"] config.applied generation=3"
        );
        let mut r = rec("web", DAEMON, 3, "boom");
        r.stream = Some("stderr");
        assert!(rfc5424(&r, &id()).starts_with("<27>1 "));
        assert!(rfc5424(&r, &id())
            .contains(" web - - [keel@32473 machine_id=\"0a1b2c3d4e5f60718293a4b5c6d7e8f9\" stream=\"stderr\"] boom"));
        assert!(rfc5424(&rec("kernel", KERN, 4, "x"), &id()).starts_with("<4>1 "));
    }

    #[test]
    fn header_fields_and_params_are_escaped() {
        let odd = Identity { machine_id: "a\"b]c\\".into(), hostname: "".into() };
        let msg = rfc5424(&rec("my app", DAEMON, 6, "m"), &odd);
        assert!(msg.contains(" - myapp - - [keel@32473 machine_id=\"a\\\"b\\]c\\\\\"] m"), "{msg}");
        assert_eq!(header_field(&"x".repeat(60), 48).len(), 48);
    }

    #[test]
    fn octet_counting_counts_bytes_not_characters() {
        let mut out = Vec::new();
        octet_counted("héllo", &mut out);
        octet_counted("a\nb", &mut out);
        assert_eq!(out, "6 héllo3 a\nb".as_bytes());
    }

    #[test]
    fn json_is_one_line_per_record_with_every_field() {
        let mut out = Vec::new();
        let mut r = rec("web", DAEMON, 4, "two\nlines \"quoted\"");
        r.stream = Some("stdout");
        json_line(&r, &id(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["msg"], "two\nlines \"quoted\"");
        assert_eq!(v["hostname"], "edge-1");
        assert_eq!(v["machine_id"], "0a1b2c3d4e5f60718293a4b5c6d7e8f9");
        assert_eq!(v["app"], "web");
        assert_eq!(v["severity"], "warning");
        assert_eq!(v["stream"], "stdout");
        assert_eq!(v["time"], "2026-12-02T15:04:05.123456Z");
    }

    #[test]
    fn severities_follow_syslog() {
        assert_eq!(severity(log::Level::Error), 3);
        assert_eq!(severity(log::Level::Trace), 7);
        assert_eq!(severity_name(0), "emerg");
        assert_eq!(severity_name(200), "debug");
    }
}
