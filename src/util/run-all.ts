/** Runs jobs `width` at a time; the first failure stops the rest from starting and is thrown. */
export async function runAll(jobs: Array<() => Promise<void>>, width: number): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < jobs.length) {
      const job = jobs[next++];
      try {
        await job();
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, jobs.length) }, worker));
  if (failure) throw failure.error;
}
