/**
 * Catch-up on its own, against a fake watcher and a fake history: what a new watcher receives
 * from replay and from the live events held meanwhile, in which order, in which batches, and
 * how it waits for a slow reader. The end-to-end suites (websocket, delivery-property) cover the
 * same through real sockets.
 */
import { describe, expect, test } from 'bun:test'
import type { HistoryQuery, Replay, StoredLog } from '../src/logs/backend'
import { REPLAY_PAGE, catchUp, type CatchUp, type Held } from '../src/logs/catch-up'
import { toLiveLog } from '../src/logs/frames'
import type { Watcher } from '../src/logs/watcher'
import { levelRank, type Level } from '../src/schemas/common'

const TASK = '0190a000-0000-7000-8000-000000000001'

const stored = (seq: number, level: Level = 'info'): StoredLog => ({
  id: `1000-${seq}`,
  level,
  body: `{"message":"m${seq}"}`,
})
const live = (seq: number, level: Level = 'info') => toLiveLog(stored(seq, level))

/**
 * A watcher that records what it is sent, batch by batch. `behindEvery` makes every n-th frame
 * report a reader behind; `drained` then waits until the test calls `drain()`.
 */
class FakeWatcher implements Watcher {
  /** Every event, in order: `subscribed:<recovered>`, `log:<id>`, `status:<data>`, `live`. */
  readonly events: string[] = []
  /** The events of each batch, in order. */
  readonly batches: string[][] = []
  frames = 0
  private inBatch: string[] | undefined
  private waiters: (() => void)[] = []

  constructor(
    readonly minLevel: Level = 'debug',
    private readonly behindEvery = Infinity,
  ) {}

  get waiting(): boolean {
    return this.waiters.length > 0
  }

  drain(): void {
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w()
  }

  private record(event: string): void {
    this.events.push(event)
    this.inBatch?.push(event)
  }

  subscribed(recovered: boolean | undefined): void {
    this.record(`subscribed:${recovered}`)
  }
  sendLog(log: { id: string }): boolean {
    this.record(`log:${log.id}`)
    return ++this.frames % this.behindEvery === 0
  }
  sendStatus(data: string): boolean {
    this.record(`status:${data}`)
    return ++this.frames % this.behindEvery === 0
  }
  drained(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve))
  }
  batch(send: () => void): void {
    this.inBatch = []
    send()
    this.batches.push(this.inBatch)
    this.inBatch = undefined
  }
  lost(): void {
    this.record('lost')
  }
  join(): void {
    this.record('live')
  }
  leave(): void {}
}

/** A history holding `logs` (ids 1000-0, 1000-1, ...), answering replays and reads as the stores do. */
function fakeHistory(logs: StoredLog[], recovered = true) {
  const calls: [string | undefined, number][] = []
  return {
    calls,
    async read(_taskId: string, query: HistoryQuery): Promise<StoredLog[]> {
      calls.push([`read ${query.order} ${query.minLevel}`, query.limit])
      const min = levelRank(query.minLevel ?? 'debug')
      return logs.filter((l) => levelRank(l.level) >= min).reverse().slice(0, query.limit)
    },
    async replay(_taskId: string, since: string | undefined, limit: number): Promise<Replay> {
      calls.push([since, limit])
      if (since === undefined) return { logs: logs.slice(Math.max(0, logs.length - limit)), recovered: true }
      const from = logs.findIndex((l) => Number(l.id.split('-')[1]) > Number(since.split('-')[1]))
      return { logs: from < 0 ? [] : logs.slice(from, from + limit), recovered }
    },
  }
}

const synced = { sync: () => Promise.resolve() }

function start(watcher: FakeWatcher, request: CatchUp['request'], held: Held[] = [], options: Partial<CatchUp> = {}): CatchUp {
  return {
    taskId: TASK,
    watcher,
    request,
    replayMax: 10_000,
    held,
    current: () => true,
    goLive: () => watcher.join(),
    ...options,
  }
}

const logsOf = (events: string[]) => events.filter((e) => e.startsWith('log:')).map((e) => e.slice(4))
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i)

