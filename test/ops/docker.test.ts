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
  depends_on?: string[] | Record<string, { condition?: string }>;
  ports?: string[];
  volumes?: string[];
  environment?: Record<string, string>;
  env_file?: { path: string; required?: boolean }[];
  stop_grace_period?: string;
}

/** Compose interpolation of `${VAR:-default}` / `${VAR}` with an empty shell environment. */
const interpolate = (value: unknown, env: Record<string, string>) =>
  String(value).replace(
    /\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}/g,
    (_, name: string, fallback?: string) => env[name] ?? fallback ?? '',
  );

t.test('docker-compose.yml: registries set only known variables, each backend wired and valid', async (t) => {
  const doc = parse(await readFile('docker-compose.yml', 'utf8'), { merge: true }) as {
    services: Record<string, Service>;
  };
  const registries = Object.entries(doc.services).filter(([, s]) => s.image === 'model-registry:local');
  t.ok(registries.length >= 5, 'a registry per backend');
  const backends = new Map<string, string>();
  for (const [name, service] of registries) {
    const variables = Object.keys(service.environment ?? {});
    t.same(
      variables.filter((v) => !KNOWN_VARIABLES.includes(v)),
      [],
      `${name}: every variable is a known setting`,
    );
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(service.environment ?? {}))
      env[k] = interpolate(v, { AUTH_TOKENS: 'write:compose-test-token' });
    // What the container sees on top of the environment block: the image's ENV.
    const config = loadConfig({ HOST: '0.0.0.0', PORT: '8080', ...env });
    backends.set(service.profiles?.[0] ?? 'default', config.REMOTE_STORAGE);
    for (const dependency of dependencies(service)) {
      const missing = (service.profiles ?? []).filter((p) => !doc.services[dependency]?.profiles?.includes(p));
      t.same(missing, [], `${name}: ${dependency} is started with it`);
    }
    t.throws(
      () =>
        loadConfig({
          HOST: '0.0.0.0',
          ...Object.fromEntries(Object.entries(env).filter(([k]) => k !== 'AUTH_TOKENS')),
        }),
      /AUTH_TOKENS/,
      `${name}: without AUTH_TOKENS it refuses to start on 0.0.0.0`,
    );
  }
  t.same(Object.fromEntries(backends), {
    default: 'local',
    minio: 'aws',
    azurite: 'azure',
    gcs: 'gcs',
    mongodb: 'mongodb',
    cluster: 'aws',
  });
  for (const [name, service] of registries) {
    // The settings of .env reach the container, and the service's own HOST wins over .env's.
    t.same(service.env_file, [{ path: '.env', required: false }], `${name}: reads .env`);
    t.equal(service.environment?.HOST, '0.0.0.0', `${name}: listens on every interface whatever .env says`);
    // docker stop waits for the whole shutdown: grace (30 s by default), 5 s of clean-up, 10 s to close.
    t.ok(
      Number(/^(\d+)s$/.exec(service.stop_grace_period ?? '')?.[1]) >= 30 + 5 + 10,
      `${name}: stop_grace_period ${service.stop_grace_period}`,
    );
  }

  const minio = doc.services.minio!.environment!;
  const registryMinio = doc.services['registry-minio']!.environment!;
  t.equal(registryMinio.AWS_ACCESS_KEY_ID, minio.MINIO_ROOT_USER, 'MinIO credentials match');
  t.equal(registryMinio.AWS_SECRET_ACCESS_KEY, minio.MINIO_ROOT_PASSWORD);
  t.match(doc.services.mongodb!.image, /^mongo:7/);
  t.match(doc.services['fake-gcs']!.image, /^fsouza\/fake-gcs-server/);
});

const dependencies = (s: Service) => (Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {}));

