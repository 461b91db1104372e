import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../src/api';
import { initialState, Store } from '../src/store';
import { mayRelease, mayTakeOver, shownStatus, takeOverQuestion, WAIT_FOR_LEASE_MS, WorkSession } from '../src/work';

// Found by the QA pass: the work bar said "Image new · yours until …" for an image the
// server had moved to in_progress (the lease does that), and still "yours" after a manager
// broke the lease and the next save came back 409 "qa2 is working on this image".

describe('the work bar status', () => {
  it('holding the lease: a new or rejected image is in progress on the server', () => {
    expect(shownStatus('new', 'mine')).toBe('in_progress');
    expect(shownStatus('rejected', 'mine')).toBe('in_progress');
    expect(shownStatus('new', 'none')).toBe('new');
    // Someone else's lease moved it to in_progress just the same (the page's info may be older).
    expect(shownStatus('new', 'other')).toBe('in_progress');
    expect(shownStatus('rejected', 'elsewhere')).toBe('in_progress');
    expect(shownStatus('done', 'other')).toBe('done');
    expect(shownStatus('done', 'mine')).toBe('done');
  });
});

describe('a mask write refused because someone else holds the lease now', () => {
  afterEach(() => vi.unstubAllGlobals());

  function session(imageId: number): { store: Store; work: WorkSession } {
    vi.stubGlobal('window', { addEventListener: () => undefined });
    const store = new Store({
      ...initialState,
      image: { id: imageId, status: 'in_progress' } as never,
      work: { lease: 'mine', holder: 'demo', until: '2026-12-01T18:00:00Z', note: null, finishing: false },
    });
    return { store, work: new WorkSession(store) };
  }

  const conflict = new ApiError(409, 'qa2 is working on this image (lease until 18:01:06 UTC).', null, {},
    { detail: 'qa2 is working on this image (lease until 18:01:06 UTC).', lease: { holder: 'qa2', expires_at: '2026-12-01T18:01:06Z' } });

  it('the bar shows the new holder instead of "yours"', () => {
    const { store, work } = session(12);
    expect(work.lostLease(12, conflict)).toBe(true);
    expect(store.get().work).toMatchObject({ lease: 'other', holder: 'qa2', until: '2026-12-01T18:01:06Z' });
  });

  it('other errors, or another image than the open one, change nothing', () => {
    const { store, work } = session(12);
    expect(work.lostLease(12, new ApiError(500, 'HTTP 500', null, {}, null))).toBe(false);
    expect(work.lostLease(12, new Error('network'))).toBe(false);
    work.lostLease(13, conflict);
    expect(store.get().work.lease).toBe('mine');
  });
});

describe('leaving the page: the lease goes back unless a save of the image still waits', () => {
  afterEach(() => vi.unstubAllGlobals());

  const lease = { image: 12, holder: 'demo', expires_at: '2026-12-01T18:10:00Z', lease_seconds: 600 };

  /** A page holding image 12's lease; `fire` dispatches window events; `calls` the requests. */
  async function page(pending: { imageId: number; rejected: boolean }[] = []) {
    const listeners = new Map<string, ((ev: unknown) => void)[]>();
    vi.stubGlobal('window', {
      addEventListener: (type: string, fn: (ev: unknown) => void) => listeners.set(type, [...(listeners.get(type) ?? []), fn]),
    });
    const calls: { url: string; method: string; keepalive: boolean }[] = [];
    vi.stubGlobal('fetch', async (url: string, init: RequestInit) => {
      calls.push({ url, method: init.method ?? 'GET', keepalive: init.keepalive === true });
      return init.method === 'DELETE' ? new Response(null, { status: 204 }) : Response.json(lease);
    });
    vi.stubGlobal('document', { addEventListener: () => undefined, visibilityState: 'visible', cookie: '' });
    const store = new Store({
      ...initialState,
      project: { id: 3, actions: ['annotate'] } as never,
      image: { id: 12, status: 'in_progress' } as never,
    });
    const work = new WorkSession(store, () => pending);
    await work.enter({ id: 12, status: 'in_progress' } as never);
    const fire = (type: string, ev: unknown = {}) => (listeners.get(type) ?? []).forEach((fn) => fn(ev));
    return { store, work, calls, fire };
  }

  it('pagehide gives it back with a request that outlives the page', async () => {
    const { calls, fire, store, work } = await page();
    expect(store.get().work.lease).toBe('mine');
    calls.length = 0;
    fire('pagehide', { persisted: false });
    expect(calls).toEqual([{ url: `/api/images/12/lease?token=${work.token}`, method: 'DELETE', keepalive: true }]);
  });

  it('not while a save of that image is in the outbox; saves of other images or refused ones do not count', async () => {
    const kept = await page([{ imageId: 12, rejected: false }]);
    kept.calls.length = 0;
    kept.fire('pagehide', { persisted: false });
    expect(kept.calls).toEqual([]);
    const other = await page([{ imageId: 99, rejected: false }, { imageId: 12, rejected: true }]);
    other.calls.length = 0;
    other.fire('pagehide', { persisted: false });
    expect(other.calls.map((c) => c.method)).toEqual(['DELETE']);
  });

  it('back from the back/forward cache: the lease is taken again at once', async () => {
    const { calls, fire } = await page();
    fire('pagehide', { persisted: true });
    calls.length = 0;
    fire('pageshow', { persisted: false }); // a fresh load: nothing to do here
    expect(calls).toEqual([]);
    fire('pageshow', { persisted: true });
    await new Promise((r) => setTimeout(r, 0));
    expect(calls).toEqual([{ url: '/api/images/12/lease', method: 'POST', keepalive: false }]);
  });

  it('mayRelease: only a waiting save of that image holds it', () => {
    expect(mayRelease(12, [])).toBe(true);
    expect(mayRelease(12, [{ imageId: 12, rejected: false }])).toBe(false);
    expect(mayRelease(12, [{ imageId: 12, rejected: true }, { imageId: 13, rejected: false }])).toBe(true);
  });
});

