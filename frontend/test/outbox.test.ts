import { describe, expect, it } from 'vitest';
import { classifyStatus, MemoryOutboxStore, newClientKey, Outbox, type OutboxEntry, type SendOutcome } from '../src/lib/outbox';

type Body = { n: number; client_key: string };

function server() {
  const stored = new Map<string, number>(); // client_key -> id (the server deduplicates)
  let up = true;
  let nextId = 1;
  const send = async (e: OutboxEntry<Body>): Promise<SendOutcome<number>> => {
    if (!up) return { kind: 'retry', error: 'network error: Failed to fetch' };
    if (e.body.n < 0) return { kind: 'rejected', error: 'The mask is empty. (HTTP 400)' };
    if (!stored.has(e.key)) stored.set(e.key, nextId++);
    return { kind: 'stored', result: stored.get(e.key)! };
  };
  return { stored, send, setUp: (v: boolean) => { up = v; } };
}

const entry = (n: number) => ({ key: `key-${n}-abcdef`, projectId: 1, imageId: 7, body: { n, client_key: `key-${n}-abcdef` } });

describe('outbox', () => {
  it('removes a save once stored, and keeps it (durably) while the server is down', async () => {
    const s = server();
    const store = new MemoryOutboxStore<Body>();
    const box = new Outbox<Body, number>(store, s.send);
    expect((await box.submit(entry(1))).kind).toBe('stored');
    expect(box.size).toBe(0);
    expect(store.map.size).toBe(0);

    s.setUp(false);
    const out = await box.submit(entry(2));
    expect(out.kind).toBe('retry');
    expect(box.list().map((e) => [e.key, e.attempts, e.rejected])).toEqual([['key-2-abcdef', 1, false]]);
    expect([...store.map.keys()]).toEqual(['key-2-abcdef']);
    expect(store.map.get('key-2-abcdef')!.lastError).toContain('network error');
  });

  it('a reload restores unsaved entries and a flush sends them, oldest first, once', async () => {
    const s = server();
    s.setUp(false);
    const store = new MemoryOutboxStore<Body>();
    const first = new Outbox<Body, number>(store, s.send);
    await first.submit(entry(1));
    await first.submit(entry(2));
    // The page is reloaded: a new outbox on the same store.
    const sent: number[] = [];
    const second = new Outbox<Body, number>(store, async (e) => { sent.push(e.body.n); return s.send(e); });
    await second.load();
    expect(second.size).toBe(2);
    await second.flush();
    expect(sent).toEqual([1]); // stops at the first that must wait
    s.setUp(true);
    await Promise.all([second.flush(), second.flush()]); // concurrent flushes share one pass
    expect(sent).toEqual([1, 1, 2]);
    expect(second.size).toBe(0);
    expect(store.map.size).toBe(0);
    expect([...s.stored.values()]).toEqual([1, 2]);
  });

  it('a retry of a save whose answer was lost does not store it twice', async () => {
    const s = server();
    const store = new MemoryOutboxStore<Body>();
    let lose = true;
    const box = new Outbox<Body, number>(store, async (e) => {
      const r = await s.send(e);
      if (lose) { lose = false; return { kind: 'retry', error: 'network error: connection reset' }; }
      return r;
    });
    await box.submit(entry(1)); // stored on the server, answer lost
    expect(box.size).toBe(1);
    await box.flush();
    expect(box.size).toBe(0);
    expect(s.stored.size).toBe(1);
  });

  it('keeps a refused save for the user without retrying it', async () => {
    const s = server();
    const box = new Outbox<Body, number>(new MemoryOutboxStore<Body>(), s.send);
    expect((await box.submit(entry(-1))).kind).toBe('rejected');
    await box.flush();
    const [e] = box.list();
    expect(e!.rejected).toBe(true);
    expect(e!.attempts).toBe(1);
    await box.discard(e!.key);
    expect(box.size).toBe(0);
  });

  it('sorts statuses: no answer, 5xx, 408, 429 and an expired session are retried', () => {
    expect([0, 500, 502, 503, 408, 429, 401].map((s) => classifyStatus(s))).toEqual(Array(7).fill('retry'));
    expect(classifyStatus(403, 'Authentication credentials were not provided.')).toBe('retry');
    expect(classifyStatus(403, 'CSRF Failed: CSRF token from the X-CSRFToken HTTP header incorrect.')).toBe('retry');
    expect(classifyStatus(403, 'This image is assigned to bob.')).toBe('rejected');
    expect([400, 404, 409, 413].map((s) => classifyStatus(s))).toEqual(Array(4).fill('rejected'));
    expect(newClientKey()).toMatch(/^[A-Za-z0-9_-]{8,64}$/);
  });
});

describe('outbox while a first try is in flight', () => {
  it('does not count it as unsaved until that try fails', async () => {
    let release!: (o: SendOutcome<number>) => void;
    const box = new Outbox<Body, number>(new MemoryOutboxStore<Body>(), () => new Promise((r) => { release = r; }));
    const done = box.submit(entry(1));
    await Promise.resolve();
    expect(box.isFirstAttemptInFlight('key-1-abcdef')).toBe(true);
    await box.flush(); // a retry pass leaves it to the attempt under way
    release({ kind: 'retry', error: 'network error' });
    await done;
    expect(box.isFirstAttemptInFlight('key-1-abcdef')).toBe(false);
    expect(box.list()[0]!.attempts).toBe(1);
  });
});
