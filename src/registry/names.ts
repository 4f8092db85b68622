/** Model names, storage keys derived from them, and labels (SPEC §1, §4). */
import { errors } from '../errors.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const ARCHIVE_SUFFIX = '.tar.gz';
export const HISTORY_PREFIX = '.history/';
const RECORD_SUFFIX = '.json';

export function isValidName(name: string): boolean {
  return NAME.test(name) && !name.endsWith(ARCHIVE_SUFFIX);
}

export function assertName(name: string): void {
  if (!isValidName(name)) throw errors.invalidName(name);
}

export const keys = {
  current: (name: string) => `${name}${ARCHIVE_SUFFIX}`,
  historyPrefix: (name: string) => `${HISTORY_PREFIX}${name}/`,
  history: (name: string, version: number) => `${HISTORY_PREFIX}${name}/v${version}${ARCHIVE_SUFFIX}`,
  /** The registry's record of version N (see records.ts). */
  record: (name: string, version: number) => `${HISTORY_PREFIX}${name}/v${version}${RECORD_SUFFIX}`,
  /** The model name of a root key, or undefined for keys that are not models. */
  nameOf(key: string): string | undefined {
    if (!key.endsWith(ARCHIVE_SUFFIX) || key.includes('/')) return undefined;
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
      throw errors.invalidLabel(`key ${JSON.stringify(key)} must be 1-63 characters from a-z 0-9 _ . -, starting with a letter or digit`);
    }
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(value)) {
      throw errors.invalidLabel(`the value of ${JSON.stringify(key)} contains control characters; send printable text`);
    }
    bytes += Buffer.byteLength(key) + Buffer.byteLength(value);
  }
  if (bytes > LABELS_MAX_BYTES) {
    throw errors.invalidLabel(`labels take ${bytes} bytes, more than the ${LABELS_MAX_BYTES}-byte limit; keep labels small (put large data inside the archive)`);
  }
}
