// AGORA-M WebGL2 viewer: Gaussian blendshapes animated and splatted entirely on the GPU (passes.js).
// Per frame, only when the parameters change: MLP -> blend of the moving Gaussians -> their projection;
// then the splats are drawn in the worker's depth order (depth_sort.js), re-sorted when the view changes
// or when the animation may have moved a Gaussian by more than `resort.displacement_m`.
import { DepthSorter } from './depth_sort.js';
import { AvatarPasses } from './passes.js';
import { GpuTimer, NUM_PARAMS, orbitCamera } from './webgl.js';

export { orbitCamera };

export class AgoraViewer {
  static async load(canvas, baseUrl = '.') {
    const get = async (name, kind) => {
      const r = await fetch(`${baseUrl}/${name}`);
      if (!r.ok) throw new Error(`${name}: HTTP ${r.status}`);
      return kind === 'json' ? r.json() : r.arrayBuffer();
    };
    const m = await get('avatar.json', 'json');
    if (m.format_version !== 4) {
      throw new Error(`avatar.json: format_version ${m.format_version}, this viewer reads 4 (re-run agora export web)`);
    }
    const files = {};
    await Promise.all(Object.entries(m.files).map(async ([k, v]) => { files[k] = await get(v); }));
    return new AgoraViewer(canvas, m, files);
  }

  constructor(canvas, manifest, files) {
    const m = (this.manifest = manifest);
    const gl = (this.gl = canvas.getContext('webgl2', { antialias: false, premultipliedAlpha: false, preserveDrawingBuffer: true }));
    if (!gl) throw new Error('WebGL2 is not available');
    if (!gl.getExtension('EXT_color_buffer_float')) throw new Error('EXT_color_buffer_float is not available');
    this.canvas = canvas;
    this.n = m.num_gaussians;
    this.K = m.k;
    this.kUsed = Math.min(this.K, Number(new URLSearchParams(location.search).get('k')) || this.K);
    this.passes = new AvatarPasses(gl, m, files, this.kUsed);
    this.floatBlend = this.passes.floatBlend;
    // The GPU has its copies: the worker takes the buffers it needs (transferred, not copied).
    this.sort = new DepthSorter(gl, m, this.kUsed, files.neutral, files.basis, () => { this.needsDraw = true; });
    this.paramsVersion = 0;  // bumped by every animate pass; tags coefficient readbacks
    this.params = new Float32Array(NUM_PARAMS);
    this.paramsDirty = true;
    this.cameraVersion = 0;
    this.projected = { params: -1, camera: -1 };  // versions the screen-space textures were computed for
    this.times = [];
    this.frames = 0;
    this.pixel = new Float32Array(4);  // finish()'s 1-pixel read
    this.gpuTimer = new GpuTimer(gl);
    this.setCamera(orbitCamera(m.default_camera, canvas.width || 512, canvas.height || 512));
  }

  // --- state --------------------------------------------------------------------------------------
  setParams(expression = [], jaw = [], eyelids = []) {
    const p = new Float32Array(NUM_PARAMS);
    for (let i = 0; i < Math.min(50, expression.length); ++i) p[i] = expression[i];
    for (let i = 0; i < 3; ++i) p[50 + i] = jaw[i] || 0;
    for (let i = 0; i < 2; ++i) p[53 + i] = eyelids[i] || 0;
    this.setParamVector(p);
  }

  setParamVector(p) {
    for (let i = 0; i < NUM_PARAMS; ++i) if (this.params[i] !== p[i]) { this.params.set(p); this.paramsDirty = true; return; }
  }

  // cam2world: 4x4 (nested rows or 16 row-major), OpenCV axes; fx, fy, cx, cy normalised by width/height.
  setCamera({ cam2world, fx, fy, cx = 0.5, cy = 0.5, width, height }) {
    const c = cam2world.flat();
    const w = Math.round(width || this.canvas.width), h = Math.round(height || this.canvas.height);
    if (this.canvas.width !== w || this.canvas.height !== h || !this.passes.tex.image) {
      this.canvas.width = w;
      this.canvas.height = h;
      this.passes.resize(w, h);
    }
    // world2cam = [Rᵀ, -Rᵀ t], stored column-major for GLSL.
    const R = [[c[0], c[1], c[2]], [c[4], c[5], c[6]], [c[8], c[9], c[10]]], t = [c[3], c[7], c[11]];
    const wc = new Float32Array(16);
    for (let r = 0; r < 3; ++r) {
      for (let k = 0; k < 3; ++k) wc[k * 4 + r] = R[k][r];
      wc[12 + r] = -(R[0][r] * t[0] + R[1][r] * t[1] + R[2][r] * t[2]);
    }
    wc[15] = 1;
    this.camera = { world2cam: wc, position: t, intr: [fx * w, fy * h, cx * w, cy * h], width: w, height: h };
    this.cameraVersion++;
  }

