/**
 * The layout of the `modelstore` Python library (operatorai/modelstore 0.0.8x), read through one
 * of the registry's own backends opened read-only — local files, S3, GCS, Azure alike:
 *
 * ```
 * operatorai-model-store/
 *   domains/{domain}.json                        one per domain: its newest model's metadata
 *   model_states/{state}.json                    {"state_name", "created"} per state
 *   {domain}/versions/{model_id}.json            every live model's metadata (JSON, below)
 *   {domain}/versions/{state}/{model_id}.json    the models a state tags (a copy of the metadata)
 *   {domain}/versions/modelstore-deleted/…       models deleted with delete_model (reserved state)
 *   {domain}/{%Y.%m.%d-%H.%M.%S}/{model_id}/artifacts.tar.gz   the archive itself
 * ```
 *
 * The metadata of a model: `model.{domain, model_id, model_type.library}`, `storage.{type, root,
 * path}` (file system) or `storage.{bucket, prefix}` / `storage.{container, prefix}` (where the
 * archive is), `modelstore` (library version), `code.{runtime, user, created, dependencies, git}`.
 * `code.created` (`%Y/%m/%d/%H:%M:%S`, the uploader's local time) is what modelstore itself sorts
 * by. The store must be at the root of the bucket / directory (modelstore's default root_prefix).
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { ConfigError, NotFoundError } from '../errors.js';
import { assertLabels, isValidName, LABELS_MAX_BYTES, type Labels } from '../registry/names.js';
import type { ObjectInfo, Storage } from '../storage/types.js';
import type { AliasToSet, Failure } from './index.js';
import type { ImportedModel, ImportedVersion } from './virtual-store.js';

export const MODELSTORE_ROOT = 'operatorai-model-store/';
/** modelstore's own state for deleted models (ReservedModelStates.DELETED). */
const DELETED_STATE = 'modelstore-deleted';

export interface ModelstoreModel {
  domain: string;
  modelId: string;
  /** `code.created` as an ISO time (read as UTC: modelstore writes local time without a zone). */
  createdAt: string;
  /** The archive's key in the storage, or undefined when the metadata names no location we can read. */
  archiveKey: string | undefined;
  /** True for a model deleted with modelstore's delete_model (it keeps its place in the order). */
  deleted: boolean;
  /** The states that tag it (reserved ones excepted). */
  states: string[];
  /** The metadata JSON as modelstore wrote it. */
  meta: Record<string, unknown>;
  /** The metadata file, for ordering models created in the same second. */
  metaInfo: ObjectInfo;
}

export interface ModelstoreStore {
  domains: string[];
  states: string[];
  /** Per domain, in upload order (deleted ones included). */
  models: Map<string, ModelstoreModel[]>;
}

