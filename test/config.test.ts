import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { dropEmptySdkVariables, loadConfig, lookAlikeSettings } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { parseDuration, parseSize } from '../src/util/units.js';

t.test('sizes and durations', async (t) => {
  t.equal(parseSize('10GiB'), 10 * 2 ** 30);
  t.equal(parseSize('500MB'), 500e6);
  t.equal(parseSize('1.5k'), 1500);
  t.equal(parseSize('1024'), 1024);
  t.equal(parseSize('12 mib'), 12 * 2 ** 20);
  t.equal(parseSize('ten'), undefined);
  t.equal(parseSize('5XB'), undefined);
  t.equal(parseDuration('7d'), 7 * 86_400_000);
  t.equal(parseDuration('12h'), 12 * 3_600_000);
  t.equal(parseDuration('250ms'), 250);
  t.equal(parseDuration('30'), 30_000, 'bare numbers are seconds');
  t.equal(parseDuration('soon'), undefined);
});

t.test('defaults need no configuration', async (t) => {
  const c = loadConfig({});
  t.match(c, {
    REMOTE_STORAGE: 'local',
    HOST: '127.0.0.1',
    PORT: 8080,
    LOCAL_STORAGE_DIR: './data/models',
    MODEL_HISTORY: 3,
    MAX_MODEL_BYTES: 20 * 2 ** 30,
    MAX_EXTRACTED_BYTES: 100 * 2 ** 30,
    MAX_ARCHIVE_ENTRIES: 100_000,
    AUTH_TOKENS: [],
    ALLOW_ANONYMOUS: false,
  });
  t.equal(loadConfig({ PORT: '' }).PORT, 8080, 'empty means unset');
  t.equal(loadConfig({}).CACHE_MEMORY_BYTES, 64 * 2 ** 20);
  t.equal(loadConfig({ CACHE_MEMORY_BYTES: '0' }).CACHE_MEMORY_BYTES, 0, 'the memory tier can be turned off');
  t.match(loadConfig({ AUTH_TOKENS: 'read:aaaaaaaa, admin:bbbbbbbb' }).AUTH_TOKENS, [
    { scope: 'read', token: 'aaaaaaaa' },
    { scope: 'admin', token: 'bbbbbbbb' },
  ]);
});

