//! Configuration read from platform variables (wrangler `[vars]`, Spin
//! variables). Parsing never fails outright: problems are collected and
//! reported by `GET /readyz`, and safe defaults apply meanwhile.

pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Names of the variables the core reads.
pub mod vars {
    /// Comma-separated origins allowed to call the API from a browser,
    /// e.g. `https://app.example.com,http://localhost:3000`.
    pub const ALLOWED_ORIGINS: &str = "ALLOWED_ORIGINS";
    /// Largest accepted request body in bytes (default 1 MiB).
    pub const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
    /// Every variable, for adapters that must map each one explicitly.
    pub const ALL: [&str; 2] = [ALLOWED_ORIGINS, MAX_BODY_BYTES];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// A configuration and what was wrong with the variables it came from.
#[derive(Debug, Clone, Default)]
pub struct LoadedConfig {
    pub config: Config,
    pub problems: Vec<String>,
}

impl Config {
    /// Reads every variable through `lookup` (absent → `None`).
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> LoadedConfig {
        let mut config = Self::default();
        let mut problems = Vec::new();
        if let Some(raw) = lookup(vars::ALLOWED_ORIGINS) {
            for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                match parse_origin(origin) {
                    Some(origin) => config.allowed_origins.push(origin),
                    None => problems.push(format!(
                        "{}: {origin:?} is not an origin like https://app.example.com",
                        vars::ALLOWED_ORIGINS
                    )),
                }
            }
        }
        if let Some(raw) = lookup(vars::MAX_BODY_BYTES) {
            match raw.trim().parse::<usize>() {
                Ok(n) if n > 0 => config.max_body_bytes = n,
                _ => problems.push(format!(
                    "{}: {raw:?} is not a positive number of bytes",
                    vars::MAX_BODY_BYTES
                )),
            }
        }
        LoadedConfig { config, problems }
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }
}

/// `scheme://host[:port]` with an http(s) scheme, nothing after; lowercased.
/// Hosts are names or IPv4 addresses (IPv6 literals are not accepted).
fn parse_origin(raw: &str) -> Option<String> {
    let lower = raw.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let (host, port) = match rest.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    (host_ok && port_ok).then_some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> LoadedConfig {
        Config::load(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn absent_variables_give_safe_defaults() {
        let loaded = load(&[]);
        assert_eq!(loaded.config, Config::default());
        assert!(loaded.problems.is_empty());
        assert!(
            loaded.config.allowed_origins.is_empty(),
            "no CORS grant by default"
        );
    }

    #[test]
    fn origins_are_parsed_and_checked() {
        let cases = [
            (
                "https://app.example.com",
                Some("https://app.example.com"),
                "https origin",
            ),
            (
                "http://localhost:3000",
                Some("http://localhost:3000"),
                "with port",
            ),
            (
                "HTTPS://App.Example.com",
                Some("https://app.example.com"),
                "lowercased",
            ),
            ("https://app.example.com/", None, "trailing slash is a path"),
            ("https://app.example.com/x", None, "path"),
            ("*", None, "wildcard is never allowed"),
            ("ftp://example.com", None, "not http(s)"),
            ("https://", None, "no host"),
            ("http://localhost:", None, "empty port"),
            ("http://localhost:80a", None, "non-numeric port"),
        ];
        for (raw, want, why) in cases {
            let loaded = load(&[(vars::ALLOWED_ORIGINS, raw)]);
            let got = loaded.config.allowed_origins.first().map(String::as_str);
            assert_eq!(got, want, "{why}");
            assert_eq!(
                loaded.problems.is_empty(),
                want.is_some(),
                "{why}: a bad origin is reported"
            );
        }
    }

    #[test]
    fn body_limit_must_be_a_positive_number() {
        let cases = [
            ("2048", Some(2048), "number"),
            (" 10 ", Some(10), "whitespace trimmed"),
            ("0", None, "zero"),
            ("-1", None, "negative"),
            ("1MB", None, "units are not parsed"),
        ];
        for (raw, want, why) in cases {
            let loaded = load(&[(vars::MAX_BODY_BYTES, raw)]);
            let expected = want.unwrap_or(DEFAULT_MAX_BODY_BYTES);
            assert_eq!(loaded.config.max_body_bytes, expected, "{why}");
            assert_eq!(
                loaded.problems.iter().any(|p| p.contains("MAX_BODY_BYTES")),
                want.is_none(),
                "{why}: a bad value is reported by name"
            );
        }
    }
}
