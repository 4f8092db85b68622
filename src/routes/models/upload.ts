/**
 * PUT and POST /models/:name: an upload, streamed to the registry service, which validates it as
 * it arrives and publishes it as the new current version (or refuses it, storing nothing).
 */

import { Readable, Transform } from 'node:stream';
import type { Multipart, MultipartFile } from '@fastify/multipart';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errors } from '../../errors.js';
import { writeCondition } from '../../http/conditional.js';
import { expectedDigest } from '../../http/digest.js';
import { declared, fields, type ZodTypeProvider } from '../../http/zod.js';
import type { ArchiveFormat } from '../../registry/archive.js';
import { assertLabels, assertName, type Labels } from '../../registry/names.js';
import { etagOf } from '../../registry/service.js';
import { labelsFromHeaders } from './params.js';
import { abortSignal, nameParam, view } from './shared.js';

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

/**
 * The archive of a multipart body, streamed: label fields before the file, then the file, then —
 * checked once the file has been read, before anything is committed — only label fields may
 * follow: a second file part is refused instead of silently dropped.
 */
async function multipartBody(
  request: FastifyRequest,
  labels: Labels,
  idleAbort: Promise<never>,
): Promise<{ body: Readable; format: ArchiveFormat }> {
  const parts = request.parts()[Symbol.asyncIterator]();
  const addLabel = (p: Multipart) => {
    if (p.type !== 'field' || !p.fieldname.startsWith('label.')) return;
    labels[p.fieldname.slice('label.'.length)] = String(p.value);
  };
  let part: MultipartFile | undefined;
  const nextPart = () => Promise.race([parts.next(), idleAbort]);
  for (let next = await nextPart(); !next.done; next = await nextPart()) {
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
  const format = part.mimetype === 'application/x-tar' || part.filename.endsWith('.tar') ? 'tar' : 'gzip';
  return { body: part.file.pipe(rest), format };
}

export default async function uploadRoutes(app: FastifyInstance) {
  const { registry, config } = app;
  for (const method of ['PUT', 'POST'] as const) {
    // POST is the same upload as a form post: what `curl -F file=@model.tar.gz URL` sends.
    app.withTypeProvider<ZodTypeProvider>().route({
      method,
      url: '/models/:name',
      schema: {
        params: fields({ name: nameParam }),
        headers: fields({
          'if-none-match': declared,
          'if-match': declared,
          'content-digest': declared,
          'x-checksum-sha256': declared,
          'x-model-label-*': declared, // every X-Model-Label-<key> (read by labelsFromHeaders)
        }),
      },
      config: { statuses: [200, 201, 400, 401, 403, 408, 409, 412, 413, 415, 422, 503, 507] },
      // Refuse before the body is read: bad name, bad headers, wrong type, declared size too large.
      // (The schema's checks run only once the body parser has started.)
      onRequest: async (request) => {
        assertName((request.params as { name: string }).name);
        uploadKind(request);
        writeCondition(request.headers);
        expectedDigest(request.headers);
        const length = Number(request.headers['content-length']);
        if (length > config.MAX_MODEL_BYTES) throw errors.tooLarge(config.MAX_MODEL_BYTES);
      },
      handler: async (request, reply) => {
        const { name } = request.params;
        const kind = uploadKind(request);
        const labels: Labels = labelsFromHeaders(request.headers);
        // From here on, a body that stays silent for BODY_IDLE_TIMEOUT ends the upload with 408.
        const idle = idleBody(request, config.BODY_IDLE_TIMEOUT);
        const idleAbort = new Promise<never>((_resolve, reject) =>
          idle.signal.addEventListener('abort', () => reject(idle.signal.reason), { once: true }),
        );
        idleAbort.catch(() => {});
        let result: Awaited<ReturnType<typeof registry.put>>;
        try {
          const { body, format } =
            kind === 'multipart'
              ? await multipartBody(request, labels, idleAbort)
              : // No Content-Type and no body (curl -X PUT without -T): Fastify hands over no stream at all.
                { body: (request.body as Readable | undefined) ?? Readable.from([]), format: kind };
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
        const what = created ? 'model created' : 'model replaced';
        request.log.info({ model: name, version: model.version, bytes: model.size }, what);
        return reply
          .code(created ? 201 : 200)
          .header('etag', etagOf(model.sha256))
          .header('location', `/models/${name.split('/').map(encodeURIComponent).join('/')}`)
          .send(view(model));
      },
    });
  }
}
