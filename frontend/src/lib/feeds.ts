/**
 * Decoder inputs built exactly as DESIGN.md "Decoder ONNX contract" says (and as
 * engine.predictor.decoder_feeds builds them in Python), minus the embedding, which the
 * worker owns. Plain typed arrays so they can be transferred to the worker.
 */
import { scaleTo1024 } from './coords';
import type { Prompts } from './prompts';

export const LOW_RES = 256;
export const LOW_RES_SIZE = LOW_RES * LOW_RES;

export interface DecoderFeeds {
  /** 1xNx2 (x, y) in the 1024 frame. */
  point_coords: Float32Array;
  /** 1xN: 1 fg, 0 bg, 2 box top-left, 3 box bottom-right, -1 padding. */
  point_labels: Float32Array;
  /** N, the number of points including box corners / padding. */
  num_points: number;
  /** 1x1x256x256 low-res logits of the previous chosen candidate, or zeros. */
  mask_input: Float32Array;
  /** [1]: 1 when mask_input is used. */
  has_mask_input: Float32Array;
  /** [2]: (H, W) of the original image. */
  orig_im_size: Float32Array;
}

/**
 * @param prompts clicks and box in image pixels.
 * @param height original image height (after EXIF orientation).
 * @param width original image width.
 * @param maskInput previous chosen candidate's 256x256 low-res logits (refinement), or null.
 * @throws Error when there is no prompt at all, or maskInput has the wrong length.
 */
export function buildFeeds(
  prompts: Prompts,
  height: number,
  width: number,
  maskInput: Float32Array | null,
): DecoderFeeds {
  const s = scaleTo1024(height, width);
  const pts = prompts.points;
  if (pts.length === 0 && prompts.box === null) throw new Error('a prompt needs at least one point or a box');
  const n = pts.length + (prompts.box ? 2 : 1);
  const coords = new Float32Array(n * 2);
  const labels = new Float32Array(n);
  pts.forEach((p, i) => {
    coords[2 * i] = p.x * s;
    coords[2 * i + 1] = p.y * s;
    labels[i] = p.label;
  });
  let k = pts.length;
  if (prompts.box) {
    const [x0, y0, x1, y1] = prompts.box;
    coords.set([x0 * s, y0 * s, x1 * s, y1 * s], 2 * k);
    labels[k] = 2;
    labels[k + 1] = 3;
  } else {
    // SAM's ONNX convention: without a box, one padding point (0, 0) labelled -1.
    coords[2 * k] = 0;
    coords[2 * k + 1] = 0;
    labels[k] = -1;
  }
  if (maskInput && maskInput.length !== LOW_RES_SIZE) {
    throw new Error(`mask_input has ${maskInput.length} values, expected ${LOW_RES_SIZE}`);
  }
  return {
    point_coords: coords,
    point_labels: labels,
    num_points: n,
    mask_input: maskInput ?? new Float32Array(LOW_RES_SIZE),
    has_mask_input: new Float32Array([maskInput ? 1 : 0]),
    orig_im_size: new Float32Array([height, width]),
  };
}

/** Candidate `index`'s 256x256 logits out of low_res_masks (1x4x256x256), as a new array. */
export function lowResCandidate(lowResMasks: Float32Array, index: number): Float32Array {
  return lowResMasks.slice(index * LOW_RES_SIZE, (index + 1) * LOW_RES_SIZE);
}
