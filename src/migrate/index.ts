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
 *
 * The parts: endpoints.ts (the .env files), plan.ts (what each object needs), transfer.ts (one
 * verified copy), output.ts (progress and summary), types.ts (what they share).
 */
import { setMaxListeners } from 'node:events';
import { ConfigError } from '../errors.js';
import type { AliasToSet, Failure } from '../layouts/index.js';
import { ALIAS_RULE, isValidAlias } from '../registry/names.js';
import type { Storage } from '../storage/types.js';
import { mergeSecrets, scrub, secretValues } from '../util/redact.js';
import { open, readEndpoint } from './endpoints.js';
import { lineLogger, Progress, summarize } from './output.js';
import { makePlan, versionOf } from './plan.js';
import { limiter, reason, transfer } from './transfer.js';
import type { MigrateOptions, MigrationSummary, ObjectResult, ObjectStatus, Output, Planned } from './types.js';

export { formatBytes, formatDuration } from './output.js';
export type { MigrateOptions, MigrationSummary, ObjectResult, ObjectStatus, Output } from './types.js';

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
    const { openLayout } = await import('../layouts/index.js');
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
