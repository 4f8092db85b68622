/**
 * Shared by the fidelity tests (test/fidelity/): what a registry says about a model, what the
 * storage underneath looks like, and how many storage reads really happened — counted by the
 * registry's own /metrics and, on MinIO, by MinIO itself (its admin trace API, the stream behind
 * `mc admin trace`), not by a mock.
 */
import { createHash, createHmac } from 'node:crypto';
import { lstat, readdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { type Emulator, MINIO_PASSWORD, MINIO_USER } from './emulators.js';
import { awsCli } from './tools.js';

export interface VersionView {
  name: string;
  version: number;
  sha256: string;
  size: number;
  createdAt: string;
  labels: Record<string, string>;
  storageKey: string;
  etag: string;
}

export const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** GET `url` as JSON; throws with the body when the status is not `expect`. */
export async function getJson<T>(url: string, expect = 200): Promise<T> {
  const res = await fetch(url);
  const text = await res.text();
  if (res.status !== expect) throw new Error(`GET ${url} answered ${res.status}, expected ${expect}: ${text}`);
  return JSON.parse(text) as T;
}

export async function meta(base: string, name: string): Promise<VersionView> {
  return getJson<VersionView>(`${base}/models/${name}/meta`);
}

/** /versions, newest first. */
export async function versions(base: string, name: string): Promise<VersionView[]> {
  return (await getJson<{ versions: VersionView[] }>(`${base}/models/${name}/versions`)).versions;
}

/** What must be identical between two stores: everything of a version but where it lies. */
export function portable(v: VersionView): Omit<VersionView, 'storageKey' | 'name'> {
  const { version, sha256, size, createdAt, labels, etag } = v;
  return { version, sha256, size, createdAt, labels, etag };
}

/** The bytes of a download (`version` or the current one); throws unless 200. */
export async function download(
  base: string,
  name: string,
  version?: number,
): Promise<{ body: Buffer; headers: Headers }> {
  const res = await fetch(`${base}/models/${name}${version === undefined ? '' : `?version=${version}`}`);
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200)
    throw new Error(`GET /models/${name}?version=${version} answered ${res.status}: ${body.toString()}`);
  return { body, headers: res.headers };
}

/** Sum of model_registry_storage_requests_total for `operation`, every outcome. */
export async function storageCalls(base: string, operation: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let sum = 0;
  let seen = false;
  for (const m of text.matchAll(
    new RegExp(`^model_registry_storage_requests_total\\{operation="${operation}",outcome="[a-z_]+"\\} (\\d+)`, 'gm'),
  )) {
    sum += Number(m[1]);
    seen = true;
  }
  if (!seen) throw new Error(`/metrics has no model_registry_storage_requests_total for ${operation}`);
  return sum;
}

export interface FileState {
  ino: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  size: bigint;
  nlink: bigint;
  sha256: string;
}

/** Relative path → state of every regular file under `dir` (symlinks and directories left out). */
export async function fileTree(dir: string): Promise<Map<string, FileState>> {
  const out = new Map<string, FileState>();
  const walk = async (rel: string) => {
    for (const entry of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(child);
      else if (entry.isFile()) {
        const full = path.join(dir, child);
        const s = await lstat(full, { bigint: true });
        out.set(child, {
          ino: s.ino,
          mtimeNs: s.mtimeNs,
          ctimeNs: s.ctimeNs,
          size: s.size,
          nlink: s.nlink,
          sha256: sha256(await readFile(full)),
        });
      }
    }
  };
  await walk('');
  return out;
}

/** The AWS CLI with MinIO's root credentials against `minio`. */
export function rootAws(minio: Emulator) {
  const env = { AWS_ACCESS_KEY_ID: MINIO_USER, AWS_SECRET_ACCESS_KEY: MINIO_PASSWORD, AWS_DEFAULT_REGION: 'us-east-1' };
  return async (...args: string[]): Promise<string> =>
    (await awsCli(['--endpoint-url', minio.url, ...args], env)).stdout;
}

export interface HeadObject {
  ETag: string;
  LastModified: string;
  ContentLength: number;
  Metadata: Record<string, string>;
  VersionId?: string;
}

