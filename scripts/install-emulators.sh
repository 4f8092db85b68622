#!/usr/bin/env bash
# Installs the storage servers the test suite runs against (MinIO, fake-gcs-server, FerretDB)
# into .emulators/bin, built from pinned versions with `go install`. Azurite comes from npm
# (devDependency). A binary that is already there is not built again.
#
# Usage: scripts/install-emulators.sh [minio|fake-gcs-server|ferretdb ...]   (default: all)
set -euo pipefail

cd "$(dirname "$0")/.."
BIN_DIR="${EMULATORS_BIN:-$PWD/.emulators/bin}"
mkdir -p "$BIN_DIR"

# Pinned versions. MinIO tags are not semver, so the module proxy knows it by pseudo-version
# (RELEASE tag of 2026-02-12).
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
FAKE_GCS_VERSION="v1.56.1"
FERRETDB_VERSION="v1.24.0"

build() { # name module version
  local name="$1" module="$2" version="$3"
  local stamp="$BIN_DIR/.$name.version"
  if [[ -x "$BIN_DIR/$name" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
    return 0
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "install-emulators: 'go' is not on PATH; install Go >= 1.24 to build $name" >&2
    exit 1
  fi
  echo "install-emulators: building $name $version (first run only, takes a few minutes)" >&2
  local flags=()
  [[ "$name" == ferretdb ]] && flags=(-tags ferretdb_no_postgresql)
  GOBIN="$BIN_DIR" CGO_ENABLED=0 go install "${flags[@]}" "$module@$version"
  echo "$version" > "$stamp"
}

want="${*:-minio fake-gcs-server ferretdb}"
for w in $want; do
  case "$w" in
    minio) build minio github.com/minio/minio "$MINIO_VERSION" ;;
    fake-gcs-server) build fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKE_GCS_VERSION" ;;
    ferretdb) build ferretdb github.com/FerretDB/FerretDB/cmd/ferretdb "$FERRETDB_VERSION" ;;
    *) echo "install-emulators: unknown emulator '$w'" >&2; exit 2 ;;
  esac
done
