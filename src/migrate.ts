/**
 * `model-registry migrate`: copies every model (namespaced ones too, as GET /models lists them), its
 * history and its metadata from one configured backend to another, each described by a .env file.
 *
 * Per object: source get → destination stage (hashing the bytes on the way) → commit with the
 * source's metadata, so version numbers, digests, creation times and labels survive exactly.
 * A digest that does not match the source's sha256 fails the object and nothing is committed.
 * Objects without metadata ("foreign", put there by hand) get the metadata the registry would
 * infer for them: digest of the bytes, version from the key (or newest history + 1), creation
 * time = last modified, no labels. The source is only read.
 *
 * A model's aliases document (`.aliases/{name}.json`, aliases.ts) is copied as it is, like its
 * records, before its current object.
 *
 * Resume: each commit is atomic and conditional on the destination state seen at planning, and a
 * model's history is committed before its current object, so an interrupted run leaves complete
 * objects only and never a current version without its history. A rerun skips every object
 * whose destination already has the same size and metadata (version, sha256, created-at,
 * labels) and copies the rest.
 */
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseEnv } from 'node:util';
import { type Config, loadConfig, unknownSettings } from './config.js';
import { ConfigError, NotFoundError, PreconditionFailedError } from './errors.js';
import type { AliasToSet, Failure, Layout } from './layouts/index.js';
import { lineLogger, Progress, summarize } from './migrate-output.js';
import { ALIAS_RULE, ALIASES_PREFIX, isValidAlias, keys } from './registry/names.js';
import {
  encodeMetadata,
  METADATA_KEYS,
  metadataSha256,
  metadataVersion,
  publishedMetadata,
  type VersionRecord,
  VersionRecords,
} from './registry/records.js';
import { walkTree } from './registry/tree.js';
import { allDrivers, findDriver } from './storage/drivers.js';
import { createStorage, type InitOptions } from './storage/index.js';
import type { Metadata, ObjectInfo, Storage, WriteCondition } from './storage/types.js';
import type { Logger } from './util/logger.js';
import { mergeSecrets, scrub, secretValues } from './util/redact.js';

export { formatBytes, formatDuration } from './migrate-output.js';

/** Where lines and the progress bar go: a stream, or anything with write(). */
export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface MigrateOptions {
  /** The .env file of the source backend. */
  from: string;
  /** The .env file of the destination backend. */
  to: string;
  /**
   * The layout of the source (default `registry`): `modelstore` or `rasa-nlu-mongodb` import
   * another tool's models (src/layouts/).
   */
  fromLayout?: Layout;
  /** Print the plan; change nothing. */
  dryRun?: boolean;
  /** Objects copied at the same time (default 4). */
  concurrency?: number;
  /** Aborting stops starting new objects and cancels those in flight; nothing partial is left. */
  signal?: AbortSignal;
  /** Per-object lines and the summary (default process.stdout). */
  stdout?: Output;
  /** The progress bar, drawn only when this is a TTY (default process.stderr). */
  stderr?: Output;
  /** Logger for the storage backends; by default their warnings are printed as lines. */
  logger?: Logger;
  /** Called as each object is settled (tests use it to interrupt a run). */
  onObject?: (result: ObjectResult) => void;
}

export type ObjectStatus = 'copied' | 'skipped' | 'failed' | 'would-copy' | 'not-copied';

export interface ObjectResult {
  key: string;
  name: string;
  version: number;
  /** True for the model's current object, false for a history entry or record. */
  current: boolean;
  /** True for a version's record (`.history/{name}/v{N}.json`), copied as it is. */
  record: boolean;
  /** True for the model's aliases document (`.aliases/{name}.json`), copied as it is (a record too). */
  aliases?: boolean;
  size: number;
  status: ObjectStatus;
  /** Bytes written to the destination (0 when only the metadata was updated). */
  bytes: number;
  /** Why it failed, or a note ('identical', 'metadata only'). */
  detail?: string;
}

