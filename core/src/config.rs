//! Configuration read from platform variables (wrangler `[vars]`, Spin
//! variables). Parsing never fails outright: problems are collected and
//! reported by `GET /readyz`, and safe defaults apply meanwhile.

use std::net::IpAddr;

pub use crate::auth::AuthConfig;
use crate::auth::keys::SigningKeys;
pub use crate::jobs::JobsConfig;
pub use crate::metrics::MetricsConfig;
use crate::ratelimit::{Policies, RouteClass, parse_policy};
pub use crate::secret::Secret;

pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_UPLOAD_MAX_BYTES: u64 = 1024 * 1024;
pub const DEFAULT_UPLOAD_CONTENT_TYPES: [&str; 8] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "text/csv",
    "application/json",
];
pub const DEFAULT_JWT_ISSUER: &str = "tepi";
pub const DEFAULT_JWT_AUDIENCE: &str = "tepi-api";
/// A bootstrap token shorter than this is refused as guessable.
pub const MIN_BOOTSTRAP_TOKEN_LEN: usize = 32;

/// Names of the variables the core reads.
pub mod vars {
    /// Comma-separated origins allowed to call the API from a browser,
    /// e.g. `https://app.example.com,http://localhost:3000`.
    pub const ALLOWED_ORIGINS: &str = "ALLOWED_ORIGINS";
    /// Largest accepted request body in bytes (default 1 MiB).
    pub const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
    /// Secret. Access-token signing keys: `kid:base64url-seed[,kid:seed…]`,
    /// the first signs, all verify (see `auth::keys`).
    pub const JWT_SIGNING_KEYS: &str = "JWT_SIGNING_KEYS";
    /// The `iss` of issued tokens and the only one accepted (default `tepi`).
    pub const JWT_ISSUER: &str = "JWT_ISSUER";
    /// The `aud` of issued tokens and the only one accepted (default `tepi-api`).
    pub const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
    /// Secret, optional. Enables `POST /v1/bootstrap` while no tenant exists.
    pub const BOOTSTRAP_TOKEN: &str = "BOOTSTRAP_TOKEN";
    /// Comma-separated IP addresses of proxies in front of Tepi whose
    /// `X-Forwarded-For` is believed (none by default).
    pub const TRUSTED_PROXIES: &str = "TRUSTED_PROXIES";
    /// `false` ignores the client address the platform reports (Workers:
    /// `CF-Connecting-IP`), for local runs where a client can set it
    /// itself (`wrangler dev`); anonymous callers then share one budget.
    pub const TRUST_PLATFORM_PEER: &str = "TRUST_PLATFORM_PEER";
    /// Rate-limit policies per route class, `<limit>/<period>[;burst=<n>]`:
    /// `RATE_LIMIT_LOGIN`, `RATE_LIMIT_PUBLIC`, `RATE_LIMIT_API`,
    /// `RATE_LIMIT_ADMIN`, `RATE_LIMIT_PUSH`, `RATE_LIMIT_ALERTS` (see
    /// `ratelimit::RouteClass`).
    pub const RATE_LIMIT_PREFIX: &str = "RATE_LIMIT_";
    /// Largest upload in bytes (default 1 MiB; bodies are also capped by
    /// `MAX_BODY_BYTES`).
    pub const UPLOAD_MAX_BYTES: &str = "UPLOAD_MAX_BYTES";
    /// Comma-separated media types an upload may declare.
    pub const UPLOAD_CONTENT_TYPES: &str = "UPLOAD_CONTENT_TYPES";
    /// Background jobs: attempts in all before the dead-letter queue
    /// (default 5), the first retry's delay ceiling and the cap of every
    /// delay in seconds (defaults 2 and 300; full jitter), each attempt's
    /// time budget in milliseconds (default 15000), jobs of a batch run at
    /// once (default 8), and the outbox lease on Spin in seconds (default 60).
    pub const JOB_MAX_ATTEMPTS: &str = "JOB_MAX_ATTEMPTS";
    pub const JOB_RETRY_BASE_SECS: &str = "JOB_RETRY_BASE_SECS";
    pub const JOB_RETRY_CAP_SECS: &str = "JOB_RETRY_CAP_SECS";
    pub const JOB_TIMEOUT_MS: &str = "JOB_TIMEOUT_MS";
    pub const JOB_CONCURRENCY: &str = "JOB_CONCURRENCY";
    pub const OUTBOX_LEASE_SECS: &str = "OUTBOX_LEASE_SECS";
    /// Spin: how many due outbox jobs an instance drains right after
    /// answering a request that put jobs in the outbox (default 25; 0
    /// leaves them to `POST /v1/jobs/drain`).
    pub const JOB_DRAIN_AFTER_RESPONSE: &str = "JOB_DRAIN_AFTER_RESPONSE";
    /// Seconds before a queue message that could not be settled (parked,
    /// or forwarded to its dead-letter queue) is offered again.
    pub const JOB_SETTLE_RETRY_SECS: &str = "JOB_SETTLE_RETRY_SECS";
    /// Prefix of the Cloudflare queue names (`<prefix><queue>`,
    /// `<prefix><queue>-dlq`), as in wrangler.toml.
    pub const QUEUE_PREFIX: &str = "QUEUE_PREFIX";
    /// Secret, at least 32 characters. Signs outbound webhooks
    /// (`Tepi-Signature`); without it webhook jobs fail and retry.
    pub const WEBHOOK_SIGNING_SECRET: &str = "WEBHOOK_SIGNING_SECRET";
    /// Comma-separated hosts (`host` or `host:port`) webhooks may reach
    /// over plain `http://` — for local receivers; https only otherwise.
    pub const WEBHOOK_HTTP_HOSTS: &str = "WEBHOOK_HTTP_HOSTS";
    /// Comma-separated hosts webhooks may reach at all (empty: any https
    /// host). Test and staging runs keep deliveries on known receivers.
    pub const WEBHOOK_ALLOWED_HOSTS: &str = "WEBHOOK_ALLOWED_HOSTS";
    /// Metrics: seconds after which pushed series and gauges nobody writes
    /// expire (default 600), and between an instance's flushes of its
    /// deltas to the aggregate (default 5).
    pub const METRICS_TTL_SECS: &str = "METRICS_TTL_SECS";
    pub const METRICS_FLUSH_SECS: &str = "METRICS_FLUSH_SECS";
    /// Push limits (`metrics::limits::Limit::var`): see docs/api.md.
    pub const PUSH_MAX_BYTES: &str = "PUSH_MAX_BYTES";
    /// Comma-separated on-call webhook URLs that receive each alert
    /// transition of the alert inbox, signed with the operator tenant's
    /// secret (checked like every webhook target).
    pub const ALERT_WEBHOOK_URLS: &str = "ALERT_WEBHOOK_URLS";
    /// Seconds a resolved alert stays in the alert inbox (default 30 days).
    pub const ALERT_RETENTION_SECS: &str = "ALERT_RETENTION_SECS";
    /// Every variable, for adapters that must map each one explicitly.
    pub const ALL: [&str; 43] = [
        JOB_SETTLE_RETRY_SECS,
        QUEUE_PREFIX,
        WEBHOOK_ALLOWED_HOSTS,
        METRICS_TTL_SECS,
        METRICS_FLUSH_SECS,
        JOB_MAX_ATTEMPTS,
        JOB_RETRY_BASE_SECS,
        JOB_RETRY_CAP_SECS,
        JOB_TIMEOUT_MS,
        JOB_CONCURRENCY,
        OUTBOX_LEASE_SECS,
        JOB_DRAIN_AFTER_RESPONSE,
        WEBHOOK_SIGNING_SECRET,
        WEBHOOK_HTTP_HOSTS,
        UPLOAD_MAX_BYTES,
        UPLOAD_CONTENT_TYPES,
        ALLOWED_ORIGINS,
        MAX_BODY_BYTES,
        JWT_SIGNING_KEYS,
        JWT_ISSUER,
        JWT_AUDIENCE,
        BOOTSTRAP_TOKEN,
        TRUSTED_PROXIES,
        TRUST_PLATFORM_PEER,
        "RATE_LIMIT_LOGIN",
        "RATE_LIMIT_PUBLIC",
        "RATE_LIMIT_API",
        "RATE_LIMIT_ADMIN",
        "RATE_LIMIT_PUSH",
        "RATE_LIMIT_ALERTS",
        ALERT_WEBHOOK_URLS,
        ALERT_RETENTION_SECS,
        PUSH_MAX_BYTES,
        "PUSH_MAX_SERIES",
        "PUSH_MAX_GROUP_SERIES",
        "PUSH_MAX_PUSHER_GROUPS",
        "PUSH_MAX_PUSHER_SERIES",
        "PUSH_MAX_GROUPING_LABELS",
        "PUSH_MAX_LABELS",
        "PUSH_MAX_LABEL_NAME_LEN",
        "PUSH_MAX_LABEL_VALUE_LEN",
        "PUSH_MAX_HELP_LEN",
        "METRICS_MAX_SERIES",
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub auth: AuthConfig,
    pub rate_limits: Policies,
    pub trusted_proxies: Vec<IpAddr>,
    /// Whether the platform's peer address (`PeerAddr`) names the client.
    pub trust_platform_peer: bool,
    pub uploads: UploadConfig,
    pub jobs: JobsConfig,
    pub metrics: MetricsConfig,
    pub ops: OpsConfig,
}

/// The operators' own tools: the alert inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsConfig {
    /// On-call webhooks told of every alert transition.
    pub alert_webhook_urls: Vec<String>,
    /// How long a resolved alert stays listed.
    pub alert_retention_secs: i64,
}

