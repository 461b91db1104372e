import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { DecodePromptBody, DecodePromptResponse } from '../src/api';
import { SupersededError } from '../src/decoder/bridge';
import {
  base64ToBytes,
  feedsToPrompt,
  floatToHalf,
  logitsToFp16Base64,
  responseToResult,
  rlesToMasks,
  ServerDecoder,
} from '../src/decoder/server';
import { buildFeeds } from '../src/lib/feeds';
import { fp16ToFloat32 } from '../src/lib/fp16';
import { thresholdMasks } from '../src/lib/maskImage';
import { decodeRle, encodeRle, type CocoRle } from '../src/lib/rle';

const fixture = JSON.parse(readFileSync(new URL('./fixtures/rle_pycocotools.json', import.meta.url), 'utf8')) as {
  coco_results: { size: [number, number]; counts: string }[];
};

/** Byte-equal (vitest's deep equality walks big typed arrays element by element: slow). */
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** A small deterministic PRNG (mulberry32): tests must not depend on Math.random. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 4 candidates of blobby logits (runs across column ends, empty and full candidates). */
function logits(h: number, w: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(4 * h * w);
  for (let c = 0; c < 4; c++) {
    const cx = r() * w, cy = r() * h, rad = (c === 0 ? 0 : c === 3 ? 10 * (h + w) : 0.3 * Math.min(h, w) * (1 + r()));
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      out[c * h * w + y * w + x] = rad - Math.hypot(x - cx, y - cy) + (r() - 0.5) * 4;
    }
  }
  return out;
}

describe('rlesToMasks: the server RLEs -> the worker layout', () => {
  for (const [h, w, seed] of [[7, 5, 1], [1, 9, 2], [32, 48, 3], [321, 481, 4]] as const) {
    it(`gives thresholdMasks' masks and areas (${h}x${w})`, () => {
      const l = logits(h, w, seed);
      const want = thresholdMasks(l, h, w);
      const rles: CocoRle[] = [0, 1, 2, 3].map((c) => encodeRle(want.masks.subarray(c * h * w, (c + 1) * h * w), h, w));
      const got = rlesToMasks(rles, h, w);
      expect(got.areas).toEqual(want.areas);
      expect(sameBytes(got.masks, want.masks)).toBe(true);
    });
  }

  it('decodes pycocotools strings of real COCO results like decodeRle', () => {
    for (const r of fixture.coco_results.slice(0, 5)) {
      const [h, w] = r.size;
      const got = rlesToMasks([r], h, w);
      const want = decodeRle(r);
      expect(sameBytes(got.masks, want)).toBe(true);
      expect(got.areas[0]).toBe(want.reduce((a, v) => a + v, 0));
    }
  });

  it('refuses a mask of another size or runs that do not cover it', () => {
    expect(() => rlesToMasks([{ size: [3, 4], counts: '<' }], 4, 3)).toThrow('mask 0 is 3x4, expected 4x3');
    expect(() => rlesToMasks([encodeRle(new Uint8Array(12), 3, 4)], 3, 4)).not.toThrow();
    expect(() => rlesToMasks([{ size: [3, 4], counts: '5' }], 3, 4)).toThrow('cover 5 pixels, expected 12');
    expect(() => rlesToMasks([{ size: [3, 4], counts: '=' }], 3, 4)).toThrow('do not fit');
  });
});

describe('fp16 on the wire', () => {
  it('floatToHalf inverts the half -> float table for every finite half', () => {
    const halves = new Uint16Array(65536).map((_, i) => i);
    const floats = fp16ToFloat32(halves.buffer);
    for (let h = 0; h < 65536; h++) {
      if (Number.isNaN(floats[h])) continue;
      if (floatToHalf(floats[h]!) !== h) throw new Error(`half ${h.toString(16)} -> ${floats[h]} -> ${floatToHalf(floats[h]!).toString(16)}`);
    }
  });

  it('rounds to nearest even, flushes tiny values, saturates to infinity', () => {
    expect(floatToHalf(1)).toBe(0x3c00);
    expect(floatToHalf(0.1)).toBe(0x2e66);
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(floatToHalf(2 ** -25)).toBe(0); // half the smallest subnormal: tie -> even (0)
    expect(floatToHalf(1.5 * 2 ** -25)).toBe(1);
    expect(floatToHalf(-1e-10)).toBe(0x8000);
    expect(floatToHalf(65520)).toBe(0x7c00);
    expect(floatToHalf(Number.NaN) & 0x7c00).toBe(0x7c00);
  });

  it('logitsToFp16Base64 round-trips through base64ToBytes, clipped to the finite range', () => {
    const l = Float32Array.from([0, -3.5, 12.25, 1e6, -1e6, 0.1]);
    const back = fp16ToFloat32(base64ToBytes(logitsToFp16Base64(l)));
    expect(Array.from(back)).toEqual([0, -3.5, 12.25, 65504, -65504, fp16ToFloat32(new Uint16Array([0x2e66]).buffer)[0]]);
  });
});

