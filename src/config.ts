/**
 * Configuration: read once from the environment at start and validated with zod.
 * The Config type is inferred from the schema. A bad value becomes one ConfigError line
 * naming the variable and the fix; the process prints it and exits 1.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { parseTokenTail, TOKEN_SYNTAX, type TokenEntry } from './http/token-scope.js';
import { parseDuration, parseSize } from './util/units.js';

const size = (example: string, { zero = false } = {}) =>
  z.string().transform((text, ctx) => {
    const bytes = parseSize(text);
    if (bytes === undefined || bytes < 0 || (bytes === 0 && !zero)) {
      ctx.addIssue({ code: 'custom', message: `is not a size: use bytes or a unit, e.g. ${example}${zero ? ' (0 = off)' : ''}` });
      return z.NEVER;
    }
    return bytes;
  });

/** Longest delay Node's timers take (2^31-1 ms, ~24.8 days); beyond it they fire at once. */
const TIMER_MAX_MS = 2 ** 31 - 1;

/**
 * A duration setting, in ms. `min` keeps out values that break the server (a 0 ms idle timeout
 * refuses every upload); durations used as timers stay within what Node's timers can wait.
 */
export const duration = (example: string, { min = 0, max = TIMER_MAX_MS }: { min?: number; max?: number } = {}) =>
  z.string().transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `is not a duration: use a number and a unit, e.g. ${example}` });
      return z.NEVER;
    }
    if (ms < min || ms > max) {
      ctx.addIssue({ code: 'custom', message: `must be from ${formatMs(min)} to ${formatMs(max)}, e.g. ${example}` });
      return z.NEVER;
    }
    return ms;
  });

const formatMs = (ms: number) => (ms === TIMER_MAX_MS ? '24d' : ms % 86_400_000 === 0 && ms > 0 ? `${ms / 86_400_000}d` : ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);

const integer = (min: number, max: number) =>
  z.string().transform((text, ctx) => {
    const n = Number(text);
    if (!/^\s*\d+\s*$/.test(text) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `must be a whole number from ${min} to ${max}` });
      return z.NEVER;
    }
    return n;
  });

const boolean = z.string().transform((text, ctx) => {
  const t = text.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(t)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(t)) return false;
  ctx.addIssue({ code: 'custom', message: 'must be true or false' });
  return z.NEVER;
});

export type Scope = 'read' | 'write' | 'admin';
const SCOPES: readonly Scope[] = ['read', 'write', 'admin'];

const authTokens = z.string().transform((text, ctx) => {
  const tokens: TokenEntry[] = [];
  for (const item of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const i = item.indexOf(':');
    const scope = item.slice(0, i) as Scope;
    const { token, namespace } = parseTokenTail(item.slice(i + 1));
    if (i < 0 || !SCOPES.includes(scope) || token.length < 8 || /\s/.test(token) || namespace === null) {
      // Never echo the token itself.
      ctx.addIssue({ code: 'custom', message: `must be a comma-separated list of ${TOKEN_SYNTAX}, each token at least 8 characters without spaces and each namespace a valid name` });
      return z.NEVER;
    }
    tokens.push(namespace === undefined ? { scope, token } : { scope, token, namespace });
  }
  return tokens;
});

const storagePrefix = z.string().refine(
  (p) => p.endsWith('/') && !p.startsWith('/') && p.slice(0, -1).split('/').every((s) => s !== '' && s !== '.' && s !== '..' && !/[\\\u0000-\u001f]/.test(s)),
  'must be a relative folder ending in /, without a leading /, empty segments, . or .., e.g. STORAGE_PREFIX=registry/',
);

const BACKEND_ALIASES: Record<string, string> = { s3: 'aws', minio: 'aws' };

