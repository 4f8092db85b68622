/** migrate: planning — what each source object needs at the destination, and why. */

import { NotFoundError } from '../errors.js';
import { ALIASES_PREFIX, keys } from '../registry/names.js';
import {
  encodeMetadata,
  METADATA_KEYS,
  metadataSha256,
  metadataVersion,
  publishedMetadata,
  type VersionRecord,
  VersionRecords,
} from '../registry/records.js';
import { walkTree } from '../registry/tree.js';
import type { ObjectInfo, Storage } from '../storage/types.js';
import { headOrUndefined, type Limiter } from './transfer.js';
import type { Action, Planned } from './types.js';

export async function makePlan(
  source: Storage,
  destination: Storage,
  limit: Limiter,
  signal?: AbortSignal,
): Promise<Planned[]> {
  const listed = new Map<string, ObjectInfo>();
  const names: string[] = [];
  // Every model at every depth (namespaced ones too: registry/tree.ts), and its history below.
  for await (const info of walkTree(source, '')) {
    const name = keys.nameOf(info.key);
    if (name === undefined) continue;
    names.push(name);
    listed.set(info.key, info);
  }
  // Aliases documents: one walk of .aliases/ for every model.
  const aliasDocs = new Map<string, ObjectInfo>();
  for await (const info of walkTree(source, ALIASES_PREFIX)) {
    const name = keys.aliasesNameOf(info.key);
    if (name === undefined) continue;
    aliasDocs.set(name, info);
    listed.set(info.key, info);
  }
  const records = new VersionRecords(source);
  const perModel = await Promise.all(
    names.map(async (name) => {
      const history: ObjectInfo[] = [];
      const recorded: ObjectInfo[] = [];
      for await (const info of source.list(keys.historyPrefix(name))) {
        if (keys.versionOf(info.key) !== undefined) history.push(info);
        else if (keys.recordVersionOf(info.key) !== undefined) recorded.push(info);
        else continue;
        listed.set(info.key, info);
      }
      // What the registry reads for an object without metadata: the records of its versions.
      const known = new Map<number, VersionRecord>();
      for (const info of recorded) {
        const version = keys.recordVersionOf(info.key)!;
        const record = await limit(() => records.read(name, version));
        if (record) known.set(version, record);
      }
      const numbers = [
        ...history.map((h) => keys.versionOf(h.key)!),
        ...recorded.map((r) => keys.recordVersionOf(r.key)!),
      ];
      const max = Math.max(0, ...numbers);
      const newest = [...known.values()].sort((a, b) => b.version - a.version)[0];
      const entries: Omit<Planned, 'source' | 'destination' | 'replaceable' | 'action'>[] = [
        ...recorded.map((info) => ({
          key: info.key,
          name,
          current: false,
          record: true,
          inferredVersion: keys.recordVersionOf(info.key)!,
          target: () => ({}),
        })),
        ...(aliasDocs.has(name)
          ? [
              {
                key: keys.aliases(name),
                name,
                current: false,
                record: true,
                aliases: true,
                inferredVersion: 0,
                target: () => ({}),
              },
            ]
          : []),
        ...history.map((info) => {
          const version = keys.versionOf(info.key)!;
          const record = known.get(version);
          return {
            key: info.key,
            name,
            current: false,
            record: false,
            inferredVersion: version,
            target: inferred(version, record?.size === info.size ? record : undefined),
          };
        }),
        {
          key: keys.current(name),
          name,
          current: true,
          record: false,
          // The newest record's version when the digest turns out to be its; else the next number.
          inferredVersion: newest && newest.size === listed.get(keys.current(name))?.size ? newest.version : max + 1,
          target: (sha256: string, info: ObjectInfo) =>
            (newest && newest.sha256 === sha256 ? inferred(newest.version, newest) : inferred(max + 1))(sha256, info),
        },
      ];
      const headed = await Promise.all(
        entries.map((e) =>
          limit(async () => {
            signal?.throwIfAborted();
            const known = source.capabilities.listIncludesMetadata ? listed.get(e.key) : undefined;
            const [src, dst] = await Promise.all([known ?? source.head(e.key), headOrUndefined(destination, e.key)]);
            return { ...e, source: src, destination: dst };
          }),
        ),
      );
      return headed.map((h) => {
        const target = ownMetadata(h.source) ?? h.target;
        const at = Number(h.destination && metadataVersion(h.destination.metadata));
        const wanted = Number(metadataVersion(h.source.metadata) ?? h.inferredVersion);
        const published = h.destination && metadataSha256(h.destination.metadata) !== undefined;
        const replaceable = h.current && Number.isInteger(at) && at > 0 && at < wanted && published === true;
        const planned = { ...h, target, replaceable, action: 'copy' as Action };
        return { ...planned, action: decide(planned) } satisfies Planned;
      });
    }),
  ).catch((err) => {
    if (err instanceof NotFoundError)
      throw new Error(`${err.key} disappeared from the source while planning: is a registry writing to it? Rerun.`, {
        cause: err,
      });
    throw err;
  });
  return perModel.flat();
}