describe('feedsToPrompt: the feeds back to the endpoint prompt', () => {
  it('drops the padding point and gives pixels whose float32 feeds are the same', () => {
    const h = 321, w = 481;
    const prompts = { points: [{ x: 240, y: 160, label: 1 as const }, { x: 480, y: 0.5, label: 0 as const }], box: null };
    const feeds = buildFeeds(prompts, h, w, null);
    const p = feedsToPrompt(feeds, h, w);
    expect(p.point_labels).toEqual([1, 0]);
    expect(p.mask_input).toBeNull();
    p.point_coords.forEach(([x, y], i) => {
      expect(x).toBeCloseTo(prompts.points[i]!.x, 3);
      expect(y).toBeCloseTo(prompts.points[i]!.y, 3);
      expect(x).toBeLessThanOrEqual(w);
    });
    // What the server computes: pixels * 1024 / max(H, W), stored as float32.
    const s = 1024 / Math.max(h, w);
    expect(Float32Array.from(p.point_coords.flat().map((v) => v * s))).toEqual(feeds.point_coords.subarray(0, 4));
  });

  it('keeps box corners (labels 2, 3) and sends the mask input as fp16', () => {
    const mask = new Float32Array(256 * 256).map((_, i) => (i % 7) - 3.25);
    const feeds = buildFeeds({ points: [{ x: 10, y: 20, label: 1 }], box: [5, 6, 70, 80] }, 100, 200, mask);
    const p = feedsToPrompt(feeds, 100, 200);
    expect(p.point_labels).toEqual([1, 2, 3]);
    expect(p.point_coords.map(([x, y]) => [Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000])).toEqual([[10, 20], [5, 6], [70, 80]]);
    expect(fp16ToFloat32(base64ToBytes(p.mask_input!))).toEqual(mask);
  });
});

function fakeResponse(h: number, w: number, run = 7): DecodePromptResponse {
  const m = new Uint8Array(h * w);
  m[0] = 1;
  m[h * w - 1] = 1;
  const lowRes = new Float32Array(4 * 256 * 256).fill(-2.5);
  return {
    masks: [0, 1, 2, 3].map(() => encodeRle(m, h, w)),
    iou_predictions: [0.5, 0.25, 0.75, 1],
    low_res_masks: logitsToFp16Base64(lowRes),
    timing_ms: { embedding_load: 0.1, run, encode: 0.2 },
  };
}

describe('ServerDecoder', () => {
  it('converts the answer into the worker DecodeResult', () => {
    const r = responseToResult(fakeResponse(3, 4), 3, 4, 12);
    expect(r.areas).toEqual([2, 2, 2, 2]);
    expect(Array.from(r.masks.subarray(0, 12))).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(r.iou_predictions).toEqual(Float32Array.from([0.5, 0.25, 0.75, 1]));
    expect(r.low_res_masks.length).toBe(4 * 256 * 256);
    expect(r.low_res_masks[5]).toBe(-2.5);
    expect(r.runMs).toBe(7);
    expect(r.totalMs).toBe(12);
    expect(() => responseToResult({ ...fakeResponse(3, 4), masks: [] }, 3, 4, 0)).toThrow('expected 4');
  });

  it('sends the model id; one request at a time; a newer prompt supersedes the waiting one', async () => {
    const calls: { id: number; body: DecodePromptBody; resolve: (r: DecodePromptResponse) => void; reject: (e: Error) => void }[] = [];
    const post = (id: number, body: DecodePromptBody) =>
      new Promise<DecodePromptResponse>((resolve, reject) => calls.push({ id, body, resolve, reject }));
    const dec = new ServerDecoder(() => 'default-abc', { post, quantized: true });
    const feeds = () => buildFeeds({ points: [{ x: 1, y: 2, label: 1 }], box: null }, 3, 4, null);
    const a = dec.decode(9, 3, 4, feeds());
    const b = dec.decode(9, 3, 4, feeds());
    const c = dec.decode(9, 3, 4, feeds());
    expect(calls.length).toBe(1);
    expect(calls[0]!.id).toBe(9);
    expect(calls[0]!.body).toMatchObject({ model_id: 'default-abc', point_labels: [1], mask_input: null, quantized: true });
    await expect(b).rejects.toBeInstanceOf(SupersededError);
    calls[0]!.resolve(fakeResponse(3, 4));
    await expect(a).resolves.toMatchObject({ height: 3, width: 4, areas: [2, 2, 2, 2] });
    await new Promise((r) => setTimeout(r, 0));
    expect(calls.length).toBe(2); // then the newest
    calls[1]!.reject(new Error('HTTP 409: reload the page'));
    await expect(c).rejects.toThrow('reload the page');
    // A failure does not wedge the queue.
    const d = dec.decode(9, 3, 4, feeds());
    await new Promise((r) => setTimeout(r, 0));
    calls[2]!.resolve(fakeResponse(3, 4));
    await expect(d).resolves.toBeTruthy();
  });
});