const common = z.object({
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: integer(0, 65535).default(8080),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  MAX_MODEL_BYTES: size('20GiB').default(20 * 2 ** 30),
  MAX_EXTRACTED_BYTES: size('100GiB').default(100 * 2 ** 30),
  MAX_ARCHIVE_ENTRIES: integer(1, 100_000_000).default(100_000),
  MODEL_HISTORY: integer(0, 1000).default(3),
  AUTH_TOKENS: authTokens.default([]),
  ALLOW_ANONYMOUS: boolean.default(false),
  /** Puts the whole registry under this prefix of the bucket / directory (`registry/`); '' = the root. */
  STORAGE_PREFIX: storagePrefix.default(''),
  /** Longest a single storage request may stay silent before it fails with 503. */
  STORAGE_TIMEOUT: duration('30s', { min: 100 }).default(30_000),
  CACHE_DIR: z.string().min(1).default('./data/cache'),
  CACHE_MAX_BYTES: size('10GiB').default(10 * 2 ** 30),
  CACHE_TTL: duration('7d', { min: 1000, max: 3650 * 86_400_000 }).default(7 * 86_400_000),
  /** Memory for copies of small cached archives (each up to 1/8 of it); 0 = none. */
  CACHE_MEMORY_BYTES: size('64MiB', { zero: true }).default(64 * 2 ** 20),
  /** Keep a copy of each accepted upload in the cache (the next GET is a hit). */
  CACHE_WRITE_THROUGH: boolean.default(true),
  /** How often a watched model is checked in storage for changes made by other replicas. */
  WATCH_POLL_INTERVAL: duration('2s', { min: 100 }).default(2000),
  /** Longest a client may take to send its request headers (slowloris); 408 and close after. */
  HEADERS_TIMEOUT: duration('30s', { min: 100 }).default(30_000),
  /** Longest an upload body may stay silent; the upload is then refused with 408 and discarded. */
  BODY_IDLE_TIMEOUT: duration('60s', { min: 1000 }).default(60_000),
  /** An idle keep-alive connection is closed after this long. */
  KEEP_ALIVE_TIMEOUT: duration('72s', { min: 100 }).default(72_000),
  /** Most open client connections; further ones are closed at once. 0 = no limit. */
  MAX_CONNECTIONS: integer(0, 10_000_000).default(10_000),
  /** Requests served on one keep-alive connection before it is closed. 0 = no limit. */
  MAX_REQUESTS_PER_SOCKET: integer(0, 10_000_000).default(0),
  /** On SIGTERM / SIGINT, how long in-flight uploads and downloads may take to finish before they are aborted. */
  SHUTDOWN_GRACE: duration('30s').default(30_000),
});

const url = (example: string) =>
  z.string().refine((text) => {
    try {
      return ['http:', 'https:'].includes(new URL(text).protocol);
    } catch {
      return false;
    }
  }, `is not an http(s) URL: use e.g. ${example}`);

/** City and country names people write instead of AWS region codes (seeds/002). */
export const AWS_REGION_NAMES: Record<string, string> = {
  'n. virginia': 'us-east-1', 'north virginia': 'us-east-1', virginia: 'us-east-1', ohio: 'us-east-2',
  'n. california': 'us-west-1', california: 'us-west-1', oregon: 'us-west-2',
  frankfurt: 'eu-central-1', ireland: 'eu-west-1', london: 'eu-west-2', paris: 'eu-west-3',
  stockholm: 'eu-north-1', milan: 'eu-south-1', spain: 'eu-south-2', zurich: 'eu-central-2',
  tokyo: 'ap-northeast-1', seoul: 'ap-northeast-2', osaka: 'ap-northeast-3', singapore: 'ap-southeast-1',
  sydney: 'ap-southeast-2', jakarta: 'ap-southeast-3', melbourne: 'ap-southeast-4', mumbai: 'ap-south-1',
  hyderabad: 'ap-south-2', 'hong kong': 'ap-east-1', canada: 'ca-central-1', montreal: 'ca-central-1',
  calgary: 'ca-west-1', 'sao paulo': 'sa-east-1', 'são paulo': 'sa-east-1', bahrain: 'me-south-1',
  uae: 'me-central-1', 'cape town': 'af-south-1', 'tel aviv': 'il-central-1', beijing: 'cn-north-1',
  ningxia: 'cn-northwest-1',
};
const AWS_REGION_CODE = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;