describe('catch-up', () => {
  test('without replay: subscribed, then what was held meanwhile, then live in the same batch as the last held event', async () => {
    const w = new FakeWatcher()
    const held: Held[] = [live(0), { status: '{"s":1}' }, live(1)]
    await catchUp(fakeHistory([]), synced, start(w, {}, held))
    expect(w.events).toEqual(['subscribed:undefined', 'log:1000-0', 'status:{"s":1}', 'log:1000-1', 'live'])
    expect(w.batches.at(-1)!.at(-1)).toBe('live')
  })

  test('history=n replays the newest n logs at or above the watcher level (capped at replayMax), oldest first, without `recovered`', async () => {
    const logs = range(10).map((i) => stored(i, i % 2 ? 'warning' : 'debug'))
    const history = fakeHistory(logs)
    const w = new FakeWatcher('warning')
    await catchUp(history, synced, start(w, { history: 3 }))
    expect(history.calls).toEqual([['read desc warning', 3]])
    expect(w.events[0]).toBe('subscribed:undefined')
    expect(logsOf(w.events)).toEqual(['1000-5', '1000-7', '1000-9'])
    expect(w.events.at(-1)).toBe('live')

    const capped = new FakeWatcher('debug')
    await catchUp(history, synced, start(capped, { history: 8 }, [], { replayMax: 6 }))
    expect(logsOf(capped.events)).toEqual(range(6, 4).map((i) => `1000-${i}`))
  })

  test('since pages through history in order and reports recovered from the first page', async () => {
    const total = 2 * REPLAY_PAGE + 7
    const history = fakeHistory(range(total).map((i) => stored(i)), false)
    const w = new FakeWatcher()
    await catchUp(history, synced, start(w, { since: '1000-2' }))
    expect(w.events[0]).toBe('subscribed:false')
    expect(logsOf(w.events)).toEqual(range(total - 3, 3).map((i) => `1000-${i}`))
    expect(history.calls).toEqual([
      ['1000-2', REPLAY_PAGE],
      [`1000-${2 + REPLAY_PAGE}`, REPLAY_PAGE],
      [`1000-${2 + 2 * REPLAY_PAGE}`, REPLAY_PAGE],
    ])
  })

  test('held logs that replay already sent are dropped, newer ones and status changes go out in order', async () => {
    const history = fakeHistory(range(5).map((i) => stored(i)))
    const w = new FakeWatcher()
    // Logs 3 and 4 were held while history, which already had them, was read.
    const held: Held[] = [live(3), { status: 'a' }, live(4), live(5), { status: 'b' }, live(6)]
    await catchUp(history, synced, start(w, { since: '1000-1' }, held))
    expect(w.events).toEqual([
      'subscribed:true',
      'log:1000-2',
      'log:1000-3',
      'log:1000-4',
      'status:a',
      'log:1000-5',
      'status:b',
      'log:1000-6',
      'live',
    ])
  })

  test('logs the feed brings while it syncs count as held, and are not sent twice', async () => {
    const history = fakeHistory(range(4).map((i) => stored(i)))
    const w = new FakeWatcher()
    const held: Held[] = []
    // The feed delivers logs 2 and 3 (already in history) and 4 (new) before sync resolves.
    const feed = { sync: async () => void held.push(live(2), live(3), live(4)) }
    await catchUp(history, feed, start(w, { history: 10 }, held))
    expect(logsOf(w.events)).toEqual(['1000-0', '1000-1', '1000-2', '1000-3', '1000-4'])
  })

  test('a reader that falls behind is waited for: nothing more is sent until it drains', async () => {
    const history = fakeHistory(range(10).map((i) => stored(i)))
    const w = new FakeWatcher('debug', 3)
    const done = catchUp(history, synced, start(w, { history: 10 }))
    await Bun.sleep(5)
    // Behind after the third frame: that batch ends there and nothing else goes out.
    expect(logsOf(w.events)).toEqual(['1000-0', '1000-1', '1000-2'])
    expect(w.waiting).toBe(true)
    await Bun.sleep(5)
    expect(logsOf(w.events)).toHaveLength(3)
    for (let i = 0; i < 4; i++) {
      w.drain()
      await Bun.sleep(1)
    }
    await done
    expect(logsOf(w.events)).toEqual(range(10).map((i) => `1000-${i}`))
    expect(w.batches.slice(0, 3).map((b) => b.length)).toEqual([3, 3, 3])
    expect(w.events.at(-1)).toBe('live')
  })

  test('events held while the reader drains still go out before it goes live, the last one with it', async () => {
    const w = new FakeWatcher('debug', 2)
    const held: Held[] = [live(0), live(1), live(2)]
    const done = catchUp(fakeHistory([]), synced, start(w, {}, held))
    await Bun.sleep(1)
    expect(w.waiting).toBe(true)
    held.push({ status: 'done' })
    w.drain()
    await done
    expect(w.events).toEqual(['subscribed:undefined', 'log:1000-0', 'log:1000-1', 'log:1000-2', 'status:done', 'live'])
    expect(w.batches.at(-1)).toEqual(['log:1000-2', 'status:done', 'live'])
  })

  test('a watcher stopped while it drains receives nothing more and never goes live', async () => {
    const history = fakeHistory(range(6).map((i) => stored(i)))
    const w = new FakeWatcher('debug', 2)
    let current = true
    const done = catchUp(history, synced, start(w, { history: 6 }, [], { current: () => current }))
    await Bun.sleep(1)
    current = false
    w.drain()
    await done
    expect(logsOf(w.events)).toEqual(['1000-0', '1000-1'])
    expect(w.events).not.toContain('live')
  })

  test('a failing history read rejects, and the watcher got nothing', async () => {
    const w = new FakeWatcher()
    const down = () => Promise.reject(new Error('store down'))
    const failing = { replay: down, read: down }
    await expect(catchUp(failing, synced, start(w, { since: '1000-0' }))).rejects.toThrow('store down')
    await expect(catchUp(failing, synced, start(w, { history: 5 }))).rejects.toThrow('store down')
    expect(w.events).toEqual([])
  })
})
