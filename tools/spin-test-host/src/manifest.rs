//! Reading `spin.toml` (manifest version 2): the subset this host runs, and a
//! clear error for everything else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::outbound::AllowedHosts;

/// The application as this host runs it.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub routes: Vec<Route>,
    pub components: BTreeMap<String, Component>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The route as written, e.g. `/...` or `/api/...` or `/healthz`.
    pub raw: String,
    pub pattern: RoutePattern,
    pub component: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePattern {
    Exact(String),
    /// `/prefix/...`; the prefix has no trailing slash (`""` for `/...`).
    Wildcard(String),
}

#[derive(Debug, Clone)]
pub struct Component {
    pub id: String,
    pub source: PathBuf,
    pub environment: BTreeMap<String, String>,
    pub key_value_stores: BTreeSet<String>,
    pub sqlite_databases: BTreeSet<String>,
    /// Component variables with every `{{ app_variable }}` resolved.
    pub variables: BTreeMap<String, String>,
    /// Where outbound HTTP may go, with `{{ app_variable }}` resolved.
    pub allowed_outbound_hosts: Arc<AllowedHosts>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: u32,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    trigger: BTreeMap<String, toml::Value>,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: String,
    #[allow(dead_code)]
    version: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    #[allow(dead_code)]
    authors: Option<Vec<String>>,
    trigger: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    #[allow(dead_code)]
    secret: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTrigger {
    route: toml::Value,
    component: toml::Value,
    #[allow(dead_code)]
    id: Option<String>,
    executor: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: toml::Value,
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    /// Only used by `spin build`.
    #[allow(dead_code)]
    build: Option<toml::Value>,
    /// Only used by `spin` plugins.
    #[allow(dead_code)]
    tool: Option<toml::Value>,
    // Features this host does not implement: refused with a clear message.
    files: Option<toml::Value>,
    exclude_files: Option<toml::Value>,
    allowed_http_hosts: Option<toml::Value>,
    ai_models: Option<toml::Value>,
    dependencies: Option<toml::Value>,
    dependencies_inherit_configuration: Option<toml::Value>,
}

fn unsupported(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} is not supported by spin-test-host (see docs/adr/0004-spin-test-host.md); use `spin up` for it"
    )
}

/// Loads `manifest` and resolves variables from `lookup_env` (which Spin
/// reads as `SPIN_VARIABLE_<NAME>`).
pub fn load(manifest: &Path, lookup_env: impl Fn(&str) -> Option<String>) -> Result<App> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let base = manifest.parent().unwrap_or_else(|| Path::new("."));
    parse(&text, base, lookup_env).with_context(|| format!("in {}", manifest.display()))
}

pub fn parse(text: &str, base: &Path, lookup_env: impl Fn(&str) -> Option<String>) -> Result<App> {
    let raw: RawManifest = toml::from_str(text).context("not a valid Spin manifest")?;
    if raw.spin_manifest_version != 2 {
        bail!(
            "spin_manifest_version {} is not supported (only 2)",
            raw.spin_manifest_version
        );
    }
    if raw.application.trigger.is_some() {
        return Err(unsupported("[application.trigger] (trigger-wide settings)"));
    }
    let variables = resolve_app_variables(&raw.variables, &lookup_env)?;

    let mut routes = Vec::new();
    for (kind, value) in &raw.trigger {
        if kind != "http" {
            return Err(unsupported(&format!("trigger type `{kind}`")));
        }
        let triggers: Vec<RawHttpTrigger> = value
            .clone()
            .try_into()
            .context("[[trigger.http]] entries must have `route` and `component`")?;
        for trigger in triggers {
            routes.push(route(trigger)?);
        }
    }
    if routes.is_empty() {
        bail!("no [[trigger.http]] routes: nothing to serve");
    }

    let mut components = BTreeMap::new();
    for (id, raw) in raw.component {
        components.insert(id.clone(), component(&id, raw, base, &variables)?);
    }
    for route in &routes {
        if !components.contains_key(&route.component) {
            bail!(
                "route {} names unknown component `{}`",
                route.raw,
                route.component
            );
        }
    }
    Ok(App {
        name: raw.application.name,
        routes,
        components,
    })
}