export interface MigrationSummary {
  objects: ObjectResult[];
  total: number;
  copied: number;
  copiedBytes: number;
  skipped: number;
  failed: number;
  /** Not copied because the run was interrupted. */
  notCopied: number;
  /** In a dry run: objects that would be copied. */
  wouldCopy: number;
  dryRun: boolean;
  /** True when the run stopped (signal) before every object was settled. */
  interrupted: boolean;
  durationMs: number;
  /** The summary line printed at the end. */
  line: string;
  /** 0 when nothing failed and nothing was left out by an interruption; 1 otherwise. */
  exitCode: 0 | 1;
}

/** One backend as named by a .env file. */
interface Endpoint {
  file: string;
  config: Config;
  /** Human description without secrets, e.g. `aws bucket models`. */
  label: string;
  /** Identity for the same-storage check (may contain secrets; never printed). */
  identity: string;
}

type Action = 'copy' | 'skip' | 'metadata' | 'check' | 'compare' | 'conflict';

interface Planned {
  key: string;
  name: string;
  current: boolean;
  /** A record: small JSON, copied byte for byte without metadata (records.ts). */
  record: boolean;
  /** The aliases document, a record of its own kind (aliases.ts). */
  aliases?: boolean;
  source: ObjectInfo;
  /** Version for a source object without version metadata (the one its record or digest gives). */
  inferredVersion: number;
  /**
   * The metadata the destination object gets once the digest of its bytes is known: the
   * source's own, or what the registry infers for an object without it (records.ts).
   */
  target: (sha256: string, source: ObjectInfo) => Metadata;
  destination: ObjectInfo | undefined;
  /**
   * The destination's object may be replaced: it is the current version, written by the
   * registry, older than the source's (a rerun after the source moved on). It is archived into
   * the destination's history first, so nothing is lost. Never otherwise.
   */
  replaceable: boolean;
  action: Action;
}

