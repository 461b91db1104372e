import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../src/api';
import { initialState, Store } from '../src/store';
import { shownStatus, WorkSession } from '../src/work';

// Found by the QA pass: the work bar said "Image new · yours until …" for an image the
// server had moved to in_progress (the lease does that), and still "yours" after a manager
// broke the lease and the next save came back 409 "qa2 is working on this image".

describe('the work bar status', () => {
  it('holding the lease: a new or rejected image is in progress on the server', () => {
    expect(shownStatus('new', 'mine')).toBe('in_progress');
    expect(shownStatus('rejected', 'mine')).toBe('in_progress');
    expect(shownStatus('new', 'none')).toBe('new');
    expect(shownStatus('new', 'other')).toBe('new');
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
