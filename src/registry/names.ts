/** Model names, aliases, storage keys derived from them, and labels. */
import { errors } from '../errors.js';
import { isValidNamespacedName } from './namespaces.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const ARCHIVE_SUFFIX = '.tar.gz';
export const HISTORY_PREFIX = '.history/';
export const ALIASES_PREFIX = '.aliases/';
const RECORD_SUFFIX = '.json';

/**
 * A name is 1-4 `/`-separated segments (a namespace path, then the model), each under the rule
 * above, at most 255 bytes in all; see namespaces.ts for what a segment may not be.
 */
export function isValidName(name: string): boolean {
  return isValidSegment(name) || isValidNamespacedName(name, isValidSegment);
}

export function isValidSegment(segment: string): boolean {
  return NAME.test(segment) && !segment.endsWith(ARCHIVE_SUFFIX);
}

export function assertName(name: string): void {
  if (!isValidName(name)) throw errors.invalidName(name);
}

/**
 * Alias names, as MLflow's: letters, digits, `_` and `-`, starting with a letter or `_`, at most
 * 63 characters; not `v<digits>` (it would read as a version number) and not `latest`, which is
 * reserved: `name@latest` always means the current version. Case-sensitive, like OCI tags.
 */
const ALIAS = /^[A-Za-z_][A-Za-z0-9_-]{0,62}$/;
export const LATEST = 'latest';
export const ALIAS_RULE =
  '1-63 characters from A-Z a-z 0-9 _ -, starting with a letter or _, not v<digits> and not latest';

export function isValidAlias(alias: string): boolean {
  return ALIAS.test(alias) && !/^v\d+$/i.test(alias) && alias.toLowerCase() !== LATEST;
}

/** Checks an alias to be set or removed (`latest` is reserved: it always means current). */
export function assertAlias(alias: string): void {
  if (alias.toLowerCase() === LATEST) throw errors.aliasReserved(alias);
  if (!isValidAlias(alias)) throw errors.invalidAlias(alias);
}

/** A model as named where it is read: `name`, or `name@alias` (`name@latest` = current). */
export interface ModelRef {
  name: string;
  /** Undefined for a plain name and for `@latest`. */
  alias?: string;
}

export function parseRef(ref: string): ModelRef {
  const at = ref.indexOf('@');
  const name = at === -1 ? ref : ref.slice(0, at);
  assertName(name);
  if (at === -1) return { name };
  const alias = ref.slice(at + 1);
  if (alias === LATEST) return { name };
  if (!isValidAlias(alias)) throw errors.invalidAlias(alias, name);
  return { name, alias };
}

export const keys = {
  current: (name: string) => `${name}${ARCHIVE_SUFFIX}`,
  historyPrefix: (name: string) => `${HISTORY_PREFIX}${name}/`,
  history: (name: string, version: number) => `${HISTORY_PREFIX}${name}/v${version}${ARCHIVE_SUFFIX}`,
  /** The registry's record of version N (see records.ts). */
  record: (name: string, version: number) => `${HISTORY_PREFIX}${name}/v${version}${RECORD_SUFFIX}`,
  /** The model's aliases document (see aliases.ts). */
  aliases: (name: string) => `${ALIASES_PREFIX}${name}${RECORD_SUFFIX}`,
  /** The model name of an aliases document's key, or undefined. */
  aliasesNameOf(key: string): string | undefined {
    if (!key.startsWith(ALIASES_PREFIX) || !key.endsWith(RECORD_SUFFIX)) return undefined;
    const name = key.slice(ALIASES_PREFIX.length, -RECORD_SUFFIX.length);
    return isValidName(name) ? name : undefined;
  },
  /** The model name of a root key, or undefined for keys that are not models. */
  nameOf(key: string): string | undefined {
    if (!key.endsWith(ARCHIVE_SUFFIX)) return undefined;
    const name = key.slice(0, -ARCHIVE_SUFFIX.length);
    // Only names the API can address (`m.tar.gz.tar.gz` would list a model no URL reaches).
    return isValidName(name) ? name : undefined;
  },
  /** The version of a history key, or undefined. */
  versionOf(key: string): number | undefined {
    const m = /\/v([1-9]\d{0,15})\.tar\.gz$/.exec(key);
    return m ? Number(m[1]) : undefined;
  },
  /** The version of a record key, or undefined. */
  recordVersionOf(key: string): number | undefined {
    const m = /\/v([1-9]\d{0,15})\.json$/.exec(key);
    return m ? Number(m[1]) : undefined;
  },
};

export type Labels = Record<string, string>;

const LABEL_KEY = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
export const LABELS_MAX_BYTES = 2048;

/**
 * Checks labels: keys are lower-case (HTTP header names are case-insensitive), values are
 * printable text without control characters, and keys plus values stay within 2 KiB.
 */
export function assertLabels(labels: Labels): void {
  let bytes = 0;
  for (const [key, value] of Object.entries(labels)) {
    if (!LABEL_KEY.test(key)) {
      const rule = 'must be 1-63 characters from a-z 0-9 _ . -, starting with a letter or digit';
      throw errors.invalidLabel(`key ${JSON.stringify(key)} ${rule}`);
    }
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(value)) {
      throw errors.invalidLabel(`the value of ${JSON.stringify(key)} contains control characters; send printable text`);
    }
    bytes += Buffer.byteLength(key) + Buffer.byteLength(value);
  }
  if (bytes > LABELS_MAX_BYTES) {
    throw errors.invalidLabel(
      `labels take ${bytes} bytes, more than the ${LABELS_MAX_BYTES}-byte limit; ` +
        'keep labels small (put large data inside the archive)',
    );
  }
}
