/**
 * tasklog's whole app (memory stores) started inside another process, warmed with requests
 * over loopback so that its hot code is compiled, then left idle. The baseline loads it with
 * `bun run bench --floor-with-app` (BENCH_FLOOR_WITH_APP=1): the floor then holds tasklog's
 * code without running it on the measured path, which shows what merely having that code costs
 * (bench/README.md: every garbage collection pauses longer).
 */
import { createApp } from '../../src/app'
import { TasklogApi } from '../../clients/ts/src'
import { loadConfig } from '../../src/config'
import { openStores } from '../../src/stores'

const WARM_UP_REQUESTS = 2000

export async function startIdleApp(): Promise<void> {
  const config = loadConfig({ DATABASE_URL: 'sqlite://:memory:' })
  const app = createApp({ config, ...(await openStores(config)) }).listen({ hostname: '127.0.0.1', port: 0 })
  const base = `http://127.0.0.1:${app.server!.port}`
  const headers = { 'content-type': 'application/json' }
  const task = await new TasklogApi(base).createTask('idle')
  const ws = new WebSocket(`${base.replace('http', 'ws')}/api/v1/ws/tasks/${task.task_id}/logs`)
  await new Promise((resolve, reject) => {
    ws.onopen = resolve
    ws.onerror = reject
  })
  const log = JSON.stringify({ level: 'info', message: 'warming up', metadata: { step: 1 } })
  for (let i = 0; i < WARM_UP_REQUESTS; i++) {
    const res = await fetch(`${base}/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/log`, { method: 'POST', headers, body: log })
    if (res.status !== 201) throw new Error(`idle app: POST /log answered ${res.status}`)
    await res.arrayBuffer()
  }
  await (await fetch(`${base}/swagger/json`)).arrayBuffer()
}
