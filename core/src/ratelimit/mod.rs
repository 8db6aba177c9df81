//! Edge-local rate limiting: GCRA per key, with a policy per route class.
//!
//! Keys are the tenant and subject for authenticated callers and the client
//! address for anonymous ones. Where the decision is kept depends on the
//! platform: an isolate-local table (`LocalTable`) then the `Limiter` port
//! (the Workers Rate Limiting binding, per location) on Workers; SQL
//! (`SqlStore`) on Spin, whose instances live for one request.

pub mod gcra;
mod store;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};

pub use gcra::{Decision, Policy, decide};
pub use store::SqlStore;

use crate::auth::Principal;
pub use crate::ports::Limiter;

/// Routes share limits by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteClass {
    /// Credential exchanges: bootstrap, login, refresh, logout.
    Login,
    /// Anonymous reads and intake (e.g. webhooks).
    Public,
    /// Authenticated calls.
    Api,
    /// Admin-only calls.
    Admin,
    /// Metric pushes.
    Push,
    /// Alertmanager's webhook deliveries to the alert inbox.
    Alerts,
}

impl RouteClass {
    pub const ALL: [Self; 6] = [
        Self::Login,
        Self::Public,
        Self::Api,
        Self::Admin,
        Self::Push,
        Self::Alerts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Public => "public",
            Self::Api => "api",
            Self::Admin => "admin",
            Self::Push => "push",
            Self::Alerts => "alerts",
        }
    }

    /// The variable that overrides this class's policy, e.g.
    /// `RATE_LIMIT_LOGIN`.
    pub fn var(self) -> &'static str {
        match self {
            Self::Login => "RATE_LIMIT_LOGIN",
            Self::Public => "RATE_LIMIT_PUBLIC",
            Self::Api => "RATE_LIMIT_API",
            Self::Admin => "RATE_LIMIT_ADMIN",
            Self::Push => "RATE_LIMIT_PUSH",
            Self::Alerts => "RATE_LIMIT_ALERTS",
        }
    }

    /// The default policy (per key).
    pub fn default_policy(self) -> Policy {
        let (limit, period_secs, burst) = match self {
            Self::Login => (10, 60, 5),
            Self::Public => (600, 60, 60),
            Self::Api => (1200, 60, 120),
            Self::Admin => (300, 60, 60),
            Self::Push => (600, 60, 120),
            Self::Alerts => (120, 60, 60),
        };
        Policy {
            limit,
            period_secs,
            burst,
        }
    }
}

/// Parses `<limit>/<period>[;burst=<n>]`, the period as `<n>s`, `<n>m` or
/// `<n>h` (e.g. `10/1m;burst=5`). The burst defaults to the limit.
pub fn parse_policy(raw: &str) -> Result<Policy, String> {
    let (rate, burst) = match raw.trim().split_once(';') {
        Some((rate, extra)) => {
            let burst = extra
                .trim()
                .strip_prefix("burst=")
                .and_then(|b| b.parse::<u32>().ok())
                .filter(|b| (1..=100_000).contains(b))
                .ok_or_else(|| format!("{extra:?} is not burst=<1..100000>"))?;
            (rate, Some(burst))
        }
        None => (raw.trim(), None),
    };
    let (limit, period) = rate
        .split_once('/')
        .ok_or_else(|| format!("{rate:?} is not <limit>/<period>"))?;
    let limit = limit
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|l| (1..=1_000_000).contains(l))
        .ok_or_else(|| format!("limit {limit:?} is not 1..1000000"))?;
    let period = period.trim();
    let (digits, unit) = period.split_at(period.len().saturating_sub(1));
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("period {period:?} needs a unit: s, m or h")),
    };
    let period_secs = digits
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|p| (1..=86_400).contains(p))
        .ok_or_else(|| format!("period {period:?} is not 1s..24h"))?;
    Ok(Policy {
        limit,
        period_secs,
        burst: burst.unwrap_or(limit),
    })
}

