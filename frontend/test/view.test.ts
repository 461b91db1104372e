import { describe, expect, it } from 'vitest';
import {
  MAX_ZOOM, MIN_SHORT_SIDE, VIEW_PAD, clampToImage, clampView, fitScale, fitView, imageToScreen, minScale, onImage, pan,
  screenToImage, zoomAt, zoomLabel, type View, relativeView, applyRelativeView, pinch,
} from '../src/lib/view';

const stage = { width: 1000, height: 700 };
const photo = { width: 6000, height: 4339 };

function close(a: [number, number], b: [number, number], eps = 1e-6): void {
  expect(Math.abs(a[0] - b[0])).toBeLessThan(eps);
  expect(Math.abs(a[1] - b[1])).toBeLessThan(eps);
}

describe('fit', () => {
  it('fits a normal photo inside the stage, centred', () => {
    const v = fitView(photo, stage);
    expect(v.k).toBeCloseTo(Math.min((1000 - 2 * VIEW_PAD) / 6000, (700 - 2 * VIEW_PAD) / 4339), 9);
    // Fits both ways, centred on both axes.
    expect(v.tx).toBeCloseTo((1000 - 6000 * v.k) / 2, 9);
    expect(v.ty).toBeCloseTo((700 - 4339 * v.k) / 2, 9);
    expect(6000 * v.k).toBeLessThanOrEqual(1000 - 2 * VIEW_PAD + 1e-9);
    expect(4339 * v.k).toBeLessThanOrEqual(700 - 2 * VIEW_PAD + 1e-9);
  });

  it('a tiny image is enlarged to fit but not beyond MAX_ZOOM', () => {
    expect(fitScale({ width: 10, height: 10 }, stage)).toBe(MAX_ZOOM);
    expect(fitScale({ width: 100, height: 100 }, stage)).toBeCloseTo((700 - 2 * VIEW_PAD) / 100, 9);
  });

  it('an 8x3000 column is at least MIN_SHORT_SIDE px wide and starts at its top', () => {
    const img = { width: 8, height: 3000 };
    const v = fitView(img, stage);
    expect(img.width * v.k).toBeCloseTo(MIN_SHORT_SIDE, 9);
    expect(v.tx).toBeCloseTo((1000 - MIN_SHORT_SIDE) / 2, 9); // centred across
    expect(v.ty).toBe(VIEW_PAD); // the long side starts at its beginning and pans
    expect(img.height * v.k).toBeGreaterThan(stage.height);
  });

  it('a 4000x40 strip is at least MIN_SHORT_SIDE px tall and starts at its left', () => {
    const img = { width: 4000, height: 40 };
    const v = fitView(img, stage);
    expect(img.height * v.k).toBeCloseTo(MIN_SHORT_SIDE, 9);
    expect(v.tx).toBe(VIEW_PAD);
    expect(v.ty).toBeCloseTo((700 - MIN_SHORT_SIDE) / 2, 9);
  });

  it('the short side never asks for more than the stage has', () => {
    const v = fitView({ width: 8, height: 3000 }, { width: 100, height: 700 });
    expect(8 * v.k).toBeCloseTo(100 - 2 * VIEW_PAD, 9);
  });
});

describe('transform', () => {
  const v: View = { k: 2.5, tx: -130.25, ty: 47 };

  it('round trips screenToImage(imageToScreen(p)) == p', () => {
    for (const p of [[0, 0], [5999, 4338], [123.4, 987.6], [-0.5, -0.5]] as [number, number][]) {
      close(screenToImage(v, ...imageToScreen(v, ...p)), p);
    }
  });

  it('pixel centres are integers (lib/coords.ts convention)', () => {
    // The image's top-left corner on screen is the edge of pixel 0: x = -0.5.
    close(screenToImage(v, v.tx, v.ty), [-0.5, -0.5]);
    close(imageToScreen(v, 0, 0), [v.tx + 0.5 * v.k, v.ty + 0.5 * v.k]);
  });

  it('onImage and clampToImage', () => {
    expect(onImage(0, 0, photo)).toBe(true);
    expect(onImage(-0.6, 0, photo)).toBe(false);
    expect(onImage(5999.4, 4338.4, photo)).toBe(true);
    expect(onImage(5999.5, 0, photo)).toBe(false);
    expect(clampToImage(-3, 9000, photo)).toEqual([0, 4338]);
  });
});

