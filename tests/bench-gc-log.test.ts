import { describe, expect, test } from 'bun:test'
import { gcPauses } from '../bench/lib/gc-log'

// Lines from a real server's log (BUN_JSC_logGC=1, Bun 1.4.5): an Eden collection in one
// increment, then a full collection in three, with the lines JavaScriptCore writes between.
const LOG = `[GC<0x246c4e18118>: starting 0.033640ms]
Requesting GC because bytes allocated this cycle: 8397554 exceed bytes allowed: 8388608 normal bytes: 8307158 oversized bytes: 90396 last oversized: 90396
[GC<0x246c4e18118>: START M 16806kb => EdenCollection, a=0kb hf=0.000 mu=0.600 v=0kb (C:0 M:0 P1:0) o=22 b=191 i#1:N<CsMsrShDMsm(199)SrbBcs> 3+199 v=23kb (C:23 M:0 P1:0) o=22 b=191 i#2:N<WsOJw>Pbc 4+0 v=23kb (C:23 M:0 P1:0) o=22 b=191 i#3:P<JwOWsMsm(0)ShCsBcsMsrSrbDCbDomo>Pbc => 11554kb, p=1.282437ms (max 2.273090), cycle 1.251331ms END]
GC END!
[GC<0x246c4e18118>: epilogue 0.022734ms]
[GC<0x246c4e18118>: START M 11148kb => FullCollection, a=0kb hf=0.000 mu=0.600 v=0kb (C:0 M:0 P1:0) o=0 b=1165 i#1:N<CsMsrShDMsm(0)SrbBcs> 95+0 p=1.120786ms (max 1.133566)...]
[GC<0x246c4e18118>: M a=20kb hf=0.002 mu=0.599 v=2954kb (C:741 M:0 P1:2213) o=9 b=28 0+21 p=0.687132ms (max 1.133566)...]
[GC<0x246c4e18118>: M a=20kb hf=0.002 mu=0.599 v=6367kb (C:1620 M:0 P1:4747) o=14 b=5 i#2:N<WsOJw>Pbc 4+26 v=6369kb (C:1621 M:0 P1:4747) o=14 b=5 i#5:P<Msm(0)SrbBcsShCsMsrDCbDomoOWsJw>Pbc => 9091kb, p=1.502624ms (max 1.502624), cycle 5.943728ms END]
GC END!
`

describe('bench GC log', () => {
  test("a collection's pause is the sum of its increments' pauses, by kind", () => {
    const gc = gcPauses(LOG)
    expect(gc.eden).toBe(1)
    expect(gc.edenP50).toBeCloseTo(1.282437, 6)
    expect(gc.edenMax).toBeCloseTo(1.282437, 6)
    expect(gc.full).toBe(1)
    // Not its 5.9 ms cycle: the collector marked concurrently between the pauses.
    expect(gc.fullMax).toBeCloseTo(1.120786 + 0.687132 + 1.502624, 6)
  })

  test('a collection still running when the server stopped is not counted', () => {
    const cut = LOG.slice(0, LOG.indexOf('[GC<0x246c4e18118>: M a=20kb hf=0.002 mu=0.599 v=6367kb'))
    expect(gcPauses(cut)).toMatchObject({ eden: 1, full: 0 })
  })

  test('a log without collections gives zeros', () => {
    expect(gcPauses('tasklog listening on http://localhost:8000\n')).toEqual({
      eden: 0,
      edenP50: 0,
      edenMax: 0,
      full: 0,
      fullMax: 0,
    })
  })
})
