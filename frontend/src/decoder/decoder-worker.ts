/// <reference lib="webworker" />
/**
 * The decoder Web Worker: holds the onnxruntime-web session and an LRU of float32
 * embeddings, and runs the SAM mask decoder for each prompt. Main-thread UI never blocks
 * on inference.
 */
import * as ort from 'onnxruntime-web/wasm';
import { fp16ToFloat32, fp16ToFloat32Transposed } from '../lib/fp16';
import { LruCache } from '../lib/lru';
import { thresholdMasks } from '../lib/maskImage';
import { upsampleMasks } from '../lib/upsample';
import type { DecodeRequest, InitRequest, LoadEmbeddingRequest, ResultMap, WorkerReply, WorkerRequest } from './protocol';

declare const self: DedicatedWorkerGlobalScope;

const EMBEDDING_SHAPE = [1, 256, 64, 64] as const;
const TOKENS_SHAPE = [1, 64 * 64, 256] as const;
const EMBEDDING_LEN = 256 * 64 * 64;
// Memory cost: 4 MiB (float32 1x256x64x64) per entry -> 8 entries = 32 MiB. Enough for the
// current image, the prefetched next one and a few steps back; the HTTP cache (immutable,
// ETag) makes a re-fetch of an evicted one cheap.
const EMBEDDING_CACHE_ENTRIES = 8;

/** One image's embedding, float32, in the layout the decoder graph takes: the contract's
 * `image_embeddings` 1x256x64x64, or the browser graph's `image_tokens` 1x4096x256. */
interface Embedding {
  tensor: ort.Tensor;
  layout: 'nchw' | 'tokens';
}

let session: ort.InferenceSession | null = null;
const embeddings = new LruCache<number, Embedding>(EMBEDDING_CACHE_ENTRIES);

function wantsTokens(): boolean {
  return session !== null && session.inputNames.includes('image_tokens');
}

async function init(req: InitRequest): Promise<ResultMap['init']> {
  const t0 = performance.now();
  const isolated = self.crossOriginIsolated === true;
  // Threads need SharedArrayBuffer, which only exists under cross-origin isolation.
  const auto = isolated ? Math.max(1, Math.min(4, self.navigator.hardwareConcurrency || 1)) : 1;
  const numThreads = req.numThreads && req.numThreads > 0 ? Math.min(req.numThreads, auto) : auto;
  ort.env.wasm.wasmPaths = req.wasmPaths;
  ort.env.wasm.numThreads = numThreads;
  ort.env.wasm.proxy = false; // we are already off the main thread
  const resp = await fetch(req.modelUrl, { credentials: 'same-origin' });
  if (!resp.ok) throw new Error(`decoder download failed: HTTP ${resp.status} ${resp.statusText} (${req.modelUrl})`);
  const bytes = new Uint8Array(await resp.arrayBuffer());
  session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
  });
  return {
    numThreads,
    crossOriginIsolated: isolated,
    inputNames: [...session.inputNames],
    outputNames: [...session.outputNames],
    loadMs: performance.now() - t0,
  };
}

function loadEmbedding(req: LoadEmbeddingRequest): ResultMap['loadEmbedding'] {
  if (req.fp16.byteLength !== EMBEDDING_LEN * 2) {
    throw new Error(`embedding is ${req.fp16.byteLength} bytes, expected ${EMBEDDING_LEN * 2} (fp16 1x256x64x64)`);
  }
  // Converted once per image (and transposed for the browser graph in the same pass); every
  // decode of this image reuses the tensor.
  const t0 = performance.now();
  const entry: Embedding = wantsTokens()
    ? { tensor: new ort.Tensor('float32', fp16ToFloat32Transposed(req.fp16, 256, 64 * 64), TOKENS_SHAPE), layout: 'tokens' }
    : { tensor: new ort.Tensor('float32', fp16ToFloat32(req.fp16), EMBEDDING_SHAPE), layout: 'nchw' };
  return { key: req.key, evicted: embeddings.set(req.key, entry), convertMs: performance.now() - t0 };
}

/** The embedding in the session's layout (an embedding loaded before the session existed is
 * transposed once, here). */
function embeddingFor(key: number): ort.Tensor | null {
  const entry = embeddings.get(key);
  if (!entry) return null;
  if (wantsTokens() && entry.layout === 'nchw') {
    const src = entry.tensor.data as Float32Array;
    const out = new Float32Array(EMBEDDING_LEN);
    for (let c = 0; c < 256; c++) for (let p = 0; p < 4096; p++) out[p * 256 + c] = src[c * 4096 + p]!;
    entry.tensor = new ort.Tensor('float32', out, TOKENS_SHAPE);
    entry.layout = 'tokens';
  }
  return entry.tensor;
}