/// The policy of every class, by `RouteClass as usize` (the order of
/// `RouteClass::ALL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies([Policy; RouteClass::ALL.len()]);

impl Default for Policies {
    fn default() -> Self {
        Self(RouteClass::ALL.map(RouteClass::default_policy))
    }
}

impl Policies {
    pub fn get(&self, class: RouteClass) -> Policy {
        self.0[class as usize]
    }

    pub fn set(&mut self, class: RouteClass, policy: Policy) {
        self.0[class as usize] = policy;
    }
}

/// Who is limited: the tenant and subject when authenticated, else the
/// client address.
pub fn key(class: RouteClass, principal: Option<&Principal>, client: Option<IpAddr>) -> String {
    let class = class.as_str();
    match principal {
        Some(Principal::User {
            tenant, user_id, ..
        }) => format!("{class}:t:{}:{user_id}", tenant.as_str()),
        Some(Principal::ApiKey { tenant, key_id, .. }) => {
            format!("{class}:t:{}:{key_id}", tenant.as_str())
        }
        None => match client {
            Some(ip) => format!("{class}:ip:{ip}"),
            None => format!("{class}:ip:unknown"),
        },
    }
}

/// The address the platform saw the request come from, set by adapters as
/// a request extension (`CF-Connecting-IP` on Workers, the socket peer on
/// Spin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub IpAddr);

/// The client's address: the platform's peer address, unless that peer is a
/// configured trusted proxy, in which case the right-most `X-Forwarded-For`
/// entry that is not itself a trusted proxy.
pub fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|entry| entry.trim().parse::<IpAddr>().ok())
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .or(Some(peer))
}

/// A decision with what the response says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub class: RouteClass,
    pub policy: Policy,
    pub decision: Decision,
}

fn ceil_secs(micros: u64) -> u64 {
    micros.div_ceil(1_000_000)
}

impl Verdict {
    /// `Retry-After` in whole seconds (at least 1) when refused.
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.decision.retry_after_micros).max(1)
    }

    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers):
    /// `"api";q=1200;w=60` and `"api";r=119;t=1`.
    pub fn headers(&self) -> [(&'static str, HeaderValue); 2] {
        let name = self.class.as_str();
        let mut policy = String::new();
        let _ = write!(
            policy,
            "\"{name}\";q={};w={}",
            self.policy.limit, self.policy.period_secs
        );
        let mut state = String::new();
        let _ = write!(
            state,
            "\"{name}\";r={};t={}",
            self.decision.remaining,
            ceil_secs(self.decision.reset_micros)
        );
        [
            (
                "ratelimit-policy",
                HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("")),
            ),
            (
                "ratelimit",
                HeaderValue::from_str(&state).unwrap_or(HeaderValue::from_static("")),
            ),
        ]
    }
}

/// The isolate-local table: bounded, forgetting fully refilled keys first
/// (they are the same as absent) and then the least recently used.
#[derive(Debug)]
pub struct LocalTable {
    capacity: usize,
    tick: u64,
    entries: BTreeMap<String, (u64, u64)>,
}

/// Keys one isolate remembers at most.
pub const LOCAL_CAPACITY: usize = 10_000;

impl Default for LocalTable {
    fn default() -> Self {
        Self::with_capacity(LOCAL_CAPACITY)
    }
}

impl LocalTable {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            tick: 0,
            entries: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn decide(&mut self, key: &str, now: u64, policy: &Policy) -> Decision {
        self.tick += 1;
        let stored = self.entries.get(key).map(|(tat, _)| *tat);
        let decision = decide(stored, now, policy);
        if decision.allowed {
            if stored.is_none() && self.entries.len() >= self.capacity {
                self.evict(now);
            }
            self.entries
                .insert(key.to_owned(), (decision.tat, self.tick));
        } else if let Some(entry) = self.entries.get_mut(key) {
            entry.1 = self.tick;
        }
        decision
    }

    fn evict(&mut self, now: u64) {
        self.entries.retain(|_, (tat, _)| *tat > now);
        if self.entries.len() >= self.capacity
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests;
