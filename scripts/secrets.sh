#!/usr/bin/env bash
# Secret scanner gate: detect-secrets over every file git tracks. Fails on
# anything that looks like a committed key, token or password. First it
# proves the scanner can fail, on a throw-away file holding a fake key.
# Mark a reviewed false positive with an inline `pragma: allowlist secret`.
source "$(dirname "$0")/lib.sh"

[[ -x $DETECT_SECRETS_BIN ]] || die "detect-secrets missing at $DETECT_SECRETS_BIN (run scripts/tools.sh)"

probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
# Assembled at run time so that this script itself holds no key pattern.
printf -- '-----BEGIN %s-----\nMC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END %s-----\n' \
  "PRIVATE KEY" "PRIVATE KEY" >"$probe/leak.pem"
if "$DETECT_SECRETS_BIN" "$probe/leak.pem" >/dev/null 2>&1; then
  die "detect-secrets did not flag a private key: the gate would prove nothing"
fi

cd "$TEPI_ROOT"
files=$(git ls-files | wc -l)
if ! git ls-files -z | xargs -0 "$DETECT_SECRETS_BIN"; then
  die "possible secrets in tracked files (see above)"
fi
echo "ok: no secrets in $files tracked files (detect-secrets; the scanner flagged the planted key)"
