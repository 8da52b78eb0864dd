/**
 * Test harness: a real HTTP server in front of tasklog that records every request and can
 * answer some itself (a 429 with Retry-After, say) before forwarding the rest.
 *
 *   const proxy = startProxy(server.url, (req, n) => n === 1 ? new Response(null, { status: 429 }) : undefined)
 *   ... new WorkerLogger(subtaskId, proxy.url) ...
 *   proxy.requests  // [{ method, path, headers, body, at, status }]
 */
export interface RecordedRequest {
  method: string
  path: string
  headers: Headers
  body: string
  /** Date.now() when the request arrived. */
  at: number
  /** Status sent back to the client. */
  status: number
}

export interface Proxy {
  readonly url: string
  readonly requests: RecordedRequest[]
  stop(): Promise<void>
}

/** `intercept` gets each request with its 1-based number; returning a Response answers it instead of tasklog. */
export function startProxy(
  target: string,
  intercept: (request: RecordedRequest, n: number) => Response | undefined = () => undefined,
): Proxy {
  const requests: RecordedRequest[] = []
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(req) {
      const url = new URL(req.url)
      const record: RecordedRequest = {
        method: req.method,
        path: url.pathname,
        headers: req.headers,
        body: await req.text(),
        at: Date.now(),
        status: 0,
      }
      requests.push(record)
      const response =
        intercept(record, requests.length) ??
        (await fetch(`${target}${url.pathname}${url.search}`, {
          method: req.method,
          headers: req.headers,
          body: req.method === 'GET' || req.method === 'HEAD' ? undefined : record.body,
        }))
      record.status = response.status
      return response
    },
  })
  return {
    url: `http://127.0.0.1:${server.port}`,
    requests,
    stop: () => server.stop(true),
  }
}
