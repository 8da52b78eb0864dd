import { isIP } from 'node:net'
import { createApp } from './app'
import { ConfigError, loadConfig } from './config'
import { createLogger } from './logger'
import { closeStores, openStores } from './stores'
import { LISTENING, supervise } from './supervisor'
import { tokenCommand } from './auth/token-command'

// A failure to start is one plain line on stderr, exit code 1: it is read by whoever started the
// process, and a bad configuration has no logger yet. Everything after start-up goes through
// the logger.
let config
try {
  config = loadConfig(process.env, Bun.argv.slice(2))
} catch (error) {
  if (!(error instanceof ConfigError)) throw error
  console.error(`tasklog: ${error.message}`)
  process.exit(1)
}
if (process.argv[2] === 'token') process.exit(await tokenCommand(process.argv.slice(3), config.authSecret))
// More than one worker: this process supervises them (src/supervisor.ts) and never gets past here.
if (config.workers > 1 && config.worker === undefined) await supervise(config)
const logger = createLogger({ level: config.logLevel, format: config.logFormat, worker: config.worker })

/** What the start-up line says of access control. */
const AUTH_LINE = {
  token: 'auth: token (AUTH_SECRET)',
  local: 'auth: local (loopback clients only; set AUTH_SECRET for tokens)',
  open: 'auth: open (WARNING: anyone who can reach this port can read and write everything)',
}

/** Says what to change for the failures an operator can fix; Bun's own message otherwise. */
function listenFailure({ code, message }: ErrnoException, host: string): string {
  if (code === 'EADDRINUSE') return 'the port is already in use; set PORT to a free port'
  // A well-formed name that does not resolve comes back from Bun as EINVAL, not ENOTFOUND.
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EINVAL') {
    return `${host} is not, or does not resolve to, an address of this machine; set HOST`
  }
  return message
}

const stores = await openStores(config, logger).catch((error: Error) => {
  console.error(`tasklog: cannot open stores: ${error.message}`)
  process.exit(1)
})
const { tasks, logs } = stores
const app = createApp({ config, tasks, logs, archiver: stores.archiver, logger })
const address = isIP(config.host) === 6 ? `[${config.host}]` : config.host
try {
  app.listen({ hostname: config.host, port: config.port })
} catch (error) {
  console.error(`tasklog: cannot listen on ${address}:${config.port}: ${listenFailure(error as ErrnoException, config.host)}`)
  await closeStores(stores)
  process.exit(1)
}
const shown = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : address
logger.info(
  `tasklog listening on http://${shown}:${app.server!.port} · tasks: ${tasks.description} · history: ${logs.history.description} · ${AUTH_LINE[config.authMode]} · docs: /swagger`,
)
// A worker tells its supervisor it serves, and stops with it.
process.send?.(LISTENING)
process.on('disconnect', () => void shutdown('supervisor gone'))

let stopping = false
async function shutdown(reason: string) {
  if (stopping) return
  stopping = true
  logger.info(`tasklog: ${reason}, finishing in-flight requests`)
  // Stop accepting, tell WebSocket clients to reconnect elsewhere or later (1012: they resume
  // with since), give in-flight requests up to 5 s (SSE streams would hold it forever), then
  // drop what remains and close the stores.
  const stopped = app.server?.stop(false)
  app.closeSockets(1012, 'Server restarting: reconnect with since=<last id>')
  await Promise.race([stopped, Bun.sleep(5_000)])
  await app.server?.stop(true)
  await closeStores(stores)
  process.exit(0)
}
process.on('SIGTERM', () => void shutdown('SIGTERM received'))
process.on('SIGINT', () => void shutdown('SIGINT received'))
// One failing request or connection must never take the process down.
process.on('unhandledRejection', (error) => logger.error({ err: error }, 'tasklog: unhandled rejection'))
