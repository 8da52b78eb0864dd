/**
 * `bun run test [bun test arguments]`: everything the suites need, then the suites.
 *
 * 1. The dependencies, from the lockfile (`bun install --frozen-lockfile`: a no-op when
 *    node_modules already matches it).
 * 2. The system programs the suites drive: redis-server, Chromium, a C compiler, and Debian's python3 with
 *    websockets, httpx, venv, setuptools and wheel (the Python client's tests install it into a
 *    virtualenv, offline). Missing ones are installed with apt-get on Debian as root; elsewhere
 *    the script stops with one line naming them.
 * 3. `bun test --timeout 20000`, with any arguments given (a file, `-t name`, ...).
 *
 * It imports no package: on a fresh clone there is none yet.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'

const ROOT = join(import.meta.dir, '..')

const run = (cmd: string[], env?: Record<string, string>): number =>
  Bun.spawnSync(cmd, { cwd: ROOT, stdio: ['inherit', 'inherit', 'inherit'], env: { ...process.env, ...env } }).exitCode

const quietly = (cmd: string[]): boolean => {
  try {
    return Bun.spawnSync(cmd, { stdout: 'ignore', stderr: 'ignore' }).exitCode === 0
  } catch {
    return false // not installed
  }
}

const program = (envPath: string | undefined, debianPath: string, name: string): boolean =>
  existsSync(envPath ?? debianPath) || Bun.which(name) !== null

/** Debian packages for whatever the suites cannot find; the same names tell other systems what to install. */
function missingPackages(): string[] {
  const missing: string[] = []
  if (!program(process.env.REDIS_SERVER_BIN, '/usr/bin/redis-server', 'redis-server')) missing.push('redis-server')
  if (!program(process.env.CHROMIUM_PATH, '/usr/bin/chromium', 'chromium')) missing.push('chromium')
  // The bench's watcher client (bench/watchers.c) is compiled by its test and by scenario (g).
  if (Bun.which('cc') === null) missing.push('gcc')
  // Debian's packages serve Debian's Python, which the tests prefer when another python3 lacks them.
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'
  const has = (modules: string) => quietly([python, '-c', `import ${modules}`])
  if (!has('websockets')) missing.push('python3-websockets')
  if (!has('httpx')) missing.push('python3-httpx')
  if (!has('venv, ensurepip')) missing.push('python3-venv')
  if (!has('setuptools')) missing.push('python3-setuptools')
  if (!has('wheel')) missing.push('python3-wheel')
  return missing
}

function installSystemPackages(): void {
  const missing = missingPackages()
  if (missing.length === 0) return
  const debian = existsSync('/etc/debian_version') && Bun.which('apt-get') !== null
  if (!debian || process.getuid?.() !== 0) {
    console.error(`tasklog tests need these (Debian package names): ${missing.join(' ')}; install them and run again`)
    process.exit(1)
  }
  console.log(`== apt-get install ${missing.join(' ')}`)
  const env = { DEBIAN_FRONTEND: 'noninteractive' }
  if (
    run(['apt-get', 'update', '-qq'], env) !== 0 ||
    run(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...missing], env) !== 0
  ) {
    console.error(`tasklog tests: apt-get could not install ${missing.join(' ')}`)
    process.exit(1)
  }
}

if (run(['bun', 'install', '--frozen-lockfile']) !== 0) {
  console.error('tasklog tests: bun install --frozen-lockfile failed (is bun.lock up to date with package.json?)')
  process.exit(1)
}
installSystemPackages()
process.exit(run(['bun', 'test', '--timeout', '20000', ...process.argv.slice(2)]))
