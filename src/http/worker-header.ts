import { Elysia } from 'elysia'

/** In a supervisor's worker, `X-Tasklog-Worker: <n>` on every response says which process answered. */
export function workerHeader(worker: number | undefined) {
  const plugin = new Elysia({ name: 'worker-header' })
  if (worker === undefined) return plugin
  const value = String(worker)
  return plugin.onRequest(({ set }) => {
    set.headers['x-tasklog-worker'] = value
  })
}
