/**
 * Timeouts the SDKs do not give: a response body that stalls half way, a promise with no
 * deadline of its own, a socket that connects and then stays silent. Each turns silence longer
 * than the storage timeout into an ETIMEDOUT error, which the backends translate into an outage.
 * A reader that is behind (its buffer full, or its socket paused) holds the bytes back itself,
 * and that never counts as silence.
 */
import type http from 'node:http';
import type { Socket } from 'node:net';
import { pipeline, type Readable, Transform } from 'node:stream';

const CONNECT_TIMEOUT_MS = 5_000;

const timedOut = (message: string) => Object.assign(new Error(message), { code: 'ETIMEDOUT' });

/** `body` behind a stream that fails with ETIMEDOUT when the server sends nothing for `ms`. */
export function stallGuard(body: Readable, ms: number, key: string): Readable {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      arm();
      callback(null, chunk);
    },
  });
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (guard.destroyed) return;
      if (guard.readableLength >= guard.readableHighWaterMark) return arm();
      body.destroy(timedOut(`storage sent no bytes of ${key} for ${ms} ms`));
    }, ms);
  };
  arm();
  pipeline(body, guard, () => clearTimeout(timer)); // an error on either side destroys both
  return guard;
}

/** `promise`, or an ETIMEDOUT rejection after `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Gives an agent's sockets a connect timeout (so a dead host fails in seconds, not after the TCP
 * default of minutes) and turns the agent's idle timeout (which Node only reports, and re-arms
 * each time a kept-alive socket is reused) into an error: a server that stops answering
 * mid-request or mid-body. SDKs retry both like any connection error.
 */
export function withSocketTimeouts<A extends http.Agent>(agent: A, connectEvent: 'connect' | 'secureConnect'): A {
  const a = agent as unknown as { createConnection: (...args: unknown[]) => Socket };
  const createConnection = a.createConnection.bind(agent);
  a.createConnection = (...args: unknown[]) => {
    const socket = createConnection(...args);
    const fail = (what: string) => socket.destroy(timedOut(`${what} timed out`));
    const connect = setTimeout(() => fail('connect'), CONNECT_TIMEOUT_MS);
    socket.once(connectEvent, () => clearTimeout(connect));
    socket.once('close', () => clearTimeout(connect));
    // Paused: the reader of a download is behind (backpressure), not the server silent. The idle
    // time counts again from when reading resumes; a server silent from then on still fails.
    let behind = false;
    socket.on('timeout', () => {
      if (socket.isPaused()) behind = true;
      else fail('idle socket');
    });
    socket.on('resume', () => {
      if (!behind) return;
      behind = false;
      socket.setTimeout(socket.timeout ?? 0);
    });
    return socket;
  };
  return agent;
}