t.test('a bad value names the variable and the fix', async (t) => {
  t.match(loadConfig({ REMOTE_STORAGE: 'S3', BUCKET_NAME: 'models' }), {
    REMOTE_STORAGE: 'aws',
    AUTO_CREATE_BUCKET: true,
  });
  t.match(
    loadConfig({
      REMOTE_STORAGE: 'minio',
      BUCKET_NAME: 'models',
      AWS_ENDPOINT_URL: 'http://127.0.0.1:9000',
      AWS_DEFAULT_REGION: 'garage',
    }),
    { AWS_DEFAULT_REGION: 'garage' },
    'S3-compatible servers name regions freely',
  );
  t.match(loadConfig({ REMOTE_STORAGE: 'mongodb', MONGODB_URI: 'mongodb://h:27017' }), {
    MONGODB_DATABASE: 'models',
    MONGODB_COLLECTION: 'models',
  });
  const cases: [Record<string, string>, RegExp][] = [
    [{ PORT: 'eighty' }, /^PORT="eighty" must be a whole number from 0 to 65535\.$/],
    [{ PORT: '70000' }, /^PORT=/],
    [{ MAX_MODEL_BYTES: 'lots' }, /^MAX_MODEL_BYTES="lots" is not a size: use bytes or a unit, e\.g\. 20GiB/],
    [{ MAX_EXTRACTED_BYTES: '-1' }, /^MAX_EXTRACTED_BYTES=/],
    [{ MAX_MODEL_BYTES: '0' }, /^MAX_MODEL_BYTES="0" is not a size/],
    [
      { CACHE_MEMORY_BYTES: 'some' },
      /^CACHE_MEMORY_BYTES="some" is not a size: use bytes or a unit, e\.g\. 64MiB \(0 = off\)/,
    ],
    [{ MAX_ARCHIVE_ENTRIES: '1.5' }, /^MAX_ARCHIVE_ENTRIES=/],
    [{ MODEL_HISTORY: 'all' }, /^MODEL_HISTORY="all" must be a whole number/],
    [{ ALLOW_ANONYMOUS: 'maybe' }, /^ALLOW_ANONYMOUS="maybe" must be true or false/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL="loud" must be one of fatal, error, warn, info, debug, trace, silent/],
    [{ REMOTE_STORAGE: 'ftp' }, /^REMOTE_STORAGE="ftp" must be one of local, aws/],
    [
      { REMOTE_STORAGE: 'aws' },
      /^BUCKET_NAME is required with REMOTE_STORAGE=aws: set it to the bare name of the bucket, e\.g\. BUCKET_NAME=my-models\.$/,
    ],
    [{ REMOTE_STORAGE: 'minio' }, /^BUCKET_NAME is required with REMOTE_STORAGE=aws/],
    [
      { REMOTE_STORAGE: 's3', BUCKET_NAME: 's3://my-models' },
      /^BUCKET_NAME="s3:\/\/my-models" must be the bare bucket name without s3:\/\/: use BUCKET_NAME=my-models\.$/,
    ],
    [
      { REMOTE_STORAGE: 'gcs', BUCKET_NAME: 'gs://my-models/path' },
      /^BUCKET_NAME=.* without gs:\/\/: use BUCKET_NAME=my-models\.$/,
    ],
    [{ REMOTE_STORAGE: 'aws', BUCKET_NAME: 'My_Bucket!' }, /^BUCKET_NAME="My_Bucket!" is not a valid S3 bucket name/],
    [
      { REMOTE_STORAGE: 'aws', BUCKET_NAME: 'models', AWS_DEFAULT_REGION: 'Frankfurt' },
      /^AWS_DEFAULT_REGION="Frankfurt" is a region name, not a region code: use AWS_DEFAULT_REGION=eu-central-1\.$/,
    ],
    [
      { REMOTE_STORAGE: 'aws', BUCKET_NAME: 'models', AWS_REGION: 'N. Virginia' },
      /^AWS_REGION=.* use AWS_REGION=us-east-1\.$/,
    ],
    [
      { REMOTE_STORAGE: 'aws', BUCKET_NAME: 'models', AWS_DEFAULT_REGION: 'europe' },
      /^AWS_DEFAULT_REGION="europe" is not an AWS region code/,
    ],
    [
      { REMOTE_STORAGE: 'aws', BUCKET_NAME: 'models', AWS_ACCESS_KEY_ID: 'AKIA123' },
      /^AWS_SECRET_ACCESS_KEY must be set together with its pair/,
    ],
    [
      { REMOTE_STORAGE: 'aws', BUCKET_NAME: 'models', AWS_ENDPOINT_URL: 'minio:9000' },
      /^AWS_ENDPOINT_URL="minio:9000" is not an http\(s\) URL/,
    ],
    [{ REMOTE_STORAGE: 'azure' }, /^AZURE_CONTAINER is required with REMOTE_STORAGE=azure/],
    [
      { REMOTE_STORAGE: 'azure', AZURE_CONTAINER: 'models' },
      /^AZURE_ACCOUNT_NAME is not set: set AZURE_ACCOUNT_NAME with AZURE_ACCOUNT_KEY/,
    ],
    [
      {
        REMOTE_STORAGE: 'azure',
        AZURE_CONTAINER: 'models',
        AZURE_ACCOUNT_NAME: 'acct',
        AZURE_ACCOUNT_KEY: 'not base64!!',
      },
      /^AZURE_ACCOUNT_KEY=\(hidden\) is not base64: copy key1 or key2/,
    ],
    [
      { REMOTE_STORAGE: 'azure', AZURE_CONTAINER: 'Models_1' },
      /^AZURE_CONTAINER="Models_1" is not a valid container name/,
    ],
    [{ REMOTE_STORAGE: 'mongodb' }, /^MONGODB_URI is required with REMOTE_STORAGE=mongodb/],
    [
      { REMOTE_STORAGE: 'mongodb', MONGODB_URI: 'localhost:27017' },
      /^MONGODB_URI=\(hidden\) is not a MongoDB connection string: use mongodb:\/\/host:27017/,
    ],
    [{ AUTH_TOKENS: 'root:secretsecret' }, /^AUTH_TOKENS=\(hidden\) must be a comma-separated list of read:<token>/],
    [{ AUTH_TOKENS: 'read:short' }, /at least 8 characters/],
    // Durations that would break the server, or overflow Node's timers (which then fire at once).
    [{ BODY_IDLE_TIMEOUT: '0' }, /^BODY_IDLE_TIMEOUT="0" must be from 1s to 24d, e\.g\. 60s\.$/],
    [{ STORAGE_TIMEOUT: '0ms' }, /^STORAGE_TIMEOUT="0ms" must be from 100ms to 24d/],
    [{ WATCH_POLL_INTERVAL: '1ms' }, /^WATCH_POLL_INTERVAL="1ms" must be from 100ms/],
    [{ SHUTDOWN_GRACE: '30d' }, /^SHUTDOWN_GRACE="30d" must be from 0s to 24d/],
    [{ HEADERS_TIMEOUT: '2147483648ms' }, /^HEADERS_TIMEOUT=.* to 24d/],
    [{ KEEP_ALIVE_TIMEOUT: 'forever' }, /^KEEP_ALIVE_TIMEOUT="forever" is not a duration/],
  ];
  for (const [env, expected] of cases) {
    const err = (() => {
      try {
        loadConfig(env);
      } catch (e) {
        return e;
      }
    })();
    t.type(err, ConfigError, JSON.stringify(env));
    t.match((err as Error).message, expected);
    t.notMatch((err as Error).message, /\n/, 'one line');
    t.notMatch((err as Error).message, /secretsecret|not base64!!|localhost:27017/, 'secrets are not echoed');
  }
});

