import { SQL } from 'bun'
import { mkdirSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { InvalidInputError, StoreTimeoutError, StoreUnavailableError } from '../store-errors'
import { STATUSES, now, type Status } from '../schemas/common'
import { isUuid } from '../../clients/ts/src/ids'
import { TimeoutError, withTimeout } from '../timeout'
import type { Subtask, Task, UpdateSubtask } from '../schemas/task'
import type { SubtaskUpdate, TaskPage, TaskStore } from './task-store'

/**
 * The task registry on Bun.SQL: one set of queries for SQLite (default) and PostgreSQL.
 *
 * Portability rules the queries follow: TEXT ids and ISO timestamps (they sort as strings,
 * whatever the collation, because every value has the same fixed format), no dialect
 * functions (no GREATEST, no FILTER, no ::casts), and `RETURNING`, which both support.
 */

/** A `cursor` that is not a `next_cursor` this store produced. */
export class InvalidCursorError extends InvalidInputError {
  constructor(cursor: string) {
    super(`Invalid cursor ${JSON.stringify(cursor.slice(0, 80))}: pass the next_cursor of the previous page`, [
      { path: '/cursor', message: 'Expected the next_cursor of a previous page' },
    ])
    this.name = 'InvalidCursorError'
  }
}

const SUBTASK_COLUMNS = 'subtask_id, task_id, description, status, position, worker_id, worker_name, created_at, updated_at'

/**
 * A task's status, derived from its subtasks (`t` is the task row). Written once: it is both
 * the status a read returns and the one the `status` filter of listTasks compares.
 * With no subtask at all (never created by this store) the task counts as completed.
 */
const TASK_STATUS_SQL = `CASE
    WHEN EXISTS (SELECT 1 FROM subtasks s WHERE s.task_id = t.task_id AND s.status = 'failed') THEN 'failed'
    WHEN NOT EXISTS (SELECT 1 FROM subtasks s WHERE s.task_id = t.task_id AND s.status <> 'completed') THEN 'completed'
    WHEN EXISTS (SELECT 1 FROM subtasks s WHERE s.task_id = t.task_id AND s.status IN ('in_progress', 'completed')) THEN 'in_progress'
    ELSE 'pending'
  END`

/** max(task created_at, subtasks' updated_at), without GREATEST (PostgreSQL) or scalar MAX (SQLite). */
const TASK_UPDATED_AT_SQL = `COALESCE(
    (SELECT MAX(s.updated_at) FROM subtasks s WHERE s.task_id = t.task_id AND s.updated_at > t.created_at),
    t.created_at)`

/** Every task column a read returns, status and updated_at derived; selected from `tasks t`. */
const TASK_VIEW_SQL = `SELECT t.task_id, t.description, t.created_at,
    ${TASK_STATUS_SQL} AS status,
    ${TASK_UPDATED_AT_SQL} AS updated_at
  FROM tasks t`

const SCHEMA_SQL = [
  `CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL
  )`,
  `CREATE TABLE IF NOT EXISTS subtasks (
    subtask_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    description TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN (${STATUSES.map((s) => `'${s}'`).join(', ')})),
    position INTEGER NOT NULL,
    worker_id TEXT,
    worker_name TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  )`,
  // Serves "subtasks of a task" (every read and the derived status) in position order.
  `CREATE UNIQUE INDEX IF NOT EXISTS subtasks_task_id_position ON subtasks (task_id, position)`,
]

/** Arbitrary constant: the PostgreSQL advisory lock that serializes schema creation across instances. */
export const SCHEMA_LOCK_KEY = 7_346_182_905

/** Rows per INSERT: far below SQLite's bound-parameter limit. */
const INSERT_CHUNK = 500

interface TaskRow {
  task_id: string
  description: string
  created_at: string
  status: Status
  updated_at: string
}

type SubtaskRow = Subtask

export type Dialect = 'sqlite' | 'postgres'

interface Target {
  dialect: Dialect
  /** Where tasks live, without credentials. */
  description: string
  /** A SQLite in memory: each connection has a database of its own. */
  inMemory: boolean
  connect: () => SQL
}

/** Parses DATABASE_URL; creates the folder of a relative or absolute SQLite file. */
export function parseDatabaseUrl(databaseUrl: string): Target {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(databaseUrl)?.[1]?.toLowerCase()
  if (scheme === 'sqlite') {
    let path = databaseUrl.slice('sqlite:'.length)
    const query = path.indexOf('?')
    if (query >= 0) path = path.slice(0, query)
    // sqlite://data/x.sqlite (relative), sqlite:///abs/x.sqlite (absolute), sqlite:data/x.sqlite
    if (path.startsWith('//')) path = path.slice(2)
    path = decodeURIComponent(path)
    if (path === '')
      throw new Error(`DATABASE_URL ${databaseUrl} names no SQLite file; use sqlite://data/tasklog.sqlite or sqlite://:memory:`)
    const filename = path === ':memory:' ? ':memory:' : resolve(path)
    return {
      dialect: 'sqlite',
      description: `sqlite:${path}`,
      inMemory: filename === ':memory:',
      connect: () => {
        if (filename !== ':memory:') mkdirSync(dirname(filename), { recursive: true })
        return new SQL({ adapter: 'sqlite', filename, create: true, readwrite: true })
      },
    }
  }
  if (scheme === 'postgres' || scheme === 'postgresql') {
    let url: URL
    try {
      url = new URL(databaseUrl)
    } catch {
      throw new Error('DATABASE_URL is not a valid postgres:// URL')
    }
    return {
      dialect: 'postgres',
      description: `postgres://${url.host}${url.pathname}`,
      inMemory: false,
      connect: () => new SQL({ adapter: 'postgres', url: databaseUrl }),
    }
  }
  throw new Error(`DATABASE_URL must start with sqlite:// or postgres:// (got ${scheme ? `${scheme}:` : 'no scheme'})`)
}

/** Errors that mean "the database cannot be reached", as opposed to a bad query. */
export function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const { code, errno } = error as { code?: unknown; errno?: unknown }
  if (typeof code === 'string') {
    if (/^ERR_(POSTGRES|SQLITE)_CONNECTION|TIMEOUT|^ERR_POSTGRES_TLS/.test(code)) return true
    if (/^SQLITE_(BUSY|LOCKED|CANTOPEN|IOERR|FULL|READONLY|NOTADB|CORRUPT)/.test(code)) return true
    if (/^E(CONNREFUSED|CONNRESET|HOSTUNREACH|NETUNREACH|NOTFOUND|TIMEDOUT|PIPE|ACCES)$/.test(code)) return true
  }
  // PostgreSQL SQLSTATE: connection exception, insufficient resources, operator intervention, auth.
  return typeof errno === 'string' && /^(08|53|57P|28)/.test(errno)
}

