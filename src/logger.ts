import pino, { type DestinationStream, type Logger } from 'pino'
import type { LogFormat, LogLevel } from './config'

export type { Logger }

/**
 * One compact human line per record: time, level, message, then the other fields as key=value
 * (an access line reads `GET /path 200 1.2 ms`), and an error's stack below it.
 */
export function prettyLine(json: string): string {
  const { time, level, msg, err, ...rest } = JSON.parse(json) as Record<string, unknown>
  let fields = rest
  let text = String(msg ?? '')
  if (msg === 'request') {
    // The URL says what the route pattern says, in a form a reader recognises.
    const { method, url, status, ms, route: _, ...others } = fields
    text = `${method} ${url} ${status} ${ms} ms`
    fields = others
  }
  const extra = Object.entries(fields)
    .map(([key, value]) => ` ${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join('')
  const stack = err && typeof err === 'object' && 'stack' in err ? `\n${(err as { stack: string }).stack}` : ''
  return `${String(time).slice(11, 23)} ${String(level).toUpperCase().padEnd(5)} ${text}${extra}${stack}\n`
}

const OPTIONS = {
  base: undefined, // no pid or hostname: the platform running the process adds its own
  timestamp: pino.stdTimeFunctions.isoTime,
  formatters: { level: (label: string) => ({ level: label }) },
}

/** Unwritten JSON lines held while stdout is blocked (a reader that stopped); past it, lines are dropped. */
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024

/**
 * The server's logger, on stdout. JSON lines are written asynchronously (a write in flight
 * collects the lines that follow it) and flushed when the process exits; pretty lines go
 * through `prettyLine`, for a terminal.
 */
export function createLogger({ level, format }: { level: LogLevel; format: LogFormat | undefined }): Logger {
  const pretty = (format ?? (process.stdout.isTTY ? 'pretty' : 'json')) === 'pretty'
  const destination: DestinationStream = pretty
    ? { write: (line: string) => void process.stdout.write(prettyLine(line)) }
    : pino.destination({ dest: 1, sync: false, maxLength: MAX_BUFFERED_BYTES })
  return pino({ ...OPTIONS, level }, destination)
}

let fallback: Logger | undefined
/** For apps built without a logger (tests build their own): errors, as JSON lines on stderr. */
export const fallbackLogger = (): Logger =>
  (fallback ??= pino({ ...OPTIONS, level: 'error' }, pino.destination({ dest: 2, sync: true })))
