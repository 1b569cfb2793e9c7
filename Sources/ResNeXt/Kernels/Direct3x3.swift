#if canImport(Glibc)
    import Glibc
#endif

/// Direct 3x3, stride 1, padding 1 convolution in float32, per group, over channel-major tensors,
/// without im2col: each output row block is accumulated in SIMD registers from a zero-padded copy
/// of one image's input planes. Used by `Conv2d` for the grouped 3x3 convolutions (forward, the
/// input gradient as a convolution with the flipped weights, and the weight gradient) when the
/// plane width is a multiple of 8 and the channels per group are multiples of 4 (8 when the
/// plane is 8 wide and of odd height).
///
/// x (groups * cin, N, H, W); weights (groups * kout, cin, 3, 3); y (groups * kout, N, H, W) is
/// written, or added to when `accumulate`. `scratch` holds `direct3x3ScratchCount(cin:h:w:)` floats.
public enum Direct3x3 {
    /// Row stride of the padded planes: one zero column on the left, W values, zeros to the right.
    static func paddedWidth(_ w: Int) -> Int { w + 8 }

    static func scratchCount(cin: Int, h: Int, w: Int) -> Int { cin * (h + 2) * paddedWidth(w) }

    public static func applies(cin: Int, kout: Int, h: Int, w: Int) -> Bool {
        guard w % 8 == 0, h >= 1 else { return false }
        return w % 16 == 0 ? kout % 4 == 0 : pairsRows(kout: kout, h: h) || kout % 8 == 0
    }

    /// Whether planes 8 wide take the 4 channels x 2 rows blocking (else 8 channels x 1 row).
    static func pairsRows(kout: Int, h: Int) -> Bool { kout % 4 == 0 && h % 2 == 0 }

    static func run(
        x: UnsafePointer<Float>, weights: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
        cin: Int, kout: Int, groups: Int, n: Int, h: Int, w: Int, accumulate: Bool,
        scratch: UnsafeMutablePointer<Float>, normalize: NormalizedInput? = nil
    ) {
        let hw = h * w, ws = paddedWidth(w), plane = (h + 2) * ws
        for g in 0..<groups {
            for ni in 0..<n {
                // zero-padded planes of this image's cin input channels
                for c in 0..<cin {
                    pad(
                        x + ((g * cin + c) * n + ni) * hw, into: scratch + c * plane, h: h, w: w,
                        normalize: normalize?.factors(g * cin + c, ni))
                }
                let wg = weights + g * kout * cin * 9
                let yImage = y + (g * kout * n + ni) * hw
                if w % 16 == 0 {
                    for k0 in Swift.stride(from: 0, to: kout, by: 4) {
                        for i in 0..<h {
                            for j in Swift.stride(from: 0, to: w, by: 16) {
                                block4x2(
                                    scratch: scratch + i * ws + j, plane: plane, ws: ws, inputSecond: 8,
                                    weights: wg + k0 * cin * 9, cin: cin, out: yImage + k0 * n * hw + i * w + j,
                                    outputSecond: 8, channelStride: n * hw, accumulate: accumulate)
                            }
                        }
                    }
                } else if pairsRows(kout: kout, h: h) {
                    for k0 in Swift.stride(from: 0, to: kout, by: 4) {
                        for i in Swift.stride(from: 0, to: h, by: 2) {
                            block4x2(
                                scratch: scratch + i * ws, plane: plane, ws: ws, inputSecond: ws,
                                weights: wg + k0 * cin * 9, cin: cin, out: yImage + k0 * n * hw + i * w,
                                outputSecond: w, channelStride: n * hw, accumulate: accumulate)
                        }
                    }
                } else {
                    for k0 in Swift.stride(from: 0, to: kout, by: 8) {
                        for i in 0..<h {
                            for j in Swift.stride(from: 0, to: w, by: 8) {
                                block8x8(
                                    scratch: scratch + i * ws + j, plane: plane, ws: ws, weights: wg + k0 * cin * 9,
                                    cin: cin, out: yImage + k0 * n * hw + i * w + j, channelStride: n * hw,
                                    accumulate: accumulate)
                            }
                        }
                    }
                }
            }
        }
    }

