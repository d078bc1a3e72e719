// Small WebGL2 helpers of the AGORA-M viewer, the orbit camera, the MLP's load-time folding, a GPU timer.

export const NUM_PARAMS = 55;  // expression 50, jaw 3, eyelids 2 (the authors' web-demo vector)

// The camera of `orbit_cameras` / `Camera.look_at` (agora_core/render/cameras.py): on a sphere around
// `target`, yaw about +y (0 = in front, +z), pitch up; OpenCV axes; square pixels (fy = focal).
export function orbitCamera({ target, radius, yaw, pitch, focal }, width, height) {
  const d = [Math.sin(yaw) * Math.cos(pitch), Math.sin(pitch), Math.cos(yaw) * Math.cos(pitch)];
  const eye = target.map((t, i) => t + radius * d[i]);
  const norm = (v) => { const l = Math.hypot(...v); return v.map((x) => x / l); };
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  const z = norm(target.map((t, i) => t - eye[i]));
  const x = norm(cross(z, [0, 1, 0]));
  const y = cross(z, x);
  const cam2world = [0, 1, 2].map((r) => [x[r], y[r], z[r], eye[r]]).concat([[0, 0, 0, 1]]);
  return { cam2world, fx: focal * height / width, fy: focal, cx: 0.5, cy: 0.5, width, height };
}

export function program(gl, vsSource, fsSource) {
  const shader = (type, src) => {
    const s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  };
  const p = gl.createProgram();
  gl.attachShader(p, shader(gl.VERTEX_SHADER, vsSource));
  gl.attachShader(p, shader(gl.FRAGMENT_SHADER, fsSource));
  gl.linkProgram(p);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
  const locations = {};
  p.u = (name) => (name in locations ? locations[name] : (locations[name] = gl.getUniformLocation(p, name)));
  return p;
}

export function texture(gl, target, internal, w, h, layers, format, type, data) {
  const t = gl.createTexture();
  gl.bindTexture(target, t);
  gl.texParameteri(target, gl.TEXTURE_MIN_FILTER, gl.NEAREST);  // texelFetch only; complete without mips
  gl.texParameteri(target, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
  if (target === gl.TEXTURE_2D_ARRAY) gl.texImage3D(target, 0, internal, w, h, layers, 0, format, type, data);
  else gl.texImage2D(target, 0, internal, w, h, 0, format, type, data);
  return t;
}

export function framebuffer(gl, textures) {
  const f = gl.createFramebuffer();
  gl.bindFramebuffer(gl.FRAMEBUFFER, f);
  textures.forEach((t, i) => gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0 + i, gl.TEXTURE_2D, t, 0));
  gl.drawBuffers(textures.map((_, i) => gl.COLOR_ATTACHMENT0 + i));
  if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) throw new Error('incomplete framebuffer');
  return f;
}

// x = [w, ψ[:E], jaw, eyelids]; h = W0 (x - mean) / std + b0  ==  W0' p + b0'  for the 55-d parameter
// vector p, with the constant w folded into b0' (once, at load) and zero columns for ψ beyond E.
// Returns the folded first layer and the later layers {w [out·in], b [out], in, out} as stored.
export function foldFirstLayer(m, buf) {
  const f = (name) => new Float32Array(buf, m.mlp.tensors[name].offset, m.mlp.tensors[name].size);
  const W0 = f('layers.0.weight'), b0 = f('layers.0.bias'), mean = f('input_mean'), std = f('input_std'), w = f('w');
  const H = m.mlp.hidden[0], I = m.mlp.input_dim, wd = m.mlp.w_dim, E = m.mlp.expr_dim;
  const column = (p) => (p < 50 ? (p < E ? wd + p : -1) : wd + E + (p - 50));  // input index of parameter p
  const w0 = new Float32Array(H * NUM_PARAMS), bias = new Float32Array(H);
  for (let j = 0; j < H; ++j) {
    let s = b0[j];
    for (let i = 0; i < wd; ++i) s += W0[j * I + i] * (w[i] - mean[i]) / std[i];
    for (let p = 0; p < NUM_PARAMS; ++p) {
      const i = column(p);
      if (i < 0) continue;
      const a = W0[j * I + i] / std[i];
      w0[j * NUM_PARAMS + p] = a;
      s -= a * mean[i];
    }
    bias[j] = s;
  }
  const widths = [...m.mlp.hidden, 4 * m.mlp.k];
  const layers = widths.slice(1).map((out, l) => ({
    w: f(`layers.${l + 1}.weight`), b: f(`layers.${l + 1}.bias`), in: widths[l], out }));
  return { w0, bias, layers };
}

// GPU time of drawn frames (EXT_disjoint_timer_query_webgl2, where the browser exposes it): at most 4
// queries in flight, results collected without waiting, the last 120 kept (milliseconds).
export class GpuTimer {
  constructor(gl) {
    this.gl = gl;
    this.ext = gl.getExtension('EXT_disjoint_timer_query_webgl2');
    this.pending = [];
    this.times = [];
  }

  begin() {
    if (!this.ext || this.pending.length >= 4) return null;
    const q = this.gl.createQuery();
    this.gl.beginQuery(this.ext.TIME_ELAPSED_EXT, q);
    return q;
  }

  end(q) {
    if (!q) return;
    this.gl.endQuery(this.ext.TIME_ELAPSED_EXT);
    this.pending.push(q);
  }

  poll() {
    const gl = this.gl;
    while (this.pending.length && gl.getQueryParameter(this.pending[0], gl.QUERY_RESULT_AVAILABLE)) {
      const q = this.pending.shift();
      const ns = gl.getQueryParameter(q, gl.QUERY_RESULT);
      if (!gl.getParameter(this.ext.GPU_DISJOINT_EXT)) this.times = this.times.concat([ns / 1e6]).slice(-120);
      gl.deleteQuery(q);
    }
  }
}
