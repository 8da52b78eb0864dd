/**
 * The hub on its own, over the memory backend, with fake watchers and a fake Bun server: which
 * watchers a task's logs reach and how (a native topic publish, or a call to a listener), the
 * counts it announces, and what an interrupted feed does. No sockets.
 */
import { testLog } from './support/logs'
import { afterEach, describe, expect, test } from 'bun:test'
import type { Server } from 'bun'
import { Hub } from '../src/logs/hub'
import { memoryBackend } from '../src/logs/memory'
import type { LiveDelivery, Watcher } from '../src/logs/watcher'
import type { Level } from '../src/schemas/common'

const TASK = '0190a000-0000-7000-8000-0000000000aa'
const SUBTASK = '0190a000-0000-7000-8000-0000000000bb'

const log = (level: Level, message: string) => testLog(TASK, SUBTASK, level, message)

/** A watcher of either kind: `topics` joins the task's native topic, otherwise it listens. */
class FakeWatcher implements Watcher {
  readonly received: string[] = []
  readonly topics: string[] = []
  lostReason: string | undefined

  constructor(
    readonly minLevel: Level,
    private readonly native: boolean,
  ) {}

  subscribed(recovered: boolean | undefined): void {
    this.received.push(`subscribed:${recovered}`)
  }
  sendLog(l: { data: string }): boolean {
    this.received.push(JSON.parse(l.data).message)
    return false
  }
  sendStatus(data: string): boolean {
    this.received.push(`status:${data}`)
    return false
  }
  drained(): Promise<void> {
    return Promise.resolve()
  }
  batch(send: () => void): void {
    send()
  }
  lost(reason: string): void {
    this.lostReason = reason
  }
  join(taskId: string, live: LiveDelivery): void {
    if (this.native) this.topics.push(live.topic(taskId, this.minLevel))
    else live.listen(taskId, this)
  }
  leave(taskId: string, live: LiveDelivery): void {
    if (this.native) this.topics.splice(this.topics.indexOf(live.topic(taskId, this.minLevel)), 1)
    else live.unlisten(taskId, this)
  }
}

/** A Bun server as the hub uses it: what was published, on which topic. */
function fakeServer() {
  const published: [string, string][] = []
  const server = { publish: (topic: string, data: string) => void published.push([topic, data]) } as unknown as Server<unknown>
  return { server, published }
}

let backends: ReturnType<typeof memoryBackend>[] = []
afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.close()))
})

function setUp() {
  const backend = memoryBackend({ ttlSeconds: 60, maxPerTask: 100 })
  backends.push(backend)
  const announced: number[][] = []
  const hub = new Hub({ ...backend, presence: { announce: (_t, atLevel) => void announced.push([...atLevel]) } }, { replayMax: 100 })
  const { server, published } = fakeServer()
  hub.attach(server)
  return { backend, hub, announced, published }
}

describe('Hub', () => {
  test('a listener receives the logs at or above its level; a topic subscriber gets one publish per log, on its level topic', async () => {
    const { backend, hub, published } = setUp()
    const listener = new FakeWatcher('warning', false)
    const socket = new FakeWatcher('info', true)
    await hub.watch(TASK, listener)
    await hub.watch(TASK, socket)
    hub.unwatch(TASK, listener)
    await hub.watch(TASK, listener)
    expect(socket.topics).toEqual([`${TASK}:info`])
    await backend.history.append(TASK, [log('debug', 'd'), log('info', 'i'), log('error', 'e')])
    expect(listener.received).toEqual(['subscribed:undefined', 'subscribed:undefined', 'e'])
    // Topics of levels nobody watches at are skipped; a topic carries whole frames.
    expect(published.map(([topic, frame]) => [topic, JSON.parse(frame).data.message])).toEqual([
      [`${TASK}:info`, 'i'],
      [`${TASK}:info`, 'e'],
      [`${TASK}:warning`, 'e'],
    ])
    expect(socket.received).toEqual(['subscribed:undefined'])
    expect(hub.subscriberCount(TASK)).toBe(2)
    expect(hub.subscriberCount(TASK, 'info')).toBe(1)
    expect(hub.recipients(TASK, [{ level: 'debug' }, { level: 'info' }], 3)).toBe(4)
  })

  test('unwatch stops delivery both ways and the counts announced fall back to zero', async () => {
    const { backend, hub, announced, published } = setUp()
    const listener = new FakeWatcher('debug', false)
    const socket = new FakeWatcher('error', true)
    await hub.watch(TASK, listener)
    await hub.watch(TASK, socket)
    expect(announced.at(-1)).toEqual([1, 0, 0, 1])
    hub.unwatch(TASK, listener)
    hub.unwatch(TASK, socket)
    expect(socket.topics).toEqual([])
    expect(announced.at(-1)).toEqual([0, 0, 0, 0])
    await backend.history.append(TASK, [log('error', 'after')])
    expect(listener.received).toEqual(['subscribed:undefined'])
    expect(published).toEqual([])
    expect(hub.subscriptions).toBe(0)
  })

  test('a watcher resuming with since gets what it missed, then live logs, each once', async () => {
    const { backend, hub } = setUp()
    const { firstId } = await backend.history.append(TASK, [log('info', 'a'), log('info', 'b')])
    const w = new FakeWatcher('debug', false)
    await hub.watch(TASK, w, { since: firstId })
    await backend.history.append(TASK, [log('info', 'c')])
    expect(w.received).toEqual(['subscribed:true', 'b', 'c'])
  })

  test('status changes reach every subscriber, whatever its level', async () => {
    const { hub, published } = setUp()
    const w = new FakeWatcher('error', false)
    const socket = new FakeWatcher('error', true)
    await hub.watch(TASK, w)
    await hub.watch(TASK, socket)
    hub.publishStatus(
      { subtask_id: SUBTASK, task_id: TASK, status: 'completed', worker_name: null } as never,
      'completed',
    )
    expect(w.received[1]).toStartWith('status:')
    expect(JSON.parse(w.received[1]!.slice(7))).toMatchObject({ subtask_id: SUBTASK, task_status: 'completed' })
    expect(published.map(([topic]) => topic)).toEqual(['debug', 'info', 'warning', 'error'].map((l) => `${TASK}:${l}`))
  })

  test('an interrupted feed stops the watchers it holds and tells the app, which closes its sockets', async () => {
    const { backend, hub } = setUp()
    const w = new FakeWatcher('debug', false)
    await hub.watch(TASK, w)
    const reasons: string[] = []
    hub.onInterrupted((reason) => reasons.push(reason))
    // The feed's listener is the hub: reach it the way a dropped Redis connection does.
    const listeners = (backend.feed as unknown as { listeners: { interrupted(): void }[] }).listeners
    for (const l of listeners) l.interrupted()
    expect(w.lostReason).toContain('since=')
    expect(reasons).toHaveLength(1)
    expect(hub.interruptions).toBe(1)
  })
})