fn route(trigger: RawHttpTrigger) -> Result<Route> {
    if trigger.executor.is_some() {
        return Err(unsupported("`executor` on an HTTP trigger"));
    }
    let toml::Value::String(component) = trigger.component else {
        return Err(unsupported("an inline component table in a trigger"));
    };
    let toml::Value::String(raw) = trigger.route else {
        return Err(unsupported(
            "a private route (`route = { private = true }`)",
        ));
    };
    if !raw.starts_with('/') {
        bail!("route {raw:?} must start with '/'");
    }
    let pattern = match raw.strip_suffix("/...") {
        Some(prefix) => RoutePattern::Wildcard(prefix.to_owned()),
        None if raw.contains("...") || raw.contains(':') => {
            return Err(unsupported(&format!(
                "route pattern {raw:?} (only exact and `/...` routes)"
            )));
        }
        None => RoutePattern::Exact(raw.trim_end_matches('/').to_owned()),
    };
    Ok(Route {
        raw,
        pattern,
        component,
    })
}

fn component(
    id: &str,
    raw: RawComponent,
    base: &Path,
    app_variables: &BTreeMap<String, String>,
) -> Result<Component> {
    let refused = [
        ("files", raw.files.is_some()),
        ("exclude_files", raw.exclude_files.is_some()),
        ("allowed_http_hosts", raw.allowed_http_hosts.is_some()),
        ("ai_models", raw.ai_models.is_some()),
        ("dependencies", raw.dependencies.is_some()),
        (
            "dependencies_inherit_configuration",
            raw.dependencies_inherit_configuration.is_some(),
        ),
    ];
    if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
        return Err(unsupported(&format!("`{field}` in component `{id}`")));
    }
    // As in Spin, an entry may be an `{{ app_variable }}` template, in whole
    // or in part; it is parsed after expansion.
    let outbound = raw
        .allowed_outbound_hosts
        .iter()
        .map(|entry| expand(entry, app_variables))
        .collect::<Result<Vec<_>>>()
        .and_then(|entries| AllowedHosts::parse(&entries))
        .with_context(|| format!("`allowed_outbound_hosts` of component `{id}`"))?;
    let source = match raw.source {
        toml::Value::String(path) => base.join(path),
        _ => {
            return Err(unsupported(&format!(
                "a non-file `source` in component `{id}`"
            )));
        }
    };
    let mut variables = BTreeMap::new();
    for (name, template) in raw.variables {
        check_variable_name(&name).with_context(|| format!("component `{id}`"))?;
        let value = expand(&template, app_variables)
            .with_context(|| format!("variable `{name}` of component `{id}`"))?;
        variables.insert(name, value);
    }
    Ok(Component {
        id: id.to_owned(),
        source,
        environment: raw.environment,
        key_value_stores: raw.key_value_stores.into_iter().collect(),
        sqlite_databases: raw.sqlite_databases.into_iter().collect(),
        variables,
        allowed_outbound_hosts: Arc::new(outbound),
    })
}

/// Spin variable names: lowercase ASCII letters, digits and `_`, starting
/// with a letter.
pub fn check_variable_name(name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        bail!(
            "invalid variable name {name:?}: use lowercase letters, digits and '_', starting with a letter"
        )
    }
}

