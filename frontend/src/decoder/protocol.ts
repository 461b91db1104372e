/**
 * Typed messages between the main thread (DecoderBridge) and the decoder worker.
 * Every request carries an id; every reply carries the same id and either a result or
 * an error, never neither.
 */
import type { DecoderFeeds } from '../lib/feeds';

export interface InitRequest {
  type: 'init';
  id: number;
  /** URL of the decoder ONNX (same origin; cookies go with it). */
  modelUrl: string;
  /** Where onnxruntime-web's .wasm/.mjs live, e.g. "/static/app/ort/". */
  wasmPaths: string;
  /** Override of the wasm thread count (benchmarks); default min(4, cores) when isolated, else 1. */
  numThreads?: number;
}

export interface LoadEmbeddingRequest {
  type: 'loadEmbedding';
  id: number;
  /** Cache key: the image id (the worker keeps an LRU of float32 embeddings). */
  key: number;
  /** Little-endian fp16 bytes of the 1x256x64x64 embedding; transferred, not copied. */
  fp16: ArrayBuffer;
}

export interface DecodeRequest {
  type: 'decode';
  id: number;
  key: number;
  height: number;
  width: number;
  feeds: DecoderFeeds;
}

export type WorkerRequest = InitRequest | LoadEmbeddingRequest | DecodeRequest;

export interface InitResult {
  numThreads: number;
  crossOriginIsolated: boolean;
  inputNames: string[];
  outputNames: string[];
  loadMs: number;
}

export interface LoadEmbeddingResult {
  key: number;
  /** Keys the worker's LRU dropped to make room. */
  evicted: number[];
  /** Time the worker spent converting (fp16 -> float32, transposed for the browser graph). */
  convertMs: number;
}

export interface DecodeResult {
  /** 4 x H x W, 0/1 (logits > 0), candidate-major; index 0 = single-mask token. */
  masks: Uint8Array;
  /** Pixel count per candidate. */
  areas: number[];
  /** 1x4 predicted IoU. */
  iou_predictions: Float32Array;
  /** 1x4x256x256 logits (fed back as mask_input on the next click). */
  low_res_masks: Float32Array;
  height: number;
  width: number;
  /** Time inside session.run, and for the whole request in the worker. */
  runMs: number;
  totalMs: number;
}

export interface ResultMap {
  init: InitResult;
  loadEmbedding: LoadEmbeddingResult;
  decode: DecodeResult;
}

export interface WorkerError {
  name: string;
  message: string;
}

export type WorkerReply = {
  [K in keyof ResultMap]:
    | { type: K; id: number; ok: true; result: ResultMap[K] }
    | { type: K; id: number; ok: false; error: WorkerError };
}[keyof ResultMap];
