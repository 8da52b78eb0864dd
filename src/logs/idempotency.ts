/**
 * Idempotent ingest: a client names each request with an `Idempotency-Key` and repeats it on
 * every retry; the history store records the key with the append it made (AppendOptions), so a
 * retry of an append that was applied stores nothing and answers what the first one answered.
 */
import type { LogRequest } from '../schemas/log'

/**
 * What a retry must repeat for its key to replay: the subtask and each log's level, message,
 * metadata and timestamp as sent, as a SHA-256 in base64 (44 characters) (a timestamp the server fills in differs between attempts, and a
 * worker's name may change between them). Unknown fields, which are not stored, do not count.
 */
export function requestFingerprint(subtaskId: string, requests: LogRequest[]): string {
  const parts = requests.map((r) => [r.level, r.message, r.metadata ?? null, r.timestamp ?? null])
  return new Bun.CryptoHasher('sha256').update(JSON.stringify([subtaskId, parts])).digest('base64')
}
