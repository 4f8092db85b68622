#!/usr/bin/env node
/**
 * Benchmark of the model registry against references, all on loopback (SPEC §7).
 *
 *   npm run bench                 full run (1 GiB / 4 GiB, 3 repetitions), appends to BENCHMARKS.md
 *   npm run bench -- --quick      64 MiB / 256 MiB, 1 repetition, < 2 min, prints only
 *   npm run bench -- --quick --write   quick, and append it to BENCHMARKS.md too
 *   options: --reps N, --load wrk|autocannon (default: wrk when installed), --no-build (use dist/ as is), --keep (keep the temp dir),
 *            --only local,minio,cold,rss,cluster,catalog (a subset of the workloads),
 *            --cpu-prof (start the registry with node --cpu-prof; profiles kept in the temp dir)
 *
 * References: nginx (Debian package, installed with apt-get when missing) serving the same file
 * with sendfile; the same work as a local PUT done by shell tools (`tee file | openssl dgst
 * -sha256` beside `gzip -dc | tar -t`, then fsync), and `cat > file`, on the same disk; the AWS SDK
 * talking to MinIO directly; 64 clients pulling one model through nginx in front of 1 and of 3
 * replicas on one MinIO. Every row also gives the registry's CPU seconds per GiB moved (utime +
 * stime of its processes, /proc/<pid>/stat) and, where measured, the reference's.
 * Plain ESM JavaScript: node built-ins, @aws-sdk/client-s3 + lib-storage (dependencies) and
 * autocannon (devDependency). Archives are random (incompressible) valid .tar.gz files, streamed
 * to disk and never held in memory.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, readFileSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

const ROOT = path.resolve(import.meta.dirname, '..');
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : dflt;
};
const QUICK = flag('--quick');
const WRITE = flag('--write') || (!QUICK && !argv.includes('--only') && !flag('--no-write'));
const REPS = Number(opt('--reps', QUICK ? 1 : 3));
const CPU_PROF = flag('--cpu-prof');
/** --only local,minio,cold,rss: run only these groups of workloads (for profiling). */
const ONLY = opt('--only', 'local,minio,cold,rss,cluster,catalog').split(',');
const want = (group) => ONLY.includes(group);
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const LARGE = QUICK ? 64 * MiB : 1 * GiB;
const HUGE = QUICK ? 256 * MiB : 4 * GiB;
const SMALL = 1 * MiB;
/** The model 64 clients pull through 1 and through 3 replicas behind nginx (SPEC §7). */
const PULLED = QUICK ? 32 * MiB : 256 * MiB;
const PULL_CLIENTS = 64;
/** Models in the catalog the listing rows walk (issue: search at 10,000 models). */
const CATALOG = QUICK ? 1000 : 10_000;
const AC_SECONDS = QUICK ? 3 : 10;
const MINIO_USER = 'bench-user';
const MINIO_PASSWORD = 'bench-secret-password';
const fmtSize = (n) => (n >= GiB ? `${n / GiB} GiB` : `${n / MiB} MiB`);

const started = Date.now();
const log = (...a) => console.error(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const children = new Set();
/** Children started in a process group of their own (nginx with its workers): killed as a group. */
const groups = new Set();
process.on('exit', () => {
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    if (groups.has(c)) {
      try {
        process.kill(-c.pid, 'SIGKILL');
      } catch {}
    } else c.kill('SIGKILL');
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

function fail(message) {
  console.error(`bench: ${message}`);
  process.exit(1);
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(check, what, child, getLog, ms = 60_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child && (child.exitCode !== null || child.signalCode !== null))
      fail(`${what} exited (${child.exitCode ?? child.signalCode}): ${getLog?.() ?? ''}`);
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  fail(`${what} did not become ready within ${ms / 1000} s: ${getLog?.() ?? ''}`);
}

function launch(cmd, args, options = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let out = '';
  child.stdout.on('data', (d) => (out = (out + d).slice(-4000)));
  child.stderr.on('data', (d) => (out = (out + d).slice(-4000)));
  children.add(child);
  child.once('exit', () => children.delete(child));
  return { child, log: () => out };
}

async function stopChild(child, signal = 'SIGTERM') {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(t);
}

// ---------------------------------------------------------------------------------------------
// Archives: one regular file of random bytes in a ustar archive, gzipped at level 0 (stored
// deflate blocks: valid gzip, incompressible content, and cheap to produce).

function tarHeader(name, size) {
  const h = Buffer.alloc(512, 0);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write(
    `${Math.floor(Date.now() / 1000)
      .toString(8)
      .padStart(11, '0')}\0`,
    136,
  );
  h.write('        ', 148);
  h.write('0', 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

async function makeArchive(file, payloadBytes) {
  const CHUNK = 4 * MiB;
  async function* tar() {
    yield tarHeader('model/weights.bin', payloadBytes);
    let left = payloadBytes;
    while (left > 0) {
      const n = Math.min(CHUNK, left);
      yield randomFillSync(Buffer.allocUnsafe(n));
      left -= n;
    }
    const pad = (512 - (payloadBytes % 512)) % 512;
    yield Buffer.alloc(pad + 1024, 0);
  }
  await pipeline(
    Readable.from(tar()),
    createGzip({ level: 0, chunkSize: 1 * MiB }),
    createWriteStream(file, { highWaterMark: 1 * MiB }),
  );
  return (await stat(file)).size;
}

// ---------------------------------------------------------------------------------------------
// Clients

/** curl: total seconds, seconds to first byte, bytes, status. */
function curl(args) {
  return new Promise((resolve, reject) => {
    const c = spawn(
      'curl',
      [
        '-sS',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code} %{time_total} %{time_starttransfer} %{size_download} %{size_upload}',
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`curl ${args.join(' ')} failed (${code}): ${err}`));
      const [status, total, ttfb, down, up] = out.trim().split(' ');
      resolve({ status: Number(status), total: Number(total), ttfb: Number(ttfb), down: Number(down), up: Number(up) });
    });
  });
}

async function curlGet(url, expectBytes, extra = []) {
  const r = await curl([...extra, url]);
  if (r.status !== 200 || (expectBytes !== undefined && r.down !== expectBytes))
    throw new Error(`GET ${url}: status ${r.status}, ${r.down} bytes (expected ${expectBytes})`);
  return r;
}

/**
 * Every timed write starts with no dirty pages of the one before (`sync` first): otherwise
 * whichever runs second pays for the other's writeback (seen: `cat` from 0.3 s to 3.4 s).
 */
const settle = () => spawnSync('sync');

async function curlPut(url, file) {
  const r = await curl(['-T', file, '-H', 'Content-Type: application/gzip', '-H', 'Expect:', url]);
  if (r.status !== 200 && r.status !== 201) throw new Error(`PUT ${url}: status ${r.status}`);
  return r;
}

async function httpText(url) {
  const res = await fetch(url);
  return res.text();
}

async function storageGets(base) {
  const text = await httpText(`${base}/metrics`);
  let n = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('model_registry_storage_requests_total{') && line.includes('operation="get"'))
      n += Number(line.split(' ').pop());
  }
  return n;
}

