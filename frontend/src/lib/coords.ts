/**
 * Coordinate frames: image pixels (EXIF-corrected original) <-> SAM's 1024 frame.
 *
 * Pixel centres are integers: pixel column i covers [i - 0.5, i + 0.5). That is the
 * convention of SAM's prompt encoder (it adds 0.5 itself before normalising) and of numpy
 * indexing, so a stored prompt (x, y) is the pixel mask[round(y), round(x)]. Screen <->
 * image conversion under zoom and pan: lib/view.ts.
 */

/** Scale from image pixels to the 1024 frame: 1024 / max(H, W) (DESIGN.md decoder contract). */
export function scaleTo1024(height: number, width: number): number {
  if (!(height > 0 && width > 0)) throw new RangeError(`bad image size ${height}x${width}`);
  return 1024 / Math.max(height, width);
}

/** (x, y) image pixels -> (x, y) in the 1024 frame. */
export function toFrame1024(x: number, y: number, height: number, width: number): [number, number] {
  const s = scaleTo1024(height, width);
  return [x * s, y * s];
}