    /// One h x w plane into a zero-padded (h + 2) x `paddedWidth(w)` plane: the value at (i, j)
    /// moves to (i + 1, j + 1), through `NormalizedInput.apply` with `normalize`'s factors.
    @inline(__always)
    static func pad(
        _ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, h: Int, w: Int,
        normalize: (scale: Float, shift: Float)? = nil
    ) {
        let ws = paddedWidth(w)
        dst.update(repeating: 0, count: ws)
        for i in 0..<h {
            let row = dst + (i + 1) * ws
            row[0] = 0
            if let normalize {
                let line = src + i &* w, out = row + 1
                var j = 0
                while j < w { store(NormalizedInput.apply(load(line + j), normalize), out + j, accumulate: false); j &+= 8 }
            } else {
                (row + 1).update(from: src + i * w, count: w)
            }
            (row + 1 + w).update(repeating: 0, count: ws - w - 1)
        }
        (dst + (h + 1) * ws).update(repeating: 0, count: ws)
    }

    /// Images per chunk of the weight gradient: one padded input channel of the chunk is about
    /// 4096 floats (16 KiB), so that it stays in L1 while every output channel's dy is read
    /// against it.
    static func weightGradientImages(n: Int, h: Int, w: Int) -> Int { max(1, min(n, 4096 / ((h + 2) * paddedWidth(w)))) }

    /// Whether `Conv2d` computes the weight gradient here rather than by im2col + GEMM: where the
    /// GEMM is thin, kout rows of 9 * cin columns with cin * kout <= 1024. Measured per layer with
    /// `bench --layers` (one thread, docs/performance.md), the whole backward: at 16 channels per
    /// group (29-4x16d stage 1) 0.61 of im2col + GEMM's; at 32 (stage 2) 0.77-0.89 of it; at 64
    /// (stage 3, and 29-4x64d) a tie or slower, and 10-25 % slower at 32 x 32 and 16 x 16.
    static func weightGradientApplies(cin: Int, kout: Int) -> Bool { cin * kout <= 1024 }

    /// Scratch floats of `weightGradient`: the padded planes of one chunk of images.
    static func weightGradientScratchCount(cin: Int, n: Int, h: Int, w: Int) -> Int {
        cin * weightGradientImages(n: n, h: h, w: w) * (h + 2) * paddedWidth(w)
    }

    /// dW += dL/dW for the same convolution as `run`: dW[k, c, r, s] = sum over images and
    /// pixels of dy[k, i, j] * xpad[c, i + r, j + s]. For each (c, k) pair, 9 accumulators
    /// (one per tap) run over a chunk of images 8 columns at a time: one load of dy and 9 of the
    /// padded input channel (in L1) feed 9 FMAs. dW is (groups * kout, cin, 3, 3). `one` must be 1, passed in
    /// from a value the compiler cannot see (see `tapSums`).
    static func weightGradient(
        x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>,
        cin: Int, kout: Int, groups: Int, n: Int, h: Int, w: Int,
        scratch: UnsafeMutablePointer<Float>, one: Int, normalize: NormalizedInput? = nil
    ) {
        let hw = h * w, ws = paddedWidth(w), plane = (h + 2) * ws
        let chunk = weightGradientImages(n: n, h: h, w: w)
        for g in 0..<groups {
            for n0 in Swift.stride(from: 0, to: n, by: chunk) {
                let nc = min(chunk, n - n0)
                for c in 0..<cin {
                    for i in 0..<nc {
                        pad(
                            x + ((g * cin + c) * n + n0 + i) * hw, into: scratch + (c * nc + i) * plane, h: h, w: w,
                            normalize: normalize?.factors(g * cin + c, n0 + i))
                    }
                }
                for c in 0..<cin {
                    for k in 0..<kout {
                        tapSums(
                            dy: dy + ((g * kout + k) * n + n0) * hw, xpad: scratch + c * nc * plane, images: nc, h: h, w: w,
                            ws: ws, plane: plane, one: one, into: dw + ((g * kout + k) * cin + c) * 9)
                    }
                }
            }
        }
    }

