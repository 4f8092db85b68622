/** A Content-Length header as a byte count, or undefined when absent or malformed. */
export function contentLength(header: unknown): number | undefined {
  const raw = Array.isArray(header) ? header[0] : header;
  if (typeof raw === 'number') return Number.isSafeInteger(raw) && raw >= 0 ? raw : undefined;
  if (typeof raw !== 'string' || !/^\d+$/.test(raw.trim())) return undefined;
  const n = Number(raw.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}
