/**
 * Configuration: read once from the environment at start and validated with zod.
 * The Config type is inferred from the schema: the common settings here, and those of the chosen
 * backend, whose schema its driver brings (src/storage/drivers.ts). A bad value becomes one
 * ConfigError line naming the variable and the fix; the process prints it and exits 1.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { parseTokenTail, TOKEN_SYNTAX, type TokenEntry } from './http/token-scope.js';
import { allDrivers, type BackendSettings } from './storage/drivers.js';
import { ConfigError } from './util/config-error.js';
import { boolean, duration, integer, size } from './util/settings.js';

export type Scope = 'read' | 'write' | 'admin';
const SCOPES: readonly Scope[] = ['read', 'write', 'admin'];

const authTokens = z.string().transform((text, ctx) => {
  const tokens: TokenEntry[] = [];
  for (const item of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const i = item.indexOf(':');
    const scope = item.slice(0, i) as Scope;
    const { token, namespace } = parseTokenTail(item.slice(i + 1));
    if (i < 0 || !SCOPES.includes(scope) || token.length < 8 || /\s/.test(token) || namespace === null) {
      // Never echo the token itself.
      ctx.addIssue({
        code: 'custom',
        message: `must be a comma-separated list of ${TOKEN_SYNTAX}, each token at least 8 characters without spaces and each namespace a valid name`,
      });
      return z.NEVER;
    }
    tokens.push(namespace === undefined ? { scope, token } : { scope, token, namespace });
  }
  return tokens;
});

const storagePrefix = z.string().refine(
  (p) =>
    p.endsWith('/') &&
    !p.startsWith('/') &&
    p
      .slice(0, -1)
      .split('/')
      .every((s) => s !== '' && s !== '.' && s !== '..' && !/[\\\u0000-\u001f]/.test(s)),
  'must be a relative folder ending in /, without a leading /, empty segments, . or .., e.g. STORAGE_PREFIX=registry/',
);

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
  SWEEP_INTERVAL: duration('10m').default(600_000),
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
  /**
   * GET /models/:name answers 307 to a signed URL of the version's immutable bytes in the bucket
   * (aws, gcs, azure; ignored, with a log line, where the backend cannot sign one).
   */
  DOWNLOAD_REDIRECT: boolean.default(false),
  /** How long a redirect's signed URL works (S3 and GCS cap it at 7 days). */
  DOWNLOAD_REDIRECT_TTL: duration('5m', { min: 1000, max: 7 * 86_400_000 }).default(300_000),
  /** On SIGTERM / SIGINT, how long in-flight uploads and downloads may take to finish before they are aborted. */
  SHUTDOWN_GRACE: duration('30s').default(30_000),
});

/** The schema of the common settings and of every backend's, one chosen by REMOTE_STORAGE. */
function schema() {
  const backends = allDrivers().map((d) => d.schema) as [z.ZodObject, ...z.ZodObject[]];
  return z.intersection(common, z.discriminatedUnion('REMOTE_STORAGE', backends));
}

export type Config = z.output<typeof common> & BackendSettings;
export type Backend = Config['REMOTE_STORAGE'];
export type BackendConfig<B extends Backend> = Extract<Config, { REMOTE_STORAGE: B }>;

/** Every setting the registry reads, the backends' included. */
function knownVariables(): string[] {
  return [
    ...new Set([
      'REMOTE_STORAGE',
      ...Object.keys(common.shape),
      ...allDrivers().flatMap((d) => Object.keys(d.schema.shape)),
    ]),
  ];
}

/** The settings of the built-in backends and the common ones. */
export const KNOWN_VARIABLES: readonly string[] = knownVariables();

/** Variables whose values are secrets: never echoed in errors or logs (see util/redact.ts). */
export const SECRET_VARIABLES: ReadonlySet<string> = new Set([
  'AUTH_TOKENS',
  ...allDrivers().flatMap((d) => d.secrets ?? []),
]);

/**
 * Names in `env` that look like settings of the registry (by `prefix`) but are none — a misspelt
 * LOCAL_STORAGE_PATH would leave the default in force — each with the settings of its kind.
 */
export function unknownSettings(env: NodeJS.ProcessEnv, prefix: RegExp): { name: string; kin: string[] }[] {
  const known = knownVariables();
  return Object.keys(env)
    .filter((name) => prefix.test(name) && !known.includes(name))
    .map((name) => ({ name, kin: known.filter((setting) => setting.split('_')[0] === name.split('_')[0]) }));
}

/** Settings whose misspelling leaves the registry open: their look-alikes are errors, listed first. */
const SECURITY_SETTINGS = ['AUTH_TOKENS', 'ALLOW_ANONYMOUS'];

/**
 * Variables other programs own, never taken for look-alikes: npm's and Node's, the storage SDKs'
 * own (they read them themselves), and those of shells, terminals, CI systems and Kubernetes.
 */
