import type { ErrorBody, LogHistory, Level, Status, Subtask, Task, TaskPage } from './types.js'

/** `base` with its scheme switched to `http(s)` or `ws(s)` (keeping TLS) and no trailing slash. */
export function baseUrlFor(base: string, scheme: 'http' | 'ws'): string {
  const url = new URL(base)
  const secure = url.protocol === 'https:' || url.protocol === 'wss:'
  url.protocol = `${scheme}${secure ? 's' : ''}:`
  url.search = ''
  url.hash = ''
  return url.toString().replace(/\/+$/, '')
}

/**
 * The access token a client uses when given none: `TASKLOG_TOKEN` from the environment where
 * there is one (Bun, Node), else none (browsers).
 */
export function defaultToken(): string | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env
  return env?.TASKLOG_TOKEN || undefined
}

/** The `Authorization` header of a token, or no header. */
export const authorization = (token: string | undefined): Record<string, string> =>
  token ? { authorization: `Bearer ${token}` } : {}

/** A non-2xx answer, carrying the server's error code and sentence. */
export class TasklogApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: ErrorBody['details'],
  ) {
    super(message)
    this.name = 'TasklogApiError'
  }
}

/** Reads a failed response as the error shape `{ error, message, details? }`, tolerating proxies that answer with HTML. */
export async function toApiError(res: Response): Promise<TasklogApiError> {
  const text = await res.text().catch(() => '')
  try {
    const body = JSON.parse(text) as ErrorBody
    if (typeof body.message === 'string') return new TasklogApiError(res.status, body.error, body.message, body.details)
  } catch {}
  return new TasklogApiError(res.status, 'http_error', `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`)
}

export interface LogQuery {
  limit?: number
  order?: 'asc' | 'desc'
  since?: string
  level?: Level
  subtask_id?: string
}

export interface TaskQuery {
  status?: Status
  limit?: number
  /** `next_cursor` of the previous page. */
  cursor?: string
}

/** `?a=1&b=2` of the defined values, or '' when there are none. */
function searchOf(query: object): string {
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value))
  return params.size ? `?${params}` : ''
}

export interface TasklogApiOptions {
  /** Access token, sent as `Authorization: Bearer` (default: `TASKLOG_TOKEN` from the environment). */
  token?: string
}

/** The task endpoints the examples and the web viewer need: create, list and read tasks, update a subtask, read history. */
export class TasklogApi {
  readonly baseUrl: string
  private readonly token: string | undefined

  constructor(baseUrl = 'http://localhost:8000', options: TasklogApiOptions = {}) {
    this.baseUrl = baseUrlFor(baseUrl, 'http')
    this.token = options.token ?? defaultToken()
  }

  createTask(description: string, subtasks?: string[]): Promise<Task> {
    return this.request('POST', '/tasks', { description, subtasks: subtasks?.map((d) => ({ description: d })) })
  }

  /** Tasks newest first, a page at a time. */
  listTasks(query: TaskQuery = {}): Promise<TaskPage> {
    return this.request('GET', `/tasks${searchOf(query)}`)
  }

  getTask(taskId: string): Promise<Task> {
    return this.request('GET', `/tasks/${taskId}`)
  }

  updateSubtask(
    subtaskId: string,
    update: { status?: Status; worker_id?: string | null; worker_name?: string | null },
  ): Promise<Subtask> {
    return this.request('PATCH', `/subtasks/${subtaskId}`, update)
  }

  getLogs(taskId: string, query: LogQuery = {}): Promise<LogHistory> {
    return this.request('GET', `/tasks/${taskId}/logs${searchOf(query)}`)
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.baseUrl}/api/v1${path}`, {
      method,
      headers: { ...authorization(this.token), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    if (!res.ok) throw await toApiError(res)
    return (await res.json()) as T
  }
}
