import { describe, expect, it } from 'vitest';
import { DecoderBridge, DecoderError, SupersededError } from '../src/decoder/bridge';
import type { WorkerReply, WorkerRequest } from '../src/decoder/protocol';
import { buildFeeds } from '../src/lib/feeds';

/** Stands in for the Worker: records requests (and what was transferred), replies on demand. */
class FakeWorker {
  onmessage: ((ev: MessageEvent<WorkerReply>) => void) | null = null;
  onerror: ((ev: ErrorEvent) => void) | null = null;
  onmessageerror: (() => void) | null = null;
  sent: { msg: WorkerRequest; transfer: Transferable[] }[] = [];
  postMessage(msg: WorkerRequest, transfer: Transferable[] = []): void {
    this.sent.push({ msg, transfer });
  }
  terminate(): void {}
  reply(r: WorkerReply): void {
    this.onmessage?.({ data: r } as MessageEvent<WorkerReply>);
  }
}

const feeds = () => buildFeeds({ points: [{ x: 1, y: 1, label: 1 }], box: null }, 4, 4, null);
const decodeResult = (height = 4, width = 4) => ({
  masks: new Uint8Array(4 * height * width), areas: [0, 0, 0, 0], iou_predictions: new Float32Array(4),
  low_res_masks: new Float32Array(4 * 256 * 256), height, width, runMs: 1, totalMs: 1,
});
const tick = () => new Promise((r) => setTimeout(r, 0));

describe('DecoderBridge', () => {
  it('resolves replies by id and rejects worker errors with their message', async () => {
    const w = new FakeWorker();
    const bridge = new DecoderBridge(w as unknown as Worker);
    const init = bridge.init('/m.onnx', '/static/app/ort/');
    const req = w.sent[0]!.msg;
    expect(req).toMatchObject({ type: 'init', modelUrl: '/m.onnx', wasmPaths: '/static/app/ort/' });
    w.reply({ type: 'init', id: req.id, ok: false, error: { name: 'Error', message: 'decoder download failed: HTTP 404' } });
    await expect(init).rejects.toThrow(DecoderError);
    await expect(init).rejects.toThrow('HTTP 404');
  });

  it('transfers the embedding bytes and tracks which images the worker holds', async () => {
    const w = new FakeWorker();
    const bridge = new DecoderBridge(w as unknown as Worker);
    const fp16 = new ArrayBuffer(8);
    const p = bridge.loadEmbedding(7, fp16);
    expect(w.sent[0]!.transfer).toEqual([fp16]);
    w.reply({ type: 'loadEmbedding', id: w.sent[0]!.msg.id, ok: true, result: { key: 7, evicted: [], convertMs: 1 } });
    await p;
    expect(bridge.hasEmbedding(7)).toBe(true);
    const q = bridge.loadEmbedding(8, new ArrayBuffer(8));
    w.reply({ type: 'loadEmbedding', id: w.sent[1]!.msg.id, ok: true, result: { key: 8, evicted: [7], convertMs: 1 } });
    await q;
    expect(bridge.hasEmbedding(7)).toBe(false);
    expect(bridge.hasEmbedding(8)).toBe(true);
  });

  it('runs one decode at a time; a newer prompt supersedes the one waiting', async () => {
    const w = new FakeWorker();
    const bridge = new DecoderBridge(w as unknown as Worker);
    const f1 = feeds();
    const a = bridge.decode(1, 4, 4, f1);
    const b = bridge.decode(1, 4, 4, feeds());
    const c = bridge.decode(1, 4, 4, feeds());
    expect(w.sent.length).toBe(1); // only the first is in the worker
    expect(w.sent[0]!.transfer).toContain(f1.point_coords.buffer);
    await expect(b).rejects.toBeInstanceOf(SupersededError);
    w.reply({ type: 'decode', id: w.sent[0]!.msg.id, ok: true, result: decodeResult() });
    await expect(a).resolves.toMatchObject({ height: 4, width: 4 });
    await tick();
    expect(w.sent.length).toBe(2); // then the newest
    w.reply({ type: 'decode', id: w.sent[1]!.msg.id, ok: true, result: decodeResult() });
    await expect(c).resolves.toBeTruthy();
  });

  it('holds an embedding load back while a decode runs or waits; decodes go first', async () => {
    const w = new FakeWorker();
    const bridge = new DecoderBridge(w as unknown as Worker);
    const a = bridge.decode(1, 4, 4, feeds());
    const load = bridge.loadEmbedding(2, new ArrayBuffer(8)); // a prefetch lands mid-decode
    const b = bridge.decode(1, 4, 4, feeds()); // and the next click comes meanwhile
    expect(w.sent.map((s) => s.msg.type)).toEqual(['decode']);
    w.reply({ type: 'decode', id: w.sent[0]!.msg.id, ok: true, result: decodeResult() });
    await a;
    await tick();
    expect(w.sent.map((s) => s.msg.type)).toEqual(['decode', 'decode']); // the click, not the load
    expect(bridge.hasEmbedding(2)).toBe(false);
    w.reply({ type: 'decode', id: w.sent[1]!.msg.id, ok: true, result: decodeResult() });
    await b;
    await tick();
    expect(w.sent.map((s) => s.msg.type)).toEqual(['decode', 'decode', 'loadEmbedding']);
    expect(w.sent[2]!.msg).toMatchObject({ key: 2 });
    // A decode that comes while the load is in the worker is sent at once (the worker runs
    // it right after the conversion); a second load waits for both.
    const c = bridge.decode(2, 4, 4, feeds());
    const load2 = bridge.loadEmbedding(3, new ArrayBuffer(8));
    expect(w.sent.map((s) => s.msg.type)).toEqual(['decode', 'decode', 'loadEmbedding', 'decode']);
    w.reply({ type: 'loadEmbedding', id: w.sent[2]!.msg.id, ok: true, result: { key: 2, evicted: [], convertMs: 5 } });
    await expect(load).resolves.toMatchObject({ key: 2, convertMs: 5 });
    expect(bridge.hasEmbedding(2)).toBe(true);
    expect(w.sent.length).toBe(4);
    w.reply({ type: 'decode', id: w.sent[3]!.msg.id, ok: true, result: decodeResult() });
    await expect(c).resolves.toBeTruthy();
    await tick();
    expect(w.sent[4]!.msg).toMatchObject({ type: 'loadEmbedding', key: 3 });
    w.reply({ type: 'loadEmbedding', id: w.sent[4]!.msg.id, ok: true, result: { key: 3, evicted: [], convertMs: 5 } });
    await load2;
    expect(bridge.hasEmbedding(3)).toBe(true);
  });

  it('fails everything pending when the worker crashes', async () => {
    const w = new FakeWorker();
    const bridge = new DecoderBridge(w as unknown as Worker);
    const a = bridge.decode(1, 4, 4, feeds());
    const b = bridge.decode(1, 4, 4, feeds());
    w.onerror?.({ message: 'boom', preventDefault() {} } as ErrorEvent);
    await expect(a).rejects.toThrow('decoder worker crashed: boom');
    await expect(b).rejects.toThrow('decoder worker crashed: boom');
  });
});
