/**
 * Pure helpers of the semi-automatic mode (SAM paper §4, stage 2): which pre-fill proposal
 * has the focus, which decoder candidate reproduces a proposal when it is opened for
 * editing, which pixels no accepted mask covers yet.
 */

/** Intersection over union of two row-major 0/1 masks of the same size (0 when both are empty). */
export function maskIoU(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new Error(`masks differ in size: ${a.length} vs ${b.length}`);
  let inter = 0;
  let union = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x | y) {
      union++;
      if (x & y) inter++;
    }
  }
  return union ? inter / union : 0;
}

/**
 * The decoder output (0..k-1, candidate-major `masks` of k x H x W) closest to `target`
 * by IoU: opening a proposal for editing re-runs its grid point, and this picks the
 * candidate the generator kept, so the next click refines that mask's logits.
 * @returns index and IoU; index 0 when every candidate has IoU 0.
 */
export function bestMatchingCandidate(masks: Uint8Array, hw: number, target: Uint8Array): { index: number; iou: number } {
  if (target.length !== hw) throw new Error(`target has ${target.length} pixels, expected ${hw}`);
  const k = Math.floor(masks.length / hw);
  let best = { index: 0, iou: 0 };
  for (let c = 0; c < k; c++) {
    const iou = maskIoU(masks.subarray(c * hw, (c + 1) * hw), target);
    if (iou > best.iou) best = { index: c, iou };
  }
  return best;
}

/**
 * The proposal to focus after moving by `step` (+1 next, -1 previous) from `currentId`,
 * wrapping around; the first one when nothing (or a vanished id) had the focus.
 */
export function moveFocus(ids: readonly number[], currentId: number | null, step: 1 | -1): number | null {
  if (!ids.length) return null;
  const i = currentId === null ? -1 : ids.indexOf(currentId);
  if (i < 0) return ids[step > 0 ? 0 : ids.length - 1]!;
  return ids[(i + step + ids.length) % ids.length]!;
}

/**
 * Whether Tab (`step` +1) or Shift+Tab (-1) pressed on the page itself should leave the
 * proposals to the browser's normal focus order: when there are none, or the focus is on
 * the last one (Tab) or the first one (Shift+Tab). Otherwise it walks the proposals, so a
 * keyboard-only user reaches every proposal and then every control.
 */
export function tabLeavesProposals(ids: readonly number[], currentId: number | null, step: 1 | -1): boolean {
  if (!ids.length) return true;
  const i = currentId === null ? -1 : ids.indexOf(currentId);
  if (i < 0) return false;
  return step > 0 ? i === ids.length - 1 : i === 0;
}

/**
 * The focus after `removedId` leaves the list (accepted or rejected): the proposal that
 * followed it, else the one before, else null.
 */
export function focusAfterRemoval(ids: readonly number[], removedId: number): number | null {
  const i = ids.indexOf(removedId);
  const rest = ids.filter((id) => id !== removedId);
  if (!rest.length) return null;
  if (i < 0) return rest[0]!;
  return rest[Math.min(i, rest.length - 1)]!;
}

/** 1 where any of `masks` (each H x W, 0/1) is set; masks of another size are ignored. */
export function coverage(masks: readonly Uint8Array[], hw: number): Uint8Array {
  const out = new Uint8Array(hw);
  for (const m of masks) {
    if (m.length !== hw) continue;
    for (let i = 0; i < hw; i++) if (m[i]) out[i] = 1;
  }
  return out;
}

/** How the message of a refused accept-all threshold starts. */
export const THRESHOLD_REFUSED = 'The accept-all threshold';

/**
 * The accept-all threshold typed into the side panel: a predicted IoU in [0, 1] (the API's
 * `min_predicted_iou` range). Anything else is refused with a message that says the range,
 * never silently ignored.
 */
export function parseThreshold(text: string): { ok: true; value: number } | { ok: false; error: string } {
  const t = text.trim();
  const value = t === '' ? NaN : Number(t);
  if (!Number.isFinite(value) || value < 0 || value > 1) {
    return { ok: false, error: `${THRESHOLD_REFUSED} is a predicted IoU between 0 and 1${t ? `, not ${t}` : ''}.` };
  }
  return { ok: true, value };
}