const toSubtask = (row: SubtaskRow): Subtask => ({
  subtask_id: row.subtask_id,
  task_id: row.task_id,
  description: row.description,
  status: row.status,
  position: Number(row.position),
  worker_id: row.worker_id ?? null,
  worker_name: row.worker_name ?? null,
  created_at: row.created_at,
  updated_at: row.updated_at,
})

/**
 * A database call that answers within `timeoutMs`: a hang (a stopped server, a half-open
 * connection) is a StoreTimeoutError, a lost connection a StoreUnavailableError; the query itself
 * may still finish later.
 */
export function boundedSql<T>(store: string, timeoutMs: number, call: Promise<T>): Promise<T> {
  return withTimeout(call, timeoutMs, `no answer within ${timeoutMs} ms`).catch((error: unknown) => {
    if (error instanceof TimeoutError) throw new StoreTimeoutError(store, timeoutMs, error)
    throw isUnavailable(error) ? new StoreUnavailableError(store, error) : error
  })
}

export interface SqlTaskStoreOptions {
  /** Every operation answers within this many ms or fails with StoreUnavailableError (default 2000). */
  timeoutMs?: number
}

export class SqlTaskStore implements TaskStore {
  /** SQLite: the tail of the queue that serializes every operation (see `exclusive`). */
  private queue: Promise<unknown> = Promise.resolve()

  private constructor(
    private readonly sql: SQL,
    private readonly dialect: Dialect,
    readonly description: string,
    private readonly timeoutMs: number,
  ) {}

