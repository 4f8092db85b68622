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
