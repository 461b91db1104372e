/**
 * Where the label tags of the saved masks go on the annotate page's screen-space overlay,
 * so that they never overlap each other (close or small masks used to stack their tags on
 * one another, unreadable). Pure, unit-tested in test/tags.test.ts; canvas.ts draws.
 *
 * Greedy: the tags of smaller masks are placed first (they have the fewest good spots);
 * each tag tries its mask's anchor (the top-left corner of its box, inside), then spots
 * around the box (above it, its other corners, below it), then spots further down and to
 * the side, and right next to the tags already placed near it, always within the stage
 * and clear of the tags placed so far. When no spot is
 * free the compact form of the tag (a shortened text) is tried at the same spots; when
 * that finds none either the tag is left out (null), rather than drawn over another. A tag
 * away from its anchor is marked `moved`: the caller draws a leader line from the tag to
 * the anchor so it stays visibly tied to its mask.
 */

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface TagRequest {
  /** The mask's box on the screen (px, relative to the stage). */
  box: Rect;
  /** The tag's size in its full form. */
  w: number;
  h: number;
  /** Width of the compact form (shortened text); omitted: there is none. */
  compactW?: number;
}

export interface TagPlacement extends Rect {
  /** Whether the compact form was used. */
  compact: boolean;
  /** Whether the tag is away from its anchor (draw a leader line to `anchor`). */
  moved: boolean;
  /** The point of the mask the tag belongs to: its box's top-left corner, within the stage. */
  anchor: [number, number];
}

/** Gap in px kept between two tags. */
export const TAG_GAP = 2;
/** How far (in tag heights) a tag may be moved down or up from its box's corner. */
const MAX_STEPS = 6;

/** Whether two rectangles overlap, counting `gap` px around them as taken. */
export function overlaps(a: Rect, b: Rect, gap = 0): boolean {
  return a.x < b.x + b.w + gap && b.x < a.x + a.w + gap && a.y < b.y + b.h + gap && b.y < a.y + a.h + gap;
}

/** The spots a w x h tag of the mask with screen box `box` tries, best first. */
export function candidateSpots(box: Rect, w: number, h: number): Array<[number, number]> {
  const { x, y } = box;
  const right = x + box.w - w;
  const bottom = y + box.h;
  const spots: Array<[number, number]> = [
    [x, y], // the anchor: inside the box's top-left corner
    [x, y - h - TAG_GAP], // just above it
    [right, y], // inside the top-right corner
    [right, y - h - TAG_GAP],
    [x, bottom + TAG_GAP], // just below the box
    [x - w - TAG_GAP, y], // left of the box
    [x + box.w + TAG_GAP, y], // right of the box
  ];
  // Further away: stepped down and up from the corner, then also sideways.
  for (let i = 1; i <= MAX_STEPS; i++) {
    const dy = i * (h + TAG_GAP);
    spots.push([x, y + dy], [x, y - h - TAG_GAP - dy]);
  }
  for (let i = 1; i <= MAX_STEPS; i++) {
    const dy = i * (h + TAG_GAP);
    for (const dx of [w + TAG_GAP, -(w + TAG_GAP)]) spots.push([x + dx, y + dy], [x + dx, y - dy]);
  }
  return spots;
}

function inside(r: Rect, stage: { width: number; height: number }): boolean {
  return r.x >= 0 && r.y >= 0 && r.x + r.w <= stage.width && r.y + r.h <= stage.height;
}

/**
 * Places one tag per request (same order as `requests`), none overlapping another (with
 * TAG_GAP px between), all within the stage; null for a tag left out: its mask is off the
 * stage, or there was no room near it even in compact form.
 */
export function placeTags(requests: readonly TagRequest[], stage: { width: number; height: number }): Array<TagPlacement | null> {
  const out: Array<TagPlacement | null> = requests.map(() => null);
  const order = requests
    .map((r, i) => ({ r, i, area: Math.max(0, r.box.w) * Math.max(0, r.box.h) }))
    .sort((a, b) => a.area - b.area || a.i - b.i);
  const taken: Rect[] = [];
  for (const { r, i } of order) {
    const b = r.box;
    // A mask entirely off the stage has no tag.
    if (b.x >= stage.width || b.y >= stage.height || b.x + b.w <= 0 || b.y + b.h <= 0) continue;
    // The anchor is the box's corner, brought onto the stage (a box partly scrolled off).
    const ax = Math.min(Math.max(b.x, 0), stage.width);
    const ay = Math.min(Math.max(b.y, 0), stage.height);
    const visible: Rect = { x: ax, y: ay, w: Math.min(b.x + b.w, stage.width) - ax, h: Math.min(b.y + b.h, stage.height) - ay };
    const forms: Array<[number, boolean]> = [[r.w, false]];
    if (r.compactW !== undefined && r.compactW < r.w) forms.push([r.compactW, true]);
    let placed: TagPlacement | null = null;
    for (const [w, compact] of forms) {
      // Besides the fixed spots: right next to (or under) a tag already placed near the
      // anchor, which packs the tags of a cluster of small masks into a tidy row.
      const near = taken.filter((t) => Math.abs(t.x - ax) < 3 * (w + TAG_GAP) && Math.abs(t.y - ay) < MAX_STEPS * r.h);
      const spots = candidateSpots(visible, w, r.h);
      for (const t of near) spots.push([t.x + t.w + TAG_GAP, t.y], [t.x, t.y + t.h + TAG_GAP]);
      for (const [x, y] of spots) {
        const rect = { x, y, w, h: r.h };
        if (!inside(rect, stage) || taken.some((t) => overlaps(rect, t, TAG_GAP))) continue;
        placed = { ...rect, compact, moved: x !== ax || y !== ay, anchor: [ax, ay] };
        break;
      }
      if (placed) break;
    }
    if (!placed) continue;
    taken.push(placed);
    out[i] = placed;
  }
  return out;
}

/** The compact form of a tag's text: its first `n` characters and an ellipsis. */
export function compactText(text: string, n = 3): string {
  const chars = Array.from(text);
  return chars.length <= n + 1 ? text : `${chars.slice(0, n).join('')}…`;
}