t.test(
  'docker-compose.yml, profile cluster: MinIO, three replicas on its one bucket, nginx in front of them',
  async (t) => {
    const doc = parse(await readFile('docker-compose.yml', 'utf8'), { merge: true }) as {
      services: Record<string, Service>;
    };
    const inProfile = Object.entries(doc.services).filter(([, s]) => s.profiles?.includes('cluster'));
    const replicas = inProfile.filter(([, s]) => s.image === 'model-registry:local');
    t.equal(replicas.length, 3, 'three replicas');
    t.ok(doc.services.minio?.profiles?.includes('cluster'), 'MinIO starts with the profile');
    t.same(doc.services.minio?.profiles, ['minio', 'cluster'], 'and still with --profile minio');
    t.same(doc.services.registry?.profiles, undefined, 'the default registry is still the only one without a profile');

    // One storage for all: the same settings, apart from nothing; each its own cache volume.
    const storageOf = (s: Service) =>
      Object.fromEntries(Object.entries(s.environment ?? {}).filter(([k]) => k !== 'HOST'));
    for (const [name, s] of replicas.slice(1))
      t.same(storageOf(s), storageOf(replicas[0]![1]), `${name}: the same settings as ${replicas[0]![0]}`);
    t.equal(replicas[0]![1].environment?.AWS_ENDPOINT_URL, 'http://minio:9000');
    const caches = replicas.map(([, s]) => s.volumes?.find((v) => v.endsWith(':/app/data'))?.split(':')[0]);
    t.equal(new Set(caches).size, 3, `each replica has its own cache volume (${caches.join(', ')})`);
    for (const [name, s] of replicas) t.same(s.ports, undefined, `${name}: reached through nginx only`);

    const lbs = inProfile.filter(([, s]) => s.image?.startsWith('nginx:'));
    t.equal(lbs.length, 1, 'one nginx');
    const [, lb] = lbs[0]!;
    t.same(dependencies(lb).sort(), replicas.map(([n]) => n).sort(), 'nginx starts after every replica');
    t.same(
      Object.values(lb.depends_on as Record<string, { condition?: string }>).map((d) => d.condition),
      ['service_healthy', 'service_healthy', 'service_healthy'],
      'once each answers its health check (nginx resolves the upstream names at start)',
    );
    t.same(lb.ports, ['8085:8080']);
    // The mounted config files exist, the site includes the proxy settings where they are mounted,
    // and its upstream is exactly the replicas, round robin (no other balancing method).
    const mounts = new Map((lb.volumes ?? []).map((v) => [v.split(':')[1]!, v.split(':')[0]!]));
    const site = await readFile(mounts.get('/etc/nginx/conf.d/default.conf')!, 'utf8');
    t.match(await readFile(mounts.get('/etc/nginx/registry-proxy.conf')!, 'utf8'), /proxy_pass http:\/\/registry;/);
    t.match(site, /include \/etc\/nginx\/registry-proxy\.conf;/);
    const upstream = /upstream registry \{([^}]*)\}/.exec(site)?.[1] ?? '';
    t.same(
      [...upstream.matchAll(/^\s*server ([\w.-]+):8080\b/gm)].map((m) => m[1]).sort(),
      replicas.map(([n]) => n).sort(),
      'the upstream lists every replica',
    );
    t.notMatch(upstream, /\b(least_conn|ip_hash|hash|random)\b/, 'round robin');
    t.match(site, /listen 8080;/);
  },
);

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
  t.notMatch(
    text,
    /^(ENV|ARG)\b.*(AUTH_TOKENS|ALLOW_ANONYMOUS)/m,
    'neither AUTH_TOKENS nor ALLOW_ANONYMOUS is baked in',
  );
  t.match(text, /VOLUME \["\/app\/data"\]/);

  const ignored = (await readFile('.dockerignore', 'utf8')).split('\n').map((l) => l.trim());
  for (const entry of ['node_modules', 'dist', 'data', '.env', '.git'])
    t.ok(ignored.includes(entry), `.dockerignore excludes ${entry}`);
});

t.test('docker-compose.yml: the emulators are the versions the tests pin, never :latest', async (t) => {
  const doc = parse(await readFile('docker-compose.yml', 'utf8'), { merge: true }) as {
    services: Record<string, Service>;
  };
  const install = await readFile('scripts/emulators/install.sh', 'utf8');
  const pinned = (name: string) => new RegExp(`^${name}="([^"]+)"$`, 'm').exec(install)![1]!;
  const lock = JSON.parse(await readFile('package-lock.json', 'utf8')) as {
    packages: Record<string, { version: string }>;
  };
  const minio = doc.services.minio!;
  t.match(
    minio.build?.dockerfile_inline,
    new RegExp(`go install github\\.com/minio/minio@${pinned('MINIO_VERSION')}\\n`),
    'MinIO built from the pinned source',
  );
  t.equal(minio.image, `model-registry-minio:${pinned('MINIO_VERSION')}`);
  t.equal(doc.services['fake-gcs']!.image, `fsouza/fake-gcs-server:${pinned('FAKE_GCS_VERSION').replace(/^v/, '')}`);
  t.equal(
    doc.services.azurite!.image,
    `mcr.microsoft.com/azure-storage/azurite:${lock.packages['node_modules/azurite']!.version}`,
  );
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
