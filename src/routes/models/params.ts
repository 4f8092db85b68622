/**
 * What the model routes read from a request besides the HTTP machinery in src/http/: labels from
 * headers, ?version= and ?wait=, and a file's content type.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { errors } from '../../errors.js';
import { one } from '../../http/headers.js';
import type { Labels } from '../../registry/names.js';

const LABEL_HEADER = 'x-model-label-';

/**
 * Labels from X-Model-Label-<key> headers. Node reads header bytes as Latin-1; values whose
 * bytes are UTF-8 (what curl and every client send for non-ASCII text) are decoded as such.
 */
export function labelsFromHeaders(headers: IncomingHttpHeaders): Labels {
  // No prototype: `labels['__proto__'] = v` on a plain object sets nothing (the label vanished
  // silently); here it is an own key like any other, which assertLabels refuses with 400.
  const labels: Labels = Object.create(null) as Labels;
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(LABEL_HEADER) || value === undefined) continue;
    labels[name.slice(LABEL_HEADER.length)] = fromHeaderBytes(one(value)!);
  }
  return labels;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function fromHeaderBytes(value: string): string {
  if (/^[\x00-\x7f]*$/.test(value)) return value;
  try {
    return strictUtf8.decode(Buffer.from(value, 'latin1'));
  } catch {
    return value; // not UTF-8: Latin-1, as received
  }
}

/** A positive integer from ?version=, or undefined when absent. */
export function parseVersion(raw: unknown, where: 'query' | 'body' = 'query'): number | undefined {
  if (raw === undefined) return undefined;
  const text = String(raw);
  if (!/^[1-9]\d{0,15}$/.test(text) || !Number.isSafeInteger(Number(text))) throw errors.invalidVersion(text, where);
  return Number(text);
}

/** Seconds from ?wait= (0-300), or undefined when absent. */
export function parseWait(raw: unknown): number | undefined {
  if (raw === undefined) return undefined;
  const text = String(raw);
  if (!/^\d{1,3}$/.test(text) || Number(text) > 300) {
    throw errors.invalidQuery('wait must be a whole number of seconds from 0 to 300');
  }
  return Number(text);
}

const CONTENT_TYPES: Record<string, string> = {
  json: 'application/json',
  txt: 'text/plain; charset=utf-8',
  md: 'text/markdown; charset=utf-8',
  yaml: 'application/yaml',
  yml: 'application/yaml',
  csv: 'text/csv',
  html: 'text/html; charset=utf-8',
  xml: 'application/xml',
  py: 'text/x-python',
  gz: 'application/gzip',
  zip: 'application/zip',
  tar: 'application/x-tar',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  svg: 'image/svg+xml',
  onnx: 'application/octet-stream',
  bin: 'application/octet-stream',
  pt: 'application/octet-stream',
  safetensors: 'application/octet-stream',
};

/** Content type by file extension; application/octet-stream when unknown. */
export function contentTypeOf(file: string): string {
  const ext = /\.([A-Za-z0-9]+)$/.exec(file)?.[1]?.toLowerCase();
  return (ext && CONTENT_TYPES[ext]) || 'application/octet-stream';
}
