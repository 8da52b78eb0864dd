/**
 * Test harness: runs an example script as a subprocess (colors off) and reads its output.
 *
 *   const { code, stdout } = await runExample(['bun', 'examples/send-log.ts', ...])
 *   const client = startExample(['bun', 'examples/websocket-client.ts', taskId, server.wsUrl])
 *   await client.waitFor(/Subscribed/)
 *   const { code, stdout } = await client.stop('SIGINT')
 */
import type { Subprocess } from 'bun'

const ROOT = new URL('../..', import.meta.url).pathname

export interface ExampleResult {
  code: number | null
  stdout: string
  stderr: string
}

export interface RunningExample {
  readonly proc: Subprocess<'ignore', 'pipe', 'pipe'>
  /** Everything printed so far on stdout. */
  readonly stdout: () => string
  /** Waits until stdout matches `pattern`; fails with what was printed. */
  waitFor(pattern: RegExp | string, timeoutMs?: number): Promise<void>
  /** Waits for exit (sending `signal` first when given). */
  stop(signal?: NodeJS.Signals): Promise<ExampleResult>
}

const live = new Set<Subprocess>()
process.on('exit', () => {
  for (const proc of live) proc.kill('SIGKILL')
})

async function collect(stream: ReadableStream<Uint8Array>, into: { text: string }): Promise<void> {
  const decoder = new TextDecoder()
  for await (const chunk of stream) into.text += decoder.decode(chunk, { stream: true })
}

/** Starts `cmd` in `cwd` (default: the repository) with `env` over this process's environment. */
export function startExample(cmd: string[], env: Record<string, string> = {}, cwd = ROOT): RunningExample {
  const proc = Bun.spawn(cmd, {
    cwd,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  live.add(proc)
  const out = { text: '' }
  const err = { text: '' }
  const reading = Promise.all([collect(proc.stdout, out), collect(proc.stderr, err)])
  const exited = proc.exited.then(async (code) => {
    live.delete(proc)
    await reading
    return { code, stdout: out.text, stderr: err.text }
  })
  return {
    proc,
    stdout: () => out.text,
    async waitFor(pattern, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs
      const matches = () => (typeof pattern === 'string' ? out.text.includes(pattern) : pattern.test(out.text))
      while (!matches()) {
        if (proc.exitCode !== null || Date.now() > deadline)
          throw new Error(
            `${cmd.join(' ')}: no ${pattern} in output (exit ${proc.exitCode})\nstdout:\n${out.text}\nstderr:\n${err.text}`,
          )
        await Bun.sleep(20)
      }
    },
    async stop(signal) {
      if (signal && proc.exitCode === null) proc.kill(signal)
      return exited
    },
  }
}

/** Runs an example to completion. */
export function runExample(cmd: string[], env?: Record<string, string>): Promise<ExampleResult> {
  return startExample(cmd, env).stop()
}

/**
 * A Python 3 that can import `websockets` and `httpx` (pip's or Debian's python3-websockets and
 * python3-httpx, which only the system interpreter sees), or undefined.
 */
export function findPython(): string | undefined {
  for (const python of ['python3', '/usr/bin/python3']) {
    try {
      if (Bun.spawnSync([python, '-c', 'import websockets, httpx'], { stdout: 'ignore', stderr: 'ignore' }).exitCode === 0)
        return python
    } catch {}
  }
  return undefined
}
