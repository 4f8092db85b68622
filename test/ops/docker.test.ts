/**
 * docker-compose.yml and the Dockerfile, checked by reading them (no Docker engine here): every
 * variable the registry services set is a setting the server knows, and each one's whole
 * environment passes the server's own validation.
 */
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { parse } from 'yaml';
import { KNOWN_VARIABLES, loadConfig } from '../../src/config.js';

interface Service {
  build?: { context?: string; dockerfile_inline?: string };
  image?: string;
  profiles?: string[];
  depends_on?: string[];
  environment?: Record<string, string>;
  env_file?: { path: string; required?: boolean }[];
  stop_grace_period?: string;
}

/** Compose interpolation of `${VAR:-default}` / `${VAR}` with an empty shell environment. */
const interpolate = (value: unknown, env: Record<string, string>) =>
  String(value).replace(/\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}/g, (_, name: string, fallback?: string) => env[name] ?? fallback ?? '');

t.test('docker-compose.yml: registries set only known variables, each backend wired and valid', async (t) => {
  const doc = parse(await readFile('docker-compose.yml', 'utf8'), { merge: true }) as { services: Record<string, Service> };
  const registries = Object.entries(doc.services).filter(([, s]) => s.image === 'model-registry:local');
  t.ok(registries.length >= 5, 'a registry per backend');
  const backends = new Map<string, string>();
  for (const [name, service] of registries) {
    const variables = Object.keys(service.environment ?? {});
    t.same(variables.filter((v) => !KNOWN_VARIABLES.includes(v)), [], `${name}: every variable is a known setting`);
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(service.environment ?? {})) env[k] = interpolate(v, { AUTH_TOKENS: 'write:compose-test-token' });
    // What the container sees on top of the environment block: the image's ENV.
    const config = loadConfig({ HOST: '0.0.0.0', PORT: '8080', ...env });
    backends.set(service.profiles?.[0] ?? 'default', config.REMOTE_STORAGE);
    for (const dependency of service.depends_on ?? []) {
      t.same(doc.services[dependency]?.profiles, service.profiles, `${name}: ${dependency} is started with it`);
    }
    t.throws(() => loadConfig({ HOST: '0.0.0.0', ...Object.fromEntries(Object.entries(env).filter(([k]) => k !== 'AUTH_TOKENS')) }), /AUTH_TOKENS/,
      `${name}: without AUTH_TOKENS it refuses to start on 0.0.0.0`);
  }
  t.same(Object.fromEntries(backends), { default: 'local', minio: 'aws', azurite: 'azure', gcs: 'gcs', mongodb: 'mongodb' });
  for (const [name, service] of registries) {
    // The settings of .env reach the container, and the service's own HOST wins over .env's.
    t.same(service.env_file, [{ path: '.env', required: false }], `${name}: reads .env`);
    t.equal(service.environment?.HOST, '0.0.0.0', `${name}: listens on every interface whatever .env says`);
    // docker stop waits for the whole shutdown: grace (30 s by default), 5 s of clean-up, 10 s to close.
    t.ok(Number(/^(\d+)s$/.exec(service.stop_grace_period ?? '')?.[1]) >= 30 + 5 + 10, `${name}: stop_grace_period ${service.stop_grace_period}`);
  }

  const minio = doc.services.minio!.environment!;
  const registryMinio = doc.services['registry-minio']!.environment!;
  t.equal(registryMinio.AWS_ACCESS_KEY_ID, minio.MINIO_ROOT_USER, 'MinIO credentials match');
  t.equal(registryMinio.AWS_SECRET_ACCESS_KEY, minio.MINIO_ROOT_PASSWORD);
  t.match(doc.services.mongodb!.image, /^mongo:7/);
  t.match(doc.services['fake-gcs']!.image, /^fsouza\/fake-gcs-server/);
});

t.test('Dockerfile: multi-stage, production deps, non-root, port, health check, no credentials', async (t) => {
  const text = await readFile('Dockerfile', 'utf8');
  const instructions = text.split('\n').filter((l) => /^[A-Z]+\s/.test(l));
  t.ok(instructions.filter((l) => l.startsWith('FROM ')).length >= 2, 'multi-stage');
  t.match(text, /FROM node:\$\{NODE_VERSION\}-slim\n/);
  t.match(text, /ARG NODE_VERSION=24\n/, 'Node.js 24 LTS');
  t.match(text, /npm ci --omit=dev/, 'production dependencies only in the runtime image');
  const user = instructions.filter((l) => l.startsWith('USER ')).at(-1);
  t.ok(user && !/USER\s+(root|0)\b/.test(user), 'runs as a non-root user');
  t.match(text, /^EXPOSE 8080$/m);
  t.match(text, /HOST=0\.0\.0\.0/);
  t.match(text, /^HEALTHCHECK .*\n?.*\/healthz/m);
  t.notMatch(text, /^(ENV|ARG)\b.*(AUTH_TOKENS|ALLOW_ANONYMOUS)/m, 'neither AUTH_TOKENS nor ALLOW_ANONYMOUS is baked in');
  t.match(text, /VOLUME \["\/app\/data"\]/);

  const ignored = (await readFile('.dockerignore', 'utf8')).split('\n').map((l) => l.trim());
  for (const entry of ['node_modules', 'dist', 'data', '.env', '.git']) t.ok(ignored.includes(entry), `.dockerignore excludes ${entry}`);
});

t.test('docker-compose.yml: the emulators are the versions the tests pin, never :latest', async (t) => {
  const doc = parse(await readFile('docker-compose.yml', 'utf8'), { merge: true }) as { services: Record<string, Service> };
  const install = await readFile('scripts/emulators/install.sh', 'utf8');
  const pinned = (name: string) => new RegExp(`^${name}="([^"]+)"$`, 'm').exec(install)![1]!;
  const lock = JSON.parse(await readFile('package-lock.json', 'utf8')) as { packages: Record<string, { version: string }> };
  const minio = doc.services.minio!;
  t.match(minio.build?.dockerfile_inline, new RegExp(`go install github\\.com/minio/minio@${pinned('MINIO_VERSION')}\\n`), 'MinIO built from the pinned source');
  t.equal(minio.image, `model-registry-minio:${pinned('MINIO_VERSION')}`);
  t.equal(doc.services['fake-gcs']!.image, `fsouza/fake-gcs-server:${pinned('FAKE_GCS_VERSION').replace(/^v/, '')}`);
  t.equal(doc.services.azurite!.image, `mcr.microsoft.com/azure-storage/azurite:${lock.packages['node_modules/azurite']!.version}`);
  for (const [name, service] of Object.entries(doc.services)) {
    t.match(service.image, /:[\w.-]+$/, `${name}: a tag`);
    t.notMatch(service.image, /:latest$/, `${name}: not :latest`);
  }
});

t.test('the README states the Compose version the file needs', async (t) => {
  const readme = await readFile('README.md', 'utf8');
  t.match(readme, /Docker Compose 2\.24 or newer/);
  t.match(await readFile('docker-compose.yml', 'utf8'), /Compose\s+(#\s+)?2\.24 or newer/, 'and the file says so too');
});
