/**
 * Redis Cluster's key slots: the slot of a key, as Redis computes it (CRC16/XMODEM of its hash
 * tag, modulo 16384), and for each slot a short hash tag that lands in it, so that a key shared
 * by many tasks can have one copy per slot, beside the tasks of that slot (keys.ts archivePendingKey).
 */

export const SLOTS = 16384

/** CRC16/XMODEM (polynomial 0x1021, initial value 0) of each byte value, as a lookup table. */
const CRC_TABLE = (() => {
  const table = new Uint16Array(256)
  for (let i = 0; i < 256; i++) {
    let crc = i << 8
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1
    table[i] = crc & 0xffff
  }
  return table
})()

const crc16 = (bytes: Uint8Array, start: number, end: number): number => {
  let crc = 0
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ CRC_TABLE[((crc >> 8) ^ bytes[i]!) & 0xff]!
  return crc
}

const OPEN = 0x7b // {
const CLOSE = 0x7d // }

/**
 * The slot of `key`: of its hash tag when it has one (the bytes between its first `{` and the
 * first `}` after it, when there are any), else of the whole key.
 */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key)
  const open = bytes.indexOf(OPEN)
  const close = open === -1 ? -1 : bytes.indexOf(CLOSE, open + 1)
  return (close > open + 1 ? crc16(bytes, open + 1, close) : crc16(bytes, 0, bytes.length)) % SLOTS
}

const TAG_CHARACTERS = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ')

/** The first tag (1 to 3 letters or digits, in counting order) of each slot; built on first use. */
let tags: string[] | undefined

/** A hash tag whose slot is `slot`: `{<tag>}` in a key puts the key in that slot. */
export function slotTag(slot: number): string {
  tags ??= buildTags()
  return tags[slot]!
}

function buildTags(): string[] {
  const found = new Array<string>(SLOTS)
  let missing = SLOTS
  const base = TAG_CHARACTERS.length
  const digits = Buffer.alloc(3)
  // Tags of 1, then 2, then 3 characters, until every slot has one (by 3 they all do: tests/redis-cluster.test.ts).
  for (let length = 1; length <= digits.length && missing > 0; length++) {
    for (let n = 0; n < base ** length && missing > 0; n++) {
      for (let i = 0, rest = n; i < length; i++, rest = Math.floor(rest / base)) {
        digits[length - 1 - i] = TAG_CHARACTERS[rest % base]!
      }
      const slot = crc16(digits, 0, length) % SLOTS
      if (found[slot] === undefined) {
        found[slot] = digits.toString('latin1', 0, length)
        missing--
      }
    }
  }
  if (missing > 0) throw new Error(`no hash tag of up to ${digits.length} characters for ${missing} slots`)
  return found
}
