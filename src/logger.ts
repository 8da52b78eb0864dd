import { fstatSync, writeSync } from 'node:fs'
import pino, { type DestinationStream, type Logger } from 'pino'
import type { LogFormat, LogLevel } from './config'

export type { Logger }

/**
 * One compact human line per record: time, level, message, then the other fields as key=value
 * (an access line reads `GET /path 200 1.2 ms`), and an error's stack below it.
 */
function prettyLine(json: string): string {
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
/** Lines gather for at most this long, or until this many bytes wait, then leave in one write. */
const FLUSH_MS = 50
const CHUNK_BYTES = 64 * 1024
/** The largest write to a pipe that no other process's write can split (POSIX PIPE_BUF on Linux). */
const PIPE_BUF = 4096

/**
 * Standard output for JSON lines, written in chunks: one write per line (pino's own
 * destination) costs more than the rest of an ingest request, so lines gather for up to
 * FLUSH_MS or CHUNK_BYTES and leave in one write. While a write is pending (a slow reader), at
 * most MAX_BUFFERED_BYTES wait; later lines are dropped, and a line says how many. Processes
 * sharing one pipe (a supervisor's workers) write at most `maxWriteBytes` of whole lines at a
 * time, so that their lines never interleave mid-line.
 */
class ChunkedStdout implements DestinationStream {
  #lines: string[] = []
  #bytes = 0
  #dropped = 0
  #writing = false
  #timer: ReturnType<typeof setTimeout> | undefined

  constructor(private readonly maxWriteBytes = Infinity) {
    process.on('exit', () => this.#flushSync())
  }

  write(line: string): void {
    if (this.#bytes >= MAX_BUFFERED_BYTES) {
      this.#dropped++
      return
    }
    this.#lines.push(line)
    this.#bytes += line.length
    if (this.#bytes >= CHUNK_BYTES) this.#flush()
    else this.#timer ??= setTimeout(() => this.#flush(), FLUSH_MS)
  }

  #take(limit = Infinity): string {
    if (this.#dropped) {
      this.#lines.push(`{"level":"warn","time":"${new Date().toISOString()}","msg":"${this.#dropped} log lines dropped: stdout was not read"}\n`)
      this.#dropped = 0
    }
    if (limit !== Infinity) {
      // Whole lines up to `limit` bytes (one line at least); the rest waits for the next write.
      let n = 0
      for (let size = 0; n < this.#lines.length; n++) {
        size += Buffer.byteLength(this.#lines[n]!)
        if (n > 0 && size > limit) break
      }
      if (n < this.#lines.length) {
        const taken = this.#lines.splice(0, n).join('')
        this.#bytes -= taken.length
        return taken
      }
    }
    const chunk = this.#lines.join('')
    this.#lines = []
    this.#bytes = 0
    return chunk
  }

  #flush(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#writing || this.#lines.length === 0) return
    this.#writing = true
    Bun.write(Bun.stdout, this.#take(this.maxWriteBytes))
      .catch(() => {})
      .finally(() => {
        this.#writing = false
        if (this.#lines.length) this.#flush()
      })
  }

  #flushSync(): void {
    try {
      while (this.#lines.length || this.#dropped) writeSync(1, this.#take(this.maxWriteBytes))
    } catch {}
  }
}

/**
 * The server's logger, on stdout: JSON lines (ChunkedStdout), or for a terminal pretty lines
 * through `prettyLine`. A worker's lines carry its number (`worker`), as do the supervisor's
 * about one worker.
 */
export function createLogger({
  level,
  format,
  worker,
}: {
  level: LogLevel
  format: LogFormat | undefined
  worker?: number | undefined
}): Logger {
  const pretty = (format ?? (process.stdout.isTTY ? 'pretty' : 'json')) === 'pretty'
  const destination: DestinationStream = pretty
    ? { write: (line: string) => void process.stdout.write(prettyLine(line)) }
    : new ChunkedStdout(worker !== undefined && stdoutIsPipe() ? PIPE_BUF : Infinity)
  const logger = pino({ ...OPTIONS, level, base: worker === undefined ? undefined : { worker } }, destination)
  destinations.set(logger, { destination, base: worker === undefined ? '' : `,"worker":${worker}` })
  return logger
}

/** Where each logger made by createLogger writes its lines, and its base fields as JSON (`,"worker":1`). */
const destinations = new WeakMap<Logger, { destination: DestinationStream; base: string }>()

/**
 * Logs `fields` at info with message `msg`, in the line pino would write, serialized with one
 * JSON.stringify: the access log writes a line per request, and pino's own serialization was
 * most of what that cost (bench/README.md, "Request logs"). The caller checks the level.
 */
export function infoLine(logger: Logger, msg: string, fields: object): void {
  const target = destinations.get(logger)
  if (!target) return void logger.info(fields, msg)
  const rest = JSON.stringify(fields)
  target.destination.write(
    `{"level":"info","time":"${new Date().toISOString()}"${target.base},"msg":${JSON.stringify(msg)}${rest.length > 2 ? `,${rest.slice(1)}` : '}'}\n`,
  )
}

function stdoutIsPipe(): boolean {
  try {
    return fstatSync(1).isFIFO()
  } catch {
    return false
  }
}

let fallback: Logger | undefined
/** For apps built without a logger (tests build their own): errors, as JSON lines on stderr. */
export const fallbackLogger = (): Logger =>
  (fallback ??= pino({ ...OPTIONS, level: 'error' }, pino.destination({ dest: 2, sync: true })))
