# Tepi's one front door. `make dev` serves the API locally; `make test` runs
# every gate, exactly as CI does (.ci/run calls `make test`).
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

.PHONY: help setup setup-system dev test fmt secrets actionlint docs console clippy unit coverage typecheck deploy deploy-check smoke-compare fuzz spin-host build guards conformance jobs metrics promtool ops-rules ops-live smoke e2e schemathesis login-latency rate-limit stress soak spike compare bench bench-seam bench-jobs bootstrap

help: ## list the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install pinned tools into ~/.cache/tepi (skipped when present)
	@bash scripts/tools.sh

setup-system: ## as root: only the Debian packages make setup installs when run as root (promtool, alertmanager, chromium); then make setup as yourself
	@bash scripts/tools.sh system

dev: ## set up and serve the API under wrangler dev on 127.0.0.1:8787
	@bash scripts/dev.sh

# The gates, in the order `make test` runs them.
GATES := setup fmt secrets actionlint docs console clippy coverage fuzz spin-host build guards deploy-check conformance jobs metrics promtool ops-rules ops-live smoke e2e schemathesis login-latency rate-limit

test: ## set up and run every gate; ends with a table of each gate's time and result
	@bash scripts/gates.sh $(GATES)

fmt: ## rustfmt check
	cargo fmt --all -- --check

secrets: ## detect-secrets over every tracked file (fails on a committed key)
	@bash scripts/secrets.sh

actionlint: ## actionlint (shellcheck on run: steps) over .github/workflows and the composite action's steps, after proving it reports planted mistakes
	@bash scripts/actionlint.sh

docs: ## the docs test: every make task, path, variable, metric and route the docs mention exists
	@bash scripts/docs-check.sh

console: ## the console: type-check (strict), the figures' tests, the bundle within its 150 KB gzip first-load budget
	@bash scripts/console-check.sh

# The Spin console component embeds console/dist: built first when missing.
console/dist/console/index.html:
	@bash scripts/build-console.sh

clippy: console/dist/console/index.html ## clippy -D warnings on the host and both Wasm targets
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo clippy -p tepi-core -p tepi-cloudflare -p tepi-queue-consumer --target wasm32-unknown-unknown --locked -- -D warnings
	cargo clippy -p tepi-cloudflare --features http-feature-seam --target wasm32-unknown-unknown --locked -- -D warnings
	cargo clippy -p tepi-core -p tepi-spin -p tepi-spin-console --target wasm32-wasip2 --locked -- -D warnings

unit: console/dist/console/index.html ## unit and route tests
	cargo test --workspace --exclude tepi-conformance --locked

coverage: ## the unit and route tests under cargo-llvm-cov: lcov and HTML in target/coverage/, fails under the line floor
	@bash scripts/coverage.sh

typecheck: console/dist/console/index.html ## cargo check on the host and both Wasm targets, then the console check (TypeScript)
	cargo check --workspace --all-targets --locked
	cargo check -p tepi-core -p tepi-cloudflare -p tepi-queue-consumer --target wasm32-unknown-unknown --locked
	cargo check -p tepi-core -p tepi-spin -p tepi-spin-console --target wasm32-wasip2 --locked
	@bash scripts/console-check.sh

fuzz: ## cargo-fuzz the Prometheus text parser for 60 s (FUZZ_SECONDS=N for longer); fails on a crash
	@bash scripts/fuzz.sh

spin-host: ## rustfmt, clippy and tests of tools/spin-test-host (own target dir in the cache)
	@bash scripts/spin-host-check.sh

build: ## both Wasm artifacts (release) and the size report
	@bash scripts/build.sh

guards: ## core has no runtime dependency; its Wasm imports nothing from env
	@bash scripts/guards.sh

deploy-check: ## scripts/deploy.sh offline after make build: refuses the placeholder ids, missing credentials, a short secret; its dry run bundles the Worker
	@bash scripts/deploy-check.sh

