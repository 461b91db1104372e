/** Prompt types shared by the store, the feeds builder and the API payload. */

/** A click in image pixels; label 1 = foreground (positive), 0 = background (negative). */
export interface PromptPoint {
  x: number;
  y: number;
  label: 0 | 1;
}

/** XYXY box in image pixels, x0 <= x1 and y0 <= y1. */
export type Box = [number, number, number, number];

export interface Prompts {
  points: PromptPoint[];
  box: Box | null;
}

export const EMPTY_PROMPTS: Prompts = Object.freeze({ points: [], box: null }) as Prompts;

/** Box from two drag corners, in any order. */
export function normalizeBox(x0: number, y0: number, x1: number, y1: number): Box {
  return [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
}

export function isEmpty(p: Prompts): boolean {
  return p.points.length === 0 && p.box === null;
}

/**
 * Which output to show by default (SAM's own convention): one ambiguous prompt (a single
 * point, or only a box) -> best multimask candidate 1..3 by predicted IoU; several prompts
 * -> index 0, the single-mask token, which is trained for unambiguous multi-prompt input.
 */
export function defaultCandidate(prompts: Prompts, iouPredictions: ArrayLike<number>): number {
  if (!isAmbiguous(prompts)) return 0;
  let best = 1;
  for (let i = 2; i <= 3; i++) if ((iouPredictions[i] ?? -Infinity) > (iouPredictions[best] ?? -Infinity)) best = i;
  return best;
}

/** One point alone, or a box alone: SAM's multimask case (the object could be a part or a whole). */
export function isAmbiguous(prompts: Prompts): boolean {
  const n = prompts.points.length;
  return (n === 1 && prompts.box === null) || (n === 0 && prompts.box !== null);
}

/**
 * The candidate chips to offer for a step (indices into the 4 decoder outputs): always the
 * three multimask candidates 1..3, and the single-mask output 0 ("auto") whenever it is the
 * automatic choice for these prompts (several prompts) or the one shown, so that after
 * picking 1, 2 or 3 it can be picked again (chip, or key 0: see `defaultCandidate`).
 */
export function candidateChips(prompts: Prompts, chosen: number): number[] {
  return !isAmbiguous(prompts) || chosen === 0 ? [0, 1, 2, 3] : [1, 2, 3];
}

/** The `prompts` object of the annotation API payload (docs/api.md), in image pixels. */
export function promptsPayload(p: Prompts): {
  point_coords: [number, number][];
  point_labels: number[];
  box: Box | null;
} {
  const r = (v: number): number => Math.round(v * 100) / 100;
  return {
    point_coords: p.points.map((q) => [r(q.x), r(q.y)]),
    point_labels: p.points.map((q) => q.label),
    box: p.box ? (p.box.map(r) as Box) : null,
  };
}
