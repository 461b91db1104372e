import { describe, expect, it } from 'vitest';
import {
  formatBytes,
  newImagesNote,
  imageStage,
  pollDelay,
  pollPlan,
  splitUpload,
  uploadFailure,
  uploadResult,
  UploadQueue,
  type TrackedImage,
  type UploadOutcome,
} from '../src/lib/uploads';

interface FakeFile {
  name: string;
  size: number;
}

/** A sender whose requests the test answers one by one. */
function manualSender() {
  const pending: { file: FakeFile; progress: (f: number) => void; answer: (o: UploadOutcome) => void; fail: (e: Error) => void }[] = [];
  const send = (file: FakeFile, progress: (f: number) => void) =>
    new Promise<UploadOutcome>((answer, fail) => pending.push({ file, progress, answer, fail }));
  return { send, pending };
}

const image = (id: number, over: Partial<TrackedImage> = {}): TrackedImage => ({
  id, file_name: `${id}.jpg`, embedding_status: 'pending', embedding_error: '', proposals_status: 'none', ...over,
});
const tick = () => new Promise((r) => setTimeout(r, 0));

describe('UploadQueue', () => {
  it('sends at most `concurrency` files at once, in order', async () => {
    const { send, pending } = manualSender();
    const q = new UploadQueue<FakeFile>(send, { concurrency: 2 });
    q.add([{ name: 'a', size: 1 }, { name: 'b', size: 1 }, { name: 'c', size: 1 }]);
    expect(pending.map((p) => p.file.name)).toEqual(['a', 'b']);
    expect(q.items.map((i) => i.state)).toEqual(['uploading', 'uploading', 'queued']);
    pending[0]!.answer({ ok: true, images: [image(1)] });
    await tick();
    expect(pending.map((p) => p.file.name)).toEqual(['a', 'b', 'c']);
    expect(q.items[0]!.state).toBe('uploaded');
    expect(q.items[0]!.images.map((i) => i.id)).toEqual([1]);
  });

  it('a refusal or a failure changes only that file; the others keep their results', async () => {
    const { send, pending } = manualSender();
    const q = new UploadQueue<FakeFile>(send, { concurrency: 1 });
    q.add([{ name: 'ok.jpg', size: 1 }, { name: 'bad.jpg', size: 1 }, { name: 'net.jpg', size: 1 }, { name: 'ok2.jpg', size: 1 }]);
    pending[0]!.answer({ ok: true, images: [image(1)] });
    await tick();
    pending[1]!.answer({ ok: false, refused: true, reason: 'not a readable image' });
    await tick();
    pending[2]!.fail(new Error('network error'));
    await tick();
    pending[3]!.answer({ ok: true, images: [image(2)] });
    await q.idle();
    expect(q.items.map((i) => [i.file.name, i.state, i.reason])).toEqual([
      ['ok.jpg', 'uploaded', null],
      ['bad.jpg', 'refused', 'not a readable image'],
      ['net.jpg', 'failed', 'network error'],
      ['ok2.jpg', 'uploaded', null],
    ]);
  });

  it('retries a failed file (only a refused or failed one)', async () => {
    const { send, pending } = manualSender();
    const q = new UploadQueue<FakeFile>(send);
    const [a, b] = q.add([{ name: 'a', size: 1 }, { name: 'b', size: 1 }]);
    expect(q.retry(a!.key)).toBe(false); // still uploading
    pending[0]!.answer({ ok: false, refused: false, reason: 'HTTP 502 Bad Gateway' });
    pending[1]!.answer({ ok: true, images: [image(5)] });
    await q.idle();
    expect(q.retry(b!.key)).toBe(false); // uploaded
    expect(q.retry(12345)).toBe(false);
    expect(q.retry(a!.key)).toBe(true);
    expect(a!.state).toBe('uploading');
    expect(a!.reason).toBeNull();
    pending[2]!.answer({ ok: true, images: [image(6)] });
    await q.idle();
    expect([a!.state, a!.attempts, a!.images[0]!.id]).toEqual(['uploaded', 2, 6]);
    expect([b!.state, b!.images[0]!.id]).toEqual(['uploaded', 5]);
  });

  it('reports progress, clamped, and every change', async () => {
    const { send, pending } = manualSender();
    const seen: string[] = [];
    const q = new UploadQueue<FakeFile>(send, { onChange: (i) => seen.push(`${i.state}:${i.progress}`) });
    q.add([{ name: 'a', size: 10 }]);
    pending[0]!.progress(0.5);
    pending[0]!.progress(1.7);
    pending[0]!.answer({ ok: true, images: [] });
    await q.idle();
    expect(seen).toEqual(['queued:0', 'uploading:0', 'uploading:0.5', 'uploading:1', 'uploaded:1']);
    expect(q.busy).toBe(false);
  });

  it('retries only a file that failed on the way, never one the server refused', async () => {
    const { send, pending } = manualSender();
    const q = new UploadQueue<FakeFile>(send);
    const [bad, net] = q.add([{ name: 'bad.jpg', size: 1 }, { name: 'net.jpg', size: 1 }]);
    pending[0]!.answer({ ok: false, refused: true, reason: 'not a readable image' });
    pending[1]!.answer({ ok: false, refused: false, reason: 'HTTP 503 Service Unavailable' });
    await q.idle();
    expect(q.retry(bad!.key)).toBe(false);
    expect([bad!.state, bad!.reason, pending.length]).toEqual(['refused', 'not a readable image', 2]);
    expect(q.retry(net!.key)).toBe(true);
    expect(pending.length).toBe(3);
  });

  it('a file the project had already is "duplicate", not uploaded; a zip counts its skipped members', async () => {
    const { send, pending } = manualSender();
    const q = new UploadQueue<FakeFile>(send, { concurrency: 2 });
    const [again, zip] = q.add([{ name: 'again.jpg', size: 1 }, { name: 'batch.zip', size: 1 }]);
    pending[0]!.answer({ ok: true, images: [image(7, { duplicate: true, upload_name: 'again.jpg' })] });
    pending[1]!.answer({ ok: true, images: [
      image(7, { duplicate: true, upload_name: 'a/old.jpg' }), image(8, { duplicate: false, upload_name: 'a/new.jpg' }),
      image(8, { duplicate: true, upload_name: 'b/new-copy.jpg' }), image(9, { duplicate: false, upload_name: 'b/other.jpg' }),
    ] });
    await q.idle();
    expect([again!.state, again!.stored, again!.duplicates]).toEqual(['duplicate', 0, [{ name: 'again.jpg', imageId: 7 }]]);
    expect(again!.images.map((i) => i.id)).toEqual([7]);
    expect(q.retry(again!.key)).toBe(false);
    expect([zip!.state, zip!.stored, zip!.duplicates.length]).toEqual(['uploaded', 2, 2]);
    expect(zip!.images.map((i) => i.id)).toEqual([7, 8, 9]); // each image once: polled once
  });

  it('refuses a bad concurrency', () => {
    expect(() => new UploadQueue(async () => ({ ok: true, images: [] }), { concurrency: 0 })).toThrow(RangeError);
  });
});

