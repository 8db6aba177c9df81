#!/usr/bin/env bash
# The workflows' gate (make actionlint): actionlint over
# .github/workflows/*.yml, with shellcheck on the scripts of their run:
# steps. A composite action (.github/actions/*/action.yml) is checked twice:
# where the workflows use it (its inputs), and its steps, as the one job of
# a workflow written from them here (actionlint reads workflows only).
# Fails on any finding. First it proves it
# can fail, on a planted workflow with four mistakes it must each report:
# a job that needs a missing job, an input the action does not have,
# untrusted input in a script, and an unquoted variable (shellcheck).
source "$(dirname "$0")/lib.sh"

[[ -x $ACTIONLINT_BIN ]] || die "actionlint missing at $ACTIONLINT_BIN (run make setup)"
[[ -x $SHELLCHECK_BIN ]] || die "shellcheck missing at $SHELLCHECK_BIN (run make setup)"
# The same checks everywhere: shellcheck from the venv, not whatever the
# machine has on PATH; no Python runs in a step, so no pyflakes.
lint=("$ACTIONLINT_BIN" -shellcheck "$SHELLCHECK_BIN" -pyflakes= -no-color)

probe=$(mktemp -d "${TMPDIR:-/tmp}/tepi-actionlint.XXXXXX")
trap 'rm -rf "$probe"' EXIT
mkdir -p "$probe/.github/workflows"
cat >"$probe/.github/workflows/planted.yml" <<'YAML'
on: push
permissions:
  contents: read
jobs:
  test:
    runs-on: ubuntu-24.04
    needs: no-such-job
    steps:
      - uses: actions/checkout@v5
        with:
          fetch-dept: 1
      - run: echo "${{ github.event.head_commit.message }}"
      - run: cd $HOME/work && ls
YAML
rc=0
# shellcheck disable=SC2016 # a Go template, not a shell expression
(cd "$probe" && "${lint[@]}" -format '{{range $e := .}}{{$e.Kind}}: {{$e.Message}}
{{end}}' .github/workflows/planted.yml) >"$probe/found.txt" 2>&1 || rc=$?
((rc == 1)) || { cat "$probe/found.txt" >&2; die "actionlint exited $rc on the planted workflow (want 1: findings)"; }
missing=()
grep -q '^job-needs: .*no-such-job' "$probe/found.txt" || missing+=("the missing job")
grep -q '^action: input "fetch-dept" is not defined' "$probe/found.txt" || missing+=("the unknown input")
grep -q '^expression: .*potentially untrusted' "$probe/found.txt" || missing+=("the untrusted input")
grep -q '^shellcheck: .*SC2086' "$probe/found.txt" || missing+=("the unquoted variable")
if ((${#missing[@]})); then
  cat "$probe/found.txt" >&2
  die "actionlint did not report ${missing[*]} in the planted workflow: the gate would prove nothing"
fi
log "actionlint reported each of the 4 planted mistakes"

cd "$TEPI_ROOT"
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
actions=(.github/actions/*/action.yml .github/actions/*/action.yaml)
shopt -u nullglob
((${#workflows[@]})) || die "no workflows in .github/workflows"
# Each composite action's steps as a workflow of their own, its inputs
# those of a manual trigger.
composites=()
for action in "${actions[@]}"; do
  as_workflow="$probe/action-$(basename "$(dirname "$action")").yml"
  "$TEPI_VENV/bin/python" - "$action" "$as_workflow" <<'PY'
import sys, yaml
action = yaml.safe_load(open(sys.argv[1]))
if action.get("runs", {}).get("using") == "composite":
    inputs = {name: {"type": "string", "required": False} for name in action.get("inputs") or {}}
    workflow = {"on": {"workflow_dispatch": {"inputs": inputs} if inputs else None},
                "permissions": {"contents": "read"},
                "jobs": {"steps": {"runs-on": "ubuntu-24.04", "steps": action["runs"]["steps"]}}}
    yaml.SafeDumper.add_representer(str, lambda d, s: d.represent_scalar(
        "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))
    with open(sys.argv[2], "w") as f:
        yaml.safe_dump(workflow, f, sort_keys=False, width=1000)
PY
  [[ -f $as_workflow ]] || continue
  composites+=("$as_workflow")
  log "$action: its steps checked as $as_workflow"
done

rc=0
"${lint[@]}" "${workflows[@]}" "${composites[@]}" || rc=$?
((rc == 0)) || die "actionlint found mistakes in the workflows or composite actions (above; exit $rc)"
jobs=$("$TEPI_VENV/bin/python" - "${workflows[@]}" <<'PY'
import sys, yaml
print(sum(len(yaml.safe_load(open(f))["jobs"]) for f in sys.argv[1:]))
PY
)
gate_note "${#workflows[@]} workflows, $jobs jobs, ${#composites[@]} composite action(s), 0 findings (actionlint $("$ACTIONLINT_BIN" -version | head -n 1 | awk '{print $NF}'), shellcheck on run: steps); 4 planted mistakes caught"
