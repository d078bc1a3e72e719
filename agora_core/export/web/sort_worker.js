// Depth sort of the animated Gaussians, off the main thread (a module Web Worker), from coefficients:
// depth_i = r · (p0_i + Σ_k c_k U_k,i) + t = base_i + Σ_k c_k proj_k,i for the camera's depth row (r, t),
// with base and proj = r · U_k recomputed only when the view changes (then a re-sort for new
// coefficients is K multiply-adds per moving Gaussian, and no positions come back from the GPU).
// In:  {type: 'init', neutral: neutral.bin buffer, basis: basis.i32 buffer, count N, active A, k K used,
//       rowValues: int16 values per Gaussian row of basis.i32, texels}
//      {type: 'sort', coeffs: Float32Array [K] xyz coefficients in int16 basis units, viewZ: [r20, r21, r22, t2],
//       id, order: a Uint32Array [texels] to fill, or null}
// Out: {order: Uint32Array [texels], slots [0, N) near to far (front-to-back "under" compositing), id, ms}
// A 16-bit counting sort on depth (two passes over N, O(N + 65536)), as antimatter15's viewer does;
// depth bins of (max - min) / 65535 (a few µm for a head) only reorder Gaussians closer than that.

const BINS = 65536;
let S = null;

function init({ neutral, basis, count, active, k, rowValues, texels }) {
  // basis.i32 as the int16 values it packs (little-endian, as every browser): value 11c + j of Gaussian i's row
  const p = new Float32Array(neutral, 0, 4 * texels), b = new Int16Array(basis);
  const mean = new Float32Array(3 * count), xyz = new Int16Array(3 * k * active);
  for (let i = 0; i < count; ++i) for (let j = 0; j < 3; ++j) mean[3 * i + j] = p[4 * i + j];
  for (let c = 0; c < k; ++c) {  // component c's xyz: values 11c, 11c + 1, 11c + 2 of each row
    for (let i = 0; i < active; ++i) {
      for (let j = 0; j < 3; ++j) xyz[3 * (c * active + i) + j] = b[i * rowValues + 11 * c + j];
    }
  }
  S = { count, active, k, texels, mean, xyz, view: null, base: new Float32Array(count),
    proj: new Float32Array(k * active), depth: new Float32Array(count), key: new Uint16Array(count),
    counts: new Uint32Array(BINS) };
}

function project(viewZ) {  // base_i = r · p0_i + t, proj_k,i = r · U_k,i
  const [r0, r1, r2, t] = viewZ, { mean, xyz, base, proj } = S;
  for (let i = 0; i < S.count; ++i) base[i] = r0 * mean[3 * i] + r1 * mean[3 * i + 1] + r2 * mean[3 * i + 2] + t;
  for (let j = 0; j < S.k * S.active; ++j) proj[j] = r0 * xyz[3 * j] + r1 * xyz[3 * j + 1] + r2 * xyz[3 * j + 2];
  S.view = viewZ.join(',');
}

function sort({ coeffs, viewZ, id, order }) {
  const t0 = performance.now(), { count, active, depth, key, counts } = S;
  if (S.view !== viewZ.join(',')) project(viewZ);
  depth.set(S.base);
  for (let c = 0; c < Math.min(coeffs.length, S.k); ++c) {
    const w = coeffs[c], proj = S.proj.subarray(c * active, (c + 1) * active);
    if (w !== 0) for (let i = 0; i < active; ++i) depth[i] += w * proj[i];
  }
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < count; ++i) {
    if (depth[i] < lo) lo = depth[i];
    if (depth[i] > hi) hi = depth[i];
  }
  const scale = hi > lo ? (BINS - 1) / (hi - lo) : 0;
  counts.fill(0);
  for (let i = 0; i < count; ++i) {
    const b = Math.floor((depth[i] - lo) * scale);  // near first
    key[i] = b;
    counts[b]++;
  }
  for (let b = 1; b < BINS; ++b) counts[b] += counts[b - 1];
  const out = order || new Uint32Array(S.texels);
  for (let i = count - 1; i >= 0; --i) out[--counts[key[i]]] = i;  // stable
  self.postMessage({ order: out, id, ms: performance.now() - t0 }, [out.buffer]);
}

self.onmessage = ({ data }) => (data.type === 'init' ? init(data) : sort(data));