describe('the server\'s refusal as one line', () => {
  it('a bad file: the reason, without repeating the file name', () => {
    expect(uploadFailure(400, { 'junk.jpg': ['not a readable image (not a recognised image format)'] }, 'junk.jpg', 'x')).toEqual({
      ok: false, refused: true, reason: 'not a readable image (not a recognised image format)',
    });
  });
  it('zip members keep their names; "files" errors do not', () => {
    const r = uploadFailure(400, { 'a.zip/x.jpg': ['the file is empty'], files: ['201 images in one upload; at most 200.'] }, 'a.zip', 'x');
    expect(r.reason).toBe('a.zip/x.jpg: the file is empty; 201 images in one upload; at most 200.');
  });
  it('too large (413) and not allowed (403) are refusals with the detail', () => {
    expect(uploadFailure(413, { detail: 'The request body is 300 bytes, over the limit of 200 bytes for an upload.' }, 'a', 'x'))
      .toEqual({ ok: false, refused: true, reason: 'The request body is 300 bytes, over the limit of 200 bytes for an upload.' });
    expect(uploadFailure(403, { detail: 'Your role (annotator) may not settings in this project.' }, 'a', 'x').refused).toBe(true);
  });
  it('busy (429), timeout (408) and an expired session (401, a CSRF 403) are failures worth retrying', () => {
    expect(uploadFailure(429, { detail: 'Request was throttled.' }, 'a', 'x').refused).toBe(false);
    expect(uploadFailure(408, null, 'a', 'HTTP 408').refused).toBe(false);
    expect(uploadFailure(401, { detail: 'Authentication credentials were not provided.' }, 'a', 'x').refused).toBe(false);
    expect(uploadFailure(403, { detail: 'CSRF Failed: CSRF token missing.' }, 'a', 'x').refused).toBe(false);
    expect(uploadFailure(404, { detail: 'Not found.' }, 'a', 'x').refused).toBe(true);
  });
  it('no answer or a server error is a failure (retry may help), with the fallback text', () => {
    expect(uploadFailure(0, null, 'a', 'network error: the upload did not reach the server')).toEqual({
      ok: false, refused: false, reason: 'network error: the upload did not reach the server',
    });
    expect(uploadFailure(502, '<html>', 'a', 'HTTP 502 Bad Gateway')).toEqual({ ok: false, refused: false, reason: 'HTTP 502 Bad Gateway' });
  });
});

