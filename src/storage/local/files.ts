/** Tokens, object info and durability of the local backend's files. */
import type { BigIntStats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PreconditionFailedError } from '../errors.js';
import type { Metadata, ObjectInfo, WriteCondition } from '../types.js';

/** A lock not refreshed for this long is another process's that died (proper-lockfile). */
export const LOCK_STALE_MS = 10_000;

export function checkCondition(key: string, current: BigIntStats | undefined, condition: WriteCondition): void {
  if ('ifNoneMatch' in condition && current) throw new PreconditionFailedError(key);
  if ('ifMatch' in condition && (!current || tokenOf(current) !== condition.ifMatch)) {
    throw new PreconditionFailedError(key);
  }
}

export function tokenOf(stats: BigIntStats): string {
  return `${stats.ino}-${stats.mtimeNs}-${stats.size}`;
}

export function toInfo(key: string, stats: BigIntStats, metadata: Metadata): ObjectInfo {
  return {
    key,
    size: Number(stats.size),
    lastModified: new Date(Number(stats.mtimeMs)),
    token: tokenOf(stats),
    metadata,
  };
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r').catch(() => undefined);
  if (!handle) return;
  await handle.sync().catch(() => {}); // not every filesystem supports fsync on directories
  await handle.close();
}

export async function syncFile(file: string): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Lock directories a killed process left. A holder refreshes its lock every LOCK_STALE_MS / 2,
 * so one untouched for twice LOCK_STALE_MS has no holder; most keys' locks are taken again (and
 * found stale then), but a history key is written once, and its lock would stay forever.
 */
export async function sweepLocks(dir: string): Promise<number> {
  let removed = 0;
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    const full = path.join(dir, name);
    const stats = await fs.stat(full).catch(() => undefined);
    if (!stats || Date.now() - stats.mtimeMs <= 2 * LOCK_STALE_MS) continue;
    await fs.rm(full, { recursive: true, force: true });
    removed++;
  }
  return removed;
}