/** The typed array's own buffer when it spans all of it (transferable), else a copy. */
function ownBuffer<T extends Float32Array | Uint8Array>(a: T): T {
  return (a.byteOffset === 0 && a.byteLength === a.buffer.byteLength ? a : a.slice()) as T;
}

async function decode(req: DecodeRequest): Promise<ResultMap['decode']> {
  const t0 = performance.now();
  if (!session) throw new Error('decoder not initialised');
  const emb = embeddingFor(req.key);
  if (!emb) throw new Error(`no embedding loaded for image ${req.key}`);
  const f = req.feeds;
  const feeds: Record<string, ort.Tensor> = {
    [wantsTokens() ? 'image_tokens' : 'image_embeddings']: emb,
    point_coords: new ort.Tensor('float32', f.point_coords, [1, f.num_points, 2]),
    point_labels: new ort.Tensor('float32', f.point_labels, [1, f.num_points]),
    mask_input: new ort.Tensor('float32', f.mask_input, [1, 1, 256, 256]),
    has_mask_input: new ort.Tensor('float32', f.has_mask_input, [1]),
  };
  // The contract graph also takes orig_im_size and returns full-size `masks`; the browser
  // graph (engine/onnx_browser.py) returns only low-res logits, upsampled here.
  if (session.inputNames.includes('orig_im_size')) {
    feeds['orig_im_size'] = new ort.Tensor('float32', f.orig_im_size, [2]);
  }
  const t1 = performance.now();
  const out = await session.run(feeds);
  const runMs = performance.now() - t1;
  const masks = out['masks'];
  const iou = out['iou_predictions'];
  const lowRes = out['low_res_masks'];
  if (!iou || !lowRes) throw new Error(`decoder outputs missing: got ${Object.keys(out).join(', ')}`);
  let thresholded: { masks: Uint8Array; areas: number[] };
  if (masks) {
    const dims = masks.dims;
    if (dims.length !== 4 || dims[1] !== 4 || dims[2] !== req.height || dims[3] !== req.width) {
      throw new Error(`masks have shape ${dims.join('x')}, expected 1x4x${req.height}x${req.width}`);
    }
    thresholded = thresholdMasks(masks.data as Float32Array, req.height, req.width);
  } else {
    const dims = lowRes.dims;
    if (dims.length !== 4 || dims[1] !== 4 || dims[2] !== 256 || dims[3] !== 256) {
      throw new Error(`low_res_masks have shape ${dims.join('x')}, expected 1x4x256x256`);
    }
    thresholded = upsampleMasks(lowRes.data as Float32Array, req.height, req.width);
  }
  const { masks: binary, areas } = thresholded;
  const result = {
    masks: binary,
    areas,
    iou_predictions: ownBuffer(iou.data as Float32Array),
    low_res_masks: ownBuffer(lowRes.data as Float32Array),
    height: req.height,
    width: req.width,
    runMs,
    totalMs: 0,
  };
  for (const t of Object.values(out)) t.dispose();
  result.totalMs = performance.now() - t0;
  return result;
}

function transferables(reply: WorkerReply): Transferable[] {
  if (reply.ok && reply.type === 'decode') {
    const r = reply.result;
    return [r.masks.buffer, r.iou_predictions.buffer, r.low_res_masks.buffer];
  }
  return [];
}

function toError(e: unknown): { name: string; message: string } {
  if (e instanceof Error) return { name: e.name, message: e.message };
  // onnxruntime-web sometimes throws plain strings or numbers (wasm error codes).
  return { name: 'Error', message: String(e) };
}

async function handle(req: WorkerRequest): Promise<WorkerReply> {
  try {
    switch (req.type) {
      case 'init':
        return { type: 'init', id: req.id, ok: true, result: await init(req) };
      case 'loadEmbedding':
        return { type: 'loadEmbedding', id: req.id, ok: true, result: loadEmbedding(req) };
      case 'decode':
        return { type: 'decode', id: req.id, ok: true, result: await decode(req) };
    }
  } catch (e) {
    return { type: req.type, id: req.id, ok: false, error: toError(e) } as WorkerReply;
  }
}

// Requests run one at a time, in order: onnxruntime sessions are not re-entrant.
let queue: Promise<unknown> = Promise.resolve();
self.onmessage = (ev: MessageEvent<WorkerRequest>) => {
  const req = ev.data;
  queue = queue.then(async () => {
    const reply = await handle(req);
    self.postMessage(reply, transferables(reply));
  });
};
