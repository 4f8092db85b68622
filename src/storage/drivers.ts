/**
 * The backends, keyed by REMOTE_STORAGE. Each folder's settings.ts exports its driver (see
 * driver.ts); adding a backend is its folder and one line in BUILT_IN. registerDriver() adds one
 * from outside src (the tests' in-memory backend).
 */
import type { z } from 'zod';
import { azure } from './azure/settings.js';
import type { StorageDriver } from './driver.js';
import { gcs } from './gcs/settings.js';
import { local } from './local/settings.js';
import { mongodb } from './mongodb/settings.js';
import { s3 } from './s3/settings.js';

export const BUILT_IN = [local, s3, gcs, azure, mongodb] as const;

const registered: StorageDriver[] = [];

/** Adds a backend that is not built in. Its name must be new. */
export function registerDriver(driver: StorageDriver): void {
  if (findDriver(driver.name)) throw new Error(`a storage backend named ${driver.name} exists already`);
  registered.push(driver);
}

/** Every backend, built-in ones first, in the order error messages list them. */
export function allDrivers(): readonly StorageDriver[] {
  return [...BUILT_IN, ...registered];
}

export function findDriver(name: string): StorageDriver | undefined {
  return allDrivers().find((d) => d.name === name);
}

type SettingsOf<D> = D extends StorageDriver<infer S> ? z.output<S> : never;

/** The settings of one of the built-in backends, told apart by REMOTE_STORAGE. */
export type BackendSettings = SettingsOf<(typeof BUILT_IN)[number]>;
