/** Small helpers for reading request headers. */

/** A header as one string: a repeated header's values joined as RFC 9110 §5.3 combines them. */
export const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(', ') : v);
