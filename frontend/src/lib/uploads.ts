/**
 * The upload page's logic as plain data, unit-tested: a queue that sends each file on its
 * own request with a small concurrency (a 2-core server decodes every photo in full), keeps
 * every file's result whatever happens to the others and can retry one that failed on the
 * way (not one the server refused: sending it again changes nothing); the server's refusal
 * as one line; files already in the project (duplicates, docs/api.md "Images"); each
 * uploaded image's embedding / pre-fill stage as the images API reports it; and how to poll
 * for it. upload.ts draws it and talks to the API.
 */
import { classifyStatus } from './outbox';

/** `duplicate`: the server had every image of the file already (nothing stored). */
export type UploadState = 'queued' | 'uploading' | 'uploaded' | 'duplicate' | 'refused' | 'failed';

/** What the page tracks of an uploaded image (a subset of the images API's image). */
export interface TrackedImage {
  id: number;
  file_name: string;
  embedding_status: 'pending' | 'ready' | 'failed';
  embedding_error?: string | null;
  proposals_status?: 'none' | 'pending' | 'running' | 'ready' | 'failed';
  proposals_error?: string | null;
  /** In an upload's answer: the file's bytes were already this image (nothing stored). */
  duplicate?: boolean;
  /** In an upload's answer: the file's name in that upload (a member's path in a zip). */
  upload_name?: string;
}

/** A file of an upload (or a member of its zip) that was already in the project. */
export interface DuplicateFile {
  name: string;
  imageId: number;
}

/**
 * One request's result. `refused`: the server answered and said no for good (a 4xx with its
 * reason: a bad file, too large, no right); otherwise the request failed on the way (no
 * answer, a 5xx, 408/429, an expired session) and may succeed if sent again.
 */
export type UploadOutcome =
  | { ok: true; images: TrackedImage[] }
  | { ok: false; refused: boolean; reason: string };

export interface UploadFile {
  readonly name: string;
  readonly size: number;
}

export interface UploadItem<F extends UploadFile> {
  /** Unique per queue, in the order files were added. */
  readonly key: number;
  readonly file: F;
  state: UploadState;
  /** 0..1 of the bytes sent (the current attempt). */
  progress: number;
  /** Why it was refused or failed (the server's words when it answered). */
  reason: string | null;
  /** The images the file stands for, each once: new ones and those it duplicates. */
  images: TrackedImage[];
  /** How many new images the server stored for the file. */
  stored: number;
  /** Its images (zip members) that the project had already: skipped by the server. */
  duplicates: DuplicateFile[];
  attempts: number;
}

/** Sends one file; reports the fraction of bytes sent. Should not throw (a throw is a "failed"). */
export type UploadSender<F extends UploadFile> = (file: F, onProgress: (fraction: number) => void) => Promise<UploadOutcome>;

export interface UploadQueueOptions<F extends UploadFile> {
  /** Requests at once (default 2; at least 1). */
  concurrency?: number;
  /** Called after every change of an item (state, progress, images). */
  onChange?: (item: UploadItem<F>) => void;
}

/**
 * Files to upload, each its own request, at most `concurrency` at once, in the order added.
 * A refusal or failure changes only that file's item; `retry` sends it again.
 */
export class UploadQueue<F extends UploadFile> {
  private readonly list: UploadItem<F>[] = [];
  private readonly concurrency: number;
  private readonly onChange: (item: UploadItem<F>) => void;
  private running = 0;
  private nextKey = 1;
  private waiters: (() => void)[] = [];

  constructor(private readonly send: UploadSender<F>, options: UploadQueueOptions<F> = {}) {
    const c = options.concurrency ?? 2;
    if (!Number.isInteger(c) || c < 1) throw new RangeError(`UploadQueue: concurrency must be an integer >= 1, not ${c}`);
    this.concurrency = c;
    this.onChange = options.onChange ?? (() => {});
  }

  /** Every item, in the order added. */
  get items(): readonly UploadItem<F>[] {
    return this.list;
  }

  /** Queues files; returns their new items. */
  add(files: Iterable<F>): UploadItem<F>[] {
    const added: UploadItem<F>[] = [];
    for (const file of files) {
      const item: UploadItem<F> = {
        key: this.nextKey++, file, state: 'queued', progress: 0, reason: null, images: [], stored: 0, duplicates: [], attempts: 0,
      };
      this.list.push(item);
      added.push(item);
      this.onChange(item);
    }
    this.pump();
    return added;
  }

  /** Sends a file that failed on the way again; false for an unknown key or any other state
   * (a refused file would be refused again). */
  retry(key: number): boolean {
    const item = this.list.find((i) => i.key === key);
    if (!item || item.state !== 'failed') return false;
    item.state = 'queued';
    item.progress = 0;
    item.reason = null;
    this.onChange(item);
    this.pump();
    return true;
  }

