/**
 * Keeping secrets out of logs and error lines.
 *
 * Two layers:
 *  - by key: pino `redact` paths (REDACT_PATHS) plus a walk over every logged object that
 *    censors any field named like a secret at any depth (Authorization, AUTH_TOKENS,
 *    AWS_SECRET_ACCESS_KEY, ..., *.password, *.secret, *.token);
 *  - by value: every string that is logged (messages, error messages and stacks, fields) has the
 *    configured secret values and well-known secret shapes (the password of a URL's user info,
 *    AccountKey=, SharedAccessSignature=, a SAS `sig=`, `Bearer <token>`) replaced.
 * The second layer catches what the first cannot, e.g. an SDK error whose message quotes the
 * connection string.
 */
import { SECRET_VARIABLES } from '../config.js';

export const CENSOR = '[redacted]';

const SECRET_KEYS = new Set(
  [
    ...SECRET_VARIABLES,
    'authorization',
    'proxy-authorization',
    'cookie',
    'set-cookie',
    'token',
    'x-api-key',
    'api_key',
    'apikey',
    'access_key',
    'account_key',
    'private_key',
    'privatekey',
  ].map((k) => k.toLowerCase()),
);

/** Is a field of this name always censored? (`password`, `clientSecret`, `AUTH_TOKENS`, ...) */
export function isSecretKey(key: string): boolean {
  const k = key.toLowerCase();
  return SECRET_KEYS.has(k) || k.endsWith('password') || k.endsWith('secret');
}

/** pino redact paths (one level per wildcard, so each name is listed at a few depths). */
export const REDACT_PATHS: string[] = [
  ...['authorization', 'cookie', '["proxy-authorization"]'].flatMap((h) => [
    `req.headers${h.startsWith('[') ? h : `.${h}`}`,
    `headers${h.startsWith('[') ? h : `.${h}`}`,
    `*.headers${h.startsWith('[') ? h : `.${h}`}`,
  ]),
  ...['password', 'secret', 'token', ...SECRET_VARIABLES].flatMap((k) => [k, `*.${k}`, `*.*.${k}`]),
];

/** Shapes of secrets in free text, whatever their source. */
const PATTERNS: [RegExp, string][] = [
  // scheme://user:password@host → scheme://user:[redacted]@host
  [/\b([a-z][a-z0-9+.-]*:\/\/[^\s:/?#@]*:)[^\s@/]+@/gi, `$1${CENSOR}@`],
  [/\b(AccountKey=|SharedAccessSignature=)[^;\s"']+/gi, `$1${CENSOR}`],
  [/([?&]sig=)[^&\s"']+/gi, `$1${CENSOR}`],
  // RFC 6750 b64token; short words ("a bearer token") are left alone.
  [/\b(Bearer\s+)[A-Za-z0-9._~+/-]{8,}=*/gi, `$1${CENSOR}`],
];

/**
 * The secret values found in a configuration or an environment: each secret variable's value,
 * each token of AUTH_TOKENS (raw or parsed), the password in MONGODB_URI, the key inside
 * AZURE_STORAGE_CONNECTION_STRING, the SAS signature in AZURE_BLOB_ENDPOINT.
 */
export function secretValues(source: Record<string, unknown>): string[] {
  const found = new Set<string>();
  const add = (v: string | undefined) => {
    const t = v?.trim();
    if (t && t.length >= 6) {
      found.add(t);
      try {
        const decoded = decodeURIComponent(t);
        if (decoded.length >= 6) found.add(decoded);
      } catch {
        // not percent-encoded
      }
    }
  };
  for (const name of SECRET_VARIABLES) {
    const value = source[name];
    if (Array.isArray(value)) {
      for (const item of value)
        if (item && typeof item === 'object' && 'token' in item) add(String((item as { token: unknown }).token));
      continue;
    }
    if (typeof value !== 'string') continue;
    add(value);
    if (name === 'AUTH_TOKENS')
      for (const item of value.split(',')) add(item.slice(item.indexOf(':') + 1).replace(/^[^:]*\/\*:/, '')); // (write:nlp/*:<token>)
    if (name === 'MONGODB_URI') add(/^[a-z+]+:\/\/[^:/@]*:([^@/]*)@/i.exec(value.trim())?.[1]);
    if (name === 'AZURE_STORAGE_CONNECTION_STRING') {
      for (const m of value.matchAll(/(?:AccountKey|SharedAccessSignature)=([^;]+)/gi)) add(m[1]);
      for (const m of value.matchAll(/[?&;]sig=([^&;]+)/gi)) add(m[1]);
    }
  }
  const endpoint = source.AZURE_BLOB_ENDPOINT;
  if (typeof endpoint === 'string') for (const m of endpoint.matchAll(/[?&]sig=([^&]+)/gi)) add(m[1]);
  return mergeSecrets([...found]);
}

/** Secret values of several sources as one list, longest first (so scrub replaces whole ones). */
export function mergeSecrets(...lists: readonly (readonly string[])[]): string[] {
  return [...new Set(lists.flat())].sort((a, b) => b.length - a.length);
}

/** `text` with every secret value and secret-shaped substring replaced by [redacted]. */
export function scrub(text: string, secrets: readonly string[] = []): string {
  // Shapes first, so a URI keeps its user and host and loses only its password.
  let out = text;
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join(CENSOR);
  return out;
}

/**
 * A copy of a logged value with secret-named fields censored and strings scrubbed. Plain objects
 * and arrays are walked (to a bounded depth); Errors are turned into what pino's err serializer
 * would print, scrubbed; other class instances are left to their serializers.
 */
export function scrubValue(value: unknown, secrets: readonly string[], depth = 0): unknown {
  if (typeof value === 'string') return scrub(value, secrets);
  if (value === null || typeof value !== 'object' || depth > 6) return value;
  if (Array.isArray(value)) return value.map((v) => scrubValue(v, secrets, depth + 1));
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    out[key] =
      isSecretKey(key) && v !== undefined && v !== null && v !== '' ? CENSOR : scrubValue(v, secrets, depth + 1);
  }
  return out;
}
