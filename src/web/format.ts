import type { Status } from '../../clients/ts/src/types'

const pad = (n: number, width = 2) => String(n).padStart(width, '0')

/** `14:03:07.123` in the reader's time zone. */
export function clockTime(iso: string): string {
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
}

/** `2026-12-05 14:03` in the reader's time zone. */
export function dateTime(iso: string): string {
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`
}

export const STATUS_LABEL: Record<Status, string> = {
  pending: 'Pending',
  in_progress: 'In progress',
  completed: 'Completed',
  failed: 'Failed',
}

/** A finished task changes no more: every subtask completed, or one failed. */
export const finished = (status: Status): boolean => status === 'completed' || status === 'failed'
