/**
 * Hostile input: what an attacker or a broken client can send over HTTP and WebSocket. Every
 * case asserts the precise answer (status and error shape, or error frame code) and that a
 * normal client is served right after; the stall cases run the server as a process of its
 * own, so that a blocked event loop shows as a late answer to a concurrent request.
 */
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import fc from 'fast-check'
import { LEVELS } from '../src/schemas/common'
import { ErrorBody } from '../src/schemas/error'
import { startRedis, type RedisServer } from './support/redis-server'
import { startServerProcess, type ServerProcess } from './support/server-process'
import { WsClient, createTask, json, post, sendLog, startServer, watch, type TestServer } from './support/server'

const DEPTH = 64
const NOT_JSON = 'Request body is not valid JSON'
const NOT_UTF8 = 'Request body is not valid UTF-8'
const NOT_JSON_TYPE = 'Content-Type must be application/json'

/** A log body nested exactly `depth` levels: the body object is level 1, `metadata` level 2, then objects. */
const nestedObjects = (depth: number) =>
  `{"level":"info","message":"deep","metadata":${'{"a":'.repeat(depth - 2)}{"leaf":1}${'}'.repeat(depth - 2)}}`

/** A log body nested exactly `depth` levels, arrays from level 3 on. */
const nestedArrays = (depth: number) =>
  `{"level":"info","message":"deep","metadata":{"a":${'['.repeat(depth - 2)}1${']'.repeat(depth - 2)}}}`

/** The body that stalled the server for seconds: `metadata` nested 60,000 deep, about 300 KiB. */
const stallBody = (d = 60_000) => `{"level":"info","message":"x","metadata":${'{"a":'.repeat(d)}1${'}'.repeat(d)}}`

/** A WebSocket action `{"action":[[[…]]]}` of 64 KiB at most (the frame limit). */
const stallAction = (d = 32_000) => `{"action":${'['.repeat(d)}${']'.repeat(d)}}`

/** The answer to a body nested deeper than `depth`. */
const tooDeep = (depth: number) => ({
  error: 'validation',
  message: `Request body nests deeper than ${depth} levels`,
  details: [{ path: '/', message: expect.any(String) }],
})

const errorBody = TypeCompiler.Compile(ErrorBody)

/** Sends raw bytes, with the given Content-Type (none when null). */
function send(
  url: string,
  body: string | Uint8Array<ArrayBuffer>,
  contentType: string | null = 'application/json',
  method = 'POST',
) {
  return fetch(url, { method, headers: contentType === null ? {} : { 'content-type': contentType }, body })
}

/** A JSON body with `bytes` spliced raw (not escaped) into the log's message. */
function withRawBytes(bytes: number[]): Uint8Array<ArrayBuffer> {
  const encoder = new TextEncoder()
  return new Uint8Array([...encoder.encode('{"level":"info","message":"a'), ...bytes, ...encoder.encode('b"}')])
}

/** A task's stored logs, newest first. */
async function historyOf(url: string, taskId: string): Promise<any[]> {
  const res = await fetch(`${url}/api/v1/tasks/${taskId}/logs?limit=1000`)
  expect(res.status).toBe(200)
  return (await json(res)).logs
}

/** Asserts an error in the contract's shape with this status and code; returns the body. */
async function expectError(res: Response, status: number, code: string, label?: unknown): Promise<any> {
  const body = await json(res)
  expect({ label, status: res.status, body }).toMatchObject({ label, status, body: { error: code } })
  expect(errorBody.Check(body)).toBe(true)
  expect(body.message.length).toBeGreaterThan(0)
  return body
}

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => redis.stop())

