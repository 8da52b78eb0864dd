import { TasklogApi } from '../../clients/ts/src/api'
import { LogStreamClient } from '../../clients/ts/src/log-stream-client'
import type { Level } from '../../clients/ts/src/types'

/**
 * Where the viewer reaches the server: the page's own origin, for HTTP and WebSocket alike.
 * Every request and stream of the viewer is made here, so credentials have one place to go.
 */
const origin = location.origin

export const api = new TasklogApi(origin)

/** A stream of task logs and status changes: only logs of `level` and above. */
export const openStream = (level?: Level) => new LogStreamClient(origin, { level })
