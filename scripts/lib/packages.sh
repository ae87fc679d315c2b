# Sourced by scripts/test: install the Debian packages whose programs the
# tests drive (the suite runs the real programs, not stand-ins).
#   ensure_commands COMMAND:PACKAGE ...

ensure_commands() {
    local missing=() pair command package
    for pair in "$@"; do
        command="${pair%%:*}"
        package="${pair#*:}"
        command -v "$command" >/dev/null 2>&1 || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo -n"
        else
            echo "==> missing ${missing[*]}; install them (apt-get install ${missing[*]}) or the tests that need them fail" >&2
            return 0
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "==> missing ${missing[*]} and no apt-get here; install them by hand" >&2
        return 0
    fi
    echo "==> installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null || true
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The npm packages whose programs the tests drive (the real AI hosts), pinned,
# installed into DIR/node_modules/.bin once per set of versions (Claude Code's
# own install script puts its native binary in place).
#   ensure_npm_tools DIR PACKAGE@VERSION ...
ensure_npm_tools() {
    local dir="$1"
    shift
    [ "$(cat "$dir/.installed" 2>/dev/null)" = "$*" ] && return 0
    command -v npm >/dev/null 2>&1 || ensure_commands npm:npm
    if ! command -v npm >/dev/null 2>&1; then
        echo "==> npm is missing; the tests of $* fail without it" >&2
        return 0
    fi
    echo "==> installing npm packages: $*" >&2
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error "$@" >/dev/null
    echo "$*" >"$dir/.installed"
}

# A Python program the tests drive (a peer such as Watson), pinned, in a
# virtualenv of its own so that its dependencies never meet ours.
#   ensure_pip_tool DIR PACKAGE==VERSION
ensure_pip_tool() {
    local dir="$1" want="$2"
    [ "$(cat "$dir/.installed" 2>/dev/null)" = "$want" ] && return 0
    echo "==> installing $want into $dir" >&2
    rm -rf "$dir"
    "${PYTHON:-python3}" -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$want"
    echo "$want" >"$dir/.installed"
}
