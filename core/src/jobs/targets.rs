//! Where webhooks may go. A tenant admin names the URL, so it is hostile
//! input: it is parsed (RFC 3986, `http::Uri`), never split by hand, and
//! refused when it could reach something that is not a public receiver —
//! credentials in the URL, loopback, private, link-local, shared (CGNAT),
//! unique-local, multicast, reserved or unspecified addresses in any
//! notation a browser's URL parser accepts (`127.1`, `0x7f000001`,
//! `2130706433`, `[::ffff:127.0.0.1]`, …), and names that only resolve
//! inside a network (`localhost`, `*.internal`, `*.local`, single labels).
//!
//! Hosts the operator lists in `WEBHOOK_HTTP_HOSTS` (local receivers during
//! development and the gates) are exempt: the operator's list, not a
//! tenant's. `WEBHOOK_ALLOWED_HOSTS`, when set, is the only hosts allowed.
//! The check runs when a URL is stored and again before each delivery.

use std::net::{Ipv4Addr, Ipv6Addr};

use http::Uri;

use crate::jobs::JobsConfig;

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Why a webhook URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not an absolute `https://` (or `http://`) URL with a host.
    Malformed,
    /// `http://` to a host not in `WEBHOOK_HTTP_HOSTS`.
    PlainHttp,
    /// `user:password@` in the URL.
    Credentials,
    /// An address that is not public.
    InternalAddress,
    /// A name that only resolves inside a network.
    InternalName,
    /// Not in `WEBHOOK_ALLOWED_HOSTS`.
    NotAllowed,
}

impl Refused {
    /// For the field error of the request that named the URL.
    pub fn message(self) -> &'static str {
        match self {
            Self::Malformed => {
                "must be an absolute https:// URL with a host, at most 2048 characters"
            }
            Self::PlainHttp => "must be https:// (http:// only to a host in WEBHOOK_HTTP_HOSTS)",
            Self::Credentials => "must not carry credentials (user:password@)",
            Self::InternalAddress => {
                "must not name a loopback, private, link-local, shared, multicast or reserved address"
            }
            Self::InternalName => {
                "must name a public host (not localhost, *.internal, *.local or a single label)"
            }
            Self::NotAllowed => "must name a host in WEBHOOK_ALLOWED_HOSTS",
        }
    }
}

/// Whether a job may deliver to `url`.
pub fn check(config: &JobsConfig, url: &str) -> Result<(), Refused> {
    if url.len() > MAX_URL_LEN || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Refused::Malformed);
    }
    let uri: Uri = url.parse().map_err(|_| Refused::Malformed)?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(Refused::Malformed),
    };
    let authority = uri.authority().ok_or(Refused::Malformed)?.as_str();
    // Browsers read `\` as `/` and decode `%` in hosts: anything that may
    // parse differently there than here is refused.
    if authority.contains('@') {
        return Err(Refused::Credentials);
    }
    if authority.contains(['\\', '%']) {
        return Err(Refused::Malformed);
    }
    let authority = authority.to_ascii_lowercase();
    let raw_host = uri.host().ok_or(Refused::Malformed)?.to_ascii_lowercase();
    let host = raw_host.strip_suffix('.').unwrap_or(&raw_host);
    // An empty label (`localhost..`, `a..b`) is no public name.
    if host.is_empty() || (host.split('.').any(str::is_empty) && !host.starts_with('[')) {
        return Err(Refused::Malformed);
    }
    let listed = |list: &[String]| list.iter().any(|h| *h == authority || h == host);
    let operator_listed = listed(&config.webhook_http_hosts);
    if !https && !operator_listed {
        return Err(Refused::PlainHttp);
    }
    if !operator_listed {
        match classify(host)? {
            Host::Address(true) | Host::Name(true) => {}
            Host::Address(false) => return Err(Refused::InternalAddress),
            Host::Name(false) => return Err(Refused::InternalName),
        }
    }
    if !config.webhook_allowed_hosts.is_empty() && !listed(&config.webhook_allowed_hosts) {
        return Err(Refused::NotAllowed);
    }
    Ok(())
}

/// A host, and whether it is public.
enum Host {
    Address(bool),
    Name(bool),
}

fn classify(host: &str) -> Result<Host, Refused> {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: Ipv6Addr = v6.parse().map_err(|_| Refused::Malformed)?;
        return Ok(Host::Address(public_v6(ip)));
    }
    if ends_in_a_number(host) {
        let ip = whatwg_ipv4(host).ok_or(Refused::Malformed)?;
        return Ok(Host::Address(public_v4(ip)));
    }
    let internal = !host.contains('.')
        || host == "localhost"
        || [
            ".localhost",
            ".internal",
            ".local",
            ".localdomain",
            ".home.arpa",
        ]
        .iter()
        .any(|suffix| host.ends_with(suffix));
    Ok(Host::Name(!internal))
}

