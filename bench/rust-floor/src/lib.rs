//! The least a Rust Worker does per request: workers-rs's `fetch` event and
//! a fresh `200 {"status":"ok"}` with its content type, built as Tepi's
//! adapter builds a response (`ResponseBuilder`, a fixed body). What Tepi
//! costs above this is Tepi's; what this costs above `bench/floor` (the
//! same answer in JavaScript) is the Wasm seam's.

use worker::{Context, Env, Request, Response, ResponseBuilder, Result, event};

const BODY: &[u8] = br#"{"status":"ok"}"#;

#[event(fetch)]
async fn fetch(_req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    let headers = worker::Headers::new();
    headers.append("content-type", "application/json")?;
    Ok(ResponseBuilder::new()
        .with_status(200)
        .with_headers(headers)
        .fixed(BODY.to_vec()))
}
