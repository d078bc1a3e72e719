// AGORA-M WebGL2 viewer: Gaussian blendshapes animated and splatted entirely on the GPU.
// Per frame (only when the parameters change): MLP (2 tiny fragment passes) -> blend pass writing the
// animated attributes to float textures -> splat pass reading them. Depth sorting runs in a Web Worker
// on the *animated* positions, re-run when the view changes or when the animation has moved the
// Gaussians enough to matter (see `displacement()`); its inputs are read back without stalling (PBO+fence).
import * as S from './shaders.js';
import { foldFirstLayer, framebuffer, GpuTimer, NUM_PARAMS, orbitCamera, program, texture } from './webgl.js';

const MAX_COMPONENTS = 256;  // size of the blend's uniform block (web_bundle.MAX_COMPONENTS)

export { orbitCamera };

export class AgoraViewer {
  static async load(canvas, baseUrl = '.') {
    const get = async (name, kind) => {
      const r = await fetch(`${baseUrl}/${name}`);
      if (!r.ok) throw new Error(`${name}: HTTP ${r.status}`);
      return kind === 'json' ? r.json() : r.arrayBuffer();
    };
    const m = await get('avatar.json', 'json');
    const files = {};
    await Promise.all(Object.entries(m.files).map(async ([k, v]) => { files[k] = await get(v); }));
    return new AgoraViewer(canvas, m, files);
  }