/// WHATWG URL's "ends in a number": such a host is an IPv4 address (or
/// invalid), whatever its notation.
fn ends_in_a_number(host: &str) -> bool {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    let last = parts.last().copied().unwrap_or("");
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || ipv4_number(last).is_some()
}

/// One part of an IPv4 host in WHATWG notation: decimal, `0x` hex, or
/// octal with a leading zero.
fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or(part.strip_prefix("0X")) {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 20 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// WHATWG URL's IPv4 parser: one to four parts, the last filling the
/// remaining bytes (`127.1` is 127.0.0.1, `2130706433` too).
fn whatwg_ipv4(host: &str) -> Option<Ipv4Addr> {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    if parts.len() > 4 {
        return None;
    }
    let numbers = parts
        .iter()
        .map(|p| ipv4_number(p))
        .collect::<Option<Vec<u64>>>()?;
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|n| *n > 255) {
        return None;
    }
    let room = 5 - u32::try_from(numbers.len()).ok()?;
    if *last >= 256u64.pow(room) {
        return None;
    }
    let mut address = *last;
    for (i, n) in leading.iter().enumerate() {
        address += n * 256u64.pow(3 - u32::try_from(i).ok()?);
    }
    u32::try_from(address).ok().map(Ipv4Addr::from)
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // "this network", unspecified
        || a == 10                             // private
        || a == 127                            // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254)              // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)      // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)      // documentation
        || (a == 192 && b == 168)              // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100)   // documentation
        || (a == 203 && b == 0 && c == 113)    // documentation
        || a >= 224) // multicast, reserved, broadcast
}

