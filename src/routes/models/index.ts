/**
 * /models routes (SPEC §2). Thin: parse HTTP, call the registry service, shape the answer.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import multipart, { type Multipart, type MultipartFile } from '@fastify/multipart';
import { Readable, Transform } from 'node:stream';
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, open } from 'node:fs';
import { promisify } from 'node:util';
import { resolveFile } from '../../cache/trees.js';
import { errors, PreconditionFailedError, StorageUnavailableError } from '../../errors.js';
import authPlugin from '../../plugins/auth.js';
import type { ArchiveFormat } from '../../registry/archive.js';
import { aliasesOf, type Aliases } from '../../registry/aliases.js';
import { assertLabels, assertName, isValidAlias, isValidName, parseRef, type Labels } from '../../registry/names.js';
import { etagOf, parseUpdatedAtCursor, type ModelVersion } from '../../registry/service.js';
import {
  byteRange,
  contentDigest,
  expectedDigest,
  labelsFromHeaders,
  notModified,
  readPreconditionHolds,
  contentTypeOf,
  parseVersion,
  parseWait,
  writeCondition,
} from './http.js';

const openFd = promisify(open);

/** The CSP of every /models/:name/files/* response. */
export const FILES_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:";

type NameParams = { Params: { name: string } };

/** The JSON a client sees for one version. */
export function view(model: ModelVersion) {
  return {
    name: model.name,
    version: model.version,
    sha256: model.sha256,
    size: model.size,
    createdAt: model.createdAt,
    labels: model.labels,
    storageKey: model.storageKey,
    etag: etagOf(model.sha256),
    // upload, rollback or external (an object another tool wrote), when the registry knows.
    ...(model.origin ? { origin: model.origin } : {}),
  };
}

const UPLOAD_TYPES: Record<string, ArchiveFormat | 'multipart'> = {
  'application/gzip': 'gzip',
  'application/x-gzip': 'gzip',
  'application/octet-stream': 'gzip',
  'application/x-tar': 'tar',
  'multipart/form-data': 'multipart',
};

function uploadKind(request: FastifyRequest): ArchiveFormat | 'multipart' {
  const raw = request.headers['content-type'];
  if (raw === undefined) return 'gzip'; // curl -T sends no Content-Type
  const kind = UPLOAD_TYPES[raw.split(';')[0]!.trim().toLowerCase()];
  if (!kind) throw errors.unsupportedMediaType(raw);
  return kind;
}

/**
 * The headers archive and file downloads share: validators, 304, Range (206 / 416), length.
 * Returns 'not-modified' when the caller should answer 304, else the range to send.
 */
