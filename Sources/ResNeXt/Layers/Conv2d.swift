// Layout legend (used in every kernel comment): N images, C input channels, K output channels,
// H x W input plane, P x Q output plane, G groups, Cg = C/G, Kg = K/G, R = S = kernel size.
// Activations are channel-major: x is (C, N, H, W), so one channel of the whole batch is
// contiguous, a 1x1 convolution is one GEMM over all N*H*W pixels, and each BN channel
// (and each BN group within it) is one contiguous run.

/// 2-D convolution without bias, any groups, stride and padding, lowered to SGEMM:
/// one GEMM per group over the whole batch; a 1x1 stride-1 convolution reads x directly,
/// anything else goes through `im2col` into the shared column workspace.
/// Weight layout is PyTorch's: (K, Cg, R, S), so group g's weights are a (Kg, Cg*R*S) matrix.
public final class Conv2d<T: EngineScalar> {
    public let inChannels, outChannels, kernel, stride, padding, groups: Int
    public let name: String
    let weightOffset: Int
    public private(set) var weight: UnsafeMutablePointer<T>!
    public private(set) var dWeight: UnsafeMutablePointer<T>!

    public init(
        _ name: String, _ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1,
        padding: Int = 0, groups: Int = 1, layout: inout StoreLayout
    ) {
        precondition(inChannels % groups == 0 && outChannels % groups == 0)
        self.name = name
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.stride = stride; self.padding = padding; self.groups = groups
        weightOffset = layout.add(name + ".weight", [outChannels, inChannels / groups, kernel, kernel], .parameter)
        columnBudget = Self.chunkBudget
    }

    /// `chunkBudget` when the layer was built: the workspace it asks for and the chunks it uses
    /// stay consistent even if the thread count changes later.
    let columnBudget: Int

    public func bind(_ store: ParameterStore<T>) {
        weight = store.params.base + weightOffset
        dWeight = store.grads.base + weightOffset
    }

    public var weightCount: Int { outChannels * (inChannels / groups) * kernel * kernel }

    public func outputSize(_ h: Int, _ w: Int) -> (Int, Int) {
        ((h + 2 * padding - kernel) / stride + 1, (w + 2 * padding - kernel) / stride + 1)
    }

    /// True when x itself is the GEMM operand (no im2col).
    var isPointwise: Bool { kernel == 1 && stride == 1 && padding == 0 }

    /// Which of the engine's kernels this layer runs where they apply (`ConvolutionPath`): the
    /// rules unless `ConvolutionTuner` or a benchmark set another.
    public var path = ConvolutionPath.rules

    /// Called, when set, with this layer's forward output (its start and element count) once it
    /// is written, as PyTorch's `register_forward_hook`. The fixture tests' conditioning measure
    /// moves each stored activation of the float64 engine by float32-rounding noise with it.
    public var forwardHook: ((UnsafeMutablePointer<T>, Int) -> Void)? = nil

    /// True for a stride-1 "same" convolution with a kernel > 1: its input gradient is itself a
    /// convolution of dy with the flipped, transposed weights, computed as im2col(dy) followed by
    /// a GEMM of the forward's shape (Cg rows, Kg*R*S deep), instead of a GEMM Kg deep whose
    /// columns col2im scatters back into dx. Measured (one thread, 4x16d stage 1): the transposed
    /// GEMM shape ran at 31-34 GFLOP/s, the forward shape at 49-61; and copying beats scatter-adding.
    var backwardAsConvolution: Bool { kernel > 1 && stride == 1 && 2 * padding == kernel - 1 }