describe('two tabs of one user: each page holds the lease under its own token', () => {
  afterEach(() => vi.unstubAllGlobals());

  const lease = { image: 12, holder: 'demo', expires_at: '2026-12-01T18:10:00Z', lease_seconds: 600 };
  const elsewhere = {
    detail: 'You opened this image in another tab or window, which holds it now: work there, or press "Work here" (or reload) to work in this one.',
    code: 'lease_elsewhere', lease: { holder: 'demo', expires_at: '2026-12-01T18:10:00Z' },
  };

  async function tab(answer: (body: { token?: string; renew?: boolean } | null) => Response) {
    vi.stubGlobal('window', { addEventListener: () => undefined });
    let visible: (() => void) | null = null;
    vi.stubGlobal('document', {
      visibilityState: 'visible', cookie: '',
      addEventListener: (type: string, fn: () => void) => { if (type === 'visibilitychange') visible = fn; },
    });
    const bodies: ({ token?: string; renew?: boolean } | null)[] = [];
    vi.stubGlobal('fetch', async (_url: string, init: RequestInit) => {
      const body = init.body ? JSON.parse(String(init.body)) : null;
      bodies.push(body);
      return answer(body);
    });
    const store = new Store({ ...initialState, project: { id: 3, actions: ['annotate'] } as never, image: { id: 12, status: 'in_progress' } as never });
    const work = new WorkSession(store);
    await work.enter({ id: 12, status: 'in_progress' } as never);
    return { store, work, bodies, comeBack: () => visible?.() };
  }

  it('opening takes the lease with the page token; the heartbeat renews with it', async () => {
    const { work, bodies, comeBack } = await tab(() => Response.json(lease));
    expect(work.token).toMatch(/^[A-Za-z0-9_-]{8,64}$/);
    expect(bodies).toEqual([{ token: work.token, renew: false }]);
    comeBack(); // back to this tab: renewed at once
    await new Promise((r) => setTimeout(r, 0));
    expect(bodies[1]).toEqual({ token: work.token, renew: true });
  });

  it('a renew refused because another tab took it over: the bar says so, not "yours"; "Work here" takes it back', async () => {
    let other = false;
    const { store, work, bodies, comeBack } = await tab((body) =>
      other && body?.renew ? Response.json(elsewhere, { status: 409 }) : Response.json(lease));
    expect(store.get().work.lease).toBe('mine');
    other = true;
    comeBack();
    await new Promise((r) => setTimeout(r, 0));
    expect(store.get().work).toMatchObject({ lease: 'elsewhere', holder: null });
    await work.workHere();
    expect(bodies.at(-1)).toEqual({ token: work.token, renew: false });
    expect(store.get().work.lease).toBe('mine');
  });

  it('two pages have two tokens', () => {
    vi.stubGlobal('window', { addEventListener: () => undefined });
    const a = new WorkSession(new Store(initialState));
    const b = new WorkSession(new Store(initialState));
    expect(a.token).not.toBe(b.token);
  });
});

