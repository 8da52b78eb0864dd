import { describe, expect, test } from 'bun:test'
import type { StoredLog } from '../src/logs/backend'
import { DeliveryOrder } from '../src/logs/redis/delivery-order'

/**
 * The order of one connection's channel messages and replies (the feed's DeliveryOrder): what a
 * task's watchers receive, whatever order node-redis hands the two over in. The several-instances
 * tests exercise it through real instances.
 */
const logs = (...seqs: number[]): StoredLog[] => seqs.map((seq) => ({ id: `100-${seq}`, level: 'info', body: `{"n":${seq}}` }))

function order() {
  const delivered: string[] = []
  const feed = new DeliveryOrder(() => ({
    logs: (taskId, event) => delivered.push(...event.map((l) => `${taskId}:${l.id}`)),
    status: (taskId, data) => delivered.push(`${taskId}:status ${data}`),
    interrupted() {},
  }))
  return { feed, delivered }
}

describe('DeliveryOrder', () => {
  test('with no call pending, messages go out as they are read', () => {
    const { feed, delivered } = order()
    feed.published('t', logs(1, 2))
    feed.published('t', { status: 'done' })
    expect(delivered).toEqual(['t:100-1', 't:100-2', 't:status done'])
  })

  test("an answer's own logs go after the messages older than them and before the newer ones", () => {
    const { feed, delivered } = order()
    const settle = feed.expect('t')
    feed.published('t', logs(1, 2))
    feed.published('t', logs(5))
    feed.published('u', logs(9)) // another task waits for nothing
    expect(delivered).toEqual(['u:100-9'])
    settle({ logs: logs(3, 4) })
    expect(delivered).toEqual(['u:100-9', 't:100-1', 't:100-2', 't:100-3', 't:100-4', 't:100-5'])
  })

  test('answers are taken in the order their calls were sent', () => {
    const { feed, delivered } = order()
    const first = feed.expect('t')
    const second = feed.expect('t')
    feed.published('t', logs(3))
    second({ logs: logs(4) })
    expect(delivered).toEqual([])
    first({ logs: logs(1, 2) })
    expect(delivered).toEqual(['t:100-1', 't:100-2', 't:100-3', 't:100-4'])
  })

  test('an answer that saw a newest id releases the messages up to it; the rest wait for the next call', () => {
    const { feed, delivered } = order()
    const published = feed.expect('t')
    const later = feed.expect('t')
    feed.published('t', logs(1))
    feed.published('t', { status: 'running' })
    feed.published('t', logs(2))
    feed.published('t', logs(3))
    published({ through: '100-2' })
    expect(delivered).toEqual(['t:100-1', 't:status running', 't:100-2'])
    later({ logs: logs(4) })
    expect(delivered).toEqual(['t:100-1', 't:status running', 't:100-2', 't:100-3', 't:100-4'])
  })

  test('a failed call releases nothing by itself; once no call is pending, everything held goes out in order', () => {
    const { feed, delivered } = order()
    const failed = feed.expect('t')
    const pending = feed.expect('t')
    feed.published('t', logs(1))
    failed(undefined)
    expect(delivered).toEqual([])
    pending(undefined)
    expect(delivered).toEqual(['t:100-1'])
    feed.published('t', logs(2))
    expect(delivered).toEqual(['t:100-1', 't:100-2'])
  })

  test('after clear (the connection was lost), answers and held messages deliver nothing', () => {
    const { feed, delivered } = order()
    const settle = feed.expect('t')
    feed.published('t', logs(1))
    feed.clear()
    settle({ logs: logs(2) })
    expect(delivered).toEqual([])
    feed.published('t', logs(3))
    expect(delivered).toEqual(['t:100-3'])
  })
})
