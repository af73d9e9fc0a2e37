// Jobs side by side, a bounded number at once, stopping at the first failure.
import { runAll } from '../../../src/util/run-all';

describe('runAll', () => {
  test('runs every job, at most `width` at once', async () => {
    let running = 0;
    let most = 0;
    const done: number[] = [];
    const jobs = Array.from({ length: 10 }, (_, i) => async () => {
      most = Math.max(most, ++running);
      await new Promise(resolve => setTimeout(resolve, 5));
      running--;
      done.push(i);
    });
    await runAll(jobs, 3);
    expect(done.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(most).toBe(3);
  });

  test('the first failure is thrown, and no job starts after it', async () => {
    const started: number[] = [];
    const jobs = Array.from({ length: 10 }, (_, i) => async () => {
      started.push(i);
      await new Promise(resolve => setTimeout(resolve, 1));
      if (i === 2) throw new Error('job 2 failed');
    });
    await expect(runAll(jobs, 2)).rejects.toThrow('job 2 failed');
    expect(Math.max(...started)).toBeLessThan(5);
  });
});
