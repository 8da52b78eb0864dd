import { isIP } from 'node:net'
import { availableParallelism } from 'node:os'
import type { RateLimit } from './store-errors'

/** Environment variables, validated once at start-up. */
export interface Config {
  port: number
  host: string
  /** Unset: history lives in process memory. */
  redisUrl: string | undefined
  databaseUrl: string
  logTtlSeconds: number
  logHistoryMax: number
  maxMessageBytes: number
  maxMetadataBytes: number
  maxBatch: number
  /** Largest accepted request body; a larger one is a 413 before it is read. */
  maxBodyBytes: number
  /** WebSocket: bytes queued for one slow socket before it is closed with 1013 (hard cap: 16x). */
  wsBackpressureBytes: number
  /** WebSocket: seconds of silence before a peer is considered dead (pings are sent before). */
  wsIdleTimeoutSeconds: number
  /** Deepest nesting of objects and arrays accepted in a request body or WebSocket message. */
  maxJsonDepth: number
  /** Every call to Redis or the task database answers within this many ms, or fails (503). */
  storeTimeoutMs: number
  /** Without Redis: bytes all tasks' history may hold together before the stalest tasks are trimmed. */
  memoryHistoryMaxBytes: number
  /** Least severe server log line written (access logs are `info`). */
  logLevel: LogLevel
  /** `json`: one JSON object a line; `pretty`: a compact human line. Unset: pretty on a terminal. */
  logFormat: LogFormat | undefined
  /** Log lines per second and per task, across instances (0: no limit), and the burst a task may send at once. */
  rateLimit: RateLimit
  /** Processes serving the port (`WORKERS` or `--workers`; 0 there means one per core). More than 1: a supervisor starts them. */
  workers: number
  /** Set in a process a supervisor started: its number, from 1; labels its log lines, metrics and responses. */
  worker: number | undefined
  /** Days logs are kept in the task database's archive after they leave history; 0: no archive. */
  archiveDays: number
  /** How old a task's oldest log not archived yet is before the archiver takes the task, once it keeps up (ms). */
  archiveIntervalMs: number
  /** Logs the archiver takes from history and stores in one statement. */
  archiveBatch: number
  /** With ARCHIVE_DAYS > 0, whether this instance runs an archiver; 'off' leaves archiving to instances that do. */
  archiver: ArchiverMode
  /** `token` with AUTH_SECRET, else `local` (loopback clients only) unless AUTH_MODE says otherwise. */
  authMode: 'token' | 'local' | 'open'
  /** Signs and verifies bearer tokens (HS256); at least 32 bytes. */
  authSecret: string | undefined
  /** Origins whose browsers may call the API (CORS) and open streams besides the server's own; `*` for any. */
  corsOrigins: string[]
  /** Open WebSocket and SSE connections per token subject (token mode) or client address. */
  maxConnectionsPerClient: number
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]
const LOG_FORMATS = ['json', 'pretty'] as const
export type LogFormat = (typeof LOG_FORMATS)[number]
const ARCHIVER_MODES = ['on', 'off'] as const
export type ArchiverMode = (typeof ARCHIVER_MODES)[number]

/** A bad environment variable; start-up prints the message and exits 1. */
export class ConfigError extends Error {}

type Env = Record<string, string | undefined>

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim()
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new ConfigError(`${name}=${raw} is invalid: expected a whole number from ${min} to ${max}`)
  }
  return value
}

function url(env: Env, name: string, fallback: string | undefined, schemes: string[]): string | undefined {
  const raw = env[name]?.trim()
  if (raw === undefined || raw === '') return fallback
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(raw)?.[1]?.toLowerCase()
  if (!scheme || !schemes.includes(scheme)) {
    throw new ConfigError(`${name}=${raw} is invalid: expected a URL starting with ${schemes.map((s) => `${s}://`).join(', ')}`)
  }
  return raw
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[]): T | undefined {
  const raw = env[name]?.trim()
  if (raw === undefined || raw === '') return undefined
  if (!allowed.includes(raw.toLowerCase() as T))
    throw new ConfigError(`${name}=${raw} is invalid: expected one of ${allowed.join(', ')}`)
  return raw.toLowerCase() as T
}

// Checked here because Bun, given a malformed host, fails deep inside listen with a stack trace.
const HOST_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i

function host(env: Env, name: string, fallback: string): string {
  const raw = env[name]?.trim()
  if (raw === undefined || raw === '') return fallback
  if (!isIP(raw) && !HOST_NAME.test(raw)) {
    throw new ConfigError(
      `${name}=${raw} is invalid: expected an IPv4 or IPv6 address or a host name (letters, digits, dots and hyphens)`,
    )
  }
  return raw
}

function authSecret(env: Env): string | undefined {
  const raw = env.AUTH_SECRET
  if (raw === undefined || raw === '') return undefined
  if (Buffer.byteLength(raw) < 32)
    throw new ConfigError('AUTH_SECRET is too short: use at least 32 bytes, e.g. the output of `openssl rand -base64 48`')
  return raw
}

function authMode(env: Env, secret: string | undefined): Config['authMode'] {
  const raw = env.AUTH_MODE?.trim()
  if (raw === undefined || raw === '') return secret === undefined ? 'local' : 'token'
  if (raw !== 'token' && raw !== 'local' && raw !== 'open')
    throw new ConfigError(`AUTH_MODE=${raw} is invalid: expected token, local or open`)
  if (raw === 'token' && secret === undefined) throw new ConfigError('AUTH_MODE=token needs AUTH_SECRET (at least 32 bytes)')
  return raw
}

function origins(env: Env, name: string): string[] {
  const raw = env[name]?.trim()
  if (raw === undefined || raw === '') return []
  const list = raw.split(',').map((o) => o.trim()).filter((o) => o !== '')
  for (const origin of list) {
    if (origin !== '*' && !/^https?:\/\/[^/\s]+$/i.test(origin))
      throw new ConfigError(`${name} holds ${origin}: expected origins like https://dash.example.com (no path), or *`)
  }
  return list
}

/**
 * ARCHIVER: 'off' leaves archiving to other instances sharing Redis; without Redis, history is
 * this process's own and nobody else could archive it.
 */
function archiverMode(env: Env, archiveDays: number, redisUrl: string | undefined): ArchiverMode {
  const mode = oneOf(env, 'ARCHIVER', ARCHIVER_MODES) ?? 'on'
  if (mode === 'off' && archiveDays > 0 && !redisUrl)
    throw new ConfigError("ARCHIVER=off needs REDIS_URL: without Redis no other instance can archive this one's history")
  return mode
}

/** `--workers N` (or `--workers=N`) among the command's arguments, which wins over `WORKERS`. */
function workersFlag(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--workers') return args[i + 1] ?? ''
    if (args[i]!.startsWith('--workers=')) return args[i]!.slice('--workers='.length)
  }
  return undefined
}

