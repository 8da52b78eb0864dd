import { createApp } from './app'
import { ConfigError, loadConfig } from './config'
import { openStores } from './stores'

let config
try {
  config = loadConfig()
} catch (error) {
  if (!(error instanceof ConfigError)) throw error
  console.error(`tasklog: ${error.message}`)
  process.exit(1)
}

const stores = await openStores(config).catch((error: Error) => {
  console.error(`tasklog: cannot open stores: ${error.message}`)
  process.exit(1)
})
const { tasks, history, feed } = stores
const app = createApp({ config, ...stores }).listen({ hostname: config.host, port: config.port })
const shown = config.host === '0.0.0.0' ? 'localhost' : config.host
console.log(
  `tasklog listening on http://${shown}:${app.server!.port} · tasks: ${tasks.description} · history: ${history.description} · docs: /swagger`,
)

let stopping = false
async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  console.log(`tasklog: ${signal} received, finishing in-flight requests`)
  // Stop accepting, tell WebSocket clients to reconnect elsewhere or later (1012: they resume
  // with since), give in-flight requests up to 5 s (SSE streams would hold it forever), then
  // drop what remains and close the stores.
  const stopped = app.server?.stop(false)
  app.decorator.sockets.closeAll(1012, 'Server restarting: reconnect with since=<last id>')
  await Promise.race([stopped, Bun.sleep(5_000)])
  await app.server?.stop(true)
  await Promise.allSettled([tasks.close(), history.close(), feed.close()])
  process.exit(0)
}
process.on('SIGTERM', () => void shutdown('SIGTERM'))
process.on('SIGINT', () => void shutdown('SIGINT'))
// One failing request or connection must never take the process down.
process.on('unhandledRejection', (error) => console.error('tasklog: unhandled rejection:', error))
