/**
 * The outbox of mask saves: every save is written here (IndexedDB) before it is sent and
 * removed only once the server has it, so a save that fails (server down, session
 * expired, connection cut) is kept, retried, and survives a reload. Each entry carries a
 * `client_key` the server deduplicates on, so a retry of a save whose answer was lost
 * never stores the mask twice (docs/api.md "Annotations").
 *
 * The storage is an interface: IndexedDB in the browser, a Map in unit tests.
 */

export interface OutboxEntry<B = unknown> {
  /** Idempotency key, also the entry's key in the store. */
  key: string;
  projectId: number;
  imageId: number;
  /** The POST body, `client_key` included. */
  body: B;
  createdAt: number;
  attempts: number;
  /** Why the last attempt failed ('' before the first). */
  lastError: string;
  /** Set when the server refused the save for good (4xx): kept for the user, not retried. */
  rejected: boolean;
}

export interface OutboxStore<B = unknown> {
  put(entry: OutboxEntry<B>): Promise<void>;
  delete(key: string): Promise<void>;
  all(): Promise<OutboxEntry<B>[]>;
}

/** What one attempt to send an entry came to. */
export type SendOutcome<R> =
  | { kind: 'stored'; result: R }
  /** Worth retrying: the network, a 5xx, 408/429, or a session that must be renewed (401/403). */
  | { kind: 'retry'; error: string }
  /** The server refused it for good (validation, gone, conflict). */
  | { kind: 'rejected'; error: string };

/** Sorts an HTTP status (0: no answer) into retry or rejected. A 403 is retried only when
 * it is about the session (DRF's "credentials were not provided", a CSRF failure after a
 * new login), not when the user's role or the image's state forbids the save. */
export function classifyStatus(status: number, detail = ''): 'retry' | 'rejected' {
  if (status === 0 || status >= 500 || status === 408 || status === 429 || status === 401) return 'retry';
  if (status === 403) return /credentials|csrf|authenticat|log ?in/i.test(detail) ? 'retry' : 'rejected';
  return 'rejected';
}

export function newClientKey(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return `k${Date.now().toString(36)}${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}

export class Outbox<B = unknown, R = unknown> {
  private entries = new Map<string, OutboxEntry<B>>();
  /** Keys with a request in flight: a flush never sends the same entry twice at once. */
  private readonly inFlight = new Set<string>();
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly store: OutboxStore<B>,
    private readonly send: (entry: OutboxEntry<B>) => Promise<SendOutcome<R>>,
    private readonly onChange: () => void = () => {},
  ) {}

  /** Loads what a previous page left (a reload restores unsaved masks). */
  async load(): Promise<void> {
    for (const e of await this.store.all()) this.entries.set(e.key, e);
    this.onChange();
  }

  list(filter?: (e: OutboxEntry<B>) => boolean): OutboxEntry<B>[] {
    const all = [...this.entries.values()].sort((a, b) => a.createdAt - b.createdAt);
    return filter ? all.filter(filter) : all;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Whether a first attempt is under way (not yet known to have failed). */
  isFirstAttemptInFlight(key: string): boolean {
    return this.inFlight.has(key) && (this.entries.get(key)?.attempts ?? 0) === 0;
  }

  /** Keeps ``body`` durably, then tries to send it once. Resolves with the attempt's outcome
   * (the entry stays in the outbox unless it was stored). */
  async submit(entry: Omit<OutboxEntry<B>, 'attempts' | 'lastError' | 'rejected' | 'createdAt'>): Promise<SendOutcome<R>> {
    const full: OutboxEntry<B> = { ...entry, createdAt: Date.now(), attempts: 0, lastError: '', rejected: false };
    this.entries.set(full.key, full);
    this.inFlight.add(full.key); // from now on: a flush leaves it to this attempt
    this.onChange();
    try {
      await this.store.put(full);
    } catch {
      // No IndexedDB (private mode, quota): the entry still lives in memory for this page.
    }
    return this.attempt(full);
  }

  /** Drops an entry (the user discarded the unsaved mask, or the server already has it). */
  async discard(key: string): Promise<void> {
    this.entries.delete(key);
    this.onChange();
    await this.store.delete(key).catch(() => undefined);
  }

  /** Sends every entry that is not rejected, oldest first, stopping at the first that must
   * wait (the server is still down). Concurrent calls share one pass. */
  flush(): Promise<void> {
    if (!this.flushing) {
      this.flushing = (async () => {
        for (const e of this.list((x) => !x.rejected)) {
          if (!this.entries.has(e.key) || this.inFlight.has(e.key)) continue;
          const outcome = await this.attempt(e);
          if (outcome.kind === 'retry') break;
        }
      })().finally(() => {
        this.flushing = null;
      });
    }
    return this.flushing;
  }

  private async attempt(entry: OutboxEntry<B>): Promise<SendOutcome<R>> {
    let outcome: SendOutcome<R>;
    this.inFlight.add(entry.key);
    try {
      outcome = await this.send(entry);
    } catch (e) {
      outcome = { kind: 'retry', error: e instanceof Error ? e.message : String(e) };
    } finally {
      this.inFlight.delete(entry.key);
    }
    if (outcome.kind === 'stored') {
      await this.discard(entry.key);
      return outcome;
    }
    const updated: OutboxEntry<B> = { ...entry, attempts: entry.attempts + 1, lastError: outcome.error,
      rejected: outcome.kind === 'rejected' };
    if (this.entries.has(entry.key)) {
      this.entries.set(entry.key, updated);
      this.onChange();
      await this.store.put(updated).catch(() => undefined);
    }
    return outcome;
  }
}

/** Entries in a Map: unit tests, and the fallback when IndexedDB cannot be opened. */
export class MemoryOutboxStore<B = unknown> implements OutboxStore<B> {
  readonly map = new Map<string, OutboxEntry<B>>();
  async put(entry: OutboxEntry<B>): Promise<void> {
    this.map.set(entry.key, structuredClone(entry));
  }
  async delete(key: string): Promise<void> {
    this.map.delete(key);
  }
  async all(): Promise<OutboxEntry<B>[]> {
    return [...this.map.values()].map((e) => structuredClone(e));
  }
}

const DB_NAME = 'sam-annotator';
const STORE = 'outbox';

function promised<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** The browser's store: one IndexedDB object store keyed by `key` (per origin, so every
 * project's unsaved masks live together; the page filters by project). */
export class IdbOutboxStore<B = unknown> implements OutboxStore<B> {
  private constructor(private readonly db: IDBDatabase) {}

  static async open<B>(): Promise<IdbOutboxStore<B>> {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE, { keyPath: 'key' });
    };
    return new IdbOutboxStore<B>(await promised(req));
  }

  /** Runs ``op`` in a read-write transaction and resolves once it is committed (durable). */
  private write(op: (store: IDBObjectStore) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const tx = this.db.transaction(STORE, 'readwrite');
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
      op(tx.objectStore(STORE));
    });
  }

  put(entry: OutboxEntry<B>): Promise<void> {
    return this.write((s) => s.put(entry));
  }

  delete(key: string): Promise<void> {
    return this.write((s) => s.delete(key));
  }

  async all(): Promise<OutboxEntry<B>[]> {
    return (await promised(this.db.transaction(STORE, 'readonly').objectStore(STORE).getAll())) as OutboxEntry<B>[];
  }
}