function prepareDownload(
  request: FastifyRequest,
  reply: FastifyReply,
  o: { etag: string; model: ModelVersion; stale: boolean; size: number; contentType: string },
): 'not-modified' | { range?: { start: number; end: number } } {
  const lastModified = new Date(o.model.createdAt);
  if (reply.hasHeader('etag')) {
    // A second attempt (the model was replaced while the first was opening it) starts afresh: a
    // range or digest of the first version must not describe the second one's bytes.
    for (const name of ['content-range', 'content-digest', 'repr-digest', 'content-length', 'content-type', 'content-disposition', 'warning', 'x-cache']) reply.removeHeader(name);
    reply.code(200);
  }
  reply.headers({
    etag: o.etag,
    'last-modified': lastModified.toUTCString(),
    'cache-control': 'no-cache',
    'accept-ranges': 'bytes',
    'x-model-version': String(o.model.version),
  });
  if (o.stale) reply.headers({ warning: '110 - "Response is Stale"', 'x-cache': 'STALE' });
  if (!readPreconditionHolds(request.headers, o.etag, lastModified)) throw errors.readPreconditionFailed(o.etag);
  if (notModified(request.headers, o.etag, lastModified)) return 'not-modified';
  const range = byteRange(request.headers, o.size, o.etag);
  if (range === 'unsatisfiable') {
    reply.header('content-range', `bytes */${o.size}`);
    throw errors.rangeNotSatisfiable(o.size);
  }
  reply.headers({ 'content-type': o.contentType, 'content-length': String(range ? range.end - range.start + 1 : o.size) });
  if (range) reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${o.size}`);
  return { range };
}

function nameParam(request: FastifyRequest<NameParams>): string {
  assertName(request.params.name);
  return request.params.name;
}

/** A model as named where it is read: `name`, `name@alias` or `name@latest`; checked. */
function refParam(request: FastifyRequest<NameParams>): { ref: string; name: string; alias?: string } {
  return { ref: request.params.name, ...parseRef(request.params.name) };
}

/** `true` / `false` from a boolean query parameter, or undefined when absent. */
function parseFlag(raw: unknown, param: string): boolean | undefined {
  if (raw === undefined) return undefined;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw errors.invalidQuery(`${param} must be true or false`);
}

/** The JSON a client sees for one alias. */
function aliasView(name: string, alias: string, target: { version: number; sha256: string; updatedAt?: string }) {
  return { name, alias, version: target.version, sha256: target.sha256, etag: etagOf(target.sha256), ...(target.updatedAt ? { updatedAt: target.updatedAt } : {}) };
}

/** Aborts when the client goes away before the response is complete. */
function abortSignal(request: FastifyRequest, reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  // Already gone (it left while the handler was awaiting something): 'close' will not come again.
  if (reply.raw.closed && !reply.raw.writableFinished) controller.abort(new Error('client disconnected'));
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort(new Error('client disconnected'));
  });
  return controller.signal;
}

/**
 * Aborts an upload whose body stays silent for `ms` (BODY_IDLE_TIMEOUT): a stalled body would
 * otherwise hold a connection and a staged upload for ever. The timer restarts on every chunk,
 * so a slow but steady upload is never cut. `stop()` once the body has been read.
 */
function idleBody(request: FastifyRequest, ms: number): { signal: AbortSignal; stop: () => void } {
  const controller = new AbortController();
  const raw = request.raw;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      // Unread bytes waiting: the server (storage backpressure) is the slow side, not the client.
      if (raw.readableLength > 0) return arm();
      controller.abort(errors.bodyTimeout(ms));
    }, ms);
  };
  const stop = () => {
    clearTimeout(timer);
    raw.off('data', arm);
  };
  if (raw.readableEnded) return { signal: controller.signal, stop };
  raw.on('data', arm);
  raw.once('end', stop);
  raw.once('close', stop);
  arm();
  return { signal: controller.signal, stop };
}

export default async function modelRoutes(app: FastifyInstance) {
  const { registry, config } = app;
  await app.register(authPlugin, { tokens: config.AUTH_TOKENS });
  await app.register(multipart, {
    limits: { files: 1, fields: 64, fieldSize: 2048, parts: 66, fileSize: config.MAX_MODEL_BYTES, headerPairs: 200 },
  });
  // Archives are streamed to the registry as they arrive, never buffered by a parser.
  app.addContentTypeParser(['application/gzip', 'application/x-gzip', 'application/octet-stream', 'application/x-tar'], (_req, payload, done) => done(null, payload));
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  const upload = {
    // Refuse before the body is read: bad name, bad headers, wrong type, declared size too large.
    onRequest: async (request: FastifyRequest<NameParams>) => {
      nameParam(request);
      uploadKind(request);
      writeCondition(request.headers);
      expectedDigest(request.headers);
      const length = Number(request.headers['content-length']);
      if (length > config.MAX_MODEL_BYTES) throw errors.tooLarge(config.MAX_MODEL_BYTES);
    },
  };
  const uploadHandler = async (request: FastifyRequest<NameParams>, reply: FastifyReply) => {
    const name = nameParam(request);
    const kind = uploadKind(request);
    const labels: Labels = labelsFromHeaders(request.headers);
    // From here on, a body that stays silent for BODY_IDLE_TIMEOUT ends the upload with 408.
    const idle = idleBody(request, config.BODY_IDLE_TIMEOUT);
    const idleAbort = new Promise<never>((_resolve, reject) => idle.signal.addEventListener('abort', () => reject(idle.signal.reason), { once: true }));
    idleAbort.catch(() => {});
    let result;
    try {
      let body: Readable;
      let format: ArchiveFormat;
      if (kind === 'multipart') {
        // Walk the parts: label fields before the file, then the file (streamed), then — checked
        // when the file has been read, before anything is committed — only label fields may
        // follow: a second file part is refused instead of silently dropped.
        const parts = request.parts()[Symbol.asyncIterator]();
        const addLabel = (p: Multipart) => {
          if (p.type === 'field' && p.fieldname.startsWith('label.')) labels[p.fieldname.slice('label.'.length)] = String(p.value);
        };
        let part: MultipartFile | undefined;
        for (let next = await Promise.race([parts.next(), idleAbort]); !next.done; next = await Promise.race([parts.next(), idleAbort])) {
          if (next.value.type === 'file') {
            part = next.value;
            break;
          }
          addLabel(next.value);
        }
        if (!part) throw errors.multipartNoFile();
        const rest = new Transform({
          transform: (chunk, _encoding, callback) => callback(null, chunk),
          flush: (callback) => {
            void (async () => {
              for (let next = await parts.next(); !next.done; next = await parts.next()) {
                if (next.value.type === 'file') throw errors.multipartManyFiles();
                addLabel(next.value);
              }
              assertLabels(labels); // labels that came after the file
            })().then(() => callback(), callback);
          },
        });
        part.file.once('error', (err) => rest.destroy(err));
        // registry.put's pipeline reports errors; this only keeps a body that put() refused
        // before reading it (bad name, bad labels) from crashing the process when it errors.
        rest.on('error', () => {});
        body = part.file.pipe(rest);
        format = part.mimetype === 'application/x-tar' || part.filename.endsWith('.tar') ? 'tar' : 'gzip';
      } else {
        // No Content-Type and no body (curl -X PUT without -T): Fastify hands over no stream at all.
        body = (request.body as Readable | undefined) ?? Readable.from([]);
        format = kind;
      }
      result = await registry.put(name, {
        body,
        format,
        labels,
        expected: expectedDigest(request.headers),
        condition: writeCondition(request.headers),
        signal: AbortSignal.any([abortSignal(request, reply), idle.signal]),
      });
    } catch (err) {
      // The pipeline reports an abort as a generic AbortError: answer with the reason instead.
      if (idle.signal.aborted) throw idle.signal.reason;
      throw err;
    } finally {
      idle.stop();
    }
    const { model, created } = result;
    request.log.info({ model: name, version: model.version, bytes: model.size }, created ? 'model created' : 'model replaced');
    return reply
      .code(created ? 201 : 200)
      .header('etag', etagOf(model.sha256))
      .header('location', `/models/${name.split('/').map(encodeURIComponent).join('/')}`)
      .send(view(model));
  };
  app.put<NameParams>('/models/:name', upload, uploadHandler);
  // The same upload as a form post: what `curl -F file=@model.tar.gz URL` sends.
  app.post<NameParams>('/models/:name', upload, uploadHandler);

  // HEAD shares the handler but is registered by hand: Fastify's generated HEAD route would
  // replace our Content-Length with 0.
  app.route<NameParams & { Querystring: { version?: string; wait?: string } }>({
    method: ['GET', 'HEAD'],
    url: '/models/:name',
    exposeHeadRoute: false,
    handler: async (request, reply) => {
      const { ref, name } = refParam(request);
      const version = parseVersion(request.query.version);
      const wait = parseWait(request.query.wait);
      const ifNoneMatch = request.headers['if-none-match'];
      if (wait !== undefined && ifNoneMatch !== undefined && version === undefined) {
        // Long poll: hold while the client's version is still what the name (or alias) points to.
        const { model } = await describeOrStale(ref);
        if (notModified(request.headers, etagOf(model.sha256), new Date(model.createdAt))) {
          await app.watcher.waitForChange(ref, etagOf(model.sha256), wait * 1000, abortSignal(request, reply));
        }
      }
      // Replaced between describe and open: described again, so that headers match the bytes.
      const { result } = await onCurrent(ref, version, async (model, stale) => {
        const etag = etagOf(model.sha256);
        const prepared = prepareDownload(request, reply, { etag, model, stale, size: model.size, contentType: 'application/gzip' });
        if (prepared === 'not-modified') return reply.code(304).send();
        const { range } = prepared;
        // Repr-Digest is the whole archive's (RFC 9530 §3); Content-Digest covers the bytes
        // sent (§2), which are the whole archive only without a range.
        reply.headers({
          'content-disposition': `attachment; filename="${name}.tar.gz"`,
          'repr-digest': contentDigest(model.sha256),
          ...(range ? {} : { 'content-digest': contentDigest(model.sha256) }),
        });
        if (request.method === 'HEAD') {
          if (!stale) reply.header('x-cache', registry.cached(model) ? 'HIT' : 'MISS');
          return reply.send();
        }
        const { body, cache } = await registry.read(model, range, abortSignal(request, reply));
        if (!stale) reply.header('x-cache', cache);
        return reply.send(body);
      });
      return result;
    },
  });

  /**
   * The version to serve; when storage is unreachable, the one this replica last cached (for a
   * name, not for an alias: where an alias points is known only from the storage).
   */
  async function describeOrStale(ref: string, version?: number): Promise<{ model: ModelVersion; stale: boolean }> {
    try {
      return { model: await registry.resolve(ref, version), stale: false };
    } catch (err) {
      if (!(err instanceof StorageUnavailableError)) throw err;
      const { name, alias } = parseRef(ref);
      const model = alias === undefined ? await registry.stale(name, version) : undefined;
      if (!model) throw err;
      app.log.warn({ model: name, version: model.version }, 'storage unavailable; serving the cached version');
      return { model, stale: true };
    }
  }

  /**
   * Describes the version to serve and runs `fn` on it; when the model is replaced between the
   * two (PreconditionFailedError from the read), describes again.
   */
  async function onCurrent<T>(ref: string, version: number | undefined, fn: (model: ModelVersion, stale: boolean) => Promise<T>): Promise<{ model: ModelVersion; stale: boolean; result: T }> {
    for (let attempt = 0; ; attempt++) {
      const { model, stale } = await describeOrStale(ref, version);
      try {
        return { model, stale, result: await fn(model, stale) };
      } catch (err) {
        if (!(err instanceof PreconditionFailedError) || attempt === 3) throw err;
      }
    }
  }

  app.get<NameParams & { Querystring: { version?: string } }>('/models/:name/files', async (request, reply) => {
    const { ref, name } = refParam(request);
    const { model, stale, result: files } = await onCurrent(ref, parseVersion(request.query.version), (model) => registry.withTree(model, async (tree) => tree.files));
    // Served from the cache while storage is unreachable: said, as the files themselves say it.
    if (stale) reply.headers({ warning: '110 - "Response is Stale"', 'x-cache': 'STALE' });
    return { name, version: model.version, sha256: model.sha256, files };
  });

  app.route<{ Params: { name: string; '*': string }; Querystring: { version?: string } }>({
    method: ['GET', 'HEAD'],
    url: '/models/:name/files/*',
    exposeHeadRoute: false,
    handler: async (request, reply) => {
      const { ref, name } = refParam(request as unknown as FastifyRequest<NameParams>);
      const requested = request.params['*'];
      // A model's files are anyone's bytes (an .html, an .svg with a script): shown inline, but
      // sandboxed into an opaque origin with nothing allowed to load or run, so a file can never
      // act as this origin (read its tokens, call its API).
      reply.header('content-security-policy', FILES_CSP);
      // The file is opened while its tree is held in the cache: once open, an eviction of the
      // tree cannot take it from under the response.
      const { model, stale, result: found } = await onCurrent(ref, parseVersion(request.query.version), (model) =>
        registry.withTree(model, async (tree) => {
          const file = await resolveFile(tree, requested);
          return file && { ...file, fd: await openFd(file.file, 'r') };
        }));
      if (!found) throw errors.fileNotFound(name, model.version, requested);
      const etag = `"sha256:${model.sha256}:${createHash('sha256').update(found.entry.path).digest('hex').slice(0, 16)}"`;
      let prepared: ReturnType<typeof prepareDownload>;
      try {
        prepared = prepareDownload(request, reply, { etag, model, stale, size: found.entry.size, contentType: contentTypeOf(found.entry.path) });
      } catch (err) {
        closeSync(found.fd);
        throw err;
      }
      if (prepared === 'not-modified' || request.method === 'HEAD') {
        closeSync(found.fd);
        return prepared === 'not-modified' ? reply.code(304).send() : reply.send();
      }
      const { range } = prepared;
      // The stream closes the file when it ends or is destroyed. (A plain fd reads faster than a
      // FileHandle's stream; see blob-store.ts.)
      return reply.send(createReadStream('', { fd: found.fd, start: range?.start, end: range?.end, highWaterMark: 2 * 2 ** 20 }));
    },
  });

  app.get<NameParams & { Querystring: { version?: string } }>('/models/:name/meta', async (request) => {
    const { ref, name } = refParam(request);
    const model = await registry.resolve(ref, parseVersion(request.query.version));
    return { ...view(model), aliases: aliasesOf(await registry.aliases(name), model.version) };
  });

  app.get<NameParams>('/models/:name/versions', async (request) => {
    const name = nameParam(request);
    const [versions, aliases] = await Promise.all([registry.versions(name), registry.aliases(name)]);
    return { name, current: versions[0]!.version, versions: versions.map((v) => ({ ...view(v), aliases: aliasesOf(aliases, v.version) })) };
  });

  // ---- aliases: movable names for one version (MLflow aliases, OCI tags) ----

  type AliasParams = { Params: { name: string; alias: string } };
  const sortedAliases = (name: string, aliases: Aliases) =>
    [...aliases].sort(([a], [b]) => (a < b ? -1 : 1)).map(([alias, target]) => aliasView(name, alias, target));

  app.get<NameParams>('/models/:name/aliases', async (request) => {
    const name = nameParam(request);
    const [aliases] = await Promise.all([registry.aliases(name), registry.describe(name)]);
    return { name, aliases: sortedAliases(name, aliases) };
  });

  app.get<AliasParams>('/models/:name/aliases/:alias', async (request, reply) => {
    const name = nameParam(request as unknown as FastifyRequest<NameParams>);
    const { alias } = request.params;
    if (alias === 'latest') {
      const current = await registry.describe(name); // reserved: always the current version
      return reply.header('etag', etagOf(current.sha256)).send(aliasView(name, alias, current));
    }
    parseRef(`${name}@${alias}`); // an invalid alias is 400, not 404
    const target = (await registry.aliases(name)).get(alias);
    if (!target) {
      await registry.describe(name);
      throw errors.aliasNotFound(name, alias);
    }
    return reply.header('etag', etagOf(target.sha256)).send(aliasView(name, alias, target));
  });

  app.put<AliasParams & { Body: unknown }>('/models/:name/aliases/:alias', async (request, reply) => {
    const name = nameParam(request as unknown as FastifyRequest<NameParams>);
    const { alias } = request.params;
    const condition = writeCondition(request.headers);
    const body = request.body as { version?: unknown } | undefined;
    if (!body || typeof body !== 'object' || Array.isArray(body) || body.version === undefined) {
      throw errors.invalidBody(`send JSON {"version": N} with the version alias ${JSON.stringify(alias)} should point to`);
    }
    if (typeof body.version !== 'number') throw errors.invalidVersion(JSON.stringify(body.version));
    const version = parseVersion(body.version)!;
    const { model, created } = await registry.setAlias(name, alias, version, condition);
    request.log.info({ model: name, alias, version }, created ? 'alias created' : 'alias moved');
    return reply
      .code(created ? 201 : 200)
      .header('etag', etagOf(model.sha256))
      .send(aliasView(name, alias, model));
  });

  app.delete<AliasParams>('/models/:name/aliases/:alias', async (request, reply) => {
    const name = nameParam(request as unknown as FastifyRequest<NameParams>);
    await registry.removeAlias(name, request.params.alias, writeCondition(request.headers));
    request.log.info({ model: name, alias: request.params.alias }, 'alias removed');
    return reply.code(204).send();
  });

  app.post<NameParams & { Body: unknown }>('/models/:name/rollback', async (request, reply) => {
    const name = nameParam(request);
    const body = request.body as { version?: unknown } | undefined;
    if (!body || typeof body !== 'object' || body.version === undefined) {
      throw errors.invalidBody('send JSON {"version": N} with the version to make current');
    }
    // A JSON number, as documented: not "3" nor [3] (which String() would turn into 3).
    if (typeof body.version !== 'number') throw errors.invalidVersion(JSON.stringify(body.version), 'body');
    const version = parseVersion(body.version, 'body');
    const model = await registry.rollback(name, version!, writeCondition(request.headers));
    request.log.info({ model: name, from: version, version: model.version }, 'model rolled back');
    return reply.header('etag', etagOf(model.sha256)).send(view(model));
  });

  app.delete<NameParams & { Querystring: { version?: string; force?: string } }>('/models/:name', async (request, reply) => {
    const name = nameParam(request);
    const version = parseVersion(request.query.version);
    const force = parseFlag(request.query.force, 'force') ?? false;
    await registry.delete(name, version, writeCondition(request.headers), { force });
    request.log.info({ model: name, version }, 'model deleted');
    return reply.code(204).send();
  });

  app.get<{ Querystring: Record<string, string | string[] | undefined> & { prefix?: string; limit?: string; cursor?: string; alias?: string; sort?: string } }>('/models', async (request) => {
    const { prefix, limit: rawLimit, cursor: rawCursor, alias, sort = 'name' } = request.query;
    for (const [param, value] of Object.entries(request.query)) {
      if (Array.isArray(value)) throw errors.invalidQuery(`${param} was given ${value.length} times; give it once (several labels are several label.<key> parameters)`);
    }
    if (sort !== 'name' && sort !== 'updatedAt') throw errors.invalidQuery(`sort must be name (the default) or updatedAt, not ${JSON.stringify(sort)}`);
    if (alias !== undefined && !isValidAlias(alias)) {
      throw errors.invalidQuery(`alias ${JSON.stringify(alias)} is not an alias name (1-63 characters from A-Z a-z 0-9 _ -, starting with a letter or _; latest is every model's current version, so filter without it)`);
    }
    const labels: Labels = {};
    for (const [param, value] of Object.entries(request.query)) {
      if (param.startsWith('label.')) labels[param.slice('label.'.length)] = value as string;
    }
    assertLabels(labels);
    if (prefix !== undefined && (prefix.length > 255 || !/^([A-Za-z0-9][A-Za-z0-9._-]{0,127}\/){0,3}[A-Za-z0-9._-]{0,128}$/.test(prefix))) {
      throw errors.invalidQuery('prefix may hold only the characters of model names (A-Z a-z 0-9 . _ -) and up to 3 namespaces ending in / (e.g. nlp/), at most 128 per segment and 255 in all');
    }
    const limit = rawLimit === undefined ? 100 : Number(rawLimit);
    if (!/^\d+$/.test(rawLimit ?? '100') || limit < 1 || limit > 1000) {
      throw errors.invalidQuery('limit must be a whole number from 1 to 1000');
    }
    let cursor: string | undefined;
    if (rawCursor !== undefined) {
      cursor = Buffer.from(rawCursor, 'base64url').toString('utf8');
      const valid = sort === 'name' ? isValidName(cursor) : isValidName(parseUpdatedAtCursor(cursor)?.name ?? '');
      if (!valid) throw errors.invalidQuery(`cursor is not one this server returned for sort=${sort}; pass nextCursor from the previous page, with the same sort`);
    }
    const page = await registry.list({ prefix, limit, cursor, labels, alias, sort });
    return {
      models: page.models,
      nextCursor: page.nextCursor === null ? null : Buffer.from(page.nextCursor).toString('base64url'),
    };
  });
}