/**
 * What to do with one object. A destination object is only ever skipped (identical), or replaced
 * when `replaceable`; anything else there — another version, or an object the registry did not
 * write — is a conflict, reported and left alone (nothing at the destination is overwritten).
 */
export function decide(p: Planned, computedSha256?: string): Action {
  const { source, destination } = p;
  if (!destination) return 'copy';
  // Records carry no metadata: the same bytes are the same record.
  if (p.record) return destination.size === source.size ? 'compare' : 'conflict';
  if (!metadataSha256(destination.metadata)) {
    // An upload in place (S3, GCS, Azure) carries its number but not its digest, which is in its
    // record: the same bytes are the same version. Anything else is not the registry's.
    const uploadedInPlace = metadataVersion(destination.metadata) !== undefined;
    return uploadedInPlace && destination.size === source.size ? 'compare' : 'conflict';
  }
  const sha256 = metadataSha256(source.metadata) ?? computedSha256;
  if (sha256 === undefined) return destination.size === source.size ? 'check' : p.replaceable ? 'copy' : 'conflict';
  const same = metadataSha256(destination.metadata) === sha256;
  const wanted = p.target(sha256, source);
  if (same && METADATA_KEYS.every((k) => destination.metadata[k] === wanted[k])) return 'skip';
  if (!p.replaceable) return 'conflict';
  return same ? 'metadata' : 'copy';
}

export function conflict(p: Planned): Error {
  const d = p.destination!;
  const version = metadataVersion(d.metadata) ?? '?';
  const sha256 = metadataSha256(d.metadata);
  if (p.aliases) {
    return new Error(
      'the destination holds other aliases for this model: they are left alone (nothing at the destination is overwritten); if writers already use the destination, set the aliases there; otherwise move that document away and rerun',
    );
  }
  if (p.record) {
    return new Error(
      'the destination holds another record of this version number: it is left alone (nothing at the destination is overwritten); if writers already use the destination, the migration is done',
    );
  }
  if (!sha256) {
    return new Error(
      'the destination has an object at this key that the registry did not write: it is left alone; move it away and rerun to copy this one',
    );
  }
  if (!p.current) {
    return new Error(
      `the destination's v${version} (sha256 ${sha256.slice(0, 12)}…) differs from the source's: two different versions with one number, so neither is replaced. ` +
        'If writers already use the destination, the migration is done; otherwise move that object away and rerun',
    );
  }
  return new Error(
    `the destination holds another version (v${version}, sha256 ${sha256.slice(0, 12)}…) that the source does not have as an older one: ` +
      'it is left alone (nothing at the destination is overwritten). If writers already use the destination, the migration is done; otherwise move that object away and rerun',
  );
}

/** The source's own metadata, when a registry published the object. */
export function ownMetadata(source: ObjectInfo): Planned['target'] | undefined {
  const metadata = publishedMetadata(source);
  return metadata && (() => metadata);
}

/**
 * The metadata the registry would infer for an object without its own (records.ts): that of
 * its record, or else the version number, the digest of its bytes, no labels and the object's
 * last-modified time as its creation time.
 */
export function inferred(version: number, record?: VersionRecord): Planned['target'] {
  return (sha256, source) =>
    encodeMetadata({
      version,
      sha256: record?.sha256 ?? sha256,
      createdAt: record?.createdAt ?? source.lastModified.toISOString(),
      labels: record?.labels ?? {},
    });
}

export function versionOf(p: Planned): number {
  const v = Number(metadataVersion(p.source.metadata));
  return Number.isInteger(v) && v > 0 ? v : p.inferredVersion;
}
