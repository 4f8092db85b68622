/**
 * A real cluster for tests: registry replicas as separate processes (dist/server.js), all on one
 * MinIO bucket (REMOTE_STORAGE=minio), each with its own cache directory, behind Debian's nginx
 * run as a plain foreground process with a generated config (round robin over the replicas, the
 * proxy settings of deploy/nginx/registry-proxy.conf). Everything listens on 127.0.0.1 on random
 * ports and is torn down with the test.
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Socket } from 'node:net';
import path from 'node:path';
import { ListMultipartUploadsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import type { Test } from 'tap';
import { minioEnv } from './cloud.js';
import { type Emulator, MINIO_PASSWORD, MINIO_USER, startMinio } from './emulators.js';
import { freePort } from './process.js';
import { tempDir } from './server.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
export const PROXY_CONF = path.join(ROOT, 'deploy', 'nginx', 'registry-proxy.conf');

export interface Replica {
  /** Its index in the cluster, 0-based. */
  index: number;
  url: string;
  port: number;
  cacheDir: string;
  child: ChildProcess;
  output: () => string;
}

export interface Cluster {
  minio: Emulator;
  /** The storage settings every replica shares (one bucket). */
  env: Record<string, string>;
  bucket: string;
  replicas: Replica[];
  /** nginx in front of every replica. */
  lb: string;
  s3: S3Client;
  /** SIGKILL, waiting for the exit. */
  kill(index: number): Promise<void>;
  /**
   * Starts replica `index` again: same port (so nginx finds it), same cache directory; `env` is
   * added to the cluster's settings for this start only.
   */
  restart(index: number, env?: Record<string, string>): Promise<Replica>;
  /** Keys under `prefix` in the bucket, straight from MinIO. */
  keys(prefix: string): Promise<string[]>;
  /** The size of each object under `prefix`, by key. */
  sizes(prefix: string): Promise<Map<string, number>>;
  /** Multipart uploads in progress in the bucket (key, upload id). */
  multipartUploads(): Promise<{ key: string; id: string }[]>;
}

export function nginxBinary(): string {
  const found = spawnSync('sh', ['-c', 'command -v nginx || ls /usr/sbin/nginx'], { encoding: 'utf8' })
    .stdout.trim()
    .split('\n')[0];
  if (!found || !existsSync(found))
    throw new Error(
      'nginx is not installed: run scripts/system/install.sh (npm test does this), or apt-get install -y nginx',
    );
  return found;
}

/**
 * Starts nginx in the foreground (no daemon, no master process: one process, killed with the test)
 * with `http` (the directives inside `http { }`, given its directory and port) after the
 * temporary paths every test config needs; resolves once it answers /healthz.
 */
