//! What a route may ask of its caller, and the one pure function that
//! decides it. Each route's requirement is a column of the route table
//! (`app/routes.rs`).

use crate::api::error::ApiError;
use crate::auth::{Principal, Role, Scope};

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Anyone, no credentials.
    Public,
    /// `Authorization: Bearer <BOOTSTRAP_TOKEN>`, checked by the handler.
    BootstrapToken,
    /// Any user of any tenant (an access token; API keys are refused).
    User,
    /// A user with the `admin` role; acts on their own tenant only.
    Admin,
    /// An admin of the operator tenant.
    OperatorAdmin,
    /// An API key with this scope, or an admin of the operator tenant.
    ScopeOrOperatorAdmin(Scope),
}

impl Requirement {
    /// Whether `decide` needs to know if the caller's tenant is the operator.
    pub fn needs_operator_flag(self) -> bool {
        matches!(self, Self::OperatorAdmin | Self::ScopeOrOperatorAdmin(_))
    }

    pub fn needs_credentials(self) -> bool {
        !matches!(self, Self::Public | Self::BootstrapToken)
    }
}

/// Whether `principal` may call a route that asks `requirement`.
/// `operator` says whether the principal's tenant is the operator tenant.
pub fn decide(
    requirement: Requirement,
    principal: &Principal,
    operator: bool,
) -> Result<(), ApiError> {
    let admin = matches!(
        principal,
        Principal::User {
            role: Role::Admin,
            ..
        }
    );
    let allowed = match requirement {
        Requirement::Public | Requirement::BootstrapToken => true,
        Requirement::User => matches!(principal, Principal::User { .. }),
        Requirement::Admin => admin,
        Requirement::OperatorAdmin => admin && operator,
        Requirement::ScopeOrOperatorAdmin(scope) => match principal {
            Principal::ApiKey { scopes, .. } if !scopes.contains(&scope) => {
                return Err(ApiError::InsufficientScope {
                    required: scope.as_str(),
                });
            }
            Principal::ApiKey { .. } => true,
            Principal::User { .. } => admin && operator,
        },
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::context::TenantId;

    fn user(role: Role) -> Principal {
        Principal::User {
            tenant: TenantId::parse("acme").unwrap(),
            user_id: "usr_1".into(),
            role,
        }
    }

    fn key(scopes: &[Scope]) -> Principal {
        Principal::ApiKey {
            tenant: TenantId::parse("acme").unwrap(),
            key_id: "key_1".into(),
            scopes: scopes.to_vec(),
        }
    }

    #[test]
    fn decisions_per_requirement_and_principal() {
        let metrics = Requirement::ScopeOrOperatorAdmin(Scope::MetricsRead);
        let cases = [
            (
                Requirement::User,
                user(Role::User),
                false,
                Ok(()),
                "user route, user",
            ),
            (
                Requirement::User,
                key(&Scope::ALL),
                true,
                Err("forbidden"),
                "keys are not users",
            ),
            (
                Requirement::Admin,
                user(Role::User),
                false,
                Err("forbidden"),
                "user on admin route",
            ),
            (
                Requirement::Admin,
                user(Role::Admin),
                false,
                Ok(()),
                "admin",
            ),
            (
                Requirement::OperatorAdmin,
                user(Role::Admin),
                false,
                Err("forbidden"),
                "tenant admin",
            ),
            (
                Requirement::OperatorAdmin,
                user(Role::Admin),
                true,
                Ok(()),
                "operator admin",
            ),
            (
                Requirement::OperatorAdmin,
                user(Role::User),
                true,
                Err("forbidden"),
                "operator user",
            ),
            (
                metrics,
                key(&[Scope::MetricsRead]),
                true,
                Ok(()),
                "scoped key",
            ),
            (
                metrics,
                key(&[Scope::MetricsPush]),
                true,
                Err("insufficient_scope"),
                "wrong scope",
            ),
            (
                metrics,
                user(Role::Admin),
                true,
                Ok(()),
                "operator admin reads metrics",
            ),
            (
                metrics,
                user(Role::Admin),
                false,
                Err("forbidden"),
                "tenant admin does not",
            ),
        ];
        for (requirement, principal, operator, want, why) in cases {
            let got = decide(requirement, &principal, operator).map_err(|e| e.code());
            assert_eq!(got, want, "{why}");
        }
    }
}