describe.each(['memory', 'redis'] as const)('hostile HTTP bodies (%s history)', (store) => {
  let server: TestServer
  let shallow: TestServer
  beforeAll(async () => {
    const env = { MAX_BODY_BYTES: String(1024 * 1024) }
    const redisUrl = store === 'redis' ? redis.url : undefined
    server = await startServer({ redisUrl, env })
    shallow = await startServer({ redisUrl, env: { ...env, MAX_JSON_DEPTH: '8' } })
  })
  afterAll(async () => {
    await server.stop()
    await shallow.stop()
  })

  /** A new task, its first subtask and log URL, and `servedAfter`: a normal log is stored and the history is as expected. */
  async function target(s = server) {
    const task = await createTask(s)
    const subtaskId = task.subtasks[0]!.subtask_id
    return {
      task,
      subtaskId,
      logUrl: `${s.url}/api/v1/subtasks/${subtaskId}/log`,
      /** A normal log is stored right after, and the history holds exactly `earlier` before it. */
      async servedAfter(earlier: string[] = []) {
        const ack = await sendLog(s, subtaskId, { level: 'info', message: 'normal client' })
        expect(ack.id).toBeString()
        const logs = await historyOf(s.url, task.task_id)
        expect(logs.map((l) => l.message)).toEqual(['normal client', ...earlier.toReversed()])
      },
    }
  }

  test('a body exactly MAX_JSON_DEPTH levels deep is stored; one level deeper is a 422 naming the limit', async () => {
    const { logUrl, servedAfter } = await target()
    for (const body of [nestedObjects(DEPTH), nestedArrays(DEPTH)]) expect((await send(logUrl, body)).status).toBe(201)
    const deeper = { objects: nestedObjects(DEPTH + 1), arrays: nestedArrays(DEPTH + 1), 'arrays 1000 deep': nestedArrays(1000) }
    for (const [shape, body] of Object.entries(deeper)) {
      const res = await send(logUrl, body)
      expect({ shape, status: res.status, body: await json(res) }).toEqual({ shape, status: 422, body: tooDeep(DEPTH) })
    }
    await servedAfter(['deep', 'deep'])
  })

  test('the configured MAX_JSON_DEPTH is the limit and is named in the message', async () => {
    const { logUrl, servedAfter } = await target(shallow)
    expect((await send(logUrl, nestedObjects(8))).status).toBe(201)
    const res = await send(logUrl, nestedObjects(9))
    expect(res.status).toBe(422)
    expect(await json(res)).toEqual(tooDeep(8))
    await servedAfter(['deep'])
  })

  test('every route with a body refuses deep nesting with the same 422', async () => {
    const { task, subtaskId, servedAfter } = await target()
    const deep = `${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}`
    const requests: [string, string, string][] = [
      ['POST', `${server.url}/api/v1/tasks`, `{"description":"deep","subtasks":${deep}}`],
      ['POST', `${server.url}/api/v1/subtasks/${subtaskId}/logs`, `{"logs":[${nestedObjects(DEPTH)}]}`],
      ['PATCH', `${server.url}/api/v1/subtasks/${subtaskId}`, `{"status":"in_progress","extra":${deep}}`],
    ]
    for (const [method, url, body] of requests) {
      const res = await send(url, body, 'application/json', method)
      expect({ method, url, status: res.status }).toEqual({ method, url, status: 422 })
      expect(await json(res)).toEqual(tooDeep(DEPTH))
    }
    // The PATCH changed nothing.
    const subtask = await json(await fetch(`${server.url}/api/v1/subtasks/${subtaskId}`))
    expect(subtask.status).toBe('pending')
    expect(subtask.task_id).toBe(task.task_id)
    await servedAfter()
  })

  test('brackets, braces and escaped quotes inside strings are not nesting', async () => {
    const { task, logUrl, servedAfter } = await target()
    const message = `${'[{'.repeat(3000)}\\"${'"'.repeat(10)}`
    const metadata = { [']}'.repeat(500)]: '{"a":['.repeat(500) }
    const res = await send(logUrl, JSON.stringify({ level: 'info', message, metadata }))
    expect(res.status).toBe(201)
    const [stored] = await historyOf(server.url, task.task_id)
    expect(stored.message).toBe(message)
    expect(stored.metadata).toEqual(metadata)
    await servedAfter([message])
  })

  test('invalid UTF-8 anywhere in a body is a 422 and nothing is stored', async () => {
    const { task, logUrl, servedAfter } = await target()
    const invalid = [
      [0xff], // never valid
      [0xc3, 0x28], // a lead byte followed by an ASCII byte
      [0xc0, 0xaf], // overlong encoding of '/'
      [0xed, 0xa0, 0x80], // an encoded surrogate (U+D800)
      [0xf4, 0x90, 0x80, 0x80], // past U+10FFFF
      [0xf0, 0x9f, 0x98], // a truncated four-byte sequence
      [0x80], // a lone continuation byte
    ]
    for (const bytes of invalid) {
      const res = await send(logUrl, withRawBytes(bytes))
      const body = await expectError(res, 422, 'validation', bytes)
      expect(body.message).toStartWith(NOT_UTF8)
    }
    // In a key, and in a task's description.
    const encoder = new TextEncoder()
    const inKey = new Uint8Array([
      ...encoder.encode('{"level":"info","message":"x","metadata":{"k'),
      0xfe,
      ...encoder.encode('":1}}'),
    ])
    expect((await expectError(await send(logUrl, inKey), 422, 'validation')).message).toStartWith(NOT_UTF8)
    const description = new Uint8Array([...encoder.encode('{"description":"bad '), 0xff, ...encoder.encode('"}')])
    const created = await send(`${server.url}/api/v1/tasks`, description)
    expect((await expectError(created, 422, 'validation')).message).toStartWith(NOT_UTF8)
    // Valid multi-byte UTF-8 sent raw is stored as sent.
    const valid = 'é 中文 😀 \u2028'
    expect((await send(logUrl, encoder.encode(JSON.stringify({ level: 'info', message: valid })))).status).toBe(201)
    expect((await historyOf(server.url, task.task_id)).map((l) => l.message)).toEqual([valid])
    await servedAfter([valid])
  })

  test('a body whose Content-Type is missing or not JSON is a 422 naming the header; JSON types are accepted', async () => {
    const { task, subtaskId, logUrl, servedAfter } = await target()
    const body = JSON.stringify({ level: 'info', message: 'typed' })
    const refused = [
      null,
      'text/plain',
      'text/plain;charset=UTF-8',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=----x',
    ]
    for (const contentType of refused) {
      for (const [method, url, payload] of [
        ['POST', logUrl, body],
        ['POST', `${server.url}/api/v1/tasks`, '{"description":"typed"}'],
        ['PATCH', `${server.url}/api/v1/subtasks/${subtaskId}`, '{"status":"failed"}'],
      ] as const) {
        const res = await send(url, payload, contentType, method)
        const error = await expectError(res, 422, 'validation', { contentType, method, url })
        expect(error.message).toStartWith(NOT_JSON_TYPE)
        expect(error.details[0].path).toBe('/headers/content-type')
      }
    }
    expect((await json(await fetch(`${server.url}/api/v1/subtasks/${subtaskId}`))).status).toBe('pending')
    expect(await historyOf(server.url, task.task_id)).toEqual([])
    const accepted = ['application/json; charset=utf-8', 'application/merge-patch+json', 'Application/JSON']
    for (const contentType of accepted) expect((await send(logUrl, body, contentType)).status).toBe(201)
    await servedAfter(['typed', 'typed', 'typed'])
  })

  test('malformed and truncated JSON is a 422 "not valid JSON"', async () => {
    const { logUrl, servedAfter } = await target()
    const malformed = [
      '{',
      '[',
      'nul',
      '{"level":"info","message":"x"',
      '{"level":"info","message":"x',
      '{"level":"info" "message":"x"}',
      "{'level':'info','message':'x'}",
      '{"level":"info","message":"x"}}',
      '{"level":"info","message":"x"} trailing',
      '{"level":"info","message":"\\x"}',
      '{"level":"info","message":"\\ud83"}',
      '{"level":"info","message":"x","metadata":{"n":01}}',
      '{"level":"info","message":"a\tb"}', // a raw control character inside a string
      'NaN',
      '{"level":"info","message":"x",}',
    ]
    for (const body of malformed) {
      const error = await expectError(await send(logUrl, body), 422, 'validation', body)
      expect({ body, message: error.message }).toEqual({ body, message: expect.stringMatching(new RegExp(`^${NOT_JSON}`)) })
    }
    await expectError(await send(logUrl, ''), 422, 'validation')
    await servedAfter()
  })

  test('wrong types are a 422 with the field path', async () => {
    const { logUrl, servedAfter } = await target()
    const wrong: [unknown, string][] = [
      [[], '/'],
      ['a string', '/'],
      [null, '/'],
      [42, '/'],
      [{ level: 5, message: 'x' }, '/level'],
      [{ level: 'info', message: ['x'] }, '/message'],
      [{ level: 'info', message: 'x', metadata: 'a string' }, '/metadata'],
      [{ level: 'info', message: 'x', metadata: [1, 2] }, '/metadata'],
      [{ level: 'info', message: 'x', timestamp: true }, '/timestamp'],
      [{ level: 'info', message: 'x', timestamp: 'yesterday' }, '/timestamp'],
    ]
    for (const [body, path] of wrong) {
      const error = await expectError(await send(logUrl, JSON.stringify(body)), 422, 'validation', body)
      expect({ body, paths: error.details?.map((d: any) => d.path) }).toEqual({ body, paths: expect.arrayContaining([path]) })
    }
    await servedAfter()
  })

  test('objects that shadow toString or valueOf: a 422 where a string is wanted, on every route; stored as sent in metadata', async () => {
    const { task, subtaskId, logUrl, servedAfter } = await target()
    const shadow = { toString: '', valueOf: 1 }
    const wrong: [string, unknown, string][] = [
      [logUrl, { level: 'info', message: [shadow] }, '/message'],
      [logUrl, { level: 'info', message: shadow }, '/message'],
      [logUrl, { level: shadow, message: 'x' }, '/level'],
      [logUrl, { level: 'info', message: 'x', timestamp: [{ toString: 'x' }] }, '/timestamp'],
      [`${logUrl}s`, { logs: [{ level: 'info', message: { valueOf: '' } }] }, '/logs/0/message'],
      [`${server.url}/api/v1/tasks`, { description: [shadow] }, '/description'],
    ]
    for (const [url, body, path] of wrong) {
      const error = await expectError(await send(url, JSON.stringify(body)), 422, 'validation', body)
      expect({ body, paths: error.details?.map((d: any) => d.path) }).toEqual({ body, paths: expect.arrayContaining([path]) })
    }
    const metadata = { toString: 'a', valueOf: { toString: [] }, nested: [{ valueOf: null }] }
    const ack = await sendLog(server, subtaskId, { level: 'info', message: 'shadowing metadata', metadata })
    const [stored] = await historyOf(server.url, task.task_id)
    expect(stored).toMatchObject({ id: ack.id, message: 'shadowing metadata', metadata })
    await servedAfter(['shadowing metadata'])
  })

  test('huge strings: a message over MAX_MESSAGE_BYTES is a 422, a body over MAX_BODY_BYTES a 413', async () => {
    const { task, logUrl, servedAfter } = await target()
    const limit = server.config.maxMessageBytes
    // Counted in UTF-8 bytes: a two-byte character makes the message one byte too long.
    const exact = 'x'.repeat(limit)
    expect((await post(logUrl, { level: 'info', message: exact })).status).toBe(201)
    await expectError(await post(logUrl, { level: 'info', message: `${'x'.repeat(limit - 1)}é` }), 422, 'validation')
    const metadata = { blob: 'm'.repeat(server.config.maxMetadataBytes) }
    await expectError(await post(logUrl, { level: 'info', message: 'x', metadata }), 422, 'validation')
    const huge = JSON.stringify({ level: 'info', message: 'h'.repeat(server.config.maxBodyBytes) })
    await expectError(await send(logUrl, huge), 413, 'payload_too_large')
    expect((await historyOf(server.url, task.task_id)).length).toBe(1)
    await servedAfter([exact])
  })

  test('control characters and lone surrogates in JSON strings are stored and read back exactly as sent', async () => {
    const { task, logUrl, servedAfter } = await target()
    const watcher = await watch(server, task.task_id)
    const controls = Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join('') + '\u007f\u0085'
    const messages = [controls, '\u0000', '\ud800', 'a\udfffb', '\udc00\ud800', '\ud83d', 'end\ud83d\ude00\ud800']
    for (const message of messages) {
      const metadata = { [`k\u0000${message}`]: message, nested: [message, { '\ud800': '\u0000' }] }
      // JSON.stringify escapes control characters and lone surrogates: `"\u0000"`, `"\ud800"`.
      const text = JSON.stringify({ level: 'info', message, metadata })
      expect(text).not.toContain('\u0000')
      const res = await send(logUrl, text)
      expect(res.status).toBe(201)
      const [stored] = await historyOf(server.url, task.task_id)
      expect(stored.message).toBe(message)
      expect(stored.metadata).toEqual(metadata)
      const [live] = await watcher.logs(1)
      expect(live.message).toBe(message)
      expect(live.metadata).toEqual(metadata)
    }
    watcher.close()
    await servedAfter(messages)
  })
})