/** `env` is the environment; `args` the command's arguments after the script (for `--workers`). */
export function loadConfig(env: Env = process.env, args: string[] = []): Config {
  const maxBatch = integer(env, 'MAX_BATCH', 1000, 1, 100_000)
  const maxMessageBytes = integer(env, 'MAX_MESSAGE_BYTES', 65_536, 1, 16 * 1024 * 1024)
  const maxMetadataBytes = integer(env, 'MAX_METADATA_BYTES', 16_384, 2, 16 * 1024 * 1024)
  // The default fits a full batch of typical lines; a single line of maximum size always fits.
  const perSecond = integer(env, 'RATE_LIMIT_LOGS_PER_SECOND', 10_000, 0, 100_000_000)
  const burst = integer(env, 'RATE_LIMIT_BURST', Math.max(1, 10 * perSecond), 1, 1_000_000_000)
  const secret = authSecret(env)
  const defaultBody = Math.max(8 * 1024 * 1024, 2 * (maxMessageBytes + maxMetadataBytes) + 4096)
  const redisUrl = url(env, 'REDIS_URL', undefined, ['redis', 'rediss', 'redis+cluster', 'rediss+cluster'])
  const days = integer(env, 'ARCHIVE_DAYS', 0, 0, 36_500)
  return {
    port: integer(env, 'PORT', 8000, 0, 65_535),
    host: host(env, 'HOST', '0.0.0.0'),
    redisUrl,
    databaseUrl: url(env, 'DATABASE_URL', 'sqlite://data/tasklog.sqlite', ['sqlite', 'postgres', 'postgresql'])!,
    logTtlSeconds: integer(env, 'LOG_TTL_SECONDS', 3600, 1, 365 * 24 * 3600),
    logHistoryMax: integer(env, 'LOG_HISTORY_MAX', 10_000, 1, 10_000_000),
    maxMessageBytes,
    maxMetadataBytes,
    maxBatch,
    maxBodyBytes: integer(env, 'MAX_BODY_BYTES', defaultBody, 1024, 1024 * 1024 * 1024),
    wsBackpressureBytes: integer(env, 'WS_BACKPRESSURE_BYTES', 1024 * 1024, 1024, 64 * 1024 * 1024),
    wsIdleTimeoutSeconds: integer(env, 'WS_IDLE_TIMEOUT_SECONDS', 60, 5, 960),
    maxJsonDepth: integer(env, 'MAX_JSON_DEPTH', 64, 2, 1000),
    storeTimeoutMs: integer(env, 'STORE_TIMEOUT_MS', 2000, 100, 600_000),
    memoryHistoryMaxBytes: integer(env, 'MEMORY_HISTORY_MAX_BYTES', 256 * 1024 * 1024, 64 * 1024, 2 ** 50),
    logLevel: oneOf(env, 'LOG_LEVEL', LOG_LEVELS) ?? 'info',
    logFormat: oneOf(env, 'LOG_FORMAT', LOG_FORMATS),
    rateLimit: { perSecond, burst },
    workers: integer({ ...env, WORKERS: workersFlag(args) ?? env.WORKERS }, 'WORKERS', 1, 0, 256) || availableParallelism(),
    worker: env.TASKLOG_WORKER ? integer(env, 'TASKLOG_WORKER', 1, 1, 256) : undefined,
    archiveDays: days,
    archiveIntervalMs: integer(env, 'ARCHIVE_INTERVAL_MS', 1000, 10, 600_000),
    archiveBatch: integer(env, 'ARCHIVE_BATCH', 2000, 10, 20_000),
    archiver: archiverMode(env, days, redisUrl),
    authMode: authMode(env, secret),
    authSecret: secret,
    corsOrigins: origins(env, 'CORS_ORIGINS'),
    maxConnectionsPerClient: integer(env, 'MAX_CONNECTIONS_PER_CLIENT', 10_000, 1, 10_000_000),
  }
}
