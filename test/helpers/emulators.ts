/**
 * Starts the real storage servers the tests run against — MinIO (S3), fake-gcs-server (GCS),
 * Azurite (Azure Blob) and FerretDB (MongoDB wire protocol, SQLite backend) — on 127.0.0.1
 * with random ports and temporary data directories. Binaries come from
 * scripts/emulators/install.sh (run by `npm test`); a missing one fails the test, never skips it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './process.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = process.env.EMULATORS_BIN ?? path.join(ROOT, '.emulators', 'bin');

export const MINIO_USER = 'registry-test';
export const MINIO_PASSWORD = 'registry-test-secret';
/** Azurite's well-known development account. */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface Emulator {
  /** Base URL (http://127.0.0.1:port) or, for FerretDB, a mongodb:// URI. */
  url: string;
  port: number;
  /** Stops the server (SIGKILL when `hard`); data stays for restart(). */
  stop(hard?: boolean): Promise<void>;
  /** Starts it again on the same port with the same data. */
  restart(): Promise<void>;
  /** Stops it and removes its data. */
  dispose(): Promise<void>;
  /** Sends the running server a signal: SIGSTOP freezes it (connections accepted, never answered), SIGCONT thaws. */
  signal(signal: NodeJS.Signals): void;
}

interface Spec {
  name: string;
  command: (port: number, dir: string) => { cmd: string; args: string[]; env?: Record<string, string> };
  url: (port: number) => string;
  ready: (port: number) => Promise<boolean>;
}

function binary(name: string): string {
  const file = path.join(BIN, name);
  if (!existsSync(file)) {
    throw new Error(`${name} is not installed at ${file}: run scripts/emulators/install.sh (npm test does this)`);
  }
  return file;
}

const httpReady = (pathname: string) => async (port: number) =>
  fetch(`http://127.0.0.1:${port}${pathname}`, { signal: AbortSignal.timeout(1000) }).then(
    (r) => r.status < 500,
    () => false,
  );

const tcpReady = async (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });

async function launch(spec: Spec): Promise<Emulator> {
  const dir = await mkdtemp(path.join(tmpdir(), `mr-${spec.name}-`));
  await mkdir(path.join(dir, 'data'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  let log = '';

  const start = async () => {
    const { cmd, args, env } = spec.command(port, dir);
    log = '';
    child = spawn(cmd, args, { cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => (log = (log + d).slice(-4000)));
    child.stderr!.on('data', (d) => (log = (log + d).slice(-4000)));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`${spec.name} exited with ${child.exitCode}: ${log}`);
      if (await spec.ready(port)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGKILL');
    throw new Error(`${spec.name} did not become ready within 60 s: ${log}`);
  };
  const stop = async (hard = false) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((resolve) => c.once('exit', resolve));
    c.kill(hard ? 'SIGKILL' : 'SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  await start();
  process.once('exit', () => child?.kill('SIGKILL'));
  return {
    url: spec.url(port),
    port,
    stop,
    restart: start,
    signal: (signal) => {
      if (!child || child.exitCode !== null || child.signalCode !== null)
        throw new Error(`${spec.name} is not running`);
      child.kill(signal);
    },
    dispose: async () => {
      child?.kill('SIGCONT'); // a frozen server does not act on SIGTERM
      await stop(true);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function startMinio(): Promise<Emulator> {
  return launch({
    name: 'minio',
    command: (port, dir) => ({
      cmd: binary('minio'),
      args: [
        'server',
        path.join(dir, 'data'),
        '--address',
        `127.0.0.1:${port}`,
        '--console-address',
        '127.0.0.1:0',
        '--quiet',
      ],
      env: {
        MINIO_ROOT_USER: MINIO_USER,
        MINIO_ROOT_PASSWORD: MINIO_PASSWORD,
        MINIO_BROWSER: 'off',
        MINIO_UPDATE: 'off',
        CI: 'true',
      },
    }),
    url: (port) => `http://127.0.0.1:${port}`,
    ready: httpReady('/minio/health/live'),
  });
}

export function startFakeGcs(): Promise<Emulator> {
  return launch({
    name: 'fake-gcs-server',
    command: (port, dir) => ({
      cmd: binary('fake-gcs-server'),
      args: [
        '-scheme',
        'http',
        '-host',
        '127.0.0.1',
        '-port',
        String(port),
        '-backend',
        'filesystem',
        '-filesystem-root',
        path.join(dir, 'data'),
        '-external-url',
        `http://127.0.0.1:${port}`,
        '-public-host',
        `127.0.0.1:${port}`,
        '-log-level',
        'error',
      ],
    }),
    url: (port) => `http://127.0.0.1:${port}`,
    ready: httpReady('/storage/v1/b'),
  });
}

export function startAzurite(): Promise<Emulator> {
  return launch({
    name: 'azurite',
    command: (port, dir) => ({
      cmd: process.execPath,
      args: [
        path.join(ROOT, 'node_modules', 'azurite', 'dist', 'src', 'blob', 'main.js'),
        '--blobHost',
        '127.0.0.1',
        '--blobPort',
        String(port),
        '--location',
        dir,
        '--silent',
        '--disableTelemetry',
        '--skipApiVersionCheck',
        '--loose',
      ],
    }),
    url: (port) => `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`,
    ready: tcpReady,
  });
}

export function startFerretDb(): Promise<Emulator> {
  return launch({
    name: 'ferretdb',
    command: (port, dir) => ({
      cmd: binary('ferretdb'),
      args: [
        '--handler=sqlite',
        `--sqlite-url=file:${path.join(dir, 'data')}/`,
        `--listen-addr=127.0.0.1:${port}`,
        `--state-dir=${dir}`,
        '--debug-addr=-',
        '--telemetry=disable',
        '--log-level=error',
      ],
    }),
    url: (port) => `mongodb://127.0.0.1:${port}/`,
    ready: tcpReady,
  });
}
