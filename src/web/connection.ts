import { TasklogApi, TasklogApiError } from '../../clients/ts/src/api'
import { LogStreamClient } from '../../clients/ts/src/log-stream-client'
import type { Level } from '../../clients/ts/src/types'

/**
 * Where the viewer reaches the server: the page's own origin, for HTTP and WebSocket alike.
 * Every request and stream of the viewer is made here, so credentials have one place to go.
 */
const origin = location.origin

/**
 * Credentials. With a server in token mode the API answers 401: the viewer then asks for a
 * token, once per page, keeps it for the browser tab (sessionStorage), and gives it to the SDK's
 * clients (sent as `Authorization` on requests, `?token=` on WebSockets).
 */
const TOKEN_KEY = 'tasklog-token'
let asking: Promise<string | null> | undefined

const storedToken = (): string | undefined => sessionStorage.getItem(TOKEN_KEY) ?? undefined

/** Asks for a token the first time the server refuses this page; later refusals get the same answer. */
function askForToken(): Promise<string | null> {
  asking ??= Promise.resolve().then(() => {
    const token = prompt('This tasklog server needs a token (with tasks:read and logs:read). Paste it here:')?.trim()
    if (token) sessionStorage.setItem(TOKEN_KEY, token)
    return token || null
  })
  return asking
}

let client = new TasklogApi(origin, { token: storedToken() })

/** Runs a request; after a 401 asks for a token (once per page) and runs it again with it. */
async function withToken<T>(request: (api: TasklogApi) => Promise<T>): Promise<T> {
  const used = client
  try {
    return await request(used)
  } catch (error) {
    if (!(error instanceof TasklogApiError) || error.status !== 401) throw error
    const token = await askForToken()
    if (!token) throw error
    if (client === used) client = new TasklogApi(origin, { token })
    return request(client)
  }
}

/** The requests the viewer makes, each asking for a token when the server wants one. */
export const api = {
  listTasks: (...args: Parameters<TasklogApi['listTasks']>) => withToken((c) => c.listTasks(...args)),
  getTask: (...args: Parameters<TasklogApi['getTask']>) => withToken((c) => c.getTask(...args)),
  createTask: (...args: Parameters<TasklogApi['createTask']>) => withToken((c) => c.createTask(...args)),
  getLogs: (...args: Parameters<TasklogApi['getLogs']>) => withToken((c) => c.getLogs(...args)),
}

/** A stream of task logs and status changes: only logs of `level` and above, with the tab's token. */
export const openStream = (level?: Level) => new LogStreamClient(origin, { level, token: storedToken() })