/// Only global unicast (`2000::/3`) is public; within it, documentation,
/// Teredo and 6to4 (which embed other addresses) are not. Every IPv4
/// embedding outside it (`::ffff:a.b.c.d`, `::a.b.c.d`, `64:ff9b::`) is
/// refused with the rest.
fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    (s[0] & 0xe000) == 0x2000
        && !(s[0] == 0x2001 && s[1] == 0x0db8)
        && !(s[0] == 0x2001 && s[1] == 0)
        && s[0] != 0x2002
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(http_hosts: &[&str], allowed: &[&str]) -> JobsConfig {
        JobsConfig {
            webhook_http_hosts: http_hosts.iter().map(|h| (*h).to_owned()).collect(),
            webhook_allowed_hosts: allowed.iter().map(|h| (*h).to_owned()).collect(),
            ..JobsConfig::default()
        }
    }

    #[test]
    fn internal_targets_are_refused_in_every_notation() {
        let config = config(&[], &[]);
        let cases: &[(&str, Refused)] = &[
            ("https://127.0.0.1/", Refused::InternalAddress),
            ("https://127.1/", Refused::InternalAddress),
            ("https://127.0.1/", Refused::InternalAddress),
            ("https://0x7f000001/", Refused::InternalAddress),
            ("https://0x7f.0.0.1/", Refused::InternalAddress),
            ("https://0177.0.0.1/", Refused::InternalAddress),
            ("https://2130706433/", Refused::InternalAddress),
            ("https://127.0.0.1./", Refused::InternalAddress),
            ("https://0/", Refused::InternalAddress),
            ("https://0.0.0.0:8080/", Refused::InternalAddress),
            ("https://[::1]/", Refused::InternalAddress),
            ("https://[::]/", Refused::InternalAddress),
            ("https://[::ffff:127.0.0.1]/", Refused::InternalAddress),
            ("https://[::ffff:7f00:1]/", Refused::InternalAddress),
            ("https://[::ffff:8.8.8.8]/", Refused::InternalAddress),
            ("https://[64:ff9b::a9fe:a9fe]/", Refused::InternalAddress),
            ("https://[fe80::1]/", Refused::InternalAddress),
            ("https://[fd00::1]/", Refused::InternalAddress),
            ("https://[fc00::1]/", Refused::InternalAddress),
            ("https://[ff02::1]/", Refused::InternalAddress),
            ("https://[2001:db8::1]/", Refused::InternalAddress),
            ("https://[2002:7f00:1::]/", Refused::InternalAddress),
            (
                "https://169.254.169.254/latest/meta-data/",
                Refused::InternalAddress,
            ),
            ("https://10.0.0.1/", Refused::InternalAddress),
            ("https://10.1/", Refused::InternalAddress),
            ("https://172.16.0.1/", Refused::InternalAddress),
            ("https://172.31.255.255/", Refused::InternalAddress),
            ("https://192.168.1.1/", Refused::InternalAddress),
            ("https://100.64.0.1/", Refused::InternalAddress),
            ("https://224.0.0.1/", Refused::InternalAddress),
            ("https://255.255.255.255/", Refused::InternalAddress),
            ("https://localhost/", Refused::InternalName),
            ("https://LOCALHOST./", Refused::InternalName),
            ("https://api.localhost/", Refused::InternalName),
            ("https://metadata.google.internal/", Refused::InternalName),
            ("https://printer.local/", Refused::InternalName),
            ("https://intranet/", Refused::InternalName),
            ("https://localhost../", Refused::Malformed),
            ("https://metadata.google.internal../", Refused::Malformed),
            ("https://.hooks.example.com/", Refused::Malformed),
            // pragma: allowlist nextline secret
            ("https://user:pw@hooks.example.com/", Refused::Credentials),
            (
                "https://hooks.example.com:443@169.254.169.254/latest/",
                Refused::Credentials,
            ),
            ("http://127.0.0.1:1@localhost:8080/", Refused::Credentials),
            ("https://127.0.0.%31/", Refused::Malformed),
            ("https://hooks.example.com\\@127.0.0.1/", Refused::Malformed),
            ("https://1.2.3.4.5/", Refused::Malformed),
            ("https://256.0.0.1/", Refused::Malformed),
            ("https://0x100000000/", Refused::Malformed),
            ("ftp://hooks.example.com/", Refused::Malformed),
            ("/relative/path", Refused::Malformed),
            ("https:///nohost", Refused::Malformed),
            ("https://hooks.example.com/a b", Refused::Malformed),
            ("http://hooks.example.com/", Refused::PlainHttp),
        ];
        for (url, want) in cases {
            assert_eq!(check(&config, url), Err(*want), "{url}");
        }
    }

    #[test]
    fn public_receivers_are_allowed() {
        let config = config(&[], &[]);
        for url in [
            "https://hooks.example.com/in",
            "https://hooks.example.com:8443/in?x=1#f",
            "https://HOOKS.Example.com./in",
            "https://8.8.8.8/",
            "https://1.2.3.4/",
            "https://172.32.0.1/",
            "https://100.128.0.1/",
            "https://[2606:4700::1111]/",
            "https://xn--bcher-kva.example/",
        ] {
            assert_eq!(check(&config, url), Ok(()), "{url}");
        }
    }

    #[test]
    fn operator_lists_are_matched_on_the_parsed_host() {
        // Local receivers the operator lists (development, the gates).
        let local = config(&["127.0.0.1"], &[]);
        assert_eq!(check(&local, "http://127.0.0.1:9000/hook"), Ok(()));
        assert_eq!(check(&local, "https://127.0.0.1/hook"), Ok(()));
        assert_eq!(
            check(&local, "http://127.1:9000/hook"),
            Err(Refused::PlainHttp),
            "listed by its parsed host, not another notation"
        );
        assert_eq!(
            check(&local, "http://127.0.0.1:1@localhost:9000/"),
            Err(Refused::Credentials)
        );
        let allowed = config(&[], &["hooks.example.com"]);
        assert_eq!(check(&allowed, "https://hooks.example.com/x"), Ok(()));
        assert_eq!(
            check(&allowed, "https://hooks.example.com:443@169.254.169.254/"),
            Err(Refused::Credentials)
        );
        assert_eq!(
            check(&allowed, "https://other.example.com/x"),
            Err(Refused::NotAllowed)
        );
        let by_port = config(&[], &["hooks.example.com:8443"]);
        assert_eq!(check(&by_port, "https://hooks.example.com:8443/x"), Ok(()));
        assert_eq!(
            check(&by_port, "https://hooks.example.com/x"),
            Err(Refused::NotAllowed)
        );
    }

    #[test]
    fn whatwg_ipv4_notations_read_as_browsers_read_them() {
        let cases = [
            ("127.1", Some([127, 0, 0, 1])),
            ("0x7f.1", Some([127, 0, 0, 1])),
            ("017700000001", Some([127, 0, 0, 1])),
            ("192.168.257", Some([192, 168, 1, 1])),
            ("1.2.3.4.", Some([1, 2, 3, 4])),
            ("1.2.3.256", None),
            ("1.2.65536", None),
            ("4294967296", None),
            ("09.1.1.1", None),
        ];
        for (host, want) in cases {
            assert_eq!(whatwg_ipv4(host), want.map(Ipv4Addr::from), "{host}");
        }
    }
}
