/**
 * GET /models/:name/files (the manifest of a version's archive) and GET / HEAD
 * /models/:name/files/* (one file out of it), both served from the extraction cache.
 */

import { createHash } from 'node:crypto';
import { closeSync, createReadStream } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { errors } from '../../errors.js';
import { jsonValidators } from '../../http/caching.js';
import { declared, fields, parsed, type ZodTypeProvider } from '../../http/zod.js';
import { READ_HEADERS } from './download.js';
import { contentTypeOf } from './params.js';
import { downloadCacheControl, onCurrent, prepareDownload, refOf, refParam, versionQuery } from './shared.js';

/** The CSP of every /models/:name/files/* response. */
export const FILES_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:";

export default async function fileRoutes(app: FastifyInstance) {
  const { registry } = app;
  const routes = app.withTypeProvider<ZodTypeProvider>();

  // The manifest of ?version=N is as immutable as the archive it lists; without, it moves.
  routes.get(
    '/models/:name/files',
    {
      schema: {
        params: fields({ name: refParam }),
        querystring: fields({ version: versionQuery }),
        headers: fields({ 'if-none-match': declared }),
      },
      config: { statuses: [200, 304, 400, 401, 403, 404, 422, 503] },
      onSend: jsonValidators(app.config.AUTH_TOKENS.length > 0),
    },
    async (request, reply) => {
      const { ref, name } = refOf(request.params.name);
      const {
        model,
        stale,
        result: files,
      } = await onCurrent(app, ref, request.query.version, (model) =>
        registry.withTree(model, async (tree) => tree.files),
      );
      reply.header('cache-control', downloadCacheControl(app, request.query.version));
      // Served from the cache while storage is unreachable: said, as the files themselves say it.
      if (stale) reply.headers({ warning: '110 - "Response is Stale"', 'x-cache': 'STALE' });
      return { name, version: model.version, sha256: model.sha256, files };
    },
  );

  routes.route({
    method: ['GET', 'HEAD'],
    url: '/models/:name/files/*',
    exposeHeadRoute: false,
    schema: {
      // The path inside the archive, unchecked: resolveFile finds it or not.
      params: fields({ name: refParam, '*': parsed((raw) => raw as string) }),
      querystring: fields({ version: versionQuery }),
      headers: fields(READ_HEADERS),
    },
    config: { statuses: [200, 206, 304, 400, 401, 403, 404, 412, 416, 422, 503] },
    handler: async (request, reply) => {
      const { ref, name } = refOf(request.params.name);
      const requested = request.params['*'];
      // A model's files are anyone's bytes (an .html, an .svg with a script): shown inline, but
      // sandboxed into an opaque origin with nothing allowed to load or run, so a file can never
      // act as this origin (read its tokens, call its API).
      reply.header('content-security-policy', FILES_CSP);
      // The file is opened while its tree is held in the cache: once open, an eviction of the
      // tree cannot take it from under the response.
      const {
        model,
        stale,
        result: found,
      } = await onCurrent(app, ref, request.query.version, (model) => registry.openFile(model, requested));
      if (!found) throw errors.fileNotFound(name, model.version, requested);
      const entryTag = createHash('sha256').update(found.entry.path).digest('hex').slice(0, 16);
      const etag = `"sha256:${model.sha256}:${entryTag}"`;
      let prepared: ReturnType<typeof prepareDownload>;
      try {
        prepared = prepareDownload(request, reply, {
          etag,
          model,
          stale,
          size: found.entry.size,
          contentType: contentTypeOf(found.entry.path),
          cacheControl: downloadCacheControl(app, request.query.version),
        });
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
      const highWaterMark = 2 * 2 ** 20;
      return reply.send(createReadStream('', { fd: found.fd, start: range?.start, end: range?.end, highWaterMark }));
    },
  });
}
