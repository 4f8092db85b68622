/** How the registry tells "not there" apart from other failures: one test, used everywhere. */
import { RegistryError } from '../errors.js';

/** The codes of the registry's 404 errors that callers tell apart. */
export type NotFoundCode = 'MODEL_NOT_FOUND' | 'VERSION_NOT_FOUND' | 'ALIAS_NOT_FOUND';

/**
 * True when `err` is one of the registry's 404 errors (a model, version or alias that is not
 * there), or with `code`, that one. Storage's own NotFoundError (a missing object) is not one:
 * test it with instanceof.
 */
export function isNotFound(err: unknown, code?: NotFoundCode): err is RegistryError {
  return err instanceof RegistryError && err.statusCode === 404 && (code === undefined || err.code === code);
}
