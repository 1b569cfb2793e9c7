/// ResNeXt for CIFAR (hysts/pytorch_resnext): 3x3 stem conv + BN + ReLU, three stages of
/// bottleneck blocks, global average pooling, linear. All state lives in `store` under PyTorch's
/// `state_dict` names; all activations and workspaces are allocated here, once, for `maxBatch`
/// images, so a training step allocates nothing.
public final class ResNeXt<T: EngineScalar> {
    public let config: ResNeXtConfig
    public let maxBatch: Int
    public let store: ParameterStore<T>
    public static var imageSize: Int { 32 }
    public static var inputChannels: Int { 3 }

    let stem: Conv2d<T>
    let stemBN: BatchNorm<T>
    let blocks: [Bottleneck<T>]
    let fc: Linear<T>

    // activations and workspaces, channel-major
    let input: Buffer<T>  // (3, N, 32, 32)
    let h0, a0: Buffer<T>  // stem conv output, stem BN+ReLU output (base, N, 32, 32)
    let features: Buffer<T>  // pooled (C, N)
    let dFeatures: Buffer<T>  // (C, N)
    public let logits: Buffer<T>  // (N, classes), row-major as PyTorch
    public let dLogits: Buffer<T>  // (N, classes)
    let col, tmp, gradA, gradB, t1, t2: Buffer<T>

    public init(_ config: ResNeXtConfig, maxBatch: Int) throws {
        try config.validate()
        guard maxBatch >= 1 else { throw ResNeXtError("batch size must be at least 1 (got \(maxBatch))") }
        self.config = config
        self.maxBatch = maxBatch
        let widths = config.widths, size = Self.imageSize
        var layout = StoreLayout()
        stem = Conv2d("conv", Self.inputChannels, widths[0], kernel: 3, padding: 1, layout: &layout)
        stemBN = BatchNorm("bn", widths[0], maxGroups: maxBatch, layout: &layout)
        var blocks: [Bottleneck<T>] = []
        var cin = widths[0], hw = size
        for stage in 1...3 {
            for i in 0..<config.blocksPerStage {
                let stride = (stage > 1 && i == 0) ? 2 : 1
                let block = Bottleneck<T>(
                    "stage\(stage).block\(i + 1)", inChannels: cin, outChannels: widths[stage],
                    stride: stride, cardinality: config.cardinality, h: hw, w: hw,
                    maxBatch: maxBatch, maxGroups: maxBatch, layout: &layout)
                blocks.append(block)
                cin = widths[stage]; hw = block.p
            }
        }
        self.blocks = blocks
        fc = Linear("fc", widths[3], config.numClasses, layout: &layout)
        store = ParameterStore(layout)
        stem.bind(store); stemBN.bind(store); fc.bind(store)
        for b in blocks { b.bind(store) }

        let plane = size * size
        input = Buffer<T>(count: Self.inputChannels * maxBatch * plane)
        h0 = Buffer<T>(count: widths[0] * maxBatch * plane)
        a0 = Buffer<T>(count: widths[0] * maxBatch * plane)
        features = Buffer<T>(count: widths[3] * maxBatch)
        dFeatures = Buffer<T>(count: widths[3] * maxBatch)
        logits = Buffer<T>(count: config.numClasses * maxBatch)
        dLogits = Buffer<T>(count: config.numClasses * maxBatch)
        let largest = max(widths[0] * plane, blocks.map(\.largestActivationPerImage).max()!) * maxBatch
        let columns = max(stem.columnCount(n: maxBatch, h: size, w: size), blocks.map { $0.columnCount(n: maxBatch) }.max()!)
        col = Buffer<T>(count: columns)
        tmp = Buffer<T>(count: largest)
        gradA = Buffer<T>(count: largest); gradB = Buffer<T>(count: largest)
        t1 = Buffer<T>(count: largest); t2 = Buffer<T>(count: largest)
    }

    /// Every convolution of the model in order, each with the input plane it runs on
    /// (`macsPerImage`, `resnext-ddp bench --layers`).
    public var convolutionInputs: [(conv: Conv2d<T>, h: Int, w: Int)] {
        [(stem, Self.imageSize, Self.imageSize)] + blocks.flatMap(\.convolutionInputs)
    }

