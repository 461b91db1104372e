import { describe, expect, it } from 'vitest';
import { TAG_GAP, compactText, overlaps, placeTags, type TagPlacement, type TagRequest } from '../src/lib/tags';

const stage = { width: 800, height: 600 };

function noOverlap(ps: Array<TagPlacement | null>): void {
  const shown = ps.filter((p): p is TagPlacement => p !== null);
  for (let i = 0; i < shown.length; i++) {
    for (let j = i + 1; j < shown.length; j++) expect(overlaps(shown[i]!, shown[j]!)).toBe(false);
  }
}

function onStage(p: TagPlacement): void {
  expect(p.x).toBeGreaterThanOrEqual(0);
  expect(p.y).toBeGreaterThanOrEqual(0);
  expect(p.x + p.w).toBeLessThanOrEqual(stage.width);
  expect(p.y + p.h).toBeLessThanOrEqual(stage.height);
}

describe('placeTags', () => {
  it('a lone tag sits at its mask box corner, not moved', () => {
    const [p] = placeTags([{ box: { x: 100, y: 80, w: 50, h: 40 }, w: 60, h: 16 }], stage);
    expect(p).toMatchObject({ x: 100, y: 80, w: 60, h: 16, moved: false, compact: false, anchor: [100, 80] });
  });

  it('tags of masks with the same corner do not overlap (they used to stack exactly)', () => {
    const reqs: TagRequest[] = [0, 1, 2, 3].map(() => ({ box: { x: 200, y: 200, w: 30, h: 30 }, w: 70, h: 16 }));
    const ps = placeTags(reqs, stage);
    expect(ps.every((p) => p !== null)).toBe(true);
    noOverlap(ps);
    ps.forEach((p) => onStage(p!));
    // The first keeps the anchor, the others are moved (a leader line ties them to it), and
    // stay near it.
    expect(ps.filter((p) => !p!.moved)).toHaveLength(1);
    for (const p of ps) {
      expect(p!.anchor).toEqual([200, 200]);
      expect(Math.hypot(p!.x - 200, p!.y - 200)).toBeLessThan(200);
    }
  });

  it('keeps a gap between neighbours of close small masks', () => {
    const reqs: TagRequest[] = [];
    for (let i = 0; i < 6; i++) reqs.push({ box: { x: 100 + i * 12, y: 100 + (i % 2) * 6, w: 10, h: 10 }, w: 64, h: 16 });
    const ps = placeTags(reqs, stage);
    noOverlap(ps);
    const shown = ps.filter((p): p is TagPlacement => p !== null);
    expect(shown).toHaveLength(6);
    for (let i = 0; i < shown.length; i++) {
      for (let j = i + 1; j < shown.length; j++) expect(overlaps(shown[i]!, shown[j]!, TAG_GAP - 0.001)).toBe(false);
    }
  });

  it('the smaller mask gets its anchor first', () => {
    const big = { box: { x: 50, y: 50, w: 400, h: 300 }, w: 60, h: 16 };
    const small = { box: { x: 50, y: 50, w: 20, h: 20 }, w: 60, h: 16 };
    const [pb, ps] = placeTags([big, small], stage);
    expect(ps!.moved).toBe(false);
    expect(pb!.moved).toBe(true);
  });

  it('stays on the stage: a mask at the corner puts its tag inside', () => {
    const [p] = placeTags([{ box: { x: 780, y: 590, w: 20, h: 10 }, w: 60, h: 16 }], stage);
    expect(p).not.toBeNull();
    onStage(p!);
  });

  it('a mask partly off the stage anchors at its visible corner; one fully off has no tag', () => {
    const [a, b] = placeTags([
      { box: { x: -100, y: -50, w: 300, h: 200 }, w: 60, h: 16 },
      { box: { x: 900, y: 10, w: 50, h: 50 }, w: 60, h: 16 },
    ], stage);
    expect(a).toMatchObject({ x: 0, y: 0, moved: false, anchor: [0, 0] });
    expect(b).toBeNull();
  });

  it('uses the compact form when the full one finds no room, and leaves a tag out rather than overlap', () => {
    const tiny = { width: 100, height: 20 };
    const reqs: TagRequest[] = [
      { box: { x: 0, y: 0, w: 10, h: 10 }, w: 60, h: 16, compactW: 30 },
      { box: { x: 0, y: 0, w: 10, h: 10 }, w: 60, h: 16, compactW: 30 },
      { box: { x: 0, y: 0, w: 10, h: 10 }, w: 60, h: 16, compactW: 30 },
    ];
    const ps = placeTags(reqs, tiny);
    expect(ps[0]).toMatchObject({ x: 0, y: 0, compact: false });
    expect(ps[1]).toMatchObject({ compact: true, w: 30 });
    expect(ps[2]).toBeNull();
    noOverlap(ps);
  });

  it('many random masks: never an overlap, always on the stage', () => {
    let seed = 7;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const reqs: TagRequest[] = [];
    for (let i = 0; i < 80; i++) {
      reqs.push({ box: { x: rnd() * 700, y: rnd() * 500, w: 5 + rnd() * 80, h: 5 + rnd() * 80 }, w: 40 + rnd() * 60, h: 16, compactW: 30 });
    }
    const ps = placeTags(reqs, stage);
    noOverlap(ps);
    ps.forEach((p) => p && onStage(p));
    expect(ps.filter((p) => p !== null).length).toBeGreaterThan(40);
  });
});

describe('compactText', () => {
  it('shortens long names only', () => {
    expect(compactText('flower')).toBe('flo…');
    expect(compactText('cat')).toBe('cat');
    expect(compactText('door')).toBe('door');
  });
});
