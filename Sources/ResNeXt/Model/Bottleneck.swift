/// The bottleneck block: conv1 1x1 -> bn1 -> relu -> conv2 3x3 grouped (stride here) -> bn2 -> relu
/// -> conv3 1x1 -> bn3, plus the shortcut (identity, or 1x1 conv + BN where the width changes),
/// then relu. Owns its saved activations, sized for the model's largest batch.
final class Bottleneck<T: EngineScalar> {
    let conv1, conv2, conv3: Conv2d<T>
    let bn1, bn2, bn3: BatchNorm<T>
    let shortcutConv: Conv2d<T>?, shortcutBN: BatchNorm<T>?
    let inChannels, outChannels, width, h, w, p, q: Int
    // saved activations, channel-major (C, N, H, W)
    let h1, h2, a2, h3, y: Buffer<T>
    /// bn1's output, stored only where conv2 cannot read it from h1 (`readsBN1`): allocated on
    /// first use (the float64 engine, or a conv2 path without the row copies).
    var a1: Buffer<T> {
        if let a1Storage { return a1Storage }
        let b = Buffer<T>(count: h1.count)
        a1Storage = b
        return b
    }
    private var a1Storage: Buffer<T>?
    var storedA1Count: Int { a1Storage?.count ?? 0 }
    /// Whether conv2 reads bn1's output from h1 where it can (`Conv2d.readsNormalizedInput`);
    /// on unless the model's `readsBN1OnTheFly` is off. The last forward's choice is `bn1Read`,
    /// which its backward follows.
    var readsBN1 = true
    private var bn1Read = false
    let s: Buffer<T>?
    /// Offset of this block's first parameter in the store: its parameters are the contiguous
    /// range from here to the next block's.
    let firstParameter: Int

    /// This block's convolutions, each with the input plane it runs on.
    var convolutionInputs: [(conv: Conv2d<T>, h: Int, w: Int)] {
        [(conv1, h, w), (conv2, h, w), (conv3, p, q)] + (shortcutConv.map { [($0, h, w)] } ?? [])
    }

    init(
        _ prefix: String, inChannels: Int, outChannels: Int, stride: Int, cardinality: Int, h: Int, w: Int,
        maxBatch: Int, maxGroups: Int, layout: inout StoreLayout
    ) {
        let width = cardinality * outChannels / 4
        firstParameter = layout.parameterCount
        self.inChannels = inChannels; self.outChannels = outChannels; self.width = width
        conv1 = Conv2d(prefix + ".conv1", inChannels, width, kernel: 1, layout: &layout)
        bn1 = BatchNorm(prefix + ".bn1", width, maxGroups: maxGroups, layout: &layout)
        conv2 = Conv2d(
            prefix + ".conv2", width, width, kernel: 3, stride: stride, padding: 1, groups: cardinality,
            layout: &layout)
        bn2 = BatchNorm(prefix + ".bn2", width, maxGroups: maxGroups, layout: &layout)
        conv3 = Conv2d(prefix + ".conv3", width, outChannels, kernel: 1, layout: &layout)
        bn3 = BatchNorm(prefix + ".bn3", outChannels, maxGroups: maxGroups, layout: &layout)
        if inChannels != outChannels {
            shortcutConv = Conv2d(
                prefix + ".shortcut.conv", inChannels, outChannels, kernel: 1, stride: stride,
                layout: &layout)
            shortcutBN = BatchNorm(prefix + ".shortcut.bn", outChannels, maxGroups: maxGroups, layout: &layout)
        } else {
            precondition(stride == 1, "an identity shortcut cannot change the resolution")
            shortcutConv = nil; shortcutBN = nil
        }
        self.h = h; self.w = w
        (p, q) = conv2.outputSize(h, w)
        h1 = Buffer<T>(count: width * maxBatch * h * w)
        h2 = Buffer<T>(count: width * maxBatch * p * q)
        a2 = Buffer<T>(count: width * maxBatch * p * q)
        h3 = Buffer<T>(count: outChannels * maxBatch * p * q)
        y = Buffer<T>(count: outChannels * maxBatch * p * q)
        s = shortcutConv == nil ? nil : Buffer<T>(count: outChannels * maxBatch * p * q)
    }

    var convolutions: [Conv2d<T>] { [conv1, conv2, conv3] + (shortcutConv.map { [$0] } ?? []) }
    var norms: [BatchNorm<T>] { [bn1, bn2, bn3] + (shortcutBN.map { [$0] } ?? []) }

    func bind(_ store: ParameterStore<T>) {
        for c in convolutions { c.bind(store) }
        for b in norms { b.bind(store) }
    }

    /// Largest activation (floats per image) this block reads or writes.
    var largestActivationPerImage: Int { max(inChannels * h * w, width * h * w, outChannels * p * q) }

    func columnCount(n: Int) -> Int {
        max(
            conv1.columnCount(n: n, h: h, w: w), conv2.columnCount(n: n, h: h, w: w),
            conv3.columnCount(n: n, h: p, w: q), shortcutConv?.columnCount(n: n, h: h, w: w) ?? 0)
    }