    /// out[r*3 + s] += sum over the images, rows i and columns j of dy[i, j] * xpad[i + r, j + s].
    @inline(__always)
    static func tapSums(
        dy: UnsafePointer<Float>, xpad: UnsafePointer<Float>, images: Int, h: Int, w: Int, ws: Int,
        plane: Int, one: Int, into out: UnsafeMutablePointer<Float>
    ) {
        // the column shift `one` (1) comes from the caller at run time: given a constant, LLVM
        // merges the three overlapping loads of a row into shuffles and spills, 3x slower
        let two = 2 &* one
        var t0 = SIMD8<Float>(), t1 = SIMD8<Float>(), t2 = SIMD8<Float>()
        var t3 = SIMD8<Float>(), t4 = SIMD8<Float>(), t5 = SIMD8<Float>()
        var t6 = SIMD8<Float>(), t7 = SIMD8<Float>(), t8 = SIMD8<Float>()
        var d = dy
        for img in 0..<images {
            var row = xpad + img &* plane
            var i = 0
            // two dy rows at a time share the loads of padded rows i + 1 and i + 2: 14 loads per
            // 18 FMAs instead of 20
            while i &+ 1 < h {
                for j in Swift.stride(from: 0, to: w, by: 8) {
                    let u = load(d + j), v = load(d + (w &+ j))
                    let r0 = row + j, r1 = r0 + ws, r2 = r1 + ws, r3 = r2 + ws
                    var x0 = load(r0), x1 = load(r0 + one), x2 = load(r0 + two)
                    t0 = t0.addingProduct(x0, u); t1 = t1.addingProduct(x1, u); t2 = t2.addingProduct(x2, u)
                    x0 = load(r1); x1 = load(r1 + one); x2 = load(r1 + two)
                    t3 = t3.addingProduct(x0, u); t4 = t4.addingProduct(x1, u); t5 = t5.addingProduct(x2, u)
                    t0 = t0.addingProduct(x0, v); t1 = t1.addingProduct(x1, v); t2 = t2.addingProduct(x2, v)
                    x0 = load(r2); x1 = load(r2 + one); x2 = load(r2 + two)
                    t6 = t6.addingProduct(x0, u); t7 = t7.addingProduct(x1, u); t8 = t8.addingProduct(x2, u)
                    t3 = t3.addingProduct(x0, v); t4 = t4.addingProduct(x1, v); t5 = t5.addingProduct(x2, v)
                    x0 = load(r3); x1 = load(r3 + one); x2 = load(r3 + two)
                    t6 = t6.addingProduct(x0, v); t7 = t7.addingProduct(x1, v); t8 = t8.addingProduct(x2, v)
                }
                d += 2 &* w
                row += 2 &* ws
                i &+= 2
            }
            if i < h {
                for j in Swift.stride(from: 0, to: w, by: 8) {
                    let v = load(d + j)
                    let r0 = row + j, r1 = r0 + ws, r2 = r1 + ws
                    t0 = t0.addingProduct(load(r0), v); t1 = t1.addingProduct(load(r0 + one), v); t2 = t2.addingProduct(load(r0 + two), v)
                    t3 = t3.addingProduct(load(r1), v); t4 = t4.addingProduct(load(r1 + one), v); t5 = t5.addingProduct(load(r1 + two), v)
                    t6 = t6.addingProduct(load(r2), v); t7 = t7.addingProduct(load(r2 + one), v); t8 = t8.addingProduct(load(r2 + two), v)
                }
                d += w
            }
        }
        out[0] += t0.sum(); out[1] += t1.sum(); out[2] += t2.sum()
        out[3] += t3.sum(); out[4] += t4.sum(); out[5] += t5.sum()
        out[6] += t6.sum(); out[7] += t7.sum(); out[8] += t8.sum()
    }

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let raw = UnsafeMutableRawPointer(p)
        raw.storeBytes(of: accumulate ? raw.loadUnaligned(as: SIMD8<Float>.self) + v : v, as: SIMD8<Float>.self)
    }

    /// 4 output channels x two 8-column output vectors: 8 accumulators; per tap 2 input loads and
    /// 4 weight broadcasts feed 8 FMAs. The second vector lies `inputSecond` floats after the
    /// first in the padded input and `outputSecond` in the output:
    /// - 8 and 8: 16 columns of one output row (planes 16k wide);
    /// - the padded and the plain row width: 2 rows of 8 columns (planes 8 wide). The two rows'
    ///   taps then share loads (4 padded rows at 3 shifts: 12 loads and 36 broadcasts per input
    ///   channel for 72 FMAs, where 8 x 8 needs 81 loads; stage 3 of 29-4x16d was load-bound).
    /// Index arithmetic wraps (no overflow checks), so that the 9 taps unroll.
    @inline(__always)
    static func block4x2(
        scratch: UnsafePointer<Float>, plane: Int, ws: Int, inputSecond: Int, weights: UnsafePointer<Float>,
        cin: Int, out: UnsafeMutablePointer<Float>, outputSecond: Int, channelStride: Int, accumulate: Bool
    ) {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), b0 = SIMD8<Float>(), b1 = SIMD8<Float>()
        var c0 = SIMD8<Float>(), c1 = SIMD8<Float>(), d0 = SIMD8<Float>(), d1 = SIMD8<Float>()
        let kStride = cin &* 9
        var src = scratch
        var wa = weights, wb = weights + kStride, wc = weights + 2 &* kStride, wd = weights + 3 &* kStride
        for _ in 0..<cin {
            for r in 0..<3 {
                let row = src + r &* ws
                for s in 0..<3 {
                    let x0 = load(row + s), x1 = load(row + (s &+ inputSecond))
                    let t = r &* 3 &+ s
                    let va = SIMD8<Float>(repeating: wa[t]), vb = SIMD8<Float>(repeating: wb[t])
                    let vc = SIMD8<Float>(repeating: wc[t]), vd = SIMD8<Float>(repeating: wd[t])
                    a0 = a0.addingProduct(x0, va); a1 = a1.addingProduct(x1, va)
                    b0 = b0.addingProduct(x0, vb); b1 = b1.addingProduct(x1, vb)
                    c0 = c0.addingProduct(x0, vc); c1 = c1.addingProduct(x1, vc)
                    d0 = d0.addingProduct(x0, vd); d1 = d1.addingProduct(x1, vd)
                }
            }
            src += plane
            wa += 9; wb += 9; wc += 9; wd += 9
        }
        let o2 = outputSecond
        store(a0, out, accumulate: accumulate); store(a1, out + o2, accumulate: accumulate)
        store(b0, out + channelStride, accumulate: accumulate); store(b1, out + channelStride + o2, accumulate: accumulate)
        store(c0, out + 2 * channelStride, accumulate: accumulate); store(c1, out + 2 * channelStride + o2, accumulate: accumulate)
        store(d0, out + 3 * channelStride, accumulate: accumulate); store(d1, out + 3 * channelStride + o2, accumulate: accumulate)
    }

    /// 8 output channels x 8 columns (planes 8 wide): 8 accumulators; per tap 1 input load and
    /// 8 weight broadcasts.
    @inline(__always)
    static func block8x8(
        scratch: UnsafePointer<Float>, plane: Int, ws: Int, weights: UnsafePointer<Float>, cin: Int,
        out: UnsafeMutablePointer<Float>, channelStride: Int, accumulate: Bool
    ) {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var a4 = SIMD8<Float>(), a5 = SIMD8<Float>(), a6 = SIMD8<Float>(), a7 = SIMD8<Float>()
        let kStride = cin &* 9
        var src = scratch, wp = weights
        for _ in 0..<cin {
            for r in 0..<3 {
                let row = src + r &* ws
                for s in 0..<3 {
                    let x0 = load(row + s)
                    let t = r &* 3 &+ s
                    a0 = a0.addingProduct(x0, SIMD8(repeating: wp[t]))
                    a1 = a1.addingProduct(x0, SIMD8(repeating: wp[kStride &+ t]))
                    a2 = a2.addingProduct(x0, SIMD8(repeating: wp[2 &* kStride &+ t]))
                    a3 = a3.addingProduct(x0, SIMD8(repeating: wp[3 &* kStride &+ t]))
                    a4 = a4.addingProduct(x0, SIMD8(repeating: wp[4 &* kStride &+ t]))
                    a5 = a5.addingProduct(x0, SIMD8(repeating: wp[5 &* kStride &+ t]))
                    a6 = a6.addingProduct(x0, SIMD8(repeating: wp[6 &* kStride &+ t]))
                    a7 = a7.addingProduct(x0, SIMD8(repeating: wp[7 &* kStride &+ t]))
                }
            }
            src += plane
            wp += 9
        }
        store(a0, out, accumulate: accumulate)
        store(a1, out + channelStride, accumulate: accumulate)
        store(a2, out + 2 * channelStride, accumulate: accumulate)
        store(a3, out + 3 * channelStride, accumulate: accumulate)
        store(a4, out + 4 * channelStride, accumulate: accumulate)
        store(a5, out + 5 * channelStride, accumulate: accumulate)
        store(a6, out + 6 * channelStride, accumulate: accumulate)
        store(a7, out + 7 * channelStride, accumulate: accumulate)
    }
}
