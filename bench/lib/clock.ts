/**
 * Milliseconds (with fractions) on the machine's wall clock, advancing monotonically within a
 * process: every process of the bench reads the same clock, so a time written into a log by
 * the load generator can be subtracted from its arrival in another process (bench/watchers.ts).
 */
export const wallNow = (): number => performance.timeOrigin + performance.now()