    /// flipped, per group g, the (Cg, Kg*R*S) matrix W'[c, (k, r, s)] = W[g Kg + k, c, R-1-r, S-1-s].
    func flipWeights(into flipped: UnsafeMutablePointer<T>) {
        let cg = inChannels / groups, kg = outChannels / groups, rs = kernel * kernel
        for g in 0..<groups {
            let wg = weight + g * kg * cg * rs, fg = flipped + g * cg * kg * rs
            for k in 0..<kg {
                for c in 0..<cg {
                    let src = wg + (k * cg + c) * rs, dst = fg + c * kg * rs + k * rs
                    for i in 0..<rs { dst[i] = src[rs - 1 - i] }
                }
            }
        }
    }

    /// Multiply-accumulates of one forward pass per image.
    public func macsPerImage(h: Int, w: Int) -> Int {
        let (p, q) = outputSize(h, w)
        return p * q * outChannels * (inChannels / groups) * kernel * kernel
    }

    /// y (K, N, P, Q) = conv(x (C, N, H, W)). `col` holds `columnCount` floats. With `normalize`
    /// (where `readsNormalizedInput`), x is a batch norm's input and the convolution reads its
    /// output with ReLU.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func forward(
        x: UnsafePointer<T>, y: UnsafeMutablePointer<T>, n: Int, h: Int, w: Int,
        col: UnsafeMutablePointer<T>, normalize: NormalizedInput? = nil
    ) {
        precondition(normalize == nil || readsNormalizedInput(h: h, w: w), "\(name) cannot read a normalized input")
        let (p, q) = outputSize(h, w)
        let cg = inChannels / groups, kg = outChannels / groups
        let pq = p * q, npq = n * pq, rows = cg * kernel * kernel
        defer { if let forwardHook { forwardHook(y, outChannels * npq) } }
        let started = Profile.enabled ? Profile.now() : 0
        defer { if Profile.enabled && Profile.byLayer { Profile.layerSeconds[name, default: 0] += Profile.now() - started } }
        let chunk = imagesPerChunk(n: n, h: h, w: w), lowering = self.lowering(n: n, h: h, w: w)
        if usesWinograd(h: h, w: w) {
            Profile.measure(.gemm) {
                Winograd.run(
                    x: floats(x), weights: floats(weight), y: mutableFloats(y), cin: cg, kout: kg, groups: groups,
                    n: n, h: h, w: w, accumulate: false, scratch: mutableFloats(col), normalize: normalize)
            }
            return
        }
        if usesDirect(h: h, w: w) {
            Profile.measure(.gemm) {
                Direct3x3.run(
                    x: floats(x), weights: floats(weight), y: mutableFloats(y), cin: cg, kout: kg, groups: groups,
                    n: n, h: h, w: w, accumulate: false, scratch: mutableFloats(col), normalize: normalize)
            }
            return
        }
        for g in 0..<groups {
            let xg = x + g * cg * n * h * w, wg = weight + g * kg * rows, yg = y + g * kg * npq
            if usesPointwiseKernel(m: kg, k: cg, p: npq) {
                Profile.measure(.gemm) {
                    Pointwise.run(
                        a: floats(wg), aRow: cg, aColumn: 1, x: floats(xg), ldx: npq, y: mutableFloats(yg), ldy: npq, m: kg, k: cg, p: npq,
                        accumulate: false, scratch: mutableFloats(col))
                }
                continue
            }
            if isPointwise {
                // y_g (Kg, NPQ) = W_g (Kg, Cg) * x_g (Cg, NPQ)
                Profile.measure(.gemm) {
                    T.gemm(
                        transA: false, transB: false, m: kg, n: npq, k: rows, alpha: 1, a: wg, lda: rows,
                        b: xg, ldb: npq, beta: 0, c: yg, ldc: npq)
                }
                continue
            }
            for n0 in Swift.stride(from: 0, to: n, by: chunk) {
                let nc = min(chunk, n - n0), cols = nc * pq
                Profile.measure(.im2col) {
                    im2col(lowering, x: xg, col: col, c: cg, n: n, images: n0..<(n0 + nc), normalize: normalize?.channels(from: g * cg))
                }
                // y_g[:, chunk] (Kg, cols) = W_g (Kg, rows) * col (rows, cols)
                Profile.measure(.gemm) {
                    T.gemm(
                        transA: false, transB: false, m: kg, n: cols, k: rows, alpha: 1, a: wg, lda: rows,
                        b: col, ldb: cols, beta: 0, c: yg + n0 * pq, ldc: npq)
                }
            }
        }
    }

    /// Given dy (K, N, P, Q): dWeight += dL/dW (accumulates), and if dx is given,
    /// dx (C, N, H, W) = dL/dx (written, or added to when `accumulate`). x and `normalize` as
    /// given to `forward`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func backward(
        x: UnsafePointer<T>, dy: UnsafePointer<T>, dx: UnsafeMutablePointer<T>?,
        accumulate: Bool = false, n: Int, h: Int, w: Int, col: UnsafeMutablePointer<T>,
        normalize: NormalizedInput? = nil
    ) {
        precondition(normalize == nil || readsNormalizedInput(h: h, w: w), "\(name) cannot read a normalized input")
        let (p, q) = outputSize(h, w)
        let cg = inChannels / groups, kg = outChannels / groups
        let pq = p * q, npq = n * pq, rows = cg * kernel * kernel
        let started = Profile.enabled ? Profile.now() : 0
        defer { if Profile.enabled && Profile.byLayer { Profile.layerSeconds[name, default: 0] += Profile.now() - started } }
        let chunk = imagesPerChunk(n: n, h: h, w: w), lowering = self.lowering(n: n, h: h, w: w)
        let asConvolution = backwardAsConvolution && dx != nil
        let winograd = asConvolution && usesWinograd(h: h, w: w)
        let direct = asConvolution && (usesDirect(h: h, w: w) || winograd)
        let directWeights = usesDirectWeightGradient(h: h, w: w)
        let flipped = col + scratchCount(n: n, h: h, w: w)
        if asConvolution { Profile.measure(.im2col) { flipWeights(into: flipped) } }
        // col2im adds into dx, except on phase planes, where it writes each plane of dx once
        let overwrite = !accumulate && usesPhasePlanes(h: h, w: w)
        if let dx, !accumulate, !isPointwise, !asConvolution, !overwrite {
            Profile.measure(.im2col) { dx.update(repeating: 0, count: inChannels * n * h * w) }
        }
        if directWeights {
            Profile.measure(.gemm) {
                Direct3x3.weightGradient(
                    x: floats(x), dy: floats(dy), dw: mutableFloats(dWeight), cin: cg, kout: kg, groups: groups,
                    n: n, h: h, w: w, scratch: mutableFloats(col), one: kernel - 2, normalize: normalize)
            }
        }
        for g in 0..<groups where !(directWeights && (dx == nil || direct)) {
            let xg = x + g * cg * n * h * w
            let dyg = dy + g * kg * npq
            let wg = weight + g * kg * rows, dwg = dWeight + g * kg * rows
            if isPointwise {
                // dW_g (Kg, Cg) += dy_g (Kg, NHW) * x_g^T (NHW, Cg)
                Profile.measure(.gemm) {
                    T.gemm(
                        transA: false, transB: true, m: kg, n: rows, k: npq, alpha: 1, a: dyg, lda: npq,
                        b: xg, ldb: npq, beta: 1, c: dwg, ldc: rows)
                }
                // dx_g (Cg, NHW) (+)= W_g^T (Cg, Kg) * dy_g (Kg, NHW)
                if let dx, usesPointwiseKernel(m: cg, k: kg, p: npq) {
                    Profile.measure(.gemm) {
                        Pointwise.run(
                            a: floats(wg), aRow: 1, aColumn: cg, x: floats(dyg), ldx: npq, y: mutableFloats(dx + g * cg * n * h * w), ldy: npq,
                            m: cg, k: kg, p: npq, accumulate: accumulate, scratch: mutableFloats(col))
                    }
                } else if let dx {
                    Profile.measure(.gemm) {
                        T.gemm(
                            transA: true, transB: false, m: cg, n: npq, k: kg, alpha: 1, a: wg, lda: rows,
                            b: dyg, ldb: npq, beta: accumulate ? 1 : 0, c: dx + g * cg * n * h * w, ldc: npq)
                    }
                }
                continue
            }
            for n0 in Swift.stride(from: 0, to: n, by: chunk) {
                let nc = min(chunk, n - n0), cols = nc * pq
                let images = n0..<(n0 + nc)
                if !directWeights {
                    Profile.measure(.im2col) {
                        im2col(lowering, x: xg, col: col, c: cg, n: n, images: images, normalize: normalize?.channels(from: g * cg))
                    }
                    // dW_g (Kg, rows) += dy_g[:, chunk] (Kg, cols) * col^T (cols, rows)
                    Profile.measure(.gemm) {
                        T.gemm(
                            transA: false, transB: true, m: kg, n: rows, k: cols, alpha: 1, a: dyg + n0 * pq, lda: npq,
                            b: col, ldb: cols, beta: 1, c: dwg, ldc: rows)
                    }
                }
                guard let dx, !direct else { continue }
                if asConvolution {
                    // dx_g[:, chunk] (Cg, cols) (+)= W'_g (Cg, Kg*R*S) * im2col(dy_g)[chunk]: the
                    // input gradient of a stride-1 same convolution as a convolution of dy
                    let dyRows = kg * kernel * kernel
                    Profile.measure(.im2col) { im2col(self.lowering(n: n, h: p, w: q), x: dyg, col: col, c: kg, n: n, images: images) }
                    Profile.measure(.gemm) {
                        T.gemm(
                            transA: false, transB: false, m: cg, n: cols, k: dyRows, alpha: 1, a: flipped + g * cg * dyRows,
                            lda: dyRows, b: col, ldb: cols, beta: accumulate ? 1 : 0, c: dx + g * cg * n * h * w + n0 * pq,
                            ldc: npq)
                    }
                    continue
                }
                // dcol (rows, cols) = W_g^T (rows, Kg) * dy_g[:, chunk] (Kg, cols), scattered into dx_g
                Profile.measure(.gemm) {
                    if usesPointwiseKernel(m: rows, k: kg, p: cols, lowered: true) {
                        Pointwise.run(
                            a: floats(wg), aRow: 1, aColumn: rows, x: floats(dyg + n0 * pq), ldx: npq, y: mutableFloats(col), ldy: cols,
                            m: rows, k: kg, p: cols, accumulate: false,
                            scratch: mutableFloats(col + columnGradientScratch(n: n, h: h, w: w)))
                    } else {
                        T.gemm(
                            transA: true, transB: false, m: rows, n: cols, k: kg, alpha: 1, a: wg, lda: rows,
                            b: dyg + n0 * pq, ldb: npq, beta: 0, c: col, ldc: cols)
                    }
                }
                Profile.measure(.im2col) {
                    col2im(lowering, col: col, dx: dx + g * cg * n * h * w, c: cg, n: n, images: images, overwrite: overwrite)
                }
            }
        }
        if direct, let dx {
            // dx (+)= conv(dy, flipped weights): the flipped (Cg, Kg, 3, 3) weights of each group
            Profile.measure(.gemm) {
                if winograd {
                    Winograd.run(
                        x: floats(dy), weights: floats(flipped), y: mutableFloats(dx), cin: kg, kout: cg, groups: groups,
                        n: n, h: h, w: w, accumulate: accumulate, scratch: mutableFloats(col))
                } else {
                    Direct3x3.run(
                        x: floats(dy), weights: floats(flipped), y: mutableFloats(dx), cin: kg, kout: cg, groups: groups,
                        n: n, h: h, w: w, accumulate: accumulate, scratch: mutableFloats(col))
                }
            }
        }
    }

}
