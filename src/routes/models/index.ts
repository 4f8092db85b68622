/**
 * The /models routes, one file per resource. Thin: parse HTTP, call the registry service, shape
 * the answer. This scope holds what they share: the token check, the multipart parser, the
 * archive content types (streamed, never buffered).
 */

import multipart from '@fastify/multipart';
import type { FastifyInstance } from 'fastify';
import authPlugin from '../../plugins/auth.js';
import aliasRoutes from './aliases.js';
import deleteRoutes from './delete.js';
import downloadRoutes from './download.js';
import fileRoutes from './files.js';
import listRoutes from './list.js';
import metaRoutes from './meta.js';
import uploadRoutes from './upload.js';
import versionRoutes from './versions.js';

export { FILES_CSP } from './files.js';

export default async function modelRoutes(app: FastifyInstance) {
  const { config } = app;
  await app.register(authPlugin, { tokens: config.AUTH_TOKENS });
  await app.register(multipart, {
    limits: { files: 1, fields: 64, fieldSize: 2048, parts: 66, fileSize: config.MAX_MODEL_BYTES, headerPairs: 200 },
  });
  // Archives are streamed to the registry as they arrive, never buffered by a parser.
  const archiveTypes = ['application/gzip', 'application/x-gzip', 'application/octet-stream', 'application/x-tar'];
  app.addContentTypeParser(archiveTypes, (_req, payload, done) => done(null, payload));
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  await uploadRoutes(app);
  await downloadRoutes(app);
  await fileRoutes(app);
  await metaRoutes(app);
  await versionRoutes(app);
  await aliasRoutes(app);
  await deleteRoutes(app);
  await listRoutes(app);
}