t.test('the process exits 1 with one line for a bad setting', async (t) => {
  const scratch = await mkdtemp(path.join(tmpdir(), 'mr-config-'));
  t.teardown(() => rm(scratch, { recursive: true, force: true }));
  const run = (env: Record<string, string | undefined>) =>
    spawnSync(process.execPath, ['dist/server.js'], {
      env: { PATH: process.env.PATH, ...env },
      encoding: 'utf8',
      timeout: 20_000,
    });
  const envs: Record<string, string>[] = [
    { PORT: 'eighty' },
    { REMOTE_STORAGE: 'gcs' },
    { HOST: '0.0.0.0' },
    { LOCAL_STORAGE_DIR: '/dev/null/models' },
    // Reachability is checked at start too (one line, exit 1), not first at the first request.
    {
      REMOTE_STORAGE: 'minio',
      BUCKET_NAME: 'models',
      AWS_ENDPOINT_URL: 'http://127.0.0.1:1',
      AWS_ACCESS_KEY_ID: 'x',
      AWS_SECRET_ACCESS_KEY: 'y',
    },
    // What only shows when the server binds its address or opens its cache.
    {
      HOST: '10.255.255.1',
      AUTH_TOKENS: `admin:${'a'.repeat(32)}`,
      LOCAL_STORAGE_DIR: scratch,
      CACHE_DIR: path.join(scratch, 'cache'),
    },
    {
      HOST: 'no-such-host.invalid',
      AUTH_TOKENS: `admin:${'a'.repeat(32)}`,
      LOCAL_STORAGE_DIR: scratch,
      CACHE_DIR: path.join(scratch, 'cache'),
    },
    { LOCAL_STORAGE_DIR: scratch, CACHE_DIR: '/dev/null/cache' },
  ];
  for (const env of envs) {
    const r = run(env);
    t.equal(r.status, 1, JSON.stringify(env));
    const lines = r.stderr.trim().split('\n');
    t.equal(lines.length, 1, 'one line');
    t.match(lines[0], /^model-registry: [A-Z_]+[= ]/);
    if (env.AUTH_TOKENS) t.match(lines[0], /^model-registry: HOST=\S+ is not an address of this machine/, 'HOST named');
    if (env.CACHE_DIR === '/dev/null/cache')
      t.match(lines[0], /^model-registry: CACHE_DIR=\/dev\/null\/cache cannot be used/, 'CACHE_DIR named');
  }
});

t.test("empty values of the storage SDKs' own variables are removed before the SDKs read them", async (t) => {
  const env: NodeJS.ProcessEnv = {
    STORAGE_EMULATOR_HOST: '',
    AWS_REGION: ' ',
    AZURE_CLIENT_ID: '',
    GOOGLE_CLOUD_PROJECT: 'p',
    PORT: '',
    HOME: '',
  };
  dropEmptySdkVariables(env);
  // An empty STORAGE_EMULATOR_HOST made the GCS SDK send requests to https://storage/...
  t.same(env, { GOOGLE_CLOUD_PROJECT: 'p', PORT: '', HOME: '' }, "ours (read as unset) and others' are left alone");
});

