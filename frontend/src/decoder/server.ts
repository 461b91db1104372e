/**
 * ServerDecoder: the server round trip (`POST /api/images/<id>/decode`: onnxruntime in
 * Django, masks back as RLE) behind the same `decode()` as DecoderBridge, so the annotate
 * page can decode either way (`?decoder=server`) and both are measured on the same prompts
 * (issue 7). Same 'latest prompt wins' coalescing as the bridge; same DecodeResult layout
 * as the worker's (binary masks, areas, float32 low-res logits).
 */
import { decodePrompt, type DecodePromptBody, type DecodePromptResponse } from '../api';
import { scaleTo1024 } from '../lib/coords';
import { LOW_RES_SIZE, type DecoderFeeds } from '../lib/feeds';
import { fp16ToFloat32 } from '../lib/fp16';
import { stringToCounts, type CocoRle } from '../lib/rle';
import { LatestWinsSlot } from '../lib/latestWins';
import type { DecodeResult } from './protocol';

const CANDIDATES = 4;
const FP16_MAX = 65504;

/**
 * The COCO RLEs of the 4 candidates -> the worker's layout: 4 x H x W bytes (0/1, row-major,
 * candidate-major) and each candidate's pixel count (what thresholdMasks gives for logits).
 * @throws Error when an RLE's size is not [height, width] or its runs do not cover it.
 */