/** One GET drained to nowhere; resolves with the status. */
function drainGet(url) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, (res) => {
      res.on('data', () => {});
      res.on('end', () => resolve(res.statusCode));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * CPU seconds of the children a bash script waited for, from the second line of its `times`
 * (e.g. `0m1.234s 0m0.321s`: user, system); NaN when absent.
 */
function childTimes(stdout) {
  const line =
    String(stdout ?? '')
      .trim()
      .split('\n')
      .at(-1) ?? '';
  const secs = [...line.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  return secs.length === 2 ? secs[0] + secs[1] : NaN;
}

/**
 * The registry's local PUT done by shell tools (SPEC §7): the archive read once, stored with
 * `tee file`, hashed by `openssl dgst -sha256`, and beside that decompressed and parsed to its end
 * by `gzip -dc | tar -t` (through a FIFO, as tee's second output); then `sync file` (fsync).
 * Resolves with its wall time and the CPU seconds of its processes (bash's `times`), in seconds.
 */
function shellPipeline(src, dest, fifo) {
  const script = `set -euo pipefail
rm -f "$3"; mkfifo "$3"
gzip -dc < "$3" | tar -t > /dev/null &
check=$!
tee "$2" "$3" < "$1" | openssl dgst -sha256 > /dev/null
wait "$check"
sync "$2"
rm -f "$3"
times`;
  const t0 = process.hrtime.bigint();
  const r = spawnSync('bash', ['-c', script, 'bash', src, dest, fifo], { encoding: 'utf8' });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`the shell pipeline failed (${r.status}): ${r.stderr}`);
  return { wall, cpu: childTimes(r.stdout) };
}

const WRK = spawnSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' }).stdout.trim();
const LOADGEN = opt('--load', WRK ? 'wrk' : 'autocannon');

/** Requests/s at 64 connections: wrk when installed (C, least client overhead), else autocannon. */
async function loadTest(url) {
  if (LOADGEN === 'autocannon') return autocannon(url);
  if (!WRK) fail('--load wrk: wrk is not installed (apt-get install -y wrk)');
  const r = spawnSync(WRK, ['-t', '1', '-c', '64', '-d', `${AC_SECONDS}s`, url], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`wrk ${url} failed: ${r.stderr}`);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1]);
  const bad = /Non-2xx or 3xx responses: (\d+)/.exec(r.stdout);
  const errs = /Socket errors: (.*)/.exec(r.stdout);
  if (bad || !(rps > 0)) throw new Error(`wrk ${url}: ${r.stdout}`);
  if (errs && /(read|write|timeout) [1-9]/.test(errs[1])) throw new Error(`wrk ${url}: socket errors ${errs[1]}`);
  return rps;
}

async function autocannon(url) {
  const { default: ac } = await import('autocannon').catch(() =>
    fail(
      'autocannon is not installed: run `npm install` (it is a devDependency) or `npm install --no-save autocannon`',
    ),
  );
  const result = await ac({ url, connections: 64, duration: AC_SECONDS, pipelining: 1 });
  const ok = result['2xx'];
  if (result.non2xx > 0 || result.errors > 0 || ok === 0)
    throw new Error(`autocannon ${url}: ${ok} 2xx, ${result.non2xx} non-2xx, ${result.errors} errors`);
  return ok / (result.duration || AC_SECONDS);
}

// ---------------------------------------------------------------------------------------------
// References and the registry

function ensureNginx() {
  const which = () =>
    spawnSync('sh', ['-c', 'command -v nginx || ls /usr/sbin/nginx'], { encoding: 'utf8' })
      .stdout.trim()
      .split('\n')[0];
  let bin = which();
  if (bin) return bin;
  log('nginx is missing: installing it with apt-get (Debian package)');
  const sudo = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  const run = (args) =>
    spawnSync(sudo[0] ?? args[0], sudo.length ? [...sudo.slice(1), ...args] : args.slice(1), {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  let r = run(['apt-get', 'install', '-y', '--no-install-recommends', 'nginx']);
  if (r.status !== 0) {
    run(['apt-get', 'update']);
    r = run(['apt-get', 'install', '-y', '--no-install-recommends', 'nginx']);
  }
  bin = which();
  if (!bin)
    fail(
      `nginx is required as the reference and could not be installed with apt-get (exit ${r.status}${r.error ? `, ${r.error.message}` : ''}); install it (apt-get install -y nginx) and run again`,
    );
  return bin;
}

async function startNginx(dir, root) {
  const bin = ensureNginx();
  const port = await freePort();
  await mkdir(path.join(dir, 'nginx'), { recursive: true });
  const conf = path.join(dir, 'nginx', 'nginx.conf');
  const t = path.join(dir, 'nginx');
  await writeFile(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${t}/nginx.pid;
error_log ${t}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/gzip;
  client_body_temp_path ${t}/body;
  proxy_temp_path ${t}/proxy;
  fastcgi_temp_path ${t}/fastcgi;
  uwsgi_temp_path ${t}/uwsgi;
  scgi_temp_path ${t}/scgi;
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`,
  );
  const { child, log: out } = launch(bin, ['-c', conf, '-p', t, '-e', `${t}/error.log`]);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${base}/`).catch(() => null)) !== null, 'nginx', child, out);
  return { base, pid: child.pid, stop: () => stopChild(child, 'SIGQUIT') };
}

/**
 * nginx as the load balancer in front of registry replicas: round robin over `replicas` with the
 * proxy settings the repository ships (deploy/nginx/registry-proxy.conf, as in the compose profile
 * `cluster` and the cluster test), one worker per core, in a process group of its own so that its
 * workers go with it.
 */
