// Node 24's Http2Stream corrupts string chunks written through writev (the
// HTTP/1 server writes its response head as a string and corks it with the
// body): the first bytes of the head arrive as garbage at the client. The
// native copy of a string chunk does not outlive the asynchronous HTTP/2
// write. Buffers are kept alive until the write completes, so an HTTP/1
// server writing into a tunnel stream gets its strings encoded first.
import type { Http2Stream } from 'node:http2';

type WriteCallback = (error?: Error | null) => void;
interface Chunk {
  chunk: unknown;
  encoding: BufferEncoding;
}

/** What Writable passes as the encoding of a Buffer chunk. */
const BUFFER = 'buffer' as BufferEncoding;

const toBuffer = (chunk: unknown, encoding: BufferEncoding): unknown => (typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk);

/** Encodes string chunks before `stream`'s own _write/_writev see them. */
export function bufferStringWrites(stream: Http2Stream): void {
  const write = stream._write.bind(stream);
  const writev = stream._writev?.bind(stream);
  stream._write = (chunk: unknown, encoding: BufferEncoding, callback: WriteCallback) => write(toBuffer(chunk, encoding), BUFFER, callback);
  if (writev) {
    stream._writev = (chunks: Chunk[], callback: WriteCallback) =>
      writev(chunks.map(({ chunk, encoding }) => ({ chunk: toBuffer(chunk, encoding), encoding: BUFFER })), callback);
  }
}
