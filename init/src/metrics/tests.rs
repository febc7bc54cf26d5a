//! The exposition, read back by a strict parser of the Prometheus text format (0.0.4): a line it does not
//! accept fails the test.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Parsed {
    /// name -> type
    types: BTreeMap<String, String>,
    /// (name, sorted labels) -> value
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

fn metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// `{a="x",b="y\"z"}` -> labels and the rest of the line after `}`.
type Labels = Vec<(String, String)>;

fn labels(s: &str) -> Result<(Labels, &str), String> {
    let mut out = Vec::new();
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((out, r));
        }
        let (name, r) = rest.split_once("=\"").ok_or_else(|| format!("no =\" in {rest:?}"))?;
        if !label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw line feed in a label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        out.push((name.to_string(), value));
        rest = &r[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

/// Parses a whole exposition strictly; the error names the line.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    let mut helped = BTreeSet::new();
    // The family whose samples are being read: samples of one family are contiguous.
    let mut current: Option<String> = None;
    let mut finished = BTreeSet::new();
    if !text.ends_with('\n') {
        return Err("the exposition must end with a line feed".into());
    }
    for (n, line) in text.lines().enumerate() {
        let err = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or_else(|| err("HELP without text".into()))?;
            if !metric_name(name) || help.trim().is_empty() || !helped.insert(name.to_string()) {
                return Err(err("bad or repeated HELP".into()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| err("TYPE without a type".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(err(format!("unknown type {kind}")));
            }
            if !metric_name(name) || p.types.insert(name.to_string(), kind.to_string()).is_some() {
                return Err(err("bad or repeated TYPE".into()));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(err("a counter's name must end in _total".into()));
            }
            if let Some(prev) = current.replace(name.to_string()) {
                finished.insert(prev);
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(err("stray comment or empty line".into()));
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !metric_name(name) {
            return Err(err("bad metric name".into()));
        }
        let (mut ls, rest) = if line[name_end..].starts_with('{') {
            labels(&line[name_end..]).map_err(err)?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let v = rest.strip_prefix(' ').ok_or_else(|| err("no space before the value".into()))?;
        let v = value(v).map_err(err)?;
        if current.as_deref() != Some(name) || finished.contains(name) || !helped.contains(name) {
            return Err(err("sample without its HELP and TYPE right before, or not contiguous".into()));
        }
        ls.sort();
        let names: BTreeSet<_> = ls.iter().map(|(k, _)| k).collect();
        if names.len() != ls.len() {
            return Err(err("a label twice".into()));
        }
        if p.samples.insert((name.to_string(), ls), v).is_some() {
            return Err(err("a series twice".into()));
        }
    }
    Ok(p)
}

pub fn get(p: &Parsed, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut ls: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    ls.sort();
    p.samples.get(&(name.to_string(), ls)).copied()
}

#[test]
fn the_whole_exposition_parses_strictly() {
    bump(&CONFIG_ACCEPTED);
    rejected("not-newer");
    pulled("not-modified");
    pulled("not-modified");
    let mut restarts = Family::new("keel_service_restarts_total", "Restarts.", "counter");
    restarts.sample(&[("service", "web")], 3.0);
    restarts.sample(&[("service", "odd \"name\"\\\nx")], 1.0);
    let mut sent = Family::new("keel_log_forward_sent_total", "Lines sent.", "counter");
    sent.sample(&[("destination", "tcp://10.0.2.2:5514")], 42.0);
    let text = render_with(
        &[("keel_config_generation", "The applied generation.", 7.0), ("keel_api_forbidden_total", "403s.", 2.0)],
        &[restarts, sent],
    );
    let p = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(p.types["keel_config_accepted_total"], "counter");
    assert_eq!(p.types["keel_api_forbidden_total"], "counter", "a _total extra is a counter");
    assert_eq!(p.types["keel_config_generation"], "gauge");
    assert_eq!(get(&p, "keel_config_generation", &[]), Some(7.0));
    assert!(get(&p, "keel_config_rejected_total", &[("reason", "not-newer")]).is_some_and(|v| v >= 1.0));
    assert!(get(&p, "keel_config_pulls_total", &[("result", "not-modified")]).is_some_and(|v| v >= 2.0));
    assert_eq!(get(&p, "keel_service_restarts_total", &[("service", "web")]), Some(3.0));
    assert_eq!(
        get(&p, "keel_service_restarts_total", &[("service", "odd \"name\"\\\nx")]),
        Some(1.0),
        "escapes round-trip"
    );
    assert_eq!(get(&p, "keel_log_forward_sent_total", &[("destination", "tcp://10.0.2.2:5514")]), Some(42.0));
}

#[test]
fn the_parser_refuses_what_prometheus_refuses() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\n";
    assert!(parse(ok).is_ok());
    for bad in [
        "a_total 1\n",                                                          // no HELP/TYPE
        "# HELP a A.\n# TYPE a counter\na 1\n",                                 // counter without _total
        "# HELP a A.\n# TYPE a gauge\na{x=\"1} 1\n",                            // unterminated
        "# HELP a A.\n# TYPE a gauge\na{x=\"\\q\"} 1\n",                        // bad escape
        "# HELP a A.\n# TYPE a gauge\na one\n",                                 // bad value
        "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",                              // series twice
        "# HELP a A.\n# TYPE a gauge\na{1x=\"v\"} 1\n",                         // bad label name
        "# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\nb 1\na 1\n", // not contiguous
        "# HELP a A.\n# TYPE a gauge\na 1",                                     // no final line feed
        "# HELP a-b A.\n# TYPE a-b gauge\na-b 1\n",                             // bad name
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}
