import { tracingChannel } from 'node:diagnostics_channel'

/**
 * node-redis traces every command through diagnostics_channel unless the channel says it has
 * no subscribers; Bun's TracingChannel lacks `hasSubscribers` (Node has it), so without this
 * every command pays for tracing nobody listens to (bench/README.md has its cost).
 */
export function defineTracingHasSubscribers(): void {
  const proto = Object.getPrototypeOf(tracingChannel('tasklog')) as object
  if ('hasSubscribers' in proto) return
  Object.defineProperty(proto, 'hasSubscribers', {
    get(this: Record<'start' | 'end' | 'asyncStart' | 'asyncEnd' | 'error', { hasSubscribers: boolean }>) {
      return (
        this.start.hasSubscribers ||
        this.end.hasSubscribers ||
        this.asyncStart.hasSubscribers ||
        this.asyncEnd.hasSubscribers ||
        this.error.hasSubscribers
      )
    },
  })
}
