/**
 * Low-res mask logits (4 x 256 x 256) -> binary masks at the photo's size, on the client.
 *
 * SAM's postprocessing (segment_anything `Sam.postprocess_masks`, and the contract graph's
 * `_postprocess`) resizes the logits bilinearly to 1024x1024, crops the padding away (the
 * photo fills the top-left h' x w' with h' = round(H * 1024 / max(H, W))) and resizes again to
 * H x W (PyTorch `F.interpolate`, bilinear, align_corners=False). Each step is linear and
 * separable, so their composition is one separable linear map per axis with at most 3
 * consecutive low-res taps per output pixel. Computing that map once per image size and
 * applying it here gives SAM's masks (up to float rounding) without the 4 x 1024 x 1024
 * intermediate the graph would build on every click.
 */

/** Per output index along one axis: the first low-res tap and 3 weights (taps i0, i0+1, i0+2). */
export interface AxisMap {
  first: Int32Array;
  weights: Float32Array; // 3 per output index
}

const LOW = 256;
const FRAME = 1024;

/** PyTorch bilinear (align_corners=False) source taps for output `o` of an in -> out resize. */
function bilinearTaps(o: number, inSize: number, outSize: number): [number, number, number, number] {
  let src = ((o + 0.5) * inSize) / outSize - 0.5;
  if (src < 0) src = 0;
  const i0 = Math.min(Math.floor(src), inSize - 1);
  const i1 = Math.min(i0 + 1, inSize - 1);
  const l1 = src - i0;
  return [i0, 1 - l1, i1, l1];
}

/**
 * The composed map for one axis: 256 -> 1024 (bilinear), keep the first `prepadded`, ->
 * `outSize` (bilinear).
 * @throws Error for sizes < 1 or prepadded outside 1..1024.
 */
export function axisMap(outSize: number, prepadded: number): AxisMap {
  if (!(outSize >= 1) || !(prepadded >= 1 && prepadded <= FRAME)) {
    throw new Error(`bad upsampling sizes: out ${outSize}, prepadded ${prepadded}`);
  }
  const first = new Int32Array(outSize);
  const weights = new Float32Array(outSize * 3);
  const acc = new Float64Array(LOW);
  for (let o = 0; o < outSize; o++) {
    const [a0, wa0, a1, wa1] = bilinearTaps(o, prepadded, outSize); // in the 1024 frame
    const touched: number[] = [];
    for (const [k, wk] of [[a0, wa0], [a1, wa1]] as const) {
      const [b0, wb0, b1, wb1] = bilinearTaps(k, LOW, FRAME); // 1024 frame -> low res
      acc[b0] = (acc[b0] ?? 0) + wk * wb0;
      acc[b1] = (acc[b1] ?? 0) + wk * wb1;
      touched.push(b0, b1);
    }
    const lo = Math.min(...touched);
    const hi = Math.max(...touched);
    if (hi - lo > 2) throw new Error(`upsampling tap span ${hi - lo + 1} > 3 at ${o}`); // cannot happen for 256->1024
    first[o] = lo;
    for (let t = 0; t < 3; t++) {
      const i = lo + t;
      weights[o * 3 + t] = i < LOW ? acc[i]! : 0;
      if (i < LOW) acc[i] = 0;
    }
  }
  return { first, weights };
}

/** h', w': the photo's size in the 1024 frame (DESIGN.md contract; SAM's ResizeLongestSide). */
export function prepaddedSize(height: number, width: number): [number, number] {
  const scale = FRAME / Math.max(height, width);
  return [Math.floor(height * scale + 0.5), Math.floor(width * scale + 0.5)];
}

const mapCache = new Map<string, [AxisMap, AxisMap]>();

/** The (rows, cols) maps for an image size, cached (a few images per session). */
export function mapsFor(height: number, width: number): [AxisMap, AxisMap] {
  const key = `${height}x${width}`;
  let maps = mapCache.get(key);
  if (!maps) {
    const [ph, pw] = prepaddedSize(height, width);
    maps = [axisMap(height, ph), axisMap(width, pw)];
    if (mapCache.size >= 16) mapCache.delete(mapCache.keys().next().value as string);
    mapCache.set(key, maps);
  }
  return maps;
}

/**
 * Upsample and threshold (logit > 0, SAM's mask_threshold) every candidate.
 * @param lowRes K x 256 x 256 logits, candidate-major (the decoder's `low_res_masks`).
 * @returns K x H x W bytes (0/1), candidate-major, and each candidate's pixel count — the
 *   same layout as `thresholdMasks` on the contract graph's `masks` output.
 * @throws Error when `lowRes` is not a whole number of 256 x 256 planes.
 */
export function upsampleMasks(lowRes: Float32Array, height: number, width: number): {
  masks: Uint8Array;
  areas: number[];
} {
  const plane = LOW * LOW;
  const k = lowRes.length / plane;
  if (!Number.isInteger(k) || k < 1) throw new Error(`low_res_masks have ${lowRes.length} values, not K x 256 x 256`);
  const [rows, cols] = mapsFor(height, width);
  // Low-res rows any output row reads (the photo's part of the 256 grid).
  const lastRow = Math.min(LOW - 1, rows.first[height - 1]! + 2);
  const tmp = new Float32Array((lastRow + 1) * width);
  const masks = new Uint8Array(k * height * width);
  const areas: number[] = [];
  const cf = cols.first;
  const cw = cols.weights;
  const rf = rows.first;
  const rw = rows.weights;
  for (let c = 0; c < k; c++) {
    const base = c * plane;
    // Horizontal pass: each needed low-res row -> `width` columns.
    for (let r = 0; r <= lastRow; r++) {
      const src = base + r * LOW;
      const dst = r * width;
      for (let x = 0; x < width; x++) {
        const i = src + cf[x]!;
        const w = x * 3;
        // The third tap may sit past the grid's edge with weight 0: read it clamped.
        const i2 = cf[x]! + 2 < LOW ? i + 2 : i;
        tmp[dst + x] = cw[w]! * lowRes[i]! + cw[w + 1]! * lowRes[Math.min(i + 1, src + LOW - 1)]! + cw[w + 2]! * lowRes[i2]!;
      }
    }
    // Vertical pass + threshold.
    let area = 0;
    const out = c * height * width;
    for (let y = 0; y < height; y++) {
      const r0 = rf[y]!;
      const w0 = rw[y * 3]!;
      const w1 = rw[y * 3 + 1]!;
      const w2 = rw[y * 3 + 2]!;
      const t0 = r0 * width;
      const t1 = Math.min(r0 + 1, lastRow) * width;
      const t2 = Math.min(r0 + 2, lastRow) * width;
      const o = out + y * width;
      for (let x = 0; x < width; x++) {
        if (w0 * tmp[t0 + x]! + w1 * tmp[t1 + x]! + w2 * tmp[t2 + x]! > 0) {
          masks[o + x] = 1;
          area++;
        }
      }
    }
    areas.push(area);
  }
  return { masks, areas };
}
