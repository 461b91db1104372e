/** Decoder logits -> binary masks -> RGBA pixels for a canvas. */

/**
 * Threshold the 4 candidate mask logits (1x4xHxW, float32) at 0, as SAM does
 * (mask_threshold = 0.0, strictly greater).
 * @returns 4*H*W bytes (0/1), candidate-major, and each candidate's pixel count.
 */
export function thresholdMasks(logits: Float32Array, height: number, width: number): {
  masks: Uint8Array;
  areas: number[];
} {
  const hw = height * width;
  const k = logits.length / hw;
  if (!Number.isInteger(k)) throw new Error(`masks have ${logits.length} values, not a multiple of ${height}x${width}`);
  const masks = new Uint8Array(logits.length);
  const areas: number[] = [];
  for (let c = 0; c < k; c++) {
    let a = 0;
    const end = (c + 1) * hw;
    for (let i = c * hw; i < end; i++) {
      if (logits[i]! > 0) {
        masks[i] = 1;
        a++;
      }
    }
    areas.push(a);
  }
  return { masks, areas };
}

export type Rgba = readonly [number, number, number, number];

/** "#rrggbb" -> [r, g, b, alpha]. */
export function hexToRgba(hex: string, alpha: number): Rgba {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex.trim());
  const v = m ? parseInt(m[1]!, 16) : 0x1e90ff;
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255, Math.round(alpha * 255)];
}

/**
 * Row-major 0/1 mask -> RGBA bytes (ImageData layout): `color` where the mask is set,
 * fully transparent elsewhere. Writes into `out` when given (reused between frames).
 */
export function maskToRgba(
  mask: Uint8Array,
  color: Rgba,
  out?: Uint8ClampedArray,
): Uint8ClampedArray {
  const rgba = out && out.length === mask.length * 4 ? out : new Uint8ClampedArray(mask.length * 4);
  // One 32-bit store per pixel; little-endian, so bytes come out as R, G, B, A.
  const px = new Uint32Array(rgba.buffer, rgba.byteOffset, mask.length);
  const on = ((color[3] << 24) | (color[2] << 16) | (color[1] << 8) | color[0]) >>> 0;
  for (let i = 0; i < mask.length; i++) px[i] = mask[i] ? on : 0;
  return rgba;
}

/**
 * Like maskToRgba, plus an opaque outline: mask pixels with a 4-neighbour outside the
 * mask (or on the image border) get `edge`, so the preview stays visible on any photo.
 */
export function maskToRgbaOutlined(
  mask: Uint8Array,
  width: number,
  height: number,
  fill: Rgba,
  edge: Rgba,
  out?: Uint8ClampedArray,
): Uint8ClampedArray {
  if (mask.length !== width * height) throw new Error(`mask has ${mask.length} pixels, expected ${width}x${height}`);
  const rgba = maskToRgba(mask, fill, out);
  const px = new Uint32Array(rgba.buffer, rgba.byteOffset, mask.length);
  const e = ((edge[3] << 24) | (edge[2] << 16) | (edge[1] << 8) | edge[0]) >>> 0;
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i++) {
      if (!mask[i]) continue;
      if (x === 0 || y === 0 || x === width - 1 || y === height - 1 || !mask[i - 1] || !mask[i + 1] || !mask[i - width] || !mask[i + width]) {
        px[i] = e;
      }
    }
  }
  return rgba;
}