/** Copies every model between the backends of two .env files. ConfigError for a bad setting. */
export async function migrate(options: MigrateOptions): Promise<MigrationSummary> {
  const started = Date.now();
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const dryRun = options.dryRun ?? false;
  const concurrency = options.concurrency ?? 4;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be a positive integer');
  // Every in-flight read and write listens on the signal: an own one without a listener limit.
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  const signal = controller.signal;
  const abort = () => controller.abort(options.signal?.reason);

  const layout = options.fromLayout ?? 'registry';
  const from = await readEndpoint(options.from, 'source');
  // Rasa NLU's documents are a collection of their own, not the GridFS bucket of that name.
  if (layout === 'rasa-nlu-mongodb') from.identity += ' rasa-nlu-mongodb';
  const to = await readEndpoint(options.to, 'destination');
  if (from.identity === to.identity && from.config.STORAGE_PREFIX === to.config.STORAGE_PREFIX) {
    // (two prefixes of one bucket are two registries)
    throw new ConfigError(
      `${options.from} and ${options.to} name the same storage (${from.label}): point --to at another backend, bucket or directory.`,
    );
  }
  // Every line goes out scrubbed of both sides' secrets (an SDK error may quote a URL with its SAS).
  const secrets = mergeSecrets(secretValues(from.config), secretValues(to.config));
  const scrubbed = (out: Output): Output =>
    Object.assign(Object.create(out) as Output, { write: (text: string) => out.write(scrub(text, secrets)) });
  const progress = new Progress(scrubbed(stdout), scrubbed(stderr), dryRun);
  const logger = options.logger ?? lineLogger((line) => progress.note(line));
  const limit = limiter(concurrency);
  // The source is only read: opened without the working folders, probes or indexes a server makes.
  let source: Storage;
  let failures: Failure[] = [];
  let aliases: AliasToSet[] = [];
  if (layout === 'registry') {
    source = await open(from, logger, { readOnly: true });
  } else {
    progress.note(`reading the ${layout} layout from ${from.label} (${from.file})`);
    const { openLayout } = await import('./layouts/index.js');
    try {
      ({
        store: source,
        failures,
        aliases,
      } = await openLayout(layout, from.config, from.file, () => open(from, logger, { readOnly: true }), limit));
    } catch (err) {
      if (err instanceof ConfigError)
        throw new ConfigError(scrub(err.message, secretValues(from.config)), { cause: err });
      throw err;
    }
  }
  let destination: Storage;
  try {
    destination = await open(to, logger);
  } catch (err) {
    await source.close().catch(() => {});
    throw err;
  }

  const results: ObjectResult[] = [];
  if (options.signal?.aborted) abort();
  options.signal?.addEventListener('abort', abort, { once: true });
  try {
    progress.note(
      `${dryRun ? 'dry run: ' : ''}${layout === 'registry' ? 'migrating' : `importing ${layout}`} from ${from.label} (${from.file}) to ${to.label} (${to.file})`,
    );
    const plan = await makePlan(source, destination, limit, signal);
    const work = plan.filter((p) => p.action !== 'skip');
    progress.begin(
      plan.length + failures.length,
      work.reduce((n, p) => n + p.source.size, 0),
    );
    // What the importer found but cannot copy (a document that is not a model, a missing archive).
    for (const f of failures) {
      const result: ObjectResult = {
        key: f.name,
        name: f.name,
        version: f.version,
        current: false,
        record: false,
        size: 0,
        status: 'failed',
        bytes: 0,
        detail: f.detail,
      };
      results.push(result);
      progress.settle(result);
      options.onObject?.(result);
    }

    const settle = (p: Planned, status: ObjectStatus, bytes: number, detail?: string) => {
      const result: ObjectResult = {
        key: p.key,
        name: p.name,
        version: versionOf(p),
        current: p.current,
        record: p.record,
        ...(p.aliases ? { aliases: true } : {}),
        size: p.source.size,
        status,
        bytes,
        detail,
      };
      results.push(result);
      progress.settle(result);
      options.onObject?.(result);
      return result;
    };
    const run = (p: Planned) =>
      limit(async () => {
        // The bar counts each planned object's size once, whatever happens to it.
        const size = p.action === 'skip' ? 0 : p.source.size;
        let counted = 0;
        const onBytes = (n: number) => {
          const add = Math.min(n, size - counted);
          counted += add;
          progress.bytes(add);
        };
        try {
          if (signal.aborted) return settle(p, 'not-copied', 0, 'interrupted');
          const done = await transfer(source, destination, p, { dryRun, signal, onBytes });
          return settle(p, done.status, done.bytes, done.detail);
        } catch (err) {
          if (signal.aborted) return settle(p, 'not-copied', 0, 'interrupted');
          return settle(p, 'failed', 0, reason(err));
        } finally {
          onBytes(size - counted);
        }
      });

    // History first, then the current object, so the destination's current version never lacks
    // its history; models run side by side.
    const byModel = new Map<string, Planned[]>();
    for (const p of plan) byModel.set(p.name, [...(byModel.get(p.name) ?? []), p]);
    await Promise.all(
      [...byModel.values()].map(async (objects) => {
        const history = await Promise.all(objects.filter((p) => !p.current).map(run));
        const current = objects.find((p) => p.current)!;
        const broken = history.find((r) => r.status === 'failed' || r.status === 'not-copied');
        if (broken && current.action !== 'skip') {
          if (broken.status === 'not-copied' || signal.aborted) settle(current, 'not-copied', 0, 'interrupted');
          else
            settle(
              current,
              'failed',
              0,
              broken.aliases
                ? 'not copied because its aliases document failed'
                : `not copied because its history entry v${broken.version} failed`,
            );
          progress.bytes(current.source.size);
        } else {
          await run(current);
        }
      }),
    );
    // A source layout's tags (modelstore's states) arrive as the model's aliases document, copied
    // with its versions; a tag that is no valid alias name is said, not set.
    for (const a of aliases) {
      if (!isValidAlias(a.alias))
        progress.note(
          `not imported: ${a.origin} tags ${a.name} v${a.version}, but ${JSON.stringify(a.alias)} is no alias name (${ALIAS_RULE})`,
        );
    }
  } finally {
    progress.stop();
    options.signal?.removeEventListener('abort', abort);
    await Promise.allSettled([source.close(), destination.close()]);
  }
  return summarize(results, dryRun, Date.now() - started, progress);
}

// ---- endpoints ----

/** Variables that look like settings of the registry (others in a .env file are ignored). */
const SETTING_PREFIX = /^(REMOTE_|LOCAL_|BUCKET_|AWS_|GCS_|GOOGLE_|AZURE_|MONGODB_|CACHE_|MODEL_|MAX_|AUTO_)/;