describe('hostile WebSocket actions', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(() => server.stop())

  /** A connection watching a new task; `stillServed` checks it and a new client are served. */
  async function connection() {
    const task = await createTask(server)
    const client = await watch(server, task.task_id)
    return {
      task,
      client,
      async reply(message: unknown) {
        client.send(message)
        return client.next()
      },
      async stillServed() {
        client.send({ action: 'ping' })
        expect((await client.next()).type).toBe('pong')
        await sendLog(server, task.subtasks[0]!.subtask_id, { level: 'info', message: 'still served' })
        expect((await client.logs(1))[0].message).toBe('still served')
        client.close()
      },
    }
  }

  test('an action exactly MAX_JSON_DEPTH deep is answered; a deeper one gets invalid_message and the connection stays', async () => {
    const { reply, stillServed } = await connection()
    // The action object is level 1.
    expect((await reply(`{"action":"ping","x":${'['.repeat(DEPTH - 1)}${']'.repeat(DEPTH - 1)}}`)).type).toBe('pong')
    for (const deep of [
      `{"action":"ping","x":${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}}`,
      `{"action":"ping","x":${'{"a":'.repeat(DEPTH)}1${'}'.repeat(DEPTH)}}`,
      stallAction(2000),
    ]) {
      expect(await reply(deep)).toMatchObject({ type: 'error', data: { code: 'invalid_message' } })
    }
    await stillServed()
  })

  test('binary frames get invalid_message, even when they hold a valid action', async () => {
    const { client, stillServed } = await connection()
    for (const bytes of [new TextEncoder().encode('{"action":"ping"}'), new Uint8Array([0xff, 0x00, 0x01]), new Uint8Array()]) {
      client.socket.send(bytes)
      expect(await client.next()).toMatchObject({ type: 'error', data: { code: 'invalid_message' } })
    }
    await stillServed()
  })

  test('a task_id that is not a string gets a validation error frame in subscribe and unsubscribe', async () => {
    const { reply, stillServed } = await connection()
    const notStrings = ['5', '{}', '{"id":"x"}', '[]', 'true', 'null', `${'['.repeat(50)}${']'.repeat(50)}`]
    for (const action of ['subscribe', 'unsubscribe']) {
      for (const taskId of notStrings) {
        const frame = await reply(`{"action":"${action}","task_id":${taskId}}`)
        expect({ action, taskId, frame }).toMatchObject({
          action,
          taskId,
          frame: { type: 'error', data: { code: 'validation' } },
        })
      }
      // 10,000 deep in a frame under 64 KiB: past MAX_JSON_DEPTH as well as not a string, so
      // either refusal is right; what matters is an answer and an open connection.
      const deep = await reply(`{"action":"${action}","task_id":${'['.repeat(10_000)}${']'.repeat(10_000)}}`)
      expect(deep.type).toBe('error')
      expect(['validation', 'invalid_message']).toContain(deep.data.code)
    }
    await stillServed()
  })

  test('malformed JSON, unknown actions and missing fields get their error frames', async () => {
    const { task, reply, stillServed } = await connection()
    const cases: [unknown, string][] = [
      ['not json', 'invalid_message'],
      ['', 'invalid_message'],
      ['{"action":"ping"', 'invalid_message'],
      ['[1,2]', 'invalid_message'],
      ['null', 'invalid_message'],
      ['"ping"', 'invalid_message'],
      [{ action: 'dance' }, 'unknown_action'],
      [{ action: 5 }, 'unknown_action'],
      [{ action: '__proto__' }, 'unknown_action'],
      [{ task_id: task.task_id }, 'validation'],
      ['{"__proto__":{"action":"ping"}}', 'validation'],
      [{ action: 'subscribe' }, 'validation'],
      [{ action: 'unsubscribe' }, 'validation'],
      [{ action: 'subscribe', task_id: task.task_id, since: 5 }, 'validation'],
      [{ action: 'subscribe', task_id: task.task_id, history: -1 }, 'validation'],
      [{ action: 'subscribe', task_id: task.task_id, level: 'loud' }, 'validation'],
      [{ action: 'subscribe', task_id: 'not-a-uuid' }, 'not_found'],
    ]
    for (const [message, code] of cases) {
      const frame = await reply(message)
      expect({ message, frame }).toMatchObject({ message, frame: { type: 'error', data: { code } } })
    }
    await stillServed()
  })

  test('1,000 actions sent at once on one socket are all answered and the socket stays open', async () => {
    const { client, stillServed } = await connection()
    const actions = Array.from({ length: 1000 }, (_, i) =>
      i % 4 === 0 ? 'not json' : i % 4 === 1 ? '{"action":"dance"}' : '{"action":"ping"}',
    )
    for (const action of actions) client.send(action)
    const frames = []
    for (let i = 0; i < actions.length; i++) frames.push(await client.next(() => true, 10_000))
    expect(frames.filter((f) => f.type === 'pong').length).toBe(500)
    expect(frames.filter((f) => f.type === 'error').length).toBe(500)
    expect(client.socket.readyState).toBe(WebSocket.OPEN)
    await stillServed()
  })

  test('property: any JSON action gets exactly one answer frame and the connection stays open', async () => {
    const task = await createTask(server)
    const client = await WsClient.connect(`${server.wsUrl}/api/v1/ws/tasks/${task.task_id}/logs`)
    expect((await client.next()).type).toBe('subscribed')
    const taskIds = fc.oneof(fc.constant(task.task_id), fc.uuid(), fc.string({ unit: 'binary' }), fc.jsonValue())
    const action = fc.oneof(
      fc.jsonValue(),
      fc.record(
        {
          action: fc.oneof(fc.constantFrom('ping', 'subscribe', 'unsubscribe'), fc.jsonValue()),
          task_id: taskIds,
          since: fc.oneof(fc.constant('1-0'), fc.jsonValue()),
          history: fc.oneof(fc.nat(100), fc.jsonValue()),
          level: fc.oneof(fc.constantFrom(...LEVELS), fc.jsonValue()),
        },
        { requiredKeys: ['action'] },
      ),
      deepValue.map((value) => ({ action: 'ping', value })),
      deepTaskId,
    )
    await fc.assert(
      fc.asyncProperty(action, async (message) => {
        client.send(message)
        const answer = await client.next()
        expect(['pong', 'error', 'subscribed', 'unsubscribed']).toContain(answer.type)
        // Nothing else follows: the next frame answers the ping (the task has no logs to replay).
        client.send({ action: 'ping' })
        expect((await client.next()).type).toBe('pong')
      }),
      { numRuns: 300 },
    )
    expect(client.socket.readyState).toBe(WebSocket.OPEN)
    client.close()
  })
})