/// Most on-call webhooks `ALERT_WEBHOOK_URLS` may list.
pub const MAX_ALERT_WEBHOOKS: usize = 5;

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            alert_webhook_urls: Vec::new(),
            alert_retention_secs: 30 * 86_400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConfig {
    pub max_bytes: u64,
    /// Lowercase media types, without parameters.
    pub content_types: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            auth: AuthConfig {
                signing_keys: None,
                issuer: DEFAULT_JWT_ISSUER.to_owned(),
                audience: DEFAULT_JWT_AUDIENCE.to_owned(),
                bootstrap_token: None,
            },
            rate_limits: Policies::default(),
            trusted_proxies: Vec::new(),
            trust_platform_peer: true,
            jobs: JobsConfig::default(),
            metrics: MetricsConfig::default(),
            ops: OpsConfig::default(),
            uploads: UploadConfig {
                max_bytes: DEFAULT_UPLOAD_MAX_BYTES,
                content_types: DEFAULT_UPLOAD_CONTENT_TYPES
                    .iter()
                    .map(|t| (*t).to_owned())
                    .collect(),
            },
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
        load_auth(&lookup, &mut config.auth, &mut problems);
        for class in RouteClass::ALL {
            if let Some(raw) = lookup(class.var()).filter(|v| !v.trim().is_empty()) {
                match parse_policy(&raw) {
                    Ok(policy) => config.rate_limits.set(class, policy),
                    Err(e) => problems.push(format!("{}: {e}", class.var())),
                }
            }
        }
        if let Some(raw) = lookup(vars::TRUSTED_PROXIES) {
            for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                match entry.parse::<IpAddr>() {
                    Ok(ip) => config.trusted_proxies.push(ip),
                    Err(_) => problems.push(format!(
                        "{}: {entry:?} is not an IP address",
                        vars::TRUSTED_PROXIES
                    )),
                }
            }
        }
        match lookup(vars::TRUST_PLATFORM_PEER).as_deref().map(str::trim) {
            None | Some("" | "true") => {}
            Some("false") => config.trust_platform_peer = false,
            Some(other) => problems.push(format!(
                "{}: {other:?} is not true or false",
                vars::TRUST_PLATFORM_PEER
            )),
        }
        if let Some(raw) = lookup(vars::UPLOAD_MAX_BYTES).filter(|v| !v.trim().is_empty()) {
            match raw.trim().parse::<u64>() {
                Ok(n) if n > 0 => config.uploads.max_bytes = n,
                _ => problems.push(format!(
                    "{}: {raw:?} is not a positive number of bytes",
                    vars::UPLOAD_MAX_BYTES
                )),
            }
        }
        if let Some(raw) = lookup(vars::UPLOAD_CONTENT_TYPES).filter(|v| !v.trim().is_empty()) {
            let types: Vec<String> = raw
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect();
            // Bare types: a PUT's Content-Type is compared without
            // parameters, so a listed parameter could never match.
            let bare = |t: &String| {
                !t.contains(';')
                    && !t.contains(char::is_whitespace)
                    && t.split_once('/')
                        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
            };
            if types.iter().all(bare) {
                config.uploads.content_types = types;
            } else {
                problems.push(format!(
                    "{}: {raw:?} is not a list of media types like image/png (no parameters)",
                    vars::UPLOAD_CONTENT_TYPES
                ));
            }
        }
        load_jobs(&lookup, &mut config.jobs, &mut problems);
        load_metrics(&lookup, &mut config.metrics, &mut problems);
        load_ops(&lookup, &config.jobs, &mut config.ops, &mut problems);
        LoadedConfig { config, problems }
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }
}