/** Reads the whole catalogue (not the archives). ConfigError when `storage` holds no modelstore store. */
export async function readModelstore(storage: Storage, where: string): Promise<ModelstoreStore> {
  const domains: string[] = [];
  for (const info of await listJson(storage, `${MODELSTORE_ROOT}domains/`)) domains.push(stem(info.key));
  if (domains.length === 0) {
    const registry = await first(storage.list(''));
    throw new ConfigError(
      `${where} holds no modelstore store: there is no ${MODELSTORE_ROOT}domains/*.json. Point --from at the bucket or directory modelstore writes to (the one that contains ${MODELSTORE_ROOT})` +
        (registry ? ', or drop --from-layout: it looks like a registry store' : ''),
    );
  }
  const states: string[] = [];
  for (const info of await listJson(storage, `${MODELSTORE_ROOT}model_states/`)) {
    const state = stem(info.key);
    if (state !== DELETED_STATE) states.push(state);
  }
  const models = new Map<string, ModelstoreModel[]>();
  for (const domain of domains) {
    const base = `${MODELSTORE_ROOT}${domain}/versions/`;
    const tagged = new Map<string, string[]>();
    for (const state of states) {
      for (const info of await listJson(storage, `${base}${state}/`))
        tagged.set(stem(info.key), [...(tagged.get(stem(info.key)) ?? []), state]);
    }
    const found: ModelstoreModel[] = [];
    const seen = new Set<string>();
    for (const [prefix, deleted] of [
      [base, false],
      [`${base}${DELETED_STATE}/`, true],
    ] as const) {
      for (const info of await listJson(storage, prefix)) {
        const modelId = stem(info.key);
        if (seen.has(modelId)) continue; // a live model wins over an older deleted one of its id
        seen.add(modelId);
        const meta = await readJson(storage, info.key);
        found.push({
          domain,
          modelId,
          createdAt: createdOf(meta, info),
          archiveKey: archiveKeyOf(meta),
          deleted,
          states: deleted ? [] : (tagged.get(modelId) ?? []),
          meta,
          metaInfo: info,
        });
      }
    }
    // modelstore's order (code.created, in whole seconds), then the metadata file's own time
    // (milliseconds or better on every backend) for models uploaded within the same second.
    found.sort(
      (a, b) =>
        a.createdAt.localeCompare(b.createdAt) ||
        a.metaInfo.lastModified.getTime() - b.metaInfo.lastModified.getTime() ||
        a.modelId.localeCompare(b.modelId),
    );
    models.set(domain, found);
  }
  return { domains, states, models };
}

export interface ModelstoreImport {
  models: ImportedModel[];
  failures: Failure[];
  aliases: AliasToSet[];
}

/**
 * Each domain becomes a model of that name, each of its models a version in upload order (a
 * model modelstore deleted keeps its number, unused, so numbers stay put across reruns). The
 * archive bytes are unchanged; they are hashed here and hashed again while they are copied.
 */
export async function importModelstore(
  storage: Storage,
  where: string,
  limit: <T>(fn: () => Promise<T>) => Promise<T>,
): Promise<ModelstoreImport> {
  const store = await readModelstore(storage, where);
  const failures: Failure[] = [];
  const aliases: AliasToSet[] = [];
  const models: ImportedModel[] = [];
  for (const domain of store.domains) {
    const listed = store.models.get(domain) ?? [];
    if (!isValidName(domain)) {
      failures.push({
        name: domain,
        version: 0,
        detail: `the modelstore domain ${JSON.stringify(domain)} is not a model name the registry accepts (A-Z a-z 0-9 . _ -, at most 128)`,
      });
      continue;
    }
    const versions = await Promise.all(
      listed.map((m, i) =>
        limit(async (): Promise<ImportedVersion | undefined> => {
          const version = i + 1;
          if (m.deleted) return undefined;
          if (!m.archiveKey) {
            failures.push({
              name: domain,
              version,
              detail: `modelstore model ${m.modelId}: its metadata names no archive location the registry can read (storage.path / storage.prefix)`,
            });
            return undefined;
          }
          try {
            const { sha256, size } = await digest(storage, m.archiveKey);
            const key = m.archiveKey;
            return {
              version,
              sha256,
              size,
              createdAt: m.createdAt,
              labels: labelsOf(m),
              origin: key,
              open: async (o) => (await storage.get(key, o)).body,
            };
          } catch (err) {
            if (!(err instanceof NotFoundError)) throw err;
            failures.push({
              name: domain,
              version,
              detail: `modelstore model ${m.modelId}: its archive ${m.archiveKey} is missing`,
            });
            return undefined;
          }
        }),
      ),
    );
    const present = versions.filter((v): v is ImportedVersion => v !== undefined);
    if (present.length === 0) continue;
    models.push({ name: domain, versions: present });
    listed.forEach((m, i) => {
      for (const state of m.states)
        if (present.some((v) => v.version === i + 1))
          aliases.push({
            name: domain,
            alias: state,
            version: i + 1,
            origin: `modelstore state ${state} of model ${m.modelId}`,
          });
    });
  }
  return { models, failures, aliases };
}

