// Page wiring of the AGORA-M viewer: orbit camera (mouse/touch), sliders, sequence playback, frame-time
// readout, and the test hooks on `window.agora`. URL options: ?ui=0 (canvas only), ?autoplay=0, ?k=N.
import { AgoraViewer, orbitCamera } from './viewer.js';

const url = new URLSearchParams(location.search);
const canvas = document.getElementById('canvas');
const $ = (id) => document.getElementById(id);
if (url.get('ui') === '0') document.body.classList.add('bare');

const state = { viewer: null, expr: new Array(50).fill(0), jaw: [0, 0, 0], eyelids: [0, 0], orbit: null,
  manualCamera: false, playing: url.get('autoplay') !== '0', seq: null, seqStart: 0, benchmarking: false, sliders: [] };
const yieldTask = () => new Promise((r) => { const c = new MessageChannel(); c.port1.onmessage = () => r(); c.port2.postMessage(0); });

function fitCamera() {  // interactive: orbit camera filling the window
  if (state.manualCamera) return;
  const w = window.innerWidth, h = window.innerHeight;
  state.viewer.setCamera(orbitCamera(state.orbit, w, h));
}

function applyParams() { state.viewer.setParams(state.expr, state.jaw, state.eyelids); }

function slider(parent, label, min, max, get, set) {
  const row = document.createElement('label');
  row.innerHTML = `<span>${label}</span><input type="range" min="${min}" max="${max}" step="0.01"><span></span>`;
  const [input, value] = [row.children[1], row.children[2]];
  const show = () => { input.value = get(); value.textContent = Number(get()).toFixed(2); };
  input.addEventListener('input', () => { set(Number(input.value)); state.playing = false; $('play').textContent = 'Play'; applyParams(); show(); });
  show();
  state.sliders.push(show);
  $(parent).appendChild(row);
}

function buildUi(m) {
  $('info').textContent = `${m.num_gaussians.toLocaleString()} Gaussians · K=${state.viewer.kUsed}`;
  for (let i = 0; i < 10; ++i) slider('expr', `ψ${i + 1}`, -3, 3, () => state.expr[i], (v) => { state.expr[i] = v; });
  ['pitch (open)', 'yaw', 'roll'].forEach((name, i) => slider('jaw', name, i === 0 ? -0.1 : -0.2, i === 0 ? 0.5 : 0.2,
    () => state.jaw[i], (v) => { state.jaw[i] = v; }));
  ['left', 'right'].forEach((name, i) => slider('eyelids', name, 0, 1, () => state.eyelids[i], (v) => { state.eyelids[i] = v; }));
  $('play').textContent = state.playing ? 'Pause' : 'Play';
  $('play').onclick = () => { state.playing = !state.playing && !!state.seq; state.seqStart = performance.now(); $('play').textContent = state.playing ? 'Pause' : 'Play'; };
  $('reset').onclick = () => { state.expr.fill(0); state.jaw.fill(0); state.eyelids.fill(0); state.playing = false; applyParams(); state.sliders.forEach((f) => f()); };
  $('seqfile').onchange = async (e) => { if (e.target.files[0]) setSequence(JSON.parse(await e.target.files[0].text())); };
}

function setSequence(seq) {  // the authors' web-demo format: {num_frames, params_dim: 55, fps, frames: [[55]]}
  if (seq.params_dim !== 55 || !Array.isArray(seq.frames)) throw new Error('driving sequence: expected params_dim 55 and frames');
  state.seq = seq;
  state.seqStart = performance.now();
}

function seqFrame(i) { return Float32Array.from(state.seq.frames[i % state.seq.frames.length]); }

function orbitControls() {
  const pointers = new Map();
  let pinch = 0;
  canvas.addEventListener('pointerdown', (e) => { canvas.setPointerCapture(e.pointerId); pointers.set(e.pointerId, [e.clientX, e.clientY]); });
  const up = (e) => { pointers.delete(e.pointerId); pinch = 0; };
  canvas.addEventListener('pointerup', up);
  canvas.addEventListener('pointercancel', up);
  canvas.addEventListener('pointermove', (e) => {
    if (!pointers.has(e.pointerId)) return;
    const [x0, y0] = pointers.get(e.pointerId);
    pointers.set(e.pointerId, [e.clientX, e.clientY]);
    state.manualCamera = false;
    if (pointers.size === 1) {
      state.orbit.yaw -= (e.clientX - x0) * 0.006;
      state.orbit.pitch = Math.max(-1.4, Math.min(1.4, state.orbit.pitch + (e.clientY - y0) * 0.006));
    } else if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      const d = Math.hypot(a[0] - b[0], a[1] - b[1]);
      if (pinch) state.orbit.radius = Math.max(0.1, state.orbit.radius * pinch / d);
      pinch = d;
    }
    fitCamera();
  });
  canvas.addEventListener('wheel', (e) => { e.preventDefault(); state.manualCamera = false; state.orbit.radius *= Math.exp(e.deltaY * 0.001); fitCamera(); }, { passive: false });
  window.addEventListener('resize', fitCamera);
}

