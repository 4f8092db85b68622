/**
 * The oldest Node.js the registry runs on (package.json `engines`). server.ts and cli.ts import
 * this module first, so on an older Node (say a system's Node 20 running `node dist/server.js`)
 * the process stops at once with one line instead of failing somewhere later. `npm start` runs
 * the server through scripts/node/run.sh, which brings Node 24 along where the system's is older.
 */
export const MIN_NODE = '22.12.0';

/** The one line to stop with when `version` (e.g. "20.20.2") is older than MIN_NODE; else undefined. */
export function unsupportedNode(version: string = process.versions.node): string | undefined {
  const have = version.split('.').map(Number);
  const want = MIN_NODE.split('.').map(Number);
  for (let i = 0; i < want.length; i++) {
    if ((have[i] ?? 0) > want[i]!) return undefined;
    if ((have[i] ?? 0) < want[i]!) {
      return `model-registry needs Node.js >= 22.12 (this is v${version}): install Node.js 24 LTS, or start it with \`npm start\` (or \`npm run node24 -- node dist/cli.js ...\`), which runs it on a Node.js 24 installed into .node/.`;
    }
  }
  return undefined;
}

const line = unsupportedNode();
if (line !== undefined) {
  process.stderr.write(`${line}\n`);
  process.exit(1);
}
