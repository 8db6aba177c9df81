//! `GET /healthz`, `GET /readyz` and `GET /version`.

use serde::Serialize;

use crate::api::error::{ApiError, Check};
use crate::ports::Probe;

/// What was built and for which platform.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: &'static str,
    pub git_revision: &'static str,
    /// The platform build, e.g. `cloudflare-workers` or `spin`.
    pub target: &'static str,
}

impl BuildInfo {
    /// This core's version and revision, for the named platform build.
    pub const fn for_target(target: &'static str) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            git_revision: env!("TEPI_GIT_REVISION"),
            target,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Ready {
    pub status: &'static str,
    /// Each check's name and `"ok"`: a JSON object, as the 503's `checks`
    /// (a `serde_json::Map`, so no map type of its own in the build).
    pub checks: serde_json::Map<String, serde_json::Value>,
}

pub fn healthz() -> Health {
    Health { status: "ok" }
}

/// Ready when the configuration parsed cleanly and every binding answers.
pub async fn readyz(config_problems: &[String], probes: &[&dyn Probe]) -> Result<Ready, ApiError> {
    let mut checks = vec![Check {
        name: "config".to_owned(),
        error: (!config_problems.is_empty()).then(|| config_problems.join("; ")),
    }];
    for probe in probes {
        checks.push(Check {
            name: probe.name().to_owned(),
            error: probe.check().await.err(),
        });
    }
    if checks.iter().any(|c| c.error.is_some()) {
        return Err(ApiError::NotReady { checks });
    }
    Ok(Ready {
        status: "ready",
        checks: crate::sort::map(checks.into_iter().map(|c| (c.name, "ok".into()))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{StaticProbe, block_on};

    #[test]
    fn ready_only_when_config_and_every_probe_pass() {
        type Case<'a> = (
            &'a [String],
            Vec<&'a dyn Probe>,
            Option<(&'a str, &'a str)>,
            &'a str,
        );
        let ok = StaticProbe {
            name: "DB",
            result: Ok(()),
        };
        let missing = StaticProbe {
            name: "UPLOADS",
            result: Err("binding UPLOADS is missing"),
        };
        let bad_config = ["ALLOWED_ORIGINS: bad".to_owned()];
        let cases: [Case<'_>; 3] = [
            (&[], vec![&ok], None, "all good"),
            (
                &[],
                vec![&ok, &missing],
                Some(("UPLOADS", "binding UPLOADS is missing")),
                "a probe fails",
            ),
            (
                &bad_config,
                vec![&ok],
                Some(("config", "ALLOWED_ORIGINS: bad")),
                "config problem",
            ),
        ];
        for (problems, probes, failing, why) in cases {
            match (block_on(readyz(problems, &probes)), failing) {
                (Ok(ready), None) => assert_eq!(ready.checks.len(), probes.len() + 1, "{why}"),
                (Err(ApiError::NotReady { checks }), Some((name, reason))) => {
                    let check = checks.iter().find(|c| c.name == name).unwrap();
                    assert_eq!(check.error.as_deref(), Some(reason), "{why}");
                }
                (other, _) => panic!("{why}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn build_info_names_version_revision_and_target() {
        let info = BuildInfo::for_target("spin");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert!(!info.git_revision.is_empty());
        assert_eq!(info.target, "spin");
    }
}