  /** True while a file is queued or being sent. */
  get busy(): boolean {
    return this.running > 0 || this.list.some((i) => i.state === 'queued');
  }

  /** Resolves once nothing is queued or being sent. */
  idle(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private pump(): void {
    while (this.running < this.concurrency) {
      const item = this.list.find((i) => i.state === 'queued');
      if (!item) break;
      this.running++;
      void this.run(item).finally(() => {
        this.running--;
        this.pump();
        if (!this.busy) {
          const waiters = this.waiters;
          this.waiters = [];
          for (const w of waiters) w();
        }
      });
    }
  }

  private async run(item: UploadItem<F>): Promise<void> {
    item.state = 'uploading';
    item.progress = 0;
    item.attempts++;
    this.onChange(item);
    let outcome: UploadOutcome;
    try {
      outcome = await this.send(item.file, (fraction) => {
        if (item.state !== 'uploading') return;
        item.progress = Math.min(1, Math.max(0, fraction));
        this.onChange(item);
      });
    } catch (e) {
      outcome = { ok: false, refused: false, reason: e instanceof Error ? e.message : String(e) };
    }
    if (outcome.ok) {
      const split = splitUpload(outcome.images);
      item.state = split.stored === 0 && split.duplicates.length > 0 ? 'duplicate' : 'uploaded';
      item.progress = 1;
      item.reason = null;
      item.images = split.images;
      item.stored = split.stored;
      item.duplicates = split.duplicates;
    } else {
      item.state = outcome.refused ? 'refused' : 'failed';
      item.reason = outcome.reason;
    }
    this.onChange(item);
  }
}

/**
 * An upload's answer (one entry per image file sent, a duplicate's entry being the image it
 * repeats) as what the page tracks: each image once, how many were stored, which files
 * were already in the project.
 */
export function splitUpload(answer: TrackedImage[]): { images: TrackedImage[]; stored: number; duplicates: DuplicateFile[] } {
  const images: TrackedImage[] = [];
  const seen = new Set<number>();
  const duplicates: DuplicateFile[] = [];
  let stored = 0;
  for (const im of answer) {
    if (im.duplicate) duplicates.push({ name: im.upload_name ?? im.file_name, imageId: im.id });
    else stored++;
    if (!seen.has(im.id)) {
      seen.add(im.id);
      images.push(im);
    }
  }
  return { images, stored, duplicates };
}

/** A piece of a result line: text, or a link to an image of the project. */
export type ResultPart = string | { imageId: number; text: string };

/**
 * The line a file's row shows for its upload: "uploaded (3 images; 2 already in the
 * project, skipped)", "already in the project (image 12)" with a link to that image,
 * "refused: <the server's reason>", "failed: <why>"; empty while queued or sending.
 */
export function uploadResult(item: Pick<UploadItem<UploadFile>, 'state' | 'reason' | 'stored' | 'duplicates'>): ResultPart[] {
  const dups = item.duplicates.length;
  switch (item.state) {
    case 'uploaded': {
      const notes: string[] = [];
      if (item.stored > 1 || dups > 0) notes.push(`${item.stored} image${item.stored === 1 ? '' : 's'}`);
      if (dups > 0) notes.push(`${dups} already in the project, skipped`);
      return [notes.length ? `uploaded (${notes.join('; ')})` : 'uploaded'];
    }
    case 'duplicate': {
      const ids = [...new Set(item.duplicates.map((d) => d.imageId))];
      if (ids.length === 1) return ['already in the project (', { imageId: ids[0]!, text: `image ${ids[0]}` }, ')'];
      return [`already in the project (all ${dups} images, skipped)`];
    }
    case 'refused':
    case 'failed':
      return [`${item.state}: ${item.reason ?? ''}`];
    default:
      return [];
  }
}

function messages(v: unknown): string[] {
  if (Array.isArray(v)) return v.flatMap(messages);
  if (v && typeof v === 'object') {
    return Object.entries(v as Record<string, unknown>).flatMap(([k, x]) => messages(x).map((m) => `${k}: ${m}`));
  }
  return v === null || v === undefined ? [] : [String(v)];
}

/**
 * A failed `POST /api/projects/<id>/images/` of one file as an outcome with one line of
 * reason, in the server's words, and whether it was a refusal for good (no Retry) or a
 * failure on the way (Retry).
 *
 * @param status HTTP status; 0 when no answer came (network error, aborted).
 * @param body the parsed JSON body: `{"detail": "..."}` (413, 403) or, for a bad file,
 *   `{"<file name>": ["reason", ...]}` (a zip's members as `"<archive>/<member>"`, the
 *   request as a whole as `"files"`).
 * @param fileName the file sent: its own key is not repeated in the reason.
 * @param fallback what to say when the body says nothing usable ("HTTP 502 Bad Gateway").
 */
export function uploadFailure(status: number, body: unknown, fileName: string, fallback: string): UploadOutcome & { ok: false } {
  let parts: string[] = [];
  let detail = '';
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    const obj = body as Record<string, unknown>;
    if (typeof obj['detail'] === 'string') detail = obj['detail'];
    if (typeof obj['detail'] === 'string') parts = [obj['detail']];
    else {
      for (const [key, value] of Object.entries(obj)) {
        const msgs = messages(value);
        parts.push(...(key === fileName || key === 'files' || key === 'non_field_errors' ? msgs : msgs.map((m) => `${key}: ${m}`)));
      }
    }
  } else if (Array.isArray(body)) parts = messages(body);
  const reason = parts.length ? parts.join('; ') : fallback;
  // The outbox's rule (lib/outbox.ts): no answer, 5xx, 408, 429 and an expired session
  // (401, a 403 about credentials or CSRF) are worth sending again; other 4xx are not.
  const refused = classifyStatus(status, detail) === 'rejected';
  return { ok: false, refused, reason };
}

