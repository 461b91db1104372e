/**
 * The annotate page's view transform (zoom and pan), pure so it is unit-tested
 * (test/view.test.ts). Everything drawn on the stage and every pointer position goes
 * through it.
 *
 * Frames: *screen* = CSS px relative to the stage's top-left corner; *edge* = image
 * coordinates where pixel column i covers [i, i + 1); *image pixel* = the prompt
 * convention of lib/coords.ts (pixel centres are integers: pixel i covers [i - 0.5, i + 0.5)).
 *
 *   screenX = tx + k * edgeX = tx + k * (imageX + 0.5)
 */

export interface View {
  /** Screen px per image px. */
  k: number;
  /** Screen position of the image's top-left corner. */
  tx: number;
  ty: number;
}

export interface Size {
  width: number;
  height: number;
}

export const VIEW_PAD = 16;
/** The most screen px one image px may take. */
export const MAX_ZOOM = 32;
/** Fit never leaves the image's short side narrower than this many screen px (when the
 * stage is that wide): an 8x3000 image is not a 1-px column; the long side then pans. */
export const MIN_SHORT_SIDE = 160;

/** Scale that fits the image in the stage (less the padding), but with the short side at
 * least MIN_SHORT_SIDE screen px (or as much of the stage as there is). */
export function fitScale(img: Size, stage: Size, pad = VIEW_PAD): number {
  const aw = Math.max(1, stage.width - 2 * pad);
  const ah = Math.max(1, stage.height - 2 * pad);
  let k = Math.min(aw / img.width, ah / img.height);
  // The short side, and how much of the stage lies across it.
  const wide = img.width >= img.height;
  const short = wide ? img.height : img.width;
  const across = wide ? ah : aw;
  const wantShort = Math.min(MIN_SHORT_SIDE, across);
  if (short * k < wantShort) k = wantShort / short;
  return Math.min(k, MAX_ZOOM);
}

/** Smallest scale the user can zoom out to: the fit scale (or 1 px per image px, if less). */
export function minScale(img: Size, stage: Size): number {
  return Math.min(fitScale(img, stage), 1);
}

/** The fitted view: the whole image centred, or for an extreme aspect ratio the short side
 * centred and the long side starting at its beginning. */
export function fitView(img: Size, stage: Size): View {
  const k = fitScale(img, stage);
  return clampView({ k, tx: (stage.width - img.width * k) / 2, ty: (stage.height - img.height * k) / 2 }, img, stage, true);
}

/**
 * Keeps the image from being lost off screen: along an axis where it fits the stage (less
 * the padding) it is centred; where it is larger it may move only until its edge reaches
 * the padding, so it always spans the stage along that axis. `startAtBeginning` puts the
 * image's left/top edge at the padding there (used by fit: the long side starts at its
 * beginning). `keepInside` (used by zoom): along an axis where the image fits, it is not
 * re-centred but only kept within the padding, so the pixel under the cursor stays there
 * also while the image is still smaller than the stage along that axis.
 */
export function clampView(v: View, img: Size, stage: Size, startAtBeginning = false, pad = VIEW_PAD,
  keepInside = false): View {
  const axis = (t: number, len: number, room: number): number => {
    if (len <= room - 2 * pad) {
      if (!keepInside) return (room - len) / 2;
      const lo = pad;
      const hi = room - pad - len;
      return t < lo ? lo : t > hi ? hi : t;
    }
    if (startAtBeginning) return pad;
    const lo = room - pad - len;
    const hi = pad;
    return t < lo ? lo : t > hi ? hi : t;
  };
  return { k: v.k, tx: axis(v.tx, img.width * v.k, stage.width), ty: axis(v.ty, img.height * v.k, stage.height) };
}

/** Zoom by `factor` keeping the image point under screen (sx, sy) where it is, then clamp.
 * The scale stays within [minScale, MAX_ZOOM]. */
export function zoomAt(v: View, sx: number, sy: number, factor: number, img: Size, stage: Size): View {
  const lo = minScale(img, stage);
  const k = Math.min(MAX_ZOOM, Math.max(lo, v.k * factor));
  const ex = (sx - v.tx) / v.k;
  const ey = (sy - v.ty) / v.k;
  // Back at the smallest scale the image is centred again (as fitted); above it, a fitting
  // axis keeps the cursor's pixel too (QA: the first wheel notch from fit moved it ~12 px).
  const keepInside = k > lo * (1 + 1e-9);
  return clampView({ k, tx: sx - ex * k, ty: sy - ey * k }, img, stage, false, VIEW_PAD, keepInside);
}

