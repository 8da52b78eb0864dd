import { Elysia } from 'elysia'
import { basename } from 'node:path'
import { notFound } from '../errors'
import viewer from '../web/index.html'

/**
 * The viewer's pages allow nothing but their own origin: no inline script or style, no eval,
 * no framing. `connect-src 'self'` covers the same-origin WebSocket.
 */
const VIEWER_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ')

const SECURITY_HEADERS = {
  'content-security-policy': VIEWER_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
}

interface Asset {
  body: Blob
  type: string
}

interface Viewer {
  page: Asset
  /** By file name, as the page refers to them under `/assets/`. */
  assets: Map<string, Asset>
}

/**
 * The bundled page and its assets. A binary made with `bun build --compile` carries them built
 * (`files`); otherwise Bun's bundler builds them from `src/web` in memory, once per process.
 */
async function build(): Promise<Viewer> {
  if (viewer.files) {
    let html = ''
    const assets = new Map<string, Asset>()
    for (const file of viewer.files) {
      const body = Bun.file(file.path)
      if (file.loader === 'html') html = await body.text()
      else assets.set(basename(file.path), { body, type: file.headers['content-type'] })
    }
    // The compiled page names its assets at the root; they are served under /assets/.
    for (const name of assets.keys()) html = html.replaceAll(`"/${name}"`, `"/assets/${name}"`)
    return { page: { body: new Blob([html]), type: 'text/html; charset=utf-8' }, assets }
  }
  const result = await Bun.build({ entrypoints: [viewer.index], publicPath: '/assets/', minify: true, target: 'browser' })
  if (!result.success) throw new AggregateError(result.logs, 'The web viewer failed to build')
  let page: Asset | undefined
  const assets = new Map<string, Asset>()
  for (const output of result.outputs) {
    if (output.path.endsWith('.html')) page = { body: output, type: 'text/html; charset=utf-8' }
    else assets.set(basename(output.path), { body: output, type: output.type })
  }
  return { page: page!, assets }
}

let built: Promise<Viewer> | undefined
/** Built on first use, not at start-up: most processes (tests, workers' servers) never serve a page. */
const load = () => {
  built ??= build().catch((error) => {
    built = undefined
    throw error
  })
  return built
}

const respond = ({ body, type }: Asset, cache: string) =>
  new Response(body, { headers: { 'content-type': type, 'cache-control': cache, ...SECURITY_HEADERS } })

/** The web viewer: `/` lists tasks, `/tasks/{task_id}` follows one; both are the same page. */
export const webRoutes = new Elysia({ name: 'web', detail: { hide: true } })
  .get('/', async () => respond((await load()).page, 'no-cache'))
  .get('/tasks/:task_id', async () => respond((await load()).page, 'no-cache'))
  .get('/assets/:file', async ({ params }) => {
    const asset = (await load()).assets.get(params.file)
    if (!asset) throw notFound('Asset', params.file)
    // Asset names carry a hash of their content.
    return respond(asset, 'public, max-age=31536000, immutable')
  })
