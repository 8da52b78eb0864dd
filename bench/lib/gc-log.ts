/**
 * Pauses from JavaScriptCore's GC log (`BUN_JSC_logGC=1`, written to stderr). A collection
 * starts with a line `START M <kb> => EdenCollection` (or `FullCollection`); each of its
 * increments reports the time the program stood still as ` p=<ms>ms`, and its last line ends
 * `cycle <ms>ms END]`. A collection's pause is the sum of its increments'.
 */
import { median } from './histogram'

export interface GcPauses {
  eden: number
  /** Median and longest pause of an Eden (young-object) collection, ms. */
  edenP50: number
  edenMax: number
  full: number
  fullMax: number
}

export function gcPauses(log: string): GcPauses {
  const eden: number[] = []
  const full: number[] = []
  let current: { pauses: number[]; kind: 'eden' | 'full' } | undefined
  for (const line of log.split('\n')) {
    const start = /START M \d+kb => (Eden|Full)Collection/.exec(line)
    if (start) current = { pauses: [], kind: start[1] === 'Eden' ? 'eden' : 'full' }
    if (!current) continue
    for (const m of line.matchAll(/ p=([\d.]+)ms/g)) current.pauses.push(Number(m[1]))
    if (/cycle [\d.]+ms END\]/.test(line)) {
      ;(current.kind === 'eden' ? eden : full).push(current.pauses.reduce((a, b) => a + b, 0))
      current = undefined
    }
  }
  return {
    eden: eden.length,
    edenP50: eden.length ? median(eden) : 0,
    edenMax: Math.max(0, ...eden),
    full: full.length,
    fullMax: Math.max(0, ...full),
  }
}
