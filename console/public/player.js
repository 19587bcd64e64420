// A minimal asciicast v2 player: output frames rendered as text (control sequences dropped),
// with play/pause, speed and seek. Long pauses are shortened to 2 s, as `airlock sessions replay`.
const controlSequences =
  /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\r(?!\n)/g;

export function player(container, frames) {
  let at = 0;
  const output = [];
  let previous = 0;
  for (const [time, kind, data] of frames) {
    if (kind !== 'o') continue;
    at += Math.min(Math.max(time - previous, 0), 2);
    previous = time;
    output.push([at, data.replace(controlSequences, '')]);
  }
  const duration = output.length ? output[output.length - 1][0] : 0;
  container.innerHTML = `<div class="player"><button data-play>Play</button>
    <select data-speed><option value="0.5">0.5×</option><option value="1" selected>1×</option><option value="2">2×</option><option value="4">4×</option></select>
    <input type="range" min="0" max="${Math.ceil(duration * 1000)}" value="0" data-seek><span data-time></span></div>
    <pre class="terminal" data-screen></pre>`;
  const screen = container.querySelector('[data-screen]');
  const seek = container.querySelector('[data-seek]');
  const button = container.querySelector('[data-play]');
  const speed = container.querySelector('[data-speed]');
  const time = container.querySelector('[data-time]');
  let position = 0;
  let timer;
  const render = () => {
    screen.textContent = output
      .filter(([t]) => t <= position)
      .map(([, d]) => d)
      .join('');
    screen.scrollTop = screen.scrollHeight;
    seek.value = String(Math.round(position * 1000));
    time.textContent = `${position.toFixed(1)} / ${duration.toFixed(1)} s`;
  };
  const pause = () => {
    clearInterval(timer);
    timer = undefined;
    button.textContent = 'Play';
  };
  button.addEventListener('click', () => {
    if (timer) return pause();
    if (position >= duration) position = 0;
    button.textContent = 'Pause';
    let last = performance.now();
    timer = setInterval(() => {
      const now = performance.now();
      position = Math.min(duration, position + ((now - last) / 1000) * Number(speed.value));
      last = now;
      render();
      if (position >= duration) pause();
    }, 50);
  });
  seek.addEventListener('input', () => {
    position = Number(seek.value) / 1000;
    render();
  });
  render();
}
