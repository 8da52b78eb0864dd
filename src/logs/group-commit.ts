/**
 * Group commit: appends to one task that arrive in the same event-loop turn go to the store as
 * ONE append, flushed by setImmediate (no timer: nothing waits for a call in flight). A remote
 * store's append costs mostly per call (a round trip, a script run, a publish), so concurrent
 * single-log requests for one task cost it little more than one.
 *
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
import { RateLimitedError } from '../store-errors'
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
      const open = this.#open.get(taskId)
      if (open) {
        this.#open.delete(taskId)
        this.#send(open)
      }
      return this.store.append(taskId, logs, options)
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

  readonly #flush = (): void => {
    this.#flushing = false
    for (const group of this.#open.values()) this.#send(group)
    this.#open.clear()
  }

  #send({ taskId, requests }: Group): void {
    if (requests.length === 1) {
      const only = requests[0]!
      this.store.append(taskId, only.logs).then(only.resolve, only.reject)
      return
    }
    const logs: EncodedLog[] = []
    for (const request of requests) for (const log of request.logs) logs.push(log)
    this.store.append(taskId, logs).then(
      ({ firstId, subscribersElsewhere }) => {
        let offset = 0
        for (const request of requests) {
          request.resolve({ firstId: logIdAfter(firstId, offset), subscribersElsewhere })
          offset += request.logs.length
        }
      },
      (error: unknown) => {
        // The store receives them in arrival order, as it would have without the group.
        if (error instanceof RateLimitedError) {
          for (const request of requests) this.store.append(taskId, request.logs).then(request.resolve, request.reject)
        } else for (const request of requests) request.reject(error)
      },
    )
  }
}
