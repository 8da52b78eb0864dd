/**
 * The archive: logs kept in the task store's database (SQLite or PostgreSQL, through Bun.SQL)
 * for ARCHIVE_DAYS, in one table keyed by task and log id. The id's two numbers are two
 * columns (ms, the write time, and seq), so ids sort as numbers and retention deletes by ms.
 * Writes are idempotent (ON CONFLICT DO NOTHING): an archiver that stored a batch and died
 * before moving its cursor stores it again harmlessly.
 */
import type { SQL } from 'bun'
import { LEVELS, levelRank, type Level } from '../schemas/common'
import { parseLogId, type LogIdParts } from '../../clients/ts/src/log-id'
import { SCHEMA_LOCK_KEY, boundedSql, parseDatabaseUrl, type Dialect } from '../tasks/sql-task-store'
import type { StoredLog } from '../logs/backend'
import { StoreUnavailableError } from '../store-errors'
import { withTimeout } from '../timeout'

const SCHEMA_SQL = [
  `CREATE TABLE IF NOT EXISTS logs (
    task_id TEXT NOT NULL,
    ms BIGINT NOT NULL,
    seq INTEGER NOT NULL,
    level TEXT NOT NULL,
    subtask_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (task_id, ms, seq)
  )`,
  // Serves retention, which deletes the oldest logs of every task.
  `CREATE INDEX IF NOT EXISTS logs_ms ON logs (ms)`,
]

/** What an archive read selects, as HistoryQuery plus an upper bound. */
export interface ArchiveQuery {
  limit: number
  order: 'asc' | 'desc'
  /** Only ids strictly greater. */
  since?: string
  /** Only ids strictly smaller. */
  before?: string
  minLevel?: Level
  subtaskId?: string
}

/** PostgreSQL's SQLSTATE for a duplicate key. */
const UNIQUE_VIOLATION = '23505'
const NEWLINE = 0x0a

interface Row {
  ms: number | string | bigint
  seq: number | string
  level: Level
  body: string
}

export class LogArchive {
  private constructor(
    private readonly sql: SQL,
    private readonly dialect: Dialect,
    readonly description: string,
    private readonly timeoutMs: number,
  ) {}

  /** Connects with a connection of its own and creates the table if missing (what an existing database takes on start-up). */
  static async open(databaseUrl: string, timeoutMs: number): Promise<LogArchive> {
    const target = parseDatabaseUrl(databaseUrl)
    const sql = target.connect()
    const archive = new LogArchive(sql, target.dialect, target.description, timeoutMs)
    try {
      const wait = Math.max(5000, timeoutMs)
      await withTimeout(archive.createSchema(), wait, `no answer within ${wait} ms`)
      return archive
    } catch (error) {
      await sql.close({ timeout: 0 }).catch(() => {})
      throw new StoreUnavailableError(`Log archive (${target.description})`, error)
    }
  }

