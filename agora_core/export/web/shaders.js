// GLSL ES 3.0 programs of the AGORA-M viewer. Every per-frame computation runs here, on the GPU:
//   1. mlpHidden   h_j = leaky(b0'_j + Σ_i W0'_ji e_i)            (one fragment per hidden unit)
//      mlpDense    h'_j = leaky(b_j + Σ_i W_ji h_i)                (each further hidden layer, if any)
//   2. mlpOutput   c_gk = a_gk (b_gk + Σ_j W_gk,j h_j)             (one fragment per component k, RGBA = 4 groups)
//   3. blend       attributes = neutral + Σ_k c_gk U_gk  (eq. 11) -> position/opacity + 3D covariance,
//                  moving Gaussians only
//   4. project     per Gaussian: EWA 2D mean, conic, footprint, SH colour toward the camera
//   5. splat       the sorted Gaussians as screen quads, alpha-blended into a float framebuffer
//   6. present     float framebuffer -> canvas
// W0' and b0' fold the MLP's input normalisation and the avatar's constant w code into the first
// layer (viewer.js, once at load), so per frame only the 55 parameters e enter the network.
// a_gk / 32767 scales the int16 fixed-point basis back to U_gk (web_bundle.py, basis.i32).

export const FULLSCREEN_VS = `#version 300 es
void main() {
  // One triangle covering the viewport (vertex ids 0, 1, 2).
  vec2 p = vec2(gl_VertexID == 1 ? 3.0 : -1.0, gl_VertexID == 2 ? 3.0 : -1.0);
  gl_Position = vec4(p, 0.0, 1.0);
}`;

export const MLP_HIDDEN_FS = `#version 300 es
precision highp float;
precision highp int;
uniform sampler2D u_w0;      // R32F [H rows, 55 columns]: folded first-layer weights W0'
uniform sampler2D u_b0;      // R32F [1, H]: folded bias b0'
uniform float u_e[55];       // expression 50, jaw 3, eyelids 2
uniform float u_slope;       // LeakyReLU negative slope (0.2)
out vec4 o_hidden;
void main() {
  int j = int(gl_FragCoord.x);
  float s = texelFetch(u_b0, ivec2(j, 0), 0).r;
  for (int i = 0; i < 55; ++i) s += texelFetch(u_w0, ivec2(i, j), 0).r * u_e[i];
  o_hidden = vec4(s > 0.0 ? s : u_slope * s, 0.0, 0.0, 1.0);
}`;

export const MLP_DENSE_FS = `#version 300 es
precision highp float;
precision highp int;
uniform sampler2D u_in;      // RGBA32F [1, I]: the previous layer's activations (r)
uniform sampler2D u_w;       // R32F [O rows, I columns]
uniform sampler2D u_b;       // R32F [1, O]
uniform int u_inSize;
uniform float u_slope;
out vec4 o_hidden;
void main() {
  int j = int(gl_FragCoord.x);
  float s = texelFetch(u_b, ivec2(j, 0), 0).r;
  for (int i = 0; i < u_inSize; ++i) s += texelFetch(u_w, ivec2(i, j), 0).r * texelFetch(u_in, ivec2(i, 0), 0).r;
  o_hidden = vec4(s > 0.0 ? s : u_slope * s, 0.0, 0.0, 1.0);
}`;

export const MLP_OUTPUT_FS = `#version 300 es
precision highp float;
precision highp int;
uniform sampler2D u_hidden;  // RGBA32F [1, H]: the last hidden layer's activations (r)
uniform sampler2D u_w1;      // R32F [4K rows, H columns]
uniform sampler2D u_b1;      // R32F [1, 4K]
uniform int u_hiddenSize;
uniform int u_k;             // components per group K
uniform sampler2D u_amp;     // RGBA32F [1, K]: a_gk / 32767 of the 4 groups (int16 basis scale)
out vec4 o_coeff;
void main() {
  int k = int(gl_FragCoord.x);
  vec4 c = vec4(0.0);
  for (int g = 0; g < 4; ++g) {
    int row = g * u_k + k;
    float s = texelFetch(u_b1, ivec2(row, 0), 0).r;
    for (int j = 0; j < u_hiddenSize; ++j)
      s += texelFetch(u_w1, ivec2(j, row), 0).r * texelFetch(u_hidden, ivec2(j, 0), 0).r;
    c[g] = s;
  }
  o_coeff = c * texelFetch(u_amp, ivec2(k, 0), 0);
}`;

