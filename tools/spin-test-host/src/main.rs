//! spin-test-host: runs a Spin application's HTTP components the way Spin
//! does — a fresh instance per request, Spin's SQLite, key-value and
//! variables interfaces, outbound HTTP within `allowed_outbound_hosts` —
//! configured from the application's own `spin.toml`.
//! Test infrastructure for Tepi's gates; `spin up` is the real host.
//!
//! ```text
//! spin-test-host --manifest spin.toml --listen 127.0.0.1:18790 --state-dir DIR
//! ```

mod manifest;
mod outbound;
mod server;
mod spin;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

#[derive(Debug)]
struct Args {
    manifest: PathBuf,
    listen: SocketAddr,
    state_dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut manifest = PathBuf::from("spin.toml");
    let mut listen: SocketAddr = "127.0.0.1:3000".parse()?;
    let mut state_dir = PathBuf::from(".spin");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--manifest" | "-f" => manifest = value()?.into(),
            "--listen" => listen = value()?.parse().context("--listen takes ADDRESS:PORT")?,
            "--state-dir" => state_dir = value()?.into(),
            "--help" | "-h" => {
                println!(
                    "usage: spin-test-host [--manifest spin.toml] [--listen 127.0.0.1:3000] [--state-dir .spin]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(Args {
        manifest,
        listen,
        state_dir,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let app = manifest::load(&args.manifest, |name| std::env::var(name).ok())?;
    let state_dir = spin::StateDir::create(&args.state_dir)
        .with_context(|| format!("state directory {}", args.state_dir.display()))?;
    server::serve(app, state_dir, args.listen).await
}