/** Settings that are paths: relative values are relative to the .env file's directory. */
const pathVariables = () => allDrivers().flatMap((d) => d.paths ?? []);
/** 'local, aws, gcs, azure or mongodb' */
const backendNames = () =>
  allDrivers()
    .map((d) => d.name)
    .join(', ')
    .replace(/, ([^,]*)$/, ' or $1');

async function readEndpoint(file: string, role: 'source' | 'destination'): Promise<Endpoint> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): pass the path of a .env file with the settings of the ${role} backend.`,
    );
  }
  const dir = path.dirname(path.resolve(file));
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(parseEnv(text))) if (v !== undefined) env[k] = v;
  // A misspelt setting must not send the models somewhere else (LOCAL_STORAGE_PATH would leave
  // the default directory in force): names that look like the registry's must be its own.
  for (const { name, kin } of unknownSettings(env, SETTING_PREFIX)) {
    throw new ConfigError(
      `${file}: ${name} is not a setting of the registry${kin.length ? ` (those of its kind: ${kin.join(', ')})` : ''}: fix its name or remove it.`,
    );
  }
  if (!env.REMOTE_STORAGE) {
    throw new ConfigError(
      `${file}: REMOTE_STORAGE is not set: name the ${role}'s backend explicitly (${backendNames()}), so that a missing line cannot mean local disk.`,
    );
  }
  // Serving settings do not matter here; a production .env (HOST=0.0.0.0) must still load.
  delete env.HOST;
  // A typo in the source's bucket must not create an empty bucket and "migrate" nothing.
  if (role === 'source') env.AUTO_CREATE_BUCKET = 'false';
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError)
      throw new ConfigError(`${file}: ${scrub(err.message, secretValues(env))}`, { cause: err });
    throw err;
  }
  const resolved: Record<string, unknown> = { ...config };
  for (const variable of pathVariables()) {
    const value = resolved[variable];
    if (typeof value === 'string') resolved[variable] = path.resolve(dir, value);
  }
  config = resolved as Config;
  if (role === 'source' && config.REMOTE_STORAGE === 'local') {
    const found = await stat(config.LOCAL_STORAGE_DIR).catch(() => undefined);
    if (!found?.isDirectory()) {
      throw new ConfigError(
        `${file}: LOCAL_STORAGE_DIR=${config.LOCAL_STORAGE_DIR} is not a directory: point it at the directory the registry stores its models in (relative paths are relative to ${file}).`,
      );
    }
  }
  return { file, config, ...describe(config) };
}

function describe(c: Config): { label: string; identity: string } {
  return findDriver(c.REMOTE_STORAGE)!.describe(c as never);
}

async function open(endpoint: Endpoint, logger: Logger, options: InitOptions = {}): Promise<Storage> {
  try {
    return await createStorage(endpoint.config, logger, options);
  } catch (err) {
    if (err instanceof ConfigError)
      throw new ConfigError(`${endpoint.file}: ${scrub(err.message, secretValues(endpoint.config))}`, { cause: err });
    throw err;
  }
}

// ---- plan ----

