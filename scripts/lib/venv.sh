# Sourced by scripts/run and scripts/test: make .venv hold the package (with
# the extras named in $1, if any), installing only what is missing or stale.
# Needs nothing but Python 3.11+ (with its venv module) and network access to
# the package index.

set -euo pipefail

venv_setup() {
    local extras="${1:-}"
    local root venv python stamp want
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    venv="$root/.venv"
    python="${PYTHON:-python3}"

    if ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "session-agent needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.11)" >&2
            exit 1
        fi
        echo "==> creating $venv" >&2
        rm -rf "$venv"
        if ! "$python" -m venv "$venv"; then
            echo "could not create a virtualenv; on Debian/Ubuntu: apt-get install python3-venv" >&2
            exit 1
        fi
    fi

    # One stamp per set of extras, holding a hash of what was installed from.
    # The test extras include everything a plain run needs.
    stamp="$venv/.installed${extras:+-$extras}"
    want="$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -d' ' -f1)"
    if [ -z "$extras" ] && [ "$(cat "$venv/.installed-test" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "==> installing session-agent${extras:+[$extras]} into $venv" >&2
        local target="$root"
        [ -n "$extras" ] && target="$root[$extras]"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -c "$root/constraints.txt" -e "$target"
        echo "$want" >"$stamp"
    fi
}
