/**
 * GET and HEAD /models/:name: the archive of the current version, of `?version=N` or of
 * `name@alias`, with validators, 304, ranges and the `?wait=` long poll; or a 307 to the bytes in
 * the bucket (DOWNLOAD_REDIRECT, redirect.ts).
 */
import type { FastifyInstance } from 'fastify';
import { notModified } from '../../http/conditional.js';
import { contentDigest } from '../../http/digest.js';
import { declared, fields, parsed, type ZodTypeProvider } from '../../http/zod.js';
import { etagOf } from '../../registry/service.js';
import { parseWait } from './params.js';
import { namesStoreCopy, redirectTtl, sendRedirect } from './redirect.js';
import {
  abortSignal,
  describeOrStale,
  downloadCacheControl,
  flagQuery,
  onCurrent,
  prepareDownload,
  refOf,
  refParam,
  versionQuery,
} from './shared.js';

/** The headers a download reads: read preconditions, 304 validators, ranges. */
export const READ_HEADERS = {
  'if-match': declared,
  'if-unmodified-since': declared,
  'if-none-match': declared,
  'if-modified-since': declared,
  range: declared,
  'if-range': declared,
};

export default async function downloadRoutes(app: FastifyInstance) {
  const { registry } = app;
  const ttlMs = await redirectTtl(app.config, registry.storage, app.log);
  // HEAD shares the handler but is registered by hand: Fastify's generated HEAD route would
  // replace our Content-Length with 0. Only GET redirects (307).
  const statuses = [200, 206, 304, 400, 401, 403, 404, 412, 416, 503];
  for (const method of ['GET', 'HEAD'] as const)
    app.withTypeProvider<ZodTypeProvider>().route({
      method,
      url: '/models/:name',
      exposeHeadRoute: false,
      schema: {
        params: fields({ name: refParam }),
        querystring: fields({ version: versionQuery, wait: parsed(parseWait), redirect: flagQuery('redirect') }),
        headers: fields(READ_HEADERS),
      },
      config: { statuses: method === 'GET' ? [...statuses, 307] : statuses },
      handler: async (request, reply) => {
        const { ref, name } = refOf(request.params.name);
        const { version, wait, redirect } = request.query;
        const ifNoneMatch = request.headers['if-none-match'];
        if (wait !== undefined && ifNoneMatch !== undefined && version === undefined) {
          // Long poll: hold while the client's version is still what the name (or alias) points to.
          const { model, stale } = await describeOrStale(app, ref);
          const holds = notModified(request.headers, etagOf(model.sha256), new Date(model.createdAt));
          if (holds || (!stale && (await namesStoreCopy(app, request, model, ttlMs)))) {
            await app.watcher.waitForChange(ref, etagOf(model.sha256), wait * 1000, abortSignal(request, reply));
          }
        }
        // Replaced between describe and open: described again, so that headers match the bytes.
        const { result } = await onCurrent(app, ref, version, async (model, stale) => {
          const etag = etagOf(model.sha256);
          const prepared = prepareDownload(request, reply, {
            etag,
            model,
            stale,
            size: model.size,
            contentType: 'application/gzip',
            cacheControl: downloadCacheControl(app, version),
          });
          if (prepared === 'not-modified') return reply.code(304).send();
          if (await sendRedirect(app, request, reply, { ttlMs, model, stale, redirect })) return reply;
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
}