async function makePlan(
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
function decide(p: Planned, computedSha256?: string): Action {
  const { source, destination } = p;
  if (!destination) return 'copy';
  // Records carry no metadata: the same bytes are the same record.
  if (p.record) return destination.size === source.size ? 'compare' : 'conflict';
  if (!metadataSha256(destination.metadata)) return 'conflict';
  const sha256 = metadataSha256(source.metadata) ?? computedSha256;
  if (sha256 === undefined) return destination.size === source.size ? 'check' : p.replaceable ? 'copy' : 'conflict';
  const same = metadataSha256(destination.metadata) === sha256;
  const wanted = p.target(sha256, source);
  if (same && METADATA_KEYS.every((k) => destination.metadata[k] === wanted[k])) return 'skip';
  if (!p.replaceable) return 'conflict';
  return same ? 'metadata' : 'copy';
}

function conflict(p: Planned): Error {
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
function ownMetadata(source: ObjectInfo): Planned['target'] | undefined {
  const metadata = publishedMetadata(source);
  return metadata && (() => metadata);
}

/**
 * The metadata the registry would infer for an object without its own (records.ts): that of
 * its record, or else the version number, the digest of its bytes, no labels and the object's
 * last-modified time as its creation time.
 */
function inferred(version: number, record?: VersionRecord): Planned['target'] {
  return (sha256, source) =>
    encodeMetadata({
      version,
      sha256: record?.sha256 ?? sha256,
      createdAt: record?.createdAt ?? source.lastModified.toISOString(),
      labels: record?.labels ?? {},
    });
}

function versionOf(p: Planned): number {
  const v = Number(metadataVersion(p.source.metadata));
  return Number.isInteger(v) && v > 0 ? v : p.inferredVersion;
}

// ---- copy ----

interface TransferOptions {
  dryRun: boolean;
  signal: AbortSignal | undefined;
  onBytes: (n: number) => void;
}

async function transfer(
  source: Storage,
  destination: Storage,
  p: Planned,
  o: TransferOptions,
): Promise<{ status: ObjectStatus; bytes: number; detail?: string }> {
  let action = p.action;
  let computed: string | undefined;
  if (action === 'check') {
    // A foreign source object and a destination object of the same size: compare digests first.
    computed = await digestOf(source, p.source, o);
    action = decide(p, computed);
  }
  if (action === 'compare') {
    // A record: the same bytes, or another record of the number.
    const [a, b] = await Promise.all([
      digestOf(source, p.source, o),
      digestOf(destination, p.destination!, { ...o, onBytes: () => {} }),
    ]);
    action = a === b ? 'skip' : 'conflict';
  }
  if (action === 'conflict') throw conflict(p);
  if (action === 'skip') return { status: 'skipped', bytes: 0, detail: 'identical' };
  if (o.dryRun) return { status: 'would-copy', bytes: 0, detail: action === 'metadata' ? 'metadata only' : undefined };
  if (p.replaceable && p.destination) await keepDestinationVersion(destination, p);
  if (action === 'metadata') {
    const metadata = p.target((metadataSha256(p.source.metadata) ?? computed)!, p.source);
    await destination.setMetadata(p.key, p.destination!.token, metadata).catch(changedAtDestination);
    return { status: 'copied', bytes: 0, detail: 'metadata only' };
  }
  return copyObject(source, destination, p, o);
}

async function copyObject(
  source: Storage,
  destination: Storage,
  p: Planned,
  o: TransferOptions,
): Promise<{ status: ObjectStatus; bytes: number; detail?: string }> {
  const { info, body } = await source.get(p.key, { signal: o.signal });
  // The bytes we read are described by `info` (the object may have changed since planning).
  const verifier = new Verifier(metadataSha256(info.metadata), info.size, o.onBytes);
  const piping = pipeline(body, verifier, { signal: o.signal });
  const staging = destination.stage(p.key, verifier, { signal: o.signal });
  const [piped, staged] = await Promise.allSettled([piping, staging]);
  if (piped.status === 'rejected' || staged.status === 'rejected') {
    if (staged.status === 'fulfilled') await destination.discard(staged.value).catch(() => {});
    throw piped.status === 'rejected' ? piped.reason : (staged as PromiseRejectedResult).reason;
  }
  try {
    if (staged.value.size !== info.size)
      throw new Error(`the destination stored ${staged.value.size} of ${info.size} bytes`);
    const metadata = ownMetadata(info)?.(verifier.sha256, info) ?? p.target(verifier.sha256, info);
    if (!p.record && metadataSha256(metadata) !== verifier.sha256) {
      const claimed = `v${metadataVersion(metadata)} says sha256 ${metadataSha256(metadata)}`;
      const actual = `its bytes hash to ${verifier.sha256}`;
      throw new Error(`digest mismatch: the source's record of ${claimed}, ${actual}; nothing was written`);
    }
    const condition: WriteCondition = p.destination ? { ifMatch: p.destination.token } : { ifNoneMatch: true };
    const committed = await destination.commit(staged.value, metadata, condition).catch(changedAtDestination);
    if (committed.size !== info.size)
      throw new Error(`the destination reports ${committed.size} bytes after the commit, the source has ${info.size}`);
    const replaced = p.destination
      ? `replaced v${metadataVersion(p.destination.metadata)}, an older version (kept in history)`
      : undefined;
    return { status: 'copied', bytes: info.size, detail: replaced };
  } finally {
    await destination.discard(staged.value).catch(() => {});
  }
}

/**
 * Archives the destination's current version (older than the source's) into the destination's
 * history before it is replaced. An entry already there must be that very version — the
 * source's history may have brought it — or the object is a conflict, left alone.
 */
async function keepDestinationVersion(destination: Storage, p: Planned): Promise<void> {
  const d = p.destination!;
  const version = Number(metadataVersion(d.metadata));
  const key = keys.history(p.name, version);
  try {
    await destination.copy(p.key, key, {
      sourceToken: d.token,
      metadata: d.metadata,
      condition: { ifNoneMatch: true },
    });
  } catch (err) {
    if (!(err instanceof PreconditionFailedError)) throw err;
    const existing = await headOrUndefined(destination, key);
    if (!existing) changedAtDestination(err); // the current version changed since planning
    const kept = metadataSha256(existing.metadata);
    if (kept !== metadataSha256(d.metadata)) {
      throw new Error(
        `the destination's current v${version} differs from the v${version} in its history ` +
          `(sha256 ${kept?.slice(0, 12) ?? 'unknown'}…): ` +
          'two different versions with one number, so neither is replaced; move one of them away and rerun',
      );
    }
  }
}

async function digestOf(
  storage: Storage,
  seen: ObjectInfo,
  o: Pick<TransferOptions, 'signal' | 'onBytes'>,
): Promise<string> {
  const { info, body } = await storage.get(seen.key, { signal: o.signal });
  if (info.token !== seen.token) {
    body.destroy();
    throw new Error(`${seen.key} changed while migrating: rerun`);
  }
  const verifier = new Verifier(undefined, info.size, o.onBytes);
  await pipeline(
    body,
    verifier,
    // biome-ignore lint/correctness/useYield: the end of the pipeline, a sink that only drains
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const _ of chunks); // drain
    },
    { signal: o.signal },
  );
  return verifier.sha256;
}