// The blend pass runs over the first ceil(A / W) texture rows, where the bundle keeps its A moving
// Gaussians (web_bundle.py); the rest were blended once at load and keep their neutral attributes.
// Its K terms are unrolled for the K the viewer uses: on a software rasterizer (SwiftShader) a loop
// with a dynamic bound costs ~12 % more per term, int16 texels ~25 % less than fp16 ones, and texel
// fetches and the bytes they pull are most of a term's cost. So a Gaussian's basis row packs its 11·K
// int16 values densely, 8 per RGBA32I texel (web_bundle.py, basis.i32): 11/8 fetches and 22 bytes per
// component, one contiguous run per Gaussian; the unrolled code knows which half of which texel holds
// which value. (3 RGBA16I texels per component: 3 fetches, 24 bytes. 2 RGBA32I texels with 5 halves of
// padding: 2 fetches but 32 bytes, slower than RGBA16I once the basis outgrows a CPU's L3 cache.)
const BASIS_TARGETS = ['pos.x', 'pos.y', 'pos.z', 'ls.x', 'ls.y', 'ls.z', 'q.x', 'q.y', 'q.z', 'q.w', 'pos.w'];
const BASIS_GROUPS = 'xxxyyyzzzzw';  // coefficient of each of the 11 values: c_xyz, c_scale, c_rot, c_opacity

// Eq. 11 over the first k components, unrolled: per texel m of the Gaussian's basis row, its int32
// channels split into int16 halves lo = (v << 16) >> 16, hi = v >> 16 (arithmetic shifts keep the
// sign), then value i = 8m + 2j + h (half h of channel j), of component i div 11, is added with its
// group's coefficient.
function blendTerms(k) {
  const lines = [];
  for (let m = 0; m < Math.ceil(11 * k / 8); ++m) {
    lines.push(`v = texelFetch(u_basis, ivec3(${m}, g), 0); lo = vec4((v << 16) >> 16); hi = vec4(v >> 16);`);
    for (let h = 0; h < 8 && 8 * m + h < 11 * k; ++h) {
      const i = 8 * m + h, s = i % 11;
      const value = `${h & 1 ? 'hi' : 'lo'}.${'xyzw'[h >> 1]}`;
      lines.push(`${BASIS_TARGETS[s]} += u_c[${(i - s) / 11}].${BASIS_GROUPS[s]} * ${value};`);
    }
  }
  return lines.join('\n  ');
}

// The finish after the blend, per attribute space (web_bundle.py "attribute_space"):
//   paper    log-scales (exp), opacity clamped to [0, 1], the quaternion renormalised;
//   authors  linear scales clamped to >= 1e-5, opacity clamped to [0, 1], the quaternion (their
//            column-normalised space) normalised per Gaussian: what their WebGL viewer does
//            (agora_core/mobile/blendshape_avatar.py, finish "viewer").
function scaleOf(space) {
  return space === 'authors' ? 'max(ls, vec3(1e-5))' : 'exp(ls)';
}