describe('an image\'s stage', () => {
  it('pre-fill off: settled once the embedding is ready or failed', () => {
    expect(imageStage(image(1), false)).toEqual({ embedding: { tone: 'wait', label: 'embedding…' }, prefill: null, settled: false });
    expect(imageStage(image(1, { embedding_status: 'ready' }), false).settled).toBe(true);
    const failed = imageStage(image(1, { embedding_status: 'failed', embedding_error: 'worker died' }), false);
    expect(failed.embedding).toEqual({ tone: 'bad', label: 'embedding failed: worker died' });
    expect(failed.settled).toBe(true);
  });
  it('pre-fill on: settled once proposals are ready or failed', () => {
    expect(imageStage(image(1), true).prefill?.label).toBe('pre-fill waits for the embedding');
    const queued = imageStage(image(1, { embedding_status: 'ready' }), true);
    expect([queued.prefill?.label, queued.settled]).toEqual(['pre-fill queued…', false]);
    expect(imageStage(image(1, { embedding_status: 'ready', proposals_status: 'running' }), true).prefill?.label).toBe('pre-fill running…');
    const ready = imageStage(image(1, { embedding_status: 'ready', proposals_status: 'ready' }), true);
    expect([ready.prefill, ready.settled]).toEqual([{ tone: 'ok', label: 'proposals ready' }, true]);
    const bad = imageStage(image(1, { embedding_status: 'ready', proposals_status: 'failed', proposals_error: 'oom' }), true);
    expect([bad.prefill?.label, bad.settled]).toEqual(['pre-fill failed: oom', true]);
    expect(imageStage(image(1, { embedding_status: 'failed' }), true).settled).toBe(true);
  });
});

describe('polling', () => {
  it('few images one by one, many from the project list, none: no poll', () => {
    expect(pollPlan([])).toEqual({ kind: 'none' });
    expect(pollPlan([3, 4])).toEqual({ kind: 'each', ids: [3, 4] });
    expect(pollPlan([1, 2, 3, 4, 5])).toEqual({ kind: 'list' });
    expect(pollPlan([1, 2], 1)).toEqual({ kind: 'list' });
  });
  it('1 s, slower each round, at most 10 s', () => {
    expect([0, 1, 2, 3].map(pollDelay)).toEqual([1000, 1500, 2250, 3375]);
    expect(pollDelay(50)).toBe(10_000);
    expect(() => pollDelay(-1)).toThrow(RangeError);
  });
  it('formats sizes as the page states the limits', () => {
    expect([formatBytes(312), formatBytes(2048), formatBytes(50 * 1024 * 1024)]).toEqual(['312 bytes', '2.0 KB', '50.0 MB']);
  });
});

describe('duplicates in an upload\'s answer', () => {
  it('each image once, the stored count, which files were already there', () => {
    const split = splitUpload([
      image(3, { duplicate: false, upload_name: 'x.jpg' }), image(3, { duplicate: true, upload_name: 'x copy.jpg' }),
      image(1, { duplicate: true }),
    ]);
    expect(split.images.map((i) => i.id)).toEqual([3, 1]);
    expect(split.stored).toBe(1);
    expect(split.duplicates).toEqual([{ name: 'x copy.jpg', imageId: 3 }, { name: '1.jpg', imageId: 1 }]);
  });
  it('the result line: a duplicate links to the image it repeats; no reason words for it', () => {
    const base = { reason: null, stored: 0, duplicates: [] as { name: string; imageId: number }[] };
    expect(uploadResult({ ...base, state: 'uploaded', stored: 1 })).toEqual(['uploaded']);
    expect(uploadResult({ ...base, state: 'uploaded', stored: 3 })).toEqual(['uploaded (3 images)']);
    expect(uploadResult({ ...base, state: 'uploaded', stored: 1, duplicates: [{ name: 'a', imageId: 2 }, { name: 'b', imageId: 4 }] }))
      .toEqual(['uploaded (1 image; 2 already in the project, skipped)']);
    expect(uploadResult({ ...base, state: 'duplicate', duplicates: [{ name: 'a.jpg', imageId: 12 }] }))
      .toEqual(['already in the project (', { imageId: 12, text: 'image 12' }, ')']);
    expect(uploadResult({ ...base, state: 'duplicate', duplicates: [{ name: 'a', imageId: 2 }, { name: 'b', imageId: 4 }] }))
      .toEqual(['already in the project (all 2 images, skipped)']);
    expect(uploadResult({ ...base, state: 'refused', reason: 'the file is empty' })).toEqual(['refused: the file is empty']);
    expect(uploadResult({ ...base, state: 'queued' })).toEqual([]);
  });
});

describe('the summary says how many new images the uploaded files stored', () => {
  it('a zip of 3 photos is "1 uploaded (3 new images)"; one photo per file needs no note', () => {
    expect(`1 uploaded${newImagesNote(1, 3)}`).toBe('1 uploaded (3 new images)');
    expect(newImagesNote(2, 1)).toBe(' (1 new image)');  // a zip whose photos were all but one already there
    expect(newImagesNote(4, 4)).toBe('');
  });
});
