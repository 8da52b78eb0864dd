/**
 * A minimal WebSocket client over `node:net`, for the bench's 100,000 watchers (scenario g).
 *
 * Hand-written because Bun's `WebSocket` (and the `ws` module it stands in for) cannot bind a
 * source address, and loopback offers only about 28,000 ephemeral ports per source address:
 * `net.connect({ localAddress })` spreads the sockets over several `127.x.y.z`. It does only
 * what a watcher needs: the upgrade request, unmasked text frames from the server (any length,
 * split across reads or several in one), pongs to the server's pings, and close frames.
 * Fragmented messages are reported as unreadable rather than reassembled: the servers under
 * test never fragment.
 */
import net from 'node:net'

export interface RawWebSocketHandlers {
  /** One text message. */
  text(data: string): void
  /** The connection ended: the server's close code and reason, or why it failed. */
  closed(code: number, reason: string): void
}

const OP_TEXT = 0x1
const OP_CLOSE = 0x8
const OP_PING = 0x9
const HEADERS_END = Buffer.from('\r\n\r\n')

/** A client frame must be masked; an all-zero mask leaves the payload as it is. */
function maskedFrame(opcode: number, payload: Buffer): Buffer {
  const head = Buffer.from([0x80 | opcode, 0x80 | payload.length, 0, 0, 0, 0])
  return Buffer.concat([head, payload])
}

export class RawWebSocket {
  private readonly socket: net.Socket
  private upgraded = false
  /** Bytes of an incomplete response head or frame, kept until the rest arrives. */
  private pending: Buffer | undefined
  private ended = false

  constructor(
    opts: { host: string; port: number; path: string; localAddress: string },
    private readonly on: RawWebSocketHandlers,
  ) {
    this.socket = net.connect({ host: opts.host, port: opts.port, localAddress: opts.localAddress }, () => {
      this.socket.write(
        `GET ${opts.path} HTTP/1.1\r\nHost: ${opts.host}:${opts.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      )
    })
    this.socket.on('data', (chunk: Buffer) => this.read(chunk))
    this.socket.on('error', (err) => this.end(1006, err.message))
    this.socket.on('close', () => this.end(1006, 'connection closed'))
  }

  /** Closes without waiting for the server's answer. */
  close(): void {
    this.ended = true
    this.socket.destroy()
  }

  private end(code: number, reason: string): void {
    if (this.ended) return
    this.ended = true
    this.socket.destroy()
    this.on.closed(code, reason)
  }

  private read(chunk: Buffer): void {
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk
    this.pending = undefined
    if (!this.upgraded) {
      const headEnd = buf.indexOf(HEADERS_END)
      if (headEnd < 0) {
        this.pending = buf
        return
      }
      const status = buf.toString('latin1', 0, buf.indexOf('\r\n'))
      if (!status.startsWith('HTTP/1.1 101')) return this.end(1006, `upgrade refused: ${status}`)
      this.upgraded = true
      buf = buf.subarray(headEnd + HEADERS_END.length)
    }
    let at = 0
    while (!this.ended && buf.length - at >= 2) {
      const fin = buf[at]! & 0x80
      const opcode = buf[at]! & 0x0f
      let length = buf[at + 1]! & 0x7f
      let start = at + 2
      if (length === 126) {
        if (buf.length < start + 2) break
        length = buf.readUInt16BE(start)
        start += 2
      } else if (length === 127) {
        if (buf.length < start + 8) break
        length = Number(buf.readBigUInt64BE(start))
        start += 8
      }
      if (buf.length < start + length) break
      const payload = buf.subarray(start, start + length)
      at = start + length
      if (!fin) return this.end(1002, 'fragmented message')
      if (opcode === OP_TEXT) this.on.text(payload.toString('utf8'))
      else if (opcode === OP_PING) this.socket.write(maskedFrame(0xa, payload))
      else if (opcode === OP_CLOSE)
        return this.end(payload.length >= 2 ? payload.readUInt16BE(0) : 1005, payload.toString('utf8', 2))
    }
    if (at < buf.length) this.pending = Buffer.from(buf.subarray(at))
  }
}
