/**
 * Test harness: a Node.js 22 binary. The machine's `node` when it is 22 or newer, else `node@22`
 * installed from npm (the package ships the official binary) into node_modules/.cache/node22,
 * once. Undefined, with the reason, when neither works.
 */
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'

const CACHE = join(import.meta.dir, '..', '..', 'node_modules', '.cache', 'node22')
const CACHED = join(CACHE, 'node_modules', 'node', 'bin', 'node')

async function majorOf(binary: string): Promise<number | undefined> {
  try {
    const proc = Bun.spawn([binary, '--version'], { stdout: 'pipe', stderr: 'ignore' })
    const version = (await new Response(proc.stdout).text()).trim()
    return (await proc.exited) === 0 ? Number(/^v(\d+)\./.exec(version)?.[1]) : undefined
  } catch {
    return undefined
  }
}

export async function node22(): Promise<{ path: string } | { missing: string }> {
  const system = Bun.which('node')
  if (system && ((await majorOf(system)) ?? 0) >= 22) return { path: system }
  if (existsSync(CACHED) && (await majorOf(CACHED)) === 22) return { path: CACHED }
  const npm = Bun.which('npm')
  if (!npm) return { missing: 'no Node.js 22 and no npm to install node@22 with' }
  mkdirSync(CACHE, { recursive: true })
  const install = Bun.spawn([npm, 'install', '--prefix', CACHE, '--no-audit', '--no-fund', 'node@22'], {
    stdout: 'ignore',
    stderr: 'pipe',
  })
  const errors = await new Response(install.stderr).text()
  if ((await install.exited) !== 0 || (await majorOf(CACHED)) !== 22)
    return { missing: `npm install node@22 failed: ${errors.trim().split('\n').at(-1)}` }
  return { path: CACHED }
}
