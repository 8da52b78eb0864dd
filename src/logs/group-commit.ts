/**
 * Group commit: appends to one task go to the store as ONE append while they gather. A remote
 * store's append costs mostly per call (a round trip, a script run, a publish), so concurrent
 * single-log requests for one task cost it little more than one.
 *
 * - A group gathers for as long as the task has an append of this instance in flight, and is
 *   sent when that append is answered; with none in flight, it gathers what arrives in the same
 *   event-loop turn and is sent by setImmediate (no timer). So a lone request never waits, and
 *   under load each task has one append in flight carrying whatever arrived during the one
 *   before: a request waits at most one store round trip longer, and the appends, their
 *   replies and their published messages are as few as the load allows. When the append in
 *   flight fails for want of the store, the group behind it is refused unsent.
 * - The store gives an append's logs consecutive ids (HistoryStore.append), so each request's
 *   first id is the group's advanced by the logs of the requests before it (`logIdAfter`). Within
 *   a group requests keep their arrival order, and each one's logs stay contiguous.
 * - A group holds requests whose logs' highest level is the same: the subscribers elsewhere the
 *   store counts (those accepting one of the logs) are then each request's own. A request of
 *   another level, or one that would take the group past GROUP_LOGS logs or the characters one
 *   request may append, sends the group at once and starts the next.
 * - Only small appends are grouped (at most GROUP_LOGS logs together): group commit pays where
 *   an append's per-call costs dominate. A large append has spread them already, and merging
 *   large ones makes the command, its reply and the published message larger than any one
 *   request's, which costs more per byte to read than it saves (bench/README.md). A larger
 *   request goes alone, after the task's open group, keeping their order.
 * - An append with an idempotency key goes alone: its record answers for its request only.
 * - All or nothing, as one append is: a store error rejects every request of the group. Over
 *   the rate limit, the combined append stores nothing, and its requests are sent again one by
 *   one in arrival order, so that each gets what it would have got alone.
 */
import { logIdAfter } from '../../clients/ts/src/log-id'
import { topRank } from '../schemas/common'
import { RateLimitedError, StoreUnavailableError } from '../store-errors'
import type { AppendOptions, Appended, HistoryQuery, HistoryStore, Replay, StoredLog } from './backend'
import type { EncodedLog } from './encode'

/** The most logs a group gathers: a few dozen single-log requests, where grouping pays. */
const GROUP_LOGS = 64

/** The largest group: what one request may append at most (MAX_BATCH logs, MAX_BODY_BYTES). */
export interface GroupBound {
  logs: number
  /** Characters of the logs' bodies. */
  chars: number
}

interface Request {
  logs: EncodedLog[]
  resolve(appended: Appended): void
  reject(error: unknown): void
}

interface Group {
  taskId: string
  /** The highest level rank of its logs. */
  top: number
  requests: Request[]
  logs: number
  chars: number
}

export class GroupCommit implements HistoryStore {
  readonly description: string
  /** The open group of each task, in the order they opened. */
  readonly #open = new Map<string, Group>()
  /** Appends in flight per task (tasks with none are absent). */
  readonly #inFlight = new Map<string, number>()
  #flushing = false
  /** The most logs of a group: the bound, up to GROUP_LOGS. */
  readonly #maxLogs: number

  constructor(
    private readonly store: HistoryStore,
    private readonly bound: GroupBound,
  ) {
    this.description = store.description
    this.#maxLogs = Math.min(bound.logs, GROUP_LOGS)
  }

  append(taskId: string, logs: EncodedLog[], options?: AppendOptions): Promise<Appended> {
    if (options?.idempotency || logs.length === 0 || logs.length >= this.#maxLogs) {
      const open = this.#close(taskId)
      if (open) this.#send(open)
      return this.#alone(taskId, this.store.append(taskId, logs, options))
    }
    const top = topRank(logs)
    let chars = 0
    for (const log of logs) chars += log.body.length
    let group = this.#open.get(taskId)
    if (group && (group.top !== top || group.logs + logs.length > this.#maxLogs || group.chars + chars > this.bound.chars)) {
      this.#open.delete(taskId)
      this.#send(group)
      group = undefined
    }
    if (!group) {
      group = { taskId, top, requests: [], logs: 0, chars: 0 }
      this.#open.set(taskId, group)
      if (!this.#flushing) {
        this.#flushing = true
        setImmediate(this.#flush)
      }
    }
    group.logs += logs.length
    group.chars += chars
    const requests = group.requests
    return new Promise((resolve, reject) => requests.push({ logs, resolve, reject }))
  }

  read(taskId: string, query: HistoryQuery): Promise<StoredLog[]> {
    return this.store.read(taskId, query)
  }

  replay(taskId: string, since: string | undefined, limit: number): Promise<Replay> {
    return this.store.replay(taskId, since, limit)
  }

  ping(): Promise<void> {
    return this.store.ping()
  }

  usedMemory(): Promise<number> {
    return this.store.usedMemory()
  }

  /** Sends the open groups of the tasks without an append in flight; the others go when theirs is answered. */
  readonly #flush = (): void => {
    this.#flushing = false
    for (const [taskId, group] of this.#open) {
      if (this.#inFlight.has(taskId)) continue
      this.#open.delete(taskId)
      this.#send(group)
    }
  }

  /** The task's open group, which is then no longer open. */
  #close(taskId: string): Group | undefined {
    const group = this.#open.get(taskId)
    if (group) this.#open.delete(taskId)
    return group
  }

  /** `append` counted in flight for its task until it settles. */
  #alone<T>(taskId: string, append: Promise<T>): Promise<T> {
    this.#begin(taskId)
    append.then(
      () => this.#end(taskId),
      (error: unknown) => this.#end(taskId, error),
    )
    return append
  }

  #begin(taskId: string): void {
    this.#inFlight.set(taskId, (this.#inFlight.get(taskId) ?? 0) + 1)
  }

  /**
   * An append of the task settled: with none left in flight, the group that gathered meanwhile
   * goes. When it failed for want of the store, the group is refused unsent (nothing of it was
   * stored): a request never waits for more than one deadline of the store.
   */
  #end(taskId: string, error?: unknown): void {
    const left = this.#inFlight.get(taskId)! - 1
    if (left > 0) {
      this.#inFlight.set(taskId, left)
      return
    }
    this.#inFlight.delete(taskId)
    const open = this.#close(taskId)
    if (!open) return
    if (error instanceof StoreUnavailableError) {
      const refused = new StoreUnavailableError(`Log history at ${this.description}`, error)
      for (const request of open.requests) request.reject(refused)
    } else this.#send(open)
  }

  #send({ taskId, requests }: Group): void {
    this.#begin(taskId)
    let failed: unknown
    let logs = requests[0]!.logs
    if (requests.length > 1) {
      logs = []
      for (const request of requests) for (const log of request.logs) logs.push(log)
    }
    this.store
      .append(taskId, logs)
      .then(
        ({ firstId, subscribersElsewhere }) => {
          let offset = 0
          for (const request of requests) {
            request.resolve({ firstId: offset === 0 ? firstId : logIdAfter(firstId, offset), subscribersElsewhere })
            offset += request.logs.length
          }
        },
        (error: unknown) => {
          failed = error
          // The store receives them in arrival order, as it would have without the group, and
          // before the group gathered meanwhile.
          if (error instanceof RateLimitedError && requests.length > 1) {
            for (const request of requests) this.#alone(taskId, this.store.append(taskId, request.logs)).then(request.resolve, request.reject)
          } else for (const request of requests) request.reject(error)
        },
      )
      .then(() => this.#end(taskId, failed))
  }
}
