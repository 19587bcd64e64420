// Server-sent events, as the streamable HTTP transport carries JSON-RPC messages in them: a
// reader that cuts a stream into events (bounded, so a server cannot make the enforcer hold an
// endless event) and the writer of one event.

export interface SseEvent {
  event?: string;
  id?: string;
  retry?: string;
  data: string;
}

export class SseLimitError extends Error {}

export class SseReader {
  readonly #maxEvent: number;
  #buffer = '';
  #event: { event?: string; id?: string; retry?: string; data: string[] } = { data: [] };
  #size = 0;

  constructor(maxEvent: number) {
    this.#maxEvent = maxEvent;
  }

  /** The events completed by this chunk of text. */
  push(text: string): SseEvent[] {
    this.#buffer += text;
    const events: SseEvent[] = [];
    for (;;) {
      const end = this.#buffer.search(/\r\n|\r|\n/);
      if (end < 0) break;
      const newline = this.#buffer.startsWith('\r\n', end) ? 2 : 1;
      // A lone \r at the end of a chunk may be the first half of \r\n: wait for the next one.
      if (this.#buffer[end] === '\r' && end + 1 === this.#buffer.length) break;
      const line = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + newline);
      const event = this.#line(line);
      if (event) events.push(event);
    }
    if (this.#buffer.length + this.#size > this.#maxEvent)
      throw new SseLimitError(`an event larger than ${this.#maxEvent} bytes`);
    return events;
  }

  #line(line: string): SseEvent | undefined {
    if (line === '') {
      const { data, ...fields } = this.#event;
      this.#event = { data: [] };
      this.#size = 0;
      return data.length === 0 ? undefined : { ...fields, data: data.join('\n') };
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    this.#size += value.length;
    if (this.#size > this.#maxEvent) throw new SseLimitError(`an event larger than ${this.#maxEvent} bytes`);
    if (field === 'data') this.#event.data.push(value);
    else if (field === 'event') this.#event.event = value;
    else if (field === 'id') this.#event.id = value;
    else if (field === 'retry') this.#event.retry = value;
    return undefined;
  }
}

/** One event as written to the agent; data is one JSON text (it has no raw newlines). */
export function sseEvent(data: string, fields: { event?: string; id?: string } = {}): string {
  let text = '';
  if (fields.id !== undefined) text += `id: ${fields.id.replace(/[\r\n]/g, '')}\n`;
  if (fields.event !== undefined) text += `event: ${fields.event.replace(/[\r\n]/g, '')}\n`;
  for (const line of data.split(/\r\n|\r|\n/)) text += `data: ${line}\n`;
  return `${text}\n`;
}
