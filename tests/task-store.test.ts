import { SQL } from 'bun'
import { afterAll, afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { StoreUnavailableError } from '../src/store-errors'
import type { Status } from '../src/schemas/common'
import { InvalidCursorError, SqlTaskStore } from '../src/tasks/sql-task-store'

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

const tmp = mkdtempSync(join(tmpdir(), 'tasklog-store-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

/** A database the suite runs against; `fresh()` gives the URL of an empty one. */
interface Backend {
  name: string
  fresh(): Promise<string>
  /** Whether two stores opened on the same URL see the same data (not so for :memory:). */
  shared: boolean
}

let fileCount = 0
const backends: Backend[] = [
  { name: 'sqlite :memory:', fresh: async () => 'sqlite://:memory:', shared: false },
  { name: 'sqlite file', fresh: async () => `sqlite://${join(tmp, `db-${++fileCount}`, 'tasks.sqlite')}`, shared: true },
]

const pgUrl = process.env.TEST_DATABASE_URL
if (pgUrl) {
  // Each test gets a schema of its own (through `?search_path=`), dropped at the end, so the
  // suite neither sees nor disturbs other users of the database.
  const admin = new SQL(pgUrl)
  const schemas: string[] = []
  afterAll(async () => {
    for (const schema of schemas) await admin`DROP SCHEMA IF EXISTS ${admin(schema)} CASCADE`
    await admin.close()
  })
  backends.push({
    name: 'postgres',
    shared: true,
    fresh: async () => {
      const schema = `tasklog_test_${Bun.randomUUIDv7().replaceAll('-', '_')}`
      schemas.push(schema)
      await admin`CREATE SCHEMA ${admin(schema)}`
      const url = new URL(pgUrl)
      url.searchParams.set('search_path', schema)
      return url.toString()
    },
  })
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

for (const backend of backends) {
  describe(`SqlTaskStore on ${backend.name}`, () => {
    let url: string
    let store: SqlTaskStore
    const extra: SqlTaskStore[] = []

    beforeEach(async () => {
      url = await backend.fresh()
      store = await SqlTaskStore.open(url)
    })
    afterEach(async () => {
      for (const other of extra.splice(0)) await other.close()
      await store.close()
    })

    /** Creates tasks one after the other (distinct, increasing ids); returns them oldest first. */
    const createMany = async (n: number, subtasks = ['only step']) => {
      const tasks = []
      for (let i = 0; i < n; i++) tasks.push(await store.createTask(`task ${i}`, subtasks))
      return tasks
    }

    test('createTask returns the task with its subtasks at positions 0..n-1', async () => {
      const task = await store.createTask('Build and ship', ['build', 'test', 'ship'])
      expect(task.task_id).toMatch(UUID_V7)
      expect(task.description).toBe('Build and ship')
      expect(task.status).toBe('pending')
      expect(task.created_at).toMatch(ISO)
      expect(task.updated_at).toBe(task.created_at)
      expect(task.subtasks.map((s) => s.position)).toEqual([0, 1, 2])
      expect(task.subtasks.map((s) => s.description)).toEqual(['build', 'test', 'ship'])
      for (const subtask of task.subtasks) {
        expect(subtask.subtask_id).toMatch(UUID_V7)
        expect(subtask.task_id).toBe(task.task_id)
        expect(subtask.status).toBe('pending')
        expect(subtask.worker_id).toBeNull()
        expect(subtask.worker_name).toBeNull()
        expect(subtask.created_at).toMatch(ISO)
        expect(subtask.updated_at).toBe(subtask.created_at)
      }
      // What is read back is exactly what was returned, with the same key order.
      expect(await store.getTask(task.task_id)).toEqual(task)
    })

    test('createTask keeps order and text for many subtasks and special characters', async () => {
      const descriptions = Array.from({ length: 100 }, (_, i) => `step ${i} — 'quoted' "double" ; DROP TABLE tasks; ✓`)
      const task = await store.createTask('ünïcödé ✓ \n multi-line', descriptions)
      const read = await store.getTask(task.task_id)
      expect(read?.description).toBe('ünïcödé ✓ \n multi-line')
      expect(read?.subtasks.map((s) => s.description)).toEqual(descriptions)
      expect(read?.subtasks.map((s) => s.position)).toEqual(descriptions.map((_, i) => i))
    })

    test('createTask without subtasks is rejected', async () => {
      await expect(store.createTask('nothing to do', [])).rejects.toThrow(RangeError)
    })

    test('getTask and getSubtask of unknown ids give null', async () => {
      expect(await store.getTask(Bun.randomUUIDv7())).toBeNull()
      expect(await store.getSubtask(Bun.randomUUIDv7())).toBeNull()
      expect(await store.getTask('not-a-uuid')).toBeNull()
    })

    test('getSubtask returns one subtask', async () => {
      const task = await store.createTask('t', ['a', 'b'])
      const second = task.subtasks[1]!
      expect(await store.getSubtask(second.subtask_id)).toEqual(second)
    })

    test('updateSubtask changes only the given fields and bumps updated_at', async () => {
      const task = await store.createTask('t', ['a', 'b'])
      const first = task.subtasks[0]!
      await sleep(3)

      const started = await store.updateSubtask(first.subtask_id, {
        status: 'in_progress',
        worker_id: 'w-1',
        worker_name: 'builder',
      })
      expect(started?.subtask).toMatchObject({
        status: 'in_progress',
        worker_id: 'w-1',
        worker_name: 'builder',
        position: 0,
        description: 'a',
      })
      expect(started?.subtask.created_at).toBe(first.created_at)
      expect(started!.subtask.updated_at > first.updated_at).toBe(true)
      expect(started?.subtask.updated_at).toMatch(ISO)
      expect(started?.task_status).toBe('in_progress')

      // Absent keys stay as they are.
      await sleep(3)
      const renamed = await store.updateSubtask(first.subtask_id, { worker_name: 'builder-2' })
      expect(renamed?.subtask).toMatchObject({ status: 'in_progress', worker_id: 'w-1', worker_name: 'builder-2' })
      expect(renamed!.subtask.updated_at > started!.subtask.updated_at).toBe(true)

      // A key present with null clears the field.
      const cleared = await store.updateSubtask(first.subtask_id, { worker_id: null })
      expect(cleared?.subtask).toMatchObject({ status: 'in_progress', worker_id: null, worker_name: 'builder-2' })
      const both = await store.updateSubtask(first.subtask_id, { worker_id: undefined, worker_name: null })
      expect(both?.subtask).toMatchObject({ worker_id: null, worker_name: null })

      expect(await store.getSubtask(first.subtask_id)).toEqual(both!.subtask)
      // The sibling is untouched.
      expect(await store.getSubtask(task.subtasks[1]!.subtask_id)).toEqual(task.subtasks[1]!)
    })

    test('updateSubtask of an unknown subtask gives null and changes nothing', async () => {
      const task = await store.createTask('t', ['a'])
      expect(await store.updateSubtask(Bun.randomUUIDv7(), { status: 'completed' })).toBeNull()
      expect(await store.getTask(task.task_id)).toEqual(task)
    })

    describe('derived task status', () => {
      const cases: Array<{ rule: string; subtasks: Status[]; expected: Status }> = [
        { rule: 'all pending → pending', subtasks: ['pending', 'pending', 'pending'], expected: 'pending' },
        { rule: 'one in_progress → in_progress', subtasks: ['pending', 'in_progress', 'pending'], expected: 'in_progress' },
        {
          rule: 'some completed, rest pending → in_progress',
          subtasks: ['completed', 'pending', 'pending'],
          expected: 'in_progress',
        },
        {
          rule: 'completed and in_progress → in_progress',
          subtasks: ['completed', 'in_progress', 'completed'],
          expected: 'in_progress',
        },
        { rule: 'all completed → completed', subtasks: ['completed', 'completed', 'completed'], expected: 'completed' },
        { rule: 'any failed → failed (with pending)', subtasks: ['pending', 'failed', 'pending'], expected: 'failed' },
        {
          rule: 'any failed → failed (with completed and in_progress)',
          subtasks: ['completed', 'in_progress', 'failed'],
          expected: 'failed',
        },
      ]
      for (const { rule, subtasks, expected } of cases) {
        test(rule, async () => {
          const task = await store.createTask(
            't',
            subtasks.map((_, i) => `s${i}`),
          )
          let last: Status = 'pending'
          for (const [i, status] of subtasks.entries()) {
            if (status === 'pending') continue
            last = (await store.updateSubtask(task.subtasks[i]!.subtask_id, { status }))!.task_status
          }
          expect(last).toBe(expected)
          expect((await store.getTask(task.task_id))?.status).toBe(expected)
          const listed = await store.listTasks({ limit: 10 })
          expect(listed.tasks[0]?.status).toBe(expected)
          const filtered = await store.listTasks({ limit: 10, status: expected })
          expect(filtered.tasks.map((t) => t.task_id)).toEqual([task.task_id])
        })
      }

      test('status goes back when a subtask is reopened', async () => {
        const task = await store.createTask('t', ['a'])
        const id = task.subtasks[0]!.subtask_id
        expect((await store.updateSubtask(id, { status: 'completed' }))?.task_status).toBe('completed')
        expect((await store.updateSubtask(id, { status: 'pending' }))?.task_status).toBe('pending')
      })
    })

    test('task updated_at is the latest of created_at and its subtasks updated_at', async () => {
      const task = await store.createTask('t', ['a', 'b'])
      await sleep(3)
      const a = await store.updateSubtask(task.subtasks[0]!.subtask_id, { status: 'in_progress' })
      await sleep(3)
      const b = await store.updateSubtask(task.subtasks[1]!.subtask_id, { worker_name: 'x' })
      const read = await store.getTask(task.task_id)
      expect(read?.created_at).toBe(task.created_at)
      expect(read?.updated_at).toBe(b!.subtask.updated_at)
      expect(b!.subtask.updated_at > a!.subtask.updated_at).toBe(true)
      expect((await store.listTasks({ limit: 1 })).tasks[0]?.updated_at).toBe(b!.subtask.updated_at)
    })

    test('listTasks is newest first with subtasks in position order', async () => {
      const created = await createMany(5, ['one', 'two', 'three'])
      const page = await store.listTasks({ limit: 20 })
      expect(page.next_cursor).toBeNull()
      expect(page.tasks.map((t) => t.task_id)).toEqual(created.map((t) => t.task_id).reverse())
      expect(page.tasks).toEqual([...created].reverse())
      for (const task of page.tasks) expect(task.subtasks.map((s) => s.description)).toEqual(['one', 'two', 'three'])
    })

    test('listTasks on an empty store', async () => {
      expect(await store.listTasks({ limit: 5 })).toEqual({ tasks: [], next_cursor: null })
    })

    test('cursor pagination walks 3 pages with no duplicates and no gaps', async () => {
      const created = await createMany(8, ['a', 'b'])
      const expected = created.map((t) => t.task_id).reverse()
      const seen: string[] = []
      const sizes: number[] = []
      let cursor: string | undefined
      for (let i = 0; i < 10; i++) {
        const page: Awaited<ReturnType<typeof store.listTasks>> = await store.listTasks({ limit: 3, cursor })
        sizes.push(page.tasks.length)
        seen.push(...page.tasks.map((t) => t.task_id))
        for (const task of page.tasks) expect(task.subtasks).toHaveLength(2)
        if (page.next_cursor === null) break
        expect(page.next_cursor).toBe(page.tasks.at(-1)!.task_id)
        cursor = page.next_cursor
      }
      expect(sizes).toEqual([3, 3, 2])
      expect(seen).toEqual(expected)
      expect(new Set(seen).size).toBe(seen.length)
    })

    test('an exactly full last page has no next_cursor', async () => {
      await createMany(4)
      const first = await store.listTasks({ limit: 2 })
      expect(first.next_cursor).not.toBeNull()
      const second = await store.listTasks({ limit: 2, cursor: first.next_cursor! })
      expect(second.tasks).toHaveLength(2)
      expect(second.next_cursor).toBeNull()
    })

    test('tasks created between pages do not disturb the walk', async () => {
      const created = await createMany(4)
      const first = await store.listTasks({ limit: 2 })
      await createMany(3) // newer: they belong before the first page
      const second = await store.listTasks({ limit: 2, cursor: first.next_cursor! })
      expect([...first.tasks, ...second.tasks].map((t) => t.task_id)).toEqual(created.map((t) => t.task_id).reverse())
      expect(second.next_cursor).toBeNull()
    })

    test('status filter combines with pagination', async () => {
      const created = await createMany(9, ['a', 'b'])
      const done = new Set([1, 2, 4, 6, 7].map((i) => created[i]!.task_id))
      const running = created[3]!.task_id
      for (const task of created) {
        if (done.has(task.task_id)) {
          for (const subtask of task.subtasks) await store.updateSubtask(subtask.subtask_id, { status: 'completed' })
        }
      }
      await store.updateSubtask(created[3]!.subtasks[0]!.subtask_id, { status: 'in_progress' })

      const seen: string[] = []
      const sizes: number[] = []
      let cursor: string | undefined
      do {
        const page: Awaited<ReturnType<typeof store.listTasks>> = await store.listTasks({ status: 'completed', limit: 2, cursor })
        sizes.push(page.tasks.length)
        for (const task of page.tasks) expect(task.status).toBe('completed')
        seen.push(...page.tasks.map((t) => t.task_id))
        cursor = page.next_cursor ?? undefined
      } while (cursor)
      expect(sizes).toEqual([2, 2, 1])
      expect(seen).toEqual(
        created
          .map((t) => t.task_id)
          .filter((id) => done.has(id))
          .reverse(),
      )

      const pending = await store.listTasks({ status: 'pending', limit: 100 })
      expect(pending.tasks.map((t) => t.task_id)).toEqual(
        created
          .map((t) => t.task_id)
          .filter((id) => !done.has(id) && id !== running)
          .reverse(),
      )
      expect((await store.listTasks({ status: 'in_progress', limit: 100 })).tasks.map((t) => t.task_id)).toEqual([running])
      expect(await store.listTasks({ status: 'failed', limit: 100 })).toEqual({ tasks: [], next_cursor: null })
    })

    test('a malformed cursor is an InvalidCursorError', async () => {
      await createMany(2)
      for (const cursor of [
        '',
        'abc',
        "' OR 1=1 --",
        '01a21780-279f-7305-8556-bf786acaceb3x',
        '01a21780279f73058556bf786acaceb3',
      ]) {
        const attempt = store.listTasks({ limit: 5, cursor })
        await expect(attempt).rejects.toBeInstanceOf(InvalidCursorError)
        // The caller's mistake, with its path (the HTTP layer makes it a 422).
        await expect(attempt).rejects.toMatchObject({ problems: [{ path: '/cursor' }] })
      }
      // A well-formed cursor of no known task is fine: it is just a position.
      const beyond = await store.listTasks({ limit: 5, cursor: '00000000-0000-7000-8000-000000000000' })
      expect(beyond).toEqual({ tasks: [], next_cursor: null })
      // Case does not matter.
      const page = await store.listTasks({ limit: 1 })
      const next = await store.listTasks({ limit: 5, cursor: page.next_cursor!.toUpperCase() })
      expect(next.tasks).toHaveLength(1)
    })

    test('opening the same database twice is harmless (schema creation is idempotent)', async () => {
      const task = await store.createTask('before reopen', ['a'])
      const again = await SqlTaskStore.open(url)
      extra.push(again)
      const third = await SqlTaskStore.open(url)
      extra.push(third)
      if (backend.shared) {
        expect(await again.getTask(task.task_id)).toEqual(task)
        const other = await third.createTask('from the third handle', ['b'])
        expect(await store.getTask(other.task_id)).toEqual(other)
      }
    })

    test('20 concurrent updates of 20 sibling subtasks leave the task completed', async () => {
      const task = await store.createTask(
        'fan out',
        Array.from({ length: 20 }, (_, i) => `part ${i}`),
      )
      const results = await Promise.all(
        task.subtasks.map((subtask, i) =>
          store.updateSubtask(subtask.subtask_id, { status: 'completed', worker_id: `w${i}`, worker_name: `worker ${i}` }),
        ),
      )
      expect(results.every((r) => r?.subtask.status === 'completed')).toBe(true)
      // The update that read last saw every sibling: someone reports the final status.
      expect(results.some((r) => r?.task_status === 'completed')).toBe(true)
      const read = await store.getTask(task.task_id)
      expect(read?.status).toBe('completed')
      expect(read?.subtasks.map((s) => s.worker_id)).toEqual(task.subtasks.map((_, i) => `w${i}`))
    })

    test('concurrent creates, updates and reads: no transaction errors, no partial tasks', async () => {
      const seed = await store.createTask('seed', ['a', 'b'])
      const subtaskCounts: number[] = []
      const work: Promise<unknown>[] = []
      for (let i = 0; i < 20; i++) {
        work.push(store.createTask(`concurrent ${i}`, ['1', '2', '3', '4', '5']))
        work.push(
          store.listTasks({ limit: 100 }).then((page) => page.tasks.forEach((t) => subtaskCounts.push(t.subtasks.length))),
        )
        work.push(store.updateSubtask(seed.subtasks[i % 2]!.subtask_id, { worker_name: `w${i}` }))
      }
      await Promise.all(work)
      // Every task seen while others were being created was complete (the seed has 2).
      expect(subtaskCounts.every((n) => n === 5 || n === 2)).toBe(true)
      const all = await store.listTasks({ limit: 100 })
      expect(all.tasks).toHaveLength(21)
      for (const task of all.tasks) expect(task.subtasks).toHaveLength(task.task_id === seed.task_id ? 2 : 5)
    })

    test('a failing createTask rolls back alone and its error propagates', async () => {
      const other = await store.createTask('other', ['a'])
      // null violates NOT NULL on the second INSERT, after the task row was written.
      const failing = store.createTask('doomed', [null as unknown as string])
      const update = store.updateSubtask(other.subtasks[0]!.subtask_id, { worker_name: 'survivor' })
      await expect(failing).rejects.toThrow()
      await failing.catch(() => {})
      expect((await update)?.subtask.worker_name).toBe('survivor')
      // Nothing of the failed task remains, and the concurrent update was not rolled back with it.
      const all = await store.listTasks({ limit: 10 })
      expect(all.tasks.map((t) => t.description)).toEqual(['other'])
      expect((await store.getSubtask(other.subtasks[0]!.subtask_id))?.worker_name).toBe('survivor')
    })

    test('ping answers; after close, operations reject with StoreUnavailableError', async () => {
      expect(await store.ping()).toBeUndefined()
      const own = await SqlTaskStore.open(url)
      await own.close()
      await expect(own.ping()).rejects.toBeInstanceOf(StoreUnavailableError)
      await expect(own.getTask(Bun.randomUUIDv7())).rejects.toBeInstanceOf(StoreUnavailableError)
    })

    test('description names where tasks live without credentials', () => {
      expect(store.description).not.toContain('@')
      expect(store.description).toMatch(/^(sqlite:|postgres:\/\/)/)
    })
  })
}

describe('SqlTaskStore.open URLs', () => {
  test('a relative sqlite:// path is relative to the working directory; its folder is created', async () => {
    const folder = join(tmp, 'relative', 'nested', 'deeper')
    const rel = relative(process.cwd(), join(folder, 'tasklog.sqlite'))
    expect(rel.startsWith('/')).toBe(false)
    expect(existsSync(folder)).toBe(false)
    const store = await SqlTaskStore.open(`sqlite://${rel}`)
    try {
      expect(existsSync(join(folder, 'tasklog.sqlite'))).toBe(true)
      expect(store.description).toBe(`sqlite:${rel}`)
      const task = await store.createTask('t', ['a'])
      expect((await store.getTask(task.task_id))?.task_id).toBe(task.task_id)
    } finally {
      await store.close()
    }
  })

  test('sqlite:///absolute paths and sqlite://:memory:', async () => {
    const abs = join(tmp, 'absolute', 'x.sqlite')
    const store = await SqlTaskStore.open(`sqlite://${abs}`)
    expect(store.description).toBe(`sqlite:${abs}`)
    await store.close()
    expect(existsSync(abs)).toBe(true)
    const memory = await SqlTaskStore.open('sqlite://:memory:')
    expect(memory.description).toBe('sqlite::memory:')
    await memory.close()
  })

  test('postgres description drops credentials and parameters', async () => {
    // Nothing listens on port 1: open fails, as a StoreUnavailableError whose message holds no password.
    const attempt = SqlTaskStore.open('postgresql://user:secret@127.0.0.1:1/tasks?sslmode=disable')
    await expect(attempt).rejects.toBeInstanceOf(StoreUnavailableError)
    const error = await attempt.then(
      () => new Error('open should have failed'),
      (e: unknown) => e as Error,
    )
    expect(error.message).toContain('postgres://127.0.0.1:1/tasks')
    expect(error.message).not.toContain('secret')
  })

  test('unsupported URLs are rejected with a clear message', async () => {
    await expect(SqlTaskStore.open('mysql://localhost/db')).rejects.toThrow(/sqlite:\/\/ or postgres:\/\//)
    await expect(SqlTaskStore.open('sqlite://')).rejects.toThrow(/names no SQLite file/)
  })
})
