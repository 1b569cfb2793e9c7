#if canImport(Glibc)
import Glibc
#endif

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

    public init(_ name: String, _ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1,
                padding: Int = 0, groups: Int = 1, layout: inout StoreLayout) {
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

    /// Column floats per chunk that im2col works in: the column buffer of a chunk of images stays
    /// in cache between im2col and its GEMMs (2 MB per BLAS thread, so that threaded GEMMs still
    /// get wide enough products), instead of streaming the whole batch's columns (9x the input)
    /// through memory three times. Fixed when the model is built (it sizes the workspace).
    static var chunkBudget: Int {
        if let v = getenv("RESNEXT_COLUMN_FLOATS"), let n = Int(String(cString: v)) { return n * max(1, blasThreads) }
        return (1 << 19) * max(1, blasThreads)
    }

    /// True for a stride-1 "same" convolution with a kernel > 1: its input gradient is itself a
    /// convolution of dy with the flipped, transposed weights, computed as im2col(dy) followed by
    /// a GEMM of the forward's shape (Cg rows, Kg*R*S deep), instead of a GEMM Kg deep whose
    /// columns col2im scatters back into dx. Measured (one thread, 4x16d stage 1): the transposed
    /// GEMM shape ran at 31-34 GFLOP/s, the forward shape at 49-61; and copying beats scatter-adding.
    var backwardAsConvolution: Bool { kernel > 1 && stride == 1 && 2 * padding == kernel - 1 }

    /// Rows of the column matrix: Cg*R*S for x, and Kg*R*S for dy when `backwardAsConvolution`.
    var columnRows: Int {
        let rows = (inChannels / groups) * kernel * kernel
        return backwardAsConvolution ? max(rows, (outChannels / groups) * kernel * kernel) : rows
    }

    /// Images per im2col chunk for a batch of n images of h x w.
    func imagesPerChunk(n: Int, h: Int, w: Int) -> Int {
        let (p, q) = outputSize(h, w)
        let perImage = columnRows * p * q
        return max(1, min(n, columnBudget / max(perImage, 1)))
    }

    /// Floats of column workspace this layer needs for a batch of n images of h x w (with, when
    /// `backwardAsConvolution`, room for the flipped weights after the columns).
    public func columnCount(n: Int, h: Int, w: Int) -> Int {
        let cg = inChannels / groups, kg = outChannels / groups
        if isPointwise {
            // `Pointwise`'s packed weights and block of x, forward (Kg x Cg) or input gradient (Cg x Kg)
            return T.self == Float.self ? max(Pointwise.scratchCount(m: kg, k: cg), Pointwise.scratchCount(m: cg, k: kg)) : 0
        }
        let columnGradient = T.self == Float.self && !backwardAsConvolution ? Pointwise.scratchCount(m: cg * kernel * kernel, k: kg) : 0
        return columnGradientScratch(n: n, h: h, w: w) + columnGradient
    }

    /// Where `Pointwise`'s scratch for the column gradient (dcol = W^T dy) starts in the workspace:
    /// after the columns, the flipped weights and the phase planes.
    func columnGradientScratch(n: Int, h: Int, w: Int) -> Int {
        scratchCount(n: n, h: h, w: w) + (backwardAsConvolution ? weightCount : 0) + (usesPhasePlanes(h: h, w: w) ? h * w : 0)
    }

    /// Floats at the start of the workspace for the im2col columns of one chunk, or for
    /// `Direct3x3`'s padded planes; the flipped weights, or a stride-2 layer's phase planes
    /// (`usesPhasePlanes`), follow them.
    func scratchCount(n: Int, h: Int, w: Int) -> Int {
        let (p, q) = outputSize(h, w)
        let columns = columnRows * imagesPerChunk(n: n, h: h, w: w) * p * q
        let direct = kernel == 3 ? max(Direct3x3.scratchCount(cin: max(inChannels, outChannels) / groups, h: h, w: w),
                                       Direct3x3.weightGradientScratchCount(cin: inChannels / groups, n: n, h: h, w: w)) : 0
        return max(columns, direct)
    }

    /// Called, when set, with this layer's forward output (its start and element count) once it is
    /// written. For the fixture tests' conditioning measure, which moves each stored activation of
    /// the float64 engine by float32-rounding noise (`ModelFixtureTests.roundingSensitivity`).
    public var outputHook: ((UnsafeMutablePointer<T>, Int) -> Void)? = nil

    /// Wall time of this layer's forward and backward passes while `Profile.enabled`, for the
    /// in-step column of `resnext-ddp bench --layers` (which zeroes it when its timed steps start).
    public var profiledSeconds = 0.0

    /// Whether this layer uses `Direct3x3` where it applies; nil follows `Direct3x3.enabled`
    /// (tests set it to compare the two paths).
    public var useDirect3x3: Bool? = nil

    /// Whether a direct layer also computes its weight gradient directly; nil follows
    /// `Direct3x3.weightGradientApplies` (where the GEMM would be thin).
    public var useDirectWeightGradient: Bool? = nil

    /// Whether this layer uses `Pointwise` where it applies; nil follows `Pointwise.enabled`.
    public var usePointwise: Bool? = nil

    /// Whether this float32 layer lowers through `RowLowering` where it applies (the same values);
    /// nil follows `RowLowering.enabled`. Tests set it to compare the two.
    public var useRowLowering: Bool? = nil

    /// True when this float32 3x3 layer with padding 1 lowers a row at a time (`RowLowering`) at
    /// planes of h x w: stride 1 with rows a multiple of 8 wide, or stride 2 on phase planes
    /// (`usesPhasePlanes`) with output rows a multiple of 8 wide.
    func usesRowLowering(h: Int, w: Int) -> Bool {
        guard (useRowLowering ?? RowLowering.enabled) && T.self == Float.self && kernel == 3 && padding == 1 else { return false }
        return stride == 1 ? w % 8 == 0 : usesPhasePlanes(h: h, w: w) && (w / 2) % 8 == 0
    }

    /// True when this float32 convolution's product with m rows over p columns runs through
    /// `Pointwise`: for a 1x1 stride-1 layer the forward (Kg rows) and the input gradient (Cg);
    /// for a `lowered` one (im2col) the column gradient W^T dy (Cg*R*S rows), where OpenBLAS
    /// is slow on the shape (docs/performance.md). The forward of a lowered layer, Cg*R*S deep,
    /// stays with OpenBLAS (a tie).
    func usesPointwiseKernel(m: Int, k: Int, p: Int, lowered: Bool = false) -> Bool {
        (usePointwise ?? Pointwise.enabled) && T.self == Float.self && isPointwise != lowered && Pointwise.applies(m: m, k: k, p: p)
    }

    /// True when this float32 3x3 stride-1 "same" convolution runs forward, input gradient and
    /// weight gradient through `Direct3x3` at planes of h x w.
    func usesDirect(h: Int, w: Int) -> Bool {
        let cg = inChannels / groups, kg = outChannels / groups
        return (useDirect3x3 ?? Direct3x3.enabled) && T.self == Float.self && kernel == 3 && stride == 1 && padding == 1
            && Direct3x3.applies(cin: cg, kout: kg, h: h, w: w) && Direct3x3.applies(cin: kg, kout: cg, h: h, w: w)
    }

    /// True when the weight gradient of this layer at planes of h x w runs through `Direct3x3`.
    func usesDirectWeightGradient(h: Int, w: Int) -> Bool {
        usesDirect(h: h, w: w) && (useDirectWeightGradient ?? Direct3x3.weightGradientApplies(cin: inChannels / groups, kout: outChannels / groups))
    }

    /// True when this layer at planes of h x w can take its input x as a batch norm's output read
    /// from the norm's input (`NormalizedInput`, the `normalize` argument of `forward` and
    /// `backward`): every path that reads x (the forward, and the weight gradient) copies it a
    /// plane or a row at a time, into `Direct3x3`'s padded planes or through `RowLowering`.
    public func readsNormalizedInput(h: Int, w: Int) -> Bool {
        guard T.self == Float.self && kernel == 3 else { return false }
        let rows = usesRowLowering(h: h, w: w)
        return (usesDirect(h: h, w: w) || rows) && (usesDirectWeightGradient(h: h, w: w) || rows)
    }

    @inline(__always) func f32(_ p: UnsafePointer<T>) -> UnsafePointer<Float> {
        UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
    }
    @inline(__always) func f32m(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
    }

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
    public func forward(x: UnsafePointer<T>, y: UnsafeMutablePointer<T>, n: Int, h: Int, w: Int,
                        col: UnsafeMutablePointer<T>, normalize: NormalizedInput? = nil) {
        precondition(normalize == nil || readsNormalizedInput(h: h, w: w), "\(name) cannot read a normalized input")
        let (p, q) = outputSize(h, w)
        let cg = inChannels / groups, kg = outChannels / groups
        let pq = p * q, npq = n * pq, rows = cg * kernel * kernel
        defer { if let outputHook { outputHook(y, outChannels * npq) } }
        let started = Profile.enabled ? Profile.now() : 0
        defer { if Profile.enabled { profiledSeconds += Profile.now() - started } }
        let chunk = imagesPerChunk(n: n, h: h, w: w)
        if usesDirect(h: h, w: w) {
            Profile.measure(.gemm) {
                Direct3x3.run(x: f32(x), weights: f32(weight), y: f32m(y), cin: cg, kout: kg, groups: groups,
                              n: n, h: h, w: w, accumulate: false, scratch: f32m(col), normalize: normalize)
            }
            return
        }
        for g in 0..<groups {
            let xg = x + g * cg * n * h * w, wg = weight + g * kg * rows, yg = y + g * kg * npq
            if usesPointwiseKernel(m: kg, k: cg, p: npq) {
                Profile.measure(.gemm) {
                    Pointwise.run(a: f32(wg), aRow: cg, aColumn: 1, x: f32(xg), ldx: npq, y: f32m(yg), ldy: npq, m: kg, k: cg, p: npq,
                                  accumulate: false, scratch: f32m(col))
                }
                continue
            }
            if isPointwise {
                // y_g (Kg, NPQ) = W_g (Kg, Cg) * x_g (Cg, NPQ)
                Profile.measure(.gemm) {
                    T.gemm(transA: false, transB: false, m: kg, n: npq, k: rows, alpha: 1, a: wg, lda: rows,
                           b: xg, ldb: npq, beta: 0, c: yg, ldc: npq)
                }
                continue
            }
            for n0 in Swift.stride(from: 0, to: n, by: chunk) {
                let nc = min(chunk, n - n0), cols = nc * pq
                Profile.measure(.im2col) {
                    im2col(x: xg, col: col, c: cg, n: n, images: n0..<(n0 + nc), h: h, w: w, normalize: normalize?.channels(from: g * cg))
                }
                // y_g[:, chunk] (Kg, cols) = W_g (Kg, rows) * col (rows, cols)
                Profile.measure(.gemm) {
                    T.gemm(transA: false, transB: false, m: kg, n: cols, k: rows, alpha: 1, a: wg, lda: rows,
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
    public func backward(x: UnsafePointer<T>, dy: UnsafePointer<T>, dx: UnsafeMutablePointer<T>?,
                         accumulate: Bool = false, n: Int, h: Int, w: Int, col: UnsafeMutablePointer<T>,
                         normalize: NormalizedInput? = nil) {
        precondition(normalize == nil || readsNormalizedInput(h: h, w: w), "\(name) cannot read a normalized input")
        let (p, q) = outputSize(h, w)
        let cg = inChannels / groups, kg = outChannels / groups
        let pq = p * q, npq = n * pq, rows = cg * kernel * kernel
        let started = Profile.enabled ? Profile.now() : 0
        defer { if Profile.enabled { profiledSeconds += Profile.now() - started } }
        let chunk = imagesPerChunk(n: n, h: h, w: w)
        let asConvolution = backwardAsConvolution && dx != nil
        let direct = asConvolution && usesDirect(h: h, w: w)
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
                Direct3x3.weightGradient(x: f32(x), dy: f32(dy), dw: f32m(dWeight), cin: cg, kout: kg, groups: groups,
                                         n: n, h: h, w: w, scratch: f32m(col), one: kernel - 2, normalize: normalize)
            }
        }
        for g in 0..<groups where !(directWeights && (dx == nil || direct)) {
            let xg = x + g * cg * n * h * w
            let dyg = dy + g * kg * npq
            let wg = weight + g * kg * rows, dwg = dWeight + g * kg * rows
            if isPointwise {
                // dW_g (Kg, Cg) += dy_g (Kg, NHW) * x_g^T (NHW, Cg)
                Profile.measure(.gemm) {
                    T.gemm(transA: false, transB: true, m: kg, n: rows, k: npq, alpha: 1, a: dyg, lda: npq,
                           b: xg, ldb: npq, beta: 1, c: dwg, ldc: rows)
                }
                // dx_g (Cg, NHW) (+)= W_g^T (Cg, Kg) * dy_g (Kg, NHW)
                if let dx, usesPointwiseKernel(m: cg, k: kg, p: npq) {
                    Profile.measure(.gemm) {
                        Pointwise.run(a: f32(wg), aRow: 1, aColumn: cg, x: f32(dyg), ldx: npq, y: f32m(dx + g * cg * n * h * w), ldy: npq,
                                      m: cg, k: kg, p: npq, accumulate: accumulate, scratch: f32m(col))
                    }
                } else if let dx {
                    Profile.measure(.gemm) {
                        T.gemm(transA: true, transB: false, m: cg, n: npq, k: kg, alpha: 1, a: wg, lda: rows,
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
                        im2col(x: xg, col: col, c: cg, n: n, images: images, h: h, w: w, normalize: normalize?.channels(from: g * cg))
                    }
                    // dW_g (Kg, rows) += dy_g[:, chunk] (Kg, cols) * col^T (cols, rows)
                    Profile.measure(.gemm) {
                        T.gemm(transA: false, transB: true, m: kg, n: rows, k: cols, alpha: 1, a: dyg + n0 * pq, lda: npq,
                               b: col, ldb: cols, beta: 1, c: dwg, ldc: rows)
                    }
                }
                guard let dx, !direct else { continue }
                if asConvolution {
                    // dx_g[:, chunk] (Cg, cols) (+)= W'_g (Cg, Kg*R*S) * im2col(dy_g)[chunk]: the
                    // input gradient of a stride-1 same convolution as a convolution of dy
                    let dyRows = kg * kernel * kernel
                    Profile.measure(.im2col) { im2col(x: dyg, col: col, c: kg, n: n, images: images, h: p, w: q) }
                    Profile.measure(.gemm) {
                        T.gemm(transA: false, transB: false, m: cg, n: cols, k: dyRows, alpha: 1, a: flipped + g * cg * dyRows,
                               lda: dyRows, b: col, ldb: cols, beta: accumulate ? 1 : 0, c: dx + g * cg * n * h * w + n0 * pq,
                               ldc: npq)
                    }
                    continue
                }
                // dcol (rows, cols) = W_g^T (rows, Kg) * dy_g[:, chunk] (Kg, cols), scattered into dx_g
                Profile.measure(.gemm) {
                    if usesPointwiseKernel(m: rows, k: kg, p: cols, lowered: true) {
                        Pointwise.run(a: f32(wg), aRow: 1, aColumn: rows, x: f32(dyg + n0 * pq), ldx: npq, y: f32m(col), ldy: cols,
                                      m: rows, k: kg, p: cols, accumulate: false,
                                      scratch: f32m(col + columnGradientScratch(n: n, h: h, w: w)))
                    } else {
                        T.gemm(transA: true, transB: false, m: rows, n: cols, k: kg, alpha: 1, a: wg, lda: rows,
                               b: dyg + n0 * pq, ldb: npq, beta: 0, c: col, ldc: cols)
                    }
                }
                Profile.measure(.im2col) {
                    col2im(col: col, dx: dx + g * cg * n * h * w, c: cg, n: n, images: images, h: h, w: w, overwrite: overwrite)
                }
            }
        }
        if direct, let dx {
            // dx (+)= conv(dy, flipped weights): the flipped (Cg, Kg, 3, 3) weights of each group
            Profile.measure(.gemm) {
                Direct3x3.run(x: f32(dy), weights: f32(flipped), y: f32m(dx), cin: kg, kout: cg, groups: groups,
                              n: n, h: h, w: w, accumulate: accumulate, scratch: f32m(col))
            }
        }
    }

    /// col (Cg*R*S, |images|*P*Q): row (c, r, s) holds x[c, i, p*stride - pad + r, q*stride - pad + s]
    /// for the images i of the chunk, 0 outside; x is (Cg, N, H, W). col is the start of the
    /// workspace (`usesPhasePlanes` keeps its phase planes after the columns).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func im2col(x: UnsafePointer<T>, col: UnsafeMutablePointer<T>, c: Int, n: Int, images: Range<Int>, h: Int, w: Int,
                normalize: NormalizedInput? = nil) {
        let (p, q) = outputSize(h, w)
        let k = kernel, st = stride, pad = padding
        if usesRowLowering(h: h, w: w) {
            if st == 1 {
                RowLowering.im2colSame(x: f32(x), col: f32m(col), c: c, n: n, images: images, h: h, w: w, normalize: normalize)
            } else {
                RowLowering.im2colStride2(x: f32(x), col: f32m(col), c: c, n: n, images: images, h: h, w: w, normalize: normalize)
            }
            return
        }
        precondition(normalize == nil, "a normalized input needs the row lowering")
        if st == 1 && p == h && q == w {
            // same-size convolution: each column row is the input plane shifted by (r - pad, s - pad)
            var dst = col
            for ci in 0..<c {
                for r in 0..<k {
                    for s in 0..<k {
                        for ni in images {
                            shiftedCopy(from: x + (ci * n + ni) * h * w, to: dst, dy: r - pad, dx: s - pad, h: h, w: w)
                            dst += h * w
                        }
                    }
                }
            }
            return
        }
        if usesPhasePlanes(h: h, w: w) && k == 1 {
            // a 1x1 stride-2 layer reads one phase, (even, even): split only the even rows, their
            // odd halves into a spare row
            let spare = col + scratchCount(n: n, h: h, w: w), quarter = p * q, cols = images.count * quarter
            for ci in 0..<c {
                for ni in images {
                    let plane = x + (ci * n + ni) * h * w, dst = col + ci * cols + (ni - images.lowerBound) * quarter
                    for i in 0..<p { deinterleave(plane + 2 * i * w, even: dst + i * q, odd: spare, half: q) }
                }
            }
            return
        }
        if usesPhasePlanes(h: h, w: w) {
            let phases = col + scratchCount(n: n, h: h, w: w), quarter = p * q, cols = images.count * quarter
            for ci in 0..<c {
                for ni in images {
                    splitPhases(x + (ci * n + ni) * h * w, into: phases, h: h, w: w)
                    let dst = col + (ni - images.lowerBound) * quarter
                    for r in 0..<k {
                        let (pr, sr) = phaseOf(r)
                        for s in 0..<k {
                            let (ps, ss) = phaseOf(s)
                            shiftedCopy(from: phases + (2 * pr + ps) * quarter, to: dst + ((ci * k + r) * k + s) * cols,
                                        dy: sr, dx: ss, h: p, w: q)
                        }
                    }
                }
            }
            return
        }
        var dst = col
        for ci in 0..<c {
            for r in 0..<k {
                for s in 0..<k {
                    // valid output columns: 0 <= oq*st - pad + s < w
                    let qLo = max(0, (pad - s + st - 1) / st)
                    let qHi = min(q, floorDiv(w - 1 + pad - s, st) + 1)
                    for ni in images {
                        let src = x + (ci * n + ni) * h * w
                        for op in 0..<p {
                            let ih = op * st - pad + r
                            let row = dst + op * q
                            if ih < 0 || ih >= h || qHi <= qLo {
                                row.update(repeating: 0, count: q)
                                continue
                            }
                            let line = src + ih * w - pad + s
                            for oq in 0..<qLo { row[oq] = 0 }
                            if st == 1 {
                                row.advanced(by: qLo).update(from: line + qLo, count: qHi - qLo)
                            } else {
                                for oq in qLo..<qHi { row[oq] = line[oq * st] }
                            }
                            for oq in qHi..<q { row[oq] = 0 }
                        }
                        dst += p * q
                    }
                }
            }
        }
    }

    /// dst[i, j] = src[i + dy, j + dx], 0 where that falls outside the h x w plane.
    @inline(__always)
    func shiftedCopy(from src: UnsafePointer<T>, to dst: UnsafeMutablePointer<T>, dy: Int, dx: Int, h: Int, w: Int) {
        let rowLo = max(0, -dy), rowHi = min(h, h - dy)
        if rowLo > 0 { dst.update(repeating: 0, count: rowLo * w) }
        if rowHi < h { (dst + rowHi * w).update(repeating: 0, count: (h - rowHi) * w) }
        guard rowHi > rowLo else { return }
        // one contiguous copy of the valid rows, shifted by dy * w + dx, clipped to the plane
        let offset = dy * w + dx
        let lo = max(rowLo * w, -offset), hi = min(rowHi * w, h * w - offset)
        if hi > lo { (dst + lo).update(from: src + lo + offset, count: hi - lo) }
        if lo > rowLo * w { (dst + rowLo * w).update(repeating: 0, count: lo - rowLo * w) }
        if hi < rowHi * w { (dst + hi).update(repeating: 0, count: rowHi * w - hi) }
        // the columns that wrapped around from the neighbouring row read padding
        if dx < 0 { for i in rowLo..<rowHi { for j in 0..<(-dx) { dst[i * w + j] = 0 } } }
        if dx > 0 { for i in rowLo..<rowHi { for j in (w - dx)..<w { dst[i * w + j] = 0 } } }
    }

    /// The adjoint of shiftedCopy: dst[i + dy, j + dx] += src[i, j] inside the plane. Clears the
    /// entries of src that map outside (src is scratch).
    @inline(__always)
    func shiftedAdd(from src: UnsafeMutablePointer<T>, to dst: UnsafeMutablePointer<T>, dy: Int, dx: Int, h: Int, w: Int) {
        let rowLo = max(0, -dy), rowHi = min(h, h - dy)
        guard rowHi > rowLo else { return }
        if dx < 0 { for i in rowLo..<rowHi { for j in 0..<(-dx) { src[i * w + j] = 0 } } }
        if dx > 0 { for i in rowLo..<rowHi { for j in (w - dx)..<w { src[i * w + j] = 0 } } }
        let offset = dy * w + dx
        let lo = max(rowLo * w, -offset), hi = min(rowHi * w, h * w - offset)
        if hi > lo {
            let d = dst + offset
            for i in lo..<hi { d[i] += src[i] }
        }
    }

    /// True for a stride-2 convolution whose output plane is a quarter of its even-sized input
    /// (3x3 with padding 1 and 1x1 without, as in ResNeXt): every column row is then a shifted
    /// copy of one of the input's four phase planes (even or odd rows x even or odd columns), so
    /// im2col is one split of the input plus the stride-1 `shiftedCopy`s, and col2im their adjoint.
    func usesPhasePlanes(h: Int, w: Int) -> Bool {
        let (p, q) = outputSize(h, w)
        return stride == 2 && h % 2 == 0 && w % 2 == 0 && p == h / 2 && q == w / 2
    }

    /// Kernel row (or column) r of a stride-2 convolution reads input row 2o - pad + r, which is
    /// row o + shift of the phase planes of that parity.
    @inline(__always) func phaseOf(_ r: Int) -> (parity: Int, shift: Int) {
        let t = r - padding
        return (t & 1, t >> 1)
    }

    /// phases = the four (h/2, w/2) planes of an h x w plane: phase 2a + b holds plane[2i + a, 2j + b].
    @inline(__always) func splitPhases(_ plane: UnsafePointer<T>, into phases: UnsafeMutablePointer<T>, h: Int, w: Int) {
        let half = w / 2, quarter = h / 2 * half
        for i in 0..<h {
            let even = phases + (i & 1) * 2 * quarter + (i >> 1) * half
            deinterleave(plane + i * w, even: even, odd: even + quarter, half: half)
        }
    }

    /// plane += the plane whose phases these are (the adjoint of `splitPhases`), or plane = it
    /// with `overwrite`.
    @inline(__always) func mergePhases(_ phases: UnsafePointer<T>, into plane: UnsafeMutablePointer<T>, h: Int, w: Int,
                                       overwrite: Bool) {
        let half = w / 2, quarter = h / 2 * half
        for i in 0..<h {
            let even = phases + (i & 1) * 2 * quarter + (i >> 1) * half
            interleave(even: even, odd: even + quarter, into: plane + i * w, half: half, add: !overwrite)
        }
    }

    /// even[j] = line[2j], odd[j] = line[2j+1] for j < half. In float32 with half a multiple of 8,
    /// 16 values at a time with wide stores: element-wise stores here stalled the wide reads of
    /// even/odd that follow (store forwarding), which made this path 6x slower than the same
    /// loop in C.
    @inline(__always)
    func deinterleave(_ line: UnsafePointer<T>, even: UnsafeMutablePointer<T>, odd: UnsafeMutablePointer<T>, half: Int) {
        if T.self == Float.self && half % 8 == 0 {
            let l = UnsafeRawPointer(line), e = UnsafeMutableRawPointer(even), o = UnsafeMutableRawPointer(odd)
            var j = 0
            while j < half {
                let v = l.loadUnaligned(fromByteOffset: j &* 8, as: SIMD16<Float>.self)
                e.storeBytes(of: v.evenHalf, toByteOffset: j &* 4, as: SIMD8<Float>.self)
                o.storeBytes(of: v.oddHalf, toByteOffset: j &* 4, as: SIMD8<Float>.self)
                j &+= 8
            }
            return
        }
        for j in 0..<half {
            even[j] = line[2 * j]
            odd[j] = line[2 * j + 1]
        }
    }

    /// line[2j] += even[j], line[2j+1] += odd[j] for j < half (the adjoint of `deinterleave`),
    /// or = without `add`.
    @inline(__always)
    func interleave(even: UnsafePointer<T>, odd: UnsafePointer<T>, into line: UnsafeMutablePointer<T>, half: Int, add: Bool) {
        if T.self == Float.self && half % 8 == 0 {
            let l = UnsafeMutableRawPointer(line), e = UnsafeRawPointer(even), o = UnsafeRawPointer(odd)
            var j = 0
            while j < half {
                var v = SIMD16<Float>()
                v.evenHalf = e.loadUnaligned(fromByteOffset: j &* 4, as: SIMD8<Float>.self)
                v.oddHalf = o.loadUnaligned(fromByteOffset: j &* 4, as: SIMD8<Float>.self)
                if add { v += l.loadUnaligned(fromByteOffset: j &* 8, as: SIMD16<Float>.self) }
                l.storeBytes(of: v, toByteOffset: j &* 8, as: SIMD16<Float>.self)
                j &+= 8
            }
            return
        }
        for j in 0..<half {
            line[2 * j] = add ? line[2 * j] + even[j] : even[j]
            line[2 * j + 1] = add ? line[2 * j + 1] + odd[j] : odd[j]
        }
    }

    /// The adjoint of im2col: dx[c, i, ih, iw] += col[(c, r, s), (i, p, q)] for the chunk's images.
    /// With `overwrite` (only where `usesPhasePlanes`), the chunk's planes of dx are written instead.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func col2im(col: UnsafePointer<T>, dx: UnsafeMutablePointer<T>, c: Int, n: Int, images: Range<Int>, h: Int, w: Int,
                overwrite: Bool = false) {
        precondition(!overwrite || usesPhasePlanes(h: h, w: w), "col2im writes dx only on phase planes")
        let (p, q) = outputSize(h, w)
        let k = kernel, st = stride, pad = padding
        if st == 2 && usesRowLowering(h: h, w: w) {
            RowLowering.col2imStride2(col: f32(col), dx: f32m(dx), c: c, n: n, images: images, h: h, w: w, overwrite: overwrite)
            return
        }
        if st == 1 && p == h && q == w {
            var src = UnsafeMutablePointer(mutating: col)
            for ci in 0..<c {
                for r in 0..<k {
                    for s in 0..<k {
                        for ni in images {
                            shiftedAdd(from: src, to: dx + (ci * n + ni) * h * w, dy: r - pad, dx: s - pad, h: h, w: w)
                            src += h * w
                        }
                    }
                }
            }
            return
        }
        if usesPhasePlanes(h: h, w: w) && k == 1 {
            // only phase (even, even) is non-zero: even rows interleave it with zeros, odd rows are
            // zeros; the same sums as merging four phase planes (the phase is 0 + col, as there)
            let spare = UnsafeMutablePointer(mutating: col) + scratchCount(n: n, h: h, w: w)
            let row = spare, zeros = spare + q, quarter = p * q, cols = images.count * quarter
            zeros.update(repeating: 0, count: q)
            for ci in 0..<c {
                for ni in images {
                    let src = col + ci * cols + (ni - images.lowerBound) * quarter, plane = dx + (ci * n + ni) * h * w
                    for i in 0..<p {
                        for j in 0..<q { row[j] = 0 + src[i * q + j] }
                        interleave(even: row, odd: zeros, into: plane + 2 * i * w, half: q, add: !overwrite)
                        interleave(even: zeros, odd: zeros, into: plane + (2 * i + 1) * w, half: q, add: !overwrite)
                    }
                }
            }
            return
        }
        if usesPhasePlanes(h: h, w: w) {
            let phases = UnsafeMutablePointer(mutating: col) + scratchCount(n: n, h: h, w: w)
            let quarter = p * q, cols = images.count * quarter
            for ci in 0..<c {
                for ni in images {
                    phases.update(repeating: 0, count: h * w)
                    let src = UnsafeMutablePointer(mutating: col) + (ni - images.lowerBound) * quarter
                    for r in 0..<k {
                        let (pr, sr) = phaseOf(r)
                        for s in 0..<k {
                            let (ps, ss) = phaseOf(s)
                            shiftedAdd(from: src + ((ci * k + r) * k + s) * cols, to: phases + (2 * pr + ps) * quarter,
                                       dy: sr, dx: ss, h: p, w: q)
                        }
                    }
                    mergePhases(phases, into: dx + (ci * n + ni) * h * w, h: h, w: w, overwrite: overwrite)
                }
            }
            return
        }
        var src = col
        for ci in 0..<c {
            for r in 0..<k {
                for s in 0..<k {
                    let qLo = max(0, (pad - s + st - 1) / st)
                    let qHi = min(q, floorDiv(w - 1 + pad - s, st) + 1)
                    for ni in images {
                        let dst = dx + (ci * n + ni) * h * w
                        if qHi > qLo {
                            for op in 0..<p {
                                let ih = op * st - pad + r
                                if ih < 0 || ih >= h { continue }
                                let line = dst + ih * w - pad + s
                                let row = src + op * q
                                if st == 1 {
                                    for oq in qLo..<qHi { line[oq] += row[oq] }
                                } else {
                                    for oq in qLo..<qHi { line[oq * st] += row[oq] }
                                }
                            }
                        }
                        src += p * q
                    }
                }
            }
        }
    }
}

@inline(__always) func floorDiv(_ a: Int, _ b: Int) -> Int {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}
