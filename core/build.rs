//! Records the git revision the core was built from, for `GET /version`.
//!
//! `TEPI_GIT_REV` wins when set (release pipelines, source tarballs); otherwise
//! `git rev-parse` is asked; otherwise the revision is `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TEPI_GIT_REV");
    let from_env = std::env::var("TEPI_GIT_REV").ok().filter(|v| !v.is_empty());
    let rev = from_env
        .or_else(git_rev)
        .unwrap_or_else(|| "unknown".to_owned());
    if let Some(head) = git_path("HEAD") {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(refs) = git_path("refs/heads") {
        println!("cargo:rerun-if-changed={refs}");
    }
    println!("cargo:rustc-env=TEPI_GIT_REVISION={rev}");
}

fn git_rev() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn git_path(name: &str) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--git-path", name])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && std::path::Path::new(&path).exists())
        .then(|| std::fs::canonicalize(&path).map_or(path, |p| p.to_string_lossy().into_owned()))
}
