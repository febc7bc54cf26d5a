//! /etc/resolv.conf, which on the read-only root is a link to /run/keel/resolv.conf. Rendering is pure; writing
//! happens only when the content changes, atomically (temp file + rename).

use std::net::IpAddr;

pub const PATH: &str = "/run/keel/resolv.conf";

/// glibc and musl read at most three name servers; the search list is capped as glibc caps it.
pub fn render(nameservers: &[IpAddr], search: &[String], source: &str) -> String {
    let mut out = format!("# Written by Keel from {source}. The root is read-only: change the node config instead.\n");
    for ns in nameservers.iter().take(3) {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    let mut domains = Vec::new();
    let mut len = 0;
    for d in search.iter().take(6) {
        if len + d.len() + 1 > 256 {
            break;
        }
        len += d.len() + 1;
        domains.push(d.as_str());
    }
    if !domains.is_empty() {
        out.push_str(&format!("search {}\n", domains.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_servers_and_search() {
        let ns: Vec<IpAddr> =
            ["10.0.2.3", "fd00::3", "1.1.1.1", "8.8.8.8"].iter().map(|s| s.parse().unwrap()).collect();
        let text = render(&ns, &["example.org".into(), "lab".into()], "dhcp on eth0");
        assert_eq!(
            text,
            "# Written by Keel from dhcp on eth0. The root is read-only: change the node config instead.\n\
             nameserver 10.0.2.3\nnameserver fd00::3\nnameserver 1.1.1.1\nsearch example.org lab\n"
        );
    }
}