export function blendShader(k, space = 'paper') {
  return `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2DArray;
precision highp isampler2DArray;
uniform sampler2DArray u_neutral;  // RGBA32F, layers: (xyz, opacity), (scale xyz, active), (quat wxyz)
uniform isampler2DArray u_basis;   // RGBA32I, Gaussian t's basis row at row t mod R, layer t div R
uniform int u_texWidth;            // W: Gaussian t is at fragment (t mod W, t div W)
uniform int u_basisRows;           // R: Gaussians per basis layer
layout(std140) uniform Coefficients { vec4 u_c[256]; };  // (c_xyz, c_scale, c_rot, c_opacity) · a / 32767, per k
layout(location = 0) out vec4 o_pos;   // animated mean xyz, opacity
layout(location = 1) out vec4 o_cov0;  // Σ00 Σ01 Σ02 Σ11
layout(location = 2) out vec4 o_cov1;  // Σ12 Σ22 0 0
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  int t = p.y * u_texWidth + p.x;
  ivec2 g = ivec2(t % u_basisRows, t / u_basisRows);  // row, layer of the basis texture
  vec4 pos = texelFetch(u_neutral, ivec3(p, 0), 0);
  vec3 ls = texelFetch(u_neutral, ivec3(p, 1), 0).xyz;
  vec4 q = texelFetch(u_neutral, ivec3(p, 2), 0);
  ivec4 v;
  vec4 lo, hi;
  ${blendTerms(k)}
  pos.w = clamp(pos.w, 0.0, 1.0);           // opacity residuals are post-sigmoid: clamp after blending
  float n = length(q);
  q = n > 0.0 ? q / n : vec4(1.0, 0.0, 0.0, 0.0);  // renormalise the blended quaternion
  float w = q.x, x = q.y, y = q.z, z = q.w;
  mat3 r = mat3(  // column-major: columns of R
    1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y),
    2.0 * (x * y - w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + w * x),
    2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y));
  vec3 sc = ${scaleOf(space)};
  mat3 m = r * mat3(sc.x, 0.0, 0.0, 0.0, sc.y, 0.0, 0.0, 0.0, sc.z);
  mat3 s = m * transpose(m);  // Σ = R S Sᵀ Rᵀ
  o_pos = pos;
  o_cov0 = vec4(s[0][0], s[0][1], s[0][2], s[1][1]);
  o_cov1 = vec4(s[1][2], s[2][2], 0.0, 0.0);
}`;
}

// Splatting follows our rasterizer (agora_core/render/projection.py, gsplat "classic"): EWA with the
// 3DGS Jacobian clamp, +0.3 px² low-pass, alpha = min(0.999, o·exp(-½ dᵀ Σ⁻¹ d)), cut below 1/255,
// footprint = min(3.33, sqrt(2 ln(255 o))) standard deviations. Pixel centres at (i + 0.5, j + 0.5),
// image y down (OpenCV); colours are SH (degree 0 or 1) seen from the camera, + 0.5, clamped at 0.
// The projection runs once per Gaussian (a fragment pass, like gsplat's projection kernel), not once
// per quad corner: the splat vertex shader then only places the corners.
export const PROJECT_FS = `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2DArray;
uniform sampler2D u_pos;              // RGBA32F animated (xyz, opacity)
uniform sampler2D u_cov0;
uniform sampler2D u_cov1;
uniform sampler2DArray u_sh;          // RGBA32F, layer j = SH coefficient j (rgb)
uniform int u_shCount;                // 1 or 4
uniform mat4 u_world2cam;             // column-major (OpenCV camera)
uniform vec3 u_camPos;
uniform vec4 u_intr;                  // fx, fy, cx, cy in pixels
uniform vec2 u_size;                  // width, height in pixels
layout(location = 0) out vec4 o_screen;  // 2D mean (px, y down), footprint half-size (px); 0 = culled
layout(location = 1) out vec4 o_conic;   // Σ2d⁻¹ (a, b, c), opacity
layout(location = 2) out vec4 o_color;   // rgb
const float C0 = 0.28209479177387814, C1 = 0.4886025119029199;
void main() {
  ivec2 t = ivec2(gl_FragCoord.xy);
  vec4 po = texelFetch(u_pos, t, 0);
  vec4 a = texelFetch(u_cov0, t, 0), b = texelFetch(u_cov1, t, 0);
  vec3 pc = (u_world2cam * vec4(po.xyz, 1.0)).xyz;
  o_screen = vec4(0.0);
  o_conic = vec4(0.0);
  o_color = vec4(0.0);
  if (pc.z <= 0.01 || po.w < 1.0 / 255.0) return;
  mat3 sw = mat3(a.x, a.y, a.z, a.y, a.w, b.x, a.z, b.x, b.y);
  mat3 rw = mat3(u_world2cam);
  mat3 sc = rw * sw * transpose(rw);
  float fx = u_intr.x, fy = u_intr.y, cx = u_intr.z, cy = u_intr.w;
  float limxp = (u_size.x - cx) / fx + 0.3 * (0.5 * u_size.x / fx), limxn = cx / fx + 0.3 * (0.5 * u_size.x / fx);
  float limyp = (u_size.y - cy) / fy + 0.3 * (0.5 * u_size.y / fy), limyn = cy / fy + 0.3 * (0.5 * u_size.y / fy);
  float jx = pc.z * clamp(pc.x / pc.z, -limxn, limxp), jy = pc.z * clamp(pc.y / pc.z, -limyn, limyp);
  float iz = 1.0 / pc.z;
  mat3 j = mat3(fx * iz, 0.0, 0.0, 0.0, fy * iz, 0.0, -fx * jx * iz * iz, -fy * jy * iz * iz, 0.0);
  mat3 c2 = j * sc * transpose(j);
  float c00 = c2[0][0] + 0.3, c01 = c2[0][1], c11 = c2[1][1] + 0.3;
  float det = c00 * c11 - c01 * c01;
  if (det <= 0.0) return;
  float extend = min(3.33, sqrt(2.0 * log(max(po.w * 255.0, 1.0))));
  o_screen = vec4(fx * pc.x * iz + cx, fy * pc.y * iz + cy, extend * sqrt(vec2(c00, c11)) + 1.0);
  o_conic = vec4(c11 / det, -c01 / det, c00 / det, po.w);
  vec3 dir = normalize(po.xyz - u_camPos);
  vec3 rgb = C0 * texelFetch(u_sh, ivec3(t, 0), 0).rgb;
  if (u_shCount == 4) {
    rgb += -C1 * dir.y * texelFetch(u_sh, ivec3(t, 1), 0).rgb + C1 * dir.z * texelFetch(u_sh, ivec3(t, 2), 0).rgb
           - C1 * dir.x * texelFetch(u_sh, ivec3(t, 3), 0).rgb;
  }
  o_color = vec4(max(rgb + 0.5, 0.0), 1.0);
}`;

