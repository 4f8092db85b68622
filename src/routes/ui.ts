/**
 * The web page: GET /ui, its two assets, and / redirecting to it. The page is static
 * (src/ui/: one HTML file, one ES module, one stylesheet, read once at start from the source
 * tree, which dist/ resolves to as it does openapi.yaml) and reads the JSON API with fetch, so it
 * needs no build step, no CDN and no token of its own: it shows what the token the user pastes
 * may read. Every response carries a strict Content-Security-Policy (scripts and styles only
 * from this origin, no inline script, no eval, no frames, fetch only to this origin).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errors } from '../errors.js';
import { declared, fields } from '../http/zod.js';

export const UI_DIR = new URL('../../src/ui/', import.meta.url);

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const ASSETS: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
};

export default async function uiRoutes(app: FastifyInstance) {
  const files = new Map<string, { body: Buffer; etag: string; type: string }>();
  for (const [file, type] of Object.entries(ASSETS)) {
    const body = await readFile(new URL(file, UI_DIR));
    files.set(file, { body, type, etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"` });
  }

  const send = (request: FastifyRequest, reply: FastifyReply, file: string) => {
    const asset = files.get(file)!;
    reply.headers({
      'content-security-policy': CONTENT_SECURITY_POLICY,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cross-origin-opener-policy': 'same-origin',
      'cache-control': 'no-cache',
      etag: asset.etag,
    });
    if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send();
    return reply.type(asset.type).send(asset.body);
  };

  const page = { schema: { headers: fields({ 'if-none-match': declared }) }, config: { statuses: [200, 304] } };
  app.get('/', { config: { statuses: [302] } }, async (_request, reply) => reply.redirect('/ui', 302));
  app.get('/ui', page, async (request, reply) => send(request, reply, 'index.html'));
  const assetRoute = { schema: page.schema, config: { statuses: [200, 304, 404] } };
  app.get<{ Params: { asset: string } }>('/ui/:asset', assetRoute, async (request, reply) => {
    const { asset } = request.params;
    if (asset === 'index.html' || !files.has(asset)) throw errors.notFound(request.method, `/ui/${asset}`);
    return send(request, reply, asset);
  });
}
