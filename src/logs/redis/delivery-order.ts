/**
 * Delivery in id order when a task's logs reach this instance two ways on ONE connection: the
 * messages published on the task's channel (other instances' appends), and the replies to this
 * instance's own appends of the task that published nothing (append.lua: this connection was
 * the channel's only subscriber, so the logs are delivered from the reply, see feed.ts).
 *
 * Redis answers a connection in the order it runs the commands, so the connection brings every
 * message and reply in id order. node-redis, though, hands a channel message over as it reads
 * it, and a reply only later, through its promise: a message read after a reply could overtake
 * it. So while a task has calls sent on the connection and not yet answered ("slots"), its
 * messages are held; each answer, taken in the order the calls were sent, releases the held
 * messages older than its logs, then its own logs. A task's messages arrive in id order, so its
 * held ones are an ordered queue, released from the front. With no slot left, all go out.
 */
import { compareLogIds } from '../../../clients/ts/src/log-id'
import type { FeedListener, StoredLog } from '../backend'

/** What an answered call releases. */
export interface Answer {
  /** The newest log id the call saw: held messages up to it go out (the call ran after them). */
  through?: string
  /** Logs the call stored and published nothing for: delivered after the held messages before them. */
  logs?: StoredLog[]
}

interface Slot {
  answer: Answer | undefined
  settled: boolean
}

type Held = StoredLog[] | { status: string }

interface TaskOrder {
  slots: Slot[]
  held: Held[]
}

const firstId = (event: Held): string | undefined => ('status' in event ? undefined : event[0]?.id)

export class DeliveryOrder {
  readonly #tasks = new Map<string, TaskOrder>()

  constructor(private readonly listener: () => FeedListener | undefined) {}

  /**
   * A call about the task sent on the connection: the task's messages are held until it and
   * every call sent before it are answered. `settle` takes its answer (undefined: it released
   * nothing, e.g. it failed).
   */
  expect(taskId: string): (answer: Answer | undefined) => void {
    let order = this.#tasks.get(taskId)
    if (!order) this.#tasks.set(taskId, (order = { slots: [], held: [] }))
    const slot: Slot = { answer: undefined, settled: false }
    order.slots.push(slot)
    return (answer) => {
      if (slot.settled) return
      slot.settled = true
      slot.answer = answer
      this.#release(taskId, order)
    }
  }

  /** A message read from the task's channel. */
  published(taskId: string, event: StoredLog[] | { status: string }): void {
    const order = this.#tasks.get(taskId)
    if (order) order.held.push(event)
    else this.#deliver(taskId, event)
  }

  /** The connection is gone: what it held is void (its watchers resume from history). */
  clear(): void {
    this.#tasks.clear()
  }

  #release(taskId: string, order: TaskOrder): void {
    // Cleared since: a lost connection's answers deliver nothing.
    if (this.#tasks.get(taskId) !== order) return
    // Several calls may have been answered meanwhile: each in the order they were sent.
    while (order.slots[0]?.settled) {
      const { answer } = order.slots.shift()!
      const first = answer?.logs?.[0]?.id
      if (first !== undefined) this.#releaseWhile(taskId, order, (id) => compareLogIds(id, first) < 0)
      if (answer?.logs?.length) this.#deliver(taskId, answer.logs)
      const through = answer?.through
      if (through !== undefined) this.#releaseWhile(taskId, order, (id) => compareLogIds(id, through) <= 0)
    }
    if (order.slots.length > 0) return
    this.#tasks.delete(taskId)
    for (const event of order.held) this.#deliver(taskId, event)
  }

  /** Sends held messages from the front while theirs are ids `before` accepts (status changes with them). */
  #releaseWhile(taskId: string, order: TaskOrder, before: (id: string) => boolean): void {
    const { held } = order
    let n = 0
    for (; n < held.length; n++) {
      const id = firstId(held[n]!)
      if (id !== undefined && !before(id)) break
    }
    for (const event of held.splice(0, n)) this.#deliver(taskId, event)
  }

  #deliver(taskId: string, event: StoredLog[] | { status: string }): void {
    const listener = this.listener()
    if (!listener) return
    if ('status' in event) listener.status(taskId, event.status)
    else listener.logs(taskId, event)
  }
}
