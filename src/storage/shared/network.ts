/**
 * Which errors mean "the storage could not be reached": one set of Node socket, DNS, TLS and
 * stream error codes shared by every backend, so that a connection reset is an outage (503)
 * whichever SDK reported it.
 */

/** Error codes of a connection that could not be made or broke off (Node's `err.code`). */
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPROTO',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
]);

/**
 * The network error code of `err`, of the first error it aggregates (a dual-stack connect fails
 * with an AggregateError), or of its causes up to four deep (SDKs wrap the socket error); else
 * undefined.
 */
export function networkErrorCode(err: unknown): string | undefined {
  type Chain = { code?: unknown; errors?: { code?: unknown }[]; cause?: unknown } | undefined | null;
  for (let e = err as Chain, depth = 0; e && depth < 4; e = e.cause as Chain, depth++) {
    for (const code of [e.code, e.errors?.[0]?.code]) {
      if (typeof code === 'string' && NETWORK_ERROR_CODES.has(code)) return code;
    }
  }
  return undefined;
}

/**
 * Whether `err` (or one of its causes, up to six deep) is a timeout: the storage stayed silent
 * (an idle socket, a connect that never completed, a deadline of ours). Retrying one would make
 * the caller wait the timeout again, and it is what marks a storage as down (./outage.ts).
 */
export function isTimeout(err: unknown): boolean {
  type Chain =
    | { code?: unknown; name?: unknown; type?: unknown; message?: unknown; cause?: unknown }
    | undefined
    | null;
  for (let e = err as Chain, depth = 0; e && typeof e === 'object' && depth < 6; e = e.cause as Chain, depth++) {
    if (e.code === 'ETIMEDOUT' || e.code === 'ESOCKETTIMEDOUT') return true;
    // The S3 SDK names a reset or a broken pipe TimeoutError too; those came back fast.
    if (e.name === 'TimeoutError' && e.code !== 'ECONNRESET' && e.code !== 'EPIPE') return true;
    if (e.type === 'request-timeout' || e.name === 'MongoNetworkTimeoutError') return true;
    // gaxios and node-fetch (the GCS SDK) say it only in the message.
    if (/network timeout at|timeout of \d+ms exceeded/i.test(String(e.message))) return true;
  }
  return false;
}