/** An action whose task_id is an array nested 1 to 30,000 deep, as text (a frame under 64 KiB). */
const deepTaskId = fc
  .tuple(fc.integer({ min: 1, max: 30_000 }), fc.constantFrom('ping', 'subscribe', 'unsubscribe'))
  .map(([depth, action]) => `{"action":"${action}","task_id":${'['.repeat(depth)}${']'.repeat(depth)}}`)

/** A log body whose metadata nests objects or arrays 1 to 70,000 deep, as text (JSON.stringify would recurse). */
const deepLogText = fc.tuple(fc.integer({ min: 1, max: 70_000 }), fc.boolean()).map(([depth, arrays]) => {
  const [open, close] = arrays ? ['[', ']'] : ['{"a":', '}']
  return `{"level":"info","message":"deep","metadata":{"a":${open.repeat(depth)}1${close.repeat(depth)}}}`
})

/** Arrays and objects nested 1 to 150 deep, around MAX_JSON_DEPTH. */
const deepValue = fc.tuple(fc.integer({ min: 1, max: 150 }), fc.boolean()).map(([depth, objects]) => {
  let value: unknown = 1
  for (let i = 0; i < depth; i++) value = objects ? { a: value } : [value]
  return value
})

describe('property: arbitrary JSON as a log body', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(() => server.stop())

  test('always a 201 that is stored as sent, or a 422 in the error shape', async () => {
    const task = await createTask(server)
    const logUrl = `${server.url}/api/v1/subtasks/${task.subtasks[0]!.subtask_id}/log`
    const text = fc.string({ unit: 'binary' })
    /** Mostly what the field takes, sometimes any JSON value. */
    const mostly = <T>(valid: fc.Arbitrary<T>) =>
      fc.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: fc.jsonValue(), weight: 1 })
    const fields = {
      level: mostly(fc.constantFrom(...LEVELS)),
      message: mostly(text),
      metadata: mostly(
        fc.oneof(
          fc.constant(null),
          fc.dictionary(text, fc.jsonValue()),
          deepValue.map((a) => ({ a })),
        ),
      ),
      timestamp: mostly(fc.date({ noInvalidDate: true }).map((d) => d.toISOString())),
    }
    // Any keys missing, or the required ones always there: a log that can be stored comes often
    // enough to count on below (about one body in six).
    const body = fc.oneof(
      fc.jsonValue(),
      fc.record(fields, { requiredKeys: [] }),
      fc.record(fields, { requiredKeys: ['level', 'message'] }),
    )
    const bodies = fc.oneof(
      { arbitrary: body.map((value) => JSON.stringify(value)), weight: 9 },
      { arbitrary: deepLogText, weight: 1 },
    )
    let stored = 0
    await fc.assert(
      fc.asyncProperty(bodies, async (bodyText) => {
        const res = await send(logUrl, bodyText)
        if (res.status === 201) {
          stored++
          const ack = await json(res)
          const sent = JSON.parse(bodyText)
          const [log] = await historyOf(server.url, task.task_id)
          expect(log).toMatchObject({ id: ack.id, level: sent.level, message: sent.message, metadata: sent.metadata ?? null })
        } else await expectError(res, 422, 'validation')
      }),
      { numRuns: 300 },
    )
    // The generator does reach the stored case.
    expect(stored).toBeGreaterThan(10)
    await sendLog(server, task.subtasks[0]!.subtask_id, { level: 'info', message: 'normal client' })
  })
})

