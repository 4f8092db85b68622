/**
 * Configuration: read once from the environment at start and validated with zod.
 * The Config type is inferred from the schema. A bad value becomes one ConfigError line
 * naming the variable and the fix; the process prints it and exits 1.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { parseDuration, parseSize } from './util/units.js';

const size = (example: string) =>
  z.string().transform((text, ctx) => {
    const bytes = parseSize(text);
    if (bytes === undefined || bytes <= 0) {
      ctx.addIssue({ code: 'custom', message: `is not a size: use bytes or a unit, e.g. ${example}` });
      return z.NEVER;
    }
    return bytes;
  });

export const duration = (example: string) =>
  z.string().transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `is not a duration: use a number and a unit, e.g. ${example}` });
      return z.NEVER;
    }
    return ms;
  });

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
  const tokens: { scope: Scope; token: string }[] = [];
  for (const item of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const i = item.indexOf(':');
    const scope = item.slice(0, i) as Scope;
    const token = item.slice(i + 1);
    if (i < 0 || !SCOPES.includes(scope) || token.length < 8 || /\s/.test(token)) {
      // Never echo the token itself.
      ctx.addIssue({ code: 'custom', message: 'must be a comma-separated list of read:<token>, write:<token> or admin:<token>, each token at least 8 characters without spaces' });
      return z.NEVER;
    }
    tokens.push({ scope, token });
  }
  return tokens;
});

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
});

const local = z.object({
  REMOTE_STORAGE: z.literal('local'),
  LOCAL_STORAGE_DIR: z.string().min(1).default('./data/models'),
});

const schema = z.intersection(common, z.discriminatedUnion('REMOTE_STORAGE', [local]));

export type Config = z.infer<typeof schema>;
export type Backend = Config['REMOTE_STORAGE'];

/** Backends named by SPEC §5 that this build does not ship. */
const NOT_IN_THIS_BUILD = ['aws', 'gcs', 'azure', 'mongodb'];

const KNOWN_VARIABLES = ['REMOTE_STORAGE', ...Object.keys(common.shape), ...Object.keys(local.shape)];

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
  const backend = BACKEND_ALIASES[requested] ?? requested;
  if (NOT_IN_THIS_BUILD.includes(backend)) {
    throw new ConfigError(
      `REMOTE_STORAGE=${input.REMOTE_STORAGE} is not available in this build: only the local backend ships so far; unset REMOTE_STORAGE (or set it to local) and point LOCAL_STORAGE_DIR at a directory.`,
    );
  }
  input.REMOTE_STORAGE = backend;

  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const variable = String(issue.path[0] ?? 'REMOTE_STORAGE');
    const shown = variable === 'AUTH_TOKENS' ? '(hidden)' : JSON.stringify(input[variable] ?? '');
    const message =
      variable === 'REMOTE_STORAGE'
        ? 'must be one of local, aws (or s3, minio), gcs, azure, mongodb'
        : issue.code === 'invalid_value'
          ? `must be one of ${(issue as { values: unknown[] }).values.join(', ')}`
          : issue.message;
    throw new ConfigError(`${variable}=${shown} ${message}.`);
  }
  const config = parsed.data;

  if (config.AUTH_TOKENS.length === 0 && !config.ALLOW_ANONYMOUS && !isLoopback(config.HOST)) {
    throw new ConfigError(
      `HOST=${config.HOST} exposes the registry beyond this machine without authentication: set AUTH_TOKENS (e.g. AUTH_TOKENS=write:<secret>,read:<secret>), or set ALLOW_ANONYMOUS=true to accept that anyone who can reach it may read and write models.`,
    );
  }
  return config;
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1' || host === '[::1]') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}