export function rlesToMasks(rles: readonly CocoRle[], height: number, width: number): { masks: Uint8Array; areas: number[] } {
  const hw = height * width;
  const masks = new Uint8Array(rles.length * hw);
  const areas: number[] = [];
  rles.forEach((rle, c) => {
    if (rle.size[0] !== height || rle.size[1] !== width) {
      throw new Error(`mask ${c} is ${rle.size[0]}x${rle.size[1]}, expected ${height}x${width}`);
    }
    const base = c * hw;
    let pos = 0; // column-major index of the run's first pixel
    let on = false;
    let area = 0;
    for (const n of stringToCounts(rle.counts)) {
      if (n < 0 || pos + n > hw) throw new Error(`mask ${c}: RLE runs do not fit ${height}x${width}`);
      if (on && n > 0) {
        area += n;
        // Walk the run down its columns without a division per pixel.
        let y = pos % height;
        let x = (pos - y) / height;
        let i = base + y * width + x;
        for (let k = 0; k < n; k++) {
          masks[i] = 1;
          if (++y === height) {
            y = 0;
            i = base + ++x;
          } else {
            i += width;
          }
        }
      }
      pos += n;
      on = !on;
    }
    if (pos !== hw) throw new Error(`mask ${c}: RLE runs cover ${pos} pixels, expected ${hw}`);
    areas.push(area);
  });
  return { masks, areas };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> IEEE 754 binary16 bits, rounded to nearest even (NaN stays NaN, overflow -> inf). */
export function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: +-0
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rem > mid || (rem === mid && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa moves into the exponent, which is the right rounding.
  return sign | (half + (rem > 0x1000 || (rem === 0x1000 && half & 1) ? 1 : 0));
}

/** Logits -> base64 of little-endian fp16 (clipped to fp16's finite range: the server refuses infinities). */
export function logitsToFp16Base64(logits: Float32Array): string {
  const half = new Uint16Array(logits.length);
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    half[i] = floatToHalf(v > FP16_MAX ? FP16_MAX : v < -FP16_MAX ? -FP16_MAX : v);
  }
  const bytes = new Uint8Array(half.buffer); // little-endian on every browser we target
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** base64 -> its bytes, in a buffer of their own. */
export function base64ToBytes(b64: string): ArrayBuffer {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out.buffer;
}

/**
 * The decoder feeds (1024 frame, padding point) -> the endpoint's prompt (image pixels,
 * no padding point). Pixels are the feeds' values divided back by the scale, so the server's
 * float32 feeds come out as the browser's; clamped to the image, which is what the server
 * accepts (the division may overshoot an edge by a rounding error).
 */
export function feedsToPrompt(feeds: DecoderFeeds, height: number, width: number): Omit<DecodePromptBody, 'model_id'> {
  const s = scaleTo1024(height, width);
  const coords: [number, number][] = [];
  const labels: number[] = [];
  for (let i = 0; i < feeds.num_points; i++) {
    const label = feeds.point_labels[i]!;
    if (label === -1) continue;
    const x = Math.min(width, Math.max(0, feeds.point_coords[2 * i]! / s));
    const y = Math.min(height, Math.max(0, feeds.point_coords[2 * i + 1]! / s));
    coords.push([x, y]);
    labels.push(label);
  }
  const useMask = feeds.has_mask_input[0] === 1;
  return { point_coords: coords, point_labels: labels, mask_input: useMask ? logitsToFp16Base64(feeds.mask_input) : null };
}

/** The server's answer -> the worker's DecodeResult. */
export function responseToResult(r: DecodePromptResponse, height: number, width: number, totalMs: number): DecodeResult {
  if (r.masks.length !== CANDIDATES || r.iou_predictions.length !== CANDIDATES) {
    throw new Error(`the server sent ${r.masks.length} masks and ${r.iou_predictions.length} scores, expected ${CANDIDATES}`);
  }
  const { masks, areas } = rlesToMasks(r.masks, height, width);
  const lowRes = fp16ToFloat32(base64ToBytes(r.low_res_masks));
  if (lowRes.length !== CANDIDATES * LOW_RES_SIZE) {
    throw new Error(`low_res_masks has ${lowRes.length} values, expected ${CANDIDATES}x256x256`);
  }
  return {
    masks,
    areas,
    iou_predictions: Float32Array.from(r.iou_predictions),
    low_res_masks: lowRes,
    height,
    width,
    runMs: r.timing_ms.run,
    totalMs,
  };
}

interface DecodeJob {
  key: number;
  height: number;
  width: number;
  feeds: DecoderFeeds;
}

export interface ServerDecoderOptions {
  /** Run the server's QUInt8 decoder. */
  quantized?: boolean;
  /** The request (tests pass a fake); default: api.decodePrompt. */
  post?: (imageId: number, body: DecodePromptBody) => Promise<DecodePromptResponse>;
}

export class ServerDecoder {
  private running = false;
  private readonly decodes = new LatestWinsSlot<DecodeJob, DecodeResult>();
  private readonly post: NonNullable<ServerDecoderOptions['post']>;

  /** @param modelId the model of the decoder the page holds (the server refuses another: 409). */
  constructor(
    private readonly modelId: () => string,
    private readonly options: ServerDecoderOptions = {},
  ) {
    this.post = options.post ?? decodePrompt;
  }

  /**
   * Decodes on the server. `key` is the image id. One request at a time: a decode asked
   * for while one runs waits, and a newer one rejects the waiting one with SupersededError
   * (latest prompt wins), as DecoderBridge does. `runMs` is the server's session.run,
   * `totalMs` the whole round trip seen from the page (request, server, RLE decoding).
   */
  decode(key: number, height: number, width: number, feeds: DecoderFeeds): Promise<DecodeResult> {
    const result = this.decodes.offer({ key, height, width, feeds });
    this.pump();
    return result;
  }

  private pump(): void {
    if (this.running || !this.decodes.hasWaiting) return;
    this.running = true;
    this.decodes.runNext(
      (q) => this.run(q),
      () => {
        this.running = false;
        this.pump();
      },
    );
  }

  private async run(q: DecodeJob): Promise<DecodeResult> {
    const t0 = performance.now();
    const body: DecodePromptBody = { ...feedsToPrompt(q.feeds, q.height, q.width), model_id: this.modelId() };
    if (this.options.quantized) body.quantized = true;
    const r = await this.post(q.key, body);
    const result = responseToResult(r, q.height, q.width, 0);
    result.totalMs = performance.now() - t0;
    return result;
  }
}
