#!/usr/bin/env bash
# Installs the Debian packages whose programs the tests run as subprocesses: pigz, rsync, git,
# GNU tar, nginx (the load balancer in front of the replicas of test/cluster/, run as a plain
# process with its own config, never as the system service; also the bench's reference and load
# balancer), wrk (the bench's load generator for the 64-connection small GET: autocannon, in
# JavaScript, is the bottleneck there), and Chromium (headless, driven by playwright-core in
# test/ui/) with a font for its text.
# Nothing is done when they are all there; otherwise `apt-get update` once, then
# `apt-get install -y --no-install-recommends` of the missing ones (as root; anyone else is told
# the command to run). Versions are the distribution's.
#
# Usage: scripts/system/install.sh
set -euo pipefail

missing=()
command -v pigz >/dev/null 2>&1 || missing+=(pigz)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
# /usr/sbin is not on every PATH (a non-root shell's): look there too.
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
# The browser tests launch /usr/bin/chromium by that path (no browser download of Playwright's own).
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
# Any font will do for the screenshots; DejaVu is Debian's default.
[[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || missing+=(fonts-dejavu-core)
if ! command -v tar >/dev/null 2>&1; then
  missing+=(tar)
elif ! tar --version 2>/dev/null | head -n 1 | grep -q 'GNU tar'; then
  echo "install-system: 'tar' on PATH ($(command -v tar)) is not GNU tar; the tests need GNU tar first on PATH" >&2
  exit 1
fi

[[ ${#missing[@]} -eq 0 ]] && exit 0

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system: missing ${missing[*]} and there is no apt-get: install ${missing[*]} with this system's package manager" >&2
  exit 1
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "install-system: missing ${missing[*]}: run as root: sudo sh -c '$cmd'" >&2
  exit 1
fi
echo "install-system: installing ${missing[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
for p in "${missing[@]}"; do
  [[ $p == fonts-* ]] && continue
  [[ $p == nginx && -x /usr/sbin/nginx ]] && continue
  if ! command -v "$p" >/dev/null 2>&1; then
    echo "install-system: apt-get installed $p but '$p' is still not on PATH" >&2
    exit 1
  fi
done
