/**
 * Rasa NLU's MongoDB model persistence (seeds/001: "it will store the files to the MongoDB as it
 * is, creating a new document with the key model_name"), read from one collection. The document
 * shape this importer reads, one per model:
 *
 * ```
 * {
 *   _id: ObjectId,                       // its timestamp is the version's createdAt…
 *   created_at?: Date,                   // …unless this is set
 *   model_name: "model_20161111-180000", // the registry's model name
 *   files: [                             // the model directory's files, as they are
 *     { path: "metadata.json", content: BinData | "utf-8 text" },
 *     { path: "intent_classifier/model.pkl", content: BinData }, …
 *   ]
 * }
 * ```
 *
 * Each document becomes version 1 of the model `model_name`, packed into a deterministic tar.gz
 * (deterministic-tar.ts, mtime = createdAt), so a rerun packs the same bytes and is skipped. The
 * document is read twice: once to hash its archive while planning, once (by _id) to copy it; a
 * document changed in between fails the digest check and nothing of it is written.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { Binary, type Collection, type Document, MongoClient, ObjectId } from 'mongodb';
import type { BackendConfig } from '../config.js';
import { ConfigError } from '../errors.js';
import { isValidName } from '../registry/names.js';
import { badMemberPath, packDeterministic, type TarFile } from './deterministic-tar.js';
import type { Failure } from './index.js';
import type { ImportedModel } from './virtual-store.js';

export interface RasaNluImport {
  models: ImportedModel[];
  failures: Failure[];
  close(): Promise<void>;
}

export async function importRasaNluMongodb(config: BackendConfig<'mongodb'>, where: string): Promise<RasaNluImport> {
  let client: MongoClient;
  try {
    client = new MongoClient(config.MONGODB_URI, {
      serverSelectionTimeoutMS: Math.min(5000, config.STORAGE_TIMEOUT),
      connectTimeoutMS: Math.min(5000, config.STORAGE_TIMEOUT),
      socketTimeoutMS: config.STORAGE_TIMEOUT,
      appName: 'model-registry-import',
    });
  } catch (err) {
    throw new ConfigError(
      'MONGODB_URI=(hidden) is not a valid connection string: use mongodb://user:password@host:27017 with special characters in the password percent-encoded.',
      { cause: err },
    );
  }
  try {
    await client.connect();
  } catch (err) {
    await client.close().catch(() => {});
    throw new ConfigError(
      `${where}: MongoDB at MONGODB_URI is unreachable (${(err as Error).message}): check the host, port and credentials.`,
      { cause: err },
    );
  }
  const collection = client.db(config.MONGODB_DATABASE).collection(config.MONGODB_COLLECTION);
  try {
    return {
      ...(await read(collection, `${where} (${config.MONGODB_DATABASE}.${config.MONGODB_COLLECTION})`)),
      close: () => client.close(),
    };
  } catch (err) {
    await client.close().catch(() => {});
    throw err;
  }
}

async function read(collection: Collection, where: string): Promise<Omit<RasaNluImport, 'close'>> {
  const byName = new Map<string, Document[]>();
  for await (const doc of collection.find({ model_name: { $exists: true } })) {
    const name = typeof doc.model_name === 'string' ? doc.model_name : JSON.stringify(doc.model_name);
    byName.set(name, [...(byName.get(name) ?? []), doc]);
  }
  if (byName.size === 0) {
    const count = await collection.estimatedDocumentCount();
    throw new ConfigError(
      `${where} is not a Rasa NLU model collection: ${count === 0 ? 'it is empty or does not exist' : `none of its ${count} documents has a model_name`}. ` +
        'Set MONGODB_DATABASE and MONGODB_COLLECTION to where Rasa NLU stored its models (its collection_name).',
    );
  }
  const models: ImportedModel[] = [];
  const failures: Failure[] = [];
  for (const [name, docs] of [...byName].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const fail = (detail: string) => failures.push({ name, version: 1, detail });
    if (!isValidName(name)) {
      fail(
        `model_name ${JSON.stringify(name)} is not a model name the registry accepts (A-Z a-z 0-9 . _ -, at most 128, not ending in .tar.gz)`,
      );
      continue;
    }
    if (docs.length > 1) {
      fail(
        `${docs.length} documents have model_name ${name} (_id ${docs.map((d) => String(d._id)).join(', ')}): keep one and rerun`,
      );
      continue;
    }
    const doc = docs[0]!;
    const packed = pack(doc);
    if (typeof packed === 'string') {
      fail(`document ${String(doc._id)}: ${packed}`);
      continue;
    }
    const id = doc._id;
    models.push({
      name,
      versions: [
        {
          version: 1,
          sha256: createHash('sha256').update(packed.bytes).digest('hex'),
          size: packed.bytes.length,
          createdAt: packed.createdAt,
          labels: { imported_from: 'rasa-nlu-mongodb', 'rasa_nlu.document_id': String(id) },
          origin: `document ${String(id)}`,
          // Packed again from the document as it is now; the verifier compares with the hash above.
          open: async (o) => {
            const again = await collection.findOne({ _id: id });
            const repacked = again ? pack(again) : 'the document is gone';
            if (typeof repacked === 'string')
              throw new Error(`document ${String(id)} changed while importing: ${repacked}`);
            const bytes = o?.range ? repacked.bytes.subarray(o.range.start, o.range.end + 1) : repacked.bytes;
            return Readable.from([bytes]);
          },
        },
      ],
    });
  }
  return { models, failures };
}

/** The archive of one document, or why it cannot be packed. */
function pack(doc: Document): { bytes: Buffer; createdAt: string } | string {
  const created =
    doc.created_at instanceof Date
      ? doc.created_at
      : doc._id instanceof ObjectId
        ? doc._id.getTimestamp()
        : new Date(0);
  if (!Array.isArray(doc.files)) return 'it has no files array ([{path, content}]) of the model directory';
  if (doc.files.length === 0) return 'its files array is empty (an empty archive is not a model)';
  const files: TarFile[] = [];
  for (const [i, f] of (doc.files as unknown[]).entries()) {
    const file = f as { path?: unknown; content?: unknown };
    if (!file || typeof file.path !== 'string') return `files[${i}] has no path`;
    const why = badMemberPath(file.path);
    if (why) return `files[${i}].path ${JSON.stringify(file.path)} has ${why}`;
    let content: Buffer;
    if (file.content instanceof Binary) content = Buffer.from(file.content.buffer);
    else if (typeof file.content === 'string') content = Buffer.from(file.content, 'utf8');
    else if (file.content instanceof Uint8Array) content = Buffer.from(file.content);
    else return `files[${i}] (${file.path}) has no content (binary or text)`;
    files.push({ path: file.path, content });
  }
  try {
    return {
      bytes: packDeterministic(files, Math.floor(created.getTime() / 1000)),
      createdAt: new Date(Math.floor(created.getTime() / 1000) * 1000).toISOString(),
    };
  } catch (err) {
    return (err as Error).message;
  }
}
