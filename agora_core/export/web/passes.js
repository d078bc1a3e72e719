// GPU side of the AGORA-M viewer: the avatar's textures and the passes of shaders.js.
//   animate  MLP (one tiny fragment pass per layer) -> coefficients -> blend of the moving Gaussians' rows
//   project  per Gaussian: screen-space mean, conic, footprint, colour (moving rows only if the view is the same)
//   draw     the sorted splats into a float framebuffer, then to the canvas
// Texel t holds Gaussian t of the bundle's viewer order: the `active_gaussians` moving ones first.
import * as S from './shaders.js';
import { foldFirstLayer, framebuffer, NUM_PARAMS, program, texture } from './webgl.js';

const COEFFICIENT_BLOCK = 256;  // vec4s in the blend's uniform block (web_bundle.MAX_COMPONENTS)

export class AvatarPasses {
  constructor(gl, manifest, files, kUsed) {
    const m = (this.manifest = manifest);
    this.gl = gl;
    this.floatBlend = !!gl.getExtension('EXT_float_blend');
    this.n = m.num_gaussians;
    this.K = m.k;
    this.kUsed = kUsed;
    const W = (this.texWidth = m.texture_width), Ht = (this.texHeight = m.texture_height);
    this.activeRows = Math.ceil(m.active_gaussians / W);
    const F = gl.FLOAT, A = gl.TEXTURE_2D_ARRAY, T = gl.TEXTURE_2D;
    const mlp = foldFirstLayer(m, files.mlp), H = m.mlp.hidden[0], K4 = 4 * this.K;
    this.dense = mlp.layers.slice(0, -1);  // hidden layers after the first
    const last = mlp.layers[mlp.layers.length - 1];
    const amp = new Float32Array(4 * this.K);  // a_gk / 32767: int16 basis units -> U_gk
    ['xyz', 'scale', 'rotation', 'opacity'].forEach((g, gi) => m.basis_amplitude[g].forEach((a, k) => {
      amp[4 * k + gi] = a / m.basis_fixed_point;
    }));
    const rgba32f = (w, h, data = null) => texture(gl, T, gl.RGBA32F, w, h, 1, gl.RGBA, F, data);
    this.tex = {
      neutral: texture(gl, A, gl.RGBA32F, W, Ht, 3, gl.RGBA, F, new Float32Array(files.neutral)),
      sh: texture(gl, A, gl.RGBA32F, W, Ht, m.sh_coefficients, gl.RGBA, F, new Float32Array(files.sh)),
      // basis.i32: one row of 11·K int16 values per Gaussian, 8 per RGBA32I texel (shaders.js blendTerms)
      basis: texture(gl, A, gl.RGBA32I, m.basis_texture.width, m.basis_texture.height, m.basis_texture.layers,
        gl.RGBA_INTEGER, gl.INT, new Int32Array(files.basis)),
      w0: texture(gl, T, gl.R32F, NUM_PARAMS, H, 1, gl.RED, F, mlp.w0),
      b0: texture(gl, T, gl.R32F, H, 1, 1, gl.RED, F, mlp.bias),
      w1: texture(gl, T, gl.R32F, last.in, K4, 1, gl.RED, F, last.w),
      b1: texture(gl, T, gl.R32F, K4, 1, 1, gl.RED, F, last.b),
      amp: rgba32f(this.K, 1, amp),
      hidden: rgba32f(H, 1),
      coeff: rgba32f(this.K, 1),
    };
    this.denseTex = this.dense.map((l) => ({
      w: texture(gl, T, gl.R32F, l.in, l.out, 1, gl.RED, F, l.w),
      b: texture(gl, T, gl.R32F, l.out, 1, 1, gl.RED, F, l.b),
      out: rgba32f(l.out, 1),
    }));
    this.denseTex.forEach((t) => { t.fb = framebuffer(gl, [t.out]); });
    for (const name of ['pos', 'cov0', 'cov1', 'screen', 'conic', 'color']) this.tex[name] = rgba32f(W, Ht);
    this.fb = {
      hidden: framebuffer(gl, [this.tex.hidden]),
      coeff: framebuffer(gl, [this.tex.coeff]),
      attr: framebuffer(gl, [this.tex.pos, this.tex.cov0, this.tex.cov1]),
      screen: framebuffer(gl, [this.tex.screen, this.tex.conic, this.tex.color]),
    };
    this.prog = {
      hidden: program(gl, S.FULLSCREEN_VS, S.MLP_HIDDEN_FS),
      dense: program(gl, S.FULLSCREEN_VS, S.MLP_DENSE_FS),
      output: program(gl, S.FULLSCREEN_VS, S.MLP_OUTPUT_FS),
      blend: program(gl, S.FULLSCREEN_VS, S.blendShader(kUsed, m.attribute_space)),
      project: program(gl, S.FULLSCREEN_VS, S.PROJECT_FS),
      splat: program(gl, S.SPLAT_VS, S.SPLAT_FS),
      present: program(gl, S.FULLSCREEN_VS, S.PRESENT_FS),
    };
    // Coefficients -> uniform buffer, copied on the GPU (no CPU round trip): uniforms are cheaper than a
    // texture fetch per component in the blend.
    this.coeffUbo = gl.createBuffer();
    gl.bindBuffer(gl.UNIFORM_BUFFER, this.coeffUbo);
    gl.bufferData(gl.UNIFORM_BUFFER, 16 * COEFFICIENT_BLOCK, gl.DYNAMIC_COPY);  // zeros until the first MLP pass
    gl.bindBuffer(gl.UNIFORM_BUFFER, null);
    // Quads are an indexed, attribute-less draw (4 vertices, 6 indices per slot) rather than instancing,
    // which software rasterizers (SwiftShader) run one instance at a time.
    const quads = new Uint32Array(6 * this.n);
    for (let q = 0; q < this.n; ++q) quads.set([4 * q, 4 * q + 1, 4 * q + 2, 4 * q + 1, 4 * q + 3, 4 * q + 2], 6 * q);
    this.vao = gl.createVertexArray();
    gl.bindVertexArray(this.vao);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, gl.createBuffer());
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, quads, gl.STATIC_DRAW);
    gl.bindVertexArray(null);
    this._blendRows(Ht);  // every Gaussian once (zero coefficients); later frames blend the moving rows only
  }

  resize(w, h) {  // the float framebuffer the splats are blended into
    const gl = this.gl;
    if (this.tex.image) { gl.deleteTexture(this.tex.image); gl.deleteFramebuffer(this.fb.image); }
    const fmt = this.floatBlend ? gl.RGBA32F : gl.RGBA16F;  // float accumulation: no 8-bit rounding per layer
    this.tex.image = texture(gl, gl.TEXTURE_2D, fmt, w, h, 1, gl.RGBA, this.floatBlend ? gl.FLOAT : gl.HALF_FLOAT, null);
    this.fb.image = framebuffer(gl, [this.tex.image]);
  }

  _bind(p, unit, name, target, tex) {
    const gl = this.gl;
    gl.activeTexture(gl.TEXTURE0 + unit);
    gl.bindTexture(target, tex);
    gl.uniform1i(p.u(name), unit);
  }

  animate(params) {  // MLP + blend: 55 parameters -> coefficients (fb.coeff, UBO) -> animated attribute textures
    const gl = this.gl, T = gl.TEXTURE_2D, m = this.manifest;
    gl.disable(gl.BLEND);
    let p = this.prog.hidden;
    gl.useProgram(p);
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.fb.hidden);
    gl.viewport(0, 0, m.mlp.hidden[0], 1);
    this._bind(p, 0, 'u_w0', T, this.tex.w0);
    this._bind(p, 1, 'u_b0', T, this.tex.b0);
    gl.uniform1fv(p.u('u_e'), params);
    gl.uniform1f(p.u('u_slope'), m.mlp.negative_slope);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    let hidden = this.tex.hidden;
    this.dense.forEach((l, i) => {  // further hidden layers (the authors' regressor has two)
      const t = this.denseTex[i];
      p = this.prog.dense;
      gl.useProgram(p);
      gl.bindFramebuffer(gl.FRAMEBUFFER, t.fb);
      gl.viewport(0, 0, l.out, 1);
      this._bind(p, 0, 'u_in', T, hidden);
      this._bind(p, 1, 'u_w', T, t.w);
      this._bind(p, 2, 'u_b', T, t.b);
      gl.uniform1i(p.u('u_inSize'), l.in);
      gl.uniform1f(p.u('u_slope'), m.mlp.negative_slope);
      gl.drawArrays(gl.TRIANGLES, 0, 3);
      hidden = t.out;
    });
    p = this.prog.output;
    gl.useProgram(p);
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.fb.coeff);
    gl.viewport(0, 0, this.K, 1);
    this._bind(p, 0, 'u_hidden', T, hidden);
    this._bind(p, 1, 'u_w1', T, this.tex.w1);
    this._bind(p, 2, 'u_b1', T, this.tex.b1);
    this._bind(p, 3, 'u_amp', T, this.tex.amp);
    gl.uniform1i(p.u('u_hiddenSize'), m.mlp.hidden[m.mlp.hidden.length - 1]);
    gl.uniform1i(p.u('u_k'), this.K);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, this.fb.coeff);
    gl.bindBuffer(gl.PIXEL_PACK_BUFFER, this.coeffUbo);
    gl.readPixels(0, 0, this.K, 1, gl.RGBA, gl.FLOAT, 0);
    gl.bindBuffer(gl.PIXEL_PACK_BUFFER, null);
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, null);
    this._blendRows(this.activeRows);
  }

  _blendRows(rows) {
    if (rows === 0) return;
    const gl = this.gl, p = this.prog.blend;
    gl.disable(gl.BLEND);
    gl.useProgram(p);
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.fb.attr);
    gl.viewport(0, 0, this.texWidth, rows);
    this._bind(p, 0, 'u_neutral', gl.TEXTURE_2D_ARRAY, this.tex.neutral);
    this._bind(p, 1, 'u_basis', gl.TEXTURE_2D_ARRAY, this.tex.basis);
    gl.uniform1i(p.u('u_texWidth'), this.texWidth);
    gl.uniform1i(p.u('u_basisRows'), this.manifest.basis_texture.height);
    gl.uniformBlockBinding(p, gl.getUniformBlockIndex(p, 'Coefficients'), 0);
    gl.bindBufferBase(gl.UNIFORM_BUFFER, 0, this.coeffUbo);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
  }

  project(cam, movingOnly) {  // moving rows only when just the animation changed (the others cannot have moved)
    const gl = this.gl, T = gl.TEXTURE_2D, p = this.prog.project;
    const rows = movingOnly ? this.activeRows : this.texHeight;
    if (rows === 0) return;
    gl.disable(gl.BLEND);
    gl.useProgram(p);
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.fb.screen);
    gl.viewport(0, 0, this.texWidth, rows);
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
  }

  draw(cam, orderTex) {  // sorted splats -> float image -> canvas
    const gl = this.gl, T = gl.TEXTURE_2D, bg = this.manifest.background;
    let p = this.prog.splat;
    gl.useProgram(p);
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.fb.image);
    gl.viewport(0, 0, cam.width, cam.height);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.enable(gl.BLEND);
    // Front to back with the premultiplied "under" operator: C += (1 - A) c, A += (1 - A) a. The
    // same image as back-to-front "over" (3DGS's T_i = prod (1 - a_j) over the nearer splats); the
    // background goes in last, in the present pass, with the remaining transmittance 1 - A.
    gl.blendFunc(gl.ONE_MINUS_DST_ALPHA, gl.ONE);
    this._bind(p, 0, 'u_screen', T, this.tex.screen);
    this._bind(p, 1, 'u_conic', T, this.tex.conic);
    this._bind(p, 2, 'u_color', T, this.tex.color);
    this._bind(p, 3, 'u_order', T, orderTex);
    gl.uniform1i(p.u('u_texWidth'), this.texWidth);
    gl.uniform2f(p.u('u_size'), cam.width, cam.height);
    gl.bindVertexArray(this.vao);
    gl.drawElements(gl.TRIANGLES, 6 * this.n, gl.UNSIGNED_INT, 0);
    gl.bindVertexArray(null);
    gl.disable(gl.BLEND);
    p = this.prog.present;
    gl.useProgram(p);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.viewport(0, 0, cam.width, cam.height);
    this._bind(p, 0, 'u_image', T, this.tex.image);
    gl.uniform3f(p.u('u_background'), bg[0], bg[1], bg[2]);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
  }

  readFloats(fb, w, h, out = new Float32Array(4 * w * h)) {  // synchronous read of colour attachment 0
    const gl = this.gl;
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, fb);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.FLOAT, out);
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, null);
    return out;
  }
}