  // --- GPU passes -----------------------------------------------------------------------------------
  _animate() {
    this.passes.animate(this.params);
    this.paramsDirty = false;
    this.paramsVersion++;
  }

  _draw() {  // projection (if the Gaussians or the view changed), sorted splats, canvas
    const { params, camera } = this.projected;
    if (params !== this.paramsVersion || camera !== this.cameraVersion) {
      this.passes.project(this.camera, camera === this.cameraVersion);
      this.projected = { params: this.paramsVersion, camera: this.cameraVersion };
    }
    this.passes.draw(this.camera, this.sort.texture);
  }

  // --- frames ----------------------------------------------------------------------------------------
  step(force = false) {  // one interactive frame; returns true if anything was drawn
    const t0 = performance.now();
    this.sort.poll();
    this.gpuTimer.poll();
    const animate = this.paramsDirty;
    const draw = force || animate || this.needsDraw || this.drawnCamera !== this.cameraVersion;
    const query = draw ? this.gpuTimer.begin() : null;
    if (animate) {
      this._animate();
      this.sort.coefficientsChanged(this.passes.fb.coeff, this.paramsVersion);
    }
    this.sort.maybeResort(this.camera, this.cameraVersion);
    if (!draw) return false;
    this._draw();
    this.gpuTimer.end(query);
    this.needsDraw = false;
    this.drawnCamera = this.cameraVersion;
    this._record(performance.now() - t0);
    return true;
  }

  // Deterministic frame for tests: animate, read the coefficients synchronously, sort (awaited), draw, finish.
  async renderOnce() {
    if (this.paramsDirty) this._animate();
    if (this.sort.inFlight) await this.sort.inFlight.done;
    const p = this.passes;
    this.sort.setLatest(p.readFloats(p.fb.coeff, this.K, 1), this.paramsVersion);
    await this.sort.resort(this.camera, this.cameraVersion);
    this._draw();
    this.drawnCamera = this.cameraVersion;
    this.needsDraw = false;
    this.gl.finish();
    return this.frameStats();
  }

  finish() {  // wait for the GPU: a 1-pixel read of the framebuffer (timing)
    this.passes.readFloats(this.passes.fb.image, 1, 1, this.pixel);
  }

  _record(ms) {
    this.frames++;
    this.times.push(ms);
    if (this.times.length > 120) this.times.shift();
  }

  frameStats() {
    const t = [...this.times].sort((a, b) => a - b), g = [...this.gpuTimer.times].sort((a, b) => a - b);
    const mean = t.length ? t.reduce((a, b) => a + b, 0) / t.length : 0;
    return { frames: this.frames, mean_ms: mean, median_ms: t.length ? t[t.length >> 1] : 0,
      gpu_median_ms: g.length ? g[g.length >> 1] : null,
      last_ms: this.times[this.times.length - 1] || 0, sorts: this.sort.count, last_sort_ms: this.sort.ms,
      gaussians: this.n, active_gaussians: this.manifest.active_gaussians, k: this.kUsed, float_blend: this.floatBlend };
  }

  // The rendered image before clamping, rows top to bottom, RGBA float32 (base64), for tests: the
  // float framebuffer composited over the background as the present pass does (alpha = coverage).
  readPixels() {
    const { width: w, height: h } = this.camera, bg = this.manifest.background;
    const data = this.passes.readFloats(this.passes.fb.image, w, h);
    for (let i = 0; i < data.length; i += 4) {
      const t = 1 - data[i + 3];
      data[i] += t * bg[0]; data[i + 1] += t * bg[1]; data[i + 2] += t * bg[2];
    }
    const flipped = new Float32Array(data.length);
    for (let r = 0; r < h; ++r) flipped.set(data.subarray((h - 1 - r) * 4 * w, (h - r) * 4 * w), r * 4 * w);
    const bytes = new Uint8Array(flipped.buffer);
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return { width: w, height: h, data: btoa(s) };
  }
}
