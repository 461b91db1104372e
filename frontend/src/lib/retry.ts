/**
 * When the annotate page tries again after a request failed: opening an image (N / P, a
 * link) that the server did not answer is retried on its own, backing off, while the page
 * stays on it; refusals that another try cannot change are not retried.
 */
import { classifyStatus } from './outbox';

/** Waits before the 1st, 2nd, ... retry of opening an image (ms); the last one repeats. */
export const OPEN_RETRY_MS: readonly number[] = [1000, 2000, 4000, 8000, 15000, 30000];

/** The wait before retry number `attempt + 1` (attempt 0 = the first failure). */
export function backoffMs(attempt: number, schedule: readonly number[] = OPEN_RETRY_MS): number {
  if (!schedule.length) throw new Error('empty backoff schedule');
  return schedule[Math.min(Math.max(0, Math.floor(attempt)), schedule.length - 1)]!;
}

/**
 * The wait before opening an image again after `attempt` (0-based) failed, or null when
 * another try cannot help.
 * @param status the HTTP status of the failed request, 0 or null when none came (network
 *   error, timeout, a photo that did not load): no answer, a 5xx, 408, 429, 401 and a
 *   session 403 are retried; a 404 (the image is gone), other 4xx are not.
 */
export function openRetryDelay(status: number | null, detail: string, attempt: number): number | null {
  return classifyStatus(status ?? 0, detail) === 'retry' ? backoffMs(attempt) : null;
}

/** The status-line text while an image waits for its next try. */
export function openRetryText(imageId: number, error: string, waitMs: number, attempt: number): string {
  return `Cannot open image ${imageId}: ${error}; trying again in ${Math.round(waitMs / 1000)} s (attempt ${attempt + 2}; N / P still work).`;
}