const FOREIGN_VARIABLES =
  /^(npm_|NPM_|NODE_|TAP_|SSH_|XDG_|LC_|GIT_|GITHUB_|GITLAB_|CI_|RUNNER_|KUBERNETES_|DOCKER_|PIP_|PYTHON|CONDA_|JAVA_|GO[A-Z0-9]*$|CARGO_|RUSTUP_|HOMEBREW_|VSCODE_|TERM|DBUS_|AWS_SDK_|AWS_CONTAINER_|AWS_EC2_|AWS_LAMBDA_|OTEL_)/;
const lookAlikes = () => allDrivers().map((d) => d.lookAlikes ?? {});
const sdkVariables = () => new Set(lookAlikes().flatMap((l) => l.sdkVariables ?? []));
/** How a name starts that only the registry's settings start with (the look-alike check before issue 20). */
const registryPrefixes = () => {
  const backends = [...new Set(lookAlikes().flatMap((l) => l.prefixes ?? []))].map((p) =>
    p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
  );
  return new RegExp(
    `^(${['AUTH(_|$)', 'ALLOW(_|$)', 'REMOTE_', 'CACHE_', 'MODEL_', 'MODELS_', 'MAX_MODEL', 'MAX_EXTRACTED', 'MAX_ARCHIVE', ...backends].join('|')})`,
  );
};
/**
 * Words only the registry's settings use: a name with one of them (S3_BUCKET, API_TOKENS) means
 * one. Not AUTH or TOKEN: SENTRY_AUTH_TOKEN, HF_TOKEN and the like belong to other tools.
 */
const distinctiveWords = () =>
  new Set(['TOKENS', 'ANONYMOUS', 'HISTORY', 'ARCHIVE', 'EXTRACTED', ...lookAlikes().flatMap((l) => l.words ?? [])]);

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
  const known = knownVariables();
  const sdk = sdkVariables();
  const prefixes = registryPrefixes();
  const distinctive = distinctiveWords();
  const found: LookAlike[] = [];
  for (const name of Object.keys(env)) {
    if (known.includes(name) || sdk.has(name) || FOREIGN_VARIABLES.test(name)) continue;
    const upper = name.toUpperCase();
    const words = upper.split('_').filter(Boolean);
    const scored: { setting: string; score: number }[] = [];
    for (const setting of known) {
      const distance = editDistance(upper, setting);
      const settingWords = setting.split('_');
      const shared = settingWords.filter((w) => distinctive.has(w) && (words.includes(w) || words.includes(`${w}S`)));
      const contains = settingWords.length > 1 && `_${upper}_`.includes(`_${setting}_`);
      const sameKind = prefixes.test(upper) && singular(settingWords[0]!) === singular(words[0] ?? '');
      if (distance <= tolerance(setting)) scored.push({ setting, score: distance });
      else if (contains) scored.push({ setting, score: 3 });
      // BUCKET_NAME before AUTO_CREATE_BUCKET for S3_BUCKET: the word leading the setting first.
      else if (shared.length > 0)
        scored.push({ setting, score: 4 + settingWords.indexOf(shared[0]!) / 10 + distance / 1000 });
      else if (sameKind) scored.push({ setting, score: 5 });
    }
    if (scored.length === 0 && !prefixes.test(upper)) continue;
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
    if (value !== undefined && value.trim() === '' && /^(AWS_|GOOGLE_|GCLOUD_|AZURE_|STORAGE_EMULATOR_HOST$)/.test(key))
      delete env[key];
  }
}

/**
 * Parses the environment. Throws ConfigError with one line naming the first bad variable.
 * Empty strings count as unset, so `PORT=` in a .env file means the default.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const drivers = allDrivers();
  const input: Record<string, string> = {};
  for (const key of knownVariables()) {
    const value = env[key];
    if (value !== undefined && value.trim() !== '') input[key] = value.trim();
  }
  const requested = (input.REMOTE_STORAGE ?? 'local').toLowerCase();
  input.REMOTE_STORAGE = drivers.find((d) => d.aliases?.includes(requested))?.name ?? requested;

  const parsed = schema().safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const variable = String(issue.path[0] ?? 'REMOTE_STORAGE');
    const value = input[variable];
    const message =
      variable === 'REMOTE_STORAGE'
        ? `must be one of ${drivers.map((d) => (d.aliases?.length ? `${d.name} (or ${d.aliases.join(', ')})` : d.name)).join(', ')}`
        : value === undefined && issue.code === 'invalid_type'
          ? `is required with REMOTE_STORAGE=${input.REMOTE_STORAGE}: ${drivers.find((d) => d.name === input.REMOTE_STORAGE)?.requiredHints?.[variable] ?? 'set it'}`
          : issue.code === 'invalid_value'
            ? `must be one of ${(issue as { values: unknown[] }).values.join(', ')}`
            : issue.message;
    if (value === undefined) throw new ConfigError(`${variable} ${message}.`);
    const shown = SECRET_VARIABLES.has(variable) ? '(hidden)' : JSON.stringify(value);
    throw new ConfigError(`${variable}=${shown} ${message}.`);
  }
  const config = parsed.data as Config;

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

export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1' || host === '[::1]') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}