  constructor(canvas, manifest, files) {
    const m = (this.manifest = manifest);
    const gl = (this.gl = canvas.getContext('webgl2', { antialias: false, premultipliedAlpha: false, preserveDrawingBuffer: true }));
    if (!gl) throw new Error('WebGL2 is not available');
    if (!gl.getExtension('EXT_color_buffer_float')) throw new Error('EXT_color_buffer_float is not available');
    this.floatBlend = !!gl.getExtension('EXT_float_blend');
    this.canvas = canvas;
    this.n = m.num_gaussians;
    this.K = m.k;
    this.kUsed = Math.min(this.K, Number(new URLSearchParams(location.search).get('k')) || this.K);
    const W = (this.texWidth = m.texture_width), Ht = m.texture_height;
    const F = gl.FLOAT, A = gl.TEXTURE_2D_ARRAY, T = gl.TEXTURE_2D, HF = gl.HALF_FLOAT;
    this.tex = {
      neutral: texture(gl, A, gl.RGBA32F, W, Ht, 3, gl.RGBA, F, new Float32Array(files.neutral)),
      sh: texture(gl, A, gl.RGBA32F, W, Ht, m.sh_coefficients, gl.RGBA, F, new Float32Array(files.sh)),
      basis: texture(gl, A, gl.RGBA16F, W, 3 * Ht, this.K, gl.RGBA, HF, new Uint16Array(files.basis)),
    };
    const mlp = foldFirstLayer(m, files.mlp), H = m.mlp.hidden, K4 = 4 * this.K;
    const amp = new Float32Array(4 * this.K);
    ['xyz', 'scale', 'rotation', 'opacity'].forEach((g, gi) => m.basis_amplitude[g].forEach((a, k) => { amp[4 * k + gi] = a; }));
    this.ampXyz = m.basis_amplitude.xyz;
    Object.assign(this.tex, {
      w0: texture(gl, T, gl.R32F, NUM_PARAMS, H, 1, gl.RED, F, mlp.w0),
      b0: texture(gl, T, gl.R32F, H, 1, 1, gl.RED, F, mlp.bias),
      w1: texture(gl, T, gl.R32F, H, K4, 1, gl.RED, F, mlp.w1),
      b1: texture(gl, T, gl.R32F, K4, 1, 1, gl.RED, F, mlp.b1),
      amp: texture(gl, T, gl.RGBA32F, this.K, 1, 1, gl.RGBA, F, amp),
      hidden: texture(gl, T, gl.RGBA32F, H, 1, 1, gl.RGBA, F, null),
      coeff: texture(gl, T, gl.RGBA32F, this.K, 1, 1, gl.RGBA, F, null),
      pos: texture(gl, T, gl.RGBA32F, W, Ht, 1, gl.RGBA, F, null),
      cov0: texture(gl, T, gl.RGBA32F, W, Ht, 1, gl.RGBA, F, null),
      cov1: texture(gl, T, gl.RGBA32F, W, Ht, 1, gl.RGBA, F, null),
      screen: texture(gl, T, gl.RGBA32F, W, Ht, 1, gl.RGBA, F, null),
      conic: texture(gl, T, gl.RGBA32F, W, Ht, 1, gl.RGBA, F, null),
      color: texture(gl, T, gl.RGBA32F, W, Ht, 1, gl.RGBA, F, null),
    });
    this.fb = {
      hidden: framebuffer(gl, [this.tex.hidden]),
      coeff: framebuffer(gl, [this.tex.coeff]),
      attr: framebuffer(gl, [this.tex.pos, this.tex.cov0, this.tex.cov1]),
      screen: framebuffer(gl, [this.tex.screen, this.tex.conic, this.tex.color]),
    };
    this.prog = {
      hidden: program(gl, S.FULLSCREEN_VS, S.MLP_HIDDEN_FS),
      output: program(gl, S.FULLSCREEN_VS, S.MLP_OUTPUT_FS),
      blend: program(gl, S.FULLSCREEN_VS, S.BLEND_FS),
      project: program(gl, S.FULLSCREEN_VS, S.PROJECT_FS),
      splat: program(gl, S.SPLAT_VS, S.SPLAT_FS),
      present: program(gl, S.FULLSCREEN_VS, S.PRESENT_FS),
    };
    // Draw order: slot s of the back-to-front order holds a Gaussian index (R32UI texture, from the
    // sort worker). Quads are an indexed, attribute-less draw (4 vertices, 6 indices per slot) rather
    // than instancing, which software rasterizers (SwiftShader) run one instance at a time.
    this.order = new Uint32Array(W * Ht).map((_, i) => i);
    this.tex.order = texture(gl, T, gl.R32UI, W, Ht, 1, gl.RED_INTEGER, gl.UNSIGNED_INT, this.order);
    const quads = new Uint32Array(6 * this.n);
    for (let q = 0; q < this.n; ++q) quads.set([4 * q, 4 * q + 1, 4 * q + 2, 4 * q + 1, 4 * q + 3, 4 * q + 2], 6 * q);
    this.vao = gl.createVertexArray();
    gl.bindVertexArray(this.vao);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, gl.createBuffer());
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, quads, gl.STATIC_DRAW);
    gl.bindVertexArray(null);
    this.coeffPbo = gl.createBuffer();
    this.coeffUbo = gl.createBuffer();
    gl.bindBuffer(gl.UNIFORM_BUFFER, this.coeffUbo);
    gl.bufferData(gl.UNIFORM_BUFFER, 16 * MAX_COMPONENTS, gl.DYNAMIC_COPY);
    gl.bindBuffer(gl.UNIFORM_BUFFER, null);
    this.posPbo = gl.createBuffer();
    this.worker = new Worker(new URL('./sort_worker.js', import.meta.url));
    this.worker.onmessage = (e) => this._onSorted(e.data);
    this.sort = { inFlight: false, cameraVersion: -1, coeffs: null, count: 0, ms: 0, pending: null, id: 0, resolve: null };
    this.coeffRead = null;  // {fence, version} of the async coefficient readback in flight
    this.latestCoeffs = null;
    this.paramsVersion = 0;  // bumped by every animate pass; tags coefficient readbacks
    this.coeffsVersion = -1;
    this.params = new Float32Array(NUM_PARAMS);
    this.paramsDirty = true;
    this.cameraVersion = 0;
    this.times = [];
    this.frames = 0;
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
    if (this.canvas.width !== w || this.canvas.height !== h || !this.tex.image) this._resize(w, h);
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

  _resize(w, h) {
    const gl = this.gl;
    this.canvas.width = w;
    this.canvas.height = h;
    if (this.tex.image) { gl.deleteTexture(this.tex.image); gl.deleteFramebuffer(this.fb.image); }
    const fmt = this.floatBlend ? gl.RGBA32F : gl.RGBA16F;  // float accumulation: no 8-bit rounding per layer
    this.tex.image = texture(gl, gl.TEXTURE_2D, fmt, w, h, 1, gl.RGBA, this.floatBlend ? gl.FLOAT : gl.HALF_FLOAT, null);
    this.fb.image = framebuffer(gl, [this.tex.image]);
  }

  // --- GPU passes -----------------------------------------------------------------------------------
  _bind(p, unit, name, target, tex) {
    const gl = this.gl;
    gl.activeTexture(gl.TEXTURE0 + unit);
    gl.bindTexture(target, tex);
    gl.uniform1i(p.u(name), unit);
  }

  _animate() {  // MLP + blend: parameters -> animated attribute textures
    const gl = this.gl, T = gl.TEXTURE_2D, A = gl.TEXTURE_2D_ARRAY, m = this.manifest;
    gl.disable(gl.BLEND);
    let p = this.prog.hidden;
    gl.useProgram(p);
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.fb.hidden);
    gl.viewport(0, 0, m.mlp.hidden, 1);
    this._bind(p, 0, 'u_w0', T, this.tex.w0);
    this._bind(p, 1, 'u_b0', T, this.tex.b0);
    gl.uniform1fv(p.u('u_e'), this.params);
    gl.uniform1f(p.u('u_slope'), m.mlp.negative_slope);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    p = this.prog.output;
    gl.useProgram(p);
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.fb.coeff);
    gl.viewport(0, 0, this.K, 1);
    this._bind(p, 0, 'u_hidden', T, this.tex.hidden);
    this._bind(p, 1, 'u_w1', T, this.tex.w1);
    this._bind(p, 2, 'u_b1', T, this.tex.b1);
    this._bind(p, 3, 'u_amp', T, this.tex.amp);
    gl.uniform1i(p.u('u_hiddenSize'), m.mlp.hidden);
    gl.uniform1i(p.u('u_k'), this.K);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    // Coefficients -> uniform buffer, copied on the GPU (no CPU round trip): uniforms are cheaper than
    // a texture fetch per component in the blend's inner loop.
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, this.fb.coeff);
    gl.bindBuffer(gl.PIXEL_PACK_BUFFER, this.coeffUbo);
    gl.readPixels(0, 0, this.K, 1, gl.RGBA, gl.FLOAT, 0);
    gl.bindBuffer(gl.PIXEL_PACK_BUFFER, null);
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, null);
    p = this.prog.blend;
    gl.useProgram(p);
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.fb.attr);
    gl.viewport(0, 0, this.texWidth, m.texture_height);
    this._bind(p, 0, 'u_neutral', A, this.tex.neutral);
    this._bind(p, 1, 'u_basis', A, this.tex.basis);
    gl.uniform1i(p.u('u_k'), this.kUsed);
    gl.uniform1i(p.u('u_rows'), m.texture_height);
    gl.uniformBlockBinding(p, gl.getUniformBlockIndex(p, 'Coefficients'), 0);
    gl.bindBufferBase(gl.UNIFORM_BUFFER, 0, this.coeffUbo);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    this.paramsDirty = false;
    this.paramsVersion++;
  }

  _project() {  // per Gaussian: screen-space mean, conic, footprint and colour (skipped if unchanged)
    const key = `${this.paramsVersion}/${this.cameraVersion}`;
    if (this.projected === key) return;
    const gl = this.gl, T = gl.TEXTURE_2D, cam = this.camera, p = this.prog.project;
    gl.useProgram(p);
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.fb.screen);
    gl.viewport(0, 0, this.texWidth, this.manifest.texture_height);
    this._bind(p, 0, 'u_pos', T, this.tex.pos);
    this._bind(p, 1, 'u_cov0', T, this.tex.cov0);
    this._bind(p, 2, 'u_cov1', T, this.tex.cov1);
    this._bind(p, 3, 'u_sh', gl.TEXTURE_2D_ARRAY, this.tex.sh);
    gl.uniform1i(p.u('u_shCount'), this.manifest.sh_coefficients);
    gl.uniformMatrix4fv(p.u('u_world2cam'), false, cam.world2cam);
    gl.uniform3fv(p.u('u_camPos'), cam.position);
    gl.uniform4fv(p.u('u_intr'), cam.intr);
    gl.uniform2f(p.u('u_size'), cam.width, cam.height);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    this.projected = key;
  }

  _draw() {  // projection, sorted splats -> float image -> canvas
    const gl = this.gl, T = gl.TEXTURE_2D, cam = this.camera, bg = this.manifest.background;
    gl.disable(gl.BLEND);
    this._project();
    let p = this.prog.splat;
    gl.useProgram(p);
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.fb.image);
    gl.viewport(0, 0, cam.width, cam.height);
    gl.clearColor(bg[0], bg[1], bg[2], 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);  // premultiplied "over", back to front
    this._bind(p, 0, 'u_screen', T, this.tex.screen);
    this._bind(p, 1, 'u_conic', T, this.tex.conic);
    this._bind(p, 2, 'u_color', T, this.tex.color);
    this._bind(p, 3, 'u_order', T, this.tex.order);
    gl.uniform1i(p.u('u_texWidth'), this.texWidth);
    gl.uniform2f(p.u('u_size'), cam.width, cam.height);
    gl.bindVertexArray(this.vao);
    gl.drawElements(gl.TRIANGLES, 6 * this.n, gl.UNSIGNED_INT, 0);
    gl.bindVertexArray(null);
    gl.disable(gl.BLEND);
    p = this.prog.present;
    gl.useProgram(p);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    this._bind(p, 0, 'u_image', T, this.tex.image);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
  }

  // --- sorting ------------------------------------------------------------------------------------
  // Animated positions = neutral + U_xyzᵀ c with orthonormal rows U, so moving from coefficients c0 to c
  // moves the Gaussians by a field of L2 norm exactly |c - c0| (metres). Expressions move a small region
  // (mouth, eyes): assuming the motion sits in a fraction f of the Gaussians, a typical moving Gaussian
  // shifted by |c - c0| / sqrt(f N). Re-sort when that exceeds `resort.displacement_m` (default 1 mm,
  // f = 5 %): beyond that, neighbouring splats (a few mm apart) may swap depth order.
  displacement(coeffs) {
    if (!this.sort.coeffs) return Infinity;
    let s = 0;
    for (let k = 0; k < this.K; ++k) {
      const d = (coeffs[4 * k] - this.sort.coeffs[4 * k]) / this.ampXyz[k];
      s += d * d;
    }
    return Math.sqrt(s / (this.manifest.resort.region_fraction * this.n));
  }

  _pollReadbacks() {  // non-blocking: finished coefficient readback -> maybe start a re-sort
    const gl = this.gl;
    if (this.coeffRead && gl.clientWaitSync(this.coeffRead.fence, 0, 0) !== gl.TIMEOUT_EXPIRED) {
      gl.deleteSync(this.coeffRead.fence);
      const c = new Float32Array(4 * this.K);
      gl.bindBuffer(gl.PIXEL_PACK_BUFFER, this.coeffPbo);
      gl.getBufferSubData(gl.PIXEL_PACK_BUFFER, 0, c);
      gl.bindBuffer(gl.PIXEL_PACK_BUFFER, null);
      if (this.coeffRead.version >= this.coeffsVersion) { this.latestCoeffs = c; this.coeffsVersion = this.coeffRead.version; }
      this.coeffRead = null;
    }
    if (this.sort.pending && gl.clientWaitSync(this.sort.pending.fence, 0, 0) !== gl.TIMEOUT_EXPIRED) {
      const job = this.sort.pending;
      gl.deleteSync(job.fence);
      this.sort.pending = null;
      const positions = new Float32Array(4 * this.texWidth * this.manifest.texture_height);
      gl.bindBuffer(gl.PIXEL_PACK_BUFFER, this.posPbo);
      gl.getBufferSubData(gl.PIXEL_PACK_BUFFER, 0, positions);
      gl.bindBuffer(gl.PIXEL_PACK_BUFFER, null);
      this._postSort(positions, job);
    }
  }

  _readInto(fb, pbo, w, h) {  // async readPixels of colour attachment 0 into a PBO, with a fence
    const gl = this.gl;
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, fb);
    gl.readBuffer(gl.COLOR_ATTACHMENT0);
    gl.bindBuffer(gl.PIXEL_PACK_BUFFER, pbo);
    gl.bufferData(gl.PIXEL_PACK_BUFFER, 16 * w * h, gl.STREAM_READ);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.FLOAT, 0);
    gl.bindBuffer(gl.PIXEL_PACK_BUFFER, null);
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, null);
    return gl.fenceSync(gl.SYNC_GPU_COMMANDS_COMPLETE, 0);
  }

  _maybeResort() {
    if (this.sort.inFlight || !this.latestCoeffs) return;
    const viewChanged = this.sort.cameraVersion !== this.cameraVersion;
    const moved = this.displacement(this.latestCoeffs) > this.manifest.resort.displacement_m;
    if (!viewChanged && !moved) return;
    this.sort.inFlight = true;
    const fence = this._readInto(this.fb.attr, this.posPbo, this.texWidth, this.manifest.texture_height);
    this.sort.pending = { fence, coeffs: this.latestCoeffs, camera: this.camera, cameraVersion: this.cameraVersion };
  }

  _postSort(positions, job) {
    const wc = job.camera.world2cam;
    job.id = ++this.sort.id;
    this.sort.job = job;
    this.worker.postMessage({ positions, count: this.n, viewZ: [wc[2], wc[6], wc[10], wc[14]], id: job.id }, [positions.buffer]);
  }

  _onSorted({ order, id, ms }) {
    const gl = this.gl, job = this.sort.job;
    if (!job || id !== job.id) return;
    this.order.set(order);
    gl.bindTexture(gl.TEXTURE_2D, this.tex.order);
    gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, this.texWidth, this.manifest.texture_height, gl.RED_INTEGER, gl.UNSIGNED_INT, this.order);
    Object.assign(this.sort, { inFlight: false, coeffs: job.coeffs, cameraVersion: job.cameraVersion, ms, count: this.sort.count + 1 });
    this.needsDraw = true;
    if (this.sort.resolve) { const r = this.sort.resolve; this.sort.resolve = null; r(); }
  }

  // --- frames ----------------------------------------------------------------------------------------
  step(force = false) {  // one interactive frame; returns true if anything was drawn
    const t0 = performance.now();
    this._pollReadbacks();
    this.gpuTimer.poll();
    const animate = this.paramsDirty;
    const draw = force || animate || this.needsDraw || this.drawnCamera !== this.cameraVersion;
    const query = draw ? this.gpuTimer.begin() : null;
    if (animate) { this._animate(); this.coeffsStale = true; }
    if (this.coeffsStale && !this.coeffRead) {  // one small async readback in flight at a time
      this.coeffRead = { fence: this._readInto(this.fb.coeff, this.coeffPbo, this.K, 1), version: this.paramsVersion };
      this.coeffsStale = false;
    }
    this._maybeResort();
    if (!draw) return false;
    this._draw();
    this.gpuTimer.end(query);
    this.needsDraw = false;
    this.drawnCamera = this.cameraVersion;
    this._record(performance.now() - t0);
    return true;
  }

  // Deterministic frame for tests: animate, read back synchronously, sort (awaited), draw, finish.
  async renderOnce() {
    const gl = this.gl;
    if (this.paramsDirty) this._animate();
    const read = (fb, w, h) => {
      const out = new Float32Array(4 * w * h);
      gl.bindFramebuffer(gl.READ_FRAMEBUFFER, fb);
      gl.readPixels(0, 0, w, h, gl.RGBA, gl.FLOAT, out);
      gl.bindFramebuffer(gl.READ_FRAMEBUFFER, null);
      return out;
    };
    this.latestCoeffs = read(this.fb.coeff, this.K, 1);
    this.coeffsVersion = this.paramsVersion;  // an older async readback still in flight is ignored
    this.coeffsStale = false;
    const positions = read(this.fb.attr, this.texWidth, this.manifest.texture_height);
    this.sort.inFlight = true;
    const done = new Promise((r) => { this.sort.resolve = r; });
    this._postSort(positions, { coeffs: this.latestCoeffs, camera: this.camera, cameraVersion: this.cameraVersion });
    await done;
    this._draw();
    this.drawnCamera = this.cameraVersion;
    gl.finish();
    return this.frameStats();
  }

  finish() {  // wait for the GPU: a 1-pixel read of the framebuffer (timing)
    const gl = this.gl;
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, this.fb.image);
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.FLOAT, new Float32Array(4));
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, null);
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
      gaussians: this.n, k: this.kUsed, float_blend: this.floatBlend };
  }

  // Image of the float framebuffer, rows top to bottom, RGBA float32 (base64), for tests.
  readPixels() {
    const gl = this.gl, { width: w, height: h } = this.camera;
    const data = new Float32Array(4 * w * h);
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, this.fb.image);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.FLOAT, data);
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, null);
    const flipped = new Float32Array(data.length);
    for (let r = 0; r < h; ++r) flipped.set(data.subarray((h - 1 - r) * 4 * w, (h - r) * 4 * w), r * 4 * w);
    const bytes = new Uint8Array(flipped.buffer);
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return { width: w, height: h, data: btoa(s) };
  }
}
