/**
 * The SDK's LogStreamClient following one task, reconnecting quickly, with what it saw: the ids of
 * the logs it received, in order, and the close codes of its connections.
 */
import { LogStreamClient } from '../../clients/ts/src'

export function sdkWatcher(wsUrl: string, taskId: string) {
  const stream = new LogStreamClient(wsUrl, { reconnect: { baseDelayMs: 20, maxDelayMs: 100 } })
  const received: string[] = []
  const closes: number[] = []
  stream.on('log', (log) => received.push(log.id))
  stream.on('close', ({ code }) => closes.push(code))
  /** Resolves at the first subscription. */
  const subscribed = new Promise((resolve) => stream.on('subscribed', resolve))
  stream.subscribe(taskId)
  return { stream, received, closes, subscribed }
}