    /// Forward multiply-accumulates per image (convolutions and the linear layer).
    public var macsPerImage: Int {
        convolutionInputs.reduce(0) { $0 + $1.conv.macsPerImage(h: $1.h, w: $1.w) } + fc.inFeatures * fc.outFeatures
    }

    /// Whether each block's 3x3 convolution reads bn1's output from bn1's input instead of a
    /// stored copy, where it can (`NormalizedInput`): on unless set off, which tests and
    /// benchmarks do to compare the two (the values are the same, bit for bit).
    public var readsBN1OnTheFly = true {
        didSet { for b in blocks { b.readsBN1 = readsBN1OnTheFly } }
    }

    /// Bytes held by activations and workspaces (not the flat parameter buffers).
    public var activationBytes: Int {
        var elements = [input, h0, a0, features, dFeatures, logits, dLogits, col, tmp, gradA, gradB, t1, t2].reduce(0) { $0 + $1.count }
        for b in blocks {
            elements += [b.h1, b.h2, b.a2, b.h3, b.y].reduce(0) { $0 + $1.count } + (b.s?.count ?? 0) + b.storedA1Count
        }
        return elements * MemoryLayout<T>.stride
    }

    // MARK: Initialisation

    /// The reference initialisation from a seed, bit for bit reproducible: conv weights Kaiming
    /// normal (fan_out, gain sqrt 2); BN weight 1, bias 0, running mean 0; linear weight
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias 0. Like the reference, whose constructor runs one
    /// zero image through the BN layers in training mode, running_var starts at 0.9 and
    /// num_batches_tracked at 1. Momentum and gradients are zeroed.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func initialize(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        for e in store.entries {
            switch e.kind {
            case .counter:
                store.counters[e.offset] = 1
            case .statistic:
                store.pointer(e).update(repeating: e.name.hasSuffix("running_var") ? 0.9 : 0, count: e.count)
            case .parameter:
                let p = store.pointer(e)
                if e.shape.count == 4 {
                    let std = (2.0 / Double(e.shape[0] * e.shape[2] * e.shape[3])).squareRoot()
                    for i in 0..<e.count { p[i] = T(std * rng.nextNormal()) }
                } else if e.shape.count == 2 {
                    let bound = 1 / Double(e.shape[1]).squareRoot()
                    for i in 0..<e.count { p[i] = T(bound * (2 * rng.nextUnitDouble() - 1)) }
                } else {
                    let one = e.name.hasSuffix(".weight") && !e.name.hasPrefix("fc.")
                    p.update(repeating: one ? 1 : 0, count: e.count)
                }
            }
        }
        store.grads.zero()
        store.momentum.zero()
    }

    // MARK: Forward and backward

    /// Forward pass of n images given in PyTorch's layout (N, 3, 32, 32). Returns the logits
    /// (N, classes). In training mode every BN layer also fills its part of `store.batchStats`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @discardableResult
    public func forward(_ images: UnsafePointer<T>, n: Int, mode: ForwardMode) -> UnsafeMutablePointer<T> {
        precondition(n >= 1 && n <= maxBatch, "batch \(n) outside 1...\(maxBatch)")
        if case .training(let group) = mode { precondition(group >= 1 && n % group == 0, "batch \(n) not a multiple of BN group \(group)") }
        let size = Self.imageSize, plane = size * size
        // (N, 3, HW) -> (3, N, HW)
        Profile.measure(.pooling) {
            for c in 0..<Self.inputChannels {
                for i in 0..<n {
                    (input.base + (c * n + i) * plane).update(from: images + (i * Self.inputChannels + c) * plane, count: plane)
                }
            }
        }
        stem.forward(x: input.base, y: h0.base, n: n, h: size, w: size, col: col.base)
        Profile.measure(.batchNorm) {
            switch mode {
            case .training(let group): stemBN.forwardTraining(x: h0.base, y: a0.base, n: n, hw: plane, group: group, relu: true)
            case .inference: stemBN.forwardInference(x: h0.base, y: a0.base, n: n, hw: plane, relu: true)
            }
        }
        var x = UnsafePointer(a0.base)
        for b in blocks {
            b.forward(x: x, n: n, mode: mode, col: col.base, tmp: tmp.base)
            x = UnsafePointer(b.y.base)
        }
        let last = blocks.last!
        Profile.measure(.pooling) { globalAveragePoolForward(x: x, y: features.base, c: last.outChannels, n: n, hw: last.p * last.q) }
        fc.forward(x: features.base, y: logits.base, n: n)
        return logits.base
    }

    /// Mean softmax cross-entropy of the last forward's logits (sum over the n rows divided by
    /// `divisor`, default n) and its gradient into `dLogits`. Returns (loss, correct predictions).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func loss(labels: UnsafePointer<Int32>, n: Int, divisor: Int? = nil) -> (loss: Double, correct: Int) {
        Profile.measure(.loss) {
            softmaxCrossEntropy(
                logits: logits.base, labels: labels, n: n, classes: config.numClasses,
                divisor: divisor ?? n, dLogits: dLogits.base)
        }
    }

    /// Backward pass from `dLogits` through the last training forward (same n and group).
    /// Parameter gradients accumulate into `store.grads`. Backward runs in reverse `state_dict`
    /// order: `gradientsReady(offset)` is called each time the gradients at `offset..<grads.count`
    /// are final (after the classifier, after each block, at the end with 0), so that a caller can
    /// start reducing them while the rest of the backward pass runs.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func backward(n: Int, bnGroup group: Int, gradientsReady: ((Int) -> Void)? = nil) {
        let last = blocks.last!
        fc.backward(x: features.base, dy: dLogits.base, dx: dFeatures.base, n: n)
        gradientsReady?(fc.weightOffset)
        var dy = gradA.base, dx = gradB.base
        Profile.measure(.pooling) { globalAveragePoolBackward(dy: dFeatures.base, dx: dy, c: last.outChannels, n: n, hw: last.p * last.q) }
        for (i, b) in blocks.enumerated().reversed() {
            let x = i == 0 ? UnsafePointer(a0.base) : UnsafePointer(blocks[i - 1].y.base)
            b.backward(x: x, dy: dy, dx: dx, n: n, group: group, col: col.base, t1: t1.base, t2: t2.base)
            swap(&dy, &dx)
            gradientsReady?(b.firstParameter)
        }
        let size = Self.imageSize
        Profile.measure(.batchNorm) { stemBN.backward(x: h0.base, dy: dy, dx: dy, n: n, hw: size * size, group: group, relu: true) }
        stem.backward(x: input.base, dy: dy, dx: nil, n: n, h: size, w: size, col: col.base)
        gradientsReady?(0)
    }

    /// One complete training step on n images with BN groups of `bnGroup`: zero gradients,
    /// forward, loss, backward, then `beforeUpdate` (where data parallelism sums gradients and BN
    /// batch statistics over processes), running statistics, SGD. `globalBatch` (default n) is the
    /// batch the loss is averaged over when these n images are one shard of it. Returns this
    /// shard's (loss, correct). `gradientsReady` is passed to `backward`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @discardableResult
    public func trainStep(
        images: UnsafePointer<T>, labels: UnsafePointer<Int32>, n: Int, bnGroup: Int,
        optimizer: SGD, globalBatch: Int? = nil, beforeUpdate: () -> Void = {},
        gradientsReady: ((Int) -> Void)? = nil
    ) -> (loss: Double, correct: Int) {
        let batch = globalBatch ?? n
        Profile.measure(.optimizer) { store.grads.zero() }
        forward(images, n: n, mode: .training(bnGroup: bnGroup))
        let result = loss(labels: labels, n: n, divisor: batch)
        backward(n: n, bnGroup: bnGroup, gradientsReady: gradientsReady)
        beforeUpdate()
        Profile.measure(.batchNorm) { store.updateRunningStatistics(groups: batch / bnGroup) }
        Profile.measure(.optimizer) { optimizer.step(store) }
        return result
    }
}
