import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { countsToString, decodeRle, encodeRle, maskStats, rleCounts, stringToCounts } from '../src/lib/rle';

interface Synthetic { name: string; size: [number, number]; counts: string; mask_rows: string; area: number; bbox: number[] }
interface Real { size: [number, number]; counts: string; area: number; bbox: number[]; sha256_rows: string }
const fixture = JSON.parse(readFileSync(new URL('./fixtures/rle_pycocotools.json', import.meta.url), 'utf8')) as {
  synthetic: Synthetic[];
  coco_results: Real[];
};

const rows = (s: string): Uint8Array => Uint8Array.from(s, (c) => (c === '1' ? 1 : 0));

describe('COCO RLE, against strings made by pycocotools.mask.encode', () => {
  for (const c of fixture.synthetic) {
    it(`encodes ${c.name} exactly as pycocotools`, () => {
      const [h, w] = c.size;
      expect(encodeRle(rows(c.mask_rows), h, w)).toEqual({ size: [h, w], counts: c.counts });
    });
    it(`decodes ${c.name} to the same pixels, area and bbox`, () => {
      const m = decodeRle({ size: c.size, counts: c.counts });
      expect(Array.from(m).join('')).toBe(c.mask_rows);
      const st = maskStats(m, c.size[0], c.size[1]);
      expect(st.area).toBe(c.area);
      if (c.area) expect(st.bbox).toEqual(c.bbox);
    });
  }

  it('round-trips real COCO results strings (decode -> encode gives the same string)', () => {
    for (const r of fixture.coco_results) {
      const m = decodeRle(r);
      expect(createHash('sha256').update(m).digest('hex')).toBe(r.sha256_rows);
      const st = maskStats(m, r.size[0], r.size[1]);
      expect(st.area).toBe(r.area);
      expect(st.bbox).toEqual(r.bbox);
      expect(encodeRle(m, r.size[0], r.size[1]).counts).toBe(r.counts);
    }
  });
});

describe('RLE internals', () => {
  it('counts column-major runs starting with zeros', () => {
    // 2x3, row-major: [[1,0,0],[1,1,0]] -> column-major 1,1,0,1,0,0
    expect(rleCounts(Uint8Array.from([1, 0, 0, 1, 1, 0]), 2, 3)).toEqual([0, 2, 1, 1, 2]);
  });
  it('string <-> counts handles large and negative deltas', () => {
    const counts = [0, 5, 1_000_000, 3, 17, 123_456_789, 1, 2];
    expect(stringToCounts(countsToString(counts))).toEqual(counts);
  });
  it('accepts uncompressed counts lists (iscrowd RLE)', () => {
    expect(Array.from(decodeRle({ size: [2, 3], counts: [0, 2, 1, 1, 2] }))).toEqual([1, 0, 0, 1, 1, 0]);
  });
  it('rejects counts that do not cover the mask', () => {
    expect(() => decodeRle({ size: [2, 3], counts: [0, 2] })).toThrow();
    expect(() => rleCounts(new Uint8Array(5), 2, 3)).toThrow();
  });
});