let lastReadout = 0, rafFrames = 0, rafStart = performance.now();
function loop(now) {
  requestAnimationFrame(loop);
  if (state.benchmarking) return;
  if (state.playing && state.seq) {
    const i = Math.floor((now - state.seqStart) / 1000 * state.seq.fps);
    state.viewer.setParamVector(seqFrame(i));
  }
  state.viewer.step();
  rafFrames++;
  if (now - lastReadout > 500) {
    const s = state.viewer.frameStats();
    const fps = 1000 * rafFrames / (now - rafStart);
    const gpu = s.gpu_median_ms === null ? 'n/a' : `${s.gpu_median_ms.toFixed(2)} ms`;
    $('readout').textContent = `frame: GPU ${gpu} · CPU ${s.median_ms.toFixed(2)} ms (medians) · ${fps.toFixed(0)} fps\n`
      + `sort: ${s.last_sort_ms.toFixed(1)} ms in worker · ${s.sorts} sorts`;
    lastReadout = now; rafFrames = 0; rafStart = now;
  }
}

// Frame times of the same splats animated (new parameters: MLP + blend + projection + sort upkeep + draw)
// and static (draw only), interleaved frame by frame so both see the same machine load; each frame is
// finished on the GPU before its clock stops.
async function benchmark({ frames = 100, warmup = 10 } = {}) {
  const v = state.viewer;
  state.benchmarking = true;
  const frameOf = (i) => (state.seq ? seqFrame(i) : Float32Array.from({ length: 55 }, (_, j) => Math.sin(0.3 * i + j)));
  const times = { animated: [], static: [] };
  let sorts0 = v.sort.count;
  const timed = (fn) => { const t0 = performance.now(); fn(); v.finish(); return performance.now() - t0; };
  for (let i = 0; i < warmup + frames; ++i) {
    if (i === warmup) sorts0 = v.sort.count;  // re-sorts of the timed frames
    v.setParamVector(frameOf(i));
    const a = timed(() => v.step(true));
    await yieldTask();  // let the sort worker's replies in, as between real frames
    const s = timed(() => v.step(true));
    await yieldTask();
    if (i >= warmup) { times.animated.push(a); times.static.push(s); }
  }
  state.benchmarking = false;
  const stats = (t) => {
    const x = [...t].sort((a, b) => a - b);
    return { frames: x.length, mean_ms: x.reduce((a, b) => a + b, 0) / x.length, median_ms: x[x.length >> 1],
      p90_ms: x[Math.floor(0.9 * (x.length - 1))] };
  };
  return { animated: stats(times.animated), static: stats(times.static), sorts: v.sort.count - sorts0,
    gaussians: v.n, active_gaussians: v.manifest.active_gaussians, k: v.kUsed, width: v.camera.width,
    height: v.camera.height };
}

window.agora = {
  ready: (async () => {
    try {
      state.viewer = await AgoraViewer.load(canvas, '.');
      const m = state.viewer.manifest;
      state.orbit = { ...m.default_camera };
      if (m.sequence) setSequence(await (await fetch(m.sequence)).json());
      buildUi(m);
      orbitControls();
      fitCamera();
      applyParams();
      requestAnimationFrame(loop);
      return { gaussians: m.num_gaussians, k: state.viewer.kUsed, float_blend: state.viewer.floatBlend };
    } catch (err) {
      $('error').style.display = 'flex';
      $('error').textContent = `AGORA-M viewer: ${err.message}`;
      throw err;
    }
  })(),
  setParams(expr, jaw, eyelids) {
    state.playing = false;
    state.expr = Array.from({ length: 50 }, (_, i) => expr[i] || 0);
    state.jaw = [0, 1, 2].map((i) => jaw[i] || 0);
    state.eyelids = [0, 1].map((i) => eyelids[i] || 0);
    applyParams();
    state.sliders.forEach((f) => f());
  },
  setCamera(camera) { state.manualCamera = true; state.viewer.setCamera(camera); },
  renderOnce() { return state.viewer.renderOnce(); },
  frameStats() { return state.viewer.frameStats(); },
  readPixels() { return state.viewer.readPixels(); },
  play(on = true) { state.playing = on && !!state.seq; state.seqStart = performance.now(); },
  benchmark,
  get viewer() { return state.viewer; },  // the AgoraViewer, for tests and debugging
};