export async function headObject(aws: ReturnType<typeof rootAws>, bucket: string, key: string): Promise<HeadObject> {
  return JSON.parse(
    await aws('s3api', 'head-object', '--bucket', bucket, '--key', key, '--output', 'json'),
  ) as HeadObject;
}

/** Key → ETag of every object in the bucket (also under .history/ and .uploads/). */
export async function bucketListing(aws: ReturnType<typeof rootAws>, bucket: string): Promise<Map<string, string>> {
  const out = JSON.parse((await aws('s3api', 'list-objects-v2', '--bucket', bucket, '--output', 'json')) || '{}') as {
    Contents?: { Key: string; ETag: string }[];
  };
  return new Map((out.Contents ?? []).map((o) => [o.Key, o.ETag]));
}

export interface TraceCall {
  /** e.g. s3.GetObject, s3.HeadObject, s3.PutObject */
  funcname: string;
  /** /bucket/key */
  path: string;
  http?: { response?: { statuscode?: number } };
}

/**
 * Every S3 call MinIO serves while the trace is open, as MinIO itself logs it: the admin trace
 * stream (GET /minio/admin/v3/trace, JSON objects one after another, signed with SigV4 and the
 * root credentials — what `mc admin trace` reads).
 */
export async function traceMinio(minio: Emulator): Promise<{ calls: TraceCall[]; stop: () => Promise<TraceCall[]> }> {
  const url = new URL(`${minio.url}/minio/admin/v3/trace`);
  const query = { err: 'false', internal: 'false', os: 'false', s3: 'true', storage: 'false', threshold: '0s' };
  const headers = signV4('GET', url, query);
  const calls: TraceCall[] = [];
  const search = Object.entries(query)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join('&');
  let buffered = '';
  const req = http.get({ host: url.hostname, port: url.port, path: `${url.pathname}?${search}`, headers });
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  if (res.statusCode !== 200) {
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    throw new Error(`MinIO trace answered ${res.statusCode}: ${Buffer.concat(chunks).toString()}`);
  }
  res.setEncoding('utf8').on('data', (d: string) => {
    buffered += d;
    // Objects are written whole, one per line (Go's json.Encoder), but a chunk may end mid-line.
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line) calls.push(JSON.parse(line) as TraceCall);
    }
  });
  res.on('error', () => {});
  // MinIO starts sending only once it registered the subscriber; give it a moment.
  await new Promise((r) => setTimeout(r, 300));
  return {
    calls,
    stop: async () => {
      // Trace entries are published when a call finishes; let the last ones arrive.
      await new Promise((r) => setTimeout(r, 500));
      req.destroy();
      return calls;
    },
  };
}

/** SigV4 headers for an empty-body request to MinIO with the root credentials. */
function signV4(method: string, url: URL, query: Record<string, string>): Record<string, string> {
  const region = 'us-east-1';
  const amzDate = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const payload = sha256('');
  const host = url.host;
  const canonicalQuery = Object.keys(query)
    .sort()
    .map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(query[k]!)}`)
    .join('&');
  const signed = 'host;x-amz-content-sha256;x-amz-date';
  const canonical = [
    method,
    url.pathname,
    canonicalQuery,
    `host:${host}\nx-amz-content-sha256:${payload}\nx-amz-date:${amzDate}\n`,
    signed,
    payload,
  ].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();
  const key = hmac(hmac(hmac(hmac(`AWS4${MINIO_PASSWORD}`, day), region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  return {
    host,
    'x-amz-date': amzDate,
    'x-amz-content-sha256': payload,
    authorization: `AWS4-HMAC-SHA256 Credential=${MINIO_USER}/${scope}, SignedHeaders=${signed}, Signature=${signature}`,
  };
}

/** The calls of `trace` to exactly `bucket/key` named `funcname` (e.g. 's3.GetObject'). */
export function callsTo(calls: TraceCall[], funcname: string, bucket: string, key: string): TraceCall[] {
  return calls.filter((c) => c.funcname === funcname && c.path === `/${bucket}/${key}`);
}
