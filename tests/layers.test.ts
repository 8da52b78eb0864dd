/**
 * The layers point one way: what each folder of src/ may import, and that the SDK package
 * (clients/ts) imports nothing outside itself. Checked on the source, so that an import running
 * the wrong way fails here rather than in a reader's head.
 */
import { describe, expect, test } from 'bun:test'
import { Glob } from 'bun'
import { readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'

const SRC = join(import.meta.dir, '..', 'src')
/** The SDK's source, as seen from src/: the server, the viewer and the examples import it from there. */
const SDK = '../clients/ts/src'
const transpiler = new Bun.Transpiler({ loader: 'ts' })

interface Source {
  /** Path under src/, e.g. `logs/hub.ts` (the SDK's files: `../clients/ts/src/api.ts`). */
  file: string
  /** Modules it imports at run time, as paths under src/ (`errors`, `../clients/ts/src/ids`). */
  runtime: string[]
  /** Modules under src/ it imports at all, types included. */
  all: string[]
}

const underSrc = (file: string, specifier: string) => relative(SRC, join(SRC, dirname(file), specifier))
const local = (specifier: string) => specifier.startsWith('.')

const sources: Source[] = [
  ...new Glob('**/*.ts').scanSync(SRC),
  ...[...new Glob('**/*.ts').scanSync(join(SRC, SDK))].map((file) => `${SDK}/${file}`),
]
  .filter((file) => !file.endsWith('.d.ts'))
  .map((file) => {
    const text = readFileSync(join(SRC, file), 'utf8')
    const runtime = transpiler
      .scanImports(text)
      .map((i) => i.path)
      .filter(local)
      .map((p) => underSrc(file, p))
    const all = [...text.matchAll(/\bfrom '([^']+)'/g)].map((m) => m[1]!).filter(local).map((p) => underSrc(file, p))
    return { file, runtime, all }
  })

/** Every import of the files under `folder` that breaks `allowed`, as `file -> module`. */
function offending(folder: string, allowed: (module: string, file: string) => boolean, kind: 'runtime' | 'all' = 'all') {
  return sources
    .filter((s) => s.file.startsWith(`${folder}/`))
    .flatMap((s) => s[kind].filter((m) => !allowed(m, s.file)).map((m) => `${s.file} -> ${m}`))
}

const inside = (module: string, ...folders: string[]) => folders.some((f) => module.startsWith(`${f}/`))

describe('imports', () => {
  test('sources were found', () => {
    expect(sources.map((s) => s.file)).toContain('logs/hub.ts')
  })

  test('the SDK package is self-contained: it imports nothing outside clients/ts/src, types included', () => {
    expect(sources.filter((s) => s.file.startsWith(`${SDK}/`)).map((s) => s.file)).toContain(`${SDK}/index.ts`)
    expect(offending(SDK, (m) => inside(m, SDK))).toEqual([])
  })

  test('the SDK imports with .js extensions, as its built output needs under Node', () => {
    const bare = sources
      .filter((s) => s.file.startsWith(`${SDK}/`))
      .flatMap((s) => [...readFileSync(join(SRC, s.file), 'utf8').matchAll(/\bfrom '(\.[^']+)'/g)].map((m) => `${s.file} -> ${m[1]}`))
      .filter((i) => !i.endsWith('.js'))
    expect(bare).toEqual([])
  })

  test('the web viewer runs in the browser on the SDK: it imports only itself and the SDK', () => {
    expect(offending('web', (m) => inside(m, 'web', SDK))).toEqual([])
  })

  test('the server takes only the id helpers from the SDK (id forms, log ids)', () => {
    const idHelpers = (m: string) => !inside(m, SDK) || [`${SDK}/ids`, `${SDK}/log-id`].includes(m.replace(/\.js$/, ''))
    const server = sources.filter((s) => !s.file.startsWith('web/') && !s.file.startsWith(`${SDK}/`))
    expect(server.flatMap((s) => s.all.filter((m) => !idHelpers(m)).map((m) => `${s.file} -> ${m}`))).toEqual([])
  })

  test('schemas import no store, service, route or HTTP code', () => {
    expect(offending('schemas', (m) => inside(m, 'schemas', SDK))).toEqual([])
  })

  test('stores and services throw store errors, never HTTP ones, and know no route', () => {
    const serverSide = (m: string) => m === 'errors' || inside(m, 'http', 'routes')
    expect(offending('logs', (m) => !serverSide(m))).toEqual([])
    expect(offending('tasks', (m) => !serverSide(m) && !inside(m, 'logs'))).toEqual([])
  })

  test('access control knows no route, store or engine: routes ask it, never the reverse', () => {
    const allowed = (m: string) => inside(m, 'auth', 'schemas', SDK) || m === 'errors' || m === 'http/request-info'
    expect(offending('auth', allowed)).toEqual([])
  })

  test('the hub and catch-up know the backend only by its interfaces', () => {
    const engines = (m: string) => inside(m, 'logs/memory', 'logs/redis')
    const core = sources.filter((s) => /^logs\/[^/]+\.ts$/.test(s.file) && s.file !== 'logs/backend.ts')
    expect(core.flatMap((s) => s.all.filter(engines).map((m) => `${s.file} -> ${m}`))).toEqual([])
  })

  test('the engines do not know each other', () => {
    expect(offending('logs/memory', (m) => !inside(m, 'logs/redis'))).toEqual([])
    expect(offending('logs/redis', (m) => !inside(m, 'logs/memory'))).toEqual([])
  })

  test("a route imports no other route's module, only its own parts (stream -> stream-sse)", () => {
    const ownPart = (m: string, file: string) => !m.startsWith('routes/') || m.startsWith(file.replace(/\.ts$/, '-'))
    expect(offending('routes', ownPart)).toEqual([])
  })
})