/** What a developer's shell, a CI runner or a Kubernetes pod holds besides the registry's settings. */
const TYPICAL_ENV: Record<string, string> = Object.fromEntries(
  `PATH HOME USER LOGNAME SHELL PWD OLDPWD TERM LANG LANGUAGE LC_ALL HOSTNAME SHLVL _ EDITOR VISUAL PAGER MAIL TMPDIR TZ DISPLAY
  SSH_AUTH_SOCK SSH_CONNECTION SSH_CLIENT SSH_TTY XDG_RUNTIME_DIR XDG_CACHE_HOME XDG_CONFIG_HOME XDG_SESSION_ID DBUS_SESSION_BUS_ADDRESS
  LS_COLORS LESS MANPATH HISTSIZE HISTFILE HISTCONTROL COLORTERM TERM_PROGRAM SUDO_USER container WSL_DISTRO_NAME
  NODE_ENV NODE_OPTIONS NODE_EXTRA_CA_CERTS NODE_AUTH_TOKEN npm_config_cache npm_lifecycle_event npm_package_name INIT_CWD
  GOPATH GOCACHE GOFLAGS GOPROXY GOTOOLCHAIN GOWORK JAVA_HOME PYTHONPATH VIRTUAL_ENV PIP_CACHE_DIR YARN_CACHE_FOLDER CONDA_DEFAULT_ENV
  AWS_PROFILE AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE AWS_ENDPOINT_URL_S3
  AWS_MAX_ATTEMPTS AWS_RETRY_MODE AWS_CA_BUNDLE AWS_SDK_LOAD_CONFIG AWS_EXECUTION_ENV AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
  AWS_STS_REGIONAL_ENDPOINTS AWS_EC2_METADATA_DISABLED AWS_REGION GOOGLE_APPLICATION_CREDENTIALS GCLOUD_PROJECT
  AZURE_CLIENT_ID AZURE_TENANT_ID AZURE_CLIENT_SECRET AZURE_FEDERATED_TOKEN_FILE AZURE_AUTHORITY_HOST
  KUBERNETES_SERVICE_HOST KUBERNETES_SERVICE_PORT KUBERNETES_PORT KUBERNETES_PORT_443_TCP_ADDR REGISTRY_SERVICE_HOST REGISTRY_PORT
  HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy no_proxy CI GITHUB_ACTIONS GITHUB_TOKEN GH_TOKEN RUNNER_TEMP CI_JOB_TOKEN
  HF_TOKEN NPM_TOKEN SENTRY_AUTH_TOKEN VAULT_TOKEN CODECOV_TOKEN DOCKER_HOST TAP_CHILD_ID`
    .split(/\s+/)
    .map((name) => [name, 'x']),
);

t.test(
  'look-alikes of settings: within a small edit distance, of the same kind, or sharing a word of one',
  async (t) => {
    const cases: [string, string[], boolean][] = [
      // the issue's own
      ['AUTH_TOKEN', ['AUTH_TOKENS'], true],
      ['MODELS_HISTORY', ['MODEL_HISTORY'], false],
      ['BUCKET', ['BUCKET_NAME'], false],
      ['S3_BUCKET', ['BUCKET_NAME'], false],
      // more of the same
      ['auth_tokens', ['AUTH_TOKENS'], true],
      ['AUTH', ['AUTH_TOKENS'], true],
      ['API_TOKENS', ['AUTH_TOKENS'], true],
      ['REGISTRY_AUTH_TOKENS', ['AUTH_TOKENS'], true],
      ['ALLOW_ANONYMUS', ['ALLOW_ANONYMOUS'], true],
      ['ALLOW_ANON', ['ALLOW_ANONYMOUS'], true],
      ['ANONYMOUS', ['ALLOW_ANONYMOUS'], true],
      ['MODEL_HISTROY', ['MODEL_HISTORY'], false],
      ['GCS_BUCKET', ['BUCKET_NAME'], false],
      ['AWS_S3_BUCKET', ['BUCKET_NAME'], false],
      ['BUCKET_NAMES', ['BUCKET_NAME'], false],
      ['LOCAL_STORAGE_PATH', ['LOCAL_STORAGE_DIR'], false],
      ['MONGODB_URL', ['MONGODB_URI'], false],
      ['AWS_DEFAULT_REGOIN', ['AWS_DEFAULT_REGION'], false],
      ['AZURE_CONTAINR', ['AZURE_CONTAINER'], false],
      ['GOOGLE_CLOUD_PROJET', ['GOOGLE_CLOUD_PROJECT'], false], // Go's GOPATH, GOFLAGS ... are left alone, not GOOGLE_
      ['LOG_LEVL', ['LOG_LEVEL'], false],
      ['STORAGE_TIMEOUT_MS', ['STORAGE_TIMEOUT'], false],
      ['SHUTDOWN_GRACE_PERIOD', ['SHUTDOWN_GRACE'], false],
      ['port', ['PORT'], false],
    ];
    for (const [name, settings, security] of cases) {
      t.same(lookAlikeSettings({ [name]: 'x' }), [{ name, settings, security }], name);
    }
    t.match(
      lookAlikeSettings({ CACHE_SIZE: '1G' })[0]?.settings,
      ['CACHE_DIR', 'CACHE_MAX_BYTES', 'CACHE_TTL'],
      'a kind in common names the settings of that kind',
    );
    t.same(
      lookAlikeSettings({ MODELS_HISTORY: '5', BUCKET: 'b', AUTH_TOKEN: 'write:x', ALLOW_ANONYMUS: 'true' }).map(
        (l) => l.name,
      ),
      ['AUTH_TOKEN', 'ALLOW_ANONYMUS', 'MODELS_HISTORY', 'BUCKET'],
      'those that weaken security first',
    );
    t.same(
      lookAlikeSettings({ AUTH_TOKENS: 'write:12345678', MODEL_HISTORY: '3', BUCKET_NAME: 'b', HOST: 'h', PORT: '1' }),
      [],
      'the settings themselves are none',
    );
  },
);

