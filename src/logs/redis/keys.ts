/**
 * Every Redis key and channel name of the Redis engine. A task's names share its hash tag
 * `{<task_id>}` (literal braces), so that in a Redis Cluster they land in one slot and one
 * script can touch them all; a key shared by tasks has a copy in each slot.
 */
import { keySlot, slotTag } from './slots'

/** The stream of a task's logs, and also the name of its pub/sub channel (keys and channels are separate namespaces). */
export const logKey = (taskId: string): string => `logs:{${taskId}}`

/** The id of the newest entry of a task's stream, kept beside it by the append script. */
export const newestIdKey = (taskId: string): string => `logs:{${taskId}}:newest`

/** The hash of a task's announced subscriber counts, one field per instance (presence.ts). */
export const subscribersKey = (taskId: string): string => `logs:{${taskId}}:subscribers`

/** The last archived id of a task (archive-source.ts). */
export const archiveCursorKey = (taskId: string): string => `logs:{${taskId}}:archived`

/** Which instance archives a task now, with a lease expiry (archive-source.ts). */
export const archiveLeaseKey = (taskId: string): string => `logs:{${taskId}}:archiving`

/** The set of tasks with logs to archive on a single Redis (archivePendingKey). */
export const ARCHIVE_PENDING_KEY = 'logs:archive:pending'

/**
 * The tasks with logs not archived yet, scored by the oldest such log's ms; written by the
 * append script when the archive is on. A key shared by tasks, which on a cluster has a copy in
 * each slot (`logs:archive:pending:{<tag>}`, a tag whose slot is the task's: slots.ts), so that a
 * script writes it with the task's keys and resharding moves a task's entry with them.
 */
export const archivePendingKey = (taskId: string, cluster: boolean): string =>
  cluster ? archivePendingCopy(keySlot(logKey(taskId))) : ARCHIVE_PENDING_KEY

/** The copy of archivePendingKey in `slot`, on a cluster. */
export const archivePendingCopy = (slot: number): string => `${ARCHIVE_PENDING_KEY}:{${slotTag(slot)}}`

/** The task of a channel named by `logKey`. */
export const taskOfChannel = (channel: string): string => channel.slice(6, -1)

/**
 * The record of an idempotency key used on a task's appends: the request's fingerprint and the
 * first id it answered. Only the first `{` and `}` form the hash tag, so the key's own braces do not move it.
 */
export const idempotencyKey = (taskId: string, key: string): string => `logs:{${taskId}}:idem:${key}`
