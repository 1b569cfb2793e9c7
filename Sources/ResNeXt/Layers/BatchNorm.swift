import RealModule

/// Batch normalisation over channel-major activations x (C, N, H, W), PyTorch's BatchNorm2d
/// (eps 1e-5, momentum 0.1), with BN groups: in training mode the batch is cut into groups of
/// `group` consecutive images and each group is normalised with its own mean and biased
/// variance. The group's mean and unbiased variance are summed into the store's `batchStats`
/// (see `ParameterStore.updateRunningStatistics`). Evaluation mode uses the running statistics.
public final class BatchNorm<T: EngineScalar> {
    public let channels: Int
    public let name: String
    public let eps: Double = 1e-5
    let weightOffset, biasOffset, meanOffset, varOffset, counterIndex: Int
    var gamma: UnsafeMutablePointer<T>!, beta: UnsafeMutablePointer<T>!
    var dGamma: UnsafeMutablePointer<T>!, dBeta: UnsafeMutablePointer<T>!
    var runningMean: UnsafeMutablePointer<T>!, runningVar: UnsafeMutablePointer<T>!
    var batchMean: UnsafeMutablePointer<T>!, batchVar: UnsafeMutablePointer<T>!
    /// Saved by the training forward for backward: per (channel, group), index c * groups + g;
    /// scale and shift are the float factors of its output pass, y = x * scale + shift.
    var mean: Buffer<T>, invStd: Buffer<T>, scale: Buffer<T>, shift: Buffer<T>
    /// Evaluation mode's factors per channel, from `prepareInference` (kept apart from the
    /// training forward's, which its backward reads).
    var inferenceScale: Buffer<T>, inferenceShift: Buffer<T>

    public init(_ name: String, _ channels: Int, maxGroups: Int, layout: inout StoreLayout) {
        self.name = name
        self.channels = channels
        weightOffset = layout.add(name + ".weight", [channels], .parameter)
        biasOffset = layout.add(name + ".bias", [channels], .parameter)
        meanOffset = layout.add(name + ".running_mean", [channels], .statistic)
        varOffset = layout.add(name + ".running_var", [channels], .statistic)
        counterIndex = layout.add(name + ".num_batches_tracked", [], .counter)
        mean = Buffer<T>(count: channels * maxGroups)
        invStd = Buffer<T>(count: channels * maxGroups)
        scale = Buffer<T>(count: channels * maxGroups)
        shift = Buffer<T>(count: channels * maxGroups)
        inferenceScale = Buffer<T>(count: channels)
        inferenceShift = Buffer<T>(count: channels)
    }

    public func bind(_ store: ParameterStore<T>) {
        gamma = store.params.base + weightOffset
        beta = store.params.base + biasOffset
        dGamma = store.grads.base + weightOffset
        dBeta = store.grads.base + biasOffset
        runningMean = store.stats.base + meanOffset
        runningVar = store.stats.base + varOffset
        batchMean = store.batchStats.base + meanOffset
        batchVar = store.batchStats.base + varOffset
    }

