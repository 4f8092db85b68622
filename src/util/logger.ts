/** The slice of pino's logger the service layers use (Fastify's logger satisfies it). */
import type { LogFn } from 'pino';

export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  child(bindings: Record<string, unknown>): Logger;
}
