/** Coordinate frames: image pixels (EXIF-corrected original) <-> SAM's 1024 frame. */

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

/**
 * Client (CSS px, e.g. PointerEvent.clientX/Y) -> image pixel coordinates, for an element
 * that shows the whole image stretched to its bounding rect.
 *
 * Pixel centres are integers: pixel column i covers [i - 0.5, i + 0.5). That is the
 * convention of SAM's prompt encoder (it adds 0.5 itself before normalising) and of numpy
 * indexing, so a stored prompt (x, y) is the pixel mask[round(y), round(x)]. Clamped to
 * [0, W - 1] x [0, H - 1].
 */
export function clientToImage(
  clientX: number,
  clientY: number,
  rect: { left: number; top: number; width: number; height: number },
  imageWidth: number,
  imageHeight: number,
): [number, number] {
  const x = ((clientX - rect.left) / rect.width) * imageWidth - 0.5;
  const y = ((clientY - rect.top) / rect.height) * imageHeight - 0.5;
  return [clamp(x, 0, imageWidth - 1), clamp(y, 0, imageHeight - 1)];
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