t.test('a typical shell, CI or Kubernetes environment gives no look-alike', async (t) => {
  t.same(lookAlikeSettings(TYPICAL_ENV), []);
});

t.test(
  'look-alikes are named at start: security ones first at error level, then warnings; other variables not at all',
  async (t) => {
    const { spawnServer } = await import('./helpers/process.js');
    (await import('./helpers/build.js')).ensureBuilt();
    const dir = await mkdtemp(path.join(tmpdir(), 'mr-config-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const server = await spawnServer(t, {
      ...TYPICAL_ENV,
      PATH: process.env.PATH!,
      HOME: process.env.HOME ?? '/',
      LOCAL_STORAGE_DIR: dir,
      LOCAL_STORAGE_PATH: '/elsewhere',
      MODELS_HISTORY: '5',
      S3_BUCKET: 'models',
      AUTH_TOKEN: 'write:0123456789abcdef',
      ALLOW_ANONYMUS: 'true',
    });
    const deadline = Date.now() + 3000;
    while (!server.output().includes('model registry ready') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    const warnings = server
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; variable?: string })
      .filter((l) => l.variable);
    t.same(
      warnings.map((w) => [w.variable, w.level]),
      [
        ['AUTH_TOKEN', 50],
        ['ALLOW_ANONYMUS', 50],
        ['LOCAL_STORAGE_PATH', 40],
        ['MODELS_HISTORY', 40],
        ['S3_BUCKET', 40],
      ],
      "only the look-alikes, security first at error level (the SDKs' and others' variables are theirs)",
    );
    const msg = (v: string) => warnings.find((w) => w.variable === v)?.msg;
    t.equal(
      msg('AUTH_TOKEN'),
      'AUTH_TOKEN is not a setting of the registry and is ignored: is it AUTH_TOKENS misspelt? Until it is fixed, AUTH_TOKENS is unset and the registry serves every request without a token.',
    );
    t.equal(
      msg('ALLOW_ANONYMUS'),
      'ALLOW_ANONYMUS is not a setting of the registry and is ignored: is it ALLOW_ANONYMOUS misspelt?',
    );
    t.equal(
      msg('LOCAL_STORAGE_PATH'),
      'LOCAL_STORAGE_PATH is not a setting of the registry and is ignored: is it LOCAL_STORAGE_DIR misspelt?',
    );
    t.equal(
      msg('MODELS_HISTORY'),
      'MODELS_HISTORY is not a setting of the registry and is ignored: is it MODEL_HISTORY misspelt?',
    );
    t.equal(msg('S3_BUCKET'), 'S3_BUCKET is not a setting of the registry and is ignored: is it BUCKET_NAME misspelt?');
    t.notMatch(server.output(), /0123456789abcdef/, "the look-alike's value (a token) is never logged");
    server.child.kill('SIGKILL');
  },
);

t.test('on a public HOST without AUTH_TOKENS, the one start-up line names a misspelt AUTH_TOKEN', async (t) => {
  t.throws(() => loadConfig({ HOST: '0.0.0.0', AUTH_TOKEN: 'write:0123456789abcdef' }), {
    message: /^HOST=0\.0\.0\.0 exposes the registry .* \(AUTH_TOKEN is set: is it AUTH_TOKENS misspelt\?\)$/,
  });
});
