import { describe, expect, it } from 'vitest';
import { backoffMs, OPEN_RETRY_MS, openRetryDelay, openRetryText } from '../src/lib/retry';

describe('opening an image again after a failure', () => {
  it('backs off 1, 2, 4, 8, 15 s, then every 30 s', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 50].map((a) => backoffMs(a))).toEqual([1000, 2000, 4000, 8000, 15000, 30000, 30000, 30000]);
    expect(backoffMs(-1)).toBe(OPEN_RETRY_MS[0]);
    expect(() => backoffMs(0, [])).toThrow();
  });
  it('retries what another try can fix: no answer, server errors, a session to renew', () => {
    for (const status of [null, 0, 500, 502, 503, 408, 429, 401]) expect(openRetryDelay(status, '', 0), String(status)).toBe(1000);
    expect(openRetryDelay(403, 'Authentication credentials were not provided.', 2)).toBe(4000);
  });
  it('does not retry refusals: gone, forbidden by role, bad request', () => {
    for (const status of [404, 400, 409, 410]) expect(openRetryDelay(status, '', 0), String(status)).toBeNull();
    expect(openRetryDelay(403, 'Your role (reviewer) may not annotate in this project.', 0)).toBeNull();
  });
  it('says what failed, when the next try comes and which try it is', () => {
    expect(openRetryText(7, 'network error: Failed to fetch', 2000, 1)).toBe(
      'Cannot open image 7: network error: Failed to fetch; trying again in 2 s (attempt 3; N / P still work).');
  });
});
