/**
 * Azure blob metadata: names must be C# identifiers and values ASCII header text, so names map
 * '-' to '_' (a leading '_' marks names that start with something other than a letter) and values
 * are percent-encoded ('%' alone stands for '', which Azure would drop); both are decoded on the
 * way back.
 */
import type { Metadata } from '../types.js';

/**
 * Metadata values travel as header values: '%', spaces and what a header cannot carry (control
 * and non-ASCII characters) are percent-encoded, the rest is sent as is. Azure bounds metadata to
 * 8 KB in all: labels (2 KiB at most) then take ≤ 3 bytes per byte (encodeURIComponent of the
 * whole value took up to 6: `"` is `\"` in the labels' JSON, then `%5C%22`). decodeURIComponent
 * reads both spellings.
 */
const NEEDS_ENCODING = /[%\s\x00-\x1f\x7f-\u{10ffff}]/gu;

export function encodeMetadata(metadata: Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) {
    const name = k.replace(/-/g, '_');
    // Azure drops empty values; a lone '%' is never produced (every '%' is encoded).
    out[/^[a-z]/i.test(k) ? name : `_${name}`] =
      v === '' ? '%' : v.replace(NEEDS_ENCODING, (c) => encodeURIComponent(c));
  }
  return out;
}

export function decodeMetadata(raw: Record<string, string> = {}): Metadata {
  const out: Metadata = {};
  for (const [name, v] of Object.entries(raw)) {
    const k = (name.startsWith('_') ? name.slice(1) : name).replace(/_/g, '-').toLowerCase();
    try {
      out[k] = v === '%' ? '' : decodeURIComponent(v);
    } catch {
      out[k] = v; // written by another tool, not percent-encoded
    }
  }
  return out;
}