/// A whole number within `range`, or a problem naming the variable.
fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    range: std::ops::RangeInclusive<T>,
    target: &mut T,
    problems: &mut Vec<String>,
) {
    let Some(raw) = lookup(name).filter(|v| !v.trim().is_empty()) else {
        return;
    };
    match raw.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => *target = n,
        _ => problems.push(format!(
            "{name}: {raw:?} is not a whole number from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

/// The alert inbox's variables. On-call webhook URLs are checked like
/// every webhook target (after the jobs' host lists are read).
fn load_ops(
    lookup: &impl Fn(&str) -> Option<String>,
    jobs: &JobsConfig,
    ops: &mut OpsConfig,
    problems: &mut Vec<String>,
) {
    if let Some(raw) = lookup(vars::ALERT_WEBHOOK_URLS) {
        for url in raw.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            if ops.alert_webhook_urls.len() == MAX_ALERT_WEBHOOKS {
                problems.push(format!(
                    "{}: at most {MAX_ALERT_WEBHOOKS} URLs",
                    vars::ALERT_WEBHOOK_URLS
                ));
                break;
            }
            match crate::jobs::targets::check(jobs, url) {
                Ok(()) => ops.alert_webhook_urls.push(url.to_owned()),
                Err(refused) => problems.push(format!(
                    "{}: {url:?}: {}",
                    vars::ALERT_WEBHOOK_URLS,
                    refused.message()
                )),
            }
        }
    }
    number(
        lookup,
        vars::ALERT_RETENTION_SECS,
        3600..=366 * 86_400,
        &mut ops.alert_retention_secs,
        problems,
    );
}

fn load_metrics(
    lookup: &impl Fn(&str) -> Option<String>,
    metrics: &mut MetricsConfig,
    problems: &mut Vec<String>,
) {
    number(
        lookup,
        vars::METRICS_TTL_SECS,
        10..=86_400,
        &mut metrics.ttl_secs,
        problems,
    );
    number(
        lookup,
        vars::METRICS_FLUSH_SECS,
        1..=300,
        &mut metrics.flush_secs,
        problems,
    );
    for limit in crate::metrics::limits::Limit::ALL {
        number(
            lookup,
            limit.var(),
            limit.range(),
            limit.set(&mut metrics.push),
            problems,
        );
    }
}

fn load_jobs(
    lookup: &impl Fn(&str) -> Option<String>,
    jobs: &mut JobsConfig,
    problems: &mut Vec<String>,
) {
    number(
        lookup,
        vars::JOB_MAX_ATTEMPTS,
        1..=100,
        &mut jobs.retry.max_attempts,
        problems,
    );
    number(
        lookup,
        vars::JOB_RETRY_BASE_SECS,
        0..=3600,
        &mut jobs.retry.base_secs,
        problems,
    );
    // Cloudflare Queues delay a retry by at most 12 hours.
    number(
        lookup,
        vars::JOB_RETRY_CAP_SECS,
        0..=43_200,
        &mut jobs.retry.cap_secs,
        problems,
    );
    number(
        lookup,
        vars::JOB_TIMEOUT_MS,
        100..=900_000,
        &mut jobs.timeout_ms,
        problems,
    );
    number(
        lookup,
        vars::JOB_CONCURRENCY,
        1..=100,
        &mut jobs.concurrency,
        problems,
    );
    number(
        lookup,
        vars::OUTBOX_LEASE_SECS,
        1..=3600,
        &mut jobs.lease_secs,
        problems,
    );
    number(
        lookup,
        vars::JOB_DRAIN_AFTER_RESPONSE,
        0..=1000,
        &mut jobs.drain_after_response,
        problems,
    );
    number(
        lookup,
        vars::JOB_SETTLE_RETRY_SECS,
        1..=43_200,
        &mut jobs.settle_retry_secs,
        problems,
    );
    if let Some(prefix) = lookup(vars::QUEUE_PREFIX).filter(|v| !v.trim().is_empty()) {
        let prefix = prefix.trim();
        // Cloudflare queue names: lowercase letters, digits and dashes.
        if prefix.len() <= 40
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            prefix.clone_into(&mut jobs.queue_prefix);
        } else {
            problems.push(format!(
                "{}: lowercase letters, digits and dashes only, at most 40",
                vars::QUEUE_PREFIX
            ));
        }
    }
    match lookup(vars::WEBHOOK_SIGNING_SECRET).filter(|v| !v.trim().is_empty()) {
        Some(secret) if secret.trim().len() >= 32 => {
            jobs.webhook_secret = Some(Secret::new(secret.trim().to_owned()));
        }
        Some(_) => problems.push(format!(
            "{}: shorter than 32 characters",
            vars::WEBHOOK_SIGNING_SECRET
        )),
        // Optional: only webhook deliveries (they fail and retry, logging
        // why, until it is set) and the tenants' webhook secrets need it.
        None => {}
    }
    if let Some(raw) = lookup(vars::WEBHOOK_ALLOWED_HOSTS) {
        jobs.webhook_allowed_hosts = raw
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
    }
    if let Some(raw) = lookup(vars::WEBHOOK_HTTP_HOSTS) {
        jobs.webhook_http_hosts = raw
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
    }
}

/// Empty values count as absent: Spin variables default to "".
fn load_auth(
    lookup: &impl Fn(&str) -> Option<String>,
    auth: &mut AuthConfig,
    problems: &mut Vec<String>,
) {
    let present = |name| lookup(name).filter(|v: &String| !v.trim().is_empty());
    match present(vars::JWT_SIGNING_KEYS) {
        None => problems.push(format!(
            "{}: not set; protected routes answer 503 until it is (see README: secrets)",
            vars::JWT_SIGNING_KEYS
        )),
        Some(raw) => match SigningKeys::parse(&raw) {
            Ok(keys) => auth.signing_keys = Some(keys),
            Err(e) => problems.push(format!("{}: {e}", vars::JWT_SIGNING_KEYS)),
        },
    }
    if let Some(issuer) = present(vars::JWT_ISSUER) {
        issuer.trim().clone_into(&mut auth.issuer);
    }
    if let Some(audience) = present(vars::JWT_AUDIENCE) {
        audience.trim().clone_into(&mut auth.audience);
    }
    if let Some(token) = present(vars::BOOTSTRAP_TOKEN) {
        // Trimmed as the presented token is: a trailing newline from
        // `wrangler secret put` must not make it unmatchable.
        let token = token.trim();
        if token.chars().count() >= MIN_BOOTSTRAP_TOKEN_LEN {
            auth.bootstrap_token = Some(Secret::new(token.to_owned()));
        } else {
            problems.push(format!(
                "{}: shorter than {MIN_BOOTSTRAP_TOKEN_LEN} characters",
                vars::BOOTSTRAP_TOKEN
            ));
        }
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

    const KEYS: &str = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";

    /// Spin maps each variable explicitly: one missing from `spin.toml`
    /// could never be set there.
    #[test]
    fn spin_toml_declares_and_maps_every_variable_spin_reads() {
        let manifest = include_str!("../../spin.toml");
        // Read only by the Workers build (queues, the platform's peer).
        let workers_only = [
            vars::QUEUE_PREFIX,
            vars::JOB_SETTLE_RETRY_SECS,
            vars::TRUST_PLATFORM_PEER,
        ];
        for name in vars::ALL.iter().filter(|n| !workers_only.contains(n)) {
            let spin = name.to_ascii_lowercase();
            assert!(
                manifest
                    .lines()
                    .any(|l| l.starts_with(&format!("{spin} = {{"))),
                "spin.toml [variables] declares {spin}"
            );
            assert!(
                manifest.contains(&format!("{spin} = \"{{{{ {spin} }}}}\"")),
                "spin.toml maps {spin} into the component"
            );
        }
    }

    #[test]
    fn absent_variables_give_safe_defaults() {
        let loaded = load(&[]);
        assert_eq!(loaded.config, Config::default());
        assert_eq!(
            loaded.problems.len(),
            1,
            "only the missing signing keys: {:?}",
            loaded.problems
        );
        assert!(loaded.problems[0].starts_with("JWT_SIGNING_KEYS: not set"));
        assert!(
            loaded.config.auth.bootstrap_token.is_none(),
            "bootstrap off"
        );
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
            let loaded = load(&[(vars::ALLOWED_ORIGINS, raw), (vars::JWT_SIGNING_KEYS, KEYS)]);
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
            let loaded = load(&[(vars::MAX_BODY_BYTES, raw), (vars::JWT_SIGNING_KEYS, KEYS)]);
            let expected = want.unwrap_or(DEFAULT_MAX_BODY_BYTES);
            assert_eq!(loaded.config.max_body_bytes, expected, "{why}");
            assert_eq!(
                loaded.problems.iter().any(|p| p.contains("MAX_BODY_BYTES")),
                want.is_none(),
                "{why}: a bad value is reported by name"
            );
        }
    }

    #[test]
    fn auth_secrets_are_checked_and_never_printed() {
        let bootstrap = "b".repeat(MIN_BOOTSTRAP_TOKEN_LEN);
        let with_newline = format!("{bootstrap}\n");
        let loaded = load(&[
            (vars::JWT_SIGNING_KEYS, KEYS),
            (vars::BOOTSTRAP_TOKEN, &with_newline),
            (vars::JWT_ISSUER, "https://auth.example.com"),
        ]);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let auth = &loaded.config.auth;
        assert_eq!(
            auth.signing_keys.as_ref().map(SigningKeys::active_kid),
            Some("k1")
        );
        assert_eq!(auth.issuer, "https://auth.example.com");
        assert_eq!(auth.audience, DEFAULT_JWT_AUDIENCE);
        assert!(
            auth.bootstrap_token
                .as_ref()
                .is_some_and(|t| t.matches(&bootstrap))
        );
        let printed = format!("{:?}", loaded.config);
        assert!(!printed.contains(&bootstrap), "{printed}");
        assert!(!printed.contains("AQEBAQ"), "{printed}");

        let cases = [
            (
                vars::JWT_SIGNING_KEYS,
                "k1:short",
                "JWT_SIGNING_KEYS: key \"k1\"",
            ),
            (vars::JWT_SIGNING_KEYS, "   ", "JWT_SIGNING_KEYS: not set"),
            (
                vars::BOOTSTRAP_TOKEN,
                "guessable",
                "BOOTSTRAP_TOKEN: shorter",
            ),
        ];
        for (name, raw, want) in cases {
            let mut vars = vec![(vars::JWT_SIGNING_KEYS, KEYS)];
            vars.retain(|(k, _)| *k != name);
            vars.push((name, raw));
            let loaded = load(&vars);
            assert!(
                loaded.problems.iter().any(|p| p.starts_with(want)),
                "{name}={raw:?}: {:?}",
                loaded.problems
            );
            assert!(
                !loaded
                    .problems
                    .iter()
                    .any(|p| p.contains(raw) && raw.len() > 8),
                "the value is not echoed"
            );
        }
    }

    #[test]
    fn rate_limits_and_trusted_proxies_are_read() {
        let loaded = load(&[
            (vars::JWT_SIGNING_KEYS, KEYS),
            ("RATE_LIMIT_LOGIN", "3/1m;burst=2"),
            ("RATE_LIMIT_API", "lots"),
            (vars::TRUSTED_PROXIES, "10.0.0.1, ::1, proxy.internal"),
        ]);
        let login = loaded.config.rate_limits.get(RouteClass::Login);
        assert_eq!((login.limit, login.period_secs, login.burst), (3, 60, 2));
        assert_eq!(
            loaded.config.rate_limits.get(RouteClass::Api),
            RouteClass::Api.default_policy(),
            "a bad value keeps the default"
        );
        assert_eq!(loaded.config.trusted_proxies.len(), 2);
        assert!(loaded.config.trust_platform_peer, "trusted unless told");
        let local = load(&[(vars::TRUST_PLATFORM_PEER, "false")]);
        assert!(!local.config.trust_platform_peer);
        let unclear = load(&[(vars::TRUST_PLATFORM_PEER, "no")]);
        assert!(
            unclear.config.trust_platform_peer,
            "an invalid value keeps the default"
        );
        assert!(
            unclear
                .problems
                .iter()
                .any(|p| p.starts_with("TRUST_PLATFORM_PEER"))
        );
        let problems = loaded.problems.join("; ");
        assert!(problems.contains("RATE_LIMIT_API: "), "{problems}");
        assert!(
            problems.contains("\"proxy.internal\" is not an IP address"),
            "{problems}"
        );
    }

    #[test]
    fn upload_settings_are_checked() {
        let loaded = load(&[
            (vars::JWT_SIGNING_KEYS, KEYS),
            (vars::UPLOAD_CONTENT_TYPES, "text/plain; charset=utf-8"),
            (vars::UPLOAD_MAX_BYTES, "0"),
        ]);
        let problems = loaded.problems.join("; ");
        assert!(problems.contains("UPLOAD_CONTENT_TYPES"), "{problems}");
        assert!(problems.contains("UPLOAD_MAX_BYTES"), "{problems}");
        assert_eq!(
            loaded.config.uploads,
            Config::default().uploads,
            "defaults kept"
        );
        let ok = load(&[
            (vars::JWT_SIGNING_KEYS, KEYS),
            (vars::UPLOAD_CONTENT_TYPES, "Image/PNG, application/pdf"),
        ]);
        assert_eq!(
            ok.config.uploads.content_types,
            ["image/png", "application/pdf"]
        );
    }

    #[test]
    fn queue_names_and_settle_delay_come_from_configuration() {
        let loaded = load(&[
            (vars::QUEUE_PREFIX, "stage-"),
            (vars::JOB_SETTLE_RETRY_SECS, "45"),
        ]);
        assert_eq!(loaded.config.jobs.queue_prefix, "stage-");
        assert_eq!(loaded.config.jobs.settle_retry_secs, 45);
        let loaded = load(&[(vars::QUEUE_PREFIX, "  ")]);
        assert_eq!(loaded.config.jobs.queue_prefix, "tepi-", "blank is unset");
        assert!(
            !loaded
                .problems
                .iter()
                .any(|p| p.starts_with("QUEUE_PREFIX")),
            "{:?}",
            loaded.problems
        );
        let loaded = load(&[(vars::QUEUE_PREFIX, "Stage_!")]);
        assert_eq!(
            loaded.config.jobs.queue_prefix, "tepi-",
            "refused, default kept"
        );
        assert!(
            loaded
                .problems
                .iter()
                .any(|p| p.starts_with("QUEUE_PREFIX")),
            "{:?}",
            loaded.problems
        );
    }
}
