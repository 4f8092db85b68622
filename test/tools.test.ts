/**
 * The external tools the tests run (scripts/install.sh) are there and work: the venv's AWS CLI,
 * boto3, aiohttp and requests at the pinned versions, Debian's pigz, git and GNU tar; and, end to
 * end, `aws s3 sync` and boto3 against a real MinIO.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import { MINIO_PASSWORD, MINIO_USER, startMinio } from './helpers/emulators.js';
import { awsCli, python, run, ToolError } from './helpers/tools.js';

const ROOT = path.resolve(import.meta.dirname, '..');
/** name → version, from scripts/python/requirements.txt. */
const pins = new Map(
  readFileSync(path.join(ROOT, 'scripts', 'python', 'requirements.txt'), 'utf8')
    .split('\n')
    .map((line) => /^([A-Za-z0-9_.-]+)==(\S+)/.exec(line.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [m[1]!.toLowerCase(), m[2]!] as const),
);

async function tempDir(t: Test, prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Relative path → contents of every file under `dir`. */
async function files(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (rel: string) => {
    for (const entry of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const child = path.posix.join(rel, entry.name);
      if (entry.isDirectory()) await walk(child);
      else out.set(child, await readFile(path.join(dir, child)));
    }
  };
  await walk('');
  return out;
}

t.test('the venv: aws, boto3, aiohttp and requests at the pinned versions', async (t) => {
  const { stdout, stderr } = await awsCli(['--version'], {});
  t.match(stdout + stderr, new RegExp(`^aws-cli/${pins.get('awscli')!.replaceAll('.', '\\.')} `));

  const code = [
    'import json, importlib.metadata as m',
    'import boto3, botocore, aiohttp, requests',
    'print(json.dumps({n: m.version(n) for n in ("awscli", "boto3", "botocore", "s3transfer", "aiohttp", "requests")}))',
  ].join('\n');
  const versions = JSON.parse((await python(['-c', code])).stdout) as Record<string, string>;
  for (const [name, version] of Object.entries(versions))
    t.equal(version, pins.get(name), `${name} is the pinned version`);

  await t.rejects(python(['-c', 'import sys; sys.stderr.write("boom"); sys.exit(3)']), {
    name: 'ToolError',
    code: 3,
    message: /exited with 3: boom/,
  });
});

t.test('Debian tools: pigz, git, GNU tar', async (t) => {
  const pigz = await run('pigz', ['--version']);
  t.match(pigz.stdout + pigz.stderr, /^pigz \d/);
  const body = randomBytes(300_000);
  // pigz's output as bytes: run() decodes as text, so hand over base64 through a shell pipe.
  const gz = await run('sh', ['-c', 'pigz -c | base64 -w0'], { input: body });
  t.same(gunzipSync(Buffer.from(gz.stdout, 'base64')), body, 'pigz output gunzips back to its input');

  t.match((await run('git', ['--version'])).stdout, /^git version /);
  t.match((await run('tar', ['--version'])).stdout, /GNU tar/);
  await t.rejects(run('no-such-tool-here', []), ToolError);
});

t.test('aws s3 sync and boto3 against MinIO', async (t) => {
  const minio = await startMinio();
  t.teardown(() => minio.dispose());
  const env = { AWS_ACCESS_KEY_ID: MINIO_USER, AWS_SECRET_ACCESS_KEY: MINIO_PASSWORD, AWS_DEFAULT_REGION: 'us-east-1' };
  const aws = (...args: string[]) => awsCli(['--endpoint-url', minio.url, ...args], env);
  const bucket = `tools-${randomUUID().slice(0, 18)}`;

  const src = await tempDir(t, 'mr-sync-src-');
  const dst = await tempDir(t, 'mr-sync-dst-');
  await mkdir(path.join(src, 'nested', 'deeper'), { recursive: true });
  await writeFile(path.join(src, 'top.txt'), 'top level\n');
  await writeFile(path.join(src, 'nested', 'deeper', 'model.bin'), randomBytes(9 * 1024 * 1024 + 7)); // over the CLI's 8 MiB multipart threshold
  // An empty file beside a multipart one: botocore's empty-body 100-continue breaks this against
  // MinIO unless the helper opts out (see AWS_ISOLATION in helpers/tools.ts).
  await writeFile(path.join(src, 'nested', 'empty'), '');

  await aws('s3', 'mb', `s3://${bucket}`);
  await aws('s3', 'sync', src, `s3://${bucket}/prefix`, '--no-progress');
  const listed = (await aws('s3api', 'list-objects-v2', '--bucket', bucket, '--output', 'json')).stdout;
  const keys = (JSON.parse(listed) as { Contents: { Key: string }[] }).Contents.map((o) => o.Key).sort();
  t.same(keys, ['prefix/nested/deeper/model.bin', 'prefix/nested/empty', 'prefix/top.txt']);

  await aws('s3', 'sync', `s3://${bucket}/prefix`, dst, '--no-progress');
  const [up, down] = await Promise.all([files(src), files(dst)]);
  t.same([...down.keys()].sort(), [...up.keys()].sort(), 'the same files came back');
  for (const [name, body] of up) t.ok(body.equals(down.get(name)!), `${name} came back byte for byte`);

  // A second sync has nothing to copy.
  t.equal((await aws('s3', 'sync', src, `s3://${bucket}/prefix`, '--no-progress')).stdout.trim(), '');

  const code = [
    'import json, sys, boto3',
    's3 = boto3.client("s3", endpoint_url=sys.argv[1])',
    'objs = s3.list_objects_v2(Bucket=sys.argv[2])["Contents"]',
    'print(json.dumps({o["Key"]: o["Size"] for o in objs}))',
  ].join('\n');
  const sizes = JSON.parse((await python(['-c', code, minio.url, bucket], { env })).stdout) as Record<string, number>;
  t.same(
    sizes,
    Object.fromEntries([...up].map(([name, body]) => [`prefix/${name}`, body.length])),
    'boto3 sees the same objects',
  );
});