export const SPLAT_VS = `#version 300 es
precision highp float;
precision highp int;
uniform highp usampler2D u_order;     // slot -> Gaussian index, front to back
uniform sampler2D u_screen;           // PROJECT_FS outputs
uniform sampler2D u_conic;
uniform sampler2D u_color;
uniform int u_texWidth;
uniform vec2 u_size;                  // width, height in pixels
out vec2 v_d;                         // pixel offset from the 2D mean (y down)
flat out vec3 v_conic;
flat out vec4 v_color;                // rgb, opacity
void main() {
  int slot = gl_VertexID >> 2, cornerId = gl_VertexID & 3;  // 4 vertices per quad
  int i = int(texelFetch(u_order, ivec2(slot % u_texWidth, slot / u_texWidth), 0).r);
  ivec2 t = ivec2(i % u_texWidth, i / u_texWidth);
  vec4 s = texelFetch(u_screen, t, 0);
  gl_Position = vec4(0.0, 0.0, 2.0, 1.0);  // culled: outside the clip volume
  if (s.z <= 0.0) return;
  vec4 c = texelFetch(u_conic, t, 0);
  v_conic = c.xyz;
  v_color = vec4(texelFetch(u_color, t, 0).rgb, c.w);
  vec2 corner = vec2(cornerId & 1, cornerId >> 1) * 2.0 - 1.0;
  v_d = corner * s.zw;
  vec2 pix = s.xy + v_d;
  gl_Position = vec4(2.0 * pix.x / u_size.x - 1.0, 1.0 - 2.0 * pix.y / u_size.y, 0.0, 1.0);
}`;

export const SPLAT_FS = `#version 300 es
precision highp float;
in vec2 v_d;
flat in vec3 v_conic;
flat in vec4 v_color;
out vec4 o_color;
void main() {
  float sigma = 0.5 * (v_conic.x * v_d.x * v_d.x + v_conic.z * v_d.y * v_d.y) + v_conic.y * v_d.x * v_d.y;
  float alpha = min(0.999, v_color.a * exp(-sigma));
  if (sigma < 0.0 || alpha < 1.0 / 255.0) discard;
  o_color = vec4(v_color.rgb * alpha, alpha);  // premultiplied; blended front to back with "under"
}`;

export const PRESENT_FS = `#version 300 es
precision highp float;
uniform sampler2D u_image;  // premultiplied splats composited front to back, A = 1 - transmittance
uniform vec3 u_background;
out vec4 o_color;
void main() {
  // Both framebuffers keep GL's bottom-up rows (the splat pass maps image y-down to NDC y-up).
  vec4 c = texelFetch(u_image, ivec2(gl_FragCoord.xy), 0);
  o_color = vec4(clamp(c.rgb + (1.0 - c.a) * u_background, 0.0, 1.0), 1.0);
}`;