fn resolve_app_variables(
    declared: &BTreeMap<String, RawVariable>,
    lookup_env: &impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>> {
    let mut resolved = BTreeMap::new();
    for (name, var) in declared {
        check_variable_name(name)?;
        if var.required && var.default.is_some() {
            bail!("variable `{name}` cannot be both required and have a default");
        }
        if !var.required && var.default.is_none() {
            bail!("variable `{name}` needs a default or `required = true`");
        }
        let env_name = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
        let value = match (lookup_env(&env_name), &var.default) {
            (Some(value), _) => value,
            (None, Some(default)) => default.clone(),
            (None, None) => bail!("required variable `{name}` is not set (set {env_name})"),
        };
        resolved.insert(name.clone(), value);
    }
    Ok(resolved)
}

/// Expands `{{ name }}` references to application variables.
fn expand(template: &str, variables: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .with_context(|| format!("unclosed '{{{{' in {template:?}"))?;
        let name = after[..end].trim();
        let value = variables.get(name).with_context(|| {
            format!("no application variable `{name}` (declare it under [variables])")
        })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

impl App {
    /// The route serving `path`: an exact route first, then the wildcard with
    /// the longest prefix. Returns the route and the path info after it.
    pub fn route_for<'a>(&'a self, path: &'a str) -> Option<(&'a Route, &'a str)> {
        let trimmed = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        if let Some(route) = self
            .routes
            .iter()
            .find(|r| matches!(&r.pattern, RoutePattern::Exact(p) if p == trimmed || (p.is_empty() && trimmed == "/")))
        {
            return Some((route, ""));
        }
        self.routes
            .iter()
            .filter_map(|r| match &r.pattern {
                RoutePattern::Wildcard(prefix) => {
                    let rest = path.strip_prefix(prefix.as_str())?;
                    (rest.is_empty() || rest.starts_with('/')).then_some((r, rest, prefix.len()))
                }
                RoutePattern::Exact(_) => None,
            })
            .max_by_key(|(_, _, len)| *len)
            .map(|(r, rest, _)| (r, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
spin_manifest_version = 2

[application]
name = "demo"

[variables]
greeting = { default = "hello" }
extra_origin = { default = "https://api.example.com" }
api_key = { required = true, secret = true }

[[trigger.http]]
route = "/..."
component = "web"

[[trigger.http]]
route = "/api/..."
component = "api"

[[trigger.http]]
route = "/healthz"
component = "api"

[component.web]
source = "web.wasm"
allowed_outbound_hosts = ["https://*:*", "{{ extra_origin }}"]

[component.api]
source = "target/api.wasm"
key_value_stores = ["default"]
sqlite_databases = ["default"]
environment = { MODE = "test" }
variables = { greeting = "{{ greeting }}, world", key = "{{api_key}}" }

[component.api.build]
command = "cargo build"
"#;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn reads_routes_components_and_variables() {
        let app = parse(
            MANIFEST,
            Path::new("/app"),
            env(&[("SPIN_VARIABLE_API_KEY", "k-123")]),
        )
        .unwrap();
        assert_eq!(app.name, "demo");
        let api = &app.components["api"];
        assert_eq!(api.source, Path::new("/app/target/api.wasm"));
        assert_eq!(api.environment["MODE"], "test");
        assert!(api.key_value_stores.contains("default"));
        assert!(api.sqlite_databases.contains("default"));
        assert_eq!(api.variables["greeting"], "hello, world");
        assert_eq!(api.variables["key"], "k-123");
    }

    #[test]
    fn environment_overrides_defaults() {
        let app = parse(
            MANIFEST,
            Path::new("/"),
            env(&[
                ("SPIN_VARIABLE_API_KEY", "k"),
                ("SPIN_VARIABLE_GREETING", "hi"),
            ]),
        )
        .unwrap();
        assert_eq!(app.components["api"].variables["greeting"], "hi, world");
    }

    #[test]
    fn routes_prefer_exact_then_longest_prefix() {
        let app = parse(
            MANIFEST,
            Path::new("/"),
            env(&[("SPIN_VARIABLE_API_KEY", "k")]),
        )
        .unwrap();
        let cases = [
            ("/healthz", "api", "", "exact route"),
            ("/api/users/1", "api", "/users/1", "longest wildcard"),
            ("/api", "api", "", "wildcard prefix itself"),
            (
                "/apix",
                "web",
                "/apix",
                "a prefix only matches whole segments",
            ),
            ("/", "web", "/", "catch-all"),
        ];
        for (path, component, info, why) in cases {
            let (route, rest) = app.route_for(path).unwrap();
            assert_eq!(route.component, component, "{why}");
            assert_eq!(rest, info, "{why}");
        }
    }

    #[test]
    fn refuses_what_the_host_does_not_run() {
        let base = "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n";
        let cases = [
            (
                "[component.c]\nsource = \"c.wasm\"\nfiles = [\"a\"]\n",
                "`files`",
                "files",
            ),
            (
                "[component.c]\nsource = \"c.wasm\"\nallowed_outbound_hosts = [\"http://self\"]\n",
                "self requests",
                "self requests",
            ),
            (
                "[component.c]\nsource = \"c.wasm\"\nallowed_outbound_hosts = [\"example.com\"]\n",
                "`allowed_outbound_hosts` of component `c`",
                "malformed outbound host",
            ),
            (
                "[component.c]\nsource = { url = \"https://x\", digest = \"d\" }\n",
                "non-file `source`",
                "remote source",
            ),
            (
                "[component.c]\nsource = \"c.wasm\"\nmystery = 1\n",
                "unknown field `mystery`",
                "unknown key",
            ),
            (
                "[component.c]\nsource = \"c.wasm\"\n[[trigger.redis]]\nchannel = \"x\"\ncomponent = \"c\"\n",
                "trigger type `redis`",
                "redis trigger",
            ),
        ];
        for (extra, needle, why) in cases {
            let err = parse(&format!("{base}{extra}"), Path::new("/"), env(&[])).unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains(needle), "{why}: {text}");
        }
    }

    #[test]
    fn outbound_hosts_expand_variables() {
        let allows = |app: &App, component: &str, url: &str| {
            app.components[component]
                .allowed_outbound_hosts
                .allows_uri(&url.parse().unwrap())
        };
        let app = parse(
            MANIFEST,
            Path::new("/"),
            env(&[("SPIN_VARIABLE_API_KEY", "k")]),
        )
        .unwrap();
        assert!(allows(&app, "web", "https://hooks.example.net/"));
        assert!(!allows(&app, "web", "http://127.0.0.1:8080/"));
        assert!(
            !allows(&app, "api", "https://hooks.example.net/"),
            "no list, no outbound HTTP"
        );

        let app = parse(
            MANIFEST,
            Path::new("/"),
            env(&[
                ("SPIN_VARIABLE_API_KEY", "k"),
                ("SPIN_VARIABLE_EXTRA_ORIGIN", "http://127.0.0.1:*"),
            ]),
        )
        .unwrap();
        assert!(allows(&app, "web", "http://127.0.0.1:8080/"));

        let err = parse(
            MANIFEST,
            Path::new("/"),
            env(&[
                ("SPIN_VARIABLE_API_KEY", "k"),
                ("SPIN_VARIABLE_EXTRA_ORIGIN", ""),
            ]),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("no scheme"),
            "an entry must stay valid after expansion: {err:#}"
        );
    }

    /// Tepi's own manifest: webhooks may go to any https origin; plain-http
    /// loopback receivers only when the gates' variable allows them.
    #[test]
    fn tepi_manifest_allows_https_and_loopback_only_on_request() {
        // Read when the test runs (cargo sets the variable for it): the
        // gates share one target directory between checkouts, so a path
        // compiled in would point at whichever checkout built the binary.
        let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
        let manifest = Path::new(&dir).join("../../spin.toml");
        let cases = [
            (None, "https://hooks.example.net/x", true, "https anywhere"),
            (
                None,
                "https://hooks.example.net:8443/x",
                true,
                "any https port",
            ),
            (
                None,
                "http://127.0.0.1:18791/x",
                false,
                "no plain http in production",
            ),
            (
                None,
                "http://hooks.example.net/x",
                false,
                "no plain http in production",
            ),
            (
                Some("http://127.0.0.1:*"),
                "http://127.0.0.1:18791/x",
                true,
                "the gates' receiver",
            ),
            (
                Some("http://127.0.0.1:*"),
                "http://hooks.example.net/x",
                false,
                "only loopback",
            ),
        ];
        for (extra, url, allowed, why) in cases {
            let app = load(&manifest, |name| {
                (name == "SPIN_VARIABLE_DEV_OUTBOUND_HOST")
                    .then_some(extra)
                    .flatten()
                    .map(str::to_owned)
            })
            .unwrap();
            let tepi = &app.components["tepi"];
            assert_eq!(
                tepi.allowed_outbound_hosts
                    .allows_uri(&url.parse().unwrap()),
                allowed,
                "{why}: {url} with {extra:?}"
            );
        }
    }

    #[test]
    fn missing_required_variables_fail_at_load() {
        let err = parse(MANIFEST, Path::new("/"), env(&[])).unwrap_err();
        assert!(
            format!("{err:#}").contains("SPIN_VARIABLE_API_KEY"),
            "{err:#}"
        );
    }

    #[test]
    fn variable_names_follow_spin_rules() {
        for (name, ok) in [
            ("api_key", true),
            ("a1", true),
            ("Api", false),
            ("1a", false),
            ("a-b", false),
            ("", false),
        ] {
            assert_eq!(check_variable_name(name).is_ok(), ok, "{name:?}");
        }
    }
}