/** Move the image by (dx, dy) screen px, then clamp. */
export function pan(v: View, dx: number, dy: number, img: Size, stage: Size): View {
  // Along an axis where the image fits there is nothing to pan: it stays where it is (centred
  // when fitted, or where a zoom step put it) instead of jumping back to the centre.
  const fits = (len: number, room: number): boolean => len <= room - 2 * VIEW_PAD;
  const mx = fits(img.width * v.k, stage.width) ? 0 : dx;
  const my = fits(img.height * v.k, stage.height) ? 0 : dy;
  return clampView({ k: v.k, tx: v.tx + mx, ty: v.ty + my }, img, stage, false, VIEW_PAD, true);
}

/** Screen px -> image pixel coordinates (not clamped). */
export function screenToImage(v: View, sx: number, sy: number): [number, number] {
  return [(sx - v.tx) / v.k - 0.5, (sy - v.ty) / v.k - 0.5];
}

/** Image pixel coordinates -> screen px. */
export function imageToScreen(v: View, x: number, y: number): [number, number] {
  return [v.tx + (x + 0.5) * v.k, v.ty + (y + 0.5) * v.k];
}

/** Whether image point (x, y) lies on the image (within its pixels' extent). */
export function onImage(x: number, y: number, img: Size): boolean {
  return x >= -0.5 && y >= -0.5 && x < img.width - 0.5 && y < img.height - 0.5;
}

/** Clamp image coordinates to [0, W - 1] x [0, H - 1]. */
export function clampToImage(x: number, y: number, img: Size): [number, number] {
  const c = (a: number, hi: number): number => (a < 0 ? 0 : a > hi ? hi : a);
  return [c(x, img.width - 1), c(y, img.height - 1)];
}

/** The zoom as the status shows it: a percentage of image px per screen px. */
export function zoomLabel(k: number): string {
  const p = k * 100;
  return `${p >= 10 ? Math.round(p) : p.toFixed(1)}%`;
}

/** A view independent of the image: how far zoomed in relative to fit, and which point of
 * the image is at the stage's centre, as fractions of its width and height. What N / P
 * carry over to the next image (an annotator on a series of similar photos keeps looking
 * at the same part, at the same zoom). */
export interface RelativeView {
  /** Scale / fit scale (1: fitted). */
  zoom: number;
  /** Image point at the stage's centre, 0..1 along the width and the height. */
  cx: number;
  cy: number;
}

/** The view `v` of an image, made relative (see RelativeView). */
export function relativeView(v: View, img: Size, stage: Size): RelativeView {
  const fit = fitScale(img, stage);
  return {
    zoom: v.k / fit,
    cx: (stage.width / 2 - v.tx) / v.k / img.width,
    cy: (stage.height / 2 - v.ty) / v.k / img.height,
  };
}

/** The view of another image (`img`) at the same relative zoom, with the same relative
 * point at the stage's centre; clamped as any view (zoom within [minScale, MAX_ZOOM], the
 * image kept on the stage). */
export function applyRelativeView(r: RelativeView, img: Size, stage: Size): View {
  const k = Math.min(MAX_ZOOM, Math.max(minScale(img, stage), r.zoom * fitScale(img, stage)));
  return clampView({ k, tx: stage.width / 2 - r.cx * img.width * k, ty: stage.height / 2 - r.cy * img.height * k }, img, stage);
}

/** A screen point (px, relative to the stage). */
export type Point = readonly [number, number];

/**
 * One step of a two-finger gesture on a touch screen: the fingers were at (a0, b0) and are
 * now at (a1, b1) (screen px). The scale changes by the ratio of their distances (pinch)
 * and the image point that was under their midpoint moves to their new midpoint (so a
 * pinch zooms around the pinch centre, and both fingers moving together pan); then clamped
 * as any view, the scale within [minScale, MAX_ZOOM].
 */
export function pinch(v: View, a0: Point, b0: Point, a1: Point, b1: Point, img: Size, stage: Size): View {
  const d0 = Math.hypot(b0[0] - a0[0], b0[1] - a0[1]);
  const d1 = Math.hypot(b1[0] - a1[0], b1[1] - a1[1]);
  // Fingers (nearly) on one spot say nothing about a scale: pan only.
  const factor = d0 >= 1 && d1 >= 1 ? d1 / d0 : 1;
  const k = Math.min(MAX_ZOOM, Math.max(minScale(img, stage), v.k * factor));
  const c0x = (a0[0] + b0[0]) / 2;
  const c0y = (a0[1] + b0[1]) / 2;
  const c1x = (a1[0] + b1[0]) / 2;
  const c1y = (a1[1] + b1[1]) / 2;
  const ex = (c0x - v.tx) / v.k;
  const ey = (c0y - v.ty) / v.k;
  return clampView({ k, tx: c1x - ex * k, ty: c1y - ey * k }, img, stage);
}
