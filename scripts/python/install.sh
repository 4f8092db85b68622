#!/usr/bin/env bash
# Makes the Python virtualenv the tests run tools from (.emulators/venv: the AWS CLI v1, boto3,
# aiohttp, requests), with `python3 -m venv` and pip, from the pins in requirements.txt beside
# this script. The venv holds a hash of requirements.txt: while it matches (and the venv's python
# runs), nothing is done; a changed requirements.txt builds the venv anew.
#
# Usage: scripts/python/install.sh
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE/../.."
REQ="$HERE/requirements.txt"
VENV="$PWD/.emulators/venv"
STAMP="$VENV/.requirements.sha256"

fail() { echo "install-python: $*" >&2; exit 1; }

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && "$VENV/bin/python" -c '' >/dev/null 2>&1; then
  exit 0
fi

command -v python3 >/dev/null 2>&1 || fail "'python3' is not on PATH; install Python 3.10 or newer (with its venv module) to make $VENV"
# A pyenv shim with no version selected, or a broken interpreter, fails here with its own words.
if ! out="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2]); sys.exit(sys.version_info < (3, 10))' 2>&1)"; then
  fail "python3 ($(command -v python3)) cannot be used (awscli needs Python 3.10 or newer): ${out//$'\n'/ }"
fi
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 \
  || fail "python3 $out ($(command -v python3)) has no venv/ensurepip module: install it (Debian: apt-get install python3-venv)"

echo "install-python: making $VENV with Python $out (first run only, takes a minute or so)" >&2
start=$SECONDS
# Never reuse a venv left half-made or made from other pins: what was removed from the list
# must not linger.
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --quiet --requirement "$REQ" \
  || fail "pip could not install $REQ into $VENV (see above)"
out="$("$VENV/bin/python" -m pip check --disable-pip-version-check 2>&1)" \
  || fail "the pinned packages in $REQ do not fit together: ${out//$'\n'/; }"
version="$("$VENV/bin/aws" --version 2>&1)" || fail "$VENV/bin/aws does not run: $version"
echo "$want" > "$STAMP"
echo "install-python: $version; done in $((SECONDS - start)) s" >&2
