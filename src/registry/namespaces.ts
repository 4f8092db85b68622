/**
 * Namespaced model names (issue 17): `nlp/intent-classifier` is stored as
 * `nlp/intent-classifier.tar.gz`, its history under `.history/nlp/intent-classifier/`, its aliases
 * in `.aliases/nlp/intent-classifier.json`; a one-segment name keeps the Rasa layout at the root.
 *
 * The rule, beyond each segment being a valid one-segment name:
 *  - at most MAX_SEGMENTS segments and MAX_NAME_BYTES bytes in all;
 *  - in a name of several segments, no segment is one of RESOURCE_WORDS, so that every name is
 *    reachable with literal slashes in the URL (`/models/nlp/intent/meta`; see
 *    http/model-path.ts). A one-segment name may be such a word: `/models/meta/meta` is the
 *    metadata of the model `meta`;
 *  - a namespace segment (any but the last) does not end in `.json`: model `nlp`'s record
 *    `.history/nlp/v1.json` and aliases document `.aliases/nlp.json` must never be the folder of
 *    another model's history or aliases (a file and a folder of one name cannot coexist on disk).
 *
 * The storage contract lists one level deep, so a scan of `.history/nlp/` never sees the history
 * of `nlp/intent`, which lies one folder further down: the two models never mix. The catalog,
 * which does go down, walks only the folders a name can be in (tree.ts).
 */

export const MAX_SEGMENTS = 4;
export const MAX_NAME_BYTES = 255;
/** The words that, after a name, say which resource of the model a URL asks for. */
export const RESOURCE_WORDS: ReadonlySet<string> = new Set(['meta', 'versions', 'aliases', 'files', 'rollback']);

export const NAMESPACE_RULE =
  `a name may have up to ${MAX_SEGMENTS} /-separated segments (a namespace, e.g. nlp/intent-classifier), each by that rule, ` +
  `at most ${MAX_NAME_BYTES} bytes in all; in such a name no segment may be ${[...RESOURCE_WORDS].join(', ')}, and no namespace segment may end in .json`;

/** Whether `name` is a valid name of 2 to MAX_SEGMENTS segments, each checked by `isSegment`. */
export function isValidNamespacedName(name: string, isSegment: (segment: string) => boolean): boolean {
  const segments = name.split('/');
  if (segments.length < 2 || segments.length > MAX_SEGMENTS || Buffer.byteLength(name) > MAX_NAME_BYTES) return false;
  return segments.every(
    (s, i) => isSegment(s) && !RESOURCE_WORDS.has(s) && (i === segments.length - 1 || !s.endsWith('.json')),
  );
}

/** The namespace of a name (`nlp/intent` → `nlp/`, `a/b/c` → `a/b/`), '' for a one-segment name. */
export function namespaceOf(name: string): string {
  return name.slice(0, name.lastIndexOf('/') + 1);
}
