
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
    }

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

    /// Floats of column workspace this layer needs for a batch of n images of h x w.
    public func columnCount(n: Int, h: Int, w: Int) -> Int {
        if isPointwise { return 0 }
        let (p, q) = outputSize(h, w)
        return (inChannels / groups) * kernel * kernel * n * p * q
    }

    /// Multiply-accumulates of one forward pass per image.
    public func macsPerImage(h: Int, w: Int) -> Int {
        let (p, q) = outputSize(h, w)
        return p * q * outChannels * (inChannels / groups) * kernel * kernel
    }

    /// y (K, N, P, Q) = conv(x (C, N, H, W)). `col` holds `columnCount` floats.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func forward(x: UnsafePointer<T>, y: UnsafeMutablePointer<T>, n: Int, h: Int, w: Int,
                        col: UnsafeMutablePointer<T>) {
        let (p, q) = outputSize(h, w)
        let cg = inChannels / groups, kg = outChannels / groups
        let npq = n * p * q, rows = cg * kernel * kernel
        for g in 0..<groups {
            let xg = x + g * cg * n * h * w
            let b: UnsafePointer<T>
            if isPointwise { b = xg } else {
                Profile.measure(.im2col) { im2col(x: xg, col: col, c: cg, n: n, h: h, w: w) }
                b = UnsafePointer(col)
            }
            // y_g (Kg, NPQ) = W_g (Kg, rows) * B (rows, NPQ)
            Profile.measure(.gemm) { T.gemm(transA: false, transB: false, m: kg, n: npq, k: rows, alpha: 1, a: weight + g * kg * rows, lda: rows,
                   b: b, ldb: npq, beta: 0, c: y + g * kg * npq, ldc: npq) }
        }
    }

    /// Given dy (K, N, P, Q): dWeight += dL/dW (accumulates), and if dx is given,
    /// dx (C, N, H, W) = dL/dx (written, or added to when `accumulate`).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func backward(x: UnsafePointer<T>, dy: UnsafePointer<T>, dx: UnsafeMutablePointer<T>?,
                         accumulate: Bool = false, n: Int, h: Int, w: Int, col: UnsafeMutablePointer<T>) {
        let (p, q) = outputSize(h, w)
        let cg = inChannels / groups, kg = outChannels / groups
        let npq = n * p * q, rows = cg * kernel * kernel
        if let dx, !accumulate, !isPointwise {
            Profile.measure(.im2col) { dx.update(repeating: 0, count: inChannels * n * h * w) }
        }
        for g in 0..<groups {
            let xg = x + g * cg * n * h * w
            let dyg = dy + g * kg * npq
            let wg = weight + g * kg * rows
            let b: UnsafePointer<T>
            if isPointwise { b = xg } else {
                Profile.measure(.im2col) { im2col(x: xg, col: col, c: cg, n: n, h: h, w: w) }
                b = UnsafePointer(col)
            }
            // dW_g (Kg, rows) += dy_g (Kg, NPQ) * B^T (NPQ, rows)
            Profile.measure(.gemm) { T.gemm(transA: false, transB: true, m: kg, n: rows, k: npq, alpha: 1, a: dyg, lda: npq,
                   b: b, ldb: npq, beta: 1, c: dWeight + g * kg * rows, ldc: rows) }
            guard let dx else { continue }
            let dxg = dx + g * cg * n * h * w
            if isPointwise {
                // dx_g (Cg, NHW) (+)= W_g^T (Cg, Kg) * dy_g (Kg, NHW)
                Profile.measure(.gemm) { T.gemm(transA: true, transB: false, m: cg, n: npq, k: kg, alpha: 1, a: wg, lda: rows,
                       b: dyg, ldb: npq, beta: accumulate ? 1 : 0, c: dxg, ldc: npq) }
            } else {
                // dcol (rows, NPQ) = W_g^T (rows, Kg) * dy_g (Kg, NPQ), then scattered into dx_g
                Profile.measure(.gemm) { T.gemm(transA: true, transB: false, m: rows, n: npq, k: kg, alpha: 1, a: wg, lda: rows,
                       b: dyg, ldb: npq, beta: 0, c: col, ldc: npq) }
                Profile.measure(.im2col) { col2im(col: col, dx: dxg, c: cg, n: n, h: h, w: w) }
            }
        }
    }

    /// col (Cg*R*S, N*P*Q): row (c, r, s) holds x[c, n, p*stride - pad + r, q*stride - pad + s], 0 outside.
    func im2col(x: UnsafePointer<T>, col: UnsafeMutablePointer<T>, c: Int, n: Int, h: Int, w: Int) {
        let (p, q) = outputSize(h, w)
        let k = kernel, st = stride, pad = padding
        var dst = col
        for ci in 0..<c {
            for r in 0..<k {
                for s in 0..<k {
                    // valid output columns: 0 <= oq*st - pad + s < w
                    let qLo = max(0, (pad - s + st - 1) / st)
                    let qHi = min(q, floorDiv(w - 1 + pad - s, st) + 1)
                    for ni in 0..<n {
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

    /// The adjoint of im2col: dx[c, n, ih, iw] += col[(c, r, s), (n, p, q)].
    func col2im(col: UnsafePointer<T>, dx: UnsafeMutablePointer<T>, c: Int, n: Int, h: Int, w: Int) {
        let (p, q) = outputSize(h, w)
        let k = kernel, st = stride, pad = padding
        var src = col
        for ci in 0..<c {
            for r in 0..<k {
                for s in 0..<k {
                    let qLo = max(0, (pad - s + st - 1) / st)
                    let qHi = min(q, floorDiv(w - 1 + pad - s, st) + 1)
                    for ni in 0..<n {
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