  /**
   * Opens the store and creates the schema if missing (idempotent).
   * Accepts `sqlite://data/tasklog.sqlite` (relative to the working directory; the folder is
   * created), `sqlite:///abs/path.sqlite`, `sqlite://:memory:`, `postgres://…`, `postgresql://…`.
   * Rejects with StoreUnavailableError when the database cannot be reached.
   */
  static async open(databaseUrl: string, options: SqlTaskStoreOptions = {}): Promise<SqlTaskStore> {
    const target = parseDatabaseUrl(databaseUrl)
    const timeoutMs = options.timeoutMs ?? 2000
    let sql: SQL | undefined
    try {
      sql = target.connect()
      const store = new SqlTaskStore(sql, target.dialect, target.description, timeoutMs)
      // Start-up may wait for a database that is still coming up, but not forever.
      const wait = Math.max(5000, timeoutMs)
      await withTimeout(store.createSchema(), wait, `no answer within ${wait} ms`)
      return store
    } catch (error) {
      await sql?.close({ timeout: 0 }).catch(() => {})
      if (isUnavailable(error) || error instanceof TimeoutError) {
        throw new StoreUnavailableError(`Task database (${target.description})`, error)
      }
      throw error
    }
  }

  private async createSchema(): Promise<void> {
    if (this.dialect === 'sqlite') {
      await this.sql`PRAGMA foreign_keys = ON`
      await this.sql`PRAGMA busy_timeout = 5000`
      await this.sql`PRAGMA journal_mode = WAL` // answers "memory" for :memory:, which is fine
      for (const statement of SCHEMA_SQL) await this.sql.unsafe(statement)
      return
    }
    // Several instances may start at once: concurrent CREATE ... IF NOT EXISTS can still
    // collide in PostgreSQL's catalog, so take a transaction-scoped advisory lock.
    await this.sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK_KEY})`
      for (const statement of SCHEMA_SQL) await tx.unsafe(statement)
    })
  }

  /**
   * Bun.SQL's SQLite adapter has ONE connection: a query issued while a `begin()` transaction
   * of another request awaits runs INSIDE that transaction (it reads uncommitted rows and is
   * rolled back with it). So on SQLite every operation runs alone, in arrival order; SQLite
   * executes one statement at a time anyway. PostgreSQL uses its pool unhindered.
   */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = async () => {
      try {
        return await fn()
      } catch (error) {
        throw isUnavailable(error) ? new StoreUnavailableError('Task database', error) : error
      }
    }
    if (this.dialect !== 'sqlite') return this.bounded(run())
    const result = this.queue.then(run)
    this.queue = result.catch(() => {})
    return this.bounded(result)
  }

  /**
   * A database that hangs (a stopped server, a half-open connection) fails the call after
   * timeoutMs instead of holding the request; the query itself may still finish later.
   */
  private bounded<T>(call: Promise<T>): Promise<T> {
    return boundedSql('Task database', this.timeoutMs, call)
  }

  /** Runs several reads against one snapshot (a REPEATABLE READ transaction on PostgreSQL). */
  private snapshot<T>(fn: (db: SQL) => Promise<T>): Promise<T> {
    return this.exclusive(async () =>
      this.dialect === 'sqlite'
        ? fn(this.sql)
        : ((await this.sql.begin('isolation level repeatable read read only', (tx) => fn(tx))) as T),
    )
  }

  createTask(description: string, subtasks: string[]): Promise<Task> {
    if (subtasks.length === 0) return Promise.reject(new RangeError('A task needs at least one subtask'))
    const createdAt = now()
    const task_id = Bun.randomUUIDv7()
    const rows: Subtask[] = subtasks.map((subtaskDescription, position) => ({
      subtask_id: Bun.randomUUIDv7(),
      task_id,
      description: subtaskDescription,
      status: 'pending',
      position,
      worker_id: null,
      worker_name: null,
      created_at: createdAt,
      updated_at: createdAt,
    }))
    return this.exclusive(async () => {
      await this.sql.begin(async (tx) => {
        await tx`INSERT INTO tasks (task_id, description, created_at) VALUES (${task_id}, ${description}, ${createdAt})`
        for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
          await tx`INSERT INTO subtasks ${tx(rows.slice(i, i + INSERT_CHUNK))}`
        }
      })
      return { task_id, description, status: 'pending', created_at: createdAt, updated_at: createdAt, subtasks: rows }
    })
  }

  listTasks(query: { status?: Status; limit: number; cursor?: string; taskIds?: readonly string[] }): Promise<TaskPage> {
    const { status, limit, cursor, taskIds } = query
    if (!Number.isInteger(limit) || limit < 1)
      return Promise.reject(new RangeError(`limit must be a positive integer, got ${limit}`))
    if (cursor !== undefined && !isUuid(cursor)) return Promise.reject(new InvalidCursorError(cursor))
    return this.snapshot(async (db) => {
      const statusFilter = status === undefined ? db`` : db`AND status = ${status}`
      const cursorFilter = cursor === undefined ? db`` : db`AND task_id < ${cursor.toLowerCase()}`
      if (taskIds?.length === 0) return { tasks: [], next_cursor: null }
      const idFilter = taskIds === undefined ? db`` : db`AND task_id IN ${db([...taskIds])}`
      const rows: TaskRow[] = await db`
        SELECT task_id, description, created_at, status, updated_at
        FROM (${db.unsafe(TASK_VIEW_SQL)}) v
        WHERE 1 = 1 ${statusFilter} ${cursorFilter} ${idFilter}
        ORDER BY task_id DESC
        LIMIT ${limit + 1}`
      const page = rows.slice(0, limit)
      const tasks = await this.withSubtasks(db, page)
      const last = page.at(-1)
      return { tasks, next_cursor: rows.length > limit && last ? last.task_id : null }
    })
  }

  getTask(taskId: string): Promise<Task | null> {
    return this.snapshot(async (db) => {
      const rows: TaskRow[] = await db`
        SELECT task_id, description, created_at, status, updated_at
        FROM (${db.unsafe(TASK_VIEW_SQL)}) v
        WHERE task_id = ${taskId}`
      const [task] = await this.withSubtasks(db, rows)
      return task ?? null
    })
  }

  /** Attaches their subtasks to task rows, with one query for all of them. */
  private async withSubtasks(db: SQL, rows: TaskRow[]): Promise<Task[]> {
    if (rows.length === 0) return []
    const ids = rows.map((row) => row.task_id)
    const subtaskRows: SubtaskRow[] = await db`
      SELECT ${db.unsafe(SUBTASK_COLUMNS)} FROM subtasks
      WHERE task_id IN ${db(ids)}
      ORDER BY task_id, position`
    const byTask = new Map<string, Subtask[]>(ids.map((id) => [id, []]))
    for (const row of subtaskRows) byTask.get(row.task_id)?.push(toSubtask(row))
    return rows.map((row) => ({
      task_id: row.task_id,
      description: row.description,
      status: row.status,
      created_at: row.created_at,
      updated_at: row.updated_at,
      subtasks: byTask.get(row.task_id) ?? [],
    }))
  }

  getSubtask(subtaskId: string): Promise<Subtask | null> {
    return this.exclusive(async () => {
      const [row]: SubtaskRow[] = await this
        .sql`SELECT ${this.sql.unsafe(SUBTASK_COLUMNS)} FROM subtasks WHERE subtask_id = ${subtaskId}`
      return row ? toSubtask(row) : null
    })
  }

  /**
   * Two autocommitted statements, deliberately not one transaction: on PostgreSQL (READ
   * COMMITTED) the status read starts after this update committed, so whichever of several
   * concurrent sibling updates reads last sees all of them and reports the final task status.
   * Inside per-update transactions each would miss the others' uncommitted rows.
   */
  updateSubtask(subtaskId: string, patch: UpdateSubtask): Promise<SubtaskUpdate | null> {
    const changes: Record<string, string | null> = { updated_at: now() }
    if (patch.status !== undefined) changes.status = patch.status
    if (patch.worker_id !== undefined) changes.worker_id = patch.worker_id
    if (patch.worker_name !== undefined) changes.worker_name = patch.worker_name
    return this.exclusive(async () => {
      const [row]: SubtaskRow[] = await this.sql`
        UPDATE subtasks SET ${this.sql(changes)}
        WHERE subtask_id = ${subtaskId}
        RETURNING ${this.sql.unsafe(SUBTASK_COLUMNS)}`
      if (!row) return null
      const [task]: Array<{ status: Status }> = await this.sql`
        SELECT ${this.sql.unsafe(TASK_STATUS_SQL)} AS status FROM tasks t WHERE t.task_id = ${row.task_id}`
      if (!task) throw new Error(`Subtask ${subtaskId} belongs to no task`)
      return { subtask: toSubtask(row), task_status: task.status }
    })
  }

  async ping(): Promise<void> {
    try {
      await this.bounded(this.sql`SELECT 1 AS ok`)
    } catch (error) {
      throw isUnavailable(error) ? new StoreUnavailableError('Task database', error) : error
    }
  }

  async close(): Promise<void> {
    await this.queue
    await this.sql.close({ timeout: 5 })
  }
}
