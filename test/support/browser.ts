// Headless Chromium (Debian's package) driven through its DevTools protocol: one page, with
// navigation, script evaluation in the page, waiting for a condition, and screenshots.
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { temporaryDirectory } from './process.ts';

export const chromiumPath = '/usr/bin/chromium';

export interface Page {
  goto(url: string): Promise<void>;
  /** Evaluates an expression in the page (awaiting a promise) and returns its JSON value. */
  evaluate<T>(expression: string): Promise<T>;
  /** Polls an expression until it is truthy; returns its value. */
  waitFor<T>(expression: string, timeoutMs?: number): Promise<T>;
  screenshot(path: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * `trust`: base64 SHA-256 hashes of the public keys of test servers' own certificates, which
 * Chromium then accepts (and nothing else that its store does not trust).
 */
export async function openPage(options: { trust?: string[] } = {}): Promise<Page> {
  const profile = await temporaryDirectory('chromium');
  const browser = spawn(
    chromiumPath,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--remote-debugging-port=0',
      `--user-data-dir=${profile.path}`,
      ...(options.trust?.length ? [`--ignore-certificate-errors-spki-list=${options.trust.join(',')}`] : []),
      '--window-size=1280,800',
      'about:blank',
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise((resolve) => browser.once('exit', resolve));
  let endpoint: string | undefined;
  for (let i = 0; i < 300 && !endpoint; i++) {
    const text = await readFile(join(profile.path, 'DevToolsActivePort'), 'utf8').catch(() => '');
    const [port, path] = text.split('\n');
    if (port && path) endpoint = `ws://127.0.0.1:${port}${path}`;
    else await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (!endpoint) {
    browser.kill();
    throw new Error('chromium did not open its DevTools port within 30 s');
  }
  const socket = new WebSocket(endpoint);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error('could not connect to chromium'));
  });
  let next = 0;
  // biome-ignore lint/suspicious/noExplicitAny: DevTools replies are JSON whose shape each method defines.
  type Reply = any;
  const pending = new Map<number, { resolve: (v: Reply) => void; reject: (e: Error) => void }>();
  socket.onmessage = (message) => {
    const { id, result, error } = JSON.parse(String(message.data));
    const waiter = id === undefined ? undefined : pending.get(id);
    if (!waiter) return;
    pending.delete(id);
    if (error) waiter.reject(new Error(error.message));
    else waiter.resolve(result);
  };
  const send = (method: string, params: object = {}, sessionId?: string): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const id = ++next;
      pending.set(id, { resolve, reject });
      socket.send(JSON.stringify({ id, method, params, ...(sessionId && { sessionId }) }));
    });
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  const page = (method: string, params: object = {}) => send(method, params, sessionId);
  await page('Page.enable');
  await page('Emulation.setDeviceMetricsOverride', {
    width: 1280,
    height: 800,
    deviceScaleFactor: 1,
    mobile: false,
  });

  const evaluate = async <T>(expression: string): Promise<T> => {
    const { result, exceptionDetails } = await page('Runtime.evaluate', {
      expression,
      awaitPromise: true,
      returnByValue: true,
    });
    if (exceptionDetails)
      throw new Error(
        exceptionDetails.exception?.description ?? exceptionDetails.text ?? 'evaluation failed',
      );
    return result.value as T;
  };
  const opened: Page = {
    async goto(url) {
      await page('Page.navigate', { url });
      await opened.waitFor(
        `document.readyState === 'complete' && location.href.startsWith(${JSON.stringify(url.split('#')[0])})`,
      );
    },
    evaluate,
    async waitFor<T>(expression: string, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const value = await evaluate<T>(expression).catch(() => undefined);
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${expression}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    async screenshot(path) {
      const { data } = await page('Page.captureScreenshot', { format: 'png' });
      await writeFile(path, Buffer.from(data, 'base64'));
    },
    async close() {
      socket.close();
      browser.kill();
      await exited;
      await profile.remove();
    },
  };
  return opened;
}
