// The first pass of a periodic task may wait for a promise (the daemon: until its API serves), so
// that work guarding nothing served does not compete with the start-up.
import { describe, expect, it } from 'vitest';
import { PeriodicTask } from './periodic.ts';

class Counting extends PeriodicTask<number> {
  passes = 0;
  protected async pass(): Promise<number[]> {
    this.passes++;
    return [this.passes];
  }
  protected failed(): void {}
  begin(after?: PromiseLike<unknown>): this {
    return this.startEvery(3_600_000, after);
  }
}

const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe('PeriodicTask', () => {
  it('without `after`, the first pass runs soon after start', async () => {
    const t = new Counting().begin();
    await turns(5);
    expect(t.passes).toBe(1);
    await t.close();
  });

  it('with `after`, no pass before it resolves, one soon after', async () => {
    let go!: () => void;
    const t = new Counting().begin(new Promise<void>((r) => (go = r)));
    await turns(20);
    expect(t.passes).toBe(0);
    go();
    await turns(5);
    expect(t.passes).toBe(1);
    await t.close();
  });

  it('never starts if `after` rejects, or if closed before it resolves', async () => {
    const rejected = new Counting().begin(Promise.reject(new Error('start-up failed')));
    let go!: () => void;
    const closed = new Counting().begin(new Promise<void>((r) => (go = r)));
    await closed.close();
    go();
    await turns(20);
    expect(rejected.passes).toBe(0);
    expect(closed.passes).toBe(0);
    await rejected.close();
  });
});
