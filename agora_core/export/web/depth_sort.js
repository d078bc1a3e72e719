// Front-to-back order of the *animated* Gaussians, sorted in a worker (sort_worker.js) without reading
// positions back from the GPU: the worker holds the neutral means and the xyz blendshapes (handed over
// once, at load) and blends the depths itself from the K xyz coefficients. Those come back from the GPU
// by a small asynchronous readback (K texels, PBO + fence), one in flight at a time.
//
// Re-sort when the view changes, or when some Gaussian may have moved more than `resort.displacement_m`
// since the last sort: |Δp_i| = |Σ_k Δc_k U_k,i| ≤ Σ_k |Δc_k| max_i |U_k,i| (`resort.max_xyz_norm`,
// web_bundle.py), a bound that needs no positions. Beyond ~1 mm neighbouring splats may swap depth order.

export class DepthSorter {
  // neutral, basis: the bundle's neutral.bin and basis.i32 buffers, transferred to the worker.
  constructor(gl, manifest, kUsed, neutral, basis, onSorted) {
    const m = manifest, W = m.texture_width, H = m.texture_height;
    this.gl = gl;
    this.k = kUsed;
    this.threshold = m.resort.displacement_m;
    // metres moved per unit of the GPU's xyz coefficient (c_k · a_k / 32767, passes.js) for component k
    this.metresPerUnit = Float32Array.from({ length: kUsed },
      (_, k) => m.resort.max_xyz_norm[k] * m.basis_fixed_point / m.basis_amplitude.xyz[k]);
    this.texture = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, this.texture);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.R32UI, W, H, 0, gl.RED_INTEGER, gl.UNSIGNED_INT,
      new Uint32Array(W * H).map((_, i) => i));  // until the first sort: viewer order
    this.size = [W, H];
    this.onSorted = onSorted;
    this.worker = new Worker(new URL('./sort_worker.js', import.meta.url));
    this.worker.onmessage = (e) => this._sorted(e.data);
    this.worker.postMessage({ type: 'init', neutral, basis, count: m.num_gaussians, active: m.active_gaussians,
      k: kUsed, rowValues: 8 * m.basis_texture.width, texels: W * H }, [neutral, basis]);
    this.pbo = gl.createBuffer();
    gl.bindBuffer(gl.PIXEL_PACK_BUFFER, this.pbo);
    gl.bufferData(gl.PIXEL_PACK_BUFFER, 16 * m.k, gl.STREAM_READ);
    gl.bindBuffer(gl.PIXEL_PACK_BUFFER, null);
    this.readBuffer = new Float32Array(4 * m.k);  // reused by every readback
    this.reading = null;  // {fence, version} of the readback in flight
    this.stale = false;  // {fb, version} of an animate pass not read yet (one readback in flight at a time)
    this.latest = new Float32Array(kUsed);  // xyz coefficients of the newest animate pass read so far
    this.latestVersion = -1;
    this.sortedCoeffs = null;  // xyz coefficients of the current order (null: none yet)
    this.cameraVersion = -1;  // camera of the current order
    this.inFlight = null;  // the job the worker is sorting: {id, coeffs, cameraVersion, done (promise), resolve}
    this.spare = null;  // the last order's buffer [W·H], handed back to the worker (no allocation per sort)
    this.count = 0;
    this.ms = 0;
    this.id = 0;
  }

  // --- coefficients -------------------------------------------------------------------------------
  coefficientsChanged(fbCoeff, version) {  // after an animate pass: start a readback, or mark it pending
    this.stale = { fb: fbCoeff, version };
    if (!this.reading) this._startRead();
  }

  _startRead() {
    const gl = this.gl, { fb, version } = this.stale;
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, fb);
    gl.bindBuffer(gl.PIXEL_PACK_BUFFER, this.pbo);
    gl.readPixels(0, 0, this.readBuffer.length / 4, 1, gl.RGBA, gl.FLOAT, 0);
    gl.bindBuffer(gl.PIXEL_PACK_BUFFER, null);
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, null);
    this.reading = { fence: gl.fenceSync(gl.SYNC_GPU_COMMANDS_COMPLETE, 0), version };
    this.stale = false;
  }

  poll() {  // non-blocking: a finished readback becomes `latest`; a pending one starts
    const gl = this.gl;
    if (this.reading && gl.clientWaitSync(this.reading.fence, 0, 0) !== gl.TIMEOUT_EXPIRED) {
      gl.deleteSync(this.reading.fence);
      gl.bindBuffer(gl.PIXEL_PACK_BUFFER, this.pbo);
      gl.getBufferSubData(gl.PIXEL_PACK_BUFFER, 0, this.readBuffer);
      gl.bindBuffer(gl.PIXEL_PACK_BUFFER, null);
      this.setLatest(this.readBuffer, this.reading.version);
      this.reading = null;
    }
    if (this.stale && !this.reading) this._startRead();
  }

  setLatest(rgba, version) {  // rgba: [4K] coefficients (xyz, scale, rotation, opacity) per component
    if (version < this.latestVersion) return;  // an older readback finishing late
    for (let k = 0; k < this.k; ++k) this.latest[k] = rgba[4 * k];
    this.latestVersion = version;
  }

  // Upper bound on how far any Gaussian moved between the sorted and the latest coefficients (metres).
  displacementBound() {
    if (!this.sortedCoeffs) return Infinity;
    let d = 0;
    for (let k = 0; k < this.k; ++k) d += Math.abs(this.latest[k] - this.sortedCoeffs[k]) * this.metresPerUnit[k];
    return d;
  }

  // --- sorting ------------------------------------------------------------------------------------
  maybeResort(camera, cameraVersion) {  // start a sort if the view changed or the Gaussians moved enough
    if (this.inFlight || this.latestVersion < 0) return false;
    if (this.cameraVersion === cameraVersion && this.displacementBound() <= this.threshold) return false;
    this.resort(camera, cameraVersion);
    return true;
  }

  resort(camera, cameraVersion) {  // sort for `latest` and `camera` now (none in flight); resolves once uploaded
    const wc = camera.world2cam, coeffs = Float32Array.from(this.latest);
    const job = (this.inFlight = { id: ++this.id, coeffs, cameraVersion });
    job.done = new Promise((r) => { job.resolve = r; });
    const msg = { type: 'sort', coeffs, viewZ: [wc[2], wc[6], wc[10], wc[14]], id: job.id, order: this.spare };
    this.worker.postMessage(msg, this.spare ? [this.spare.buffer] : []);
    this.spare = null;
    return job.done;
  }

  _sorted({ order, id, ms }) {
    const gl = this.gl, job = this.inFlight;
    if (!job || id !== job.id) return;
    gl.bindTexture(gl.TEXTURE_2D, this.texture);
    gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, this.size[0], this.size[1], gl.RED_INTEGER, gl.UNSIGNED_INT, order);
    Object.assign(this, { spare: order, inFlight: null, sortedCoeffs: job.coeffs, cameraVersion: job.cameraVersion, ms,
      count: this.count + 1 });
    this.onSorted();
    job.resolve();
  }
}