  private async createSchema(): Promise<void> {
    if (this.dialect === 'sqlite') {
      await this.sql`PRAGMA busy_timeout = 5000`
      await this.sql`PRAGMA journal_mode = WAL`
      for (const statement of SCHEMA_SQL) await this.sql.unsafe(statement)
      return
    }
    // The task store's lock: instances starting together create the schema one at a time.
    await this.sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK_KEY})`
      for (const statement of SCHEMA_SQL) await tx.unsafe(statement)
    })
  }

  /**
   * Stores a task's logs, given as ArchiveBatch rows (backend.ts: `<id>\t<body>` lines); those
   * already stored are left as they are. One statement whatever the count, with the lines as one
   * parameter the database takes apart: no row is built in JS. A log's subtask and level are its
   * body's `"subtask_id"` and `"level"`, the body's second and third keys (encode.ts), so the
   * first of each in the text is the log's own.
   */
  insert(taskId: string, rows: Buffer): Promise<void> {
    return this.bounded(async () => {
      if (this.dialect === 'sqlite') return this.insertSqlite(taskId, rows)
      // A plain INSERT, which PostgreSQL checks against the key only as it adds each row: ON
      // CONFLICT's speculative insertion checks first and confirms each row after. A batch
      // stored before (by an archiver that died before moving its cursor) fails as a whole,
      // and is then stored skipping the rows already there.
      try {
        await this.insertPostgres(taskId, rows, false)
      } catch (error) {
        if ((error as { errno?: unknown }).errno !== UNIQUE_VIOLATION) throw error
        await this.insertPostgres(taskId, rows, true)
      }
    })
  }

  /** The lines split in C (string_to_table, split_part): no JSON is parsed, no row escaped. */
  private async insertPostgres(taskId: string, rows: Buffer, skipStored: boolean): Promise<void> {
    const sql = this.sql
    await sql`
      INSERT INTO logs (task_id, ms, seq, level, subtask_id, body)
      SELECT ${taskId}, split_part(id, '-', 1)::bigint, split_part(id, '-', 2)::integer,
        split_part(split_part(body, '"level":"', 2), '"', 1),
        split_part(split_part(body, '"subtask_id":"', 2), '"', 1), body
      FROM (
        SELECT split_part(line, E'\t', 1) AS id, split_part(line, E'\t', 2) AS body
        FROM string_to_table(convert_from(${rows}, 'UTF8'), E'\n') AS line
      ) AS r
      ${skipStored ? sql`ON CONFLICT DO NOTHING` : sql``}`
  }

  /**
   * SQLite has no function that splits a text: each line is cut out of the bytes (a blob, whose
   * substr counts bytes) by its start and length, which a JSON array of pairs gives.
   */
  private async insertSqlite(taskId: string, rows: Buffer): Promise<void> {
    const spans: string[] = []
    for (let start = 0; start < rows.length; ) {
      const end = rows.indexOf(NEWLINE, start)
      const stop = end === -1 ? rows.length : end
      spans.push(`[${start + 1},${stop - start}]`)
      start = stop + 1
    }
    // WHERE true: SQLite's parser needs it before an upsert's ON CONFLICT.
    await this.sql`
      INSERT INTO logs (task_id, ms, seq, level, subtask_id, body)
      SELECT ${taskId}, CAST(substr(id, 1, instr(id, '-') - 1) AS INTEGER), CAST(substr(id, instr(id, '-') + 1) AS INTEGER),
        body->>'level', body->>'subtask_id', body
      FROM (
        SELECT substr(line, 1, instr(line, char(9)) - 1) AS id, substr(line, instr(line, char(9)) + 1) AS body
        FROM (SELECT CAST(substr(${rows}, value->>0, value->>1) AS TEXT) AS line FROM json_each(${`[${spans.join(',')}]`}))
      ) WHERE true
      ON CONFLICT DO NOTHING`
  }

  read(taskId: string, q: ArchiveQuery): Promise<StoredLog[]> {
    if (q.limit <= 0) return Promise.resolve([])
    const sql = this.sql
    const after = (id: LogIdParts) => sql`AND ms >= ${id.ms} AND (ms > ${id.ms} OR seq > ${id.seq})`
    const before = (id: LogIdParts) => sql`AND ms <= ${id.ms} AND (ms < ${id.ms} OR seq < ${id.seq})`
    const since = q.since === undefined ? undefined : parseLogId(q.since)
    const until = q.before === undefined ? undefined : parseLogId(q.before)
    const levels = q.minLevel ? LEVELS.slice(levelRank(q.minLevel)) : undefined
    const dir = sql.unsafe(q.order === 'asc' ? 'ASC' : 'DESC')
    return this.bounded(async () => {
      const rows: Row[] = await sql`
        SELECT ms, seq, level, body FROM logs
        WHERE task_id = ${taskId} ${since ? after(since) : sql``} ${until ? before(until) : sql``}
          ${levels ? sql`AND level IN ${sql(levels)}` : sql``}
          ${q.subtaskId === undefined ? sql`` : sql`AND subtask_id = ${q.subtaskId}`}
        ORDER BY ms ${dir}, seq ${dir}
        LIMIT ${Math.floor(q.limit)}`
      return rows.map((r) => ({ id: `${r.ms}-${r.seq}`, level: r.level, body: r.body }))
    })
  }

  /** Whether the archive holds any log of the task. */
  holds(taskId: string): Promise<boolean> {
    return this.bounded(async () => (await this.sql`SELECT 1 AS one FROM logs WHERE task_id = ${taskId} LIMIT 1`).length > 0)
  }

  /** Deletes at most `limit` logs written before `cutoffMs`; returns how many. */
  deleteBefore(cutoffMs: number, limit: number): Promise<number> {
    return this.bounded(async () => {
      const result = await this.sql`
        DELETE FROM logs WHERE (task_id, ms, seq) IN (
          SELECT task_id, ms, seq FROM logs WHERE ms < ${cutoffMs} LIMIT ${limit})`
      return Number((result as unknown as { count?: number }).count ?? 0)
    })
  }

  async close(): Promise<void> {
    await this.sql.close({ timeout: 5 })
  }

  /** Fails within timeoutMs (the query may still finish later); a database out of reach is StoreUnavailableError. */
  private bounded<T>(fn: () => Promise<T>): Promise<T> {
    return boundedSql('Log archive', this.timeoutMs, fn())
  }
}
