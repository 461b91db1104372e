import { describe, expect, it } from 'vitest';
import { SupersededError as BridgeSuperseded } from '../src/decoder/bridge';
import { LatestWinsSlot, SupersededError } from '../src/lib/latestWins';

/** A job runner whose results the test releases by hand. */
function deferredRunner() {
  const started: number[] = [];
  const release: ((v: string) => void)[] = [];
  const fail: ((e: Error) => void)[] = [];
  const run = (job: number): Promise<string> =>
    new Promise<string>((resolve, reject) => {
      started.push(job);
      release.push(resolve);
      fail.push(reject);
    });
  return { started, release, fail, run };
}

/** The owner loop both decoders use: one job at a time, then pump again. */
function owner(slot: LatestWinsSlot<number, string>, run: (j: number) => Promise<string>) {
  let running = false;
  const pump = (): void => {
    if (running || !slot.hasWaiting) return;
    running = true;
    slot.runNext(run, () => {
      running = false;
      pump();
    });
  };
  return (job: number): Promise<string> => {
    const p = slot.offer(job);
    pump();
    return p;
  };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

describe('LatestWinsSlot', () => {
  it('runs the first job at once, keeps only the newest of a burst, and runs it next', async () => {
    const slot = new LatestWinsSlot<number, string>();
    const r = deferredRunner();
    const submit = owner(slot, r.run);
    const first = submit(1);
    const second = submit(2);
    const third = submit(3);
    expect(r.started).toEqual([1]);
    await expect(second).rejects.toBeInstanceOf(SupersededError);
    r.release[0]!('one');
    await expect(first).resolves.toBe('one');
    await settle();
    expect(r.started).toEqual([1, 3]); // 2 never ran
    r.release[1]!('three');
    await expect(third).resolves.toBe('three');
    expect(slot.hasWaiting).toBe(false);
  });

  it('a failed job rejects only its own caller and the next one still runs', async () => {
    const slot = new LatestWinsSlot<number, string>();
    const r = deferredRunner();
    const submit = owner(slot, r.run);
    const first = submit(1);
    const second = submit(2);
    r.fail[0]!(new Error('worker said no'));
    await expect(first).rejects.toThrow('worker said no');
    await settle();
    expect(r.started).toEqual([1, 2]);
    r.release[1]!('two');
    await expect(second).resolves.toBe('two');
  });

  it('a runner that throws synchronously rejects the job and leaves the owner usable', async () => {
    const slot = new LatestWinsSlot<number, string>();
    let calls = 0;
    const submit = owner(slot, (job) => {
      calls += 1;
      if (job === 1) throw new Error('could not post');
      return Promise.resolve(`ok ${job}`);
    });
    await expect(submit(1)).rejects.toThrow('could not post');
    await settle();
    await expect(submit(2)).resolves.toBe('ok 2');
    expect(calls).toBe(2);
  });

  it('fail() rejects the waiting job with the given error; runNext with none waiting does nothing', async () => {
    const slot = new LatestWinsSlot<number, string>();
    const waiting = slot.offer(7);
    slot.fail(new Error('terminated'));
    await expect(waiting).rejects.toThrow('terminated');
    expect(slot.runNext(() => Promise.resolve('x'), () => undefined)).toBe(false);
  });

  it('the bridge re-exports the same SupersededError class', () => {
    expect(BridgeSuperseded).toBe(SupersededError);
  });
});