async function startBalancer(dir, name, replicas) {
  const bin = ensureNginx();
  const port = await freePort();
  const t = path.join(dir, name);
  await mkdir(t, { recursive: true });
  const conf = path.join(t, 'nginx.conf');
  await writeFile(
    conf,
    `daemon off;
${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes auto;
pid ${t}/nginx.pid;
error_log ${t}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${t}/body;
  proxy_temp_path ${t}/proxy;
  fastcgi_temp_path ${t}/fastcgi;
  uwsgi_temp_path ${t}/uwsgi;
  scgi_temp_path ${t}/scgi;
  upstream registry {
${replicas.map((r) => `    server ${new URL(r.base).host};`).join('\n')}
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      include ${path.join(ROOT, 'deploy', 'nginx', 'registry-proxy.conf')};
    }
  }
}
`,
  );
  const { child, log: out } = launch(bin, ['-c', conf, '-p', t, '-e', `${t}/error.log`], { detached: true });
  groups.add(child);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${base}/healthz`)).ok, `nginx (${name})`, child, out);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    try {
      process.kill(-child.pid, 'SIGQUIT');
    } catch {}
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    }, 15_000);
    await exited;
    clearTimeout(timer);
  };
  return { base, pid: child.pid, stop };
}

/** `clients` concurrent `curl` downloads of `url` (each checked whole); resolves with the wall time in seconds. */
async function pullMany(url, clients, expectBytes) {
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: clients }, () => curlGet(url, expectBytes)));
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function startMinio(dir) {
  const bin = path.join(ROOT, '.emulators', 'bin', 'minio');
  if (!existsSync(bin)) {
    log('MinIO is missing: bash scripts/emulators/install.sh minio');
    const r = spawnSync('bash', [path.join(ROOT, 'scripts/emulators/install.sh'), 'minio'], {
      stdio: 'inherit',
      cwd: ROOT,
    });
    if (r.status !== 0 || !existsSync(bin))
      fail(`MinIO could not be installed (scripts/emulators/install.sh minio exited ${r.status})`);
  }
  const data = path.join(dir, 'minio-data');
  await mkdir(data, { recursive: true });
  const port = await freePort();
  const { child, log: out } = launch(
    bin,
    ['server', data, '--address', `127.0.0.1:${port}`, '--console-address', '127.0.0.1:0', '--quiet'],
    {
      env: {
        ...process.env,
        MINIO_ROOT_USER: MINIO_USER,
        MINIO_ROOT_PASSWORD: MINIO_PASSWORD,
        MINIO_BROWSER: 'off',
        MINIO_UPDATE: 'off',
        CI: 'true',
      },
    },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${url}/minio/health/live`)).status < 500, 'MinIO', child, out);
  return { url, stop: () => stopChild(child) };
}

