/**
 * The closed-loop feed of ab.ts and cluster.ts: POSTs of `batch` logs (1: to `…/log`, more: one
 * batch to `…/logs`), each sent when the previous of its loop is answered.
 */
export const JSON_HEADERS = { 'content-type': 'application/json' }
const METADATA = { host: 'bench-worker-1', attempt: 1, tags: ['bench', 'load'] }

/** Posts `batch` logs numbered from `seq` to a subtask's log URL; resolves true when they were stored (201). */
export async function postLogs(logUrl: string, batch: number, seq: number): Promise<boolean> {
  const logs = Array.from({ length: batch }, (_, i) => ({
    level: 'info',
    message: `bench#${seq + i}#${performance.now().toFixed(3)}# step output: processed batch of records, all checks passed`,
    metadata: METADATA,
  }))
  const res = await fetch(batch === 1 ? logUrl : `${logUrl}s`, {
    method: 'POST',
    headers: JSON_HEADERS,
    body: JSON.stringify(batch === 1 ? logs[0] : { logs }),
  })
  await res.arrayBuffer()
  return res.status === 201
}