function changedAtDestination(err: unknown): never {
  if (err instanceof PreconditionFailedError || err instanceof NotFoundError) {
    throw new Error('the destination object changed during the migration (is a registry writing to it?): rerun', {
      cause: err,
    });
  }
  throw err;
}

/** Passes bytes through, hashing and counting them; fails the stream at the end on a digest or size mismatch. */
class Verifier extends Transform {
  readonly #hash = createHash('sha256');
  #size = 0;
  #sha256: string | undefined;
  constructor(
    readonly expected: string | undefined,
    readonly expectedSize: number,
    readonly onBytes: (n: number) => void,
  ) {
    super();
  }
  get sha256(): string {
    if (this.#sha256 === undefined) throw new Error('digest read before the end of the stream');
    return this.#sha256;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.#hash.update(chunk);
    this.#size += chunk.length;
    this.onBytes(chunk.length);
    cb(null, chunk);
  }
  override _flush(cb: (err?: Error | null) => void): void {
    this.#sha256 = this.#hash.digest('hex');
    if (this.#size !== this.expectedSize)
      return cb(new Error(`read ${this.#size} bytes, the source object has ${this.expectedSize}`));
    if (this.expected !== undefined && this.expected !== this.#sha256) {
      return cb(
        new Error(
          `digest mismatch: the source's metadata says sha256 ${this.expected}, its bytes hash to ${this.#sha256}; nothing was written`,
        ),
      );
    }
    cb();
  }
}

async function headOrUndefined(storage: Storage, key: string): Promise<ObjectInfo | undefined> {
  try {
    return await storage.head(key);
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

function reason(err: unknown): string {
  const e = err as Error;
  return (e?.message ?? String(err)).replace(/\s*\n\s*/g, ' ');
}

type Limiter = <T>(fn: () => Promise<T>) => Promise<T>;

/** Runs at most `n` functions at once, in call order. */
function limiter(n: number): Limiter {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (fn) => {
    if (active < n) active++;
    else await new Promise<void>((resolve) => waiting.push(resolve)); // the slot is handed over
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}