const bucketName = (scheme: 's3' | 'gs') =>
  z.string().superRefine((text, ctx) => {
    const m = /^([a-z0-9]+):\/\/([^/]*)/i.exec(text);
    if (m) {
      ctx.addIssue({ code: 'custom', message: `must be the bare bucket name without ${m[1]}://: use BUCKET_NAME=${m[2]}` });
    } else if (!/^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]$/.test(text)) {
      ctx.addIssue({ code: 'custom', message: `is not a valid ${scheme === 's3' ? 'S3' : 'GCS'} bucket name: use 3-63 lower-case letters, digits, dots and hyphens, e.g. my-models` });
    }
  });

const local = z.object({
  REMOTE_STORAGE: z.literal('local'),
  LOCAL_STORAGE_DIR: z.string().min(1).default('./data/models'),
});

const aws = z
  .object({
    REMOTE_STORAGE: z.literal('aws'),
    BUCKET_NAME: bucketName('s3'),
    AWS_DEFAULT_REGION: z.string().optional(),
    AWS_REGION: z.string().optional(),
    AWS_ENDPOINT_URL: url('http://127.0.0.1:9000').optional(),
    AWS_ACCESS_KEY_ID: z.string().optional(),
    AWS_SECRET_ACCESS_KEY: z.string().optional(),
    AWS_SESSION_TOKEN: z.string().optional(),
    AUTO_CREATE_BUCKET: boolean.default(true),
  })
  .superRefine((c, ctx) => {
    const region = c.AWS_DEFAULT_REGION ?? c.AWS_REGION;
    const variable = c.AWS_DEFAULT_REGION !== undefined ? 'AWS_DEFAULT_REGION' : 'AWS_REGION';
    // S3-compatible servers name regions as they like (MinIO us-east-1, R2 auto); AWS uses codes.
    if (region !== undefined && c.AWS_ENDPOINT_URL === undefined && !AWS_REGION_CODE.test(region)) {
      const code = AWS_REGION_NAMES[region.trim().toLowerCase()];
      ctx.addIssue({
        code: 'custom',
        path: [variable],
        message: code
          ? `is a region name, not a region code: use ${variable}=${code}`
          : 'is not an AWS region code: use the code of the bucket\'s region, e.g. eu-central-1 or us-east-1',
      });
    }
    if ((c.AWS_ACCESS_KEY_ID === undefined) !== (c.AWS_SECRET_ACCESS_KEY === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [c.AWS_ACCESS_KEY_ID === undefined ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY'],
        message: 'must be set together with its pair (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or leave both unset to use the default credential chain (IAM role, profile)',
      });
    }
  });

const gcs = z.object({
  REMOTE_STORAGE: z.literal('gcs'),
  BUCKET_NAME: bucketName('gs'),
  GOOGLE_CLOUD_PROJECT: z.string().optional(),
  GOOGLE_APPLICATION_CREDENTIALS: z.string().optional(),
  STORAGE_EMULATOR_HOST: z.string().optional(),
  AUTO_CREATE_BUCKET: boolean.default(true),
});

const azure = z
  .object({
    REMOTE_STORAGE: z.literal('azure'),
    AZURE_CONTAINER: z.string().regex(/^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/, 'is not a valid container name: use 3-63 lower-case letters, digits and single hyphens, e.g. models'),
    AZURE_STORAGE_CONNECTION_STRING: z.string().optional(),
    AZURE_ACCOUNT_NAME: z.string().regex(/^[a-z0-9]{3,24}$/, 'is not a storage account name: use the 3-24 lower-case letters and digits of the account').optional(),
    AZURE_ACCOUNT_KEY: z
      .string()
      .refine((k) => /^[A-Za-z0-9+/]+={0,2}$/.test(k) && k.length % 4 === 0 && Buffer.from(k, 'base64').length >= 32, 'is not base64: copy key1 or key2 from the storage account\'s Access keys page unchanged')
      .optional(),
    AZURE_BLOB_ENDPOINT: url('https://myaccount.blob.core.windows.net').optional(),
    AUTO_CREATE_BUCKET: boolean.default(true),
  })
  .superRefine((c, ctx) => {
    if (c.AZURE_STORAGE_CONNECTION_STRING === undefined && c.AZURE_ACCOUNT_NAME === undefined && c.AZURE_BLOB_ENDPOINT === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['AZURE_ACCOUNT_NAME'],
        message: 'is not set: set AZURE_ACCOUNT_NAME with AZURE_ACCOUNT_KEY, or AZURE_STORAGE_CONNECTION_STRING, or AZURE_BLOB_ENDPOINT with a SAS',
      });
    }
  });

