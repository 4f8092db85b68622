/**
 * Zod parsers for settings read from the environment (strings): sizes, durations, whole numbers,
 * booleans and URLs, each failing with the fix in words ("is not a size: use … e.g. 10GiB").
 * Shared by src/config.ts and the storage backends' own setting schemas.
 */
import { z } from 'zod';
import { parseDuration, parseSize } from './units.js';

export const size = (example: string, { zero = false } = {}) =>
  z.string().transform((text, ctx) => {
    const bytes = parseSize(text);
    if (bytes === undefined || bytes < 0 || (bytes === 0 && !zero)) {
      ctx.addIssue({
        code: 'custom',
        message: `is not a size: use bytes or a unit, e.g. ${example}${zero ? ' (0 = off)' : ''}`,
      });
      return z.NEVER;
    }
    return bytes;
  });

/** Longest delay Node's timers take (2^31-1 ms, ~24.8 days); beyond it they fire at once. */
const TIMER_MAX_MS = 2 ** 31 - 1;

/**
 * A duration setting, in ms. `min` keeps out values that break the server (a 0 ms idle timeout
 * refuses every upload); durations used as timers stay within what Node's timers can wait.
 */
export const duration = (example: string, { min = 0, max = TIMER_MAX_MS }: { min?: number; max?: number } = {}) =>
  z.string().transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `is not a duration: use a number and a unit, e.g. ${example}` });
      return z.NEVER;
    }
    if (ms < min || ms > max) {
      ctx.addIssue({ code: 'custom', message: `must be from ${formatMs(min)} to ${formatMs(max)}, e.g. ${example}` });
      return z.NEVER;
    }
    return ms;
  });

const formatMs = (ms: number) =>
  ms === TIMER_MAX_MS
    ? '24d'
    : ms % 86_400_000 === 0 && ms > 0
      ? `${ms / 86_400_000}d`
      : ms % 1000 === 0
        ? `${ms / 1000}s`
        : `${ms}ms`;

export const integer = (min: number, max: number) =>
  z.string().transform((text, ctx) => {
    const n = Number(text);
    if (!/^\s*\d+\s*$/.test(text) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `must be a whole number from ${min} to ${max}` });
      return z.NEVER;
    }
    return n;
  });

export const boolean = z.string().transform((text, ctx) => {
  const t = text.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(t)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(t)) return false;
  ctx.addIssue({ code: 'custom', message: 'must be true or false' });
  return z.NEVER;
});

export const url = (example: string) =>
  z.string().refine((text) => {
    try {
      return ['http:', 'https:'].includes(new URL(text).protocol);
    } catch {
      return false;
    }
  }, `is not an http(s) URL: use e.g. ${example}`);
