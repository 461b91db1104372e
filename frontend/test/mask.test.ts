import { describe, expect, it } from 'vitest';
import { fp16ToFloat32, fp16ToFloat32Transposed } from '../src/lib/fp16';
import { LruCache } from '../src/lib/lru';
import { hexToRgba, maskToRgba, maskToRgbaOutlined, thresholdMasks } from '../src/lib/maskImage';

describe('mask -> pixels', () => {
  it('thresholds logits strictly above 0, per candidate', () => {
    const logits = Float32Array.from([1, 0, -1, 0.1, /* c1 */ -5, -5, 3, 0]);
    const { masks, areas } = thresholdMasks(logits, 2, 2);
    expect(Array.from(masks)).toEqual([1, 0, 0, 1, 0, 0, 1, 0]);
    expect(areas).toEqual([2, 1]);
    expect(() => thresholdMasks(new Float32Array(5), 2, 2)).toThrow();
  });
  it('paints RGBA where the mask is set, transparent elsewhere (ImageData layout)', () => {
    const rgba = maskToRgba(Uint8Array.from([1, 0]), [10, 20, 30, 128]);
    expect(Array.from(rgba)).toEqual([10, 20, 30, 128, 0, 0, 0, 0]);
    expect(hexToRgba('#ff8000', 0.5)).toEqual([255, 128, 0, 128]);
  });
  it('reuses the output buffer when it fits', () => {
    const out = new Uint8ClampedArray(8);
    expect(maskToRgba(Uint8Array.from([0, 1]), [1, 2, 3, 4], out)).toBe(out);
  });
});

describe('fp16 embedding bytes', () => {
  it('converts and transposes channel-major halves to channel-last tokens in one pass', () => {
    // 2 channels x 3 positions: c0 = [1, 2, 0.5], c1 = [-2, 0, 65504]
    const u16 = Uint16Array.from([0x3c00, 0x4000, 0x3800, 0xc000, 0x0000, 0x7bff]);
    const f = fp16ToFloat32Transposed(u16.buffer, 2, 3);
    expect(Array.from(f)).toEqual([1, -2, 2, 0, 0.5, 65504]);
    expect(() => fp16ToFloat32Transposed(u16.buffer, 2, 4)).toThrow(/expected 16/);
  });
  it('converts little-endian halves to float32', () => {
    // 1.0 = 0x3c00, -2.0 = 0xc000, 0.5 = 0x3800, 65504 = 0x7bff, smallest subnormal = 0x0001
    const u16 = Uint16Array.from([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x0000, 0x7c00]);
    const f = fp16ToFloat32(u16.buffer);
    expect(Array.from(f)).toEqual([1, -2, 0.5, 65504, Math.fround(2 ** -24), 0, Infinity]);
    expect(() => fp16ToFloat32(new ArrayBuffer(3))).toThrow();
  });
});

describe('LRU', () => {
  it('evicts the least recently used', () => {
    const c = new LruCache<number, string>(2);
    c.set(1, 'a');
    c.set(2, 'b');
    c.get(1);
    expect(c.set(3, 'c')).toEqual([2]);
    expect(c.keys()).toEqual([1, 3]);
    expect(c.delete(1)).toBe(true);
    expect(c.delete(1)).toBe(false);
    expect(c.keys()).toEqual([3]);
  });
});

describe('outlined preview', () => {
  it('marks mask pixels on the mask edge (or image border) with the edge colour', () => {
    // 3x4 mask with a 2x2 block inside: every block pixel touches outside -> all edge.
    const m = Uint8Array.from([0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0].slice(0, 12));
    const rgba = maskToRgbaOutlined(m, 4, 3, [1, 1, 1, 10], [9, 9, 9, 255]);
    const alpha = Array.from({ length: 12 }, (_, i) => rgba[4 * i + 3]);
    expect(alpha).toEqual([0, 0, 0, 0, 0, 255, 255, 0, 0, 255, 255, 0]);
    // 5x5 full mask: border pixels are edge, the inner 3x3 is fill.
    const full = maskToRgbaOutlined(new Uint8Array(25).fill(1), 5, 5, [1, 1, 1, 10], [9, 9, 9, 255]);
    expect(full[4 * 12 + 3]).toBe(10);
    expect(full[4 * 0 + 3]).toBe(255);
  });
});