describe('"Take over" (a manager or admin, while someone else holds the lease)', () => {
  afterEach(() => vi.unstubAllGlobals());

  const held = { lease: 'other' as const, holder: 'alice', until: '2026-12-01T18:10:00Z', note: null, finishing: false };

  function state(actions: string[], work: typeof held | { lease: 'mine' | 'none'; holder: string | null; until: null; note: null; finishing: false } = held) {
    return { ...initialState, project: { id: 3, actions } as never, image: { id: 12, status: 'in_progress' } as never, work };
  }

  it('offered only to a role that may annotate and break leases, and only while another holds it', () => {
    expect(mayTakeOver(state(['annotate', 'assign', 'view']))).toBe(true);
    expect(mayTakeOver(state(['annotate', 'view']))).toBe(false); // an annotator
    expect(mayTakeOver(state(['review', 'view']))).toBe(false); // a reviewer
    expect(mayTakeOver(state(['annotate', 'assign'], { lease: 'mine', holder: 'boss', until: null, note: null, finishing: false }))).toBe(false);
    expect(mayTakeOver(state(['annotate', 'assign'], { lease: 'none', holder: null, until: null, note: null, finishing: false }))).toBe(false);
    // A read-only page (the template's role) never offers it.
    expect(mayTakeOver({ ...state(['annotate', 'assign']), access: { ...initialState.access, mayAnnotate: false } })).toBe(false);
  });

  it('the confirm step names the holder', () => {
    expect(takeOverQuestion('alice')).toMatch(/^Take this image over from alice\?/);
    expect(takeOverQuestion(null)).toContain('the other annotator');
  });

  it('takeOver asks the server with takeover: true and the page token, then holds the lease', async () => {
    vi.stubGlobal('window', { addEventListener: () => undefined });
    vi.stubGlobal('document', { addEventListener: () => undefined, visibilityState: 'visible', cookie: '' });
    const bodies: unknown[] = [];
    vi.stubGlobal('fetch', async (_url: string, init: RequestInit) => {
      bodies.push(JSON.parse(String(init.body)));
      return Response.json({ image: 12, holder: 'boss', expires_at: '2026-12-01T18:20:00Z', lease_seconds: 600 });
    });
    const store = new Store(state(['annotate', 'assign', 'view']));
    const work = new WorkSession(store);
    await work.takeOver();
    expect(bodies).toEqual([{ token: work.token, renew: false, takeover: true }]);
    expect(store.get().work).toMatchObject({ lease: 'mine', holder: 'boss' });
    expect(mayTakeOver(store.get())).toBe(false);
  });

  it('refused (403: no longer a manager): the bar says why, the lease stays the other\'s', async () => {
    vi.stubGlobal('window', { addEventListener: () => undefined });
    vi.stubGlobal('document', { addEventListener: () => undefined, visibilityState: 'visible', cookie: '' });
    vi.stubGlobal('fetch', async () => Response.json({ detail: "The lease is alice's; only a manager or an admin may take it over." }, { status: 403 }));
    const store = new Store(state(['annotate', 'assign', 'view']));
    await new WorkSession(store).takeOver();
    expect(store.get().work).toMatchObject({ lease: 'other', holder: 'alice' });
    expect(store.get().work.note).toContain('only a manager');
  });
});

describe('someone else holds the open image: the page takes it once they leave (QA pass)', () => {
  afterEach(() => { vi.unstubAllGlobals(); vi.useRealTimers(); });

  const mine = { image: 12, holder: 'demo', expires_at: '2026-12-01T18:10:00Z', lease_seconds: 600 };
  const held = { detail: 'annotator is working on this image (lease until 18:05:00 UTC).', lease: { holder: 'annotator', expires_at: '2026-12-01T18:05:00Z' } };

  async function waiting(free: () => boolean) {
    vi.useFakeTimers();
    vi.stubGlobal('window', { addEventListener: () => undefined });
    vi.stubGlobal('document', { addEventListener: () => undefined, visibilityState: 'visible', cookie: '' });
    const asked: (boolean | undefined)[] = [];
    vi.stubGlobal('fetch', async (_url: string, init: RequestInit) => {
      const body = init.body ? JSON.parse(String(init.body)) : null;
      asked.push(body?.renew);
      return free() ? Response.json(mine) : Response.json(held, { status: 409 });
    });
    const store = new Store({ ...initialState, project: { id: 3, actions: ['annotate'] } as never, image: { id: 12, status: 'in_progress' } as never });
    const work = new WorkSession(store);
    await work.enter({ id: 12, status: 'in_progress' } as never);
    return { store, work, asked };
  }

  it('asks again every WAIT_FOR_LEASE_MS while they hold it, then holds it and renews', async () => {
    let free = false;
    const { store, asked } = await waiting(() => free);
    expect(store.get().work).toMatchObject({ lease: 'other', holder: 'annotator' });
    await vi.advanceTimersByTimeAsync(WAIT_FOR_LEASE_MS);
    expect(asked).toEqual([false, false]);  // still theirs: asked once more
    expect(store.get().work.lease).toBe('other');
    free = true;  // they closed their tab
    await vi.advanceTimersByTimeAsync(WAIT_FOR_LEASE_MS);
    expect(store.get().work).toMatchObject({ lease: 'mine', holder: 'demo' });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(asked.at(-1)).toBe(true);  // the heartbeat runs now
  });

  it('stops asking once another image is open', async () => {
    const { store, asked } = await waiting(() => false);
    store.set(() => ({ image: { id: 13, status: 'new' } as never }));
    await vi.advanceTimersByTimeAsync(3 * WAIT_FOR_LEASE_MS);
    expect(asked).toEqual([false]);
  });
});
