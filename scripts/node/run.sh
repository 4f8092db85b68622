#!/usr/bin/env bash
# Runs a command with Node.js >= 22.12 first on PATH: the `node` on PATH when it is new enough,
# otherwise the Node.js 24 that scripts/node/install.sh puts in .node/ (installed on first use).
# Whatever the command starts through PATH (npm, tsc, tap and the node processes tap spawns,
# #!/usr/bin/env node scripts) then runs on that Node. npm test, npm start and npm run bench go
# through this, so they run on Node 24 even where the system's node is 20.
#
# Usage: scripts/node/run.sh <command> [args...]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/node/lib.sh
source "$HERE/lib.sh"
if ! { current="$(node_version node)" && version_ok "$current"; }; then
  bash "$HERE/install.sh"
  export PATH="${NODE24_DIR:-$(cd "$HERE/../.." && pwd)/.node}/bin:$PATH"
fi
exec "$@"