describe('zoomAt', () => {
  it('keeps the image pixel under the cursor where it is', () => {
    let v = fitView(photo, stage);
    const cursor: [number, number] = [612.3, 401.7];
    const before = screenToImage(v, ...cursor);
    for (const f of [1.25, 1.25, 2, 3, 1.1, 0.8]) {
      v = zoomAt(v, cursor[0], cursor[1], f, photo, stage);
      close(screenToImage(v, ...cursor), before, 1e-6);
    }
    expect(v.k).toBeGreaterThan(fitView(photo, stage).k * 5);
  });

  it('is limited to [minScale, MAX_ZOOM]', () => {
    let v = fitView(photo, stage);
    for (let i = 0; i < 100; i++) v = zoomAt(v, 500, 350, 1.5, photo, stage);
    expect(v.k).toBe(MAX_ZOOM);
    for (let i = 0; i < 100; i++) v = zoomAt(v, 500, 350, 0.5, photo, stage);
    expect(v.k).toBeCloseTo(minScale(photo, stage), 12);
    // Back at the fit scale, the photo is centred again.
    const f = fitView(photo, stage);
    expect(v.tx).toBeCloseTo(f.tx, 9);
    expect(v.ty).toBeCloseTo(f.ty, 9);
  });

  it('a small first step from fit keeps the cursor pixel although the image still fits along that axis', () => {
    // A 640x427 photo on a wide stage is fitted by its height: across, it is centred with room
    // to spare. One wheel notch near its left edge must not re-centre it (QA: it drifted ~12 px).
    const wide = { width: 1600, height: 700 };
    const small = { width: 640, height: 427 };
    const v0 = fitView(small, wide);
    expect(small.width * v0.k).toBeLessThan(wide.width - 2 * VIEW_PAD);
    for (const [x, y] of [[100, 100], [600, 400], [320, 213]] as [number, number][]) {
      const [sx, sy] = imageToScreen(v0, x, y);
      const v1 = zoomAt(v0, sx, sy, 1.1, small, wide);
      expect(small.width * v1.k).toBeLessThan(wide.width - 2 * VIEW_PAD);  // still fits across
      close(screenToImage(v1, sx, sy), [x, y], 1e-6);
      // The image stays within the padding.
      expect(v1.tx).toBeGreaterThanOrEqual(VIEW_PAD - 1e-9);
      expect(v1.tx + small.width * v1.k).toBeLessThanOrEqual(wide.width - VIEW_PAD + 1e-9);
    }
  });

  it('panning after such a step does not snap the fitting axis back to the centre', () => {
    const wide = { width: 1600, height: 700 };
    const small = { width: 640, height: 427 };
    const v0 = fitView(small, wide);
    const [sx, sy] = imageToScreen(v0, 100, 100);
    const v1 = zoomAt(v0, sx, sy, 1.3, small, wide);
    expect(small.width * v1.k).toBeLessThan(wide.width - 2 * VIEW_PAD);
    const v2 = pan(v1, 40, 30, small, wide);
    expect(v2.tx).toBeCloseTo(v1.tx, 9);  // fits across: nothing to pan, and no jump
    expect(v2.ty).toBeCloseTo(Math.min(VIEW_PAD, v1.ty + 30), 9);  // too tall: pans, within the padding
  });

  it('zooming in at a point near the edge keeps that point when the clamp allows', () => {
    const v0 = fitView(photo, stage);
    const [sx, sy] = imageToScreen(v0, 3000, 2000);
    const v1 = zoomAt(v0, sx, sy, 8, photo, stage);
    close(screenToImage(v1, sx, sy), [3000, 2000], 1e-6);
  });
});

describe('pan and clamp', () => {
  it('pans by screen px', () => {
    const v0 = zoomAt(fitView(photo, stage), 500, 350, 4, photo, stage);
    const v1 = pan(v0, 30, -20, photo, stage);
    expect(v1.tx).toBeCloseTo(v0.tx + 30, 9);
    expect(v1.ty).toBeCloseTo(v0.ty - 20, 9);
    // What was at (500, 350) is now at (530, 330).
    close(screenToImage(v1, 530, 330), screenToImage(v0, 500, 350));
  });

  it('the image cannot be lost off screen', () => {
    const v0 = zoomAt(fitView(photo, stage), 500, 350, 4, photo, stage);
    const far = pan(v0, 1e6, 1e6, photo, stage);
    expect(far.tx).toBe(VIEW_PAD);
    expect(far.ty).toBe(VIEW_PAD);
    const back = pan(v0, -1e6, -1e6, photo, stage);
    expect(back.tx + photo.width * back.k).toBeCloseTo(stage.width - VIEW_PAD, 6);
    expect(back.ty + photo.height * back.k).toBeCloseTo(stage.height - VIEW_PAD, 6);
  });

  it('an image smaller than the stage along an axis stays centred on it', () => {
    const img = { width: 8, height: 3000 };
    const v = pan(fitView(img, stage), 200, -500, img, stage);
    expect(v.tx).toBeCloseTo((1000 - 8 * v.k) / 2, 9);
    expect(v.ty).toBeCloseTo(VIEW_PAD - 500, 9); // the long side pans
    const end = pan(v, 0, -1e7, img, stage);
    expect(end.ty + img.height * end.k).toBeCloseTo(stage.height - VIEW_PAD, 6);
  });

  it('clampView keeps a view already inside bounds', () => {
    const v = { k: 1, tx: -100, ty: -200 };
    expect(clampView(v, photo, stage)).toEqual(v);
  });
});

