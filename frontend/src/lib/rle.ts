/**
 * COCO run-length encoding, byte-for-byte as pycocotools (maskApi.c: rleEncode,
 * rleToString, rleFrString, rleDecode). Runs are counted in column-major (Fortran) order
 * and always start with a run of zeros (possibly of length 0). The compressed string
 * stores each count (from the third on, as the difference to the count two back) in
 * 5-bit groups, low group first, with 0x20 = "more follows" and sign extension from bit
 * 0x10 of the last group; each group is offset by 48 to stay printable.
 *
 * Masks in this app are row-major H x W Uint8Array (0 / non-zero), as a canvas lays them out.
 */

export interface CocoRle {
  /** [H, W] */
  size: [number, number];
  /** compressed counts string */
  counts: string;
}

/** Run lengths (column-major, starting with zeros) of a row-major H x W mask. */
export function rleCounts(mask: ArrayLike<number>, height: number, width: number): number[] {
  if (mask.length !== height * width) throw new Error(`mask has ${mask.length} pixels, expected ${height}x${width}`);
  const counts: number[] = [];
  let prev = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let i = x, y = 0; y < height; y++, i += width) {
      const v = mask[i] ? 1 : 0;
      if (v !== prev) {
        counts.push(run);
        run = 0;
        prev = v;
      }
      run++;
    }
  }
  counts.push(run);
  return counts;
}

/** pycocotools rleToString: counts -> compressed string. */
export function countsToString(counts: readonly number[]): string {
  let s = '';
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i]!;
    if (i > 2) x -= counts[i - 2]!;
    let more = true;
    while (more) {
      // Arithmetic shift by 5 without 32-bit truncation: floor division.
      const c0 = x - Math.floor(x / 32) * 32; // x & 0x1f, also for negative x
      x = Math.floor(x / 32);
      more = c0 & 0x10 ? x !== -1 : x !== 0;
      const c = more ? c0 | 0x20 : c0;
      s += String.fromCharCode(c + 48);
    }
  }
  return s;
}

/** pycocotools rleFrString: compressed string -> counts. */
export function stringToCounts(s: string): number[] {
  const counts: number[] = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      if (p >= s.length) throw new Error('truncated RLE string');
      const c = s.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new Error(`bad RLE character at ${p}`);
      x += (c & 0x1f) * 2 ** (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      if (!more && c & 0x10) x -= 2 ** (5 * k); // sign-extend
    }
    if (counts.length > 2) x += counts[counts.length - 2]!;
    counts.push(x);
  }
  return counts;
}

/** Row-major H x W mask -> COCO compressed RLE (as pycocotools.mask.encode). */
export function encodeRle(mask: ArrayLike<number>, height: number, width: number): CocoRle {
  return { size: [height, width], counts: countsToString(rleCounts(mask, height, width)) };
}

/** COCO RLE (compressed string or uncompressed counts list) -> row-major H x W 0/1 mask. */
export function decodeRle(rle: { size: [number, number]; counts: string | number[] }): Uint8Array {
  const [h, w] = rle.size;
  const counts = typeof rle.counts === 'string' ? stringToCounts(rle.counts) : rle.counts;
  const n = h * w;
  const out = new Uint8Array(n);
  let pos = 0; // column-major index
  let v = 0;
  for (const c of counts) {
    if (c < 0 || pos + c > n) throw new Error('RLE counts do not fit the mask size');
    if (v) {
      for (let j = pos; j < pos + c; j++) {
        const y = j % h;
        const x = (j - y) / h;
        out[y * w + x] = 1;
      }
    }
    pos += c;
    v ^= 1;
  }
  if (pos !== n) throw new Error(`RLE counts cover ${pos} pixels, expected ${n}`);
  return out;
}

/** Area (pixels) and XYWH bbox of a row-major mask, as pycocotools area/toBbox. */
export function maskStats(mask: ArrayLike<number>, height: number, width: number): {
  area: number;
  bbox: [number, number, number, number];
} {
  let area = 0;
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i++) {
      if (mask[i]) {
        area++;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  return { area, bbox: area ? [x0, y0, x1 - x0 + 1, y1 - y0 + 1] : [0, 0, 0, 0] };
}
