/**
 * MongoDB driver errors as storage errors (the driver error kept as `cause`), and the one line a
 * user gets for a setup that cannot work.
 */
import type { Readable } from 'node:stream';
import { MongoError, MongoNetworkError, type MongoOptions, MongoServerError, MongoServerSelectionError } from 'mongodb';
import { ConfigError } from '../../util/config-error.js';
import { PreconditionFailedError, StorageUnavailableError } from '../errors.js';
import { networkErrorCode } from '../shared/network.js';
import type { MongoSettings } from './settings.js';

/** Maps driver errors to storage errors, keeping the original as cause. */
export function translate(err: unknown, key?: string): unknown {
  if (err instanceof MongoServerError && err.code === 11000) {
    return new PreconditionFailedError(key ?? '', { cause: err });
  }
  if (err instanceof MongoError) {
    const detail = err instanceof MongoServerError && err.codeName ? err.codeName : `${err.name}: ${err.message}`;
    return new StorageUnavailableError('mongodb', detail.slice(0, 160), { cause: err });
  }
  // A socket that closes while the driver is between operations may reach us as the bare Node
  // error rather than a MongoNetworkError; it is an outage all the same (503, not 500).
  const code = networkErrorCode(err);
  if (code) {
    return new StorageUnavailableError('mongodb', code, { cause: err });
  }
  return err;
}

/**
 * The chunks of `stream`, its error translated; ending early destroys it. Fewer than `expected`
 * bytes is an error too: the driver ends a file whose last chunks are missing without one.
 */
export async function* translated(stream: Readable, key: string, expected: number): AsyncGenerator<Buffer> {
  let got = 0;
  try {
    for await (const chunk of stream) {
      got += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
  } catch (err) {
    throw translate(err, key);
  }
  if (got < expected)
    throw new StorageUnavailableError(
      'mongodb',
      `the GridFS file of ${key} ended after ${got} of ${expected} bytes (chunks missing)`,
    );
}

/** One line for init() failures; never echoes the URI, which may hold a password. */
export function initError(err: unknown, config: MongoSettings, options: MongoOptions | undefined): ConfigError {
  const hosts = options?.srvHost ?? options?.hosts.map((h) => h.toString()).join(',') ?? 'the server';
  const db = config.MONGODB_DATABASE;
  const code = err instanceof MongoServerError ? err.code : undefined;
  const message = redact(err instanceof Error ? err.message : String(err), config.MONGODB_URI);
  let line: string;
  if (code === 18 || /authentication failed|auth.*fail/i.test(message)) {
    line = `MONGODB_URI=(hidden) has credentials that ${hosts} rejects (AuthenticationFailed): check the user name, the password (percent-encoded) and authSource in the URI.`;
  } else if (code === 13 || (err instanceof MongoServerError && /not authorized|unauthorized/i.test(message))) {
    line = `MONGODB_DATABASE=${db} cannot be used with the credentials in MONGODB_URI (Unauthorized): grant the user the readWrite role on ${db}, or use another database.`;
  } else if (
    err instanceof MongoServerSelectionError ||
    err instanceof MongoNetworkError ||
    /ENOTFOUND|ECONNREFUSED|ETIMEDOUT/.test(message)
  ) {
    const reason =
      /ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EHOSTUNREACH|ECONNRESET|certificate|SSL|TLS|timed out/i.exec(message)?.[0] ??
      'no answer';
    line = `MONGODB_URI=(hidden) points at ${hosts}, which is unreachable (${reason}): check the host and port in the URI and that MongoDB is running and reachable from here.`;
  } else {
    line = `MONGODB_URI=(hidden) cannot be used with MONGODB_DATABASE=${db} (${message.slice(0, 200)}): check the connection string and the server.`;
  }
  return new ConfigError(line, { cause: err });
}

/** `message` without the URI or its user:password. */
export function redact(message: string, uri: string): string {
  const userinfo = /^mongodb(?:\+srv)?:\/\/([^@/]*)@/.exec(uri)?.[1];
  let out = message.split(uri).join('(hidden)');
  if (userinfo) out = out.split(userinfo).join('(hidden)');
  return out;
}