describe('a server process under hostile load', () => {
  let remote: ServerProcess
  beforeAll(async () => {
    remote = await startServerProcess()
  })
  afterAll(() => remote.proc.stop('SIGKILL'))

  async function newTask(): Promise<{ taskId: string; subtaskId: string }> {
    const res = await post(`${remote.url}/api/v1/tasks`, { description: 'hostile load' })
    expect(res.status).toBe(201)
    const task = await json(res)
    return { taskId: task.task_id, subtaskId: task.subtasks[0].subtask_id }
  }

  /** Milliseconds until GET /health answers 200. */
  async function healthTime(): Promise<number> {
    const started = performance.now()
    const res = await fetch(`${remote.url}/health`)
    expect(res.status).toBe(200)
    return performance.now() - started
  }

  async function normalLog(subtaskId: string) {
    const res = await post(`${remote.url}/api/v1/subtasks/${subtaskId}/log`, { level: 'info', message: 'normal client' })
    expect(res.status).toBe(201)
  }

  async function metric(name: string): Promise<number> {
    const text = await (await fetch(`${remote.url}/metrics`)).text()
    return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1])
  }

  test('four deep bodies in parallel, of each shape: each a 422, /health answered meanwhile, a normal log stored after', async () => {
    const { subtaskId } = await newTask()
    const shapes = {
      'objects 60,000 deep (300 KiB)': stallBody(),
      // Just under 256 KiB, the most levels a body of that size holds.
      'arrays 130,000 deep (254 KiB)': nestedArrays(130_000),
      'objects 43,000 deep (252 KiB)': nestedObjects(43_000),
    }
    for (const [shape, body] of Object.entries(shapes)) {
      const hostile = Array.from({ length: 4 }, () => send(`${remote.url}/api/v1/subtasks/${subtaskId}/log`, body))
      await Bun.sleep(1) // let the hostile requests leave first
      // Generous: the stall this guards against lasted seconds.
      expect({ shape, inTime: (await healthTime()) < 500 }).toEqual({ shape, inTime: true })
      for (const res of await Promise.all(hostile)) {
        expect({ shape, status: res.status, body: await json(res) }).toEqual({ shape, status: 422, body: tooDeep(DEPTH) })
      }
    }
    await normalLog(subtaskId)
  })

  test('four 64 KiB nested WebSocket actions in parallel: each an error frame, /health answered meanwhile', async () => {
    const { taskId, subtaskId } = await newTask()
    const action = stallAction()
    expect(action.length).toBeLessThanOrEqual(64 * 1024)
    const clients = await Promise.all(
      Array.from({ length: 4 }, () => WsClient.connect(`${remote.wsUrl}/api/v1/ws/tasks/${taskId}/logs`)),
    )
    for (const client of clients) expect((await client.next()).type).toBe('subscribed')
    for (const client of clients) client.send(action)
    await Bun.sleep(1)
    expect(await healthTime()).toBeLessThan(500)
    for (const client of clients) {
      expect(await client.next()).toMatchObject({ type: 'error', data: { code: 'invalid_message' } })
      client.send({ action: 'ping' })
      expect((await client.next()).type).toBe('pong')
    }
    await normalLog(subtaskId)
    for (const client of clients) expect((await client.logs(1))[0].message).toBe('normal client')
    for (const client of clients) client.close()
  })

  test('2,000 WebSocket connections opened and dropped abruptly: the gauge returns and the server still serves', async () => {
    const { taskId, subtaskId } = await newTask()
    /** Polls the gauges until no connection or subscription is left (earlier tests' clients close asynchronously). */
    const settled = async () => {
      let gauges: number[] = []
      for (let i = 0; i < 100; i++, await Bun.sleep(50)) {
        gauges = [await metric('tasklog_websocket_connections'), await metric('tasklog_subscriptions')]
        if (gauges[0] === 0 && gauges[1] === 0) break
      }
      return gauges
    }
    expect(await settled()).toEqual([0, 0])
    const port = Number(new URL(remote.url).port)
    const upgrade =
      `GET /api/v1/ws/tasks/${taskId}/logs HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
      'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'
    /**
     * Opens a raw connection, asks for the upgrade, and drops it without a close frame: right
     * away, or once subscribed (the subscribed frame follows the 101). Resolves true when it was subscribed.
     */
    const dropOne = (afterUpgrade: boolean) =>
      new Promise<boolean>((resolve) => {
        let received = ''
        void Bun.connect({
          hostname: '127.0.0.1',
          port,
          socket: {
            open(socket) {
              socket.write(upgrade)
              if (!afterUpgrade) {
                resolve(false)
                socket.terminate()
              }
            },
            data(socket, chunk) {
              received += chunk.toString('latin1')
              if (received.includes('"subscribed"')) {
                resolve(true) // first: terminate() calls close() at once
                socket.terminate()
              }
            },
            close: () => resolve(false),
            error: () => resolve(false),
            connectError: () => resolve(false),
          },
        }).catch(() => resolve(false))
      })
    let subscribed = 0
    for (let burst = 0; burst < 8; burst++) {
      const results = await Promise.all(Array.from({ length: 250 }, (_, i) => dropOne(i % 2 === 0)))
      subscribed += results.filter(Boolean).length
    }
    // Every connection that waited for its subscription got it before it was dropped.
    expect(subscribed).toBe(1000)
    expect(await settled()).toEqual([0, 0])
    const watcher = await WsClient.connect(`${remote.wsUrl}/api/v1/ws/tasks/${taskId}/logs`)
    expect((await watcher.next()).type).toBe('subscribed')
    await normalLog(subtaskId)
    expect((await watcher.logs(1))[0].message).toBe('normal client')
    watcher.close()
  }, 30_000)

  test('malformed task ids and deep actions print no unhandled rejection', async () => {
    const { taskId, subtaskId } = await newTask()
    const client = await WsClient.connect(`${remote.wsUrl}/api/v1/ws/tasks/${taskId}/logs`)
    expect((await client.next()).type).toBe('subscribed')
    for (const action of ['subscribe', 'unsubscribe']) {
      for (const taskIdText of [`${'['.repeat(10_000)}${']'.repeat(10_000)}`, `${'['.repeat(40)}${']'.repeat(40)}`, '{}', '7']) {
        client.send(`{"action":"${action}","task_id":${taskIdText}}`)
        expect((await client.next()).type).toBe('error')
      }
    }
    client.socket.send(new Uint8Array([0xde, 0xad]))
    expect((await client.next()).type).toBe('error')
    await normalLog(subtaskId)
    expect((await client.logs(1))[0].message).toBe('normal client')
    client.close()
    // Errors reach the log on stdout; anything the runtime itself prints, stderr.
    const { stdout, stderr } = await remote.stop()
    expect(stdout + stderr).not.toContain('unhandled rejection')
    expect(stdout + stderr).not.toContain('RangeError')
    expect(stdout).not.toContain('"level":"error"')
  })
})
