/**
 * Route schemas in zod, through a Fastify type provider: a route's `schema.params` and
 * `schema.querystring` are zod schemas that validate and type the request, and its error is the
 * catalogue's own (`{"error": "INVALID_VERSION", ...}`, word for word what a client got when the
 * routes checked by hand). Parts are checked with the parse functions the routes used before
 * (`parsed(parseVersion)`), so the messages stay where they were written.
 *
 * `schema.headers` declares the headers a route reads (types and the OpenAPI check) but is not
 * checked here: conditional and digest headers are parsed by the handler, in the order their
 * errors must come, and a validated copy of the headers would be rebuilt on every read of
 * `request.headers` (Fastify merges it into the raw headers), on the download path too.
 *
 * Our own provider rather than fastify-type-provider-zod: its validator reports zod's issues
 * (FST_ERR_VALIDATION) and its serializer would replace ours, which leaves only the ten lines of
 * types below.
 */
import type { FastifySchemaCompiler, FastifyTypeProvider } from 'fastify';
import { z } from 'zod';
import { errors, RegistryError } from '../errors.js';

export interface ZodTypeProvider extends FastifyTypeProvider {
  validator: this['schema'] extends z.ZodType ? z.output<this['schema']> : unknown;
  serializer: this['schema'] extends z.ZodType ? z.input<this['schema']> : unknown;
}

/**
 * A request value checked by `parse`, which throws a RegistryError when it is wrong: that error
 * is the answer. `raw` is what the request carries, unchecked (a repeated query parameter is an
 * array; the parse functions say what they accept).
 */
export function parsed<T>(parse: (raw: unknown) => T) {
  // (Optional: an absent value is no zod error; it reaches `parse` as undefined, which each of
  // the routes' parse functions answers with undefined.)
  return z.unknown().optional().transform(catalogued(parse));
}

/** An object of request values (params, query) that passes through the keys it does not name. */
export function fields<S extends z.core.$ZodLooseShape>(shape: S) {
  return z.looseObject(shape);
}

/** `fields(shape)` checked as a whole by `parse` (when the order of its checks matters). */
export function parsedFields<S extends z.core.$ZodLooseShape, T>(
  shape: S,
  parse: (values: z.output<ReturnType<typeof fields<S>>>) => T,
) {
  return fields(shape).transform(catalogued(parse));
}

function catalogued<I, T>(parse: (raw: I) => T) {
  return (raw: I, ctx: z.RefinementCtx): T => {
    try {
      return parse(raw);
    } catch (err) {
      if (!(err instanceof RegistryError)) throw err;
      ctx.addIssue({ code: 'custom', message: err.message, params: { error: err } });
      return z.NEVER;
    }
  };
}

/**
 * A value the route reads and checks itself: a header (see above), or a query parameter of a
 * query checked as a whole. Declared for the types and the OpenAPI check.
 */
export const declared = z.unknown().optional();

/** The RegistryError a failed parse carries, or a generic one naming zod's complaint. */
function toError(error: z.ZodError, part: string): Error {
  for (const issue of error.issues) {
    const carried = issue.code === 'custom' ? (issue.params as { error?: unknown } | undefined)?.error : undefined;
    if (carried instanceof Error) return carried;
  }
  const first = error.issues[0];
  const detail = `${first?.path.join('.') || part}: ${first?.message ?? 'invalid'}`;
  return part === 'body' ? errors.invalidBody(detail) : errors.invalidQuery(detail);
}

export const validatorCompiler: FastifySchemaCompiler<z.ZodType> = ({ schema, httpPart }) => {
  // Declared only (see above): nothing to check, nothing replaced.
  if (httpPart === 'headers') return () => true;
  return (data) => {
    const result = schema.safeParse(data);
    return result.success ? { value: result.data } : { error: toError(result.error, httpPart ?? 'request') };
  };
};

/** The names a route schema's object declares (the OpenAPI check reads them). */
export function declaredKeys(schema: unknown): string[] {
  let s = schema as { shape?: Record<string, unknown>; in?: unknown } | undefined;
  while (s && !s.shape && s.in) s = s.in as typeof s;
  return s?.shape ? Object.keys(s.shape) : [];
}
