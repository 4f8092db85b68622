/**
 * ConfigError: a setting is missing or wrong. Its own module, so that config parsing and the
 * storage backends (which check their settings at start) raise it without importing the HTTP
 * error catalogue; src/errors.ts re-exports it.
 */

/** A setting is missing or wrong. The process prints `message` on one line and exits 1. */
export class ConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigError';
  }
}