/** modelstore's metadata as labels: who uploaded, the library versions, the original model id. */
export function labelsOf(m: ModelstoreModel): Labels {
  const meta = m.meta;
  const code = (object(meta.code) ?? {}) as Record<string, unknown>;
  const model = object(meta.model) ?? {};
  const labels: Labels = { 'modelstore.model_id': m.modelId };
  const FLAG = 'modelstore.labels_truncated';
  let truncated = false;
  const add = (key: string, value: unknown) => {
    if (typeof value !== 'string' || value === '') return;
    const k = key
      .toLowerCase()
      .replace(/[^a-z0-9_.-]/g, '_')
      .slice(0, 63);
    // eslint-disable-next-line no-control-regex
    const v = value.replace(/[\u0000-\u001f\u007f]/g, ' ');
    const candidate = { ...labels, [k]: v };
    // Room is kept for the flag that says some did not fit (labels are at most 2 KiB).
    if (bytesOf(candidate) + FLAG.length + 4 > LABELS_MAX_BYTES) {
      truncated = true;
      return;
    }
    labels[k] = v;
  };
  add('modelstore.uploader', code.user);
  add('modelstore.version', meta.modelstore);
  add('modelstore.runtime', code.runtime);
  add('modelstore.library', object(model.model_type)?.library);
  add('modelstore.created', code.created);
  for (const [k, v] of Object.entries(object(code.git) ?? {}).sort()) add(`modelstore.git.${k}`, v);
  for (const [k, v] of Object.entries(object(code.dependencies) ?? {}).sort()) add(`lib.${k}`, v);
  if (truncated) labels[FLAG] = 'true';
  assertLabels(labels);
  return labels;
}

function bytesOf(labels: Labels): number {
  return Object.entries(labels).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
}

function createdOf(meta: Record<string, unknown>, info: ObjectInfo): string {
  const raw = object(meta.code)?.created ?? object(meta.meta)?.created;
  const m = typeof raw === 'string' ? /^(\d{4})\/(\d{2})\/(\d{2})\/(\d{2}):(\d{2}):(\d{2})$/.exec(raw) : null;
  if (!m) return info.lastModified.toISOString();
  return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!)).toISOString();
}

/**
 * The archive's key: from `storage.prefix` (buckets, containers) or `storage.path` (the file
 * system, an absolute path on the machine that uploaded), cut at the root prefix so that a store
 * copied or mounted elsewhere is still found.
 */
function archiveKeyOf(meta: Record<string, unknown>): string | undefined {
  const s = object(meta.storage) ?? {};
  for (const value of [s.prefix, s.path]) {
    if (typeof value !== 'string') continue;
    const at = value.replace(/\\/g, '/').lastIndexOf(MODELSTORE_ROOT);
    if (at !== -1) return value.replace(/\\/g, '/').slice(at);
  }
  return undefined;
}

async function listJson(storage: Storage, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of storage.list(prefix)) if (info.key.endsWith('.json')) out.push(info);
  return out;
}

async function readJson(storage: Storage, key: string): Promise<Record<string, unknown>> {
  const { body } = await storage.get(key);
  const chunks: Buffer[] = [];
  for await (const chunk of body as Readable) chunks.push(chunk as Buffer);
  try {
    const value: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (object(value)) return value as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new Error(`${key} is not modelstore metadata (not a JSON object)`);
}

async function digest(storage: Storage, key: string): Promise<{ sha256: string; size: number }> {
  const { body } = await storage.get(key);
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of body as Readable) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

function object(value: unknown): Record<string, unknown> | undefined {
  return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function stem(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1, -'.json'.length);
}

async function first<T>(items: AsyncIterable<T>): Promise<T | undefined> {
  for await (const item of items) return item;
  return undefined;
}
