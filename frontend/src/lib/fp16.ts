/** IEEE 754 binary16 -> float32 conversion for the embedding (fp16 on the wire). */

let table: Float32Array | null = null;

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24; // subnormal (and zero)
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** 65536-entry lookup (256 KiB, built once): a table lookup beats bit twiddling per value. */
function lookup(): Float32Array {
  if (!table) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = halfToFloat(h);
  }
  return table;
}

/**
 * Little-endian fp16 bytes -> Float32Array.
 * @throws Error when the byte length is odd.
 */
export function fp16ToFloat32(bytes: ArrayBuffer): Float32Array {
  if (bytes.byteLength % 2) throw new Error(`fp16 payload has an odd byte length ${bytes.byteLength}`);
  const t = lookup();
  const n = bytes.byteLength / 2;
  // Uint16Array uses platform endianness; every browser we target is little-endian.
  const src = new Uint16Array(bytes);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = t[src[i]!]!;
  return out;
}

/**
 * Little-endian fp16 bytes of a C x P (channel-major, e.g. 256 x 64*64) array -> Float32Array
 * P x C (channel-last tokens), converting and transposing in one pass.
 * @throws Error when the byte length is not 2 * channels * positions.
 */
export function fp16ToFloat32Transposed(bytes: ArrayBuffer, channels: number, positions: number): Float32Array {
  if (bytes.byteLength !== 2 * channels * positions) {
    throw new Error(`fp16 payload has ${bytes.byteLength} bytes, expected ${2 * channels * positions}`);
  }
  const t = lookup();
  const src = new Uint16Array(bytes);
  const out = new Float32Array(channels * positions);
  for (let c = 0; c < channels; c++) {
    const row = c * positions;
    for (let p = 0; p < positions; p++) out[p * channels + c] = t[src[row + p]!]!;
  }
  return out;
}
