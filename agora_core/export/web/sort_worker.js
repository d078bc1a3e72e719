// Depth sort of the Gaussians, off the main thread (a module Web Worker).
// In:  {positions: Float32Array [N*4] (xyz, opacity) of the *animated* Gaussians, count N,
//       viewZ: [r20, r21, r22, t2] the camera's depth row (z_cam = r2 · p + t2), id}
// Out: {order: Uint32Array [N] far to near (back-to-front "over" compositing), id, visible, ms}
// A 16-bit counting sort on depth (two passes over N, O(N + 65536)), as antimatter15's viewer does;
// depth bins of (max - min) / 65535 (a few µm for a head) only reorder Gaussians closer than that.

self.onmessage = (event) => {
  const { positions, count, viewZ, id } = event.data;
  const t0 = performance.now();
  const depth = new Float32Array(count);
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < count; ++i) {
    const d = viewZ[0] * positions[4 * i] + viewZ[1] * positions[4 * i + 1] + viewZ[2] * positions[4 * i + 2] + viewZ[3];
    depth[i] = d;
    if (d < lo) lo = d;
    if (d > hi) hi = d;
  }
  const bins = 65536;
  const scale = hi > lo ? (bins - 1) / (hi - lo) : 0;
  const key = new Uint16Array(count);
  const counts = new Uint32Array(bins);
  for (let i = 0; i < count; ++i) {
    const b = (bins - 1) - Math.floor((depth[i] - lo) * scale);  // far first
    key[i] = b;
    counts[b]++;
  }
  for (let b = 1; b < bins; ++b) counts[b] += counts[b - 1];
  const order = new Uint32Array(count);
  for (let i = count - 1; i >= 0; --i) order[--counts[key[i]]] = i;  // stable
  let visible = 0;
  for (let i = 0; i < count; ++i) if (depth[i] > 0.01) visible++;
  self.postMessage({ order, id, visible, ms: performance.now() - t0 }, [order.buffer]);
};
