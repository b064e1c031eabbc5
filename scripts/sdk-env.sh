#!/usr/bin/env bash
# Installs Microsoft's Graph SDKs for the SDK compatibility tests (crates/upspool/tests/sdk_*.rs):
#
#   Python: a virtual environment in target/sdk-env/python with the pinned
#           crates/upspool/tests/sdk/python/requirements.txt (msgraph-sdk, msgraph-core, kiota);
#   JS:     `npm ci` of crates/upspool/tests/sdk/js (@microsoft/microsoft-graph-client 3.0.7)
#           into its node_modules/.
#
# Idempotent: each part is redone only when its pinned file changed (a stamp holds its hash) or
# the install is missing, so re-running costs a second. Both live in ignored folders: a fresh
# clone or `cargo clean` simply installs again. .ci/run calls this before the tests.
#
# Needs python3 (with venv) and node/npm; registries: PyPI and npm.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sdk="$root/crates/upspool/tests/sdk"
env_dir="$root/target/sdk-env"

# This machine kind has python3 (with venv) and Node.js 20 with npm; elsewhere, install them
# from Debian's packages when allowed (root).
need() { # command, debian packages...
    command -v "$1" >/dev/null && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "sdk-env: $1 missing, installing ${*:2} from Debian's packages"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${@:2}"
    fi
    command -v "$1" >/dev/null || { echo "sdk-env: $1 not found; install ${*:2}" >&2; exit 1; }
}

stamp_ok() { # stamp-file, input-file
    [ -f "$1" ] && [ "$(cat "$1")" = "$(sha256sum "$2" | cut -d' ' -f1)" ]
}

# --- Python
py_dir="$env_dir/python"
req="$sdk/python/requirements.txt"
if stamp_ok "$py_dir/.stamp" "$req" && [ -x "$py_dir/bin/python" ]; then
    echo "sdk-env: python venv up to date ($py_dir)"
else
    python="${PYTHON:-python3}"
    [ -n "${PYTHON:-}" ] || need python3 python3 python3-venv
    echo "sdk-env: creating $py_dir with $("$python" --version)"
    start=$(date +%s)
    rm -rf "$py_dir"
    mkdir -p "$env_dir"
    "$python" -m venv "$py_dir"
    "$py_dir/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$req"
    sha256sum "$req" | cut -d' ' -f1 > "$py_dir/.stamp"
    echo "sdk-env: python venv ready in $(( $(date +%s) - start ))s, $(du -sh "$py_dir" | cut -f1)"
fi

# --- JS
js_dir="$sdk/js"
lock="$js_dir/package-lock.json"
if stamp_ok "$js_dir/node_modules/.upspool-stamp" "$lock"; then
    echo "sdk-env: js node_modules up to date ($js_dir/node_modules)"
else
    need node nodejs
    need npm npm
    echo "sdk-env: npm ci in $js_dir (node $(node --version))"
    (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error)
    sha256sum "$lock" | cut -d' ' -f1 > "$js_dir/node_modules/.upspool-stamp"
    echo "sdk-env: js ready, $(du -sh "$js_dir/node_modules" | cut -f1)"
fi
