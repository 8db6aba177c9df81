//! Authentication and authorisation: who is calling (a user with an access
//! token, a machine with an API key, or nobody) and what they may do.

pub mod handlers;
pub mod keys;
pub mod middleware;
pub mod password;
pub mod rbac;
pub mod store;
pub mod token_cache;
pub mod webhook_secret;

use crate::api::context::TenantId;
use crate::api::validate::Invalid;

/// A user's role within their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::User => "user",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "admin" => Ok(Self::Admin),
            "user" => Ok(Self::User),
            _ => Err(Invalid::new("invalid", "must be \"admin\" or \"user\"")),
        }
    }
}

/// What an API key may do. Every scope today is a platform scope: only the
/// operator tenant's admins may grant it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Scrape `GET /metrics` (Prometheus).
    MetricsRead,
    /// Push to the Pushgateway-compatible endpoint.
    MetricsPush,
    /// Post Alertmanager webhooks.
    AlertsWrite,
    /// Drain the job outbox (`POST /v1/jobs/drain`; Spin's scheduler).
    JobsDrain,
    /// Record and read load-test baselines (`/v1/ops/baselines`).
    BaselinesWrite,
}

impl Scope {
    pub const ALL: [Self; 5] = [
        Self::MetricsRead,
        Self::MetricsPush,
        Self::AlertsWrite,
        Self::JobsDrain,
        Self::BaselinesWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MetricsRead => "metrics:read",
            Self::MetricsPush => "metrics:push",
            Self::AlertsWrite => "alerts:write",
            Self::JobsDrain => "jobs:drain",
            Self::BaselinesWrite => "baselines:write",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
                Invalid::new("invalid", format!("must be one of {}", known.join(", ")))
            })
    }
}

/// The verified caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user, from a verified access token.
    User {
        tenant: TenantId,
        user_id: String,
        role: Role,
    },
    /// A machine client, from an API key.
    ApiKey {
        tenant: TenantId,
        key_id: String,
        scopes: Vec<Scope>,
    },
}

impl Principal {
    pub fn tenant(&self) -> &TenantId {
        match self {
            Self::User { tenant, .. } | Self::ApiKey { tenant, .. } => tenant,
        }
    }
}

/// An email address, trimmed and lowercased: `local@domain.tld`, at most
/// 254 characters. Deliberately permissive beyond that shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let email = raw.trim().to_lowercase();
        if email.chars().count() > 254 {
            return Err(Invalid::new("too_long", "must be at most 254 characters"));
        }
        let shape_ok = !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if shape_ok {
            Ok(Self(email))
        } else {
            Err(Invalid::new("invalid", "must be an email address"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 12 to 128 characters (NIST SP 800-63B allows long
/// passphrases; the cap bounds hashing work per request).
#[derive(Clone, PartialEq, Eq)]
pub struct NewPassword(String);

pub const PASSWORD_MIN_CHARS: usize = 12;
pub const PASSWORD_MAX_CHARS: usize = 128;

impl NewPassword {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let n = raw.chars().count();
        if n < PASSWORD_MIN_CHARS {
            Err(Invalid::new(
                "too_short",
                format!("must be at least {PASSWORD_MIN_CHARS} characters"),
            ))
        } else if n > PASSWORD_MAX_CHARS {
            Err(Invalid::new(
                "too_long",
                format!("must be at most {PASSWORD_MAX_CHARS} characters"),
            ))
        } else {
            Ok(Self(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(..)")
    }
}

/// A tenant id from a request body.
pub fn tenant_id(raw: &str) -> Result<TenantId, Invalid> {
    TenantId::parse(raw).ok_or_else(|| {
        Invalid::new(
            "invalid",
            "must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
        )
    })
}

/// How tokens are signed and checked, and the bootstrap credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `None` when the secret is missing or malformed: protected routes
    /// then answer 503 and `/readyz` names the problem.
    pub signing_keys: Option<keys::SigningKeys>,
    pub issuer: String,
    pub audience: String,
    /// `None` disables `POST /v1/bootstrap`.
    pub bootstrap_token: Option<crate::secret::Secret>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_shape_checked() {
        let cases = [
            ("Ada@Example.COM", Some("ada@example.com"), "lowercased"),
            ("  ada@example.com ", Some("ada@example.com"), "trimmed"),
            ("ada@example", None, "no dot in the domain"),
            ("@example.com", None, "no local part"),
            ("ada@@example.com", None, "two @"),
            ("ada lovelace@example.com", None, "inner space"),
            ("ada@example.com.", None, "trailing dot"),
        ];
        for (raw, want, why) in cases {
            let got = Email::parse(raw).ok();
            assert_eq!(got.as_ref().map(Email::as_str), want, "{why}");
        }
    }

    #[test]
    fn passwords_have_bounded_length() {
        assert!(NewPassword::parse(&"x".repeat(11)).is_err());
        assert!(NewPassword::parse(&"x".repeat(12)).is_ok());
        assert!(
            NewPassword::parse(&"é".repeat(128)).is_ok(),
            "characters, not bytes"
        );
        assert!(NewPassword::parse(&"x".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", NewPassword::parse(&"s".repeat(12)).unwrap()),
            "NewPassword(..)"
        );
    }

    #[test]
    fn roles_and_scopes_round_trip_their_wire_names() {
        for role in [Role::Admin, Role::User] {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Ok(scope));
        }
        assert!(Role::parse("owner").is_err());
        assert!(Scope::parse("metrics:*").is_err());
    }
}
