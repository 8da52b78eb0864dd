/**
 * The archiver alone: one task's `LOGS` logs (100,000) written straight into a private Redis
 * by a Lua loop, then one archiver round drains them into the database. Prints the rows per
 * second, the archiver's CPU per row (this process, every thread) and, on PostgreSQL on this
 * machine, the CPU per row of the database's backends serving it, with no ingest beside it,
 * so that two builds compare in turns on a shared machine. An optional checkout directory runs
 * that build's archiver instead of this one's.
 *
 * The PostgreSQL figure counts every backend of the database the URL names: give the bench a
 * database of its own (`createdb -h 127.0.0.1 -U postgres archivebench`), or the CPU of whatever
 * else uses that database counts too.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/archivebench [ARCHIVE_BATCH=2000] bun bench/archive-drain.ts [dir]
 */
import { join, resolve } from 'node:path'
import { createClient } from 'redis'
import { testLog } from '../tests/support/logs'
import { startRedis } from '../tests/support/redis-server'
import { ROOT } from './lib/processes'
import { postgresBackendsCpuMs } from './lib/proc'
import { loadConfig } from '../src/config'

const LOGS = Number(process.env.LOGS ?? 100_000)
const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const root = resolve(process.argv[2] ?? ROOT)
const { connectRedisBackend } = await import(join(root, 'src/logs/redis'))
const { LogArchive } = await import(join(root, 'src/archive/log-archive'))
const { Archiver } = await import(join(root, 'src/archive/archiver'))

const redis = await startRedis()
const backend = await connectRedisBackend({
  ttlSeconds: 3600,
  maxPerTask: 10_000_000,
  url: redis.url,
  logger: console,
  archive: { leaseMs: 30_000 },
})
const archive = await LogArchive.open(databaseUrl, 30_000)
const taskId = crypto.randomUUID()
const log = testLog(taskId, crypto.randomUUID(), 'info', 'line 0 of a build step, about eighty bytes of text long')
// The first append puts the task on the archive's to-do list; the rest are written by Lua in
// slices short enough not to stall the connection.
await backend.history.append(taskId, [log])
const client = createClient({ url: redis.url })
await client.connect()
// Entries as the append script writes a batch's: the body alone (it holds the level).
const FILL = `for i = 1, tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], '*', 'd', ARGV[2]) end`
for (let n = 1; n < LOGS; n += 20_000) {
  await client.sendCommand(['EVAL', FILL, '1', `logs:{${taskId}}`, String(Math.min(20_000, LOGS - n)), log.body])
}
await client.close()

// intervalMs 0: every task is due at once.
const archiver = new Archiver(backend.archiveSource, archive, {
  archiveDays: 1,
  intervalMs: 0,
  // ARCHIVE_BATCH as the server reads it.
  batchSize: loadConfig().archiveBatch,
  retentionEveryMs: 1e12,
})
// The backends serving the bench's database (none on SQLite or a remote PostgreSQL); one that
// starts during the drain counts all its CPU.
const database = databaseUrl.startsWith('postgres') ? new URL(databaseUrl).pathname.slice(1) : undefined
const backends0 = database ? postgresBackendsCpuMs(database) : new Map<number, number>()
const cpu0 = process.cpuUsage()
const start = performance.now()
while (archiver.rowsWritten < LOGS) await archiver.runOnce()
const seconds = (performance.now() - start) / 1000
const cpu = process.cpuUsage(cpu0)
let databaseMs = 0
for (const [pid, ms] of database ? postgresBackendsCpuMs(database) : []) databaseMs += ms - (backends0.get(pid) ?? 0)
console.log(
  `${archiver.rowsWritten} logs archived in ${seconds.toFixed(1)} s: ${Math.round(archiver.rowsWritten / seconds).toLocaleString('en')} logs/s, ` +
    `${((cpu.user + cpu.system) / archiver.rowsWritten).toFixed(2)} µs CPU per log` +
    (databaseMs > 0 ? `, PostgreSQL backends ${((databaseMs * 1000) / archiver.rowsWritten).toFixed(2)} µs CPU per log` : ''),
)
await backend.close()
await archive.close()
await redis.stop()
process.exit(0)
