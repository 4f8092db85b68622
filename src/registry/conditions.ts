/** ETags, and the checks of a client's If-Match / If-None-Match against what is stored now. */
import { errors } from '../errors.js';
import type { WriteCondition } from '../storage/types.js';
import type { AliasTarget } from './aliases.js';
import type { ClientCondition, ModelVersion } from './types.js';

export function etagOf(sha256: string): string {
  return `"sha256:${sha256}"`;
}

/** The storage condition that a write replaces exactly `current` (or creates the name). */
export function writeCondition(current: ModelVersion | undefined): WriteCondition {
  return current ? { ifMatch: current.token } : { ifNoneMatch: true };
}

export function checkClientCondition(name: string, current: ModelVersion | undefined, c: ClientCondition): void {
  if ('ifNoneMatch' in c && current) throw errors.alreadyExists(name);
  if ('ifMatch' in c) {
    if (!current) throw errors.etagMismatch(name, undefined);
    if (c.ifMatch !== '*' && !c.ifMatch.includes(etagOf(current.sha256))) {
      throw errors.etagMismatch(name, etagOf(current.sha256));
    }
  }
}

export function checkAliasCondition(
  name: string,
  alias: string,
  now: AliasTarget | undefined,
  c: ClientCondition,
): void {
  if ('ifNoneMatch' in c && now) throw errors.aliasExists(name, alias, etagOf(now.sha256));
  if ('ifMatch' in c) {
    if (!now) throw errors.aliasEtagMismatch(name, alias, undefined);
    if (c.ifMatch !== '*' && !c.ifMatch.includes(etagOf(now.sha256))) {
      throw errors.aliasEtagMismatch(name, alias, etagOf(now.sha256));
    }
  }
}