    /// Training mode. x, y: (C, N, HW), y may equal x; without y, only the statistics and factors
    /// (`statisticsTraining`). n must be a multiple of `group`.
    /// With `residual` (C, N, HW), y = bn(x) + residual; with `relu`, the ReLU follows: a
    /// bottleneck block's BN, residual add and ReLU in one pass over its output.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func forwardTraining(
        x: UnsafePointer<T>, y: UnsafeMutablePointer<T>?, n: Int, hw: Int,
        group: Int, relu: Bool = false, residual: UnsafePointer<T>? = nil
    ) {
        precondition(n % group == 0, "batch \(n) is not a multiple of the BN group \(group)")
        let groups = n / group, m = group * hw
        precondition(groups * channels <= mean.count, "more BN groups than prepared")
        let saveMean = mean.base, saveInv = invStd.base
        for c in 0..<channels {
            var sumMean = 0.0, sumVar = 0.0
            for g in 0..<groups {
                let off = (c * n + g * group) * hw
                let xs = x + off
                var s = 0.0
                for i in 0..<m { s = Relaxed.sum(s, Double(xs[i])) }
                let mu = s / Double(m)
                let muF = T(mu)
                var ss = 0.0
                for i in 0..<m {
                    let d = Double(xs[i] - muF)
                    ss = Relaxed.multiplyAdd(d, d, ss)
                }
                // ss is about the float-rounded mean; correct with the residual (two-pass formula)
                let r = mu - Double(muF)
                let varB = max(ss / Double(m) - r * r, 0)
                sumMean += mu
                sumVar += m > 1 ? varB * Double(m) / Double(m - 1) : 0
                let inv = 1 / (varB + eps).squareRoot()
                saveMean[c * groups + g] = muF
                saveInv[c * groups + g] = T(inv)
                let scale = T(Double(gamma[c]) * inv)
                let shift = T(Double(beta[c]) - mu * Double(gamma[c]) * inv)
                self.scale.base[c * groups + g] = scale
                self.shift.base[c * groups + g] = shift
                if let y { normalize(xs, y + off, residual.map { $0 + off }, count: m, scale: scale, shift: shift, relu: relu) }
            }
            batchMean[c] = T(sumMean)
            batchVar[c] = T(sumVar)
        }
    }

    /// The training forward's statistics and output factors without its output pass: what
    /// `forwardTraining(relu: true)` saves and adds to `batchStats`, bit for bit, for a
    /// convolution that reads this layer's output through `normalizedInput` instead of y.
    public func statisticsTraining(x: UnsafePointer<T>, n: Int, hw: Int, group: Int) {
        forwardTraining(x: x, y: nil, n: n, hw: hw, group: group, relu: true)
    }

    /// Evaluation mode's output factors (from the running statistics), for
    /// `normalizedInput(n:group:)` with group nil.
    public func prepareInference() {
        for c in 0..<channels { (inferenceScale.base[c], inferenceShift.base[c]) = inferenceFactors(c) }
    }

    @inline(__always) func inferenceFactors(_ c: Int) -> (scale: T, shift: T) {
        let inv = 1 / (Double(runningVar[c]) + eps).squareRoot()
        return (T(Double(gamma[c]) * inv), T(Double(beta[c]) - Double(runningMean[c]) * Double(gamma[c]) * inv))
    }

    /// This layer's output with ReLU, relu(x * scale + shift), as a float32 convolution reads
    /// it from x: after `statisticsTraining` over n images in BN groups of `group`, or after
    /// `prepareInference` with group nil.
    public func normalizedInput(n: Int, group: Int?) -> NormalizedInput {
        precondition(T.self == Float.self, "normalizedInput is float32 only")
        let (sc, sh) = group == nil ? (inferenceScale, inferenceShift) : (scale, shift)
        return NormalizedInput(
            scale: UnsafeRawPointer(sc.base).assumingMemoryBound(to: Float.self),
            shift: UnsafeRawPointer(sh.base).assumingMemoryBound(to: Float.self),
            groups: group.map { n / $0 } ?? 1, groupSize: group ?? n)
    }

    /// ys = xs * scale + shift (+ rs), then the ReLU with `relu`: the same float operations in
    /// the same order as BN, residual add and ReLU done one after the other.
    @inline(__always)
    func normalize(
        _ xs: UnsafePointer<T>, _ ys: UnsafeMutablePointer<T>, _ rs: UnsafePointer<T>?, count m: Int,
        scale: T, shift: T, relu: Bool
    ) {
        switch (rs, relu) {
        case (let rs?, true): for i in 0..<m { ys[i] = Self.relu((xs[i] * scale + shift) + rs[i]) }
        case (let rs?, false): for i in 0..<m { ys[i] = (xs[i] * scale + shift) + rs[i] }
        case (nil, true): for i in 0..<m { ys[i] = Self.relu(xs[i] * scale + shift) }
        case (nil, false): for i in 0..<m { ys[i] = xs[i] * scale + shift }
        }
    }

    /// The ReLU: v < 0 ? 0 : v, so that -0 and NaN pass as they are (PyTorch's ReLU passes NaN
    /// too), which is what one `vmaxps` does (`NormalizedInput.relu`).
    @inline(__always) static func relu(_ v: T) -> T { v < 0 ? 0 : v }

    /// Evaluation mode with the running statistics. x, y: (C, N, HW), y may equal x; `residual`
    /// and `relu` as in `forwardTraining`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func forwardInference(
        x: UnsafePointer<T>, y: UnsafeMutablePointer<T>, n: Int, hw: Int,
        relu: Bool = false, residual: UnsafePointer<T>? = nil
    ) {
        let count = n * hw
        for c in 0..<channels {
            let (scale, shift) = inferenceFactors(c)
            normalize(
                x + c * count, y + c * count, residual.map { $0 + c * count }, count: count, scale: scale,
                shift: shift, relu: relu)
        }
    }

    /// Backward of the training forward (same n, group). x is the forward input; dy, dx: (C, N, HW),
    /// dx may equal dy. dGamma, dBeta accumulate; dx is written.
    /// With `relu` (the forward ran with relu and no residual), dy is first masked where the
    /// output was positive, recomputed from x with the forward's scale and shift (the same float
    /// operations, so the same mask, without reading y). With `reluOutput` (the forward's y when
    /// it ran with relu and a residual), dy is masked by y > 0, and with `maskedDy` that masked dy
    /// is also written there (the gradient the fused residual add hands to an identity shortcut).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func backward(
        x: UnsafePointer<T>, dy: UnsafePointer<T>, dx: UnsafeMutablePointer<T>,
        n: Int, hw: Int, group: Int, relu: Bool = false, reluOutput: UnsafePointer<T>? = nil,
        maskedDy: UnsafeMutablePointer<T>? = nil
    ) {
        precondition(maskedDy == nil || reluOutput != nil, "maskedDy needs reluOutput")
        precondition(!(relu && reluOutput != nil), "relu recomputes the mask that reluOutput gives")
        let groups = n / group, m = group * hw
        for c in 0..<channels {
            var dg = 0.0, db = 0.0
            for g in 0..<groups {
                let off = (c * n + g * group) * hw
                let xs = x + off, dys = dy + off, dxs = dx + off
                let mu = mean.base[c * groups + g], inv = invStd.base[c * groups + g]
                if let reluOutput, let maskedDy {
                    let ys = reluOutput + off, ms = maskedDy + off
                    for i in 0..<m {
                        let d = ys[i] > 0 ? dys[i] : 0
                        dxs[i] = d
                        ms[i] = d
                    }
                } else if let reluOutput {
                    let ys = reluOutput + off
                    for i in 0..<m { dxs[i] = ys[i] > 0 ? dys[i] : 0 }
                } else if relu {
                    let sc = scale.base[c * groups + g], sh = shift.base[c * groups + g]
                    for i in 0..<m { dxs[i] = xs[i] * sc + sh > 0 ? dys[i] : 0 }
                } else if UnsafePointer(dxs) != dys {
                    dxs.update(from: dys, count: m)
                }
                var sdy = 0.0, sdyx = 0.0
                for i in 0..<m {
                    let d = Double(dxs[i])
                    sdy = Relaxed.sum(sdy, d)
                    sdyx = Relaxed.multiplyAdd(d, Double((xs[i] - mu) * inv), sdyx)
                }
                dg += sdyx
                db += sdy
                // dx = gamma * inv / m * (m * dy - sum(dy) - xhat * sum(dy * xhat))
                let a = T(sdy / Double(m)), b = T(sdyx / Double(m))
                let kk = gamma[c] * inv
                for i in 0..<m {
                    let xhat = (xs[i] - mu) * inv
                    dxs[i] = kk * (dxs[i] - a - xhat * b)
                }
            }
            dGamma[c] += T(dg)
            dBeta[c] += T(db)
        }
    }
}

/// Training-mode BN needs the group size; evaluation mode uses the running statistics.
public enum ForwardMode: Sendable, Equatable {
    case training(bnGroup: Int)
    case inference
}