    private func norm(
        _ bn: BatchNorm<T>, _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, n: Int, hw: Int,
        mode: ForwardMode, relu: Bool, residual: UnsafePointer<T>? = nil
    ) {
        Profile.measure(.batchNorm) {
            switch mode {
            case .training(let group): bn.forwardTraining(x: x, y: y, n: n, hw: hw, group: group, relu: relu, residual: residual)
            case .inference: bn.forwardInference(x: x, y: y, n: n, hw: hw, relu: relu, residual: residual)
            }
        }
    }

    /// What conv2 reads as the last forward chose (`bn1Read`): h1 through bn1's factors (for n
    /// images in BN groups of `group`, nil in evaluation), or bn1's stored output.
    private func conv2Input(n: Int, group: Int?) -> (x: UnsafePointer<T>, normalize: NormalizedInput?) {
        bn1Read ? (UnsafePointer(h1.base), bn1.normalizedInput(n: n, group: group)) : (UnsafePointer(a1.base), nil)
    }

    /// x (inChannels, N, h, w) -> self.y (outChannels, N, p, q). `tmp` holds one activation.
    /// bn3 also does the residual add and the block's ReLU, in its output pass.
    func forward(
        x: UnsafePointer<T>, n: Int, mode: ForwardMode, col: UnsafeMutablePointer<T>,
        tmp: UnsafeMutablePointer<T>
    ) {
        conv1.forward(x: x, y: h1.base, n: n, h: h, w: w, col: col)
        bn1Read = readsBN1 && conv2.readsNormalizedInput(h: h, w: w)
        var group: Int? = nil
        if bn1Read {
            // bn1's output is never stored: conv2 reads it from h1 as it copies its input
            Profile.measure(.batchNorm) {
                switch mode {
                case .training(let g): bn1.statisticsTraining(x: h1.base, n: n, hw: h * w, group: g); group = g
                case .inference: bn1.prepareInference()
                }
            }
        } else {
            norm(bn1, h1.base, a1.base, n: n, hw: h * w, mode: mode, relu: true)
        }
        let input = conv2Input(n: n, group: group)
        conv2.forward(x: input.x, y: h2.base, n: n, h: h, w: w, col: col, normalize: input.normalize)
        norm(bn2, h2.base, a2.base, n: n, hw: p * q, mode: mode, relu: true)
        conv3.forward(x: a2.base, y: h3.base, n: n, h: p, w: q, col: col)
        var shortcut = x
        if let shortcutConv, let shortcutBN, let s {
            shortcutConv.forward(x: x, y: s.base, n: n, h: h, w: w, col: col)
            norm(shortcutBN, s.base, tmp, n: n, hw: p * q, mode: mode, relu: false)
            shortcut = UnsafePointer(tmp)
        }
        norm(bn3, h3.base, y.base, n: n, hw: p * q, mode: mode, relu: true, residual: shortcut)
    }

    /// dy (outChannels, N, p, q) is read; dx (inChannels, N, h, w) is written. The block's ReLU
    /// is undone inside bn3's (and the shortcut BN's) backward, which mask dy by y > 0 as they
    /// read it; for an identity shortcut bn3 also writes that masked dy to dx.
    func backward(
        x: UnsafePointer<T>, dy: UnsafeMutablePointer<T>, dx: UnsafeMutablePointer<T>,
        n: Int, group: Int, col: UnsafeMutablePointer<T>,
        t1: UnsafeMutablePointer<T>, t2: UnsafeMutablePointer<T>
    ) {
        if let shortcutConv, let shortcutBN, let s {
            Profile.measure(.batchNorm) {
                shortcutBN.backward(x: s.base, dy: dy, dx: t2, n: n, hw: p * q, group: group, reluOutput: y.base)
            }
            shortcutConv.backward(x: x, dy: t2, dx: dx, accumulate: false, n: n, h: h, w: w, col: col)
            Profile.measure(.batchNorm) { bn3.backward(x: h3.base, dy: dy, dx: t1, n: n, hw: p * q, group: group, reluOutput: y.base) }
        } else {
            Profile.measure(.batchNorm) {
                bn3.backward(x: h3.base, dy: dy, dx: t1, n: n, hw: p * q, group: group, reluOutput: y.base, maskedDy: dx)
            }
        }
        conv3.backward(x: a2.base, dy: t1, dx: t2, n: n, h: p, w: q, col: col)
        Profile.measure(.batchNorm) { bn2.backward(x: h2.base, dy: t2, dx: t2, n: n, hw: p * q, group: group, relu: true) }
        let input = conv2Input(n: n, group: group)
        conv2.backward(x: input.x, dy: t2, dx: t1, n: n, h: h, w: w, col: col, normalize: input.normalize)
        Profile.measure(.batchNorm) { bn1.backward(x: h1.base, dy: t1, dx: t1, n: n, hw: h * w, group: group, relu: true) }
        conv1.backward(x: x, dy: t1, dx: dx, accumulate: true, n: n, h: h, w: w, col: col)
    }
}