export async function runNginx(
  t: Test,
  http: (dir: string, port: number) => string,
  subdirs: string[] = [],
): Promise<{ url: string; child: ChildProcess; output: () => string }> {
  const bin = nginxBinary();
  const dir = await tempDir(t, 'mr-nginx-');
  const port = await freePort();
  for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi', ...subdirs]) await mkdir(path.join(dir, sub));
  const conf = path.join(dir, 'nginx.conf');
  await writeFile(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${http(dir, port)}
}
`,
  );
  const check = spawnSync(bin, ['-t', '-q', '-c', conf, '-p', dir, '-e', `${dir}/error.log`], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`nginx -t refused the generated config: ${check.stderr}`);
  const child = spawn(bin, ['-c', conf, '-p', dir, '-e', `${dir}/error.log`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out = (out + d).slice(-4000)));
  child.stderr!.on('data', (d) => (out = (out + d).slice(-4000)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${out}`);
    if (
      await fetch(`${url}/healthz`).then(
        () => true,
        () => false,
      )
    )
      return { url, child, output: () => out };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nginx did not start: ${out}`);
}

/**
 * nginx balancing round robin over `upstreams` (host:port). Each response says which replica
 * answered in `X-Upstream`.
 */
export async function startNginx(
  t: Test,
  upstreams: string[],
): Promise<{ url: string; child: ChildProcess; output: () => string }> {
  return runNginx(
    t,
    (_dir, port) => `  upstream registry {
${upstreams.map((u) => `    server ${u};`).join('\n')}
    keepalive 32;
  }
  server {
    listen 127.0.0.1:${port};
    add_header X-Upstream $upstream_addr always;
    location / {
      include ${PROXY_CONF};
    }
  }`,
  );
}

/** One registry process on `port` with the cluster's storage and its own cache directory. */
async function spawnReplica(
  t: Test,
  index: number,
  port: number,
  cacheDir: string,
  env: Record<string, string>,
): Promise<Replica> {
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'server.js')], {
    env: {
      PATH: process.env.PATH,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      CACHE_DIR: cacheDir,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out = (out + d).slice(-20_000)));
  child.stderr!.on('data', (d) => (out = (out + d).slice(-20_000)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`replica ${index} exited with ${child.exitCode}: ${out}`);
    if (
      await fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return { index, url, port, cacheDir, child, output: () => out };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`replica ${index} did not start within 30 s: ${out}`);
}

/** MinIO, `size` replicas on one bucket, nginx in front. `env` is added to every replica's settings. */
export async function startCluster(t: Test, size: number, env: Record<string, string> = {}): Promise<Cluster> {
  const minio = await startMinio();
  t.teardown(() => minio.dispose());
  // The default STORAGE_TIMEOUT (30 s), not the emulator tests' 5 s: on a loaded machine a MinIO
  // request of a busy cluster can stay silent for seconds, which is slowness, not an outage.
  const storage: Record<string, string> = { ...minioEnv(minio), STORAGE_TIMEOUT: '30s', ...env };
  const bucket = storage.BUCKET_NAME!;
  // The first replica creates the bucket; the others start once it exists.
  const replicas: Replica[] = [];
  const first = await spawnReplica(t, 0, await freePort(), await tempDir(t, 'mr-cache-0-'), storage);
  replicas.push(first);
  replicas.push(
    ...(await Promise.all(
      Array.from({ length: size - 1 }, async (_, i) =>
        spawnReplica(t, i + 1, await freePort(), await tempDir(t, `mr-cache-${i + 1}-`), storage),
      ),
    )),
  );
  const nginx = await startNginx(
    t,
    replicas.map((r) => `127.0.0.1:${r.port}`),
  );
  const s3 = new S3Client({
    endpoint: minio.url,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD },
  });
  t.teardown(() => s3.destroy());
  const cluster: Cluster = {
    minio,
    env: storage,
    bucket,
    replicas,
    lb: nginx.url,
    s3,
    async kill(index) {
      const { child } = replicas[index]!;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
    async restart(index, env = {}) {
      await cluster.kill(index);
      const old = replicas[index]!;
      const fresh = await spawnReplica(t, index, old.port, old.cacheDir, { ...storage, ...env });
      replicas[index] = fresh;
      return fresh;
    },
    async keys(prefix) {
      return [...(await cluster.sizes(prefix)).keys()];
    },
    async sizes(prefix) {
      const out = new Map<string, number>();
      let token: string | undefined;
      do {
        const page = await s3.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
        );
        for (const o of page.Contents ?? []) if (o.Key) out.set(o.Key, o.Size ?? 0);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return out;
    },
    async multipartUploads() {
      const page = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      return (page.Uploads ?? []).map((u) => ({ key: u.Key ?? '', id: u.UploadId ?? '' }));
    },
  };
  return cluster;
}

export interface HoldingProxy {
  url: string;
  /**
   * The next request whose head matches `pattern` is held: it never reaches the server, and its
   * connection stays open. Resolves once one is held.
   */
  hold(pattern: RegExp): Promise<void>;
  close(): Promise<void>;
}

/**
 * A TCP proxy to `target` (http://host:port) that can hold back one chosen request, so a test can
 * stop a replica at an exact step of its storage protocol (then kill it there).
 */
export async function startHoldingProxy(t: Test, target: string): Promise<HoldingProxy> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  let pending: { pattern: RegExp; resolve: () => void } | undefined;
  const server = createServer((client) => {
    const upstream = createConnection({ host: hostname, port: Number(port) });
    sockets.add(client).add(upstream);
    let held = false;
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    upstream.pipe(client);
    client.on('data', (chunk: Buffer) => {
      if (held) return;
      if (pending?.pattern.test(chunk.toString('latin1'))) {
        held = true;
        pending.resolve();
        pending = undefined;
        return;
      }
      if (!upstream.write(chunk)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  };
  t.teardown(close);
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    hold: (pattern) => new Promise<void>((resolve) => (pending = { pattern, resolve })),
    close,
  };
}