const mongodb = z.object({
  REMOTE_STORAGE: z.literal('mongodb'),
  MONGODB_URI: z.string().regex(/^mongodb(\+srv)?:\/\//, 'is not a MongoDB connection string: use mongodb://host:27017 or mongodb+srv://cluster.example.net'),
  MONGODB_DATABASE: z.string().regex(/^[^/\\. "$]{1,63}$/, 'is not a valid database name').default('models'),
  MONGODB_COLLECTION: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, 'is not a valid collection name: use letters, digits, _ and -').default('models'),
});

const schema = z.intersection(common, z.discriminatedUnion('REMOTE_STORAGE', [local, aws, gcs, azure, mongodb]));

export type Config = z.infer<typeof schema>;
export type Backend = Config['REMOTE_STORAGE'];
export type BackendConfig<B extends Backend> = Extract<Config, { REMOTE_STORAGE: B }>;

export const KNOWN_VARIABLES = [
  ...new Set([
    'REMOTE_STORAGE',
    ...Object.keys(common.shape),
    ...[local, aws, gcs, azure, mongodb].flatMap((o) => Object.keys(('shape' in o ? o : (o as unknown as { _def: { schema: typeof local } })._def.schema).shape)),
  ]),
];

/** Variables whose values are secrets: never echoed in errors or logs (see util/redact.ts). */
export const SECRET_VARIABLES: ReadonlySet<string> = new Set(['AUTH_TOKENS', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AZURE_ACCOUNT_KEY', 'AZURE_STORAGE_CONNECTION_STRING', 'MONGODB_URI']);

/**
 * Names in `env` that look like settings of the registry (by `prefix`) but are none — a misspelt
 * LOCAL_STORAGE_PATH would leave the default in force — each with the settings of its kind.
 */
export function unknownSettings(env: NodeJS.ProcessEnv, prefix: RegExp): { name: string; kin: string[] }[] {
  return Object.keys(env)
    .filter((name) => prefix.test(name) && !KNOWN_VARIABLES.includes(name))
    .map((name) => ({ name, kin: KNOWN_VARIABLES.filter((known) => known.split('_')[0] === name.split('_')[0]) }));
}

/** Settings whose misspelling leaves the registry open: their look-alikes are errors, listed first. */
const SECURITY_SETTINGS = ['AUTH_TOKENS', 'ALLOW_ANONYMOUS'];

/**
 * Variables other programs own, never taken for look-alikes: npm's and Node's, the storage SDKs'
 * own (they read them themselves), and those of shells, terminals, CI systems and Kubernetes.
 */
const FOREIGN_VARIABLES = /^(npm_|NPM_|NODE_|TAP_|SSH_|XDG_|LC_|GIT_|GITHUB_|GITLAB_|CI_|RUNNER_|KUBERNETES_|DOCKER_|PIP_|PYTHON|CONDA_|JAVA_|GO[A-Z0-9]*$|CARGO_|RUSTUP_|HOMEBREW_|VSCODE_|TERM|DBUS_|AWS_SDK_|AWS_CONTAINER_|AWS_EC2_|AWS_LAMBDA_|OTEL_)/;
const SDK_VARIABLES = new Set([
  'AWS_PROFILE', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_ROLE_ARN', 'AWS_ROLE_SESSION_NAME', 'AWS_WEB_IDENTITY_TOKEN_FILE',
  'AWS_ENDPOINT_URL_S3', 'AWS_MAX_ATTEMPTS', 'AWS_RETRY_MODE', 'AWS_CA_BUNDLE', 'AWS_USE_FIPS_ENDPOINT', 'AWS_USE_DUALSTACK_ENDPOINT',
  'AWS_STS_REGIONAL_ENDPOINTS', 'AWS_EXECUTION_ENV', 'AWS_ACCOUNT_ID', 'AWS_REQUEST_CHECKSUM_CALCULATION', 'AWS_RESPONSE_CHECKSUM_VALIDATION',
  'GCLOUD_PROJECT', 'GOOGLE_CLOUD_QUOTA_PROJECT', 'AZURE_CLIENT_ID', 'AZURE_TENANT_ID', 'AZURE_CLIENT_SECRET', 'AZURE_CLIENT_CERTIFICATE_PATH',
  'AZURE_FEDERATED_TOKEN_FILE', 'AZURE_AUTHORITY_HOST', 'AZURE_USERNAME', 'AZURE_PASSWORD',
]);
/** How a name starts that only the registry's settings start with (the look-alike check before issue 20). */
const REGISTRY_PREFIXES = /^(AUTH(_|$)|ALLOW(_|$)|REMOTE_|LOCAL_STORAGE|BUCKET_|CACHE_|MODEL_|MODELS_|MAX_MODEL|MAX_EXTRACTED|MAX_ARCHIVE|MONGODB_|AUTO_CREATE)/;
/**
 * Words only the registry's settings use: a name with one of them (S3_BUCKET, API_TOKENS) means
 * one. Not AUTH or TOKEN: SENTRY_AUTH_TOKEN, HF_TOKEN and the like belong to other tools.
 */
const DISTINCTIVE_WORDS = new Set(['TOKENS', 'ANONYMOUS', 'BUCKET', 'HISTORY', 'ARCHIVE', 'EXTRACTED', 'MONGODB']);

/** Optimal-string-alignment distance: insertions, deletions, substitutions, adjacent swaps. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** Typos a setting's name may carry: none for HOST and PORT (HOME is one away), more for long names. */
const tolerance = (setting: string) => (setting.length <= 5 ? 0 : setting.length <= 9 ? 1 : 2);
const singular = (word: string) => (word.length > 3 && word.endsWith('S') ? word.slice(0, -1) : word);

export interface LookAlike {
  /** The variable as set. */
  name: string;
  /** The settings it may have been meant as, likeliest first. */
  settings: string[];
  /** It looks like AUTH_TOKENS or ALLOW_ANONYMOUS (or is AUTH_* / ALLOW_*): a typo there weakens security. */
  security: boolean;
}

/**
 * Variables in `env` that are no setting of the registry but look like one — within a small edit
 * distance of a setting (AUTH_TOKEN, MODELS_HISTORY, auth_tokens), starting the way only its
 * settings start (LOCAL_STORAGE_PATH, ALLOW_ANON), holding a word only its settings use
 * (BUCKET, S3_BUCKET), or holding a whole setting's name (REGISTRY_AUTH_TOKENS) — each with the
 * settings it may mean. Security look-alikes come first. Other programs' variables (PATH, HOME,
 * NODE_*, npm_*, the SDKs' own AWS_* / AZURE_* / GOOGLE_*) are never named.
 */
export function lookAlikeSettings(env: NodeJS.ProcessEnv): LookAlike[] {
  const found: LookAlike[] = [];
  for (const name of Object.keys(env)) {
    if (KNOWN_VARIABLES.includes(name) || SDK_VARIABLES.has(name) || FOREIGN_VARIABLES.test(name)) continue;
    const upper = name.toUpperCase();
    const words = upper.split('_').filter(Boolean);
    const scored: { setting: string; score: number }[] = [];
    for (const setting of KNOWN_VARIABLES) {
      const distance = editDistance(upper, setting);
      const settingWords = setting.split('_');
      const shared = settingWords.filter((w) => DISTINCTIVE_WORDS.has(w) && (words.includes(w) || words.includes(`${w}S`)));
      const contains = settingWords.length > 1 && `_${upper}_`.includes(`_${setting}_`);
      const sameKind = REGISTRY_PREFIXES.test(upper) && singular(settingWords[0]!) === singular(words[0] ?? '');
      if (distance <= tolerance(setting)) scored.push({ setting, score: distance });
      else if (contains) scored.push({ setting, score: 3 });
      // BUCKET_NAME before AUTO_CREATE_BUCKET for S3_BUCKET: the word leading the setting first.
      else if (shared.length > 0) scored.push({ setting, score: 4 + settingWords.indexOf(shared[0]!) / 10 + distance / 1000 });
      else if (sameKind) scored.push({ setting, score: 5 });
    }
    if (scored.length === 0 && !REGISTRY_PREFIXES.test(upper)) continue;
    scored.sort((a, b) => a.score - b.score);
    // The likeliest: those as close as the closest; a kind in common (LOCAL_, CACHE_) names them all.
    const best = scored[0]?.score ?? 0;
    const settings = scored.filter((s) => s.score === best || (best >= 5 && s.score >= 5)).map((s) => s.setting);
    const security = /^(AUTH|ALLOW)_/.test(upper) || settings.some((s) => SECURITY_SETTINGS.includes(s));
    found.push({ name, settings, security });
  }
  return found.sort((a, b) => Number(b.security) - Number(a.security));
}

/**
 * Removes the storage SDKs' own variables that are set but empty (`STORAGE_EMULATOR_HOST=` from
 * a .env file or a `docker run --env-file`). The registry reads an empty value as unset; the SDKs
 * read the environment themselves and do not: an empty emulator host sends Google Cloud Storage
 * requests to https://storage/..., an empty AWS_REGION hides the profile's region.
 */
export function dropEmptySdkVariables(env: NodeJS.ProcessEnv = process.env): void {
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value.trim() === '' && /^(AWS_|GOOGLE_|GCLOUD_|AZURE_|STORAGE_EMULATOR_HOST$)/.test(key)) delete env[key];
  }
}

/**
 * Parses the environment. Throws ConfigError with one line naming the first bad variable.
 * Empty strings count as unset, so `PORT=` in a .env file means the default.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const input: Record<string, string> = {};
  for (const key of KNOWN_VARIABLES) {
    const value = env[key];
    if (value !== undefined && value.trim() !== '') input[key] = value.trim();
  }
  const requested = (input.REMOTE_STORAGE ?? 'local').toLowerCase();
  input.REMOTE_STORAGE = BACKEND_ALIASES[requested] ?? requested;

  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const variable = String(issue.path[0] ?? 'REMOTE_STORAGE');
    const value = input[variable];
    const message =
      variable === 'REMOTE_STORAGE'
        ? 'must be one of local, aws (or s3, minio), gcs, azure, mongodb'
        : value === undefined && issue.code === 'invalid_type'
          ? `is required with REMOTE_STORAGE=${input.REMOTE_STORAGE}: ${REQUIRED_HINTS[variable] ?? 'set it'}`
          : issue.code === 'invalid_value'
            ? `must be one of ${(issue as { values: unknown[] }).values.join(', ')}`
            : issue.message;
    if (value === undefined) throw new ConfigError(`${variable} ${message}.`);
    const shown = SECRET_VARIABLES.has(variable) ? '(hidden)' : JSON.stringify(value);
    throw new ConfigError(`${variable}=${shown} ${message}.`);
  }
  const config = parsed.data;

  if (config.AUTH_TOKENS.length === 0 && !config.ALLOW_ANONYMOUS && !isLoopback(config.HOST)) {
    throw new ConfigError(
      `HOST=${config.HOST} exposes the registry beyond this machine without authentication: set AUTH_TOKENS (e.g. AUTH_TOKENS=write:<secret>,read:<secret>), or set ALLOW_ANONYMOUS=true to accept that anyone who can reach it may read and write models.${misspelt(env)}`,
    );
  }
  return config;
}

/** " (AUTH_TOKEN is set: is it AUTH_TOKENS misspelt?)" for the security look-alikes in env, or "". */
function misspelt(env: NodeJS.ProcessEnv): string {
  const names = lookAlikeSettings(env).filter((l) => l.security);
  if (names.length === 0) return '';
  return ` (${names.map((l) => `${l.name} is set: is it ${l.settings.join(' or ') || 'AUTH_TOKENS or ALLOW_ANONYMOUS'} misspelt?`).join('; ')})`;
}

const REQUIRED_HINTS: Record<string, string> = {
  BUCKET_NAME: 'set it to the bare name of the bucket, e.g. BUCKET_NAME=my-models',
  AZURE_CONTAINER: 'set it to the blob container to use, e.g. AZURE_CONTAINER=models',
  MONGODB_URI: 'set it to the connection string, e.g. MONGODB_URI=mongodb://127.0.0.1:27017',
};

export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1' || host === '[::1]') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}
