# Shared by scripts/node/install.sh and run.sh: the oldest Node.js the registry supports, and
# how to tell whether a node binary is at least that.
MIN_NODE="22.12.0"

# node_version <node binary>: prints its version without the v (fails when it does not run).
node_version() { command -v "$1" >/dev/null 2>&1 && "$1" -p process.versions.node 2>/dev/null; }

# version_ok <x.y.z>: true when it is MIN_NODE or newer.
version_ok() {
  local IFS=. have want i
  read -r -a have <<<"$1"
  read -r -a want <<<"$MIN_NODE"
  for i in 0 1 2; do
    ((${have[i]:-0} > ${want[i]})) && return 0
    ((${have[i]:-0} < ${want[i]})) && return 1
  done
  return 0
}
