import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { axisMap, prepaddedSize, upsampleMasks } from '../src/lib/upsample';

interface Case {
  height: number;
  width: number;
  bits: string;
  areas: number[];
  near_zero: number;
}

const cases = JSON.parse(readFileSync(new URL('./fixtures/upsample_sam.json', import.meta.url), 'utf8')) as Case[];

/** The same smooth logits as fixtures/make_upsample_fixture.py (float32). */
function logits(): Float32Array {
  const out = new Float32Array(4 * 256 * 256);
  for (let k = 0; k < 4; k++) {
    for (let r = 0; r < 256; r++) {
      for (let c = 0; c < 256; c++) {
        out[k * 65536 + r * 256 + c] = Math.sin(r / (5 + k)) + Math.cos(c / (9 + 2 * k)) + 0.3 * Math.sin((r + c) / 3) - 0.2 * k;
      }
    }
  }
  return out;
}

function unpack(hex: string, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const byte = parseInt(hex.slice((i >> 3) * 2, (i >> 3) * 2 + 2), 16);
    out[i] = (byte >> (7 - (i & 7))) & 1;
  }
  return out;
}

describe('low-res logits -> masks at the photo size (SAM postprocess_masks)', () => {
  const low = logits();
  for (const c of cases) {
    it(`matches torch's two bilinear resizes at ${c.height}x${c.width}`, () => {
      const { masks, areas } = upsampleMasks(low, c.height, c.width);
      const want = unpack(c.bits, 4 * c.height * c.width);
      let diff = 0;
      for (let i = 0; i < want.length; i++) if (masks[i] !== want[i]) diff++;
      // Only pixels whose logit is within float rounding of 0 may differ.
      expect(diff).toBeLessThanOrEqual(c.near_zero);
      areas.forEach((a, k) => expect(Math.abs(a - c.areas[k]!)).toBeLessThanOrEqual(c.near_zero));
    });
  }

  it('gives each output pixel weights that sum to 1 (a constant stays constant)', () => {
    for (const [out, pre] of [[480, 768], [1, 1], [1024, 1024], [3000, 1024], [5, 2]] as const) {
      const m = axisMap(out, pre);
      for (let o = 0; o < out; o++) {
        const s = m.weights[o * 3]! + m.weights[o * 3 + 1]! + m.weights[o * 3 + 2]!;
        expect(s).toBeCloseTo(1, 5);
        expect(m.first[o]).toBeGreaterThanOrEqual(0);
        expect(m.first[o]).toBeLessThanOrEqual(255);
      }
    }
    const { masks, areas } = upsampleMasks(new Float32Array(65536).fill(0.5), 10, 20);
    expect(areas).toEqual([200]);
    expect(masks.every((v) => v === 1)).toBe(true);
  });

  it('uses the contract pre-padding size', () => {
    expect(prepaddedSize(480, 640)).toEqual([768, 1024]);
    expect(prepaddedSize(1500, 2250)).toEqual([683, 1024]);
  });

  it('rejects logits that are not 256x256 planes and bad sizes', () => {
    expect(() => upsampleMasks(new Float32Array(100), 10, 10)).toThrow(/256/);
    expect(() => axisMap(0, 10)).toThrow();
    expect(() => axisMap(10, 2000)).toThrow();
  });
});
