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
 * Client (CSS px, e.g. PointerEvent.clientX/Y) -> image pixels, for an element that shows
 * the whole image stretched to its bounding rect. Clamped to the image.
 */
export function clientToImage(
  clientX: number,
  clientY: number,
  rect: { left: number; top: number; width: number; height: number },
  imageWidth: number,
  imageHeight: number,
): [number, number] {
  const x = ((clientX - rect.left) / rect.width) * imageWidth;
  const y = ((clientY - rect.top) / rect.height) * imageHeight;
  return [clamp(x, 0, imageWidth - 1e-3), clamp(y, 0, imageHeight - 1e-3)];
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
