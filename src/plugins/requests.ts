/**
 * Per-request bookkeeping for operations:
 *  - one log line per request (Fastify's own 'incoming request' / 'request completed' pair is
 *    turned off with disableRequestLogging): reqId, method, url, route template, model name,
 *    status, bytes in and out (Content-Length, when known) and duration in ms. A request whose
 *    client or connection went away before the response was complete is logged once too, with
 *    `aborted: true`;
 *  - the requests in flight (`app.inflight`), so a graceful shutdown can wait for uploads and
 *    downloads to finish, and, once it aborts them, for their handlers to clean up (an aborted
 *    upload discards its staged data before its handler returns);
 *  - the request id: a client's X-Request-Id (when it is a sane token) or a random UUID, echoed
 *    in the X-Request-Id response header;
 *  - while the server is closing, responses carry `Connection: close`, so kept-alive connections
 *    end with their last response instead of delaying the shutdown.
 *
 * Wrapped with fastify-plugin so the hooks apply to every route, including 404s.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { contentLength as length } from '../util/content-length.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Requests whose handling has not finished (see InFlight). */
    inflight: InFlight;
  }
}

/**
 * The requests being handled. A request leaves the set once its response is closed (finished
 * or aborted) and its handler has produced a reply, i.e. after any cleanup the handler awaits.
 */
export class InFlight {
  readonly #pending = new Set<object>();
  #waiters: (() => void)[] = [];

  get size(): number {
    return this.#pending.size;
  }

  add(token: object): void {
    this.#pending.add(token);
  }

  delete(token: object): void {
    if (!this.#pending.delete(token) || this.#pending.size > 0) return;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves once no request is in flight. */
  drained(): Promise<void> {
    if (this.#pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/** Fastify's genReqId: the client's X-Request-Id when it is a plain token, else a UUID. */
export function requestId(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

interface State {
  sent: boolean;
  closed: boolean;
  logged: boolean;
}

async function requestsPlugin(app: FastifyInstance): Promise<void> {
  const inflight = new InFlight();
  app.decorate('inflight', inflight);
  const states = new WeakMap<FastifyRequest, State>();
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });

  const logLine = (request: FastifyRequest, reply: FastifyReply, state: State, aborted: boolean) => {
    if (state.logged) return;
    state.logged = true;
    const headersSent = reply.raw.headersSent;
    const status = aborted && !headersSent ? undefined : reply.statusCode;
    const hasBody =
      request.method !== 'HEAD' && status !== undefined && status !== 204 && status !== 304 && status >= 200;
    const name = (request.params as { name?: unknown } | undefined)?.name;
    request.log.info(
      {
        method: request.method,
        url: request.url,
        route: request.routeOptions.url,
        model: typeof name === 'string' ? name : undefined,
        status,
        bytesIn: length(request.headers['content-length']),
        bytesOut: hasBody && !aborted ? length(reply.getHeader('content-length')) : undefined,
        durationMs: Math.round(reply.elapsedTime * 10) / 10,
        aborted: aborted || undefined,
      },
      aborted ? 'request aborted' : 'request',
    );
  };

  const settle = (state: State) => {
    if (state.sent && state.closed) inflight.delete(state);
  };

  app.addHook('onRequest', async (request, reply) => {
    const state: State = { sent: false, closed: false, logged: false };
    states.set(request, state);
    inflight.add(state);
    reply.header('x-request-id', request.id);
    reply.raw.once('close', () => {
      state.closed = true;
      if (!reply.raw.writableFinished) logLine(request, reply, state, true);
      settle(state);
    });
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const state = states.get(request);
    if (closing && !reply.raw.headersSent) reply.header('connection', 'close');
    if (state) {
      state.sent = true;
      settle(state);
    }
    return payload;
  });

  app.addHook('onResponse', async (request, reply) => {
    const state = states.get(request);
    if (state) logLine(request, reply, state, false);
  });
}

export default fp(requestsPlugin, { name: 'requests', fastify: '5.x' });
