/**
 * Brush and eraser: hand edits on top of a mask, pure so they are unit-tested
 * (test/brush.test.ts). A stroke is a polyline in image pixels (pixel centres are
 * integers, lib/coords.ts) with a radius in image pixels, rasterised as a chain of
 * capsules (round caps and joins). The strokes of a mask are kept as an *edit layer*
 * at image resolution, one byte per pixel: 0 untouched, PAINTED, ERASED (a later
 * stroke overrides an earlier one on the pixels they share). The shown mask is then
 *
 *   final = (model mask ∪ painted) \ erased
 *
 * so the model's mask can change under the layer (a new click re-runs the decoder) and
 * the hand edits stay.
 */

export const UNTOUCHED = 0;
export const PAINTED = 1;
export const ERASED = 2;

/** Brush radius bounds and step ([ / ]), screen px. */
export const MIN_RADIUS = 1;
export const MAX_RADIUS = 200;
export const DEFAULT_RADIUS = 12;

export type StrokeMode = 'paint' | 'erase';

export interface Stroke {
  mode: StrokeMode;
  /** Image pixels. */
  radius: number;
  /** Image pixel coordinates along the drag (at least one). */
  points: [number, number][];
  /** How many prompt steps the mask had when the stroke was made: Ctrl+Z undoes prompts
   * and strokes in the order they were made (see undoTarget). */
  stepsAt: number;
}

/** The next brush radius (screen px) after `[` (dir -1) or `]` (dir +1): about 20% a
 * step, at least 1 px, within [MIN_RADIUS, MAX_RADIUS]. */
export function nextRadius(r: number, dir: 1 | -1): number {
  const step = Math.max(1, Math.round(r * 0.2));
  return Math.min(MAX_RADIUS, Math.max(MIN_RADIUS, r + dir * step));
}

/** A radius in screen px as image px at zoom `k` (screen px per image px); at least half a
 * pixel, so a stroke always covers the pixel under the cursor. */
export function imageRadius(screenRadius: number, k: number): number {
  return Math.max(0.5, screenRadius / k);
}

/**
 * Sets `value` on every pixel whose centre lies within `r` of the segment (x0,y0)-(x1,y1)
 * (a capsule: a round cap at each end). Clipped to the W x H layer.
 */
export function stampSegment(layer: Uint8Array, width: number, height: number,
  x0: number, y0: number, x1: number, y1: number, r: number, value: number): void {
  const left = Math.max(0, Math.ceil(Math.min(x0, x1) - r));
  const right = Math.min(width - 1, Math.floor(Math.max(x0, x1) + r));
  const top = Math.max(0, Math.ceil(Math.min(y0, y1) - r));
  const bottom = Math.min(height - 1, Math.floor(Math.max(y0, y1) + r));
  const dx = x1 - x0;
  const dy = y1 - y0;
  const len2 = dx * dx + dy * dy;
  const r2 = r * r;
  for (let y = top; y <= bottom; y++) {
    for (let x = left; x <= right; x++) {
      // Nearest point of the segment to the pixel centre.
      let t = len2 > 0 ? ((x - x0) * dx + (y - y0) * dy) / len2 : 0;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const ex = x - (x0 + t * dx);
      const ey = y - (y0 + t * dy);
      if (ex * ex + ey * ey <= r2) layer[y * width + x] = value;
    }
  }
}

/** Rasterises a stroke into the layer: PAINTED or ERASED along it, round caps. When `from`
 * is given only the segments ending at point `from` or later are stamped (a drag in progress:
 * `from` = the index of the newest point). */
export function applyStroke(layer: Uint8Array, width: number, height: number, stroke: Stroke, from = 0): void {
  const v = stroke.mode === 'paint' ? PAINTED : ERASED;
  const pts = stroke.points;
  if (!pts.length) return;
  if (pts.length === 1) {
    const p = pts[0]!;
    stampSegment(layer, width, height, p[0], p[1], p[0], p[1], stroke.radius, v);
    return;
  }
  for (let i = Math.max(1, from); i < pts.length; i++) {
    const a = pts[i - 1]!;
    const b = pts[i]!;
    stampSegment(layer, width, height, a[0], a[1], b[0], b[1], stroke.radius, v);
  }
}

/** The edit layer of a list of strokes, applied in order (a later one wins). */
export function buildLayer(strokes: readonly Stroke[], width: number, height: number): Uint8Array {
  const layer = new Uint8Array(width * height);
  for (const s of strokes) applyStroke(layer, width, height, s);
  return layer;
}

/**
 * The mask shown and saved: (base ∪ painted) \ erased. `base` may be null (no model mask
 * yet: only painted pixels) or of another length (ignored, as null). Returns a new array
 * and its pixel count.
 */
export function composeMask(base: Uint8Array | null, layer: Uint8Array): { mask: Uint8Array; area: number } {
  const n = layer.length;
  const out = new Uint8Array(n);
  const b = base && base.length === n ? base : null;
  let area = 0;
  for (let i = 0; i < n; i++) {
    const e = layer[i]!;
    const v = e === PAINTED ? 1 : e === ERASED ? 0 : b ? (b[i] ? 1 : 0) : 0;
    out[i] = v;
    area += v;
  }
  return { mask: out, area };
}

/** How many pixels the layer paints and erases (the saved annotation's record of the edit). */
export function layerCounts(layer: Uint8Array): { painted: number; erased: number } {
  let painted = 0;
  let erased = 0;
  for (let i = 0; i < layer.length; i++) {
    if (layer[i] === PAINTED) painted++;
    else if (layer[i] === ERASED) erased++;
  }
  return { painted, erased };
}

/**
 * What Ctrl+Z takes back: the last stroke when it was made after the last prompt (its
 * `stepsAt` equals the number of prompt steps now), else the last prompt step; 'none' when
 * there is neither.
 */
export function undoTarget(strokes: readonly Stroke[], steps: number): 'stroke' | 'step' | 'none' {
  const last = strokes[strokes.length - 1];
  if (last && last.stepsAt >= steps) return 'stroke';
  if (steps > 0) return 'step';
  return last ? 'stroke' : 'none';
}

/** Which kind of stroke a pointer press makes: the right button or Shift erases. */
export function strokeMode(button: number, shift: boolean): StrokeMode {
  return button === 2 || shift ? 'erase' : 'paint';
}