let registryCount = 0;
async function startRegistry(dir, env) {
  const id = ++registryCount;
  const port = await freePort();
  const storage = env.LOCAL_STORAGE_DIR ?? path.join(dir, `models-${id}`);
  const cache = env.CACHE_DIR ?? path.join(dir, `cache-${id}`);
  await mkdir(storage, { recursive: true });
  await mkdir(cache, { recursive: true });
  const nodeArgs = CPU_PROF
    ? [
        '--cpu-prof',
        `--cpu-prof-dir=${path.join(dir, 'profiles')}`,
        `--cpu-prof-name=registry-${id}-\${pid}.cpuprofile`,
      ]
    : [];
  const { child, log: out } = launch(process.execPath, [...nodeArgs, path.join(ROOT, 'dist', 'server.js')], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      LOCAL_STORAGE_DIR: storage,
      CACHE_DIR: cache,
      CACHE_MAX_BYTES: '64GiB',
      ...env,
    },
  });
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${base}/healthz`)).ok, `registry ${id}`, child, out);
  return { base, pid: child.pid, child, stop: () => stopChild(child), log: out };
}

// ---------------------------------------------------------------------------------------------

function git(args) {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

const rows = [];
function row(workload, reg, ref, unit, target, pass, note = '') {
  rows.push({ workload, reg, ref, unit, target, pass, note });
  log(
    `${workload}: registry ${reg} ${unit}${ref !== undefined ? `, reference ${ref} ${unit}` : ''} → ${pass === undefined ? 'info' : pass ? 'PASS' : 'FAIL'}`,
  );
}

/**
 * Records, on the last row, the machine's CPU seconds per repetition on either side (medians) and
 * what the target allows: every core busy for the whole of the target's wall time. A registry
 * side that needs more CPU than that cannot meet the target on this machine without doing less work.
 */
function cpuBudget(cpuReg, cpuRef, targetWall) {
  Object.assign(rows.at(-1), {
    cpuReg: median(cpuReg),
    cpuRef: median(cpuRef),
    cpuAllowed: os.cpus().length * targetWall,
    mainReg: median(cpuReg.main ?? [NaN]),
    targetWall,
  });
}

/** Every repetition, registry / reference, for the table's runs column (medians hide the spread). */
const runs = (reg, ref, d = 0) =>
  `${reg.map((x) => fmt(x, d)).join(', ')}${ref ? ` / ${ref.map((x) => fmt(x, d)).join(', ')}` : ''}`;
const fmt = (x, d = 1) => (x === undefined || x === null || Number.isNaN(x) ? '—' : Number(x).toFixed(d));

/**
 * Share of all cores busy during one second, while this process sleeps: other work on the
 * machine (a forgotten MinIO scanning its data once took ~7% and skewed two runs). Linux only.
 */
async function busyElsewhere() {
  const sample = () => {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return { idle: cpu[3] + cpu[4], total: cpu.reduce((a, b) => a + b, 0) };
  };
  try {
    const a = sample();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const b = sample();
    return 1 - (b.idle - a.idle) / Math.max(1, b.total - a.total);
  } catch {
    return NaN;
  }
}
let busyBefore = NaN;

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;
/**
 * CPU seconds every process on the machine has spent so far, all cores together (user, nice,
 * system, irq, softirq from /proc/stat); NaN off Linux. The difference around a timed operation is
 * the work that operation cost the machine: client, registry and storage server together.
 */
function machineCpu() {
  try {
    const [user, nice, system, , , irq, softirq] = readFileSync('/proc/stat', 'utf8')
      .split('\n')[0]
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    return (user + nice + system + irq + softirq) / CLK_TCK;
  } catch {
    return NaN;
  }
}
/** CPU seconds of the main thread of process `pid` (its JavaScript: one core at most); NaN when unknown. */
function mainThreadCpu(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').split(') ').at(-1).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime, stime
  } catch {
    return NaN;
  }
}
/**
 * CPU seconds of the whole process `pid`, every thread (utime + stime of /proc/<pid>/stat: its
 * JavaScript, libuv's pool hashing and writing, zlib, the kernel's work for its sockets and files);
 * summed over an array of pids; 'self' is this process (process.cpuUsage: the SDK references run
 * here). NaN when unknown.
 */
function processCpu(pid) {
  if (Array.isArray(pid)) return pid.reduce((sum, p) => sum + processCpu(p), 0);
  if (pid === 'self') {
    const { user, system } = process.cpuUsage();
    return (user + system) / 1e6;
  }
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').at(-1).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}
/**
 * Runs fn; pushes the machine's CPU seconds spent meanwhile onto `into`; with `registryPid` (a pid
 * or several), the registry main thread's onto `into.main` and the registry processes' own onto
 * `into.proc`; with `referencePid` (a pid, several, or 'self'), the reference's own onto
 * `into.proc`. Returns fn's result.
 */
async function countingCpu(into, fn, registryPid, referencePid) {
  const pid = registryPid ?? referencePid;
  const before = machineCpu();
  const mainBefore = registryPid ? mainThreadCpu([registryPid].flat()[0]) : NaN;
  const procBefore = pid ? processCpu(pid) : NaN;
  const result = await fn();
  into.push(machineCpu() - before);
  (into.main ??= []).push(registryPid ? mainThreadCpu([registryPid].flat()[0]) - mainBefore : NaN);
  (into.proc ??= []).push(pid ? processCpu(pid) - procBefore : NaN);
  return result;
}

/**
 * Records, on the last row, CPU seconds per GiB moved: the registry processes' own (utime + stime
 * from /proc/<pid>/stat, medians of the repetitions) and the reference's own when it was measured
 * (`cpuRef.proc`), for `bytes` moved per repetition.
 */
function perGiB(cpuReg, cpuRef, bytes) {
  const gib = bytes / GiB;
  Object.assign(rows.at(-1), {
    regGiB: median(cpuReg.proc ?? [NaN]) / gib,
    refGiB: cpuRef ? median(cpuRef.proc ?? [NaN]) / gib : NaN,
  });
}

/**
 * Memory not even used by the page cache (MemFree), in bytes; NaN off Linux. With the page cache
 * full, every write first waits for reclaim: one run in such a state took `cat > file` of 1 GiB
 * from 0.26 s to 2.3 s and halved the cached GET, ratios that meant nothing.
 */
function memFree() {
  try {
    const kib = /^MemFree:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1];
    return kib === undefined ? NaN : Number(kib) * 1024;
  } catch {
    return NaN;
  }
}
let freeBefore = NaN;

async function main() {
  log(`${QUICK ? 'quick' : 'full'} run: large ${fmtSize(LARGE)}, huge ${fmtSize(HUGE)}, ${REPS} repetition(s)`);
  if (!flag('--no-build')) {
    log('building dist/ (tsc -p tsconfig.build.json)');
    const r = spawnSync(
      process.execPath,
      [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
      { cwd: ROOT, stdio: 'inherit' },
    );
    if (r.status !== 0) fail('the build failed');
  }
  if (!existsSync(path.join(ROOT, 'dist/server.js'))) fail('dist/server.js is missing: run npm run build');
  if (LOADGEN === 'autocannon')
    await import('autocannon').catch(() =>
      fail('autocannon is not installed: run `npm install` (devDependency) or `npm install --no-save autocannon`'),
    );
  if (spawnSync('curl', ['--version']).status !== 0) fail('curl is required (apt-get install -y curl)');

  busyBefore = await busyElsewhere();
  if (busyBefore > 0.1)
    log(
      `warning: ${Math.round(busyBefore * 100)}% of the CPU was busy before the run started (another process?) — the ratios share the cores with it`,
    );
  freeBefore = memFree();
  if (freeBefore < 2 * HUGE) {
    log(
      `warning: only ${(freeBefore / GiB).toFixed(1)} GiB of memory is free (the page cache holds the rest): writes will wait for reclaim and skew the ratios; as root, \`sync; echo 1 > /proc/sys/vm/drop_caches\` first`,
    );
  }

  const base = process.env.BENCH_DIR ?? os.tmpdir();
  const dir = await mkdtemp(path.join(base, 'mr-bench-'));
  log(`working in ${dir}`);
  const files = path.join(dir, 'files');
  await mkdir(files);

  // Archives
  const largeFile = path.join(files, 'large.tar.gz');
  const smallFile = path.join(files, 'small.tar.gz');
  const hugeFile = path.join(files, 'huge.tar.gz');
  const mediumFile = path.join(files, 'medium.tar.gz');
  const MEDIUM = 32 * MiB;
  await makeArchive(mediumFile, MEDIUM);
  const largeBytes = await makeArchive(largeFile, LARGE);
  const smallBytes = await makeArchive(smallFile, SMALL);
  log(`archives: large ${largeBytes} B, small ${smallBytes} B`);

  const nginx = await startNginx(dir, files);
  const minio = await startMinio(dir);

  try {
    // ---- Local registry, write-through cache: PUT, cached GET, small GET -------------------------
    if (want('local')) {
      const reg = await startRegistry(dir, { REMOTE_STORAGE: 'local', CACHE_WRITE_THROUGH: 'true' });
      const putReg = [];
      const putCat = [];
      const putCatSync = [];
      const putPipe = [];
      const cpuPut = [];
      const cpuCat = [];
      const cpuPipe = [];
      for (let i = 0; i < REPS; i++) {
        settle();
        putReg.push((await countingCpu(cpuPut, () => curlPut(`${reg.base}/models/large`, largeFile), reg.pid)).total);
        // The same work by shell tools (SPEC §7): store, hash, and validate the archive, then fsync.
        settle();
        const piped = path.join(dir, `pipe-${i}.tar.gz`);
        const p = await countingCpu(cpuPipe, () => shellPipeline(largeFile, piped, path.join(dir, `pipe-${i}.fifo`)));
        cpuPipe.proc.splice(-1, 1, p.cpu);
        putPipe.push(p.wall);
        await rm(piped, { force: true });
        const dest = path.join(dir, `cat-${i}.tar.gz`);
        settle();
        const t0 = process.hrtime.bigint();
        const r = await countingCpu(cpuCat, () =>
          spawnSync('bash', ['-c', 'cat "$1" > "$2"; times', 'bash', largeFile, dest], { encoding: 'utf8' }),
        );
        cpuCat.proc.splice(-1, 1, childTimes(r.stdout));
        if (r.status !== 0) throw new Error(`cat > file failed: ${r.stderr}`);
        putCat.push(Number(process.hrtime.bigint() - t0) / 1e9);
        await rm(dest, { force: true });
        // Not a target: the same with an fsync, since the registry makes its writes durable.
        settle();
        const t1 = process.hrtime.bigint();
        const r2 = spawnSync('sh', ['-c', 'cat "$1" > "$2" && sync "$2"', 'sh', largeFile, dest]);
        if (r2.status !== 0) throw new Error(`cat > file && sync failed: ${r2.stderr}`);
        putCatSync.push(Number(process.hrtime.bigint() - t1) / 1e9);
        await rm(dest, { force: true });
      }
      const pr = median(putReg);
      const pp = median(putPipe);
      row(
        `PUT ${fmtSize(LARGE)} to local vs shell tools (time)`,
        fmt(pr, 2),
        fmt(pp, 2),
        's',
        '≤ 1.0× shell tools',
        pr / pp <= 1.0,
      );
      rows.at(-1).ratio = pr / pp;
      rows.at(-1).runs = runs(putReg, putPipe, 2);
      cpuBudget(cpuPut, cpuPipe, pp);
      perGiB(cpuPut, cpuPipe, largeBytes);
      const pc = median(putCat);
      row(
        `PUT ${fmtSize(LARGE)} to local vs \`cat > file\` (time)`,
        fmt(pr, 2),
        fmt(pc, 2),
        's',
        'report only',
        undefined,
      );
      rows.at(-1).ratio = pr / pc;
      rows.at(-1).runs = runs(putReg, putCat, 2);
      perGiB(cpuPut, cpuCat, largeBytes);
      const pcs = median(putCatSync);
      row(
        `PUT ${fmtSize(LARGE)} to local vs \`cat > file && sync file\``,
        fmt(pr, 2),
        fmt(pcs, 2),
        's',
        'report only',
        undefined,
      );
      rows.at(-1).ratio = pr / pcs;
      rows.at(-1).runs = runs(putReg, putCatSync, 2);
      perGiB(cpuPut, undefined, largeBytes);

      // Warm both sides once (page cache), then measure.
      await curlGet(`${reg.base}/models/large`, largeBytes);
      await curlGet(`${nginx.base}/large.tar.gz`, largeBytes);
      const getReg = [];
      const getNginx = [];
      const cpuGet = [];
      const cpuNginx = [];
      for (let i = 0; i < REPS; i++) {
        getReg.push(
          largeBytes /
            MiB /
            (await countingCpu(cpuGet, () => curlGet(`${reg.base}/models/large`, largeBytes), reg.pid)).total,
        );
        getNginx.push(
          largeBytes /
            MiB /
            (await countingCpu(cpuNginx, () => curlGet(`${nginx.base}/large.tar.gz`, largeBytes), undefined, nginx.pid))
              .total,
        );
      }
      const gr = median(getReg);
      const gn = median(getNginx);
      row(`GET ${fmtSize(LARGE)} cached (throughput)`, fmt(gr, 0), fmt(gn, 0), 'MiB/s', '≥ 0.8× nginx', gr / gn >= 0.8);
      rows.at(-1).ratio = gr / gn;
      rows.at(-1).runs = runs(getReg, getNginx);
      cpuBudget(cpuGet, cpuNginx, largeBytes / MiB / gn / 0.8);
      perGiB(cpuGet, cpuNginx, largeBytes);

      await curlPut(`${reg.base}/models/small`, smallFile);
      await curlGet(`${reg.base}/models/small`, smallBytes);
      const smallReg = [];
      const smallNginx = [];
      const cpuSmall = [];
      const cpuSmallNginx = [];
      for (let i = 0; i < REPS; i++) {
        // CPU per GiB below: per request of the small archive, scaled (requests ≈ req/s × duration).
        smallReg.push(await countingCpu(cpuSmall, () => loadTest(`${reg.base}/models/small`), reg.pid));
        cpuSmall.proc.splice(-1, 1, cpuSmall.proc.at(-1) / (smallReg.at(-1) * AC_SECONDS));
        smallNginx.push(
          await countingCpu(cpuSmallNginx, () => loadTest(`${nginx.base}/small.tar.gz`), undefined, nginx.pid),
        );
        cpuSmallNginx.proc.splice(-1, 1, cpuSmallNginx.proc.at(-1) / (smallNginx.at(-1) * AC_SECONDS));
      }
      const sr = median(smallReg);
      const sn = median(smallNginx);
      row(
        `GET ${fmtSize(SMALL)} cached, 64 connections (${LOADGEN})`,
        fmt(sr, 0),
        fmt(sn, 0),
        'req/s',
        '≥ 0.5× nginx',
        sr / sn >= 0.5,
      );
      rows.at(-1).ratio = sr / sn;
      rows.at(-1).runs = runs(smallReg, smallNginx);
      perGiB(cpuSmall, cpuSmallNginx, smallBytes);
      await reg.stop();
    }

    // ---- MinIO: PUT and cold GET through the registry vs the SDK directly -------------------------
    if (want('minio')) {
      const { S3Client, GetObjectCommand, CreateBucketCommand } = await import('@aws-sdk/client-s3');
      const { Upload } = await import('@aws-sdk/lib-storage');
      const s3 = new S3Client({
        endpoint: minio.url,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD },
      });
      await s3.send(new CreateBucketCommand({ Bucket: 'direct' }));
      const s3env = {
        REMOTE_STORAGE: 'minio',
        BUCKET_NAME: 'registry',
        AWS_ENDPOINT_URL: minio.url,
        AWS_ACCESS_KEY_ID: MINIO_USER,
        AWS_SECRET_ACCESS_KEY: MINIO_PASSWORD,
        AWS_DEFAULT_REGION: 'us-east-1',
        CACHE_WRITE_THROUGH: 'false',
      };
      const reg = await startRegistry(dir, s3env);
      // A new model (upload + commit copy) and a replace (also the history copy of the old
      // version), each against the same SDK upload.
      const putNew = [];
      const putReplace = [];
      const putSdk = [];
      const cpuNew = [];
      const cpuReplace = [];
      const cpuSdkPut = [];
      const sdkPut = async () => {
        settle();
        const t0 = process.hrtime.bigint();
        // Same part size and concurrency as the registry's own uploads (src/storage/s3.ts).
        await countingCpu(
          cpuSdkPut,
          () =>
            new Upload({
              client: s3,
              params: {
                Bucket: 'direct',
                Key: 'large.tar.gz',
                Body: createReadStream(largeFile, { highWaterMark: 1 * MiB }),
                ContentType: 'application/gzip',
              },
              partSize: 8 * MiB,
              queueSize: 4,
            }).done(),
          undefined,
          'self',
        );
        putSdk.push(largeBytes / MiB / (Number(process.hrtime.bigint() - t0) / 1e9));
      };
      await curlPut(`${reg.base}/models/large`, largeFile); // so that every timed PUT of it is a replace
      for (let i = 0; i < REPS; i++) {
        settle();
        putNew.push(
          largeBytes /
            MiB /
            (await countingCpu(cpuNew, () => curlPut(`${reg.base}/models/large-${i}`, largeFile), reg.pid)).total,
        );
        await sdkPut();
        settle();
        putReplace.push(
          largeBytes /
            MiB /
            (await countingCpu(cpuReplace, () => curlPut(`${reg.base}/models/large`, largeFile), reg.pid)).total,
        );
        await sdkPut();
      }
      await reg.stop();
      const ps = median(putSdk);
      for (const [what, putReg, cpuPut] of [
        ['new model', putNew, cpuNew],
        ['replace, old version to history', putReplace, cpuReplace],
      ]) {
        const pr = median(putReg);
        row(
          `PUT ${fmtSize(LARGE)} via MinIO, ${what} (throughput)`,
          fmt(pr, 0),
          fmt(ps, 0),
          'MiB/s',
          '≥ 0.8× SDK',
          pr / ps >= 0.8,
        );
        rows.at(-1).ratio = pr / ps;
        rows.at(-1).runs = runs(putReg, putSdk);
        cpuBudget(cpuPut, cpuSdkPut, largeBytes / MiB / ps / 0.8);
        perGiB(cpuPut, cpuSdkPut, largeBytes);
      }

      // Cold GETs: a fresh registry (empty cache) for each repetition.
      const getReg = [];
      const ttfb = [];
      const getSdk = [];
      const cpuCold = [];
      const cpuSdkGet = [];
      for (let i = 0; i < REPS; i++) {
        const cold = await startRegistry(dir, s3env);
        const r = await countingCpu(cpuCold, () => curlGet(`${cold.base}/models/large`, largeBytes), cold.pid);
        getReg.push(largeBytes / MiB / r.total);
        ttfb.push(r.ttfb * 1000);
        await cold.stop();
        const t0 = process.hrtime.bigint();
        let n = 0;
        await countingCpu(
          cpuSdkGet,
          async () => {
            const out = await s3.send(new GetObjectCommand({ Bucket: 'direct', Key: 'large.tar.gz' }));
            await pipeline(
              out.Body,
              new Writable({
                write(chunk, _e, cb) {
                  n += chunk.length;
                  cb();
                },
              }),
            );
          },
          undefined,
          'self',
        );
        if (n !== largeBytes) throw new Error(`SDK GET: ${n} bytes`);
        getSdk.push(largeBytes / MiB / (Number(process.hrtime.bigint() - t0) / 1e9));
      }
      const gr = median(getReg);
      const gs = median(getSdk);
      row(
        `GET ${fmtSize(LARGE)} via MinIO, cold (throughput)`,
        fmt(gr, 0),
        fmt(gs, 0),
        'MiB/s',
        '≥ 0.8× SDK',
        gr / gs >= 0.8,
      );
      rows.at(-1).ratio = gr / gs;
      rows.at(-1).runs = runs(getReg, getSdk);
      cpuBudget(cpuCold, cpuSdkGet, largeBytes / MiB / gs / 0.8);
      perGiB(cpuCold, cpuSdkGet, largeBytes);
      row(
        `cold GET ${fmtSize(LARGE)} via MinIO, time to first byte`,
        fmt(median(ttfb), 0),
        undefined,
        'ms',
        'report only',
        undefined,
      );
      rows.at(-1).runs = runs(ttfb);

      // The same cold GET with DOWNLOAD_REDIRECT=true: a 307 to a presigned URL of the version's
      // history copy, which curl -L follows to MinIO (the bytes do not pass through the registry).
      const getRedirect = [];
      const cpuRedirect = [];
      for (let i = 0; i < REPS; i++) {
        const redirecting = await startRegistry(dir, { ...s3env, DOWNLOAD_REDIRECT: 'true' });
        const r = await countingCpu(
          cpuRedirect,
          () => curlGet(`${redirecting.base}/models/large`, largeBytes, ['-L']),
          redirecting.pid,
        );
        getRedirect.push(largeBytes / MiB / r.total);
        await redirecting.stop();
      }
      const gd = median(getRedirect);
      row(
        `GET ${fmtSize(LARGE)} via MinIO, cold, DOWNLOAD_REDIRECT (307 followed; throughput)`,
        fmt(gd, 0),
        fmt(gs, 0),
        'MiB/s',
        '≥ 0.95× SDK',
        gd / gs >= 0.95,
      );
      rows.at(-1).ratio = gd / gs;
      rows.at(-1).runs = runs(getRedirect, getSdk);
      perGiB(cpuRedirect, cpuSdkGet, largeBytes);
      s3.destroy();
    }

    // ---- 50 concurrent cold GETs of one model → storage reads ---------------------------------------
    if (want('cold')) {
      const reads = [];
      const cpuColdGets = [];
      for (let i = 0; i < REPS; i++) {
        const reg = await startRegistry(dir, {
          REMOTE_STORAGE: 'local',
          CACHE_WRITE_THROUGH: 'false',
          LOCAL_STORAGE_DIR: path.join(dir, `models-cold-${i}`),
        });
        await curlPut(`${reg.base}/models/medium`, mediumFile);
        const before = await storageGets(reg.base);
        const statuses = await countingCpu(
          cpuColdGets,
          () => Promise.all(Array.from({ length: 50 }, () => drainGet(`${reg.base}/models/medium`))),
          reg.pid,
        );
        if (statuses.some((s) => s !== 200)) throw new Error(`cold GETs: statuses ${[...new Set(statuses)]}`);
        reads.push((await storageGets(reg.base)) - before);
        await reg.stop();
      }
      const worst = Math.max(...reads);
      row(
        `50 concurrent cold GETs of ${fmtSize(MEDIUM)} → storage reads`,
        reads.join(', '),
        undefined,
        'reads',
        '= 1',
        worst === 1,
      );
      perGiB(cpuColdGets, undefined, 50 * (await stat(mediumFile)).size);
    }

    // ---- Peak RSS while a huge model goes up and (cold) down -----------------------------------------
    if (want('rss')) {
      log(`generating ${fmtSize(HUGE)} archive`);
      const hugeBytes = await makeArchive(hugeFile, HUGE);
      const reg = await startRegistry(dir, { REMOTE_STORAGE: 'local', CACHE_WRITE_THROUGH: 'false' });
      let peak = 0;
      const sample = () => {
        try {
          const st = readFileSync(`/proc/${reg.pid}/status`, 'utf8');
          const hwm = Number(/VmHWM:\s+(\d+)/.exec(st)?.[1] ?? 0) * 1024;
          const rss = Number(/VmRSS:\s+(\d+)/.exec(st)?.[1] ?? 0) * 1024;
          peak = Math.max(peak, hwm, rss);
        } catch {}
      };
      const timer = setInterval(sample, 100);
      const cpuHuge = [];
      await countingCpu(
        cpuHuge,
        async () => {
          await curlPut(`${reg.base}/models/huge`, hugeFile);
          await curlGet(`${reg.base}/models/huge`, hugeBytes);
          await curlGet(`${reg.base}/models/huge`, hugeBytes);
        },
        reg.pid,
      );
      sample();
      clearInterval(timer);
      await reg.stop();
      await rm(hugeFile, { force: true });
      row(
        `peak RSS, ${fmtSize(HUGE)} PUT + cold GET + cached GET`,
        fmt(peak / MiB, 0),
        undefined,
        'MiB',
        '≤ 200 MiB',
        peak <= 200 * MiB,
      );
      perGiB(cpuHuge, undefined, 3 * hugeBytes);
    }

    // ---- A catalog of CATALOG models on MinIO: listing and search against one raw listing walk ---
    if (want('catalog')) {
      const { S3Client, ListObjectsV2Command, CopyObjectCommand } = await import('@aws-sdk/client-s3');
      const s3 = new S3Client({
        endpoint: minio.url,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD },
      });
      const env = {
        REMOTE_STORAGE: 'minio',
        BUCKET_NAME: 'catalog',
        AWS_ENDPOINT_URL: minio.url,
        AWS_ACCESS_KEY_ID: MINIO_USER,
        AWS_SECRET_ACCESS_KEY: MINIO_PASSWORD,
        AWS_DEFAULT_REGION: 'us-east-1',
      };
      const reg = await startRegistry(dir, env);
      // One model published by the registry (its metadata: version, digest, labels), copied with
      // that metadata under CATALOG names, as a store grown over time holds them.
      await fetch(`${reg.base}/models/seed`, {
        method: 'PUT',
        body: readFileSync(smallFile),
        headers: { 'content-type': 'application/gzip', 'x-model-label-team': 'nlp' },
      });
      const names = Array.from({ length: CATALOG }, (_, i) => `model-${String(i).padStart(5, '0')}`);
      let next = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          for (let i = next++; i < names.length; i = next++) {
            await s3.send(
              new CopyObjectCommand({
                Bucket: 'catalog',
                Key: `${names[i]}.tar.gz`,
                CopySource: 'catalog/seed.tar.gz',
                MetadataDirective: 'COPY',
              }),
            );
          }
        }),
      );
      log(`catalog: ${CATALOG} models`);
      const rawWalk = async () => {
        let token;
        let n = 0;
        do {
          const page = await s3.send(new ListObjectsV2Command({ Bucket: 'catalog', ContinuationToken: token }));
          n += page.KeyCount ?? 0;
          token = page.IsTruncated ? page.NextContinuationToken : undefined;
        } while (token);
        return n;
      };
      const walkAll = async (query) => {
        let cursor;
        let n = 0;
        do {
          const res = await fetch(`${reg.base}/models?limit=1000${query}${cursor ? `&cursor=${cursor}` : ''}`);
          if (res.status !== 200) fail(`GET /models${query} answered ${res.status}`);
          const body = await res.json();
          n += body.models.length;
          cursor = body.nextCursor;
        } while (cursor);
        return n;
      };
      const timed = async (fn) => {
        const t0 = process.hrtime.bigint();
        const result = await fn();
        return { ms: Number(process.hrtime.bigint() - t0) / 1e6, result };
      };
      const raw = [];
      const byName = [];
      const firstPage = [];
      const byUpdated = [];
      const byLabel = [];
      // The first listing after a start HEADs every model (S3 listings carry no metadata); the
      // registry remembers what it learnt by key, ETag and LastModified, so later ones do not.
      const cold = await timed(() => walkAll(''));
      for (let i = 0; i < REPS; i++) {
        raw.push((await timed(rawWalk)).ms);
        const walked = await timed(() => walkAll(''));
        if (walked.result < CATALOG) fail(`the registry listed ${walked.result} of ${CATALOG} models`);
        byName.push(walked.ms);
        firstPage.push((await timed(() => fetch(`${reg.base}/models`).then((r) => r.json()))).ms);
        byUpdated.push(
          (await timed(() => fetch(`${reg.base}/models?sort=updatedAt&limit=100`).then((r) => r.json()))).ms,
        );
        byLabel.push((await timed(() => walkAll('&label.team=nobody'))).ms);
      }
      await reg.stop();
      const r0 = median(raw);
      const walk = median(byName);
      row(
        `list ${CATALOG} models by name, every page (limit=1000), first after start`,
        fmt(cold.ms, 0),
        fmt(r0, 0),
        'ms',
        'reported',
        undefined,
        'one HEAD per model: S3 listings carry no metadata',
      );
      rows.at(-1).ratio = cold.ms / r0;
      row(
        `list ${CATALOG} models by name, every page (limit=1000)`,
        fmt(walk, 0),
        fmt(r0, 0),
        'ms',
        '≤ 2× one raw ListObjectsV2 walk',
        walk <= 2 * r0,
      );
      rows.at(-1).ratio = walk / r0;
      row(
        `list: the first page (limit=100) of ${CATALOG} models`,
        fmt(median(firstPage), 0),
        fmt(r0, 0),
        'ms',
        'reported',
        undefined,
      );
      row(
        `search: sort=updatedAt over ${CATALOG} models (first 100)`,
        fmt(median(byUpdated), 0),
        fmt(r0, 0),
        'ms',
        'reported',
        undefined,
        'looks at every model',
      );
      row(
        `search: a label no model has, over ${CATALOG} models`,
        fmt(median(byLabel), 0),
        fmt(r0, 0),
        'ms',
        'reported',
        undefined,
        'looks at every model',
      );
    }

    // ---- 64 clients pulling one model through 1 replica, and through 3, behind nginx, one MinIO ---
    if (want('cluster')) {
      const pulledFile = path.join(files, 'pulled.tar.gz');
      const pulledBytes = await makeArchive(pulledFile, PULLED);
      const env = {
        REMOTE_STORAGE: 'minio',
        BUCKET_NAME: 'cluster',
        AWS_ENDPOINT_URL: minio.url,
        AWS_ACCESS_KEY_ID: MINIO_USER,
        AWS_SECRET_ACCESS_KEY: MINIO_PASSWORD,
        AWS_DEFAULT_REGION: 'us-east-1',
        CACHE_WRITE_THROUGH: 'false',
      };
      const replicas = [];
      for (let i = 0; i < 3; i++) replicas.push(await startRegistry(dir, env));
      await curlPut(`${replicas[0].base}/models/pulled`, pulledFile);
      // Each replica fetches it from MinIO once, then serves it from its own cache: what is
      // measured is serving, spread over the replicas (a cold start adds one storage read each).
      for (const r of replicas) await curlGet(`${r.base}/models/pulled`, pulledBytes);
      const one = await startBalancer(dir, 'lb-1', replicas.slice(0, 1));
      const three = await startBalancer(dir, 'lb-3', replicas);
      const moved = PULL_CLIENTS * pulledBytes;
      const pullOne = [];
      const pullThree = [];
      const cpuOne = [];
      const cpuThree = [];
      for (let i = 0; i < REPS; i++) {
        pullOne.push(
          moved /
            MiB /
            (await countingCpu(
              cpuOne,
              () => pullMany(`${one.base}/models/pulled`, PULL_CLIENTS, pulledBytes),
              replicas[0].pid,
            )),
        );
        pullThree.push(
          moved /
            MiB /
            (await countingCpu(
              cpuThree,
              () => pullMany(`${three.base}/models/pulled`, PULL_CLIENTS, pulledBytes),
              replicas.map((r) => r.pid),
            )),
        );
      }
      await one.stop();
      await three.stop();
      for (const r of replicas) await r.stop();
      await rm(pulledFile, { force: true });
      const p1 = median(pullOne);
      const p3 = median(pullThree);
      // Registry CPU: the replicas' processes together (nginx's and curl's are not in it).
      row(
        `${PULL_CLIENTS} clients pulling ${fmtSize(PULLED)} (cached) through nginx, 1 replica (aggregate)`,
        fmt(p1, 0),
        undefined,
        'MiB/s',
        'reported',
        undefined,
      );
      rows.at(-1).runs = runs(pullOne);
      perGiB(cpuOne, undefined, moved);
      const enoughCores = os.cpus().length >= 4;
      row(
        `${PULL_CLIENTS} clients pulling ${fmtSize(PULLED)} (cached) through nginx, 3 replicas on one MinIO (aggregate)`,
        fmt(p3, 0),
        fmt(p1, 0),
        'MiB/s',
        `≥ 2.5× 1 replica${enoughCores ? '' : ` (reported only on ${os.cpus().length} cores)`}`,
        enoughCores ? p3 / p1 >= 2.5 : undefined,
      );
      rows.at(-1).ratio = p3 / p1;
      rows.at(-1).runs = runs(pullThree, pullOne);
      perGiB(cpuThree, undefined, moved);
    }
  } finally {
    await nginx.stop();
    await minio.stop();
    if (CPU_PROF) log(`CPU profiles in ${path.join(dir, 'profiles')}`);
    if (!flag('--keep') && !CPU_PROF) await rm(dir, { recursive: true, force: true });
  }

  // ---- Report --------------------------------------------------------------------------------------
  const header =
    '| workload | registry | reference | ratio | target | result | registry CPU s/GiB | reference CPU s/GiB | runs (registry / reference) |\n|---|---|---|---|---|---|---|---|---|';
  const lines = rows.map((r) => {
    const ratio = r.ratio !== undefined ? `${fmt(r.ratio, 2)}×` : '—';
    const result = r.pass === undefined ? 'info' : r.pass ? 'pass' : '**FAIL**';
    return `| ${r.workload} | ${r.reg} ${r.unit} | ${r.ref !== undefined ? `${r.ref} ${r.unit}` : '—'} | ${ratio} | ${r.target} | ${result} | ${fmt(r.regGiB, 2)} | ${fmt(r.refGiB, 2)} | ${r.runs ?? '—'} |`;
  });
  const budgeted = rows.filter((r) => r.cpuAllowed !== undefined && !Number.isNaN(r.cpuReg));
  const budget =
    budgeted.length === 0
      ? ''
      : `

CPU seconds per repetition (medians): the whole machine's (client, registry or reference server,
storage server) against what the target allows, all ${os.cpus().length} cores busy for the whole of its wall time; and
the registry's main thread (its JavaScript runs there, on one core at most) against that wall
time. Above 1 in either ratio, the registry's side does more work than the target leaves room for.

| workload | registry side | reference side | target allows | registry ÷ allowed | registry main thread | target wall time | main thread ÷ wall |
|---|---|---|---|---|---|---|---|
${budgeted.map((r) => `| ${r.workload} | ${fmt(r.cpuReg, 2)} s | ${fmt(r.cpuRef, 2)} s | ${fmt(r.cpuAllowed, 2)} s | ${fmt(r.cpuReg / r.cpuAllowed, 2)} | ${fmt(r.mainReg, 2)} s | ${fmt(r.targetWall, 2)} s | ${fmt(r.mainReg / r.targetWall, 2)} |`).join('\n')}`;
  const table = `${header}\n${lines.join('\n')}${budget}`;
  const command = `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const dirty = git(['status', '--porcelain', '--untracked-files=no', '--', '.', ':!BENCHMARKS.md'])
    ? ' (with uncommitted changes)'
    : '';
  const section = `## ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} — ${git(['rev-parse', '--short', 'HEAD'])}${dirty}${QUICK ? ' (quick)' : ''}

- machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), ${(os.totalmem() / GiB).toFixed(1)} GiB memory, ${os.type()} ${os.release()}, Node ${process.version}; ${Number.isNaN(busyBefore) ? 'CPU use before the run unknown' : `${Math.round(busyBefore * 100)}% of the CPU busy before the run`}${Number.isNaN(freeBefore) ? '' : `, ${(freeBefore / GiB).toFixed(1)} GiB memory free`}
- command: \`${command}\`, ${REPS} repetition(s), medians; large ${fmtSize(LARGE)}, huge ${fmtSize(HUGE)}, small ${fmtSize(SMALL)}; ${Math.round((Date.now() - started) / 1000)} s

${table}
`;
  console.log(`\n${section}`);
  if (WRITE) {
    const file = path.join(ROOT, 'BENCHMARKS.md');
    if (!existsSync(file))
      await writeFile(file, '# Benchmarks\n\nRuns of `npm run bench`, newest last (see bench/run.mjs).\n\n');
    await appendFile(file, `\n${section}`);
    log(`appended to ${file}`);
  }
  const failed = rows.filter((r) => r.pass === false).length;
  log(`${failed} target(s) missed`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`bench: ${err.stack ?? err}`);
    process.exit(1);
  },
);
