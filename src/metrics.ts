/**
 * Prometheus metrics of one app instance (SPEC §2 `GET /metrics`).
 *
 * Owns a prom-client Registry per createMetrics() call — never prom-client's global default
 * registry — so several apps in one process (tests) each have their own series. It holds:
 *  - Node process metrics (collectDefaultMetrics: process_*, nodejs_*);
 *  - storage calls: model_registry_storage_requests_total{operation,outcome} and
 *    model_registry_storage_request_duration_seconds{operation}, fed by storage/shared/instrumented.ts;
 *  - the extraction cache (SPEC §6): model_registry_cache_{hits,misses,evictions}_total and the
 *    model_registry_cache_bytes gauge, fed by the cache through the typed fields below;
 *  - redirect downloads: model_registry_download_redirects_total, fed by routes/models/redirect.ts;
 *  - HTTP: http_request_duration_seconds{method,route,status_code} and
 *    model_registry_http_bytes_total{direction}, fed by routes/metrics.ts, which also serves them.
 *
 * Label values are bounded: `route` is the route template (or 'unmatched'), never the raw URL.
 * Every label combination of the fixed-label series is initialised to zero, so each series is
 * exported (and rate() works) before the first request.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export const STORAGE_OPERATIONS = ['get', 'put', 'head', 'list', 'delete', 'copy'] as const;
export const STORAGE_OUTCOMES = ['ok', 'not_found', 'precondition_failed', 'error'] as const;
export const HTTP_DIRECTIONS = ['in', 'out'] as const;

export type StorageOperation = (typeof STORAGE_OPERATIONS)[number];
export type StorageOutcome = (typeof STORAGE_OUTCOMES)[number];
export type HttpDirection = (typeof HTTP_DIRECTIONS)[number];

export interface Metrics {
  readonly registry: Registry;
  /** model_registry_storage_requests_total{operation,outcome} */
  readonly storageRequests: Counter<'operation' | 'outcome'>;
  /** model_registry_storage_request_duration_seconds{operation} */
  readonly storageDuration: Histogram<'operation'>;
  /** model_registry_cache_hits_total */
  readonly cacheHits: Counter;
  /** model_registry_cache_misses_total */
  readonly cacheMisses: Counter;
  /** model_registry_cache_evictions_total */
  readonly cacheEvictions: Counter;
  /** model_registry_cache_bytes: bytes currently held by the cache. */
  readonly cacheBytes: Gauge;
  /** model_registry_cache_memory_bytes: bytes of small archives held in memory. */
  readonly cacheMemoryBytes: Gauge;
  /** http_request_duration_seconds{method,route,status_code} */
  readonly httpDuration: Histogram<'method' | 'route' | 'status_code'>;
  /** model_registry_http_bytes_total{direction} */
  readonly httpBytes: Counter<'direction'>;
  /** model_registry_http_requests_aborted_total{method,route} */
  readonly httpAborted: Counter<'method' | 'route'>;
  /** model_registry_download_redirects_total: downloads answered 307 to a signed URL. */
  readonly downloadRedirects: Counter;
}

/** Storage calls: local disk answers in well under a millisecond, object stores in tens of ms. */
const STORAGE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Whole requests: includes streaming large archives and long-polls (?wait= up to 300 s). */
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const storageRequests = new Counter({
    name: 'model_registry_storage_requests_total',
    help: 'Storage backend calls, by operation and outcome.',
    labelNames: ['operation', 'outcome'] as const,
    registers,
  });
  const storageDuration = new Histogram({
    name: 'model_registry_storage_request_duration_seconds',
    help: 'Latency of storage backend calls (for get: until the stream is open; for list: time spent waiting on the backend).',
    labelNames: ['operation'] as const,
    buckets: STORAGE_BUCKETS,
    registers,
  });
  for (const operation of STORAGE_OPERATIONS) {
    storageDuration.zero({ operation });
    for (const outcome of STORAGE_OUTCOMES) storageRequests.inc({ operation, outcome }, 0);
  }

  const cacheHits = new Counter({
    name: 'model_registry_cache_hits_total',
    help: 'Requests served from the local extraction cache.',
    registers,
  });
  const cacheMisses = new Counter({
    name: 'model_registry_cache_misses_total',
    help: 'Requests that had to fetch the archive from storage into the cache.',
    registers,
  });
  const cacheEvictions = new Counter({
    name: 'model_registry_cache_evictions_total',
    help: 'Entries removed from the local extraction cache (size or TTL).',
    registers,
  });
  const cacheBytes = new Gauge({
    name: 'model_registry_cache_bytes',
    help: 'Bytes currently held by the local extraction cache.',
    registers,
  });
  const cacheMemoryBytes = new Gauge({
    name: 'model_registry_cache_memory_bytes',
    help: 'Bytes of small cached archives also held in memory (CACHE_MEMORY_BYTES).',
    registers,
  });

  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration, by method, route template and status code.',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: HTTP_BUCKETS,
    registers,
  });
  const httpBytes = new Counter({
    name: 'model_registry_http_bytes_total',
    help: 'HTTP body bytes received (in, request Content-Length) and sent (out, response Content-Length).',
    labelNames: ['direction'] as const,
    registers,
  });
  for (const direction of HTTP_DIRECTIONS) httpBytes.inc({ direction }, 0);
  const httpAborted = new Counter({
    name: 'model_registry_http_requests_aborted_total',
    help: 'Requests whose response never completed (client gone, a body that failed mid-stream, the shutdown grace over), by method and route template; not in http_request_duration_seconds.',
    labelNames: ['method', 'route'] as const,
    registers,
  });

  const downloadRedirects = new Counter({
    name: 'model_registry_download_redirects_total',
    help: 'Downloads answered with a 307 to a signed storage URL (DOWNLOAD_REDIRECT), not served by the registry.',
    registers,
  });

  return {
    registry,
    storageRequests,
    storageDuration,
    cacheHits,
    cacheMisses,
    cacheEvictions,
    cacheBytes,
    cacheMemoryBytes,
    httpDuration,
    httpBytes,
    httpAborted,
    downloadRedirects,
  };
}