export type StageTone = 'wait' | 'ok' | 'bad' | 'off';

export interface ImageStage {
  embedding: { tone: StageTone; label: string };
  /** null when the project has pre-fill off. */
  prefill: { tone: StageTone; label: string } | null;
  /** Nothing more will change by itself (embedding failed, or ready and pre-fill done or off). */
  settled: boolean;
}

/**
 * An uploaded image's embedding and pre-fill stage, from what the images API reports
 * (`embedding_status`, `proposals_status` and their errors).
 */
export function imageStage(image: TrackedImage, prefillEnabled: boolean): ImageStage {
  const e = image.embedding_status;
  const embedding =
    e === 'ready' ? { tone: 'ok' as const, label: 'embedding ready' }
      : e === 'failed' ? { tone: 'bad' as const, label: `embedding failed${image.embedding_error ? `: ${image.embedding_error}` : ''}` }
        : { tone: 'wait' as const, label: 'embedding…' };
  if (!prefillEnabled) return { embedding, prefill: null, settled: e !== 'pending' };
  const p = image.proposals_status ?? 'none';
  let prefill: { tone: StageTone; label: string };
  let prefillDone = false;
  if (e === 'failed') {
    prefill = { tone: 'off', label: 'no pre-fill (no embedding)' };
    prefillDone = true;
  } else if (p === 'ready') {
    prefill = { tone: 'ok', label: 'proposals ready' };
    prefillDone = true;
  } else if (p === 'failed') {
    prefill = { tone: 'bad', label: `pre-fill failed${image.proposals_error ? `: ${image.proposals_error}` : ''}` };
    prefillDone = true;
  } else if (p === 'running') prefill = { tone: 'wait', label: 'pre-fill running…' };
  else if (e === 'pending') prefill = { tone: 'wait', label: 'pre-fill waits for the embedding' };
  else prefill = { tone: 'wait', label: 'pre-fill queued…' };
  return { embedding, prefill, settled: e !== 'pending' && prefillDone };
}

/** How to fetch the statuses of `ids`: one image at a time while few, else the project's list. */
export type PollPlan = { kind: 'each'; ids: number[] } | { kind: 'list' } | { kind: 'none' };

/**
 * @param ids images not settled yet.
 * @param maxSingles up to this many are fetched one by one (`GET /api/images/<id>/`); more
 *   are read from one `GET /api/projects/<id>/images/` (the whole project, so not per poll
 *   for a handful of images in a large project).
 */
export function pollPlan(ids: number[], maxSingles = 4): PollPlan {
  if (!ids.length) return { kind: 'none' };
  return ids.length <= maxSingles ? { kind: 'each', ids: [...ids] } : { kind: 'list' };
}

/**
 * Milliseconds before status poll number `round` (0-based since the last upload landed):
 * 1 s at first, 1.5x slower each round up to 10 s (an embedding takes ~0.1 s to minutes by
 * model; pre-fill about a minute per photo on CPU).
 */
export function pollDelay(round: number): number {
  if (!Number.isFinite(round) || round < 0) throw new RangeError(`pollDelay: round must be >= 0, not ${round}`);
  return Math.min(10_000, Math.round(1000 * 1.5 ** round));
}

/** "12.3 MB" / "850 KB" / "312 bytes", in units of 1024 as Django's `filesizeformat`
 * writes the limits on the page. */
export function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${n} bytes`;
}

/**
 * The summary's note after "N uploaded": how many new images those N files stored, when that
 * is not N (a zip stands for several photos; QA pass: "1 uploaded" for a zip of 3 read as
 * one photo). Empty when every uploaded file stored exactly one image.
 */
export function newImagesNote(uploadedFiles: number, newImages: number): string {
  return uploadedFiles === newImages ? '' : ` (${newImages} new image${newImages === 1 ? '' : 's'})`;
}