deploy: ## deploy the Workers build to Cloudflare after make build: D1 migrations, the secrets set in the environment, wrangler deploy (DEPLOY_DRY_RUN=1: offline dry run)
	@bash scripts/deploy.sh

conformance: ## the conformance suite against wrangler dev and the Spin build
	@bash scripts/conformance.sh

jobs: ## 1,000 jobs with injected failures through both builds' queues: none lost, none applied twice, metrics reconcile
	@bash scripts/jobs-check.sh no-loss

metrics: ## push interop with prometheus_client (PUT/POST/DELETE, gzip) against both builds
	@bash scripts/metrics-check.sh

promtool: ## promtool check metrics on the live /metrics of both builds (fails on errors, lists lint warnings)
	@bash scripts/promtool.sh

ops-rules: ## ops/ as code: promtool check config and rules, every alert's rule test, amtool check-config
	@bash scripts/ops-rules.sh

ops-live: ## Prometheus + Alertmanager against wrangler dev: every panel returns data; an induced 5xx alert reaches /v1/ops/alerts and resolves
	@bash scripts/ops-live.sh

smoke: ## k6 smoke over mixed traffic: against BASE_URL when set; else the gate (both local builds, compared with a baseline it records first)
	@if [[ -n "$${BASE_URL:-}" ]]; then bash scripts/k6-scenario.sh smoke; else bash scripts/k6-smoke-gate.sh; fi

smoke-compare: ## compare the smoke runs make smoke kept in target/k6 with an earlier run's files (BASELINE_DIR, default target/k6-baseline; none: passes)
	@bash scripts/k6-ci-compare.sh $(BASELINE_DIR)

e2e: ## the console in Chromium (Playwright) on both builds: sign-in, tracing, CSP, dashboard, baselines, alerts, sign-out, axe (no serious violation)
	@bash scripts/e2e.sh

schemathesis: ## fuzz the Workers build from docs/openapi.yaml: no 5xx, no answer outside the contract
	@bash scripts/schemathesis.sh

login-latency: ## login p50/p95 under wrangler dev with k6 (fails at p95 >= 300 ms)
	@bash scripts/login-latency.sh

rate-limit: ## k6 at twice the configured rate: admitted rate within 10 % on both builds
	@bash scripts/rate-limit-check.sh

bootstrap: ## create the first tenant: make bootstrap URL=... TENANT=... EMAIL=...
	@bash scripts/bootstrap.sh "$(URL)" "$(TENANT)" "$(EMAIL)"

stress: ## k6 stress (ramping arrival rate, finds the knee) against BASE_URL, or a local build (TARGET=workers|spin)
	@bash scripts/k6-local.sh stress

soak: ## k6 soak (constant rate, DURATION default 30m) against BASE_URL, or a local build (TARGET=workers|spin)
	@bash scripts/k6-local.sh soak

spike: ## k6 spike (low, sudden high, low) against BASE_URL, or a local build (TARGET=workers|spin)
	@bash scripts/k6-local.sh spike

compare: ## compare a k6 summary with a baseline: make compare RUN=target/k6/smoke.json BASELINE=file, or API=url BRANCH=b (key in BASELINE_KEY)
	@python3 scripts/k6-compare.py "$(RUN)" $(if $(BASELINE),--baseline "$(BASELINE)",--api "$(API)" --branch "$(BRANCH)")

bench-jobs: ## job throughput and lag p95 with batches of 10 and 100 (Workers) and drains of 100 (Spin)
	@bash scripts/jobs-check.sh bench

bench: ## Tepi vs Hono 4 vs the JS and Rust floors, side by side: CPU µs/req, latency, max rate (ratios to Hono)
	@bash scripts/bench.sh

bench-seam: ## compare the Workers seam variants (manual conversion vs workers-rs http feature)
	@bash scripts/bench-seam.sh
