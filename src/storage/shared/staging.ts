/**
 * Names of staged uploads, shared by the backends that stage under `.uploads/`. A name records
 * the writer's pid and host (with its pid namespace), so a starting process can tell the leftovers
 * of crashed writers (same host, pid gone — or its own pid from an earlier life) from uploads that
 * other live replicas are still writing.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';

export const UPLOADS_PREFIX = '.uploads/';
/** An upload untouched for this long belongs to a dead writer on some other host. */
export const ABANDONED_AFTER_MS = 60 * 60 * 1000;
/**
 * The same, for backends that date an upload by when it *started* — an S3 multipart upload, an
 * Azure blob holding only uncommitted blocks: a live upload of a large model over a slow link
 * takes hours, and sweeping it would fail it at its very end.
 */
export const UPLOAD_STARTED_MAX_AGE_MS = 24 * ABANDONED_AFTER_MS;

/**
 * Who can judge a writer's pid: processes on the same host *and in the same pid namespace*.
 * Containers sharing a hostname (host networking) are often all pid 1 and cannot see each
 * other's pids, so the tag includes the pid namespace (its inode on Linux); writers under another
 * tag are only judged by age.
 */
export function hostTag(host: string, pidNamespace: string): string {
  return createHash('sha256').update(`${host}\n${pidNamespace}`).digest('hex').slice(0, 8);
}

function pidNamespace(): string {
  try {
    return readlinkSync('/proc/self/ns/pid'); // e.g. pid:[4026531836]
  } catch {
    return ''; // not Linux: the hostname alone
  }
}

const HOST_TAG = hostTag(hostname(), pidNamespace());
const STAGED_NAME = /^(\d+)-([0-9a-f-]{36})-([0-9a-f]{8})\.part$/;

/** A new staged file name: `{pid}-{uuid}-{hosttag}.part`. */
export function newStagedName(): string {
  return `${process.pid}-${randomUUID()}-${HOST_TAG}.part`;
}

/**
 * True when the staged upload `name` (as made by newStagedName), last written at
 * `lastModified`, can no longer be committed by anyone. `active` are this process's own uploads;
 * another host's upload counts as abandoned once untouched for `maxAgeMs`.
 */
export function isAbandoned(
  name: string,
  lastModified: Date,
  active: ReadonlySet<string>,
  maxAgeMs = ABANDONED_AFTER_MS,
): boolean {
  const m = STAGED_NAME.exec(name);
  if (!m || active.has(name)) return false;
  const pid = Number(m[1]);
  const ours = m[3] === HOST_TAG;
  return (ours && (pid === process.pid || !processAlive(pid))) || Date.now() - lastModified.getTime() > maxAgeMs;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie (exited, not yet reaped by its parent: a supervisor that reaps late) still takes
  // signals, but will never commit anything: dead. Its state is the field after "(comm)".
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return true; // no /proc (not Linux): as alive as kill said
  }
}