it('zoomLabel', () => {
  expect(zoomLabel(1)).toBe('100%');
  expect(zoomLabel(32)).toBe('3200%');
  expect(zoomLabel(0.0513)).toBe('5.1%');
});

describe('relative view (kept across N / P)', () => {
  it('round-trips on the same image', () => {
    const v = zoomAt(fitView(photo, stage), 300, 200, 5, photo, stage);
    const r = relativeView(v, photo, stage);
    expect(r.zoom).toBeCloseTo(v.k / fitScale(photo, stage), 9);
    const back = applyRelativeView(r, photo, stage);
    expect(back.k).toBeCloseTo(v.k, 9);
    expect(back.tx).toBeCloseTo(v.tx, 6);
    expect(back.ty).toBeCloseTo(v.ty, 6);
  });

  it('a fitted view is zoom 1 centred', () => {
    const r = relativeView(fitView(photo, stage), photo, stage);
    expect(r.zoom).toBeCloseTo(1, 9);
    expect(r.cx).toBeCloseTo(0.5, 9);
    expect(r.cy).toBeCloseTo(0.5, 9);
  });

  it('carries the zoom relative to fit and the centre point to an image of another size', () => {
    const other = { width: 3000, height: 2000 };
    const v = zoomAt(fitView(photo, stage), 250, 180, 4, photo, stage);
    const r = relativeView(v, photo, stage);
    const w = applyRelativeView(r, other, stage);
    expect(w.k / fitScale(other, stage)).toBeCloseTo(r.zoom, 9);
    // The same relative image point is at the stage's centre.
    const [ix, iy] = screenToImage(w, stage.width / 2, stage.height / 2);
    expect((ix + 0.5) / other.width).toBeCloseTo(r.cx, 6);
    expect((iy + 0.5) / other.height).toBeCloseTo(r.cy, 6);
  });

  it('clamps: a centre near the edge keeps the image on the stage, the zoom stays within bounds', () => {
    const r = { zoom: 1000, cx: 0.999, cy: 0.001 };
    const w = applyRelativeView(r, photo, stage);
    expect(w.k).toBe(MAX_ZOOM);
    expect(w.tx + photo.width * w.k).toBeGreaterThanOrEqual(stage.width - VIEW_PAD - 1e-6);
    expect(w.ty).toBeLessThanOrEqual(VIEW_PAD + 1e-6);
  });
});

describe('pinch (two fingers on a touch screen)', () => {
  const start = zoomAt(fitView(photo, stage), 500, 350, 3, photo, stage);

  it('spreading the fingers zooms around their midpoint: the image point there stays', () => {
    const c: [number, number] = [420, 300];
    const v = pinch(start, [400, 300], [440, 300], [380, 300], [460, 300], photo, stage);
    expect(v.k).toBeCloseTo(start.k * 2, 9);
    close(screenToImage(v, c[0], c[1]), screenToImage(start, c[0], c[1]), 1e-6);
  });

  it('pinching in zooms out, never below the smallest scale', () => {
    const v = pinch(start, [300, 300], [700, 300], [490, 300], [510, 300], photo, stage);
    expect(v.k).toBeCloseTo(minScale(photo, stage), 9);
  });

  it('both fingers moving together pan by their move, the scale unchanged', () => {
    const v = pinch(start, [400, 300], [500, 320], [430, 280], [530, 300], photo, stage);
    expect(v.k).toBeCloseTo(start.k, 9);
    expect(v.tx - start.tx).toBeCloseTo(30, 6);
    expect(v.ty - start.ty).toBeCloseTo(-20, 6);
  });

  it('pinch and pan at once: the point under the old midpoint is under the new one', () => {
    const v = pinch(start, [400, 300], [500, 300], [410, 330], [560, 330], photo, stage);
    expect(v.k).toBeCloseTo(start.k * 1.5, 9);
    close(screenToImage(v, 485, 330), screenToImage(start, 450, 300), 1e-6);
  });

  it('stops at MAX_ZOOM and keeps the image on the stage', () => {
    const v = pinch(start, [499, 350], [501, 350], [0, 350], [1000, 350], photo, stage);
    expect(v.k).toBe(MAX_ZOOM);
    const far = pinch(start, [400, 300], [500, 300], [400 + 1e6, 300], [500 + 1e6, 300], photo, stage);
    expect(far.tx).toBeLessThanOrEqual(VIEW_PAD + 1e-9);
  });

  it('fingers on one spot: no scale change, no NaN', () => {
    const v = pinch(start, [400, 300], [400, 300], [410, 300], [410, 300], photo, stage);
    expect(v.k).toBe(start.k);
    expect(Number.isFinite(v.tx)).toBe(true);
  });
});
