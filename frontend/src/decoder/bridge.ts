/**
 * DecoderBridge: the one main-thread owner of the decoder worker. Turns the message
 * protocol into promises, transfers buffers instead of copying them, coalesces decode
 * requests so only the newest prompt waits behind a running decode, and holds embedding
 * loads back while a decode runs or waits: a prefetch never delays a click's mask.
 */
import type { DecoderFeeds } from '../lib/feeds';
import { LatestWinsSlot } from '../lib/latestWins';
import type { DecodeResult, InitResult, LoadEmbeddingResult, ResultMap, WorkerReply, WorkerRequest } from './protocol';

/** An error the worker reported (or the worker itself crashed). */
export class DecoderError extends Error {
  constructor(message: string, readonly kind: string = 'DecoderError') {
    super(message);
    this.name = 'DecoderError';
  }
}

export { SupersededError } from '../lib/latestWins';

type Pending = { resolve: (v: never) => void; reject: (e: Error) => void };
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

interface QueuedLoad {
  key: number;
  fp16: ArrayBuffer;
  resolve: (r: LoadEmbeddingResult) => void;
  reject: (e: Error) => void;
}

interface DecodeJob {
  key: number;
  height: number;
  width: number;
  feeds: DecoderFeeds;
}

export class DecoderBridge {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly loadedKeys = new Set<number>();
  private decodeRunning = false;
  private readonly decodes = new LatestWinsSlot<DecodeJob, DecodeResult>();
  /** Embedding loads not yet sent: the worker's fp16 -> float32 conversion blocks it for
   * tens of ms, so one is sent only when no decode runs or waits (decodes go first). */
  private readonly loads: QueuedLoad[] = [];
  private loadRunning = false;

  constructor(worker?: Worker) {
    this.worker =
      worker ?? new Worker(new URL('./decoder-worker.ts', import.meta.url), { type: 'module', name: 'sam-decoder' });
    this.worker.onmessage = (ev: MessageEvent<WorkerReply>) => this.onReply(ev.data);
    this.worker.onerror = (ev: ErrorEvent) => {
      ev.preventDefault();
      this.failAll(new DecoderError(`decoder worker crashed: ${ev.message || 'script error'}`));
    };
    this.worker.onmessageerror = () => this.failAll(new DecoderError('decoder worker sent an unreadable message'));
  }

  init(modelUrl: string, wasmPaths: string, numThreads?: number): Promise<InitResult> {
    return this.request<'init'>({ type: 'init', modelUrl, wasmPaths, ...(numThreads ? { numThreads } : {}) }, []);
  }

  /** Hands the fp16 bytes to the worker (transferred: `fp16` is detached once sent), after
   * any decode that runs or waits. */
  loadEmbedding(key: number, fp16: ArrayBuffer): Promise<LoadEmbeddingResult> {
    return new Promise<LoadEmbeddingResult>((resolve, reject) => {
      this.loads.push({ key, fp16, resolve, reject });
      this.pump();
    });
  }

  hasEmbedding(key: number): boolean {
    return this.loadedKeys.has(key);
  }

  /**
   * Runs the decoder. If a decode is already running, this one waits; if another comes
   * in meanwhile, the waiting one is rejected with SupersededError (latest prompt wins).
   * The feeds' buffers are transferred to the worker.
   */
  decode(key: number, height: number, width: number, feeds: DecoderFeeds): Promise<DecodeResult> {
    const result = this.decodes.offer({ key, height, width, feeds });
    this.pump();
    return result;
  }

  terminate(): void {
    this.worker.terminate();
    this.failAll(new DecoderError('decoder worker terminated'));
  }

  /** Sends the next request when the worker is free: the waiting decode, else the oldest load. */
  private pump(): void {
    if (this.decodeRunning) return;
    if (!this.decodes.hasWaiting) {
      if (!this.loadRunning) this.pumpLoad();
      return;
    }
    // A decode goes at once even while a load is in the worker: the worker runs requests in
    // order, so it starts the moment the conversion ends.
    this.decodeRunning = true;
    this.decodes.runNext(
      (q) => {
        const f = q.feeds;
        const transfer = [f.point_coords.buffer, f.point_labels.buffer, f.mask_input.buffer, f.has_mask_input.buffer, f.orig_im_size.buffer];
        return this.request<'decode'>({ type: 'decode', key: q.key, height: q.height, width: q.width, feeds: f }, transfer);
      },
      () => {
        this.decodeRunning = false;
        this.pump();
      },
    );
  }

  private pumpLoad(): void {
    const l = this.loads.shift();
    if (!l) return;
    this.loadRunning = true;
    // Free again before the caller resumes, so that what it sends next is not held back.
    const done = (): void => {
      this.loadRunning = false;
      this.pump();
    };
    this.request<'loadEmbedding'>({ type: 'loadEmbedding', key: l.key, fp16: l.fp16 }, [l.fp16]).then(
      (r) => {
        for (const k of r.evicted) this.loadedKeys.delete(k);
        this.loadedKeys.add(l.key);
        done();
        l.resolve(r);
      },
      (e: Error) => {
        done();
        l.reject(e);
      },
    );
  }

  private request<K extends keyof ResultMap>(
    msg: DistributiveOmit<Extract<WorkerRequest, { type: K }>, 'id'>,
    transfer: Transferable[],
  ): Promise<ResultMap[K]> {
    const id = this.nextId++;
    return new Promise<ResultMap[K]>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: never) => void, reject });
      this.worker.postMessage({ ...msg, id }, transfer);
    });
  }

  private onReply(reply: WorkerReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    if (reply.ok) p.resolve(reply.result as never);
    else p.reject(new DecoderError(reply.error.message, reply.error.name));
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.decodes.fail(err);
    for (const l of this.loads.splice(0)) l.reject(err);
  }
}
